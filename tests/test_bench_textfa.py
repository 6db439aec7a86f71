"""The false-attribution statistics of the text benchmark (bench/textfa.py).

Hand-made score sets with known answers, and tails drawn from the very model that is fitted
(and from one it does not fit, which the goodness-of-fit test must reject).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fmrstats import GeometricTail
from bench.textfa import (
    FitRow,
    chi_square,
    fit_rows,
    fit_tail,
    recall_at,
    report,
    scaled_registry,
    score_table,
    tail_starts,
)


def test_score_table_separates_words_passages_and_the_joint_rule() -> None:
    docs = [
        {},  # no candidate work
        {"a": (30, 6), "b": (14, 14)},  # many scattered words, or a passage: not both
        {"a": (45, 12), "c": (6, 6)},  # the shipped rule holds for "a"
    ]
    table = score_table(docs, works=5, min_run=12)
    assert table.doc_words.tolist() == [0, 30, 45]
    assert table.doc_runs.tolist() == [0, 14, 12]
    # Joint: best matched words among works whose passage reaches 12, so 14 (work b), not 30.
    assert table.doc_joint.tolist() == [0, 14, 45]
    assert sorted(table.pair_joint.tolist()) == [0, 0, 14, 45]
    assert table.documents == 3
    assert table.pairs == 15


def test_score_table_rejects_impossible_registries() -> None:
    with pytest.raises(ValueError, match="at least one work"):
        score_table([{}], works=0, min_run=12)
    with pytest.raises(ValueError, match="more works"):
        score_table([{"a": (1, 1), "b": (1, 1)}], works=1, min_run=12)


def test_tail_starts_keep_enough_observations_and_count_unlisted_documents() -> None:
    values = np.arange(1, 101, dtype=np.int64)  # 100 positive scores among 1,000 documents
    # 1 % of 1,000 is 10, below the 20 minimum: the 20th largest (81) starts the tail;
    # 3 % is 30: the 30th largest (71).
    assert tail_starts(values, 1000, fractions=(0.01, 0.03)) == [81, 71]
    # Fractions that give the same start are listed once.
    assert tail_starts(values, 1000, fractions=(0.001, 0.002)) == [81]
    with pytest.raises(ValueError, match="fewer than the 20"):
        tail_starts(np.array([0, 0, 5, 6], dtype=np.int64), 4)


def test_fit_rows_account_for_every_tail_observation_and_end_at_the_threshold() -> None:
    tail = GeometricTail(t0=10, p0=0.1, ratio=0.5, n_tail=100)
    values = np.array([10] * 50 + [11] * 25 + [12] * 13 + [13] * 6 + [15] * 5 + [17], np.int64)
    rows = fit_rows(values, 1000, tail, width=2, up_to=40)
    assert [r.label() for r in rows] == ["10-11", "12-13", "14-15", "16-17", ">= 18"]
    assert [r.observed for r in rows] == [75, 19, 5, 1, 0]
    assert sum(r.expected for r in rows) == pytest.approx(100.0)
    assert rows[0].expected == pytest.approx(1000 * 0.1 * (1 - 0.25))
    # A threshold inside the data still gets its own open row.
    rows = fit_rows(values, 1000, tail, width=3, up_to=12)
    assert [(r.label(), r.observed) for r in rows] == [("10-11", 75), (">= 12", 25)]
    with pytest.raises(ValueError, match="width"):
        fit_rows(values, 1000, tail, width=0, up_to=40)


def _geometric_scores(n: int, n_tail: int, t0: int, ratio: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tail = t0 + rng.geometric(1 - ratio, n_tail) - 1
    bulk = rng.integers(0, t0, n - n_tail)
    return np.concatenate([bulk, tail]).astype(np.int64)


def test_fit_tail_recovers_a_geometric_tail_and_passes_its_own_test() -> None:
    values = _geometric_scores(200_000, 2_000, 12, 0.7, seed=3)
    fit = fit_tail(values, values.size, 12, width=2, up_to=40)
    assert fit.tail.ratio == pytest.approx(0.7, abs=0.02)
    assert fit.tail.p0 == pytest.approx(0.01)
    assert fit.tail.survival(40) == pytest.approx(0.01 * 0.7**28, rel=0.6)
    _, degrees, p = fit.chi2
    assert degrees >= 3
    assert p > 0.001


def test_chi_square_rejects_a_tail_that_is_not_geometric() -> None:
    # Uniform 12..25, then nothing: what planted quotations alone would give.
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.integers(0, 12, 98_000), rng.integers(12, 26, 2_000)])
    fit = fit_tail(values.astype(np.int64), values.size, 12, width=2, up_to=40)
    assert fit.chi2[2] < 1e-6


def test_chi_square_pools_small_bins_and_needs_three_to_test() -> None:
    rows = [FitRow(0, 1, 10, 10.0), FitRow(1, 2, 4, 3.0), FitRow(2, None, 1, 3.0)]
    statistic, degrees, p = chi_square(rows)
    # Pooled from the top: (1 + 4, 3 + 3) then (10, 10): two bins, nothing left to test.
    assert statistic == pytest.approx((5 - 6) ** 2 / 6)
    assert degrees == 0
    assert math.isnan(p)
    rows = [FitRow(a, a + 1, 10, 10.0) for a in range(5)] + [FitRow(5, None, 0, 0.5)]
    statistic, degrees, p = chi_square(rows)
    # The open bin's 0.5 expected joins the bin below it.
    assert degrees == 3
    assert statistic == pytest.approx(0.5**2 / 10.5)
    assert p > 0.9


def test_scaled_registry_counts_works_of_the_tested_mean_size() -> None:
    assert scaled_registry(462, 8_000_000, 1 << 30) == round(462 * (1 << 30) / 8e6)
    assert scaled_registry(10, 10**9, 10) == 1
    with pytest.raises(ValueError, match="empty"):
        scaled_registry(0, 10, 10)


def test_recall_at_needs_both_conditions_on_the_source_work() -> None:
    scores = [{"a": (50, 20)}, {"a": (50, 5)}, {"b": (100, 100)}, {"a": (39, 39)}]
    sources = ["a", "a", "a", "a"]
    assert recall_at(scores, sources, 40, 12) == 0.25
    assert recall_at(scores, sources, 30, 5) == 0.75
    with pytest.raises(ValueError, match="one source"):
        recall_at(scores, ["a"], 40, 12)


def _report(extra: list[dict[str, tuple[int, int]]], extra_planted: list[int]) -> str:
    # Chance distractors: scattered words (a geometric tail from 6), never a passage; planted
    # quotations of 8-25 words: their length in words and passage, plus a little chance.
    rng = np.random.default_rng(5)
    values = _geometric_scores(19_000, 2_000, 6, 0.75, seed=5)
    docs: list[dict[str, tuple[int, int]]] = [{"w1": (int(v), 0)} if v else {} for v in values]
    planted = [0] * len(docs)
    for length in rng.integers(8, 26, 1000).tolist():
        excess = int(rng.geometric(0.5) - 1)
        docs.append({"w2": (length + excess, length)})
        planted.append(length)
    kinds = ["held-out" if p == 0 else "quote" for p in planted] + ["held-out"] * len(extra)
    queries = [{"w1": (60, 60)}, {"w2": (20, 20)}]
    return report(
        docs + extra,
        kinds,
        planted + extra_planted,
        {"cell": (queries, ["w1", "w2"])},
        works=10,
        registered_bytes=1_000_000,
        scale_bytes=100_000_000,
        min_words=40,
        min_run=12,
    )


def test_report_counts_models_and_trades_off() -> None:
    text = _report([], [])
    assert "**0 of 20,000** distractor documents" in text
    assert "one-sided 95 % upper bound 1.5e-04" in text
    assert "2,995,731 distractors" in text
    assert "with 1,000 works of the same mean size" in text
    # No chance distractor has a passage: model B's passage factor is the bound of 0 in 19,000.
    assert "0 of 19,000 distractors without a planted quotation" in text
    assert "Clopper-Pearson bound, 1.6e-04" in text
    for model in ("A: joint score", "B1: matched words", "C: words beyond the planted"):
        assert model in text
    # Recall of the one query cell: 1 of 2 at 40 words, 0.5 at every threshold up to 60.
    assert "| >= 40 (shipped) | 0 |" in text
    trade = [line for line in text.splitlines() if line.startswith("| >= ") and "|---" not in line]
    assert [line.endswith("| 0.500 |") for line in trade[-7:]] == [True] * 6 + [False]


def test_report_counts_a_false_attribution() -> None:
    text = _report([{"w9": (41, 12)}], [0])
    assert "**1 of 20,001** distractor documents" in text
    assert "| >= 40 (shipped) | 1 |" in text
    assert "1 of 19,001 distractors without a planted quotation" in text


def test_report_needs_one_kind_and_length_per_distractor() -> None:
    with pytest.raises(ValueError, match="one kind"):
        report([{}], ["held-out"], [], {}, works=1, registered_bytes=1, scale_bytes=1,
               min_words=40, min_run=12)  # fmt: skip
