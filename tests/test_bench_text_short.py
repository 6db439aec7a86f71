"""The short-work benchmark's pure parts: how passages are cut and which rule attributes."""

from __future__ import annotations

import random

import pytest
from bench.bench_text_short import BANDS, attributed, band_of, cut_short_works
from bench.textcorpus import Work


def _works() -> list[Work]:
    return [
        Work(f"book-{n}", "test", " ".join(f"w{n}x{i}" for i in range(1_000))) for n in range(3)
    ]


def test_passages_are_whole_words_of_one_parent_and_never_overlap() -> None:
    shorts = cut_short_works(_works(), 40, random.Random(1))  # noqa: S311 (a seeded draw, not a secret)
    assert len(shorts) == 40
    seen: set[str] = set()
    for short in shorts:
        words = short.text.split(" ")
        assert BANDS[0][0] <= short.words == len(words) <= BANDS[-1][1]
        assert all(w.startswith(f"w{short.parent.removeprefix('book-')}x") for w in words)
        start = int(short.name.rpartition("@")[2])
        assert words[0] == f"w{short.parent.removeprefix('book-')}x{start}"
        assert not seen & set(words)  # no word of a parent is in two passages
        seen |= set(words)


def test_too_few_words_for_the_passages_asked_is_an_error() -> None:
    with pytest.raises(ValueError, match="fewer than 500"):
        cut_short_works(_works(), 500, random.Random(1))  # noqa: S311 (a seeded draw, not a secret)


def test_the_shipped_rule_needs_half_a_short_work_and_a_passage_of_twelve() -> None:
    assert attributed(15, 15, 30, shipped=True)
    assert not attributed(15, 15, 30, shipped=False)  # the long-work rule: 40 words
    assert not attributed(14, 14, 30, shipped=True)
    assert not attributed(20, 11, 30, shipped=True)  # no passage of 12
    assert attributed(12, 12, 20, shipped=True)  # never fewer than 12
    assert not attributed(39, 39, 100, shipped=True)
    assert attributed(40, 12, 100, shipped=True)


def test_bands() -> None:
    assert band_of(12) == BANDS[0]
    assert band_of(79) == BANDS[-1]
    assert band_of(11) is None
    assert band_of(80) is None
    assert [band_of(b[1]) for b in BANDS] == list(BANDS)
