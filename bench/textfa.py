"""False attributions of the text benchmark (:mod:`bench.bench_text`): scores, tails, bounds.

A distractor document is falsely attributed when, for some registered work, at least
``min_words`` of the work's words are covered and one passage is at least ``min_run`` words
(the shipped rule, :func:`consentry.fingerprint.text.is_attribution`). The benchmark scores
every document against every work at lax settings (the index built with both thresholds at 0,
so every work with a counted run is listed), and this module turns those scores into:

- :func:`score_table`: per document, the best matched words over all works (run ignored), the
  longest passage, and the **joint score**: the best matched words over the works whose
  longest passage reaches ``min_run``. "Joint score >= t" is exactly the shipped rule with
  ``t`` matched words, so its tail is the quantity to model. The same per (document, work)
  pair, for scaling with the registry.
- :func:`tail_starts`, :func:`fit_rows`, :func:`chi_square`: where a geometric upper tail
  (:func:`bench.fmrstats.geometric_tail_fit`) starts, its observed vs fitted counts per bin,
  and a Pearson goodness-of-fit test on them.
- :func:`scaled_registry`: how many works a larger registry of the same kind of text holds.

Pure functions of arrays, tested in ``tests/test_bench_textfa.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from bench.fmrstats import GeometricTail, clopper_pearson, geometric_tail_fit, per_query

__all__ = [
    "FitRow",
    "ScoreTable",
    "TailFit",
    "chi_square",
    "distribution_rows",
    "fit_rows",
    "fit_tail",
    "fmt_rate",
    "markdown_table",
    "recall_at",
    "report",
    "scaled_registry",
    "score_table",
    "tail_starts",
]

#: work id -> (matched words, longest passage) of one document, as the benchmark records it.
Scores = Mapping[str, tuple[int, int]]
_IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ScoreTable:
    """Lax scores of a set of documents against a registry of ``works`` works."""

    doc_words: _IntArray  # best matched words over all works (longest passage ignored)
    doc_runs: _IntArray  # longest passage over all works
    doc_joint: _IntArray  # best matched words over works with a passage >= min_run, else 0
    pair_joint: _IntArray  # joint score of each listed (document, work) pair; others are 0
    pair_words: _IntArray  # matched words of each listed pair (passage ignored)
    works: int
    min_run: int

    @property
    def documents(self) -> int:
        return int(self.doc_words.size)

    @property
    def pairs(self) -> int:
        """All (document, work) pairs, listed or not (an unlisted pair scores 0)."""
        return self.documents * self.works


def score_table(per_doc: Sequence[Scores], works: int, min_run: int) -> ScoreTable:
    """Scores of each document (and each listed pair) from the benchmark's lax matches."""
    if works <= 0:
        raise ValueError("the registry must hold at least one work")
    if any(len(scores) > works for scores in per_doc):
        raise ValueError("a document lists more works than the registry holds")
    words = np.zeros(len(per_doc), dtype=np.int64)
    runs = np.zeros(len(per_doc), dtype=np.int64)
    joint = np.zeros(len(per_doc), dtype=np.int64)
    pairs: list[int] = []
    pair_words: list[int] = []
    for number, scores in enumerate(per_doc):
        for matched, run in scores.values():
            words[number] = max(words[number], matched)
            runs[number] = max(runs[number], run)
            value = matched if run >= min_run else 0
            joint[number] = max(joint[number], value)
            pairs.append(value)
            pair_words.append(matched)
    return ScoreTable(
        words,
        runs,
        joint,
        np.array(pairs, dtype=np.int64),
        np.array(pair_words, dtype=np.int64),
        works,
        min_run,
    )


def tail_starts(
    values: _IntArray, n: int, *, fractions: Sequence[float] = (0.01, 0.003), min_tail: int = 20
) -> list[int]:
    """Candidate starts ``t0`` of an upper-tail fit, one per tail fraction, deduplicated.

    For each fraction f the start is the k-th largest value with k = max(ceil(f n),
    ``min_tail``): the tail holds at least that many observations (fewer make the ratio's
    estimate too noisy to extrapolate). Several starts show how much the extrapolation
    depends on the choice. ``n`` counts every observation, including any not in ``values``
    (documents with no candidate score 0). Only positive values can start a tail.
    """
    positive = np.sort(values[values > 0])[::-1]
    if positive.size < min_tail:
        raise ValueError(f"{positive.size} positive scores, fewer than the {min_tail} needed")
    starts: list[int] = []
    for fraction in fractions:
        k = min(max(math.ceil(fraction * n), min_tail), positive.size)
        start = int(positive[k - 1])
        if start not in starts:
            starts.append(start)
    return starts


