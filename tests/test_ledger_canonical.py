"""Our fast RFC 8785 serializer agrees with the reference ``rfc8785`` package."""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import InvalidInputError
from consentry.ledger.canonical import canonical_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=1000, deadline=None)
@given(json_values)
def test_matches_reference_implementation(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (1e-7, "1e-7"),
        (1.5e22, "1.5e+22"),
        (1e21, "1e+21"),
        (0.1, "0.1"),
        ({"b": 1, "a": [True, None]}, '{"a":[true,null],"b":1}'),
        ("\u2028\x07é", '"\u2028\\u0007é"'),
        ({"\U0001f600": 1, "\uffff": 2}, '{"\U0001f600":1,"\uffff":2}'),
    ],
)
def test_known_forms(value: object, text: str) -> None:
    assert canonical_json(value) == text.encode("utf-8")
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2**60, {1: "x"}, {"a": {1, 2}}, b"bytes"])
def test_rejects_what_json_cannot_say(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        canonical_json(bad)
