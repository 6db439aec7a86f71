"""The statistics of the image false-match benchmark (bench/fmrstats.py) and its helpers.

Known inputs with known answers: Clopper-Pearson against textbook values, the tail fits
against samples drawn from the very models they fit, the provenance helpers of the corpus,
and the exact-distance and offline-decision helpers against brute force.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_image_fmr import decide, local_ok, min_distances
from bench.fmrstats import (
    balanced_split,
    clopper_pearson,
    distance_tail_fit,
    geometric_tail_fit,
    per_query,
)
from bench.imagecorpus import package_family

from consentry.index.hamming import GlobalCandidate


def test_clopper_pearson_matches_known_values() -> None:
    # Zero events: the upper bound is 1 - (alpha / 2) ** (1 / n), about 3.7 / n at 95 %
    # two-sided (the "rule of three" is the one-sided 3 / n).
    low, high = clopper_pearson(0, 1000)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.025 ** (1 / 1000), rel=1e-9)
    # A textbook case: 5 of 20, exact interval 0.0866 - 0.4910.
    low, high = clopper_pearson(5, 20)
    assert low == pytest.approx(0.0866, abs=1e-4)
    assert high == pytest.approx(0.4910, abs=1e-4)
    assert clopper_pearson(7, 7)[1] == 1.0


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (0, 0)])
def test_clopper_pearson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(k, n)


def _even_normal_histogram(mu: float, sigma: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Even distances only, as between PDQ codes of equal weight.
    d = 2 * np.rint(rng.normal(mu, sigma, n) / 2).astype(np.int64)
    d = d[(d >= 0) & (d <= 256)]
    return np.bincount(d, minlength=257)


def test_distance_tail_fit_recovers_a_normal_tail_on_an_even_lattice() -> None:
    hist = _even_normal_histogram(120.0, 10.0, 2_000_000, seed=1)
    tail = distance_tail_fit(hist, max_cdf=0.02)
    assert tail.step == 2
    assert tail.offset == 0
    assert tail.mu == pytest.approx(120.0, abs=1.5)
    assert tail.sigma == pytest.approx(10.0, rel=0.08)
    # Far below the fitted range (no sample there) the normal model extrapolates to the true
    # tail, within a factor; the exponential one is heavier-tailed there, which is why it is
    # the conservative one.
    d = tail.fit_from - 20
    assert hist[: d + 1].sum() == 0
    truth = float(stats.norm.cdf((d + 1 - 120.0) / 10.0))
    assert tail.normal(d) == pytest.approx(truth, rel=0.7)
    assert tail.exponential(d) > tail.normal(d)
    assert tail.conservative(d) == tail.exponential(d)
    # On the lattice, d and d + 1 (odd, never observed) have the same probability.
    assert tail.normal(d) == tail.normal(d + 1)


def test_distance_tail_fit_needs_a_tail() -> None:
    with pytest.raises(ValueError, match="empty"):
        distance_tail_fit(np.zeros(257, np.int64))
    few = np.zeros(257, np.int64)
    few[100] = 10
    with pytest.raises(ValueError, match="fewer than 3"):
        distance_tail_fit(few)


def test_geometric_tail_fit_recovers_the_ratio_and_counts_unlisted_observations() -> None:
    rng = np.random.default_rng(2)
    n_tail, ratio, t0 = 20_000, 0.3, 6
    # numpy's geometric counts trials from 1: excess = trials - 1, P(excess = j) = (1-r) r^j.
    values = t0 + rng.geometric(1 - ratio, n_tail) - 1
    n = 1_000_000  # the other observations were below t0 and are not listed
    tail = geometric_tail_fit(values, n, t0)
    assert tail.ratio == pytest.approx(ratio, abs=0.01)
    assert tail.p0 == pytest.approx(n_tail / n)
    assert tail.survival(t0 + 3) == pytest.approx(tail.p0 * tail.ratio**3)
    assert tail.survival(t0 - 2) == tail.p0
    expected = tail.expected(t0, n)
    assert expected == pytest.approx(int((values == t0).sum()), rel=0.05)


def test_geometric_tail_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no observation"):
        geometric_tail_fit(np.array([1, 2, 3]), 10, 6)
    with pytest.raises(ValueError, match="fewer observations"):
        geometric_tail_fit(np.array([7, 8, 9]), 2, 6)


def test_per_query_is_registry_times_per_pair_when_small_and_saturates() -> None:
    assert per_query(1e-10, 10_000) == pytest.approx(1e-6, rel=1e-4)
    assert per_query(0.5, 2) == pytest.approx(0.75)
    assert per_query(1.0, 3) == 1.0
    assert per_query(0.0, 10**6) == 0.0


def test_balanced_split_is_disjoint_complete_and_balanced() -> None:
    counts = {"a": 100, "b": 90, "c": 30, "d": 20, "e": 5}
    one, two = balanced_split(counts)
    assert one | two == set(counts)
    assert not one & two
    sizes = sorted(sum(counts[f] for f in g) for g in (one, two))
    assert sizes == [120, 125]
    assert balanced_split(counts) == (one, two)  # deterministic


@pytest.mark.parametrize(
    ("package", "family"),
    [
        ("wesnoth-1.16-data", "wesnoth"),
        ("wesnoth-music", "wesnoth"),
        ("wesnoth", "wesnoth"),
        ("tuxpaint-stamps-default", "tuxpaint"),
        ("plasma-workspace-wallpapers", "plasma-workspace"),
        ("endless-sky-data", "endless-sky"),
        ("gnome-backgrounds", "gnome"),
        ("data", "data"),  # nothing left: the name stays whole
    ],
)
def test_package_family_groups_data_and_versioned_packages(package: str, family: str) -> None:
    assert package_family(package) == family


def test_min_distances_is_the_brute_force_minimum_over_valid_codes() -> None:
    rng = np.random.default_rng(3)
    queries = [rng.integers(0, 256, (k, 32), dtype=np.uint8) for k in (3, 1, 0, 2)]
    registered = [rng.integers(0, 256, (k, 32), dtype=np.uint8) for k in (2, 1, 0)]
    got = min_distances(queries, registered, 3, 2)
    assert got.shape == (4, 3)
    for i, q in enumerate(queries):
        for j, r in enumerate(registered):
            if len(q) == 0 or len(r) == 0:
                assert got[i, j] == 999
                continue
            brute = min(int(np.unpackbits(a ^ b).sum()) for a in q for b in r)
            assert got[i, j] == brute


def cand(
    distance: int, aligned: int | None = None, rotation: float | None = None
) -> GlobalCandidate:
    return GlobalCandidate(distance, aligned, "pdq", rotation, legacy=False)


def test_decide_follows_the_stage_order_of_match() -> None:
    # Work 1's plain code at 28 (confirmed at 30), work 0's rotated code at 10.
    candidates = {0: [cand(10, None, 3.0), cand(40)], 1: [cand(28, 30)], 2: [cand(35)]}
    # (inliers, scale, rotation, aligned distance or -1)
    local = {0: (30, 1.0, 0.0, 90), 2: (12, 1.0, 0.0, 20)}
    rule = (10, 50, 24)
    # The plain global codes first: work 1 at 28 <= 30, its aligned distance 30 <= 50.
    assert decide(candidates, local, (30, 16, 50), rule) == (1, "pdq")
    # Its pixels not close enough: the rotated codes are tried next, work 0 at 10 <= 16.
    assert decide(candidates, local, (30, 16, 29), rule) == (0, "pdq")
    # Without the aligned comparison (unconfirmed = threshold), the distance alone.
    assert decide(candidates, local, (28, 28, 0), rule) == (1, "pdq")
    # No global match at all: the most inliers among the pairs the rule accepts (work 0 on
    # its inliers alone, work 2 confirmed by its aligned distance).
    assert decide(candidates, local, (5, 5, 50), rule) == (0, "local")
    assert decide(candidates, {2: local[2]}, (5, 5, 50), rule) == (2, "local")
    # Work 0 needs 31 inliers without a good aligned distance; work 2 is not close enough
    # at 10.
    assert decide(candidates, local, (5, 5, 50), (10, 10, 31)) == (-1, "")
    # Too few inliers for the confirmed path; no aligned distance (-1) confirms nothing.
    assert decide({}, {2: local[2]}, (30, 16, 50), (13, 50, 24)) == (-1, "")
    assert decide({}, {2: (12, 1.0, 0.0, -1)}, (30, 16, 50), rule) == (-1, "")
    # The rule before the aligned comparison: inliers alone.
    assert decide({}, local, (30, 16, 50), (12, -1, 12)) == (0, "local")


def test_local_ok_is_the_index_rule() -> None:
    assert local_ok(10, 50, (10, 50, 24))
    assert not local_ok(9, 0, (10, 50, 24))
    assert not local_ok(23, 51, (10, 50, 24))
    assert local_ok(24, -1, (10, 50, 24))
    assert not local_ok(12, -1, (10, 50, 24))
