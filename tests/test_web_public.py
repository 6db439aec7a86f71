"""The public side of ``consentry serve`` through FastAPI's TestClient, on a real registry
(SQLite file; PostgreSQL too where the backend matters) with a real SMTP server receiving
the e-mails the outbox worker sends."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consentry.config import ServerSettings, Settings
from consentry.statements import DevSMTPServer, SignatureState, StatementService
from consentry.store.database import Database
from web_support import (
    FILL,
    TOKEN,
    body,
    client_for,
    hidden,
    link,
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
def sqlite_registry(tmp_path: Path) -> Settings:
    return Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})


@pytest.fixture
def site(sqlite_registry: Settings, smtp: DevSMTPServer) -> ServerSettings:
    settings = server_settings(sqlite_registry, smtp.port)
    prepare_registry(settings)
    return settings


@pytest.fixture
def client(site: ServerSettings) -> Iterator[TestClient]:
    with client_for(site) as test_client:
        yield test_client


def states(settings: ServerSettings, slug: str = "letter") -> list[SignatureState]:
    with Database(settings.registry) as db:
        return [r.state for r in StatementService(db, settings).signatures(slug)]


def main_of(html: str) -> str:
    """The page's <main> (what differs between outcomes, if anything did)."""
    return html[html.index("<main>") : html.index("</main>")]


def refreshed(client: TestClient, predicate: str, slug: str = "letter") -> str:
    """The statement page once the batched count job has caught up with ``predicate``."""

    def page() -> str:
        text = client.get(f"/statements/{slug}").text
        return text if predicate in text else ""

    result = wait_for(page)
    assert isinstance(result, str)
    return result


# -- the whole path, on every backend -----------------------------------------------------------


def test_sign_confirm_count_and_withdraw(settings: Settings, smtp: DevSMTPServer) -> None:
    site = server_settings(settings, smtp.port)
    prepare_registry(site)
    with client_for(site) as client:
        thanks = sign(client, name="Ada Lovelace", email="Ada.Lovelace@Example.org")
        assert thanks.status_code == 200
        assert "check your e-mail" in thanks.text
        assert states(site) == [SignatureState.PENDING]

        (mail,) = mails_to(smtp, "Ada.Lovelace@Example.org")
        confirm_path = link(mail, "confirm")
        assert link(mail, "withdraw")

        # A link scanner fetches the page (even twice): nothing is confirmed by a GET.
        for _ in range(2):
            page = client.get(confirm_path)
            assert page.status_code == 200
            assert "Confirm my signature" in page.text
            assert "A***" in page.text or "***" in page.text  # the address is masked
            assert "Ada.Lovelace@Example.org" not in page.text
            assert page.headers["cache-control"] == "no-store"
        time.sleep(0.5)
        assert states(site) == [SignatureState.PENDING]
        assert client.get("/statements/letter/count.json").json()["signature_count"] == 0

        done = client.post(confirm_path, data={"form_token": hidden(page.text, "form_token")})
        assert done.status_code == 200
        assert "signatory number 1" in done.text
        assert states(site) == [SignatureState.VALIDATED]

        statement = refreshed(client, '">1</strong>')
        assert "Ada Lovelace" in statement
        assert client.get("/statements/letter/count.json").json()["signature_count"] == 1
        api = client.get("/api/v1/statements/letter").json()
        assert api["signature_count"] == 1
        assert client.get("/api/v1/statements/letter/signers").json() == [
            {
                "ordinal": 1,
                "name": "Ada Lovelace",
                "occupation": None,
                "country": None,
                "kind": "person",
            }
        ]

        # The confirmation e-mail carries the withdraw link too; withdrawing takes a POST.
        mails = mails_to(smtp, "Ada.Lovelace@Example.org", 2)
        withdraw_path = link(mails[-1], "withdraw")
        page = client.get(withdraw_path)
        assert page.status_code == 200
        assert "Withdraw my signature" in page.text
        assert states(site) == [SignatureState.VALIDATED]
        gone = client.post(withdraw_path, data={"form_token": hidden(page.text, "form_token")})
        assert gone.status_code == 200
        assert "withdrawn" in gone.text
        statement = refreshed(client, '">0</strong>')
        assert "Ada Lovelace" not in statement
        assert client.get("/api/v1/statements/letter/signers").json() == []