@dataclass(frozen=True, slots=True)
class FitRow:
    """Observations in [low, high) (high None: at or above low) against the model's count."""

    low: int
    high: int | None
    observed: int
    expected: float

    def label(self) -> str:
        if self.high is None:
            return f">= {self.low}"
        if self.high == self.low + 1:
            return f"{self.low}"
        return f"{self.low}-{self.high - 1}"


def fit_rows(
    values: _IntArray, n: int, tail: GeometricTail, *, width: int, up_to: int
) -> list[FitRow]:
    """Observed vs fitted counts in bins of ``width`` from the tail's start, then one open
    bin from the first edge at or above the largest observation (or ``up_to`` if larger is
    not needed: the last bin starts at ``up_to`` at the latest, so the threshold's row is
    always there)."""
    if width < 1:
        raise ValueError("bin width must be at least 1")
    top = int(values.max(initial=tail.t0))
    rows: list[FitRow] = []
    low = tail.t0
    while low <= top and low < up_to:
        high = min(low + width, up_to)
        observed = int(np.count_nonzero((values >= low) & (values < high)))
        expected = n * (tail.survival(low) - tail.survival(high))
        rows.append(FitRow(low, high, observed, expected))
        low = high
    rows.append(FitRow(low, None, int(np.count_nonzero(values >= low)), n * tail.survival(low)))
    return rows


def chi_square(rows: Sequence[FitRow], *, min_expected: float = 5.0) -> tuple[float, int, float]:
    """Pearson's chi-square of observed vs fitted counts: (statistic, degrees, p-value).

    Adjacent bins are pooled from the top down until each holds ``min_expected`` fitted
    observations (the test's approximation needs it). The geometric tail has two fitted
    constants (the tail's total and its ratio), so the degrees of freedom are bins - 2; with
    fewer than three pooled bins there is nothing to test and the p-value is NaN.
    """
    pooled: list[tuple[float, float]] = []
    observed = expected = 0.0
    for row in reversed(rows):
        observed += row.observed
        expected += row.expected
        if expected >= min_expected:
            pooled.append((observed, expected))
            observed = expected = 0.0
    if expected > 0 or observed > 0:
        if pooled:
            last_o, last_e = pooled[-1]
            pooled[-1] = (last_o + observed, last_e + expected)
        else:
            pooled.append((observed, expected))
    degrees = len(pooled) - 2
    statistic = float(sum((o - e) ** 2 / e for o, e in pooled if e > 0))
    if degrees < 1:
        return statistic, degrees, math.nan
    return statistic, degrees, float(stats.chi2.sf(statistic, degrees))


def scaled_registry(works: int, registered_bytes: int, target_bytes: int) -> int:
    """Works in a registry of ``target_bytes`` of text with this registry's mean work size.

    Chance matches grow with the registered text (every fingerprint is a chance to collide),
    so a registry is scaled by its text, counted in works of the tested mean size.
    """
    if works <= 0 or registered_bytes <= 0:
        raise ValueError("empty registry")
    return max(1, round(works * target_bytes / registered_bytes))


def recall_at(
    scores: Sequence[Scores], sources: Sequence[str], min_words: int, min_run: int
) -> float:
    """Fraction of query documents attributed to their source work under the rule
    (``min_words`` matched words and a passage of ``min_run``)."""
    if len(scores) != len(sources) or not sources:
        raise ValueError("need one source per scored query, and at least one query")
    hits = 0
    for found, source in zip(scores, sources, strict=True):
        matched, run = found.get(source, (0, 0))
        hits += matched >= min_words and run >= min_run
    return hits / len(sources)


# -- the benchmark's report ----------------------------------------------------------------

#: Matched-words thresholds of the trade-off table (the passage stays at ``min_run``).
TRADE_OFF = (30, 35, 40, 45, 50, 60, 80)
_BINS = (0, 1, 6, 12, 18, 24, 30, 36, 40)
_TARGET = 1e-6


def fmt_rate(p: float) -> str:
    """A probability for the report: "0" or two significant digits."""
    return "0" if p == 0 else f"{p:.1e}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# Short local names: the report's f-strings call them on almost every line.
_fmt = fmt_rate
_table = markdown_table


