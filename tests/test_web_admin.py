"""Operator pages: login, roles, CSRF on every admin form, statements, vetting, bulk
invalidation with a dry run, blocklist, recount, CSV export and erasure — on a real registry."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consentry.config import ServerSettings, Settings
from consentry.statements import DevSMTPServer, SignatureState, StatementService
from consentry.store.database import Database
from web_support import (
    PASSWORD,
    client_for,
    hidden,
    link,
    login,
    mails_to,
    prepare_registry,
    server_settings,
    sign,
    smtp_server,
    wait_for,
)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[DevSMTPServer]:
    yield from smtp_server(tmp_path / "mail")


@pytest.fixture
def site(tmp_path: Path, smtp: DevSMTPServer) -> ServerSettings:
    registry = Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})
    settings = server_settings(registry, smtp.port)
    prepare_registry(settings)
    return settings


@pytest.fixture
def client(site: ServerSettings) -> Iterator[TestClient]:
    with client_for(site) as test_client:
        yield test_client


def service(site: ServerSettings) -> tuple[Database, StatementService]:
    db = Database(site.registry)
    return db, StatementService(db, site)


def confirmed_signer(client: TestClient, smtp: DevSMTPServer, name: str, email: str) -> None:
    sign(client, name=name, email=email)
    mail = mails_to(smtp, email)[0]
    page = client.get(link(mail, "confirm"))
    response = client.post(
        link(mail, "confirm"), data={"form_token": hidden(page.text, "form_token")}
    )
    assert response.status_code == 200


def signature_id(site: ServerSettings, name: str) -> int:
    db, svc = service(site)
    with db:
        return next(r.id for r in svc.signatures("letter") if r.name == name)


# -- login ------------------------------------------------------------------------------------


def test_admin_pages_need_a_session(client: TestClient) -> None:
    for path in ("/admin", "/admin/statements", "/admin/blocklist", "/admin/statements/letter"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/admin/login"
    client.cookies.set("consentry_session", "made-up", path="/admin")
    assert client.get("/admin/statements").status_code == 303


def test_login_checks_password_form_token_and_rate(client: TestClient) -> None:
    page = client.get("/admin/login")
    token = hidden(page.text, "form_token")
    no_token = client.post("/admin/login", data={"username": "olga", "password": PASSWORD})
    assert no_token.status_code == 403
    wrong = client.post(
        "/admin/login", data={"form_token": token, "username": "olga", "password": "nope"}
    )
    assert wrong.status_code == 401
    assert "Wrong username or password" in wrong.text
    unknown = client.post(
        "/admin/login", data={"form_token": token, "username": "nobody", "password": "x"}
    )
    assert unknown.status_code == 401
    assert "consentry_session" not in client.cookies
    statuses = [
        client.post(
            "/admin/login", data={"form_token": token, "username": "olga", "password": "x"}
        ).status_code
        for _ in range(10)
    ]
    assert statuses[-1] == 429  # ten attempts a minute per address


def test_session_cookie_flags_and_logout(client: TestClient) -> None:
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={
            "form_token": hidden(page.text, "form_token"),
            "username": "olga",
            "password": PASSWORD,
        },
    )
    cookie = response.headers["set-cookie"].lower()
    assert "consentry_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/admin" in cookie
    home = client.get("/admin/statements")
    csrf = hidden(home.text, "csrf")
    assert client.post("/admin/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.post("/admin/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/admin/statements").status_code == 303


# -- statements -------------------------------------------------------------------------------


def test_an_operator_creates_edits_opens_and_closes_a_statement(client: TestClient) -> None:
    csrf = login(client)
    form = {
        "csrf": csrf,
        "slug": "second",
        "title": "Second <statement>",
        "text": "We also object.",
        "languages": "en, fr",
        "goal": "10,000",
        "require_country": "1",
        "rate_ip_burst": "3/60",
    }
    assert client.post("/admin/statements", data=form | {"csrf": ""}).status_code == 403
    created = client.post("/admin/statements", data=form)
    assert created.status_code == 303
    assert created.headers["location"] == "/admin/statements/second?done=created"
    page = client.get(created.headers["location"])
    assert "Statement created." in page.text
    assert "Second &lt;statement&gt;" in page.text
    assert client.get("/statements/second").status_code == 404  # a draft is not public

    edited = client.post(
        "/admin/statements/second",
        data=form | {"title": "Second statement", "goal": "", "closes_at": "2099-01-01T00:00"},
    )
    assert edited.status_code == 303
    assert client.post("/admin/statements/second/open", data={"csrf": csrf}).status_code == 303
    public = client.get("/statements/second")
    assert public.status_code == 200
    assert "Second statement" in public.text
    assert "Country (required)" in public.text
    api = client.get("/api/v1/statements/second").json()
    assert api["goal"] is None
    assert api["required_fields"] == ["country"]
    assert api["closes_at"].startswith("2099-01-01")
    assert client.post("/admin/statements/second/close", data={"csrf": csrf}).status_code == 303
    assert "closed for signing" in client.get("/statements/second").text
    assert client.post("/admin/statements/second/explode", data={"csrf": csrf}).status_code == 404


def test_bad_statement_input_is_shown_not_crashed(client: TestClient) -> None:
    csrf = login(client)
    for bad in (
        {"slug": "Bad Slug!", "title": "t", "text": "x"},
        {"slug": "ok-slug", "title": "t", "text": "x", "goal": "-5"},
        {"slug": "ok-slug", "title": "t", "text": "x", "opens_at": "yesterday"},
        {"slug": "ok-slug", "title": "t", "text": "x", "rate_ip_burst": "fast"},
        {"slug": "letter", "title": "t", "text": "x"},
    ):
        response = client.post("/admin/statements", data={"csrf": csrf} | bad)
        assert 400 <= response.status_code < 500, bad


# -- roles and vetting --------------------------------------------------------------------------


def test_a_vetter_may_only_vet(
    client: TestClient, site: ServerSettings, smtp: DevSMTPServer
) -> None:
    confirmed_signer(client, smtp, "Famous Novelist", "novelist@example.org")
    csrf = login(client, "vera")
    assert client.get("/admin/statements/new").status_code == 403
    assert client.post("/admin/statements/letter/close", data={"csrf": csrf}).status_code == 403
    assert client.get("/admin/blocklist").status_code == 403
    assert client.get("/admin/statements/letter/export.csv").status_code == 403
    listing = client.get("/admin/statements/letter/signatures")
    assert listing.status_code == 200
    assert "novelist@example.org" in listing.text

    sid = signature_id(site, "Famous Novelist")
    vet = {"csrf": csrf, "kind": "notable", "method": "called her agent", "note": "ok"}
    assert client.post(f"/admin/signatures/{sid}/vet", data=vet | {"csrf": "x"}).status_code == 403
    assert client.post(f"/admin/signatures/{sid}/vet", data=vet | {"method": ""}).status_code == 400
    done = client.post(f"/admin/signatures/{sid}/vet", data=vet | {"back": "https://evil.example/"})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/admin/")
    db, svc = service(site)
    with db:
        record = svc.signature(sid)
    assert (record.kind, record.vetted_by, record.vet_method) == (
        "notable",
        "vera",
        "called her agent",
    )
    api = client.get("/api/v1/statements/letter").json()
    assert [n["name"] for n in api["notables"]] == ["Famous Novelist"]
    assert 'class="badge">notable signer' in client.get("/statements/letter").text
    assert client.post(f"/admin/signatures/{sid}/unvet", data={"csrf": csrf}).status_code == 303
    assert client.get("/api/v1/statements/letter").json()["notables"] == []


# -- invalidation, blocklist, recount, export, erasure -----------------------------------------


def test_bulk_invalidation_is_a_dry_run_then_a_confirmation(
    client: TestClient, site: ServerSettings, smtp: DevSMTPServer
) -> None:
    confirmed_signer(client, smtp, "Spam One", "one@spam.example")
    confirmed_signer(client, smtp, "Real Person", "real@example.org")
    csrf = login(client)
    assert client.get("/admin/statements/letter/invalidate").status_code == 200
    condition = {"csrf": csrf, "email_domain": "spam.example", "step": "dry-run"}
    dry = client.post("/admin/statements/letter/invalidate", data=condition)
    assert dry.status_code == 200
    assert 'id="dry-run-count"><strong>1</strong>' in dry.text
    db, svc = service(site)
    with db:
        assert sorted(r.state for r in svc.signatures("letter")) == [SignatureState.VALIDATED] * 2
    confirm = {
        "csrf": csrf,
        "step": "confirm",
        **{k: hidden(dry.text, k) for k in ("email_domain", "ip")},
    }
    done = client.post("/admin/statements/letter/invalidate", data=confirm)
    assert done.status_code == 303
    with db:
        assert sorted(r.state for r in svc.signatures("letter")) == sorted(
            [SignatureState.VALIDATED, SignatureState.INVALIDATED]
        )
    # No condition at all is refused (it would hit everything).
    empty = client.post(
        "/admin/statements/letter/invalidate", data={"csrf": csrf, "step": "dry-run"}
    )
    assert empty.status_code == 400
    assert (
        client.post(
            "/admin/statements/letter/invalidate", data={"csrf": csrf, "ip": "not an ip"}
        ).status_code
        == 400
    )
    assert client.post("/admin/statements/letter/recount", data={"csrf": csrf}).status_code == 303
    wait_for(lambda: client.get("/statements/letter/count.json").json()["signature_count"] == 1)


def test_blocklist_and_erasure(
    client: TestClient, site: ServerSettings, smtp: DevSMTPServer
) -> None:
    confirmed_signer(client, smtp, "Leaving Person", "leaving@example.org")
    csrf = login(client)
    blocked = client.post(
        "/admin/blocklist",
        data={"csrf": csrf, "kind": "domain", "value": "Spam.Example", "note": "<b>"},
    )
    assert blocked.status_code == 303
    page = client.get("/admin/blocklist")
    assert "spam.example" in page.text
    assert "&lt;b&gt;" in page.text
    assert (
        client.post(
            "/admin/blocklist", data={"csrf": csrf, "kind": "ip", "value": "999.1.1.1"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/admin/blocklist", data={"csrf": csrf, "kind": "planet", "value": "mars"}
        ).status_code
        == 400
    )
    # A blocked domain signs into the void: the usual page, a fraudulent row, no e-mail.
    response = sign(client, email="bot@spam.example")
    assert "check your e-mail" in response.text
    removed = client.post(
        "/admin/blocklist",
        data={"csrf": csrf, "kind": "domain", "value": "spam.example", "remove": "1"},
    )
    assert removed.status_code == 303
    assert "Nothing blocked" in client.get("/admin/blocklist").text

    erased = client.post("/admin/erase", data={"csrf": csrf, "email": "leaving@example.org"})
    assert erased.status_code == 303
    db, svc = service(site)
    with db:
        rows = {r.state: r for r in svc.signatures("letter")}
    assert rows[SignatureState.FRAUDULENT].email is not None
    assert rows[SignatureState.VALIDATED].email is None
    assert rows[SignatureState.VALIDATED].erased


def test_csv_export_neutralises_formulas(client: TestClient, smtp: DevSMTPServer) -> None:
    confirmed_signer(client, smtp, '=HYPERLINK("http://evil")', "formula@example.org")
    login(client)
    response = client.get("/admin/statements/letter/export.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    cells = [cell for row in rows[1:] for cell in row]
    assert any("HYPERLINK" in c for c in cells)
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
