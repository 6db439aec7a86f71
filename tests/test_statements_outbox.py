"""The e-mail outbox over real SMTP: a local aiosmtpd server receives what the worker sends.

Refusing servers (aiosmtpd with a handler that answers 4xx / 5xx) show retries with
exponential backoff, bounces and giving up; a process killed with SIGKILL right after
signing shows that nothing queued is lost.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from consentry.config import ServerSettings, Settings
from consentry.errors import ConfigurationError
from consentry.registry.timeparse import now
from consentry.statements import (
    DevSMTPServer,
    OutboxWorker,
    SignatureState,
    StatementService,
    StatementSpec,
)
from consentry.store.database import Database
from consentry.store.statement_tables import OutboxRow
from statements_support import SECRET, Clock, request, server_settings

SLUG = "open-letter"


class Scripted:
    """An aiosmtpd handler answering RCPT / DATA as told; accepted messages are kept."""

    def __init__(self, rcpt: str | None = None, data: str | None = None) -> None:
        self.rcpt = rcpt
        self.data = data
        self.received: list[bytes] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt is not None:
            return self.rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data is not None:
            return self.data
        self.received.append(envelope.content)
        return "250 OK"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def smtp(tmp_path: Path) -> Any:
    with DevSMTPServer(maildir=tmp_path / "maildir") as server:
        yield server


def _service(
    db: Database, server: ServerSettings, clock: Callable[[], datetime]
) -> StatementService:
    service = StatementService(db, server, clock)
    service.create_statement(
        StatementSpec(slug=SLUG, title="No training without consent", text="We ..."), by="orla"
    )
    service.open_statement(SLUG, by="orla")
    return service


def _rows(db: Database) -> list[OutboxRow]:
    with db.read() as session:
        rows = list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))
        session.expunge_all()
        return rows


def _link(message: Any, kind: str) -> str:
    body = message.get_content()
    found = re.search(rf"http://127\.0\.0\.1:8000/{kind}/([A-Za-z0-9_-]{{43}})\b", body)
    assert found, body
    return found.group(1)


def test_sign_read_the_mail_confirm_and_get_thanked(
    db: Database, settings: Settings, smtp: DevSMTPServer, clock: Clock
) -> None:
    server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
    service = _service(db, server, clock)
    worker = OutboxWorker(db, server, clock=clock)
    service.sign(request(email="Ann.Author@example.org", name="Ann Author"))
    assert worker.run_once() == 1
    (confirm,) = smtp.messages()
    assert confirm["To"] == "Ann.Author@example.org"
    assert confirm["From"] == server.mail_from
    assert confirm["Auto-Submitted"] == "auto-generated"
    assert confirm["Subject"] == "Please confirm your signature: No training without consent"
    assert "Hello Ann Author" in confirm.get_content()
    info = service.confirm(_link(confirm, "confirm"))
    assert (info.state, info.ordinal) == (SignatureState.VALIDATED, 1)
    assert worker.run_once() == 1
    thanks = smtp.messages()[1]
    assert thanks["Subject"] == "Thank you for signing: No training without consent"
    assert "signer number 1" in thanks.get_content()
    # Every message carries a working withdraw link.
    withdraw = _link(thanks, "withdraw")
    assert _link(confirm, "withdraw") != withdraw
    assert service.withdraw(withdraw).state is SignatureState.INVALIDATED
    rows = _rows(db)
    assert [(r.state, r.attempts) for r in rows] == [("sent", 1), ("sent", 1)]
    assert all(r.confirm_nonce is None and r.withdraw_nonce is None for r in rows)
    assert worker.counts() == {"sent": 2}
    assert worker.run_once() == 0


def test_batches_go_over_a_few_parallel_connections(
    db: Database, settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    handler = Scripted()
    with DevSMTPServer(handler=handler) as smtp:
        server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
        service = _service(db, server, clock)
        service.sign_many([request(email=f"b{i}@example.org") for i in range(25)])
        worker = OutboxWorker(db, server, clock=clock)
        assert worker.run_once(limit=10) == 10
        assert worker.run_once(limit=100) == 15
    assert len(handler.received) == 25
    assert {r.state for r in _rows(db)} == {"sent"}


def test_a_permanent_refusal_is_a_bounce(db: Database, settings: Settings, clock: Clock) -> None:
    with DevSMTPServer(handler=Scripted(rcpt="550 5.1.1 no such mailbox")) as smtp:
        server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
        service = _service(db, server, clock)
        service.sign(request(email="ghost@example.org"))
        assert OutboxWorker(db, server, clock=clock).run_once() == 0
    (row,) = _rows(db)
    assert (row.state, row.attempts) == ("bounced", 1)
    assert row.last_error is not None
    assert row.last_error.startswith("550")
    assert row.withdraw_nonce is None


def test_rejected_data_is_a_bounce_too(db: Database, settings: Settings, clock: Clock) -> None:
    with DevSMTPServer(handler=Scripted(data="554 5.7.1 message refused")) as smtp:
        server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
        _service(db, server, clock).sign(request())
        OutboxWorker(db, server, clock=clock).run_once()
    assert [(r.state, (r.last_error or "")[:3]) for r in _rows(db)] == [("bounced", "554")]


def test_temporary_failures_back_off_exponentially_then_give_up(
    db: Database, settings: Settings, clock: Clock
) -> None:
    with DevSMTPServer(handler=Scripted(rcpt="451 4.7.1 greylisted, try later")) as smtp:
        server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
        _service(db, server, clock).sign(request())
        worker = OutboxWorker(db, server, clock=clock, max_attempts=4, backoff_base=30)
        start = clock.now
        waits = []
        for _ in range(3):
            assert worker.run_once() == 0
            (row,) = _rows(db)
            assert row.state == "queued"
            assert row.last_error is not None
            assert row.last_error.startswith("451")
            waits.append((row.next_attempt_at - clock.now).total_seconds())
            clock.now = row.next_attempt_at - timedelta(seconds=1)
            assert worker.run_once() == 0  # not due yet: no attempt
            assert _rows(db)[0].attempts == row.attempts
            clock.advance(seconds=1)
        assert waits == [30, 60, 120]
        assert worker.run_once() == 0
    (row,) = _rows(db)
    assert (row.state, row.attempts) == ("failed", 4)
    assert clock.now - start == timedelta(seconds=30 + 60 + 120)


def test_no_server_means_retry_later_and_nothing_is_lost(
    db: Database, settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port where nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = server_settings(settings, CONSENTRY_SMTP_URL=f"smtp://127.0.0.1:{port}")
    service = _service(db, server, clock)
    service.sign_many([request(email="x@example.org"), request(email="y@example.org")])
    worker = OutboxWorker(db, server, clock=clock, timeout=2)
    assert worker.run_once() == 0
    rows = _rows(db)
    assert [(r.state, r.attempts) for r in rows] == [("queued", 1), ("queued", 1)]
    assert all("cannot connect" in (r.last_error or "") for r in rows)
    with DevSMTPServer(port=port, maildir=tmp_path / "late") as smtp:
        clock.advance(seconds=30)
        assert worker.run_once() == 2
        assert sorted(m["To"] for m in smtp.messages()) == ["x@example.org", "y@example.org"]


def test_a_worker_dying_mid_send_leaves_the_message_due_after_the_lease(
    db: Database, settings: Settings, smtp: DevSMTPServer, clock: Clock
) -> None:
    server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
    _service(db, server, clock).sign(request())
    dead = OutboxWorker(db, server, clock=clock, lease=300)
    assert dead._claim(100, clock.now)  # claimed, then the process "dies" before sending
    worker = OutboxWorker(db, server, clock=clock, lease=300)
    assert worker.run_once() == 0  # leased to the dead worker
    clock.advance(seconds=300)
    assert worker.run_once() == 1
    assert len(smtp.messages()) == 1
    assert _rows(db)[0].attempts == 2


def test_mail_for_an_erased_signer_is_cancelled(
    db: Database, settings: Settings, smtp: DevSMTPServer, clock: Clock
) -> None:
    server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
    service = _service(db, server, clock)
    service.sign_many([request(email="gone@example.org"), request(email="stays@example.org")])
    service.erase_signer("gone@example.org", by="orla")
    assert OutboxWorker(db, server, clock=clock).run_once() == 1
    assert [m["To"] for m in smtp.messages()] == ["stays@example.org"]
    assert [r.state for r in _rows(db)] == ["cancelled", "sent"]


def test_run_forever_sends_until_stopped(
    db: Database, settings: Settings, smtp: DevSMTPServer
) -> None:
    server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
    service = _service(db, server, now)  # real time: run_forever runs on the real clock
    worker = OutboxWorker(db, server)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), kwargs={"interval": 0.05})
    thread.start()
    try:
        service.sign(request(email="loop@example.org"))
        for _ in range(200):
            if smtp.messages():
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [m["To"] for m in smtp.messages()] == ["loop@example.org"]


def test_an_unusable_smtp_url_is_refused(settings: Settings) -> None:
    for url in ("http://mail.example", "smtp://", "smtp://host:notaport", "mail.example:25"):
        with pytest.raises(ConfigurationError, match="CONSENTRY_SMTP_URL"):
            server_settings(settings, CONSENTRY_SMTP_URL=url)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from consentry.config import ServerSettings, Settings
    from consentry.statements import SignRequest, StatementService
    from consentry.store.database import Database

    registry = Settings.load()
    server = ServerSettings.load(registry, dev=True, env={"CONSENTRY_SECRET_KEY": sys.argv[1]})
    service = StatementService(Database(registry), server)
    requests = [
        SignRequest(slug="open-letter", name=f"Signer {i}", email=f"crash{i}@example.org",
                    show_name=True, occupation=None, country=None, organisation=None,
                    ip=f"10.99.0.{i}", user_agent="child", honeypot="", form_age_seconds=30.0)
        for i in range(20)
    ]
    results = service.sign_many(requests)
    print(",".join(r.outcome.value for r in results), flush=True)
    time.sleep(600)  # killed with SIGKILL long before this ends
    """
)


