"""Statistics for the image false-match benchmark (:mod:`bench.bench_image_fmr`).

- :func:`clopper_pearson`: exact binomial confidence interval of a rate k / n.
- :func:`distance_tail_fit`: normal and exponential models of the lower tail of impostor
  Hamming distances, for extrapolating below the smallest distance ever observed.
- :func:`geometric_tail_fit`: a geometric (discrete exponential) model of the upper tail of
  impostor inlier counts, by maximum likelihood.
- :func:`balanced_split`, :func:`balanced_groups`: two (or k) groups of package families with
  about as many images each.

Pure functions of arrays, tested in ``tests/test_bench_image_fmr.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "DistanceTail",
    "GeometricTail",
    "balanced_groups",
    "balanced_split",
    "clopper_pearson",
    "distance_tail_fit",
    "geometric_tail_fit",
    "per_query",
    "widening_tail_fit",
]


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a binomial rate with k events in n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


@dataclass(frozen=True, slots=True)
class DistanceTail:
    """Two models of the lower tail of integer distances, fitted on the same tail points.

    - normal: F(d) = Phi((d - mu) / sigma), fitted on the normal probability plot;
    - exponential: F(d) = exp(a + b d), fitted on the log of the empirical CDF. Its tail is
      heavier than the normal's, so it is the conservative one far below the data.

    Distances on a lattice (PDQ-style codes have exactly 128 of 256 bits set, so distances
    between them are even) are evaluated at the lattice point at or below d plus half a step.
    """

    mu: float
    sigma: float
    log_a: float
    log_b: float
    step: int
    offset: int  # lattice: offset + k * step
    fit_from: int  # tail distances used for the fit: fit_from .. fit_to
    fit_to: int

    def _x(self, d: float) -> float:
        lattice = self.offset + math.floor((d - self.offset) / self.step) * self.step
        return lattice + self.step / 2

    def normal(self, d: float) -> float:
        """Modelled P(distance <= d), normal tail."""
        return float(stats.norm.cdf((self._x(d) - self.mu) / self.sigma))

    def exponential(self, d: float) -> float:
        """Modelled P(distance <= d), exponential tail (capped at 1)."""
        return min(1.0, math.exp(self.log_a + self.log_b * self._x(d)))

    def conservative(self, d: float) -> float:
        """The larger of the two models."""
        return max(self.normal(d), self.exponential(d))


def distance_tail_fit(
    counts: npt.NDArray[np.int64], *, min_count: int = 25, max_cdf: float = 1e-4
) -> DistanceTail:
    """Fit both tail models to a histogram of integer distances (``counts[d]``).

    Uses the lattice distances whose cumulative count is at least ``min_count`` (enough
    events for a stable empirical CDF) and whose empirical CDF is at most ``max_cdf`` (the
    tail, not the bulk whose shape says little about the tail): least squares of probit(F)
    and of log(F) on the distance.
    """
    total = int(counts.sum())
    if total == 0:
        raise ValueError("empty histogram")
    support = np.flatnonzero(counts)
    step = int(np.gcd.reduce(np.diff(support))) if len(support) > 1 else 1
    offset = int(support[0]) % step
    d = np.arange(offset, len(counts), step)
    cdf = np.cumsum(counts)[d] / total
    use = (cdf * total >= min_count) & (cdf <= max_cdf)
    if int(use.sum()) < 3:
        raise ValueError("fewer than 3 tail points with enough events for a fit")
    x = d[use] + step / 2
    slope, intercept = np.polyfit(x, stats.norm.ppf(cdf[use]), 1)
    log_b, log_a = np.polyfit(x, np.log(cdf[use]), 1)
    if slope <= 0 or log_b <= 0:
        raise ValueError("the tail does not rise with the distance")
    sigma = 1.0 / float(slope)
    return DistanceTail(
        mu=-float(intercept) * sigma,
        sigma=sigma,
        log_a=float(log_a),
        log_b=float(log_b),
        step=step,
        offset=offset,
        fit_from=int(d[use][0]),
        fit_to=int(d[use][-1]),
    )


def widening_tail_fit(
    counts: npt.NDArray[np.int64], max_cdfs: Sequence[float], *, min_count: int = 25
) -> tuple[float, DistanceTail]:
    """:func:`distance_tail_fit` at the first of ``max_cdfs`` (increasing) that has enough
    tail points, with that cut: the tail proper where there are enough pairs, further into
    the bulk for a small run. Raises ``ValueError`` if none has."""
    for max_cdf in max_cdfs:
        try:
            return max_cdf, distance_tail_fit(counts, max_cdf=max_cdf, min_count=min_count)
        except ValueError:
            continue
    msg = f"no tail fit up to an empirical CDF of {max_cdfs[-1]:g}"
    raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class GeometricTail:
    """Upper tail P(X >= t) = p0 * ratio ** (t - t0) for t >= t0."""

    t0: int
    p0: float  # P(X >= t0), empirical
    ratio: float
    n_tail: int  # observations >= t0

    def survival(self, t: int) -> float:
        """Modelled P(X >= t)."""
        if t <= self.t0:
            return self.p0
        return self.p0 * self.ratio ** (t - self.t0)

    def expected(self, t: int, n: int) -> float:
        """Expected number of the n observations equal to t (t >= t0)."""
        return n * (self.survival(t) - self.survival(t + 1))


def geometric_tail_fit(values: npt.NDArray[np.int64], n: int, t0: int) -> GeometricTail:
    """Maximum-likelihood geometric tail above ``t0`` of integer ``values``.

    ``values`` are the observations (those below ``t0`` may be left out), ``n`` the number of
    observations in all, including every one not listed (pairs never verified count as 0).
    For X - t0 geometric on {0, 1, ...} with ratio r, the MLE is r = m / (1 + m) with m the
    mean excess.
    """
    tail = values[values >= t0]
    if len(tail) == 0:
        raise ValueError(f"no observation >= {t0}")
    if n < len(values):
        raise ValueError("n counts fewer observations than given")
    m = float(np.mean(tail - t0))
    ratio = m / (1.0 + m)
    return GeometricTail(t0, len(tail) / n, ratio, len(tail))


def balanced_split(counts: Mapping[str, int]) -> tuple[frozenset[str], frozenset[str]]:
    """Two disjoint groups of families, greedily balanced by image count (see
    :func:`balanced_groups`)."""
    first, second = balanced_groups(counts, 2)
    return first, second


def balanced_groups(counts: Mapping[str, int], k: int) -> tuple[frozenset[str], ...]:
    """``k`` disjoint groups of families, greedily balanced by image count (largest first,
    each to the group with fewest images; ties to the lowest group, names in order), so the
    split is deterministic."""
    if k < 1:
        raise ValueError(f"need at least one group, got {k}")
    groups: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for name in sorted(counts, key=lambda f: (-counts[f], f)):
        g = sizes.index(min(sizes))
        groups[g].append(name)
        sizes[g] += counts[name]
    return tuple(frozenset(g) for g in groups)


def per_query(p_pair: float, registry: int) -> float:
    """P(at least one false match among ``registry`` independent pairs)."""
    return -math.expm1(registry * math.log1p(-p_pair)) if p_pair < 1 else 1.0
