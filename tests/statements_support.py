"""Helpers shared by the statements tests: a settable clock, requests, the links in the outbox."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from consentry.config import ServerSettings, Settings
from consentry.statements import SignRequest
from consentry.statements.tokens import derive_token
from consentry.store.database import Database
from consentry.store.statement_tables import OutboxRow, SignatureRow

SECRET = "test-secret-" + "x" * 40
_ips = itertools.count(1)


@dataclass
class Clock:
    """A clock the test moves by hand (aware UTC)."""

    now: datetime = field(default_factory=lambda: datetime(2027, 3, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def server_settings(registry: Settings, **env: str) -> ServerSettings:
    base = {"CONSENTRY_SECRET_KEY": SECRET}
    return ServerSettings.load(registry, dev=True, env=base | env)


def fresh_ip() -> str:
    """A new documentation-range address per call, so IP rate limits stay out of the way."""
    n = next(_ips)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def request(slug: str = "open-letter", **changes: Any) -> SignRequest:
    base = SignRequest(
        slug=slug,
        name="Ann Author",
        email="ann@example.org",
        show_name=True,
        occupation=None,
        country=None,
        organisation=None,
        ip=fresh_ip(),
        user_agent="Mozilla/5.0 (test)",
        honeypot="",
        form_age_seconds=30.0,
    )
    return replace(base, **changes)


@dataclass(frozen=True)
class Mail:
    id: int
    kind: str
    to: str | None
    state: str
    confirm: str | None
    withdraw: str | None


def outbox(db: Database, secret: str = SECRET) -> list[Mail]:
    """Every outbox row with the links its message carries (derived as the worker does)."""
    with db.read() as session:
        rows = session.execute(
            select(OutboxRow, SignatureRow.email)
            .join(SignatureRow, SignatureRow.id == OutboxRow.signature_id)
            .order_by(OutboxRow.id)
        ).all()
        return [
            Mail(
                id=row.id,
                kind=row.kind,
                to=email,
                state=row.state,
                confirm=derive_token(secret, "confirm", row.confirm_nonce)
                if row.confirm_nonce
                else None,
                withdraw=derive_token(secret, "withdraw", row.withdraw_nonce)
                if row.withdraw_nonce
                else None,
            )
            for row, email in rows
        ]


def last_mail(db: Database, to: str | None = None, kind: str | None = None) -> Mail:
    mails = [
        m for m in outbox(db) if (to is None or m.to == to) and (kind is None or m.kind == kind)
    ]
    assert mails, f"no e-mail to {to} ({kind})"
    return mails[-1]