def test_anonymous_signers_are_listed_without_a_name(
    client: TestClient, smtp: DevSMTPServer
) -> None:
    sign(client, name="Hidden Person", email="hidden@example.org", show_name=False)
    (mail,) = mails_to(smtp, "hidden@example.org")
    page = client.get(link(mail, "confirm"))
    client.post(link(mail, "confirm"), data={"form_token": hidden(page.text, "form_token")})
    statement = refreshed(client, '">1</strong>')
    assert "Anonymous" in statement
    assert "Hidden Person" not in statement
    assert client.get("/api/v1/statements/letter/signers").json()[0]["name"] is None


# -- links: used, unknown, forged, expired ------------------------------------------------------


def test_used_unknown_and_forged_links_get_clean_pages(
    client: TestClient, smtp: DevSMTPServer
) -> None:
    sign(client, email="grace@example.org")
    (mail,) = mails_to(smtp, "grace@example.org")
    path = link(mail, "confirm")
    page = client.get(path)
    token = hidden(page.text, "form_token")
    assert client.post(path, data={"form_token": token}).status_code == 200

    again = client.post(path, data={"form_token": token})
    assert again.status_code == 409
    assert "already been used" in again.text
    assert client.get(path).status_code == 409

    forged = "/confirm/" + ("A" * 43)
    assert client.get(forged).status_code == 404
    assert "not valid" in client.get(forged).text
    for bad in ("/confirm/short", "/confirm/" + "%3Cscript%3E" * 4, "/withdraw/" + "B" * 43):
        response = client.get(bad)
        assert response.status_code == 404, bad
        assert "<script>" not in response.text
    # A confirm token is not a withdraw token, and the other way round.
    assert client.get(path.replace("/confirm/", "/withdraw/")).status_code == 404


def test_expired_links_get_410(sqlite_registry: Settings, smtp: DevSMTPServer) -> None:
    site = server_settings(sqlite_registry, smtp.port, CONSENTRY_CONFIRM_TTL_HOURS="0.0003")
    prepare_registry(site)  # links live about a second
    with client_for(site) as client:
        sign(client, email="late@example.org")
        (mail,) = mails_to(smtp, "late@example.org")
        time.sleep(1.3)
        response = client.get(link(mail, "confirm"))
        assert response.status_code == 410
        assert "expired" in response.text


# -- CSRF and malformed input -----------------------------------------------------------------


def test_posts_without_a_valid_form_token_are_refused(
    client: TestClient, site: ServerSettings, smtp: DevSMTPServer
) -> None:
    data = {"name": "Bot", "email": "bot@example.org"}
    assert client.post("/statements/letter/sign", data=data).status_code == 403
    page = client.get("/statements/letter")
    token = hidden(page.text, "form_token")
    # The token of another form, a tampered token, and a token without its cookie.
    assert (
        client.post("/statements/letter/sign", data=data | {"form_token": token[:-3] + "xyz"})
    ).status_code == 403
    with client_for(site) as stranger:
        refused = stranger.post("/statements/letter/sign", data=data | {"form_token": token})
        assert refused.status_code == 403
        assert "Reload the page" in refused.text
    sign(client, email="real@example.org")
    (mail,) = mails_to(smtp, "real@example.org")
    path = link(mail, "confirm")
    assert client.post(path, data={"form_token": ""}).status_code == 403
    assert client.post(path, data={"form_token": token}).status_code == 403  # the sign form's
    assert states(site).count(SignatureState.VALIDATED) == 0


