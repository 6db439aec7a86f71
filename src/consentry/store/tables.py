"""SQLAlchemy 2 tables of the registry.

Integer primary keys use AUTOINCREMENT on SQLite (and identity columns on PostgreSQL) so that an
identifier is never handed out twice, even after a row is deleted. Times are stored as naive
UTC and come back timezone-aware (:class:`UTCDateTime`). Nothing here stores the creator's
file: only fingerprints and metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "AgreementRow",
    "Base",
    "DisputeRow",
    "EventRow",
    "FingerprintRow",
    "GrantRow",
    "GrantWorkRow",
    "IdentifierRow",
    "PartyRow",
    "ReservationRow",
    "RevocationRow",
    "UTCDateTime",
    "WorkHolderRow",
    "WorkRow",
]

# Stable constraint names, so Alembic migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Naive UTC in the database, aware UTC in Python; refuses naive datetimes on the way in."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime; use UTC-aware times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101 - DateTime impl returns datetimes
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_AUTO = {"sqlite_autoincrement": True}


class PartyRow(Base):
    __tablename__ = "parties"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(500))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    verification: Mapped[int] = mapped_column(Integer, default=0)
    vouched_by: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    is_registrar: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WorkRow(Base):
    __tablename__ = "works"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(1000))
    media_type: Mapped[str] = mapped_column(String(16))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    registered_by: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    size_bytes: Mapped[int] = mapped_column(Integer)
    void: Mapped[bool] = mapped_column(Boolean, default=False)


class WorkHolderRow(Base):
    __tablename__ = "work_holders"
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id"), primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(64))
    share: Mapped[str | None] = mapped_column(String(32))
    """Decimal percentage as text, so no backend rounds it."""


class FingerprintRow(Base):
    __tablename__ = "fingerprints"
    __table_args__ = (Index("ix_fingerprints_kind_lookup", "kind", "lookup"), _AUTO)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    lookup: Mapped[str] = mapped_column(String(128))
    """``value`` itself when short, else its SHA-256: btree indexes cap key length."""


class IdentifierRow(Base):
    __tablename__ = "identifiers"
    __table_args__ = (Index("ix_identifiers_scheme_value", "scheme", "value"),)
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id"), primary_key=True)
    scheme: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(500), primary_key=True)


class GrantRow(Base):
    __tablename__ = "grants"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    grantor: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    licensee: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    purposes: Mapped[str] = mapped_column(String(200))
    """Sorted, comma-separated purpose values."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    catalogue_holder: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), index=True)
    include_future: Mapped[bool] = mapped_column(Boolean, default=False)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    terms_text: Mapped[str] = mapped_column(Text, default="")
    payment: Mapped[str] = mapped_column(String(16))
    amount: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str | None] = mapped_column(String(3))
    min_verification: Mapped[int] = mapped_column(Integer, default=0)


class GrantWorkRow(Base):
    __tablename__ = "grant_works"
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"), primary_key=True)
    work_id: Mapped[int] = mapped_column(ForeignKey("works.id"), primary_key=True, index=True)


class AgreementRow(Base):
    __tablename__ = "agreements"
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"), primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class RevocationRow(Base):
    __tablename__ = "revocations"
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"), primary_key=True)
    by: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    effective: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")


class ReservationRow(Base):
    __tablename__ = "reservations"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    by: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    work_id: Mapped[int | None] = mapped_column(ForeignKey("works.id"), index=True)
    purposes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DisputeRow(Base):
    __tablename__ = "disputes"
    __table_args__ = _AUTO
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    work_a: Mapped[int] = mapped_column(ForeignKey("works.id"), index=True)
    work_b: Mapped[int] = mapped_column(ForeignKey("works.id"), index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    resolution: Mapped[str | None] = mapped_column(Text)


class EventRow(Base):
    """The append-only journal: one row per change, written in the change's transaction.

    Triggers created by the migration refuse UPDATE and DELETE on this table.
    """

    __tablename__ = "events"
    __table_args__ = _AUTO
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[str] = mapped_column(Text)
    """RFC 8785 canonical JSON of the change (ids and terms; no names or e-mail addresses)."""