def distribution_rows(table: ScoreTable) -> list[list[str]]:
    """Per score bin (:data:`_BINS`): how many documents reach it as best matched words,
    longest passage and joint score."""
    edges = [*_BINS, max(int(table.doc_words.max(initial=0)), _BINS[-1]) + 1]
    rows: list[list[str]] = []
    for a, b in itertools.pairwise(edges):
        label = f">= {a}" if b == edges[-1] else (f"{a}" if b == a + 1 else f"{a}-{b - 1}")
        rows.append(
            [label]
            + [str(int(np.count_nonzero((v >= a) & (v < b))))
               for v in (table.doc_words, table.doc_runs, table.doc_joint)]
        )  # fmt: skip
    return rows


@dataclass(frozen=True, slots=True)
class TailFit:
    """One geometric fit of an upper tail and its check."""

    tail: GeometricTail
    rows: list[FitRow]
    chi2: tuple[float, int, float]


def fit_tail(values: _IntArray, n: int, t0: int, *, width: int, up_to: int) -> TailFit:
    """Geometric tail from ``t0`` with its observed-vs-fitted rows and chi-square."""
    tail = geometric_tail_fit(values, n, t0)
    rows = fit_rows(values, n, tail, width=width, up_to=up_to)
    return TailFit(tail, rows, chi_square(rows))


def _fits(values: _IntArray, n: int, *, up_to: int) -> list[TailFit]:
    """Geometric fits from each candidate start (none if the tail is too thin to fit)."""
    try:
        starts = tail_starts(values, n)
    except ValueError:
        return []
    return [fit_tail(values, n, t0, width=2, up_to=up_to) for t0 in starts]


def _survival(fits: Sequence[TailFit], t: int) -> float:
    """The most pessimistic fit's P(X >= t); NaN without a fit."""
    return max((f.tail.survival(t) for f in fits), default=math.nan)


def _fit_cells(fit: TailFit, t: int) -> list[str]:
    stat, dof, p = fit.chi2
    return [
        f"{fit.tail.t0}",
        f"{fit.tail.n_tail}",
        f"{fit.tail.ratio:.3f}",
        f"{stat:.1f} / {dof} / {p:.2g}",
        f"{_fmt(fit.tail.survival(t))}",
    ]


def _rows_table(fit: TailFit) -> str:
    return _table(
        ["score", "observed", "fitted"],
        [
            [
                r.label(),
                str(r.observed),
                f"{r.expected:.2f}" if r.expected >= 0.01 else _fmt(r.expected),
            ]
            for r in fit.rows
        ],
    )