def test_oversized_and_malformed_posts_are_4xx(client: TestClient, site: ServerSettings) -> None:
    page = client.get("/statements/letter")
    token = hidden(page.text, "form_token")
    huge = {"form_token": token, "name": "x" * (site.max_form_bytes + 10), "email": "a@b.org"}
    assert client.post("/statements/letter/sign", data=huge).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it arrives
        for _ in range(40):
            yield b"name=" + b"y" * 1000 + b"&"

    streamed = client.post(
        "/statements/letter/sign",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert (
        client.post(
            "/statements/letter/sign", content=b'{"name": 1}', headers={"content-type": "x/json"}
        ).status_code
        == 415
    )
    with_file = client.post(
        "/statements/letter/sign",
        data={"form_token": token},
        files={"upload": ("a.txt", b"hello", "text/plain")},
    )
    assert with_file.status_code == 400
    broken = client.post(
        "/statements/letter/sign",
        content=b"--nope\r\ngarbage",
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert 400 <= broken.status_code < 500
    nul = client.post(
        "/statements/letter/sign", data={"form_token": token, "name": "a\x00b", "email": "a@b.org"}
    )
    assert nul.status_code == 400
    assert client.get("/statements/letter?page=-1").status_code == 400
    assert client.get("/statements/letter?page=abc").status_code == 400
    assert client.get("/statements/nope").status_code == 404
    assert client.post("/statements/nope/sign", data={"form_token": token}).status_code == 403
    assert states(site) == []


def test_invalid_fields_reshow_the_form_with_errors(client: TestClient) -> None:
    page = client.get("/statements/letter")
    time.sleep(FILL)
    response = client.post(
        "/statements/letter/sign",
        data={
            "form_token": hidden(page.text, "form_token"),
            "name": '<b>"Eve"</b>',
            "email": "not-an-address",
        },
    )
    assert response.status_code == 400
    assert "Your signature was not recorded" in response.text
    assert "&lt;b&gt;&#34;Eve&#34;&lt;/b&gt;" in response.text
    assert "<b>" not in main_of(response.text)


# -- what the signer sees never depends on the outcome ----------------------------------------


def test_duplicates_honeypots_and_fast_forms_get_the_identical_page(
    client: TestClient, site: ServerSettings, smtp: DevSMTPServer
) -> None:
    first = sign(client, email="ada@example.org")
    duplicate = sign(client, email="ADA+statements@Example.org")
    honeypot = sign(client, email="bot1@example.org", website="http://spam.example")
    fast = sign(client, email="bot2@example.org", wait=0)
    pages = {main_of(r.text) for r in (first, duplicate, honeypot, fast)}
    assert [r.status_code for r in (first, duplicate, honeypot, fast)] == [200] * 4
    assert len(pages) == 1
    assert sorted(states(site)) == sorted(
        [SignatureState.PENDING, SignatureState.FRAUDULENT, SignatureState.FRAUDULENT]
    )
    mails = mails_to(smtp, "ada", 2)  # the confirmation, then "already signed"
    assert len({m["Subject"] for m in mails}) == 2
    time.sleep(1.5)  # the worker had time to send anything else it had
    recipients = " ".join(str(m["To"]) for m in smtp.messages())
    assert "bot1" not in recipients
    assert "bot2" not in recipients


# -- HTML in names ------------------------------------------------------------------------------


def test_markup_in_names_is_escaped_everywhere(client: TestClient, smtp: DevSMTPServer) -> None:
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    sign(client, name=evil, email="mallory@example.org", occupation='"><svg onload=alert(3)>')
    (mail,) = mails_to(smtp, "mallory@example.org")
    page = client.get(link(mail, "confirm"))
    client.post(link(mail, "confirm"), data={"form_token": hidden(page.text, "form_token")})
    statement = refreshed(client, '">1</strong>')
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in statement
    for raw in ("<script>alert", "<img src=x", "<svg onload"):
        assert raw not in statement
    assert client.get("/api/v1/statements/letter/signers").json()[0]["name"] == evil
    assert "<script>" not in body(mail) or "text/html" not in mail.get_content_type()


# -- headers, counts, widget, logs ------------------------------------------------------------


def test_security_headers_and_cookie_flags(client: TestClient) -> None:
    page = client.get("/statements/letter")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids | {page.headers["x-request-id"]}) == 4  # every response its own id
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # --dev: plain-HTTP loopback
    assert "<script>" not in page.text.replace('<script src="/static/site.js" defer></script>', "")


def test_cookies_are_secure_outside_dev(sqlite_registry: Settings, smtp: DevSMTPServer) -> None:
    site = server_settings(
        sqlite_registry, smtp.port, dev=False, CONSENTRY_BASE_URL="https://letters.example.org"
    )
    prepare_registry(site)
    with client_for(site) as client:
        page = client.get("/statements/letter")
        assert "secure" in page.headers["set-cookie"].lower()
        assert page.headers["strict-transport-security"].startswith("max-age=")
        assert "https://letters.example.org/statements/letter/widget" in page.text


def test_count_json_is_served_from_memory_with_cache_headers(
    client: TestClient, site: ServerSettings
) -> None:
    response = client.get("/statements/letter/count.json")
    assert response.status_code == 200
    assert response.json() == {
        "slug": "letter",
        "signature_count": 0,
        "goal": None,
        "updated_at": response.json()["updated_at"],
    }
    assert response.headers["cache-control"] == "public, max-age=1"
    assert response.headers["access-control-allow-origin"] == "*"
    etag = response.headers["etag"]
    head = client.head("/statements/letter/count.json")
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)
    again = client.get("/statements/letter/count.json", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    # The route does not touch the database: it keeps answering with the service gone.
    web = client.app.state.web  # type: ignore[attr-defined]
    service, web.service = web.service, None
    try:
        for _ in range(50):
            assert client.get("/statements/letter/count.json").status_code == 200
    finally:
        web.service = service
    assert client.get("/statements/unknown/count.json").status_code == 404


def test_the_widget_can_be_framed_and_the_page_gives_its_snippet(client: TestClient) -> None:
    widget = client.get("/statements/letter/widget")
    assert widget.status_code == 200
    assert "x-frame-options" not in widget.headers
    assert "frame-ancestors *" in widget.headers["content-security-policy"]
    assert 'id="count"' in widget.text
    page = client.get("/statements/letter").text
    assert "&lt;iframe src=&#34;http://127.0.0.1:8000/statements/letter/widget&#34;" in page


def test_request_logs_are_json_without_tokens_or_addresses(
    client: TestClient, smtp: DevSMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="consentry.web.access")
    sign(client, email="logged@example.org")
    (mail,) = mails_to(smtp, "logged@example.org")
    path = link(mail, "confirm")
    client.get(path, headers={"x-request-id": "req-1234567890"})
    records = [r for r in caplog.records if r.name == "consentry.web.access"]
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert {"method", "path", "status", "duration_ms", "request_id"} <= set(fields[-1])
    assert fields[-1]["path"] == "/confirm/{token}"
    assert fields[-1]["request_id"] == "req-1234567890"
    assert any(f["path"] == "/statements/{slug}/sign" for f in fields)
    token = path.rsplit("/", 1)[1]
    from consentry.web.logging import JsonFormatter

    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert token not in text
    assert "logged@example.org" not in text
    assert re.search(TOKEN, text) is None


def test_health_and_index(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    index = client.get("/")
    assert index.status_code == 200
    assert "/statements/letter" in index.text
    assert client.get("/static/site.js").status_code == 200


# -- group commit and client addresses ----------------------------------------------------------


def test_concurrent_submissions_are_group_committed_and_each_is_durable(
    client: TestClient, site: ServerSettings
) -> None:
    page = client.get("/statements/letter")
    token = hidden(page.text, "form_token")
    time.sleep(FILL)

    def post(i: int) -> int:
        data = {"form_token": token, "name": f"Signer {i}", "email": f"s{i}@example{i % 7}.org"}
        # Each from its own address (a trusted proxy is not configured: these are ignored).
        return client.post("/statements/letter/sign", data=data).status_code

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, range(48)))
    assert statuses == [200] * 48
    # The thank-you page was sent only after the commit: every row is there already.
    assert len(states(site)) == 48
    batcher = client.app.state.web.batcher  # type: ignore[attr-defined]
    assert batcher.batches < 48  # shared commits, not one per submission
    assert batcher.largest_batch > 1


def test_client_addresses_come_from_trusted_proxies_only(
    sqlite_registry: Settings, smtp: DevSMTPServer
) -> None:
    site = server_settings(sqlite_registry, smtp.port, CONSENTRY_TRUSTED_PROXIES="203.0.113.0/24")
    prepare_registry(site)
    with client_for(site) as client:  # the test client's peer is 203.0.113.10: a trusted proxy
        headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.77"}
        page = client.get("/statements/letter")
        time.sleep(FILL)
        data = {"form_token": hidden(page.text, "form_token"), "name": "P", "email": "p@ex.org"}
        assert client.post("/statements/letter/sign", data=data, headers=headers).status_code == 200
    with Database(site.registry) as db:
        (record,) = StatementService(db, site).signatures("letter")
    assert record.ip == "198.51.100.77"
