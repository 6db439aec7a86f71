"""The values the statements service takes and returns (no I/O here).

These are the names of the contract with the web layer (``docs/design/statements-contract.md``):
states, outcomes and read-only views. Operator-side inputs (:class:`StatementSpec`,
:class:`StatementChanges`, :class:`InvalidationCondition`) validate themselves in the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from consentry.config import RateLimits

__all__ = [
    "FIELD_LIMITS",
    "OPTIONAL_FIELDS",
    "InvalidationCondition",
    "Operator",
    "PublicSigner",
    "SignOutcome",
    "SignRequest",
    "SignResult",
    "SignatureRecord",
    "SignatureState",
    "SignerKind",
    "StatementChanges",
    "StatementSpec",
    "StatementState",
    "StatementView",
    "TokenInfo",
]

SignerKind = Literal["person", "notable", "organisation"]

# Fields a statement may require from its signers, and the longest value each field accepts.
OPTIONAL_FIELDS = ("occupation", "country", "organisation")
FIELD_LIMITS = {"name": 200, "occupation": 200, "country": 100, "organisation": 200}


class StatementState(StrEnum):
    DRAFT = "draft"  # not opened yet, or opened with an opening date still in the future
    OPEN = "open"  # opened by an operator and between opens_at and closes_at
    CLOSED = "closed"  # closed by an operator or past closes_at


class SignatureState(StrEnum):
    PENDING = "pending"  # submitted, e-mail address not confirmed yet
    VALIDATED = "validated"  # confirmed: the only state that counts
    INVALIDATED = "invalidated"  # withdrawn by the signer or invalidated by an operator
    FRAUDULENT = "fraudulent"  # honeypot, too fast, blocklisted or over a rate limit


class SignOutcome(StrEnum):
    ACCEPTED = "accepted"  # new pending signature, confirmation e-mail queued
    DUPLICATE = "duplicate"  # already signed: nothing changes, an "already signed" e-mail queued
    SUPPRESSED = "suppressed"  # stored as fraudulent, no e-mail
    INVALID = "invalid"  # field errors; nothing written


@dataclass(frozen=True)
class StatementView:
    slug: str
    title: str
    text: str
    languages: tuple[str, ...]
    state: StatementState
    opens_at: datetime | None
    closes_at: datetime | None
    goal: int | None
    required_fields: tuple[str, ...]
    signature_count: int
    count_updated_at: datetime | None
    rate_limits: RateLimits | None = None
    """The statement's own limits (None: the server's defaults apply)."""


@dataclass(frozen=True)
class PublicSigner:
    ordinal: int
    name: str | None  # None = "Anonymous" (the signer chose not to be shown)
    occupation: str | None
    country: str | None
    kind: SignerKind  # notable / organisation only once an operator vetted it


@dataclass(frozen=True)
class SignRequest:
    slug: str
    name: str
    email: str
    show_name: bool
    occupation: str | None
    country: str | None
    organisation: str | None
    ip: str
    user_agent: str
    honeypot: str  # value of the hidden field; non-empty = bot
    form_age_seconds: float  # now - time the form was issued (from the signed form token)
    language: str = "en"


@dataclass(frozen=True)
class SignResult:
    outcome: SignOutcome
    errors: dict[str, str] = field(default_factory=dict)  # field -> message


@dataclass(frozen=True)
class TokenInfo:
    """What a confirmation or withdraw page shows before the POST that acts."""

    slug: str
    title: str
    masked_email: str
    state: SignatureState
    ordinal: int | None


@dataclass(frozen=True)
class StatementSpec:
    slug: str
    title: str
    text: str
    languages: tuple[str, ...] = ("en",)
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    goal: int | None = None
    required_fields: tuple[str, ...] = ()
    rate_limits: RateLimits | None = None


@dataclass(frozen=True)
class StatementChanges:
    """An edit: ``None`` leaves a field as it is; names in ``clear`` are set to nothing.

    ``clear`` may name ``opens_at``, ``closes_at``, ``goal``, ``rate_limits``. Title and text
    can change only while the statement is a draft (signers signed *that* text).
    """

    title: str | None = None
    text: str | None = None
    languages: tuple[str, ...] | None = None
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    goal: int | None = None
    required_fields: tuple[str, ...] | None = None
    rate_limits: RateLimits | None = None
    clear: frozenset[str] = frozenset()


@dataclass(frozen=True)
class InvalidationCondition:
    """Which signatures a bulk invalidation hits; every given condition must hold.

    Only live signatures (pending or validated) are ever invalidated; ``state`` narrows that
    to one of the two. At least one of the other conditions is required, so that no typo
    invalidates a whole statement.
    """

    ip: str | None = None  # an address or CIDR, e.g. 203.0.113.0/24
    email_domain: str | None = None  # the domain and its subdomains
    created_from: datetime | None = None
    created_to: datetime | None = None  # exclusive
    user_agent_contains: str | None = None
    state: SignatureState | None = None


@dataclass(frozen=True)
class SignatureRecord:
    """One signature as operators see it (personal data included; never public)."""

    id: int
    slug: str
    state: SignatureState
    name: str | None
    email: str | None
    show_name: bool
    occupation: str | None
    country: str | None
    organisation: str | None
    ip: str | None
    user_agent: str | None
    language: str
    created_at: datetime
    confirmed_at: datetime | None
    withdrawn_at: datetime | None
    ordinal: int | None
    kind: SignerKind
    vetted_by: str | None
    vetted_at: datetime | None
    vet_method: str | None
    fraud_reason: str | None
    invalidated_reason: str | None
    erased: bool


@dataclass(frozen=True)
class Operator:
    id: int
    username: str
    roles: frozenset[str]
    created_at: datetime

    def has(self, role: str) -> bool:
        return role in self.roles
