"""The signing path in a real headless Chromium (Debian's, driven by Playwright) against a
real uvicorn server on a loopback port, with a real SMTP server receiving the e-mails.

Like the report test in test_gate_run.py, a missing /usr/bin/chromium fails the test rather
than skipping it: .ci/run installs it, and a silently skipped browser test proves nothing.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from consentry.config import ServerSettings, Settings
from consentry.statements import DevSMTPServer, SignatureState, StatementService
from consentry.store.database import Database
from consentry.web.app import create_app
from web_support import link, mails_to, prepare_registry, server_settings, smtp_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[DevSMTPServer]:
    yield from smtp_server(tmp_path / "mail")


@pytest.fixture
def live(tmp_path: Path, smtp: DevSMTPServer) -> Iterator[tuple[str, ServerSettings]]:
    """A real uvicorn server in a thread; yields its base URL."""
    port = free_port()
    registry = Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})
    settings = server_settings(registry, smtp.port, CONSENTRY_BASE_URL=f"http://127.0.0.1:{port}")
    prepare_registry(settings)
    app = create_app(settings, dev_smtp=False)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def states(settings: ServerSettings) -> list[SignatureState]:
    with Database(settings.registry) as db:
        return [r.state for r in StatementService(db, settings).signatures("letter")]


def test_sign_confirm_and_withdraw_in_a_real_browser(
    live: tuple[str, ServerSettings], smtp: DevSMTPServer
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the signing path must be checked in a real browser; "
            ".ci/run installs Debian's chromium (apt-get install chromium)"
        )
    from playwright.sync_api import expect, sync_playwright

    base, settings = live
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

            # 1. Sign in the page, like a person (and slower than the minimum fill time).
            page.goto(f"{base}/statements/letter")
            expect(page.locator("#count")).to_have_text("0")
            page.fill("input[name=name]", "Grace Hopper")
            page.fill("input[name=email]", "grace@example.org")
            page.fill("input[name=occupation]", "Rear admiral")
            time.sleep(0.4)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Thank you")
            assert states(settings) == [SignatureState.PENDING]

            # 2. The e-mail arrives at the SMTP server; a scanner fetches the link first.
            (mail,) = mails_to(smtp, "grace@example.org")
            confirm_url = base + link(mail, "confirm")
            scanner = browser.new_page()
            scanner.goto(confirm_url)
            expect(scanner.locator("#confirm-button")).to_be_visible()
            scanner.close()
            time.sleep(0.5)
            assert states(settings) == [SignatureState.PENDING]

            # 3. The signer opens the link and presses the button.
            page.goto(confirm_url)
            page.click("#confirm-button")
            expect(page.locator("h1")).to_have_text("Signature confirmed")
            assert states(settings) == [SignatureState.VALIDATED]

            # 4. The count (batched) and the name show after a refresh.
            def shown() -> bool:
                page.goto(f"{base}/statements/letter")
                return page.locator("#count").inner_text() == "1"

            deadline = time.monotonic() + 15
            while not shown():
                assert time.monotonic() < deadline, "the count never reached 1"
                time.sleep(0.2)
            expect(page.locator("#signers")).to_contain_text("Grace Hopper")
            expect(page.locator("#signers")).to_contain_text("Rear admiral")

            # 5. Withdraw from the link in the confirmation e-mail.
            mails = mails_to(smtp, "grace@example.org", 2)
            page.goto(base + link(mails[-1], "withdraw"))
            page.click("#withdraw-button")
            expect(page.locator("h1")).to_have_text("Signature withdrawn")
            assert states(settings) == [SignatureState.INVALIDATED]
            deadline = time.monotonic() + 15
            while page.goto(f"{base}/statements/letter") and (
                page.locator("#count").inner_text() != "0"
            ):
                assert time.monotonic() < deadline, "the count never went back to 0"
                time.sleep(0.2)
            expect(page.locator("#signers")).not_to_contain_text("Grace Hopper")

            # 6. The widget renders framed in another page.
            page.set_content(
                f'<iframe id="w" src="{base}/statements/letter/widget" width="360"></iframe>'
            )
            frame = page.frame_locator("#w")
            expect(frame.locator("#count")).to_have_text("0")
            assert errors == [], errors  # no CSP violations or script errors
        finally:
            browser.close()
