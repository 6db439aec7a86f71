"""Example-based tests of consentry.domain.decide and the purposes vocabulary.

One test per deny reason (outcome, reason list and evidence), then the edge cases of the rule:
catalogue scope, multi-work items, void works, time boundaries (recorded, started, expired,
revoked, agreed, reserved, disputed), closest-grant explanations and the JSON shape.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

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
    parse_purpose,
    parse_verification_level,
)
from consentry.domain.purposes import EXTERNAL_VOCABULARIES, purposes_for_external
from consentry.errors import InvalidInputError

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
T2 = T0 + timedelta(days=2)
T3 = T0 + timedelta(days=3)
T4 = T0 + timedelta(days=4)
T5 = T0 + timedelta(days=5)

LICENSEE = "L1"
GENAI = Purpose.TRAIN_GENAI


# -- small factories -------------------------------------------------------------------------------


def party(pid: str, level: VerificationLevel = VerificationLevel.EMAIL) -> Party:
    return Party(pid, PartyKind.PERSON, f"name of {pid}", None, level)


def work(wid: str, *holders: str, registered_at: datetime = T0, void: bool = False) -> Work:
    return Work(
        wid,
        f"title of {wid}",
        MediaType.TEXT,
        registered_at,
        tuple(Holder(h) for h in holders),
        void=void,
    )


def grant(
    gid: str,
    *,
    work_ids: tuple[str, ...] = ("W1",),
    agreed: tuple[str, ...] = ("P1",),
    agreed_at: datetime = T1,
    licensee: str = LICENSEE,
    purposes: tuple[Purpose, ...] = (GENAI,),
    created_at: datetime = T1,
    **kw: Any,
) -> Grant:
    return Grant(
        gid,
        grantor=agreed[0] if agreed else "P1",
        licensee=licensee,
        purposes=frozenset(purposes),
        created_at=created_at,
        work_ids=frozenset(work_ids),
        agreements=tuple(Agreement(p, agreed_at) for p in agreed),
        **kw,
    )


def item(*work_ids: str, unreadable: str | None = None) -> ItemFacts:
    return ItemFacts("item", tuple(WorkMatch(w) for w in work_ids), unreadable)


def view(**kw: Any) -> MemoryRegistryView:
    kw.setdefault("parties", [party("P1"), party("P2"), party(LICENSEE)])
    kw.setdefault("works", [work("W1", "P1")])
    return MemoryRegistryView.of(**kw)


def judge(
    v: MemoryRegistryView,
    it: ItemFacts | None = None,
    *,
    at: datetime = T3,
    licensee: str = LICENSEE,
    purpose: Purpose = GENAI,
) -> Decision:
    return decide(it if it is not None else item("W1"), licensee, purpose, at, v)


def refs(d: Decision) -> list[tuple[str, str | None, str | None]]:
    """(reason, work id, grant id) of every piece of evidence, in order."""
    return [(e.reason.value, e.work_id, e.grant_id) for e in d.evidence]


def assert_deny(d: Decision, *reasons: Reason) -> None:
    assert d.outcome is Outcome.DENY
    assert not d.admitted
    assert d.reasons == reasons


def assert_admit(d: Decision) -> None:
    assert d.outcome is Outcome.ADMIT
    assert d.admitted
    assert d.reasons == (Reason.GRANT_IN_FORCE,)


# -- the baseline ----------------------------------------------------------------------------------


def test_valid_grant_admits_with_its_id_as_evidence() -> None:
    d = judge(view(grants=[grant("G1")]))
    assert_admit(d)
    assert refs(d) == [("grant-in-force", "W1", "G1")]


# -- one test per deny reason ----------------------------------------------------------------------


def test_no_matching_work_when_nothing_matched() -> None:
    d = judge(view(grants=[grant("G1")]), item())
    assert_deny(d, Reason.NO_MATCHING_WORK)
    assert refs(d) == [("no-matching-work", None, None)]


def test_no_matching_work_when_matched_id_is_not_registered() -> None:
    d = judge(view(grants=[grant("G1")]), item("W404"))
    assert_deny(d, Reason.NO_MATCHING_WORK)
    assert refs(d) == [("no-matching-work", "W404", None)]


def test_no_grant() -> None:
    d = judge(view())
    assert_deny(d, Reason.NO_GRANT)
    assert refs(d) == [("no-grant", "W1", None)]


def test_grant_pending_agreement() -> None:
    v = view(works=[work("W1", "P1", "P2")], grants=[grant("G1", agreed=("P1",))])
    d = judge(v)
    assert_deny(d, Reason.GRANT_PENDING)
    assert refs(d) == [("grant-pending-agreement", "W1", "G1")]
    assert d.evidence[0].detail == "awaiting agreement of P2"


def test_grant_expired_and_expiry_is_exclusive() -> None:
    v = view(grants=[grant("G1", expires=T3)])
    d = judge(v, at=T3)
    assert_deny(d, Reason.GRANT_EXPIRED)
    assert refs(d) == [("grant-expired", "W1", "G1")]
    assert_admit(judge(v, at=T3 - timedelta(microseconds=1)))


def test_grant_not_yet_valid_and_start_is_inclusive() -> None:
    v = view(grants=[grant("G1", not_before=T3)])
    d = judge(v, at=T2)
    assert_deny(d, Reason.GRANT_NOT_YET_VALID)
    assert refs(d) == [("grant-not-yet-valid", "W1", "G1")]
    assert_admit(judge(v, at=T3))


def test_grant_revoked_from_its_effective_time() -> None:
    v = view(grants=[grant("G1", revocation=Revocation("P1", T2, T3))])
    d = judge(v, at=T3)
    assert_deny(d, Reason.GRANT_REVOKED)
    assert refs(d) == [("grant-revoked", "W1", "G1")]


def test_purpose_not_covered() -> None:
    v = view(grants=[grant("G1", purposes=(Purpose.TRAIN_AI, Purpose.SEARCH))])
    d = judge(v, purpose=GENAI)
    assert_deny(d, Reason.PURPOSE_NOT_COVERED)
    assert refs(d) == [("purpose-not-covered", "W1", "G1")]
    assert d.evidence[0].detail == "grant covers search, train-ai"


def test_licensee_not_covered() -> None:
    v = view(grants=[grant("G1", licensee="L2")])
    d = judge(v, licensee=LICENSEE)
    assert_deny(d, Reason.LICENSEE_NOT_COVERED)
    assert refs(d) == [("licensee-not-covered", "W1", "G1")]
    assert "L2" in d.evidence[0].detail


def test_reserved_blocks_a_valid_grant() -> None:
    res = Reservation("R1", "P1", frozenset({GENAI}), T2, work_id="W1")
    d = judge(view(grants=[grant("G1")], reservations=[res]))
    assert_deny(d, Reason.RESERVED)
    assert refs(d) == [("grant-in-force", "W1", "G1"), ("reserved", "W1", None)]
    assert d.evidence[1].reservation_id == "R1"


def test_reservation_of_another_purpose_does_not_block() -> None:
    res = Reservation("R1", "P1", frozenset({Purpose.SEARCH}), T2, work_id="W1")
    assert_admit(judge(view(grants=[grant("G1")], reservations=[res])))


def test_disputed_blocks_a_valid_grant() -> None:
    dispute = Dispute("D1", ("W1", "W2"), T2, "same photo")
    v = view(works=[work("W1", "P1"), work("W2", "P2")], grants=[grant("G1")], disputes=[dispute])
    d = judge(v)
    assert_deny(d, Reason.DISPUTED)
    assert refs(d) == [("grant-in-force", "W1", "G1"), ("disputed", "W1", None)]
    assert d.evidence[1].dispute_id == "D1"
    assert d.evidence[1].detail == "same photo"


def test_holder_verification_too_low() -> None:
    v = view(
        parties=[party("P1", VerificationLevel.EMAIL)],
        grants=[grant("G1", min_verification=VerificationLevel.VOUCHED)],
    )
    d = judge(v)
    assert_deny(d, Reason.VERIFICATION_TOO_LOW)
    assert refs(d) == [("holder-verification-too-low", "W1", "G1")]
    assert d.evidence[0].detail == "P1 below vouched"


def test_verification_equal_to_minimum_admits() -> None:
    v = view(
        parties=[party("P1", VerificationLevel.VOUCHED)],
        grants=[grant("G1", min_verification=VerificationLevel.VOUCHED)],
    )
    assert_admit(judge(v))


def test_unknown_holder_party_counts_as_too_weak() -> None:
    v = view(parties=[], grants=[grant("G1")])
    assert_deny(judge(v), Reason.VERIFICATION_TOO_LOW)


def test_every_co_holder_must_meet_minimum_verification() -> None:
    v = view(
        parties=[party("P1", VerificationLevel.OPERATOR), party("P2", VerificationLevel.EMAIL)],
        works=[work("W1", "P1", "P2")],
        grants=[grant("G1", agreed=("P1", "P2"), min_verification=VerificationLevel.VOUCHED)],
    )
    d = judge(v)
    assert_deny(d, Reason.VERIFICATION_TOO_LOW)
    assert d.evidence[0].detail == "P2 below vouched"


def test_unreadable() -> None:
    d = judge(view(grants=[grant("G1")]), item("W1", unreadable="truncated JPEG"))
    assert_deny(d, Reason.UNREADABLE)
    assert refs(d) == [("unreadable", None, None)]
    assert d.evidence[0].detail == "truncated JPEG"


def test_every_deny_reason_has_a_test() -> None:
    # Admit codes (a grant, or one of the gate policy's opt-in bases) and the void-work note are
    # never deny reasons; every other code is tested above.
    admit_codes = {r for r in Reason if r.value.startswith("basis-")} | {Reason.GRANT_IN_FORCE}
    informational = {*admit_codes, Reason.WORK_VOID}
    tested = {
        Reason.NO_MATCHING_WORK,
        Reason.NO_GRANT,
        Reason.GRANT_PENDING,
        Reason.GRANT_EXPIRED,
        Reason.GRANT_NOT_YET_VALID,
        Reason.GRANT_REVOKED,
        Reason.PURPOSE_NOT_COVERED,
        Reason.LICENSEE_NOT_COVERED,
        Reason.RESERVED,
        Reason.DISPUTED,
        Reason.VERIFICATION_TOO_LOW,
        Reason.UNREADABLE,
    }
    assert set(Reason) - informational == tested


# -- catalogue grants ------------------------------------------------------------------------------


def catalogue_grant(include_future: bool) -> Grant:
    return grant("G1", work_ids=(), catalogue=CatalogueScope("P1", include_future), created_at=T2)


@pytest.mark.parametrize("registered_at", [T0, T2])
def test_catalogue_grant_covers_works_registered_up_to_the_grant(registered_at: datetime) -> None:
    v = view(works=[work("W1", "P1", registered_at=registered_at)], grants=[catalogue_grant(False)])
    d = judge(v)
    assert_admit(d)
    assert refs(d) == [("grant-in-force", "W1", "G1")]


def test_catalogue_grant_without_include_future_skips_later_works() -> None:
    v = view(works=[work("W1", "P1", registered_at=T3)], grants=[catalogue_grant(False)])
    d = judge(v, at=T4)
    assert_deny(d, Reason.NO_GRANT)
    assert refs(d) == [("no-grant", "W1", None)]


def test_catalogue_grant_with_include_future_covers_later_works() -> None:
    v = view(works=[work("W1", "P1", registered_at=T3)], grants=[catalogue_grant(True)])
    assert_admit(judge(v, at=T4))


def test_catalogue_grant_of_another_holder_does_not_cover() -> None:
    g = grant("G1", work_ids=(), catalogue=CatalogueScope("P2", True), agreed=("P1", "P2"))
    assert_deny(judge(view(grants=[g])), Reason.NO_GRANT)


def test_catalogue_grant_still_needs_every_co_holder() -> None:
    v = view(works=[work("W1", "P1", "P2")], grants=[catalogue_grant(True)])
    d = judge(v)
    assert_deny(d, Reason.GRANT_PENDING)
    assert refs(d) == [("grant-pending-agreement", "W1", "G1")]


# -- multi-work items and void works ---------------------------------------------------------------


def test_one_uncovered_work_denies_the_whole_item() -> None:
    v = view(works=[work("W1", "P1"), work("W2", "P2")], grants=[grant("G1")])
    d = judge(v, item("W1", "W2"))
    assert_deny(d, Reason.NO_GRANT)
    assert refs(d) == [("grant-in-force", "W1", "G1"), ("no-grant", "W2", None)]


def test_multi_work_item_admitted_when_each_work_is_covered() -> None:
    v = view(
        works=[work("W1", "P1"), work("W2", "P2")],
        grants=[grant("G1"), grant("G2", work_ids=("W2",), agreed=("P2",))],
    )
    d = judge(v, item("W2", "W1"))
    assert_admit(d)
    assert refs(d) == [("grant-in-force", "W1", "G1"), ("grant-in-force", "W2", "G2")]


def test_unknown_work_among_covered_ones_denies() -> None:
    d = judge(view(grants=[grant("G1")]), item("W1", "W404"))
    assert_deny(d, Reason.NO_MATCHING_WORK)
    assert ("no-matching-work", "W404", None) in refs(d)


def test_void_work_is_ignored() -> None:
    v = view(works=[work("W1", "P1"), work("W2", "P2", void=True)], grants=[grant("G1")])
    d = judge(v, item("W1", "W2"))
    assert_admit(d)
    assert refs(d) == [("work-void", "W2", None), ("grant-in-force", "W1", "G1")]


def test_void_work_does_not_admit_even_with_a_grant() -> None:
    v = view(works=[work("W1", "P1", void=True)], grants=[grant("G1")])
    d = judge(v)
    assert_deny(d, Reason.NO_MATCHING_WORK)
    assert refs(d) == [("work-void", "W1", None), ("no-matching-work", None, None)]


def test_void_work_reservation_does_not_block() -> None:
    res = Reservation("R1", "P2", frozenset(Purpose), T0, work_id="W2")
    v = view(
        works=[work("W1", "P1"), work("W2", "P2", void=True)],
        grants=[grant("G1")],
        reservations=[res],
    )
    assert_admit(judge(v, item("W1", "W2")))


def test_void_evidence_is_kept_on_deny_but_is_not_a_reason() -> None:
    v = view(works=[work("W1", "P1"), work("W2", "P2", void=True)])
    d = judge(v, item("W1", "W2"))
    assert_deny(d, Reason.NO_GRANT)
    assert refs(d) == [("work-void", "W2", None), ("no-grant", "W1", None)]


# -- time boundaries -------------------------------------------------------------------------------


def test_revocation_effective_in_the_future_still_admits_before_it() -> None:
    v = view(grants=[grant("G1", revocation=Revocation("P1", T2, T4))])
    assert_admit(judge(v, at=T3))
    assert_admit(judge(v, at=T4 - timedelta(microseconds=1)))
    assert_deny(judge(v, at=T4), Reason.GRANT_REVOKED)


def test_agreement_recorded_after_at_counts_as_pending() -> None:
    v = view(
        works=[work("W1", "P1", "P2")], grants=[grant("G1", agreed=("P1", "P2"), agreed_at=T4)]
    )
    d = judge(v, at=T3)
    assert_deny(d, Reason.GRANT_PENDING)
    assert "P1, P2" in d.evidence[0].detail
    assert_admit(judge(v, at=T4))


def test_agreement_by_a_non_holder_does_not_count() -> None:
    v = view(grants=[grant("G1", agreed=("P2",))])
    assert_deny(judge(v), Reason.GRANT_PENDING)


def test_grant_recorded_after_at_is_invisible() -> None:
    v = view(grants=[grant("G1", created_at=T4, agreed_at=T0)])
    d = judge(v, at=T3)
    assert_deny(d, Reason.NO_GRANT)
    assert refs(d) == [("no-grant", "W1", None)]
    assert_admit(judge(v, at=T4))


def test_later_grant_neither_admits_nor_explains() -> None:
    # G1 existed at T3 and fails on the purpose; G2 would be perfect but is recorded later.
    v = view(grants=[grant("G1", purposes=(Purpose.SEARCH,)), grant("G2", created_at=T4)])
    d = judge(v, at=T3)
    assert_deny(d, Reason.PURPOSE_NOT_COVERED)
    assert refs(d) == [("purpose-not-covered", "W1", "G1")]


def test_reservation_lifted_before_at_does_not_block() -> None:
    res = Reservation("R1", "P1", frozenset({GENAI}), T1, work_id="W1", lifted_at=T2)
    v = view(grants=[grant("G1")], reservations=[res])
    assert_admit(judge(v, at=T3))
    assert_admit(judge(v, at=T2))
    assert_deny(judge(v, at=T2 - timedelta(microseconds=1)), Reason.RESERVED)


def test_reservation_made_after_at_does_not_block_yet() -> None:
    res = Reservation("R1", "P1", frozenset({GENAI}), T4, work_id="W1")
    v = view(grants=[grant("G1")], reservations=[res])
    assert_admit(judge(v, at=T3))
    assert_deny(judge(v, at=T4), Reason.RESERVED)


def test_blanket_reservation_applies_to_every_work_of_the_party() -> None:
    res = Reservation("R1", "P2", frozenset({GENAI}), T0)
    v = view(
        works=[work("W1", "P1", "P2"), work("W3", "P1")],
        grants=[grant("G1", work_ids=("W1", "W3"), agreed=("P1", "P2"))],
        reservations=[res],
    )
    d = judge(v)
    assert_deny(d, Reason.RESERVED)
    assert d.evidence[-1].reservation_id == "R1"
    # W3 is not held by P2: the blanket reservation does not reach it.
    assert_admit(judge(v, item("W3")))


def test_dispute_resolved_before_at_does_not_block() -> None:
    dispute = Dispute("D1", ("W1", "W2"), T1, "dup", resolved_at=T2, resolution="W1 stands")
    v = view(works=[work("W1", "P1"), work("W2", "P2")], grants=[grant("G1")], disputes=[dispute])
    assert_admit(judge(v, at=T3))
    assert_admit(judge(v, at=T2))
    assert_deny(judge(v, at=T2 - timedelta(microseconds=1)), Reason.DISPUTED)


def test_dispute_opened_after_at_does_not_block_yet() -> None:
    dispute = Dispute("D1", ("W1", "W2"), T4, "dup")
    v = view(works=[work("W1", "P1"), work("W2", "P2")], grants=[grant("G1")], disputes=[dispute])
    assert_admit(judge(v, at=T3))
    assert_deny(judge(v, at=T4), Reason.DISPUTED)


def test_work_with_no_holders_is_never_admitted() -> None:
    v = view(works=[work("W1")], grants=[grant("G1", agreed=())])
    d = judge(v)
    assert_deny(d, Reason.GRANT_PENDING)
    assert refs(d) == [("grant-pending-agreement", "W1", "G1")]
    assert d.evidence[0].detail == "the work has no holders to agree"
    # Not even a catalogue grant with every agreement there is.
    cat = grant("G2", work_ids=(), catalogue=CatalogueScope("P1", True), agreed=("P1", "P2"))
    assert not judge(view(works=[work("W1")], grants=[cat])).admitted


def test_naive_datetime_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        judge(view(grants=[grant("G1")]), at=datetime(2024, 1, 4))  # naive on purpose


def test_non_utc_aware_time_is_compared_as_an_instant() -> None:
    # 23:30 on Jan 4 at UTC-1 is 00:30 UTC on Jan 5: after a grant expiring at T4 (Jan 5 00:00).
    at = datetime(2024, 1, 4, 23, 30, tzinfo=timezone(timedelta(hours=-1)))
    v = view(grants=[grant("G1", expires=T4)])
    assert at > T4
    assert_deny(judge(v, at=at), Reason.GRANT_EXPIRED)
    assert_admit(judge(v, at=at - timedelta(hours=1)))


# -- explanations ----------------------------------------------------------------------------------


def test_closest_grant_explains_a_deny() -> None:
    v = view(
        grants=[
            # three failures: licensee, purpose, expiry
            grant("G1", licensee="L2", purposes=(Purpose.SEARCH,), expires=T2),
            # one failure: revoked
            grant("G2", revocation=Revocation("P1", T2, T2)),
            # two failures: licensee, not yet valid
            grant("G3", licensee="L2", not_before=T4),
        ]
    )
    d = judge(v)
    assert_deny(d, Reason.GRANT_REVOKED)
    assert refs(d) == [("grant-revoked", "W1", "G2")]


def test_ties_for_closest_grant_are_all_reported() -> None:
    v = view(grants=[grant("G2", licensee="L2"), grant("G1", purposes=(Purpose.RAG,))])
    d = judge(v)
    assert_deny(d, Reason.PURPOSE_NOT_COVERED, Reason.LICENSEE_NOT_COVERED)
    assert refs(d) == [
        ("purpose-not-covered", "W1", "G1"),
        ("licensee-not-covered", "W1", "G2"),
    ]


def test_one_valid_grant_among_failing_ones_admits() -> None:
    v = view(grants=[grant("G1", licensee="L2"), grant("G2"), grant("G3", expires=T2)])
    d = judge(v)
    assert_admit(d)
    assert refs(d) == [("grant-in-force", "W1", "G2")]


def test_a_grant_can_fail_for_several_reasons_at_once() -> None:
    v = view(
        works=[work("W1", "P1", "P2")],
        parties=[party("P1", VerificationLevel.UNVERIFIED), party("P2")],
        grants=[
            grant(
                "G1",
                licensee="L2",
                purposes=(Purpose.SEARCH,),
                revocation=Revocation("P1", T2, T2),
                not_before=T4,
                expires=T3,
                min_verification=VerificationLevel.EMAIL,
            )
        ],
    )
    d = judge(v)
    assert_deny(
        d,
        Reason.GRANT_PENDING,
        Reason.GRANT_EXPIRED,
        Reason.GRANT_NOT_YET_VALID,
        Reason.GRANT_REVOKED,
        Reason.PURPOSE_NOT_COVERED,
        Reason.LICENSEE_NOT_COVERED,
        Reason.VERIFICATION_TOO_LOW,
    )
    assert {e.grant_id for e in d.evidence} == {"G1"}


def test_blocks_and_grant_failures_are_reported_together() -> None:
    res = Reservation("R1", "P1", frozenset({GENAI}), T0, work_id="W1")
    dispute = Dispute("D1", ("W1", "W2"), T0, "dup")
    v = view(
        works=[work("W1", "P1"), work("W2", "P2")],
        grants=[grant("G1", expires=T2)],
        reservations=[res],
        disputes=[dispute],
    )
    d = judge(v)
    assert_deny(d, Reason.GRANT_EXPIRED, Reason.RESERVED, Reason.DISPUTED)


def test_duplicate_matches_of_a_work_keep_the_best_score() -> None:
    it = ItemFacts(
        "item",
        (
            WorkMatch("W1", 0.6, "pdq"),
            WorkMatch("W1", 0.9, "text"),
            WorkMatch("W1", 0.7, "iscc"),
        ),
    )
    d = judge(view(grants=[grant("G1")]), it)
    assert_admit(d)
    assert len(d.evidence) == 1
    assert (d.evidence[0].score, d.evidence[0].stage) == (0.9, "text")


def test_equal_score_duplicates_give_the_same_decision_in_any_order() -> None:
    # Two recognisers claim W1 with the same score: which one the evidence names must not depend
    # on the order the recognisers ran in (the decision goes into signed manifests).
    exact, pdq = WorkMatch("W1", 1.0, "exact"), WorkMatch("W1", 1.0, "pdq")
    v = view(grants=[grant("G1")])
    assert judge(v, ItemFacts("item", (exact, pdq))) == judge(v, ItemFacts("item", (pdq, exact)))


def test_block_evidence_does_not_depend_on_the_order_of_reservations_and_disputes() -> None:
    # Same registry, rows listed in another order (as two databases or snapshots may return
    # them): the decision, evidence order included, must be the same.
    reservations = [
        Reservation("R1", "P1", frozenset({GENAI}), T0, work_id="W1"),
        Reservation("R2", "P2", frozenset({GENAI}), T0),
    ]
    disputes = [Dispute("D1", ("W1", "W2"), T0, "dup"), Dispute("D2", ("W1", "W3"), T0, "dup")]
    works = [work("W1", "P1", "P2"), work("W2", "P2"), work("W3", "P1")]
    grants = [grant("G1", agreed=("P1", "P2"))]
    forward = view(works=works, grants=grants, reservations=reservations, disputes=disputes)
    backward = view(
        works=works, grants=grants, reservations=reservations[::-1], disputes=disputes[::-1]
    )
    assert judge(forward) == judge(backward)


def test_matches_are_reported_best_score_first() -> None:
    v = view(works=[work("W1", "P1"), work("W2", "P2")])
    it = ItemFacts("item", (WorkMatch("W1", 0.5), WorkMatch("W2", 0.8)))
    d = judge(v, it)
    assert [e.work_id for e in d.evidence] == ["W2", "W1"]


def test_decision_to_json_shape() -> None:
    it = ItemFacts("item", (WorkMatch("W1", 0.9, "pdq"), WorkMatch("W2", 1.0, "exact")))
    res = Reservation("R1", "P2", frozenset({GENAI}), T0, work_id="W2")
    v = view(
        works=[work("W1", "P1"), work("W2", "P2")],
        grants=[grant("G1"), grant("G2", work_ids=("W2",), agreed=("P2",))],
        reservations=[res],
    )
    assert judge(v, it).to_json() == {
        "decision": "deny",
        "reasons": ["reserved"],
        "evidence": [
            {"reason": "grant-in-force", "work_id": "W2", "grant_id": "G2", "score": 1.0,
             "stage": "exact"},
            {"reason": "reserved", "work_id": "W2", "reservation_id": "R1", "score": 1.0,
             "stage": "exact", "detail": "reserved by P2"},
            {"reason": "grant-in-force", "work_id": "W1", "grant_id": "G1", "score": 0.9,
             "stage": "pdq"},
        ],
    }  # fmt: skip


def test_admit_to_json_shape() -> None:
    assert judge(view(grants=[grant("G1")])).to_json() == {
        "decision": "admit",
        "reasons": ["grant-in-force"],
        "evidence": [
            {"reason": "grant-in-force", "work_id": "W1", "grant_id": "G1", "score": 1.0,
             "stage": "exact"},
        ],
    }  # fmt: skip


# -- purposes vocabulary and verification levels ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("train-genai", GENAI), (" TRAIN-AI ", Purpose.TRAIN_AI), ("Rag", Purpose.RAG)],
)
def test_parse_purpose(text: str, expected: Purpose) -> None:
    assert parse_purpose(text) is expected


@pytest.mark.parametrize("text", ["", "training", "train_genai", "ai-train"])
def test_parse_purpose_error_lists_valid_values(text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_purpose(text)
    message = str(info.value)
    assert repr(text) in message
    for p in Purpose:
        assert p.value in message


@pytest.mark.parametrize(
    ("vocabulary", "term", "expected"),
    [
        ("aipref", "train-ai", {Purpose.TRAIN_AI, GENAI}),
        ("AIPREF", "train-genai", {GENAI}),
        ("aipref", "search", {Purpose.SEARCH}),
        ("aipref", "ai-use", {Purpose.RAG}),
        ("cawg", "cawg.ai_generative_training", {GENAI}),
        ("cawg", "cawg.ai_training", {Purpose.TRAIN_AI}),
        ("cawg", "cawg.ai_inference", {Purpose.RAG}),
        ("cawg", "cawg.data_mining", {Purpose.DATA_MINING}),
        ("iptc", "DMI-PROHIBITED", set(Purpose)),
        ("iptc", "DMI-PROHIBITED-AIMLTRAINING", {Purpose.TRAIN_AI, GENAI}),
        ("iptc", "DMI-PROHIBITED-GENAIMLTRAINING", {GENAI}),
        (
            "iptc",
            "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
            set(Purpose) - {Purpose.SEARCH},
        ),
        ("tdmrep", "tdm-reservation", set(Purpose)),
        ("rsl", "ai-train", {Purpose.TRAIN_AI, GENAI}),
        ("rsl", "ai-input", {Purpose.RAG}),
        ("rsl", "search", {Purpose.SEARCH}),
    ],
)
def test_purposes_for_external(vocabulary: str, term: str, expected: set[Purpose]) -> None:
    assert purposes_for_external(vocabulary, term) == frozenset(expected)


def test_every_external_mapping_is_tested_and_non_empty() -> None:
    assert len(EXTERNAL_VOCABULARIES) == 16
    assert all(EXTERNAL_VOCABULARIES.values())


@pytest.mark.parametrize(
    ("vocabulary", "term"),
    [("aipref", "bogus"), ("unknown", "train-ai"), ("iptc", "dmi-prohibited"), ("cawg", "")],
)
def test_purposes_for_unknown_external_term_raises(vocabulary: str, term: str) -> None:
    with pytest.raises(InvalidInputError, match="no mapping for"):
        purposes_for_external(vocabulary, term)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unverified", VerificationLevel.UNVERIFIED),
        ("EMAIL", VerificationLevel.EMAIL),
        (" vouched ", VerificationLevel.VOUCHED),
        ("Operator", VerificationLevel.OPERATOR),
    ],
)
def test_parse_verification_level(text: str, expected: VerificationLevel) -> None:
    assert parse_verification_level(text) is expected
    assert expected.label == expected.name.lower()


@pytest.mark.parametrize("text", ["", "admin", "verified", "3"])
def test_parse_verification_level_error_lists_valid_values(text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_verification_level(text)
    for level in VerificationLevel:
        assert level.label in str(info.value)


def test_verification_levels_are_ordered() -> None:
    assert (
        VerificationLevel.UNVERIFIED
        < VerificationLevel.EMAIL
        < VerificationLevel.VOUCHED
        < VerificationLevel.OPERATOR
    )
