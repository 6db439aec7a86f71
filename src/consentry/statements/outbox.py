"""The durable e-mail outbox and the worker that sends it over SMTP.

Outbox rows are written in the same transaction as the signature (or confirmation) that
causes them, so a crash between signing and sending loses nothing: the worker finds the row
and sends it later. Delivery is at least once:

1. *Claim* due rows in a short write transaction: count the attempt and push the row's next
   attempt one lease ahead, so a worker that dies mid-send leaves the row due again after
   the lease (PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets several workers share the queue).
2. *Render* each message (links derived from the nonces with the server secret) and send
   the batch over a few SMTP connections in parallel (``connections``, default 4).
3. *Record* each outcome: ``sent``; a permanent refusal (5xx for the recipient or the data)
   ``bounced``; anything else (no connection, 4xx, a dropped connection) is retried with
   exponential backoff until ``max_attempts``, then ``failed``. The nonces are erased once
   a row is final, leaving only the tokens' hashes.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from email.utils import parseaddr
from typing import Literal, cast

from sqlalchemy import func, select, update

from consentry.config import ServerSettings
from consentry.errors import ConsentryError
from consentry.registry.timeparse import now as utc_now
from consentry.statements.messages import MessageKind, MessageParts, build_message
from consentry.statements.tokens import derive_token
from consentry.store.database import Database
from consentry.store.statement_tables import OutboxRow, SignatureRow, StatementRow

__all__ = ["OutboxWorker", "SendOutcome"]

log = logging.getLogger("consentry.mail")


@dataclass(frozen=True, slots=True)
class SendOutcome:
    result: Literal["sent", "bounced", "retry", "cancelled", "failed"]
    error: str | None = None


def _code_text(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(message.split())}"[:500]


class OutboxWorker:
    """Sends due outbox rows; see the module docstring for the delivery rules."""

    def __init__(
        self,
        db: Database,
        settings: ServerSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_attempts: int = 8,
        backoff_base: float = 30.0,
        backoff_cap: float = 6 * 3600.0,
        lease: float = 300.0,
        timeout: float = 30.0,
        connections: int = 4,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.lease = lease
        self.timeout = timeout
        self.connections = max(1, connections)
        self.smtp = settings.smtp  # parsed once: a bad URL fails here, not per message

    def backoff(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed attempt: base, doubling each time, up to cap."""
        seconds = min(self.backoff_cap, self.backoff_base * 2 ** max(attempts - 1, 0))
        return timedelta(seconds=seconds)

    # -- one round ---------------------------------------------------------------------------

    def run_once(self, limit: int = 100) -> int:
        """Send up to ``limit`` due messages; returns how many were sent."""
        now = self.clock()
        claimed = self._claim(limit, now)
        if not claimed:
            return 0
        messages, outcomes = self._render(claimed, now)
        outcomes.update(self._send(messages))
        self._record(outcomes, claimed)
        return sum(1 for o in outcomes.values() if o.result == "sent")

    def run_forever(
        self, stop: threading.Event, *, interval: float = 1.0, limit: int = 100
    ) -> None:
        """Send until ``stop`` is set; idles ``interval`` seconds when the queue is empty."""
        while not stop.is_set():
            try:
                sent = self.run_once(limit)
            except ConsentryError as exc:  # e.g. the database is locked for a while
                log.warning("mail worker: %s", exc)
                sent = 0
            if sent < limit:
                stop.wait(interval)

    def _claim(self, limit: int, now: datetime) -> dict[int, int]:
        """Claim due rows; returns {outbox id: attempts including this one}."""
        with self.db.write(log=False) as session:
            query = (
                select(OutboxRow.id, OutboxRow.attempts)
                .where(OutboxRow.state == "queued", OutboxRow.next_attempt_at <= now)
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                .limit(limit)
            )
            if not self.db.settings.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            if not rows:
                return {}
            ids = [row_id for row_id, _ in rows]
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(ids))
                .values(
                    attempts=OutboxRow.attempts + 1,
                    last_attempt_at=now,
                    next_attempt_at=now + timedelta(seconds=self.lease),
                )
                .execution_options(synchronize_session=False)
            )
            return {row_id: attempts + 1 for row_id, attempts in rows}

    def _render(
        self, claimed: dict[int, int], now: datetime
    ) -> tuple[list[tuple[int, str, Message]], dict[int, SendOutcome]]:
        base = self.settings.base_url
        messages: list[tuple[int, str, Message]] = []
        outcomes: dict[int, SendOutcome] = {}
        with self.db.read() as session:
            rows = session.execute(
                select(OutboxRow, SignatureRow, StatementRow)
                .join(SignatureRow, SignatureRow.id == OutboxRow.signature_id)
                .join(StatementRow, StatementRow.id == SignatureRow.statement_id)
                .where(OutboxRow.id.in_(list(claimed)))
                .order_by(OutboxRow.id)
            ).all()
            # Rendered inside the session: the rows expire when the read ends.
            for row, sig, statement in rows:
                if sig.email is None or row.withdraw_nonce is None:
                    # Erased or anonymised since it was queued: nobody to write to any more.
                    outcomes[row.id] = SendOutcome("cancelled", "signer data erased")
                    continue
                secret = self.settings.secret_key
                confirm_url = None
                if row.confirm_nonce is not None:
                    token = derive_token(secret, "confirm", row.confirm_nonce)
                    confirm_url = f"{base}/confirm/{token}"
                withdraw = derive_token(secret, "withdraw", row.withdraw_nonce)
                parts = MessageParts(
                    kind=cast(MessageKind, row.kind),
                    to=sig.email,
                    name=sig.name or "",
                    title=statement.title,
                    statement_url=f"{base}/statements/{statement.slug}",
                    withdraw_url=f"{base}/withdraw/{withdraw}",
                    confirm_url=confirm_url,
                    ordinal=sig.ordinal,
                    confirm_hours=round(self.settings.confirm_ttl.total_seconds() / 3600),
                )
                try:
                    message = build_message(parts, mail_from=self.settings.mail_from, when=now)
                except (ValueError, TypeError, LookupError) as exc:
                    # One unwritable message (e.g. an address the email package refuses)
                    # must not hold up the batch, nor come back every lease forever.
                    outcomes[row.id] = SendOutcome("failed", f"cannot build the message: {exc}")
                    continue
                messages.append((row.id, sig.email, message))
        return messages, outcomes

    def _connect(self) -> smtplib.SMTP:
        target = self.smtp
        client: smtplib.SMTP
        if target.security == "ssl":
            context = ssl.create_default_context()
            client = smtplib.SMTP_SSL(
                target.host, target.port, timeout=self.timeout, context=context
            )
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
            if target.security == "starttls":
                client.starttls(context=ssl.create_default_context())
        if target.username:
            client.login(target.username, target.password or "")
        return client

    def _send(self, messages: Sequence[tuple[int, str, Message]]) -> dict[int, SendOutcome]:
        """Send over up to ``connections`` SMTP connections at once.

        A message costs several round trips (MAIL, RCPT, DATA), mostly spent waiting for the
        server; a few connections in parallel keep the worker busy instead of idle.
        """
        parts = min(self.connections, len(messages))
        if parts <= 1:
            return self._send_connection(messages)
        chunks = [messages[i::parts] for i in range(parts)]
        outcomes: dict[int, SendOutcome] = {}
        with ThreadPoolExecutor(max_workers=parts, thread_name_prefix="consentry-smtp") as pool:
            for part in pool.map(self._send_connection, chunks):
                outcomes.update(part)
        return outcomes

    def _send_connection(
        self, messages: Sequence[tuple[int, str, Message]]
    ) -> dict[int, SendOutcome]:
        outcomes: dict[int, SendOutcome] = {}
        if not messages:
            return outcomes
        envelope_from = parseaddr(self.settings.mail_from)[1]
        try:
            client = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            error = f"cannot connect to {self.smtp.host}:{self.smtp.port}: {exc}"[:500]
            log.warning("mail worker: %s", error)
            return {row_id: SendOutcome("retry", error) for row_id, _, _ in messages}
        try:
            for position, (row_id, to, message) in enumerate(messages):
                try:
                    client.send_message(message, from_addr=envelope_from, to_addrs=[to])
                    outcomes[row_id] = SendOutcome("sent")
                except smtplib.SMTPRecipientsRefused as exc:
                    code, text = next(iter(exc.recipients.values()))
                    permanent = 500 <= code < 600
                    outcomes[row_id] = SendOutcome(
                        "bounced" if permanent else "retry", _code_text(code, text)
                    )
                except smtplib.SMTPSenderRefused as exc:
                    # Our own From refused: a configuration problem, not the signer's bounce.
                    outcomes[row_id] = SendOutcome(
                        "retry", _code_text(exc.smtp_code, exc.smtp_error)
                    )
                except smtplib.SMTPNotSupportedError as exc:
                    # E.g. an internationalised address and a server without SMTPUTF8: no
                    # retry will change that, and the connection is still fine.
                    outcomes[row_id] = SendOutcome("failed", str(exc)[:500])
                except smtplib.SMTPResponseException as exc:
                    permanent = 500 <= exc.smtp_code < 600
                    outcomes[row_id] = SendOutcome(
                        "bounced" if permanent else "retry",
                        _code_text(exc.smtp_code, exc.smtp_error),
                    )
                except (smtplib.SMTPException, OSError) as exc:
                    # The connection broke: this and every later message wait for a retry.
                    error = f"connection lost: {exc}"[:500]
                    for later_id, _, _ in messages[position:]:
                        outcomes[later_id] = SendOutcome("retry", error)
                    break
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
        return outcomes

    def _record(self, outcomes: dict[int, SendOutcome], attempts: dict[int, int]) -> None:
        now = self.clock()
        forget: dict[str, object] = {"confirm_nonce": None, "withdraw_nonce": None}
        with self.db.write(log=False) as session:
            sent = [row_id for row_id, o in outcomes.items() if o.result == "sent"]
            for chunk in (sent[i : i + 500] for i in range(0, len(sent), 500)):
                session.execute(  # the common case: one statement for the whole batch
                    update(OutboxRow)
                    .where(OutboxRow.id.in_(chunk))
                    .values(state="sent", sent_at=now, last_error=None, **forget)
                    .execution_options(synchronize_session=False)
                )
            for row_id, outcome in outcomes.items():
                values: dict[str, object]
                if outcome.result == "sent":
                    continue
                if outcome.result in ("bounced", "cancelled", "failed"):
                    values = {"state": outcome.result, "last_error": outcome.error} | forget
                elif attempts[row_id] >= self.max_attempts:
                    values = {"state": "failed", "last_error": outcome.error} | forget
                else:
                    values = {
                        "next_attempt_at": now + self.backoff(attempts[row_id]),
                        "last_error": outcome.error,
                    }
                session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row_id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
        for row_id, outcome in outcomes.items():
            if outcome.result in ("bounced", "retry"):
                log.info("mail %s: %s (%s)", row_id, outcome.result, outcome.error)

    def counts(self) -> dict[str, int]:
        """How many outbox rows are in each state."""
        with self.db.read() as session:
            rows = session.execute(
                select(OutboxRow.state, func.count()).group_by(OutboxRow.state)
            ).all()
            return {state: int(n) for state, n in rows}
