"""Decision leaves are exactly the RFC 8785 JSON of each row (the manifest's Merkle root), and
the run's fast path (leaves built without records, rows parsed back by Arrow, summaries of
parts) gives exactly what the records would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.domain import Decision, Evidence, Outcome, Reason, WorkMatch
from consentry.domain.bases import Basis
from consentry.errors import InvalidInputError
from consentry.gate.decisions import (
    CHUNK_SUFFIX,
    DECISION_SCHEMA,
    ChunkSummary,
    DecisionsWriter,
    LeafEncoder,
    _rows_table,
    decision_leaf,
    read_chunk,
    write_chunk,
)
from consentry.gate.engine import GateDecision
from consentry.gate.report import Tally

text = st.text(max_size=30)
rows = st.fixed_dictionaries(
    {
        "ordinal": st.integers(min_value=0, max_value=2**40),
        "key": text,
        "decision": st.sampled_from(["admit", "deny"]),
        "reasons": st.lists(text, max_size=3),
        "basis": st.none() | text,
        "work_ids": st.lists(text, max_size=3),
        "scores": st.lists(
            st.floats(min_value=0, max_value=1) | st.sampled_from([0.0, 1.0, 1e-7, 5e-324]),
            max_size=3,
        ),
        "stages": st.lists(text, max_size=3),
        "grant_ids": st.lists(text, max_size=3),
        "error": st.none() | text,
        "source": st.none() | text,
        "evidence": text,
    }
)


@settings(max_examples=1000, deadline=None)
@given(rows)
def test_decision_leaf_is_rfc8785(row: dict[str, Any]) -> None:
    assert decision_leaf(row) == rfc8785.dumps(row)


# --- the fast path of a run: leaves built by LeafEncoder, rows parsed back by Arrow -----------

reasons = st.lists(st.sampled_from(list(Reason)), min_size=1, max_size=3, unique=True)
matches = st.lists(
    st.builds(
        WorkMatch,
        work_id=text,
        score=st.floats(min_value=0, max_value=1)
        | st.sampled_from([0.0, 1.0, 1e-7, 5e-324, 0.5, 1e-4]),
        stage=text,
    ),
    max_size=3,
)
evidence = st.builds(
    Evidence,
    reason=st.sampled_from(list(Reason)),
    work_id=st.none() | text,
    grant_id=st.none() | text,
    score=st.none() | st.floats(min_value=0, max_value=1),
    detail=text,
)


@st.composite
def gate_decisions(draw: st.DrawFn, first: int) -> list[GateDecision]:
    """Consecutive decisions from ``first``, some sharing one Decision object (as the gate's
    memo makes them share)."""
    pool = draw(
        st.lists(
            st.builds(
                Decision,
                outcome=st.sampled_from(list(Outcome)),
                reasons=reasons.map(tuple),
                evidence=st.lists(evidence, max_size=3).map(tuple),
            ),
            min_size=1,
            max_size=3,
        )
    )
    out = []
    for i in range(draw(st.integers(min_value=1, max_value=8))):
        decision = draw(st.sampled_from(pool))
        out.append(
            GateDecision(
                key=draw(text),
                ordinal=first + i,
                decision=decision,
                matches=tuple(draw(matches)),
                basis=draw(st.none() | st.sampled_from(list(Basis))),
                error=draw(st.none() | text),
                source=draw(st.none() | text),
            )
        )
    return out


def _tally(records: list[dict[str, Any]]) -> Tally:
    tally = Tally()
    for record in records:
        tally.add(record)
    return tally


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_leaf_encoder_writes_exactly_the_leaves_of_the_records(data: st.DataObject) -> None:
    first = data.draw(st.integers(min_value=0, max_value=2**40))
    decisions = data.draw(gate_decisions(first))
    leaves, summary = LeafEncoder().encode(decisions, first)
    records = [d.record() for d in decisions]
    assert leaves.split(b"\n")[:-1] == [decision_leaf(r) for r in records]
    assert (summary.first, summary.count) == (first, len(decisions))
    assert summary.admitted == [d.ordinal for d in decisions if d.admitted]
    assert summary.tally == _tally(records)
    # Arrow reads the leaves back as exactly the rows (float scores, nulls, unicode).
    table = _rows_table(leaves)
    assert table.schema == DECISION_SCHEMA
    assert table.to_pylist() == records


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_summaries_of_parts_merge_into_the_summary_of_the_whole(data: st.DataObject) -> None:
    decisions = data.draw(gate_decisions(0))
    cut = data.draw(st.integers(min_value=0, max_value=len(decisions)))
    encoder = LeafEncoder()
    whole_leaves, whole = LeafEncoder().encode(decisions, 0)
    head_leaves, head = encoder.encode(decisions[:cut], 0)
    tail_leaves, tail = encoder.encode(decisions[cut:], cut)
    head.merge(tail)
    assert head_leaves + tail_leaves == whole_leaves
    assert head.to_json() == whole.to_json()
    # ... and survive the chunk file.
    assert ChunkSummary.from_json(json.loads(json.dumps(head.to_json()))) == whole


def test_summaries_merge_only_in_ordinal_order() -> None:
    with pytest.raises(ValueError, match="ordinal 5 after 0"):
        ChunkSummary(0).merge(ChunkSummary(5))


def test_a_chunk_file_round_trips_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    decisions = [
        GateDecision(
            f"k{i}",
            i,
            Decision(Outcome.DENY, (Reason.NO_MATCHING_WORK,), ()),
            (),
            None,
        )
        for i in range(3)
    ]
    leaves, summary = LeafEncoder().encode(decisions, 0)
    path = tmp_path / f"00000000{CHUNK_SUFFIX}"
    write_chunk(path, leaves, summary)
    assert read_chunk(path) == (leaves, summary)
    assert not list(tmp_path.glob("*.tmp"))
    path.write_bytes(leaves)  # no summary line: not a chunk this gate wrote
    with pytest.raises(InvalidInputError, match="not a gate chunk file"):
        read_chunk(path)


def test_decisions_writer_refuses_chunks_out_of_order(tmp_path: Path) -> None:
    decision = Decision(Outcome.DENY, (Reason.NO_MATCHING_WORK,), ())
    later = [GateDecision("k", 7, decision, (), None)]
    leaves, summary = LeafEncoder().encode(later, 7)
    writer = DecisionsWriter(tmp_path / "decisions.parquet", tmp_path / "d.tmp")
    with pytest.raises(InvalidInputError, match="out of order at ordinal 0"):
        writer.add(leaves, summary, tmp_path / "chunk")
    writer.abort()
    assert not (tmp_path / "d.tmp").exists()