@pytest.mark.slow
def test_a_process_killed_after_signing_loses_no_mail(
    db: Database, settings: Settings, backend_env: dict[str, str], smtp: DevSMTPServer
) -> None:
    server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
    _service(db, server, now)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTRY_")}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, SECRET],
        env=env | backend_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert line == ",".join(["accepted"] * 20)
    # The signer process is gone; a worker started afterwards finds and sends every message.
    worker = OutboxWorker(db, server)
    assert worker.run_once() == 20
    received = sorted(m["To"] for m in smtp.messages())
    assert received == sorted(f"crash{i}@example.org" for i in range(20))


def test_non_ascii_names_titles_and_addresses(
    db: Database, settings: Settings, smtp: DevSMTPServer, clock: Clock
) -> None:
    server = server_settings(
        settings,
        CONSENTRY_SMTP_URL=smtp.url,
        CONSENTRY_MAIL_FROM="Lettre ouverte — Non <lettre@sign.example>",
    )
    service = StatementService(db, server, clock)
    service.create_statement(
        StatementSpec(
            slug=SLUG,
            title="Pas d\N{RIGHT SINGLE QUOTATION MARK}entraînement sans consentement",
            text="…",
        ),
        by="orla",
    )
    service.open_statement(SLUG, by="orla")
    service.sign_many(
        [
            request(email="zoe@example.org", name="Zoë Ångström"),
            request(email="用户@例子.广告", name="李华"),
        ]
    )
    assert OutboxWorker(db, server, clock=clock).run_once() == 2
    by_to = {m["To"]: m for m in smtp.messages()}
    assert set(by_to) == {"zoe@example.org", "用户@例子.广告"}
    zoe = by_to["zoe@example.org"]
    title = "Pas d\N{RIGHT SINGLE QUOTATION MARK}entraînement sans consentement"
    assert zoe["Subject"] == f"Please confirm your signature: {title}"
    assert zoe["From"] == "Lettre ouverte — Non <lettre@sign.example>"
    assert "Hello Zoë Ångström," in zoe.get_content()
    assert "Hello 李华," in by_to["用户@例子.广告"].get_content()
    assert _link(zoe, "confirm")


def test_an_address_the_server_cannot_take_fails_alone(
    db: Database, settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    with DevSMTPServer(maildir=tmp_path / "ascii-only", smtputf8=False) as smtp:
        server = server_settings(settings, CONSENTRY_SMTP_URL=smtp.url)
        _service(db, server, clock).sign_many(
            [request(email="用户@例子.广告"), request(email="plain@example.org")]
        )
        worker = OutboxWorker(db, server, clock=clock, connections=1)
        assert worker.run_once() == 1
        assert [m["To"] for m in smtp.messages()] == ["plain@example.org"]
    rows = _rows(db)
    assert [r.state for r in rows] == ["failed", "sent"]
    assert "SMTPUTF8" in (rows[0].last_error or "")
