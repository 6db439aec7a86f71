"""Registry entities as immutable values: parties, works, holders, grants, reservations, disputes.

Pure: no I/O. The store layer maps these to tables; the gate reads them from a snapshot. All
times are timezone-aware UTC datetimes; identifiers are opaque strings assigned by the store
(``P1``, ``W1``, ``G1``, ...) and never reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, StrEnum

from consentry.domain.purposes import Purpose
from consentry.errors import InvalidInputError
from consentry.fingerprint.base import Fingerprint

__all__ = [
    "Agreement",
    "CatalogueScope",
    "Dispute",
    "Grant",
    "Holder",
    "MediaType",
    "Party",
    "PartyKind",
    "PaymentKind",
    "Reservation",
    "Revocation",
    "Terms",
    "VerificationLevel",
    "Work",
    "parse_verification_level",
]


class PartyKind(StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


class VerificationLevel(IntEnum):
    """How sure the registry is that a party is who it says: ordered, higher is stronger."""

    UNVERIFIED = 0
    EMAIL = 1
    """The party proved control of its e-mail address."""
    VOUCHED = 2
    """A registrar organisation (a guild, a collecting society) vouched for the party."""
    OPERATOR = 3
    """The registry operator checked the party's identity."""

    @property
    def label(self) -> str:
        return self.name.lower()


def parse_verification_level(value: str) -> VerificationLevel:
    try:
        return VerificationLevel[value.strip().upper()]
    except KeyError:
        valid = ", ".join(level.label for level in VerificationLevel)
        raise InvalidInputError(
            f"unknown verification level {value!r}; expected one of: {valid}"
        ) from None


class MediaType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    OTHER = "other"


class PaymentKind(StrEnum):
    FREE = "free"
    ATTRIBUTION = "attribution"
    FLAT = "flat"
    PER_ITEM = "per-item"


@dataclass(frozen=True, slots=True)
class Party:
    id: str
    kind: PartyKind
    name: str
    email: str | None
    verification: VerificationLevel = VerificationLevel.UNVERIFIED
    vouched_by: str | None = None
    """Registrar organisation that vouched for this party (set with ``VOUCHED``)."""
    is_registrar: bool = False
    """May vouch for others; only an operator-verified organisation can be one."""


@dataclass(frozen=True, slots=True)
class Holder:
    party_id: str
    role: str = "author"
    share: Decimal | None = None
    """Percentage of the rights this holder has, when the holders stated it."""


@dataclass(frozen=True, slots=True)
class Work:
    id: str
    title: str
    media_type: MediaType
    registered_at: datetime
    holders: tuple[Holder, ...]
    fingerprints: tuple[Fingerprint, ...] = ()
    identifiers: tuple[tuple[str, str], ...] = ()
    """External identifiers as (scheme, value): ("isbn", ...), ("isrc", ...), ("url", ...)."""
    created_at: datetime | None = None
    """When the work itself was created, if the holder said so."""
    void: bool = False
    """Set when a dispute was resolved against this registration; a void work grants nothing."""

    @property
    def holder_ids(self) -> frozenset[str]:
        return frozenset(h.party_id for h in self.holders)


@dataclass(frozen=True, slots=True)
class Terms:
    text: str = ""
    payment: PaymentKind = PaymentKind.FREE
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogueScope:
    """A grant over all works of one holder, optionally including works registered later."""

    holder_id: str
    include_future: bool = False


@dataclass(frozen=True, slots=True)
class Agreement:
    party_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Revocation:
    by: str
    at: datetime
    """When the revocation was recorded."""
    effective: datetime
    """From when the grant stops counting; never before ``at`` (no retroactive revocation)."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    grantor: str
    licensee: str
    purposes: frozenset[Purpose]
    created_at: datetime
    work_ids: frozenset[str] = frozenset()
    catalogue: CatalogueScope | None = None
    not_before: datetime | None = None
    expires: datetime | None = None
    terms: Terms = field(default_factory=Terms)
    min_verification: VerificationLevel = VerificationLevel.UNVERIFIED
    agreements: tuple[Agreement, ...] = ()
    revocation: Revocation | None = None

    def covers_work(self, work: Work) -> bool:
        """Whether the grant's scope names this work (agreement and time are checked elsewhere)."""
        if work.id in self.work_ids:
            return True
        if self.catalogue is None or self.catalogue.holder_id not in work.holder_ids:
            return False
        return self.catalogue.include_future or work.registered_at <= self.created_at

    def agreed_by(self, at: datetime) -> frozenset[str]:
        return frozenset(a.party_id for a in self.agreements if a.at <= at)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A holder's explicit "do not use for these purposes", for one work or all its works."""

    id: str
    by: str
    purposes: frozenset[Purpose]
    created_at: datetime
    work_id: str | None = None
    """``None`` means every work the party holds, now and later."""
    lifted_at: datetime | None = None

    def active(self, at: datetime) -> bool:
        return self.created_at <= at and (self.lifted_at is None or at < self.lifted_at)

    def applies_to(self, work: Work) -> bool:
        if self.work_id is not None:
            return self.work_id == work.id
        return self.by in work.holder_ids


@dataclass(frozen=True, slots=True)
class Dispute:
    """Two registered works of different parties that match the same content."""

    id: str
    work_ids: tuple[str, str]
    opened_at: datetime
    reason: str
    resolved_at: datetime | None = None
    resolution: str | None = None

    def open_at(self, at: datetime) -> bool:
        return self.opened_at <= at and (self.resolved_at is None or at < self.resolved_at)
