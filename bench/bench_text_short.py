"""Short works (poems, lyrics, short statements): recall, and false attributions.

The text benchmark (:mod:`bench.bench_text`) registers chapters of 87 words or more and asks
for excerpts of 50 to 1,000 words; the rule it measures is "40 matched words and a passage of
12". A work shorter than that (a poem, a lyric) is attributed when *half* of its words are
matched (:func:`consentry.fingerprint.text.required_words`). This benchmark measures that rule
on its own registry:

1. **Short works**: :data:`WORKS` non-overlapping passages of 12 to 79 words cut from the
   benchmark's registered literature (the same split as :mod:`bench.bench_text`), each
   registered as a work of its own.
2. **Recall**: each query document is one whole short work, with 0 / 1 / 3 % character errors,
   inside 300-1,500 words of a held-out work, plain, reflowed, HTML-wrapped or with its
   paragraphs shuffled (:mod:`bench.bench_text`'s transformations). Per length band: the
   share attributed to its work under the shipped rule, and under the long-work rule alone
   (40 matched words), in the same run.
3. **False attributions**: the independent distractor documents of
   :mod:`bench.textdistractors` (Debian documentation, dictionaries, quotation collections,
   the KJV) against the short-work registry. Every (document, work) pair with a passage of 12
   words is classified (:func:`bench.textdistractors.classify`: a genuine quotation, verbatim
   but unattributed, or chance) and those the shipped rule attributes are counted.

``python -m bench text_short [--quick]``.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass

from bench import bench_text, textdistractors
from bench.fmrstats import clopper_pearson
from bench.textcorpus import Work, load_works
from consentry.fingerprint.text import (
    DEFAULT_MIN_MATCHED_WORDS,
    DEFAULT_MIN_RUN,
    TextFingerprinter,
    required_words,
)
from consentry.fingerprint.textnorm import normalise
from consentry.index.text import TextContainmentIndex

WORKS = 3_000
QUICK_WORKS = 300
#: Length bands of the recall table, in words (inclusive).
BANDS = ((12, 19), (20, 27), (28, 39), (40, 59), (60, 79))
RATES = (0.0, 0.01, 0.03)
PER_CELL = 100
QUICK_PER_CELL = 8
SEED = 20261127


@dataclass(frozen=True, slots=True)
class ShortWork:
    """A passage of ``parent`` registered as a work of its own."""

    name: str
    parent: str
    text: str
    words: int  # as the fingerprint counts them (normalised tokens)


def cut_short_works(works: list[Work], count: int, rng: random.Random) -> list[ShortWork]:
    """``count`` passages of 12-79 words, none overlapping another: each parent's
    space-separated pieces are cut into consecutive passages of random lengths (uniform), and
    passages of 12-79 words as the fingerprint counts them are drawn from all parents' cuts.
    Raises if the works hold too few."""
    low, high = BANDS[0][0], BANDS[-1][1]
    pieces: list[ShortWork] = []
    for work in works:
        tokens = work.text.split(" ")
        at = 0
        while True:
            length = rng.randint(low, high)
            if at + length > len(tokens):
                break
            text = " ".join(tokens[at : at + length])
            words = len(normalise(text).tokens)
            if low <= words <= high:  # (indentation and punctuation are no words)
                pieces.append(ShortWork(f"{work.name}@{at}", work.name, text, words))
            at += length
    if len(pieces) < count:
        raise ValueError(f"the works hold {len(pieces)} passages, fewer than {count}")
    return rng.sample(pieces, count)


def attributed(matched: int, longest: int, work_words: int, *, shipped: bool) -> bool:
    """The shipped rule (a share of a short work's words), or the long-work rule alone."""
    needed = required_words(work_words) if shipped else DEFAULT_MIN_MATCHED_WORDS
    return matched >= needed and longest >= DEFAULT_MIN_RUN


def band_of(words: int) -> tuple[int, int] | None:
    return next((b for b in BANDS if b[0] <= words <= b[1]), None)


def _embed(text: str, host: Work, rng: random.Random, how: str) -> str:
    words = bench_text.window(host, rng.randint(300, 1500), rng).split(" ")
    cut = rng.randrange(len(words) + 1)
    document = " ".join(words[:cut]) + "\n\n" + text + "\n\n" + " ".join(words[cut:])
    return bench_text.transform(document, how, rng)


def _recall(
    index: TextContainmentIndex,
    shorts: list[ShortWork],
    held_out: list[Work],
    per_cell: int,
    rng: random.Random,
) -> tuple[list[list[str]], int]:
    fingerprinter = TextFingerprinter()
    rows: list[list[str]] = []
    queries = 0
    for band in BANDS:
        members = [s for s in shorts if band_of(s.words) == band]
        for rate in RATES:
            shipped = long_only = whole = whole_shipped = 0
            for number in range(per_cell):
                short = rng.choice(members)
                text = bench_text.char_errors(short.text, rate, rng)
                how = bench_text.TRANSFORMS[number % len(bench_text.TRANSFORMS)]
                document = _embed(text, rng.choice(held_out), rng, how)
                winnow, _ = bench_text.analyse(bench_text.Doc(document, short.name), fingerprinter)
                hit = next(
                    (h for h in index.match_fingerprint(winnow) if h.work_id == short.name), None
                )
                found = False
                if hit is not None:
                    scored = (hit.matched_words, hit.longest_run, hit.work_word_count)
                    found = attributed(*scored, shipped=True)
                    shipped += found
                    long_only += attributed(*scored, shipped=False)
                if how != "shuffle":  # shuffling a play's lines cuts the work itself up
                    whole += 1
                    whole_shipped += found
            queries += per_cell
            rows.append(
                [f"{band[0]}-{band[1]}", f"{rate:.0%}", str(len(members)),
                 f"{shipped / per_cell:.3f}", f"{whole_shipped / max(whole, 1):.3f}",
                 f"{long_only / per_cell:.3f}"]
            )  # fmt: skip
    return rows, queries


def _false_attributions(
    index: TextContainmentIndex, shorts: list[ShortWork], quick: bool
) -> tuple[str, dict[str, int]]:
    sources = textdistractors.SOURCES
    if quick:
        sources = tuple(s for s in sources if s.package in textdistractors.QUICK_SOURCES)
    corpus = textdistractors.build(sources)
    documents = corpus.documents
    if quick:
        documents = documents[:: max(len(documents) // 1000, 1)]
    workers = min(os.cpu_count() or 1, 2)
    matched = textdistractors.match_all(
        index, documents, min_words=0, min_run=DEFAULT_MIN_RUN, workers=workers
    )
    by_name = {s.name: s for s in shorts}
    lines: list[str] = []
    kinds: Counter[str] = Counter()
    false_docs: set[int] = set()
    attributions = 0
    for number, (scores, runs) in enumerate(matched):
        for work_id, (words, longest) in sorted(scores.items()):
            if longest < DEFAULT_MIN_RUN:
                continue
            doc, short = documents[number], by_name[work_id]
            w0, w1, q0, q1 = runs[work_id]
            doc_tokens = normalise(doc.text).tokens
            work_tokens = normalise(short.text).tokens
            margin = 5  # passage ends are fixed by fingerprints, a few words inside the text
            verdict = textdistractors.classify(
                doc_tokens[max(q0 - margin, 0) : q1 + margin],
                work_tokens[max(w0 - margin, 0) : w1 + margin],
                doc.text,
                textdistractors.work_cues(short.parent),
                common_source=doc.package in textdistractors.COMMON_SOURCES,
                min_run=DEFAULT_MIN_RUN,
            )
            counted = attributed(words, longest, len(work_tokens), shipped=True)
            attributions += counted
            kinds[verdict.kind] += 1
            if counted and verdict.counts_as_false:
                false_docs.add(number)
            lines.append(
                f"| {doc.package} | {short.parent} ({len(work_tokens)} words) | {words} | "
                f"{longest} | {'yes' if counted else 'no'} | {verdict.kind} |"
            )
    n = len(documents)
    pairs = n * len(shorts)
    false = len(false_docs)
    per_doc = clopper_pearson(false, n, confidence=0.90)[1]
    per_pair = clopper_pearson(false, pairs, confidence=0.90)[1]
    out = [
        f"{n:,} independent documents ({sum(d.words for d in documents) / 1e6:.1f} M words, "
        f"{len(corpus.files)} packages{'; quick: a sample' if quick else ''}) against the "
        f"{len(shorts):,} short works: {pairs:,} (document, work) pairs.\n",
        "| document's package | work (words) | matched words | longest passage | "
        "attributed | classified |",
        "|---|---|---|---|---|---|",
        *(lines or ["| — | no pair with a passage of 12 words | | | | |"]),
        "",
        f"Attributions: **{attributions}**, of which false (not a quotation): **{false}** "
        f"documents. One-sided 95 % bound: {per_doc:.1e} per document at this registry, "
        f"{per_pair:.1e} per (document, work) pair.",
    ]
    figures = {"documents": n, "pairs": pairs, "attributions": attributions, "false": false}
    figures.update({f"pairs {k}": v for k, v in kinds.items()})
    return "\n".join(out), figures


def run(quick: bool) -> str:
    started = time.perf_counter()
    rng = random.Random(SEED)
    works = load_works()
    registered = [w for n, w in enumerate(works) if n % 4 != 3]
    held_out = [w for n, w in enumerate(works) if n % 4 == 3]
    shorts = cut_short_works(registered, QUICK_WORKS if quick else WORKS, rng)
    fingerprinter = TextFingerprinter()
    # Lax: every work with a counted run is listed, and the rules are applied here.
    index = TextContainmentIndex(min_matched_words=0, min_run=0)
    for row, short in enumerate(shorts, start=1):
        index.add(short.name, fingerprinter.fingerprint(short.text.encode(), "text"), row)
    index.flush()
    rows, queries = _recall(index, shorts, held_out, QUICK_PER_CELL if quick else PER_CELL, rng)
    false_section, _ = _false_attributions(index, shorts, quick)
    table = [
        "| work length (words) | character errors | works | recall, shipped rule | "
        "same, paragraphs not shuffled | recall, 40 matched words |",
        "|---|---|---|---|---|---|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    return "\n".join(
        [
            "## Short works (bench text_short)\n",
            f"{len(shorts):,} non-overlapping passages of 12-79 words of the benchmark's "
            f"registered literature, each registered as a work; {queries:,} query documents, "
            "each one whole short work inside 300-1,500 held-out words (plain, reflowed, "
            "HTML, shuffled paragraphs: a quarter each; shuffling also cuts up a short work "
            "with paragraphs of its own, such as a play's dialogue). Shipped rule: half of a "
            "work of under 80 words (at least 12), else 40 words; a passage of 12 words "
            "either way.\n",
            *table,
            "",
            "### False attributions: independent documents\n",
            false_section,
            f"\nRun took {time.perf_counter() - started:.0f} s.",
        ]
    )