def report(
    distractors: Sequence[Scores],
    kinds: Sequence[str],
    planted: Sequence[int],
    recall_cells: Mapping[str, tuple[Sequence[Scores], Sequence[str]]],
    *,
    works: int,
    registered_bytes: int,
    scale_bytes: int,
    min_words: int,
    min_run: int,
) -> str:
    """The false-attribution section of the text benchmark (Markdown).

    ``planted[i]``: words of registered text deliberately planted in distractor ``i`` (a
    famous-line-sized quotation), 0 for none.
    """
    if not len(distractors) == len(kinds) == len(planted):
        raise ValueError("need one kind and one planted length per distractor")
    table = score_table(distractors, works, min_run)
    n = table.documents
    big = scaled_registry(works, registered_bytes, scale_bytes)
    false = int(np.count_nonzero(table.doc_joint >= min_words))
    low, high = clopper_pearson(false, n)
    one_sided = clopper_pearson(false, n, confidence=0.90)[1]
    needed = math.ceil(math.log(0.05) / math.log1p(-_TARGET))
    out = ["### False attributions: direct count, score distribution, tail models\n"]
    out.append(
        f"Direct count at the shipped rule (>= {min_words} matched words and a passage >= "
        f"{min_run}): **{false} of {n:,}** distractor documents; Clopper-Pearson 95 % "
        f"interval {_fmt(low)} - {_fmt(high)} (one-sided 95 % upper bound {_fmt(one_sided)}). "
        f"Establishing <= 1e-6 by counting alone needs >= {needed:,} distractors with no "
        f"false attribution. Registry: {works} works, {registered_bytes / 1e6:.1f} MB of text.\n"
    )

    # 1. distributions
    dist_rows = distribution_rows(table)
    out.append(
        "Each distractor's best score against its best work, at lax settings (every work with a "
        "counted run; 0 = no seed hit or no counted run):\n"
    )
    out.append(
        _table(
            ["score (words)", "best matched words (passage ignored)", "longest passage",
             f"joint: best matched words with a passage >= {min_run}"],
            dist_rows,
        )
    )  # fmt: skip
    kind_array = np.array(list(kinds))
    by_kind = ", ".join(
        f"{kind}: {int(table.doc_words[kind_array == kind].max(initial=0))} / "
        f"{int(table.doc_runs[kind_array == kind].max(initial=0))} / "
        f"{int(table.doc_joint[kind_array == kind].max(initial=0))}"
        for kind in sorted(set(kinds))
    )
    out.append(
        f"\nLargest matched words / passage / joint score by kind of distractor: {by_kind}. "
        f"Documents with any candidate work: {int(np.count_nonzero(table.doc_words)):,} of "
        f"{n:,}.\n"
    )

    # 2. model A: the joint score of all distractors (what the rule thresholds)
    joint_fits = _fits(table.doc_joint, n, up_to=min_words)
    # 3. model B: chance matches, in distractors without a planted quotation. The rule needs
    # both many words and a long passage, so P(joint >= t) <= min(P(words >= t),
    # P(passage >= min_run)) whatever their dependence.
    plain = np.array(planted) == 0
    chance = score_table([d for d, p in zip(distractors, plain, strict=True) if p], works, min_run)
    words_fits = _fits(chance.doc_words, chance.documents, up_to=min_words)
    run_fits = _fits(chance.doc_runs, chance.documents, up_to=min_run)
    run_observed = int(np.count_nonzero(chance.doc_runs >= min_run))
    # 4. model C: planted quotations. A quotation of L words is L true words of its work; a
    # false attribution needs chance to add the rest, so the joint score's excess over L is
    # modelled (without a tail to fit: the one-sided bound of the observed count).
    quoted = ~plain
    quote_len = np.array(planted)[quoted]
    excess = np.maximum(table.doc_joint[quoted] - quote_len, 0)
    longest_quote = int(quote_len.max(initial=0))
    excess_fits = _fits(excess, int(excess.size), up_to=max(min_words - longest_quote, 1))
    q = float(quoted.mean()) if n else 0.0

    # Without a tail to fit (too few passages), the passage factor is the one-sided 95 %
    # Clopper-Pearson bound of the observed count.
    run_bound = clopper_pearson(run_observed, max(chance.documents, 1), confidence=0.90)[1]

    def model_b(t: int) -> float:
        words_p = _survival(words_fits, t)
        run_p = _survival(run_fits, min_run) if run_fits else run_bound
        return min(1.0 if math.isnan(words_p) else words_p, run_p)

    def model_c(t: int) -> float:
        if excess_fits:
            return _survival(excess_fits, max(t - longest_quote, 0))
        if excess.size == 0:
            return 0.0
        seen = int(np.count_nonzero(excess >= t - longest_quote))
        return clopper_pearson(seen, int(excess.size), confidence=0.90)[1]

    def combined(t: int) -> float:
        return (1 - q) * model_b(t) + q * model_c(t)

    summary: list[list[str]] = []
    for fit in joint_fits:
        summary.append(["A: joint score, all distractors", f"{n:,}", *_fit_cells(fit, min_words)])
    for fit in words_fits:
        summary.append(
            ["B1: matched words (passage ignored), no planted quotation",
             f"{chance.documents:,}", *_fit_cells(fit, min_words)]
        )  # fmt: skip
    for fit in run_fits:
        summary.append(
            ["B2: longest passage, no planted quotation", f"{chance.documents:,}",
             *_fit_cells(fit, min_run)]
        )  # fmt: skip
    for fit in excess_fits:
        summary.append(
            [f"C: words beyond the planted quotation (>= {min_words - longest_quote} needed)",
             f"{int(excess.size):,}", *_fit_cells(fit, min_words - longest_quote)]
        )  # fmt: skip
    out.append(
        "Geometric upper tails P(X >= t) = p0 r^(t - t0) per document, fitted by maximum "
        "likelihood above t0 (the top 1 % and 0.3 % of each population, at least 20 "
        "documents), extrapolated to the rule; chi2 over 2-word bins pooled to >= 5 fitted:\n"
    )
    out.append(
        _table(
            ["model", "documents", "t0", "documents >= t0", "ratio r", "chi2 / dof / p",
             "P(reaching the rule)"],
            summary,
        )
    )  # fmt: skip
    if not run_fits:
        out.append(
            f"\nB2 has no tail to fit: {run_observed} of {chance.documents:,} distractors "
            f"without a planted quotation have a passage of >= {min_run} words (largest "
            f"{int(chance.doc_runs.max(initial=0))}); its factor is the one-sided 95 % "
            f"Clopper-Pearson bound, {_fmt(run_bound)}."
        )
    if not excess_fits and excess.size:
        out.append(
            f"\nC has no tail to fit: {int(np.count_nonzero(excess))} of {excess.size:,} "
            f"planted quotations (up to {longest_quote} words) have a joint score above their "
            f"length (largest excess {int(excess.max())}; {min_words - longest_quote} needed); "
            f"its figure is the one-sided 95 % Clopper-Pearson bound of the count, "
            f"{_fmt(model_c(min_words))}."
        )
    out.append(
        f"\nPer document at {min_words} words: model A {_fmt(_survival(joint_fits, min_words))}; "
        f"model B (chance) {_fmt(model_b(min_words))}; model C (quotation) "
        f"{_fmt(model_c(min_words))}; the benchmark's mix ({q:.0%} quotations) "
        f"**{_fmt(combined(min_words))}**.\n"
    )
    for name, fits in (("A", joint_fits), ("B1", words_fits), ("C", excess_fits)):
        if fits:
            out.append(f"Observed vs fitted, model {name}, t0 = {fits[0].tail.t0}:\n")
            out.append(_rows_table(fits[0]) + "\n")

    # 5. per (document, work) pair, scaled with the registry: chance matches only
    pair_fits = _fits_pairs(chance, min_words)
    if pair_fits:
        fit = pair_fits[0]
        p_pair = fit.tail.survival(min_words)
        out.append(
            f"Per (document, work) pair, no planted quotation ({chance.pairs:,} pairs, "
            f"{chance.pair_words.size:,} listed), matched words with the passage ignored: "
            f"geometric tail from t0 = {fit.tail.t0} ({fit.tail.n_tail} pairs, ratio "
            f"{fit.tail.ratio:.3f}, chi2 p = {fit.chi2[2]:.2g}): P(words >= {min_words}) = "
            f"{_fmt(p_pair)} per pair, so per document {_fmt(per_query(p_pair, works))} with "
            f"{works} works, {_fmt(per_query(p_pair, 10 * works))} with {10 * works:,}, "
            f"**{_fmt(per_query(p_pair, big))} with {big:,} works of the same mean size "
            f"({scale_bytes / 1e9:.2f} GB of text)** (1 - (1 - p)^R; the passage condition, "
            f"not counted here, divides this further).\n"
        )
    else:
        out.append("Per-pair tail: too few listed pairs to fit.\n")

    # 6. trade-off
    def at_big(t: int) -> float:
        if not pair_fits:
            return math.nan
        words_big = per_query(pair_fits[0].tail.survival(t), big)
        return (1 - q) * min(words_big, model_b(t) * big / works) + q * model_c(t)

    trade_rows: list[list[str]] = []
    for threshold in TRADE_OFF:
        observed = int(np.count_nonzero(table.doc_joint >= threshold))
        trade_rows.append(
            [f">= {threshold}" + (" (shipped)" if threshold == min_words else ""),
             str(observed), _fmt(_survival(joint_fits, threshold)), _fmt(combined(threshold)),
             _fmt(at_big(threshold))]
            + [f"{recall_at(s, src, threshold, min_run):.3f}" for s, src in recall_cells.values()]
        )  # fmt: skip
    out.append(
        f"Trade-off (passage >= {min_run} throughout). Model A and B+C are per document with "
        f"{works} works; the last model column scales the chance part to {big:,} works (per "
        f"pair, or B times {big / works:.0f}, whichever is smaller; quotations do not scale):\n"
    )
    out.append(
        _table(
            ["matched words", "distractors attributed", f"model A, {works} works",
             f"model B+C, {works} works", f"model B+C, {scale_bytes / 1e9:.2f} GB"]
            + [f"recall {c}" for c in recall_cells],
            trade_rows,
        )
    )  # fmt: skip
    return "\n".join(out)


def _fits_pairs(chance: ScoreTable, min_words: int) -> list[TailFit]:
    """Pair tails from the top 1e-5 of pairs (about a hundred in the benchmark: above the
    lump of lone 6-word seeds, which a geometric tail does not describe), most pessimistic
    first."""
    try:
        starts = tail_starts(chance.pair_words, chance.pairs, fractions=(3e-5, 1e-5))
    except ValueError:
        return []
    fits = [
        fit_tail(chance.pair_words, chance.pairs, t0, width=2, up_to=min_words) for t0 in starts
    ]
    return sorted(fits, key=lambda f: -f.tail.survival(min_words))
