"""Decisions: admit or deny, always with machine-readable reasons and evidence."""

from __future__ import annotations

from dataclasses import dataclass
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
    stage: str = "exact"


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
