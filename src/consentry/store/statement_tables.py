"""SQLAlchemy 2 tables of public statements, their signatures, the e-mail outbox and operators.

Signatures carry personal data (names, e-mail addresses, IP addresses), so nothing here is
written to the tamper-evident events journal; operator actions are audited in
``operator_actions`` instead. Tokens (confirmation and withdraw links, operator sessions) are
stored only as their SHA-256; the outbox keeps the random *nonce* from which the worker
derives a message's links with the server secret, and forgets it once the message is sent.

Indexes serve the hot paths of a signing batch: the duplicate check (unique on the live
``(statement_id, email_canonical)``), the rate-limit windows ``(statement_id, ip_key,
created_at)`` and ``(statement_id, email_domain, created_at)``, and the batched counts
``(state, counted)``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from consentry.store.tables import Base, UTCDateTime

__all__ = [
    "BlockRow",
    "OperatorActionRow",
    "OperatorRow",
    "OperatorSessionRow",
    "OutboxRow",
    "SignatureRow",
    "SignatureTokenRow",
    "StatementRow",
]

_AUTO = {"sqlite_autoincrement": True}

# The states in which a signature occupies its e-mail address on a statement (a duplicate).
LIVE_STATES = ("pending", "validated")
_LIVE = text("state IN ('pending', 'validated') AND email_canonical IS NOT NULL")


class StatementRow(Base):
    __tablename__ = "statements"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    languages: Mapped[str] = mapped_column(String(200))
    """Comma-separated language tags, the first being the statement's main language."""
    status: Mapped[str] = mapped_column(String(16))
    """What operators did: ``draft`` until opened, ``open``, ``closed`` (dates refine it)."""
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    goal: Mapped[int | None] = mapped_column(Integer)
    required_fields: Mapped[str] = mapped_column(String(200), default="")
    rate_limits: Mapped[str | None] = mapped_column(Text)
    """JSON overrides of the server's rate limits (``{"ip_burst": "5/60"}``), or NULL."""
    signature_count: Mapped[int] = mapped_column(Integer, default=0)
    count_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_ordinal: Mapped[int] = mapped_column(Integer, default=0)
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class SignatureRow(Base):
    __tablename__ = "signatures"
    __table_args__ = (
        # Duplicates made impossible even for concurrent writers (several server workers).
        Index(
            "uq_signatures_live_email",
            "statement_id",
            "email_canonical",
            unique=True,
            sqlite_where=_LIVE,
            postgresql_where=_LIVE,
        ),
        UniqueConstraint("statement_id", "ordinal", name="uq_signatures_statement_ordinal"),
        Index("ix_signatures_rate_ip", "statement_id", "ip_key", "created_at"),
        Index("ix_signatures_rate_domain", "statement_id", "email_domain", "created_at"),
        Index("ix_signatures_counting", "state", "counted"),
        Index("ix_signatures_public", "statement_id", "state", "kind", "ordinal"),
        Index("ix_signatures_email", "email_canonical"),
        _AUTO,
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("statements.id"))
    state: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    """As typed (the address mail goes to); NULL once erased or anonymised."""
    email_canonical: Mapped[str | None] = mapped_column(String(320))
    email_domain: Mapped[str] = mapped_column(String(255))
    show_name: Mapped[bool] = mapped_column(Boolean, default=False)
    occupation: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(100))
    organisation: Mapped[str | None] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    ip_key: Mapped[str] = mapped_column(String(64))
    """What rate limits count: the IPv4 address, or the /64 network of an IPv6 address."""
    user_agent: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(16), default="en")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    invalidated_reason: Mapped[str | None] = mapped_column(String(200))
    fraud_reason: Mapped[str | None] = mapped_column(String(64))
    ordinal: Mapped[int | None] = mapped_column(Integer)
    counted: Mapped[bool] = mapped_column(Boolean, default=False)
    """Whether this signature is part of ``statements.signature_count`` (batched counts)."""
    kind: Mapped[str] = mapped_column(String(16), default="person")
    vetted_by: Mapped[str | None] = mapped_column(String(100))
    vetted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    vet_method: Mapped[str | None] = mapped_column(String(200))
    vet_note: Mapped[str | None] = mapped_column(Text)
    notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Last "already signed" e-mail: repeated duplicates within minutes queue no more mail."""
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SignatureTokenRow(Base):
    """A confirmation or withdraw link: only the SHA-256 of the token is kept."""

    __tablename__ = "signature_tokens"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """One e-mail to send, written in the transaction of the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"), _AUTO)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    signature_id: Mapped[int] = mapped_column(ForeignKey("signatures.id"), index=True)
    confirm_nonce: Mapped[str | None] = mapped_column(String(64))
    withdraw_nonce: Mapped[str | None] = mapped_column(String(64))
    """Nonces of the links (token = HMAC(secret, purpose, nonce)); cleared once sent."""
    state: Mapped[str] = mapped_column(String(16), default="queued")
    """``queued`` → ``sent`` | ``bounced`` (5xx) | ``failed`` (attempts used up) | ``cancelled``."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BlockRow(Base):
    __tablename__ = "blocklist"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_blocklist_kind_value"), _AUTO)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OperatorRow(Base):
    __tablename__ = "operators"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OperatorSessionRow(Base):
    __tablename__ = "operator_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OperatorActionRow(Base):
    """The audit trail of operators: who did what, when, with which parameters."""

    __tablename__ = "operator_actions"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    operator: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    statement_id: Mapped[int | None] = mapped_column(ForeignKey("statements.id"), index=True)
    params: Mapped[str] = mapped_column(Text)
    """JSON of the action's parameters (never e-mail addresses in clear: see erase)."""
