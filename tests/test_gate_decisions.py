"""Decision leaves are exactly the RFC 8785 JSON of each row (the manifest's Merkle root)."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.gate.decisions import decision_leaf

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
