"""Decisions: admit or deny, always with machine-readable reasons and evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Decision", "Evidence", "Outcome", "Reason", "WorkMatch"]


class Outcome(StrEnum):
    ADMIT = "admit"
    DENY = "deny"


class Reason(StrEnum):
    """Why an item was admitted or denied. Stable strings: reports and audits depend on them."""

    GRANT_IN_FORCE = "grant-in-force"
    """Admit: a grant agreed by every holder covers the licensee, purpose and time."""
    BASIS_PUBLIC_DOMAIN = "basis-public-domain"
    """Admit (gate policy opt-in): unregistered item whose metadata says public domain."""
    BASIS_OPEN_LICENCE = "basis-open-licence"
    """Admit (gate policy opt-in): unregistered item under an open licence the policy accepts."""
    BASIS_OWNED = "basis-owned"
    """Admit (gate policy opt-in): unregistered item carrying the licensee's provenance tag."""
    BASIS_COLLECTION_LICENCE = "basis-collection-licence"
    """Admit (gate policy opt-in): unregistered item from a source a contract covers."""

    NO_MATCHING_WORK = "no-matching-work"
    NO_GRANT = "no-grant"
    GRANT_PENDING = "grant-pending-agreement"
    GRANT_EXPIRED = "grant-expired"
    GRANT_NOT_YET_VALID = "grant-not-yet-valid"
    GRANT_REVOKED = "grant-revoked"
    PURPOSE_NOT_COVERED = "purpose-not-covered"
    LICENSEE_NOT_COVERED = "licensee-not-covered"
    RESERVED = "reserved"
    DISPUTED = "disputed"
    VERIFICATION_TOO_LOW = "holder-verification-too-low"
    WORK_VOID = "work-void"
    """Evidence only: a matched registration was voided by a dispute, so it is ignored."""
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class WorkMatch:
    """A recogniser's claim that an item contains a registered work."""

    work_id: str
    score: float = 1.0
    """Confidence in [0, 1]; 1.0 for byte-identical copies."""
    stage: str = "exact"
    """Which recognition stage matched (``exact``, ``pdq``, ``region``, ``text``, ...)."""
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)
    """What a rights holder can read: matched words, positions, distances (JSON-ready)."""

    def to_json(self) -> dict[str, Any]:
        return {"work_id": self.work_id, "score": self.score, "stage": self.stage, **self.evidence}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact behind a decision: which work matched, which grant counted or failed, and why."""

    reason: Reason
    work_id: str | None = None
    grant_id: str | None = None
    reservation_id: str | None = None
    dispute_id: str | None = None
    score: float | None = None
    stage: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason.value}
        for key in ("work_id", "grant_id", "reservation_id", "dispute_id", "score", "stage"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reasons: tuple[Reason, ...]
    evidence: tuple[Evidence, ...]

    @property
    def admitted(self) -> bool:
        return self.outcome is Outcome.ADMIT

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.outcome.value,
            "reasons": [r.value for r in self.reasons],
            "evidence": [e.to_json() for e in self.evidence],
        }
