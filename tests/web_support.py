"""Helpers shared by the web tests: a real registry, a real SMTP sink, a signed-in client."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from consentry.config import ServerSettings, Settings
from consentry.statements import (
    DevSMTPServer,
    OperatorService,
    StatementService,
    StatementSpec,
)
from consentry.store.database import Database
from consentry.web.app import create_app

TOKEN = r"[A-Za-z0-9_-]{43}"  # noqa: S105 - a pattern, not a secret
FILL = 0.3  # the minimum fill time the tests run with (seconds)
PASSWORD = "correct horse battery staple"  # noqa: S105 - test operators only


def server_settings(
    registry: Settings, smtp_port: int, *, dev: bool = True, **env: str
) -> ServerSettings:
    base = {
        "CONSENTRY_MIN_FILL_SECONDS": str(FILL),
        "CONSENTRY_COUNT_INTERVAL": "0.2",
        "CONSENTRY_BASE_URL": "http://127.0.0.1:8000",
        "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
    }
    if not dev:
        base |= {
            "CONSENTRY_SECRET_KEY": "x" * 48,
            "CONSENTRY_MAIL_FROM": "Consentry <noreply@example.org>",
        }
    return ServerSettings.load(registry, dev=dev, env=base | env)


def prepare_registry(settings: ServerSettings, *, slug: str = "letter", **spec: object) -> None:
    """Migrate the database, create and open one statement, create two operators."""
    with Database(settings.registry) as db:
        db.migrate()
        service = StatementService(db, settings)
        service.create_statement(
            StatementSpec(
                slug=slug,
                title="A statement on training data",
                text="We do not consent to the use of our work for training AI.",
                **spec,  # type: ignore[arg-type]
            ),
            by="setup",
        )
        service.open_statement(slug, by="setup")
        operators = OperatorService(db)
        operators.create("olga", PASSWORD, frozenset({"operator"}))
        operators.create("vera", PASSWORD, frozenset({"vetter"}))


def client_for(settings: ServerSettings, **kwargs: object) -> TestClient:
    app = create_app(settings, dev_smtp=False, **kwargs)  # type: ignore[arg-type]
    return TestClient(
        app,
        base_url="http://127.0.0.1:8000",
        client=("203.0.113.10", 50000),
        follow_redirects=False,
    )


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)


def sign(
    client: TestClient,
    slug: str = "letter",
    *,
    name: str = "Ada Lovelace",
    email: str = "ada@example.org",
    show_name: bool = True,
    wait: float = FILL,
    **extra: str,
) -> httpx.Response:
    page = client.get(f"/statements/{slug}")
    assert page.status_code == 200, page.text
    time.sleep(wait)
    data = {"form_token": hidden(page.text, "form_token"), "name": name, "email": email}
    if show_name:
        data["show_name"] = "1"
    data |= extra
    return client.post(f"/statements/{slug}/sign", data=data)


def wait_for(predicate: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def mails_to(smtp: DevSMTPServer, address: str, count: int = 1) -> list[EmailMessage]:
    def found() -> list[EmailMessage]:
        try:
            messages = smtp.messages()
        except FileNotFoundError:  # the maildir's subfolders appear with the first message
            return []
        mine = [m for m in messages if address.lower() in str(m["To"]).lower()]
        return mine if len(mine) >= count else []

    result = wait_for(found)
    assert isinstance(result, list)
    return result


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content = part.get_content()  # type: ignore[attr-defined]
    assert isinstance(content, str)
    return content


def link(message: EmailMessage, purpose: str) -> str:
    match = re.search(rf"https?://[^/\s]+(/{purpose}/{TOKEN})", body(message))
    assert match, body(message)
    return match.group(1)


def login(client: TestClient, username: str = "olga") -> str:
    """Sign in; returns the admin CSRF token of the session."""
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={
            "form_token": hidden(page.text, "form_token"),
            "username": username,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 303, response.text
    home = client.get("/admin/statements")
    assert home.status_code == 200
    return hidden(home.text, "csrf")


def smtp_server(path: Path) -> Iterator[DevSMTPServer]:
    with DevSMTPServer(host="127.0.0.1", port=0, maildir=path) as server:
        yield server
