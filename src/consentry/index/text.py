"""Text containment index: which registered works a document contains, and where.

An inverted index from winnowed word k-gram hashes (``text-winnow-v1``, see
:mod:`consentry.fingerprint.text`) to *global word positions*: every registered work gets a
range of positions (its words, then a gap of ``k``), so one ``uint32`` says both which work
and where in it. Matching a document:

1. Decode its winnowed fingerprint; drop boilerplate hashes (:data:`BOILERPLATE`: licence
   notices, Project Gutenberg headers, copyright lines).
2. **Pre-filter**: a blocked Bloom filter per segment (one 64-bit word per key, 4 bits set,
   12-24 bits per key, measured false-positive rate 0.2-1 %) answers "certainly not
   registered" for nearly all of an unrelated document's hashes with one memory access each.
3. The survivors are looked up in the segment's sorted key array (binary search on a
   memory-mapped ``uint32`` array: the top 32 bits of the hash; the other 32 bits are not
   needed because step 5 asks for aligned *runs*, which random key collisions never form).
   Keys with more than :data:`MAX_POSTINGS` postings occur in many works — formulae, stock
   phrases the boilerplate list missed — and are ignored.
4. Postings become ``(work, word in work)`` pairs with the query word position of the hit.
5. Per work, hits are chained into aligned runs exactly as :func:`~consentry.fingerprint.text.
   containment` does, and a work is reported when :func:`~consentry.fingerprint.text.
   is_attribution` holds (at least 40 matched words and a run of at least 12).

Storage (a directory, written atomically by :meth:`TextContainmentIndex.save`)::

    meta.json                 format, version, watermark, k, window, segment names
    works.txt                 one work id per line
    work_starts.npy           int64: first global position of each work
    work_words.npy            int64: word count of each work
    seg-<n>/keys.npy          uint32 sorted: top 32 bits of each fingerprint hash
    seg-<n>/postings.npy      uint32 (uint64 past 2^32 registered words): global positions
    seg-<n>/bloom.npy         uint64: blocked Bloom filter over the keys

Segments are loaded with ``numpy.load(mmap_mode="r")``: the operating system pages in what
lookups touch, so the index works past RAM (the Bloom filters, 1.5-3 bytes per
fingerprint, are what stays hot). New registrations are appended as a new segment; when more
than :data:`MAX_SEGMENTS` exist the two smallest are merged (a log-structured merge, so each
fingerprint is rewritten O(log n) times).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from consentry.domain.decision import WorkMatch
from consentry.errors import UnreadableInputError
from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.text import (
    DEFAULT_K,
    DEFAULT_MIN_MATCHED_WORDS,
    DEFAULT_MIN_RUN,
    DEFAULT_WINDOW,
    WINNOW_KIND,
    MatchRun,
    StopHashes,
    TextFingerprint,
    covered_words,
    decode_fingerprint,
)

__all__ = [
    "BOILERPLATE",
    "MAX_POSTINGS",
    "MAX_SEGMENTS",
    "TextContainmentIndex",
    "TextContainmentIndexFactory",
    "TextHit",
    "boilerplate_stop_hashes",
]

FORMAT = "consentry-text-containment"
VERSION = 1
MAX_SEGMENTS = 8
MAX_POSTINGS = 64
#: Passages listed in a match's evidence (longest first).
MAX_EVIDENCE_PASSAGES = 10
_BLOOM_BITS_PER_KEY = 12
_BLOOM_PROBES = 4

_U64 = np.uint64
_UInt64Array = npt.NDArray[np.uint64]
_IntArray = npt.NDArray[np.int64]

#: Text that never counts as evidence of a work: it is shared by countless unrelated texts.
#: Every word k-gram of these passages is a stop hash (see StopHashes).
BOILERPLATE: tuple[str, ...] = (
    # Project Gutenberg header and footer (the standard wording of the last decades).
    "This eBook is for the use of anyone anywhere in the United States and most other parts "
    "of the world at no cost and with almost no restrictions whatsoever. You may copy it, "
    "give it away or re-use it under the terms of the Project Gutenberg License included "
    "with this eBook or online at www.gutenberg.org. If you are not located in the United "
    "States, you will have to check the laws of the country where you are located before "
    "using this eBook.",
    "This eBook is for the use of anyone anywhere at no cost and with almost no restrictions "
    "whatsoever. You may copy it, give it away or re-use it under the terms of the Project "
    "Gutenberg License included with this eBook or online at www.gutenberg.net",
    "*** START OF THIS PROJECT GUTENBERG EBOOK *** *** END OF THIS PROJECT GUTENBERG EBOOK ***",
    "End of the Project Gutenberg EBook of. Updated editions will replace the previous one--"
    "the old editions will be renamed. Creating the works from print editions not protected "
    "by U.S. copyright law means that no one owns a United States copyright in these works, "
    "so the Foundation (and you!) can copy and distribute it in the United States without "
    "permission and without paying copyright royalties.",
    # Permissive licences and notices.
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    'software and associated documentation files (the "Software"), to deal in the Software '
    "without restriction, including without limitation the rights to use, copy, modify, "
    "merge, publish, distribute, sublicense, and/or sell copies of the Software, and to "
    "permit persons to whom the Software is furnished to do so, subject to the following "
    "conditions: The above copyright notice and this permission notice shall be included in "
    'all copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED "AS IS", '
    "WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE "
    "WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.",
    "This work is licensed under a Creative Commons Attribution 4.0 International License. "
    "This work is licensed under the Creative Commons Attribution-ShareAlike 4.0 "
    "International License. To view a copy of this license, visit "
    "http://creativecommons.org/licenses/by/4.0/ or send a letter to Creative Commons, PO "
    "Box 1866, Mountain View, CA 94042, USA.",
    "All rights reserved. No part of this publication may be reproduced, distributed, or "
    "transmitted in any form or by any means, including photocopying, recording, or other "
    "electronic or mechanical methods, without the prior written permission of the "
    "publisher, except in the case of brief quotations embodied in critical reviews and "
    "certain other noncommercial uses permitted by copyright law.",
    "This is a work of fiction. Names, characters, businesses, places, events and incidents "
    "are either the products of the author's imagination or used in a fictitious manner. "
    "Any resemblance to actual persons, living or dead, or actual events is purely "
    "coincidental.",
)

_STOP: StopHashes | None = None


def boilerplate_stop_hashes() -> StopHashes:
    """Stop hashes of :data:`BOILERPLATE` (computed once)."""
    global _STOP
    if _STOP is None:
        _STOP = StopHashes.from_texts(BOILERPLATE, k=DEFAULT_K)
    return _STOP


# --------------------------------------------------------------------------------------------
# Bloom filter


def _fmix64(values: _UInt64Array) -> _UInt64Array:
    values = values ^ (values >> _U64(33))
    values = values * _U64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> _U64(33))
    values = values * _U64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> _U64(33))


def _bloom_probe(keys: npt.NDArray[np.uint32], blocks: int) -> tuple[_IntArray, _UInt64Array]:
    mixed = _fmix64(keys.astype(np.uint64) | _U64(1 << 40))
    block = (mixed & _U64(blocks - 1)).astype(np.int64)
    mask = np.zeros(keys.size, dtype=np.uint64)
    for probe in range(_BLOOM_PROBES):
        bit = (mixed >> _U64(32 + 6 * probe)) & _U64(63)
        mask |= _U64(1) << bit
    return block, mask


def _bloom_build(keys: npt.NDArray[np.uint32]) -> _UInt64Array:
    wanted = max(1, keys.size * _BLOOM_BITS_PER_KEY // 64)
    blocks = 1 << max(0, int(wanted - 1).bit_length())
    bloom = np.zeros(blocks, dtype=np.uint64)
    block, mask = _bloom_probe(keys, blocks)
    np.bitwise_or.at(bloom, block, mask)
    return bloom


def _bloom_test(bloom: _UInt64Array, keys: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    block, mask = _bloom_probe(keys, bloom.size)
    result: npt.NDArray[np.bool_] = (bloom[block] & mask) == mask
    return result


# --------------------------------------------------------------------------------------------
# segments


@dataclass(frozen=True, slots=True)
class _Segment:
    keys: npt.NDArray[np.uint32]
    postings: npt.NDArray[np.unsignedinteger[Any]]
    bloom: _UInt64Array
    name: str = ""

    @classmethod
    def build(cls, keys: npt.NDArray[np.uint32], postings: _IntArray) -> _Segment:
        order = np.lexsort((postings, keys))
        wide = postings.size and int(postings.max()) >= 1 << 32
        sorted_keys = keys[order]
        return cls(
            keys=sorted_keys,
            postings=postings[order].astype(np.uint64 if wide else np.uint32),
            bloom=_bloom_build(sorted_keys),
        )

    @classmethod
    def load(cls, folder: Path) -> _Segment:
        try:
            keys = np.load(folder / "keys.npy", mmap_mode="r", allow_pickle=False)
            postings = np.load(folder / "postings.npy", mmap_mode="r", allow_pickle=False)
            bloom = np.load(folder / "bloom.npy", allow_pickle=False)  # small, hot: in RAM
        except (OSError, ValueError) as error:
            raise UnreadableInputError(f"text index segment {folder} is damaged: {error}") from None
        if keys.dtype != np.uint32 or keys.shape != postings.shape or bloom.dtype != np.uint64:
            raise UnreadableInputError(f"text index segment {folder} has the wrong layout")
        return cls(keys, postings, bloom, folder.name)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "keys.npy", np.ascontiguousarray(self.keys), allow_pickle=False)
        np.save(folder / "postings.npy", np.ascontiguousarray(self.postings), allow_pickle=False)
        np.save(folder / "bloom.npy", self.bloom, allow_pickle=False)

    def __len__(self) -> int:
        return int(self.keys.size)

    def lookup(self, keys: npt.NDArray[np.uint32]) -> tuple[_IntArray, _IntArray]:
        """(index into ``keys``, global position) for every posting of every key."""
        if self.keys.size == 0 or keys.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy()
        candidates = np.flatnonzero(_bloom_test(self.bloom, keys))
        wanted = keys[candidates]
        lows = np.searchsorted(self.keys, wanted, side="left")
        highs = np.searchsorted(self.keys, wanted, side="right")
        counts = highs - lows
        keep = (counts > 0) & (counts <= MAX_POSTINGS)
        candidates, lows, counts = candidates[keep], lows[keep], counts[keep]
        if candidates.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy()
        which = np.repeat(candidates, counts)
        starts = np.repeat(lows - np.cumsum(counts) + counts, counts)
        flat = starts + np.arange(int(counts.sum()), dtype=np.int64)
        return which.astype(np.int64), np.asarray(self.postings[flat], dtype=np.int64)


def _merge(segments: Sequence[_Segment]) -> _Segment:
    keys = np.concatenate([np.asarray(s.keys) for s in segments])
    postings = np.concatenate([np.asarray(s.postings, dtype=np.int64) for s in segments])
    return _Segment.build(keys, postings)


# --------------------------------------------------------------------------------------------
# matching


@dataclass(frozen=True, slots=True)
class TextHit:
    """Evidence that a document contains one work (the JSON form is the match's evidence)."""

    work_id: str
    matched_words: int
    longest_run: int
    work_word_count: int
    document_word_count: int
    runs: tuple[MatchRun, ...]

    @property
    def score(self) -> float:
        """Saturating confidence from the matched words: 40 → 0.29, 200 → 0.67, 1000 → 0.91."""
        return round(self.matched_words / (self.matched_words + 100), 4)

    def evidence(self) -> dict[str, Any]:
        passages = [
            {
                "work_words": [r.work_start, r.work_end],
                "document_words": [r.query_start, r.query_end],
            }
            for r in self.runs[:MAX_EVIDENCE_PASSAGES]
        ]
        return {
            "matched_words": self.matched_words,
            "longest_run": self.longest_run,
            "work_words": self.work_word_count,
            "document_words": self.document_word_count,
            "work_fraction": round(self.matched_words / max(self.work_word_count, 1), 4),
            "passages": passages,
            "passages_total": len(self.runs),
        }


def _chain(
    work_pos: _IntArray, query_pos: _IntArray, *, k: int, gap: int, max_shift: int
) -> list[MatchRun]:
    """Aligned runs from hit pairs, as in :func:`consentry.fingerprint.text.containment`."""
    order = np.lexsort((query_pos, work_pos))
    work_sorted = work_pos[order].tolist()
    query_sorted = query_pos[order].tolist()
    runs: list[MatchRun] = []
    run: list[int] | None = None  # work_start, query_start, last_work, last_query
    index = 0
    total = len(work_sorted)
    while index < total:
        work_at = work_sorted[index]
        end = index
        while end < total and work_sorted[end] == work_at:
            end += 1
        candidates = query_sorted[index:end]
        index = end
        if run is not None and work_at - run[2] <= gap:
            expected = run[3] + (work_at - run[2])
            best = min(candidates, key=lambda q: abs(q - expected))
            if abs(best - expected) <= max_shift and best > run[3]:
                run[2], run[3] = work_at, best
                continue
        query_at = candidates[0]
        if run is not None:
            runs.append(MatchRun(run[0], run[2] + k, run[1], run[3] + k))
            later = [q for q in candidates if q > run[3]]
            if later:
                query_at = later[0]
        run = [work_at, query_at, work_at, query_at]
    if run is not None:
        runs.append(MatchRun(run[0], run[2] + k, run[1], run[3] + k))
    return runs


# --------------------------------------------------------------------------------------------
# the index


class TextContainmentIndex:
    """Inverted index of registered works' winnowed k-grams (see the module docstring)."""

    def __init__(
        self,
        *,
        k: int = DEFAULT_K,
        window: int = DEFAULT_WINDOW,
        min_matched_words: int = DEFAULT_MIN_MATCHED_WORDS,
        min_run: int = DEFAULT_MIN_RUN,
        stop: StopHashes | None = None,
    ) -> None:
        self._k = k
        self._window = window
        self.min_matched_words = min_matched_words
        self.min_run = min_run
        self._stop = stop if stop is not None else boilerplate_stop_hashes()
        self._watermark = 0
        self._work_ids: list[str] = []
        self._work_index: dict[str, int] = {}
        self._starts: list[int] = []
        self._words: list[int] = []
        self._next_position = 0
        self._segments: list[_Segment] = []
        self._pending_keys: list[npt.NDArray[np.uint32]] = []
        self._pending_postings: list[_IntArray] = []
        self._pending: _Segment | None = None
        self._starts_array: _IntArray | None = None

    # -- protocol --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "text-containment"

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset({WINNOW_KIND})

    @property
    def watermark(self) -> int:
        return self._watermark

    def __len__(self) -> int:
        """Number of indexed fingerprints."""
        return sum(len(s) for s in self._segments) + sum(p.size for p in self._pending_keys)

    @property
    def work_count(self) -> int:
        return len(self._work_ids)

    def add(self, work_id: str, fingerprints: Sequence[Fingerprint], row_id: int) -> None:
        for fp in fingerprints:
            if fp.kind == WINNOW_KIND:
                self.add_fingerprint(work_id, decode_fingerprint(fp.value))
        self._watermark = max(self._watermark, row_id)

    def add_fingerprint(self, work_id: str, fingerprint: TextFingerprint) -> None:
        """Absorb one work's decoded winnowed fingerprint (a work may be added once)."""
        if fingerprint.k != self._k:
            raise ValueError(f"fingerprint uses k={fingerprint.k}, the index k={self._k}")
        if work_id in self._work_index:
            return  # the same registration replayed: already indexed
        base = self._next_position
        self._work_index[work_id] = len(self._work_ids)
        self._work_ids.append(work_id)
        self._starts.append(base)
        self._words.append(fingerprint.word_count)
        self._next_position = base + max(fingerprint.word_count, 1) + self._k
        self._starts_array = None
        hashes, positions = fingerprint.hashes, fingerprint.positions
        keep = ~self._stop.mask(hashes)
        keys = (hashes[keep] >> _U64(32)).astype(np.uint32)
        self._pending_keys.append(keys)
        self._pending_postings.append(positions[keep].astype(np.int64) + base)
        self._pending = None

    def match(self, fingerprints: Sequence[Fingerprint]) -> list[WorkMatch]:
        hits: list[TextHit] = []
        for fp in fingerprints:
            if fp.kind == WINNOW_KIND:
                hits.extend(self.match_fingerprint(decode_fingerprint(fp.value)))
        best: dict[str, TextHit] = {}
        for hit in hits:
            if hit.work_id not in best or hit.matched_words > best[hit.work_id].matched_words:
                best[hit.work_id] = hit
        ranked = sorted(best.values(), key=lambda h: (-h.matched_words, h.work_id))
        return [WorkMatch(h.work_id, h.score, "text", h.evidence()) for h in ranked]

    def match_fingerprint(
        self, query: TextFingerprint, *, all_candidates: bool = False
    ) -> list[TextHit]:
        """Works the query contains (``all_candidates``: every work with a run, unfiltered)."""
        if query.k != self._k or len(self) == 0 or len(query) == 0:
            return []
        keep = ~self._stop.mask(query.hashes)
        hashes, positions = query.hashes[keep], query.positions[keep]
        keys = (hashes >> _U64(32)).astype(np.uint32)
        which_parts: list[_IntArray] = []
        global_parts: list[_IntArray] = []
        for segment in self._all_segments():
            which, where = segment.lookup(keys)
            which_parts.append(which)
            global_parts.append(where)
        which = np.concatenate(which_parts)
        if which.size == 0:
            return []
        where = np.concatenate(global_parts)
        starts = self._starts_np()
        work = np.searchsorted(starts, where, side="right") - 1
        work_pos = where - starts[work]
        query_pos = positions[which]
        order = np.argsort(work, kind="stable")
        work, work_pos, query_pos = work[order], work_pos[order], query_pos[order]
        bounds = np.flatnonzero(np.diff(work)) + 1
        edges = [0, *bounds.tolist(), int(work.size)]
        gap = self._window + self._k
        out: list[TextHit] = []
        min_hits = 1 if all_candidates else 2
        for first, last in itertools.pairwise(edges):
            if last - first < min_hits:
                continue
            number = int(work[first])
            words = self._words[number]
            runs = _chain(
                work_pos[first:last], query_pos[first:last], k=self._k, gap=gap, max_shift=3
            )
            runs = [
                MatchRun(
                    r.work_start,
                    min(r.work_end, words),
                    r.query_start,
                    min(r.query_end, query.word_count),
                )
                for r in runs
            ]
            matched = covered_words(list(runs))
            longest = max((r.words for r in runs), default=0)
            if not all_candidates and (matched < self.min_matched_words or longest < self.min_run):
                continue
            out.append(
                TextHit(
                    work_id=self._work_ids[number],
                    matched_words=matched,
                    longest_run=longest,
                    work_word_count=words,
                    document_word_count=query.word_count,
                    runs=tuple(sorted(runs, key=lambda r: (-r.words, r.work_start))),
                )
            )
        out.sort(key=lambda h: (-h.matched_words, h.work_id))
        return out

    # -- storage ---------------------------------------------------------------------------

    def _starts_np(self) -> _IntArray:
        if self._starts_array is None:
            self._starts_array = np.array(self._starts, dtype=np.int64)
        return self._starts_array

    def _all_segments(self) -> list[_Segment]:
        if self._pending is None and self._pending_keys:
            self._pending = _Segment.build(
                np.concatenate(self._pending_keys), np.concatenate(self._pending_postings)
            )
        return [*self._segments, *([self._pending] if self._pending is not None else [])]

    def flush(self) -> None:
        """Turn pending additions into a segment and merge segments past the limit."""
        segments = self._all_segments()
        self._pending_keys, self._pending_postings, self._pending = [], [], None
        segments = [s for s in segments if len(s)]
        while len(segments) > MAX_SEGMENTS:
            segments.sort(key=len)
            segments = [_merge(segments[:2]), *segments[2:]]
        self._segments = segments

    def save(self, directory: Path) -> None:
        """Write the whole index into ``directory`` atomically (a sibling is renamed)."""
        self.flush()
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            names: list[str] = []
            for number, segment in enumerate(self._segments):
                name = f"seg-{number:04d}"
                segment.save(staging / name)
                names.append(name)
            (staging / "works.txt").write_text(
                "".join(f"{w}\n" for w in self._work_ids), encoding="utf-8"
            )
            np.save(staging / "work_starts.npy", self._starts_np(), allow_pickle=False)
            np.save(
                staging / "work_words.npy",
                np.array(self._words, dtype=np.int64),
                allow_pickle=False,
            )
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "watermark": self._watermark,
                "k": self._k,
                "window": self._window,
                "next_position": self._next_position,
                "min_matched_words": self.min_matched_words,
                "min_run": self.min_run,
                "segments": names,
                "fingerprints": len(self),
            }
            (staging / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
            old = None
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                directory.rename(old)
            staging.rename(directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # Re-open what was written memory-mapped, so memory stays bounded after saving.
        self._segments = [_Segment.load(directory / name) for name in names]

    @classmethod
    def load(cls, directory: Path) -> TextContainmentIndex:
        directory = Path(directory)
        try:
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            work_ids = (directory / "works.txt").read_text(encoding="utf-8").splitlines()
            starts = np.load(directory / "work_starts.npy", allow_pickle=False)
            words = np.load(directory / "work_words.npy", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UnreadableInputError(f"text index at {directory} is damaged: {error}") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise UnreadableInputError(f"{directory} is not a version {VERSION} text index")
        if not (len(work_ids) == starts.size == words.size):
            raise UnreadableInputError(f"text index at {directory} is inconsistent")
        index = cls(
            k=int(meta["k"]),
            window=int(meta["window"]),
            min_matched_words=int(meta["min_matched_words"]),
            min_run=int(meta["min_run"]),
        )
        index._watermark = int(meta["watermark"])
        index._work_ids = work_ids
        index._work_index = {w: n for n, w in enumerate(work_ids)}
        index._starts = [int(s) for s in starts]
        index._words = [int(w) for w in words]
        index._next_position = int(meta["next_position"])
        index._segments = [_Segment.load(directory / name) for name in meta["segments"]]
        return index

    def disk_bytes(self, directory: Path) -> int:
        """Bytes the saved index takes in ``directory``."""
        return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


class TextContainmentIndexFactory:
    """Creates or loads :class:`TextContainmentIndex` (segments memory-mapped)."""

    name = "text-containment"

    def create(self) -> TextContainmentIndex:
        return TextContainmentIndex()

    def load(self, directory: Path) -> TextContainmentIndex:
        return TextContainmentIndex.load(directory)
