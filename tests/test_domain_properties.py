"""Property tests of consentry.domain.decide against an independent oracle.

Random small registries (a few parties, works, grants, reservations and disputes) with every
time drawn from a handful of fixed UTC instants, so that boundary collisions (``at`` equal to
``expires``, ``not_before``, a revocation's effect, an agreement, a lift or a resolution) are
frequent. The oracle below restates the rule of ``decide``'s docstring directly over the raw
registry lists; it never calls ``decide``, ``grant_failures`` or the view's indexes.

Each property runs at least 1,000 examples (the issue asks for that per property).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.domain import (
    Agreement,
    CatalogueScope,
    Decision,
    Dispute,
    Grant,
    Holder,
    ItemFacts,
    MediaType,
    MemoryRegistryView,
    Outcome,
    Party,
    PartyKind,
    Purpose,
    Reason,
    Reservation,
    Revocation,
    VerificationLevel,
    Work,
    WorkMatch,
    decide,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
INSTANTS = tuple(T0 + timedelta(days=d) for d in range(5))
# Purposes asked about are a subset of those grants name, so a grant often covers the ask.
ASKED = (Purpose.TRAIN_GENAI, Purpose.TRAIN_AI)
GRANTABLE = (*ASKED, Purpose.RAG)
UNKNOWN_WORK = "W9"
T = TypeVar("T")

EXAMPLES = settings(max_examples=1000, deadline=None)


@dataclass(frozen=True)
class Registry:
    """The raw lists a view is built from; the oracle reads these, not the view."""

    parties: tuple[Party, ...]
    works: tuple[Work, ...]
    grants: tuple[Grant, ...]
    reservations: tuple[Reservation, ...]
    disputes: tuple[Dispute, ...]

    def view(self) -> MemoryRegistryView:
        return MemoryRegistryView.of(
            parties=self.parties,
            works=self.works,
            grants=self.grants,
            reservations=self.reservations,
            disputes=self.disputes,
        )


@dataclass(frozen=True)
class Case:
    registry: Registry
    item: ItemFacts
    licensee: str
    purpose: Purpose
    at: datetime

    def decide(self, registry: Registry | None = None, item: ItemFacts | None = None) -> Decision:
        reg = registry if registry is not None else self.registry
        return decide(item or self.item, self.licensee, self.purpose, self.at, reg.view())


# -- the strategy ----------------------------------------------------------------------------------
#
# Hypothesis's sampled_from is close to uniform (its integers() are not: they favour 0), so repeated
# entries weight a choice. The weights lean towards admissible cases (about one item in five is
# admitted) while every way to fail, and every boundary of `at`, still occurs often.

T_FIRST, *_, T_LAST = INSTANTS
instants = st.sampled_from(INSTANTS)
early = st.sampled_from((T_FIRST, T_FIRST, T_FIRST, *INSTANTS))
late = st.sampled_from((*INSTANTS, T_LAST, T_LAST))
ending = st.sampled_from((None, *INSTANTS))
often = st.sampled_from((True, True, True, True, False))
mostly = st.sampled_from((True,) * 9 + (False,))
rarely = st.sampled_from((False,) * 7 + (True,))
seldom = st.sampled_from((False,) * 15 + (True,))
levels = st.sampled_from(
    (VerificationLevel.UNVERIFIED, VerificationLevel.UNVERIFIED, *VerificationLevel)
)
grantable = st.sets(st.sampled_from(GRANTABLE), min_size=1)
few = st.sampled_from((0, 0, 0, 1, 1, 2))
some = st.sampled_from((1, 1, 1, 2, 2, 3, 4, 0))
scores = st.sampled_from((0.5, 1.0))
stages = st.sampled_from(("exact", "pdq"))
flaws = st.sampled_from(
    (None, None, "careless", "licensee", "purpose", "not_before", "expires", "revocation",
     "agreement", "verification")
)  # fmt: skip


def pick(draw: st.DrawFn, options: Sequence[T]) -> T:
    return options[draw(st.sampled_from(range(len(options))))]


def subset(draw: st.DrawFn, options: Sequence[T], keep: st.SearchStrategy[bool]) -> list[T]:
    return [o for o in options if draw(keep)]


def at_or_after(draw: st.DrawFn, t: datetime) -> datetime:
    return max(t, draw(instants))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    party_ids = ("P1", "P2", "P3", "P4")[: draw(st.sampled_from((1, 2, 2, 3, 3, 4)))]
    licensee = pick(draw, party_ids)
    purpose = draw(st.sampled_from(ASKED))
    at = draw(late)
    parties = tuple(Party(p, PartyKind.PERSON, p, None, draw(levels)) for p in party_ids)

    works: list[Work] = []
    for wid in ("W1", "W2", "W3")[: draw(st.sampled_from((1, 1, 2, 2, 3)))]:
        # No holders at all only now and then (such a work can never be admitted).
        holders = [] if draw(seldom) else subset(draw, party_ids, often) or [pick(draw, party_ids)]
        works.append(
            Work(
                wid,
                wid,
                MediaType.TEXT,
                draw(early),
                tuple(Holder(h) for h in holders),
                void=draw(rarely),
            )
        )
    work_ids = [w.id for w in works]

    grants: list[Grant] = []
    for n in range(1, draw(some) + 1):
        # Most grants are careful: every condition right but at most one (the flaw), drawn at
        # random so that it often sits on a boundary of `at`. A careless grant draws every field
        # at random. Without careful grants hardly any item would be admitted.
        flaw = draw(flaws)

        def good(
            field: str, value: T, anything: st.SearchStrategy[T], flaw: str | None = flaw
        ) -> T:
            return draw(anything) if flaw in (field, "careless") else value

        created_at = draw(early)
        if draw(often):
            scope = frozenset(subset(draw, work_ids, often) or [pick(draw, work_ids)])
            catalogue = None
        else:
            scope = frozenset()
            catalogue = CatalogueScope(pick(draw, party_ids), draw(st.booleans()))
        revocation = None
        if good("revocation", False, st.booleans()):
            recorded = at_or_after(draw, created_at)
            revocation = Revocation(pick(draw, party_ids), recorded, at_or_after(draw, recorded))
        purposes = draw(grantable)
        if flaw == "purpose":
            purposes = (purposes - {purpose}) or {Purpose.RAG}
        elif flaw != "careless":
            purposes.add(purpose)
        agreed = [p for p in party_ids if good("agreement", True, mostly)]
        grants.append(
            Grant(
                f"G{n}",
                grantor=pick(draw, party_ids),
                licensee=good("licensee", licensee, st.sampled_from(party_ids)),
                purposes=frozenset(purposes),
                created_at=created_at,
                work_ids=scope,
                catalogue=catalogue,
                not_before=good("not_before", None, instants),
                expires=good("expires", None, instants),
                min_verification=good("verification", VerificationLevel.UNVERIFIED, levels),
                agreements=tuple(
                    Agreement(p, good("agreement", T_FIRST, instants)) for p in agreed
                ),
                revocation=revocation,
            )
        )

    # The store only lets a holder reserve one work (RegistryService.reserve checks it), so a
    # work-specific reservation is made by a holder of that work; a blanket one by any party.
    reservations: list[Reservation] = []
    for n in range(1, draw(few) + 1):
        work = pick(draw, works)
        blanket = draw(st.booleans()) or not work.holders
        by = pick(draw, party_ids if blanket else sorted(work.holder_ids))
        created_at = draw(instants)
        lifted = draw(ending)
        reservations.append(
            Reservation(
                f"R{n}",
                by,
                frozenset(draw(grantable)),
                created_at,
                work_id=None if blanket else work.id,
                lifted_at=lifted if lifted is not None and lifted > created_at else None,
            )
        )

    disputes: list[Dispute] = []
    for n in range(1, draw(few) + 1):
        first = pick(draw, work_ids)
        second = pick(draw, [w for w in [*work_ids, UNKNOWN_WORK] if w != first])
        opened = draw(instants)
        resolved = draw(ending)
        disputes.append(
            Dispute(
                f"D{n}",
                (first, second),
                opened,
                "same content",
                resolved_at=resolved if resolved is not None and resolved > opened else None,
            )
        )

    pool = [*work_ids, UNKNOWN_WORK] if draw(seldom) else work_ids
    matches = tuple(
        WorkMatch(pick(draw, pool), draw(scores), draw(stages))
        for _ in range(draw(st.sampled_from((1, 1, 1, 2, 2, 3, 0))))
    )
    return Case(
        Registry(parties, tuple(works), tuple(grants), tuple(reservations), tuple(disputes)),
        ItemFacts("item", matches, "cannot decode" if draw(seldom) else None),
        licensee=licensee,
        purpose=purpose,
        at=at,
    )


# -- the oracle ------------------------------------------------------------------------------------


def scope_covers(g: Grant, w: Work) -> bool:
    holders = {h.party_id for h in w.holders}
    if w.id in g.work_ids:
        return True
    if g.catalogue is None or g.catalogue.holder_id not in holders:
        return False
    return g.catalogue.include_future or w.registered_at <= g.created_at


def grant_valid(
    reg: Registry, g: Grant, w: Work, licensee: str, purpose: Purpose, at: datetime
) -> bool:
    holders = {h.party_id for h in w.holders}
    levels_of = {p.id: p.verification for p in reg.parties}
    return (
        scope_covers(g, w)
        and g.licensee == licensee
        and purpose in g.purposes
        and g.created_at <= at
        and (g.not_before is None or g.not_before <= at)
        and (g.expires is None or at < g.expires)
        and (g.revocation is None or at < g.revocation.effective)
        and len(holders) > 0
        and all(any(a.party_id == h and a.at <= at for a in g.agreements) for h in holders)
        and all(h in levels_of and levels_of[h] >= g.min_verification for h in holders)
    )


def blocked(reg: Registry, w: Work, purpose: Purpose, at: datetime) -> bool:
    holders = {h.party_id for h in w.holders}
    for r in reg.reservations:
        active = r.created_at <= at and (r.lifted_at is None or at < r.lifted_at)
        reaches = r.by in holders and r.work_id in (None, w.id)
        if active and reaches and purpose in r.purposes:
            return True
    for d in reg.disputes:
        if (
            w.id in d.work_ids
            and d.opened_at <= at
            and (d.resolved_at is None or at < d.resolved_at)
        ):
            return True
    return False


def live_works(case: Case) -> list[Work] | None:
    """The non-void matched works, or None if a match names no registered work."""
    by_id = {w.id: w for w in case.registry.works}
    out: dict[str, Work] = {}
    for m in case.item.matches:
        w = by_id.get(m.work_id)
        if w is None:
            return None
        if not w.void:
            out[w.id] = w
    return list(out.values())


def work_covered(case: Case, w: Work) -> bool:
    reg = case.registry
    return not blocked(reg, w, case.purpose, case.at) and any(
        grant_valid(reg, g, w, case.licensee, case.purpose, case.at) for g in reg.grants
    )


def oracle_admits(case: Case) -> bool:
    if case.item.unreadable is not None:
        return False
    live = live_works(case)
    if not live:
        return False
    return all(work_covered(case, w) for w in live)


# -- properties ------------------------------------------------------------------------------------


@EXAMPLES
@given(cases())
def test_soundness_admit_implies_oracle_admits(case: Case) -> None:
    d = case.decide()
    if d.admitted:
        assert case.item.unreadable is None
        live = live_works(case)
        assert live, "admitted an item without a live registered match"
        for w in live:
            assert not blocked(case.registry, w, case.purpose, case.at), w.id
            assert work_covered(case, w), w.id


@EXAMPLES
@given(cases())
def test_completeness_oracle_admits_implies_admit(case: Case) -> None:
    assert case.decide().admitted == oracle_admits(case)


@EXAMPLES
@given(cases())
def test_reasons_and_evidence_are_well_formed(case: Case) -> None:
    d = case.decide()
    assert all(isinstance(r, Reason) for r in d.reasons)
    assert all(isinstance(e.reason, Reason) for e in d.evidence)
    if d.outcome is Outcome.ADMIT:
        assert d.reasons == (Reason.GRANT_IN_FORCE,)
        live = live_works(case)
        assert live
        grants_by_id = {g.id: g for g in case.registry.grants}
        for w in live:
            named = [
                e.grant_id
                for e in d.evidence
                if e.reason is Reason.GRANT_IN_FORCE and e.work_id == w.id
            ]
            assert len(named) == 1, w.id
            g = grants_by_id[named[0] or ""]
            assert grant_valid(case.registry, g, w, case.licensee, case.purpose, case.at)
    else:
        assert d.outcome is Outcome.DENY
        assert d.reasons, "a deny needs a reason"
        assert len(set(d.reasons)) == len(d.reasons)
        assert Reason.GRANT_IN_FORCE not in d.reasons
        assert Reason.WORK_VOID not in d.reasons
        assert not any(r.value.startswith("basis-") for r in d.reasons)
        assert set(d.reasons) <= {e.reason for e in d.evidence}
        if case.item.unreadable is not None:
            assert d.reasons == (Reason.UNREADABLE,)


VARIATIONS = ("revoke", "reserve-work", "reserve-all", "dispute")


def vary(case: Case, variation: str, target: Work, when: datetime) -> Registry:
    """The registry with one more thing that should block ``target`` at ``case.at``.

    ``when`` (at or before ``case.at``) is when the revocation takes effect, the reservation is
    made or the dispute opened.
    """
    reg = case.registry
    if variation == "revoke":
        # Revoke every grant that reaches the work, from `when` or from its creation if later (a
        # revocation cannot precede its grant); grants recorded after `at` are invisible anyway.
        revoked = []
        for g in reg.grants:
            already = g.revocation is not None and g.revocation.effective <= case.at
            if scope_covers(g, target) and not already:
                effective = max(when, g.created_at)
                if effective <= case.at:
                    g = dataclasses.replace(g, revocation=Revocation("P1", effective, effective))
            revoked.append(g)
        return dataclasses.replace(reg, grants=tuple(revoked))
    if variation.startswith("reserve"):
        by = sorted(target.holder_ids)[0]
        work_id = target.id if variation == "reserve-work" else None
        res = Reservation("R9", by, frozenset({case.purpose}), when, work_id=work_id)
        return dataclasses.replace(reg, reservations=(*reg.reservations, res))
    dispute = Dispute("D9", (target.id, UNKNOWN_WORK), when, "late claim")
    return dataclasses.replace(reg, disputes=(*reg.disputes, dispute))


@EXAMPLES
@given(cases(), st.sampled_from(VARIATIONS), st.data())
def test_revocation_reservation_and_dispute_only_ever_deny(
    case: Case, variation: str, data: st.DataObject
) -> None:
    before = case.decide()
    live = live_works(case) or []
    targets = [w for w in live if w.holders or variation in ("revoke", "dispute")]
    if case.item.unreadable is not None or not targets:
        # Nothing of the item to block: it is denied either way.
        assert not before.admitted
        return
    target = data.draw(st.sampled_from(targets), label="target")
    when = data.draw(st.sampled_from([t for t in INSTANTS if t <= case.at]), label="when")
    after = case.decide(registry=vary(case, variation, target, when))
    assert not after.admitted
    if before.admitted:
        expected = {
            "revoke": Reason.GRANT_REVOKED,
            "reserve-work": Reason.RESERVED,
            "reserve-all": Reason.RESERVED,
            "dispute": Reason.DISPUTED,
        }[variation]
        assert expected in after.reasons


def permuted(case: Case, data: st.DataObject) -> tuple[Registry, ItemFacts]:
    """The same registry and item with every list in an order drawn by ``data``."""
    reg = case.registry

    def shuffle(items: tuple[T, ...], label: str) -> tuple[T, ...]:
        return tuple(data.draw(st.permutations(items), label=label))

    registry = Registry(
        parties=shuffle(reg.parties, "parties"),
        works=shuffle(reg.works, "works"),
        grants=shuffle(reg.grants, "grants"),
        reservations=shuffle(reg.reservations, "reservations"),
        disputes=shuffle(reg.disputes, "disputes"),
    )
    return registry, dataclasses.replace(case.item, matches=shuffle(case.item.matches, "matches"))


def facts(d: Decision) -> tuple[Outcome, tuple[Reason, ...], list[tuple[str, str, str, str, str]]]:
    """Outcome, reasons and which work, grant, reservation and dispute each evidence names."""
    named = sorted(
        (e.reason.value, e.work_id or "", e.grant_id or "", e.reservation_id or "",
         e.dispute_id or "")
        for e in d.evidence
    )  # fmt: skip
    return d.outcome, d.reasons, named


@EXAMPLES
@given(cases(), st.data())
def test_outcome_reasons_and_evidence_facts_ignore_order(case: Case, data: st.DataObject) -> None:
    registry, item = permuted(case, data)
    assert facts(case.decide(registry=registry, item=item)) == facts(case.decide())


@EXAMPLES
@given(cases(), st.data())
def test_decide_ignores_the_order_of_registry_lists_and_matches(
    case: Case, data: st.DataObject
) -> None:
    # The whole decision, evidence order, scores and stages included, goes into signed gate
    # manifests: the same snapshot and item must give the same bytes whatever the store's row
    # order or the recognisers' order.
    registry, item = permuted(case, data)
    assert case.decide(registry=registry, item=item) == case.decide()
