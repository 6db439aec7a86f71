"""The fail-closed decision: may licensee L use an item for purpose P at time T?

Pure function of its arguments. An item is admitted only when it matched at least one
registered work and **every** matched work is covered by a grant that

1. names the licensee and the purpose,
2. was recorded, has started (``not_before``) and has not expired at ``at``,
3. was not revoked with effect at or before ``at``,
4. was agreed by every holder of the work by ``at``,
5. and whose holders all meet the grant's minimum verification level,

and no holder of the work reserved the purpose and the work is not in an open dispute. Anything
else, including an unknown work id or an unreadable item, is a deny with its reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from consentry.domain.decision import Decision, Evidence, Outcome, Reason, WorkMatch
from consentry.domain.model import Grant, Work
from consentry.domain.purposes import Purpose
from consentry.domain.view import RegistryView

__all__ = ["ItemFacts", "best_matches", "decide", "grant_failures"]


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """What the recognisers found out about one item."""

    key: str
    matches: tuple[WorkMatch, ...] = ()
    unreadable: str | None = None
    """Why the item could not be read; set means the item is denied as unreadable."""


def grant_failures(
    grant: Grant, work: Work, licensee: str, purpose: Purpose, at: datetime, view: RegistryView
) -> list[Evidence]:
    """Every reason why ``grant`` does not admit ``work`` for ``licensee``/``purpose`` at ``at``.

    An empty list means the grant is valid, agreed and in force for this use.
    """
    out: list[Evidence] = []

    def fail(reason: Reason, detail: str) -> None:
        out.append(Evidence(reason, work_id=work.id, grant_id=grant.id, detail=detail))

    if grant.licensee != licensee:
        fail(Reason.LICENSEE_NOT_COVERED, f"grant is for licensee {grant.licensee}")
    if purpose not in grant.purposes:
        names = ", ".join(sorted(p.value for p in grant.purposes))
        fail(Reason.PURPOSE_NOT_COVERED, f"grant covers {names}")
    if grant.revocation is not None and grant.revocation.effective <= at:
        fail(Reason.GRANT_REVOKED, f"revoked from {grant.revocation.effective.isoformat()}")
    if grant.not_before is not None and at < grant.not_before:
        fail(Reason.GRANT_NOT_YET_VALID, f"valid from {grant.not_before.isoformat()}")
    if grant.expires is not None and at >= grant.expires:
        fail(Reason.GRANT_EXPIRED, f"expired {grant.expires.isoformat()}")
    missing = sorted(work.holder_ids - grant.agreed_by(at))
    if not work.holder_ids:
        fail(Reason.GRANT_PENDING, "the work has no holders to agree")
    elif missing:
        fail(Reason.GRANT_PENDING, f"awaiting agreement of {', '.join(missing)}")
    weak: list[str] = []
    for holder_id in sorted(work.holder_ids):
        party = view.party(holder_id)
        if party is None or party.verification < grant.min_verification:
            weak.append(holder_id)
    if weak:
        fail(
            Reason.VERIFICATION_TOO_LOW,
            f"{', '.join(weak)} below {grant.min_verification.label}",
        )
    return out


def _judge_work(
    match: WorkMatch, licensee: str, purpose: Purpose, at: datetime, view: RegistryView
) -> tuple[bool, list[Evidence]]:
    """(admitted, evidence) for one matched work."""
    work = view.work(match.work_id)

    def here(reason: Reason, **kw: str) -> Evidence:
        return Evidence(reason, match.work_id, score=match.score, stage=match.stage, **kw)

    if work is None:
        return False, [here(Reason.NO_MATCHING_WORK, detail="work not in registry")]
    # Sorted by id: evidence must not depend on the order a store returns rows in, because
    # decisions are hashed into signed manifests.
    blocks: list[Evidence] = [
        here(Reason.DISPUTED, dispute_id=d.id, detail=d.reason)
        for d in sorted(view.disputes_for(work), key=lambda d: _id_key(d.id))
        if d.open_at(at)
    ]
    blocks += [
        here(Reason.RESERVED, reservation_id=r.id, detail=f"reserved by {r.by}")
        for r in sorted(view.reservations_for(work), key=lambda r: _id_key(r.id))
        if r.active(at) and purpose in r.purposes
    ]

    # Grants recorded after `at` did not exist then: they can neither admit nor explain.
    grants = [g for g in view.grants_for(work) if g.created_at <= at]
    failures = [(g, grant_failures(g, work, licensee, purpose, at, view)) for g in grants]
    in_force = [g for g, why in failures if not why]
    if in_force:
        grant = in_force[0]
        found = here(Reason.GRANT_IN_FORCE, grant_id=grant.id)
        return not blocks, [found, *blocks]
    if not grants:
        return False, [*blocks, here(Reason.NO_GRANT)]
    # Explain with the grants that came closest: fewest failed conditions.
    fewest = min(len(why) for _, why in failures)
    closest = [e for _, why in failures if len(why) == fewest for e in why]
    return False, [*blocks, *closest]


def _id_key(ident: str) -> tuple[int, str]:
    """Natural order for ids like W2 < W10 (registry ids are a letter and a number)."""
    digits = ident[1:]
    return (int(digits), ident) if digits.isdigit() else (-1, ident)


def _ordered_reasons(evidence: Iterable[Evidence]) -> tuple[Reason, ...]:
    present = {e.reason for e in evidence}
    return tuple(r for r in Reason if r in present)


def best_matches(matches: Sequence[WorkMatch]) -> list[WorkMatch]:
    """One match per work (its best score), best first; ties by work id."""
    best: dict[str, WorkMatch] = {}
    for m in matches:
        seen = best.get(m.work_id)
        # Ties go to the alphabetically first stage, so the result is order-independent.
        if seen is None or (m.score, seen.stage) > (seen.score, m.stage):
            best[m.work_id] = m
    return sorted(best.values(), key=lambda m: (-m.score, _id_key(m.work_id)))


def decide(
    item: ItemFacts, licensee: str, purpose: Purpose, at: datetime, view: RegistryView
) -> Decision:
    """Admit only what a valid, agreed, in-force grant covers; deny everything else, with why."""
    if at.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware time")
    if item.unreadable is not None:
        ev = Evidence(Reason.UNREADABLE, detail=item.unreadable)
        return Decision(Outcome.DENY, (Reason.UNREADABLE,), (ev,))
    matches = best_matches(item.matches)
    if not matches:
        ev = Evidence(Reason.NO_MATCHING_WORK, detail="no registered work recognised")
        return Decision(Outcome.DENY, (Reason.NO_MATCHING_WORK,), (ev,))

    # A voided registration is not a registered work: it neither blocks nor admits, but the
    # evidence says it was seen.
    voided = [m for m in matches if (w := view.work(m.work_id)) is not None and w.void]
    evidence: list[Evidence] = [
        Evidence(
            Reason.WORK_VOID,
            m.work_id,
            score=m.score,
            stage=m.stage,
            detail="registration voided by a dispute resolution",
        )
        for m in voided
    ]
    matches = [m for m in matches if m not in voided]
    if not matches:
        evidence.append(Evidence(Reason.NO_MATCHING_WORK, detail="only voided works matched"))
        return Decision(Outcome.DENY, (Reason.NO_MATCHING_WORK,), tuple(evidence))

    admitted_all = True
    for match in matches:
        admitted, why = _judge_work(match, licensee, purpose, at, view)
        admitted_all = admitted_all and admitted
        evidence.extend(why)
    if admitted_all:
        return Decision(Outcome.ADMIT, (Reason.GRANT_IN_FORCE,), tuple(evidence))
    informational = (Reason.GRANT_IN_FORCE, Reason.WORK_VOID)
    deny_evidence = [e for e in evidence if e.reason not in informational]
    return Decision(Outcome.DENY, _ordered_reasons(deny_evidence), tuple(evidence))
