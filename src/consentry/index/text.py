"""Text containment index: which registered works a document contains, and where.

The index holds, for every registered work, its winnowed word k-gram fingerprint
(``text-winnow-v1``, see :mod:`consentry.fingerprint.text`, unchanged) in two tiers sized so
that the whole index costs under a tenth of the registered text:

**Candidate tier (seeds).** Only the fingerprints that a *wider* winnowing window
(:data:`SEED_WINDOW` k-gram positions) selects, about a quarter of them. Every window of
``SEED_WINDOW`` positions contains a seed, and the minimum of a wide window is also the
minimum of every narrower window inside it, so each seed is a fingerprint that the query's
ordinary (window 8) winnowing selects too: any verbatim shared passage of
``SEED_WINDOW + k - 1`` words yields at least one seed hit. The seed set is computed from the
stored fingerprint alone (:func:`seed_mask`), so registration and queries keep one fingerprint
format and the registry's rows need no change. On disk each seed is one packed integer
(usually 32 bits): the low bits of its 24-bit key (the high bits are implicit in a bucket
offsets array) and its slot in the verification stream. When a segment is opened the seeds'
full 32-bit keys (24 from the entries, 8 from the stream) and a directory over them are
rebuilt in memory (4 bytes per seed plus about 4 per directory bucket: what lookups keep hot,
as the Bloom filters of the single-tier index did).

**Verification tier (stream).** Every fingerprint of every work in text order, 11 bits each:
8 bits of hash (the low byte of the hash's top 32 bits) and a 3-bit advance in words from the
previous fingerprint (1-8: window-8 winnowing never leaves a longer gap; where stop hashes
were removed or one work ends, listed filler slots advance 8 words), with the absolute word
position stored every :data:`_BLOCK` slots. A seed hit (32 key bits, as many as the single-tier
index used) is *verified and extended*: the work's fingerprints within :data:`NEIGHBOURHOOD`
slots are decoded and each is paired with the query fingerprint of equal 8-bit hash that lies
on the seed's alignment diagonal (within :data:`_DIAGONAL_TOLERANCE` words). Pairs are
chained into aligned runs as :func:`~consentry.fingerprint.text.containment` does, and
:func:`_weigh` decides what counts, so that 8-bit coincidences never add words (see there).
The evidence is measured on real, aligned fingerprint matches at their true word positions.

Matching a document:

1. Decode its winnowed fingerprint; drop boilerplate hashes (:data:`BOILERPLATE`).
2. Look every fingerprint up in each segment's seed tier; keys with more than
   :data:`MAX_POSTINGS` seed postings (stock phrases the boilerplate list missed) are ignored.
3. Verify and extend every seed hit against the stream.
4. Per work, chain the pairs into runs and weigh them; a work is reported when
   :func:`~consentry.fingerprint.text.is_attribution` holds (at least 40 matched words, or
   half of a work too short for 40, and a passage of at least 12).

Storage (a directory, written atomically by :meth:`TextContainmentIndex.save`)::

    meta.json                   format, version 2, watermark, k, window, seed window, segments
    works.txt                   one work id per line
    work_words.npy              int64: word count of each work
    seg-<n>/segment.json        bucket bits, posting bits, counts
    seg-<n>/works.npy           int64: the segment's works (index numbers), in stream order
    seg-<n>/word_starts.npy     int64: each work's first word in the segment's word space
    seg-<n>/slot_starts.npy     int64: each work's first stream slot
    seg-<n>/offsets.npy         uint32/uint64: seed bucket offsets (2^bucket_bits + 1)
    seg-<n>/entries.npy         uint32 (uint64 if needed): residual key bits | stream slot
    seg-<n>/hash8.npy           uint8 per slot
    seg-<n>/advance.npy         uint8: 3-bit advances (1-8 words), bit-packed
    seg-<n>/fillers.npy         int64: slots that only advance 8 words (no fingerprint)
    seg-<n>/checkpoints.npy     uint32/int64: word position of every 128th slot

All segment arrays except the offsets and work tables are opened with
``numpy.load(mmap_mode="r")``: the operating system pages in what lookups touch, so the index
works past RAM. New registrations become a new segment; past :data:`MAX_SEGMENTS` the two
smallest are merged (log-structured). Version 1 directories (the single-tier index, which kept
the top 32 bits of every fingerprint hash and its word position) are converted in memory when
loaded, exactly (this design uses only those 32 bits), and written as version 2 on the next
save.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    DEFAULT_SHORT_WORK_SHARE,
    DEFAULT_WINDOW,
    WINNOW_KIND,
    MatchRun,
    StopHashes,
    TextFingerprint,
    covered_words,
    required_words,
    winnowed_of,
)

__all__ = [
    "BOILERPLATE",
    "MAX_POSTINGS",
    "MAX_SEGMENTS",
    "NEIGHBOURHOOD",
    "SEED_KEY_LIMIT",
    "SEED_WINDOW",
    "TextContainmentIndex",
    "TextContainmentIndexFactory",
    "TextHit",
    "boilerplate_stop_hashes",
    "seed_mask",
]

FORMAT = "consentry-text-containment"
VERSION = 2
MAX_SEGMENTS = 8
MAX_POSTINGS = 64
#: Passages listed in a match's evidence (longest first).
MAX_EVIDENCE_PASSAGES = 10
#: Winnowing window (in k-gram positions) that picks the seeds out of a work's fingerprints.
SEED_WINDOW = 36
#: Seeds must also have a 32-bit key below this (a quarter of the key space). A window
#: minimum over 36 positions exceeds it with probability 0.75^36 = 3e-5, so almost no seed is
#: lost, and a query looks up only its fingerprints below it: a quarter of the lookups, and a
#: quarter of the chance 32-bit collisions that each cost a verification.
SEED_KEY_LIMIT = 1 << 30
#: Stream slots decoded on each side of a seed hit when verifying it (about 140 words).
NEIGHBOURHOOD = 32
#: How far (words) a verified pair may sit off the seed's diagonal before the chaining (which
#: then allows 3 words of drift between consecutive pairs) looks at it.
_DIAGONAL_TOLERANCE = 2
#: Drift (words) allowed between consecutive pairs of a run. None: a stream pair agrees on
#: 8 bits only, and every word of tolerance triples the chance pairs a run can pick up; a
#: split or merged word (OCR) ends the run, and the next run on the shifted diagonal is
#: bridged to it (see _weigh).
_MAX_SHIFT = 0
#: Counted runs on one alignment this close (words) are one passage (see _weigh).
_BRIDGE = 60
_BRIDGE_DRIFT = 2
_BLOCK = 128
_FILLER_ADVANCE = 8
_KEY_BITS = 24  # key bits held in the seed tier; the stream's hash8 adds 8 more
#: A verification row: the neighbourhood of a seed from its block-aligned anchor.
_ROW = 2 * NEIGHBOURHOOD + _BLOCK
_ROW_COLUMNS = np.arange(_ROW)
_ROW_GROUPS = np.arange(_ROW // 8)
_ROW_BYTES = np.arange(_ROW * 3 // 8)
_ROW_SHIFTS = np.arange(0, 24, 3, dtype=np.uint32)
#: Words a neighbourhood reaches on either side of its seed (at most 8 per slot), plus the
#: diagonal tolerance: the query's padding, so that no candidate index needs clipping.
_QUERY_PAD = _FILLER_ADVANCE * NEIGHBOURHOOD + _DIAGONAL_TOLERANCE
_TOLERANCE_OFFSETS = np.arange(2 * _DIAGONAL_TOLERANCE + 1)

_U64 = np.uint64
_UInt32Array = npt.NDArray[np.uint32]
_UInt8Array = npt.NDArray[np.uint8]
_UIntArray = npt.NDArray[np.unsignedinteger[Any]]
_IntArray = npt.NDArray[np.int64]
_BoolArray = npt.NDArray[np.bool_]
_EMPTY = np.zeros(0, dtype=np.int64)

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
# seed selection


def seed_mask(
    keys: _UInt32Array, positions: _IntArray, word_count: int, *, k: int, window: int
) -> _BoolArray:
    """Which of a work's fingerprints winnowing with ``window`` positions would select.

    ``keys`` are the fingerprints' 32-bit keys at increasing k-gram ``positions``. The
    fingerprints are themselves a narrower winnowing of every k-gram, and the minimum of a
    wide window is the minimum of the narrow windows inside it, so the wide selection is
    computable from them alone: fingerprint ``i`` is selected iff some window of ``window``
    positions inside the text contains it and no smaller key. With the nearest smaller key on
    each side at positions ``l`` and ``r`` that means a window fits strictly between them,
    over position ``p_i`` and inside ``[0, L)`` (``L`` k-gram positions). Equal keys (a
    repeated k-gram) do not exclude each other, so both are kept.

    Only neighbours within one window's worth of fingerprints are compared (a smaller key
    further away cannot stop a window from fitting), so the cost is ``O(n m)`` array work with
    ``m`` the largest number of fingerprints in one window.
    """
    count = int(keys.size)
    if count == 0:
        return np.zeros(0, dtype=np.bool_)
    positions = positions.astype(np.int64, copy=False)
    kgram_positions = max(word_count - k + 1, int(positions[-1]) + 1, 1)
    span = min(window, kgram_positions)
    far = 1 << 62
    left = np.full(count, -far, dtype=np.int64)
    right = np.full(count, far, dtype=np.int64)
    ahead = np.searchsorted(positions, positions + span, side="left") - np.arange(count)
    reach = int(ahead.max())
    for step in range(1, min(reach, count - 1) + 1):
        # Right: the first key smaller than mine among the next `step` fingerprints.
        smaller = keys[step:] < keys[:-step]
        open_right = right[:-step] == far
        update = smaller & open_right
        right[:-step][update] = positions[step:][update]
        # Left, symmetrically.
        smaller = keys[:-step] < keys[step:]
        open_left = left[step:] == -far
        update = smaller & open_left
        left[step:][update] = positions[:-step][update]
    low = np.maximum(np.maximum(left + 1, 0), positions - span + 1)
    high = np.minimum(np.minimum(positions, right - span), kgram_positions - span)
    chosen: _BoolArray = low <= high
    return chosen


# --------------------------------------------------------------------------------------------
# segments


@dataclass(frozen=True, slots=True)
class _WorkPrints:
    """One work's fingerprints as the segments store them (stop hashes already removed)."""

    number: int  # index of the work in TextContainmentIndex._work_ids
    word_count: int
    keys: _UInt32Array  # top 32 bits of each fingerprint hash
    positions: _IntArray
    seeds: _BoolArray


@dataclass(frozen=True, slots=True)
class _Segment:
    """Seed tier and verification stream of a group of works (see the module docstring)."""

    works: _IntArray
    word_starts: _IntArray  # len(works) + 1
    slot_starts: _IntArray  # len(works) + 1
    checkpoints: _UIntArray | _IntArray
    hash8: _UInt8Array
    advance: _UInt8Array
    fillers: _IntArray
    offsets: _UIntArray
    entries: _UIntArray
    bucket_bits: int
    posting_bits: int
    fingerprints: int
    max_bucket: int
    name: str = ""
    #: The seeds' full 32-bit keys (24 bits from the entries, the low byte from the stream)
    #: in entry order, rebuilt in memory when the segment is opened: 4 bytes per seed, the
    #: part of the index that lookups keep hot. Only exact 32-bit matches touch the
    #: memory-mapped entries and stream.
    keys32: _UInt32Array = field(init=False, repr=False, compare=False)
    #: Where each value of the keys' leading :attr:`directory_bits` bits starts in keys32
    #: (entries are sorted by their 24-bit key, so these ranges are contiguous).
    directory: _IntArray = field(init=False, repr=False, compare=False)
    directory_bits: int = field(init=False, repr=False, compare=False)
    #: The advance bits read as overlapping little-endian 32-bit words, one every three
    #: bytes (eight slots): a view, no copy (``advance`` ends with a spare byte, so the last
    #: word stays inside it).
    advance_words: _UInt32Array = field(init=False, repr=False, compare=False)
    #: Each work's [first slot, end slot) — one gather finds both for a seed.
    work_slots: _IntArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = np.ndarray(
            shape=(max(self.advance.size - 1, 0) // 3,),
            dtype="<u4",
            buffer=np.ascontiguousarray(self.advance),
            strides=(3,),
        )
        object.__setattr__(self, "advance_words", words)
        spans = np.stack((self.slot_starts[:-1], self.slot_starts[1:]), axis=1)
        object.__setattr__(self, "work_slots", spans)
        slots, keys24 = self.seed_keys()
        keys32 = (keys24 << np.uint32(8)) | self.hash8[slots].astype(np.uint32)
        bits = max(1, min(_KEY_BITS, keys24.size.bit_length()))
        counts = np.bincount(keys24 >> np.uint32(_KEY_BITS - bits), minlength=1 << bits)
        directory = np.zeros((1 << bits) + 1, dtype=np.int64)
        np.cumsum(counts, out=directory[1:])
        small = keys24.size < 1 << 31
        object.__setattr__(self, "keys32", keys32)
        object.__setattr__(self, "directory", directory.astype(np.int32) if small else directory)
        object.__setattr__(self, "directory_bits", bits)

    # -- building ------------------------------------------------------------------------

    @classmethod
    def build(cls, works: Sequence[_WorkPrints], k: int) -> _Segment:
        numbers = np.array([w.number for w in works], dtype=np.int64)
        spans = np.array([max(w.word_count, 1) + k for w in works], dtype=np.int64)
        word_starts = np.zeros(len(works) + 1, dtype=np.int64)
        np.cumsum(spans, out=word_starts[1:])
        sizes = np.array([w.keys.size for w in works], dtype=np.int64)
        print_starts = np.zeros(len(works) + 1, dtype=np.int64)
        np.cumsum(sizes, out=print_starts[1:])
        if sizes.sum():
            keys = np.concatenate([w.keys for w in works])
            local = np.concatenate([w.positions for w in works]).astype(np.int64)
            seeds = np.concatenate([w.seeds for w in works])
        else:
            keys = np.zeros(0, dtype=np.uint32)
            local = np.zeros(0, dtype=np.int64)
            seeds = np.zeros(0, dtype=np.bool_)
        absolute = local + np.repeat(word_starts[:-1], sizes)
        return cls._from_arrays(numbers, word_starts, print_starts, absolute, keys, seeds)

    @classmethod
    def _from_arrays(
        cls,
        numbers: _IntArray,
        word_starts: _IntArray,
        print_starts: _IntArray,
        absolute: _IntArray,
        keys: _UInt32Array,
        seeds: _BoolArray,
        top24: _UInt32Array | None = None,
    ) -> _Segment:
        """Encode fingerprints at increasing ``absolute`` positions (``keys``: their top 32
        hash bits; when merging only the low byte and, for seeds, ``top24`` are known)."""
        count = int(absolute.size)
        if count:
            delta = np.diff(absolute, prepend=absolute[0] - 1)
            fillers = (delta - 1) // _FILLER_ADVANCE
            real_slot = np.cumsum(fillers + 1) - 1
            slots = int(real_slot[-1]) + 1
        else:
            delta = fillers = real_slot = _EMPTY
            slots = 0
        # Winnowing with window 8 leaves gaps of 1-8 words: 3 bits. Longer gaps (stop hashes
        # removed, the step from one work to the next) take filler slots of 8 words, listed
        # apart because every 3-bit value is a real advance.
        steps = np.full(slots, _FILLER_ADVANCE, dtype=np.int64)
        steps[real_slot] = delta - _FILLER_ADVANCE * fillers
        is_filler = np.ones(slots, dtype=np.bool_)
        is_filler[real_slot] = False
        filler_slots = np.flatnonzero(is_filler).astype(np.int64)
        hash8 = np.zeros(slots, dtype=np.uint8)
        hash8[real_slot] = (keys & np.uint32(0xFF)).astype(np.uint8)
        slot_positions = (int(absolute[0]) - 1 if count else 0) + np.cumsum(steps)
        checkpoints_raw = slot_positions[::_BLOCK]
        wide = checkpoints_raw.size and int(checkpoints_raw.max()) >= 1 << 32
        checkpoints: _UIntArray | _IntArray = (
            checkpoints_raw if wide else checkpoints_raw.astype(np.uint32)
        )
        codes = (steps - 1).astype(np.uint8)
        bits = ((codes[:, None] >> np.arange(3, dtype=np.uint8)[None, :]) & 1).ravel()
        advance = np.append(np.packbits(bits, bitorder="little"), np.uint8(0))
        first_slot = np.append(real_slot, slots)[print_starts]
        # Seeds: bucket by the leading bits of their 24-bit key; the rest of the key and the
        # stream slot share one packed integer.
        seed_slots = real_slot[seeds].astype(np.uint64) if count else _EMPTY.astype(np.uint64)
        if top24 is None:
            top24 = (keys[seeds] >> np.uint32(8)).astype(np.uint32)
        seed_count = int(seed_slots.size)
        posting_bits = max(1, (max(slots, 1) - 1).bit_length())
        natural = max(0, min(_KEY_BITS, seed_count.bit_length() - 5))
        bucket_bits = natural
        dtype: type[np.unsignedinteger[Any]] = np.uint64
        if posting_bits + _KEY_BITS - natural <= 32:
            dtype = np.uint32
        elif _KEY_BITS + posting_bits - 32 <= min(_KEY_BITS, natural + 2):
            # A few more buckets (cheap) let every entry fit 32 bits.
            bucket_bits = _KEY_BITS + posting_bits - 32
            dtype = np.uint32
        residual_bits = _KEY_BITS - bucket_bits
        top = top24.astype(np.uint64)
        buckets = (top >> _U64(residual_bits)).astype(np.int64)
        residual = top & _U64((1 << residual_bits) - 1)
        packed = (residual << _U64(posting_bits)) | seed_slots
        order = np.lexsort((packed, buckets))
        entries = packed[order].astype(dtype)
        counts = np.bincount(buckets, minlength=1 << bucket_bits)
        offsets_raw = np.zeros((1 << bucket_bits) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets_raw[1:])
        offsets: _UIntArray = offsets_raw.astype(np.uint64)
        if seed_count < 1 << 32:
            offsets = offsets_raw.astype(np.uint32)
        return cls(
            works=numbers,
            word_starts=word_starts,
            slot_starts=first_slot.astype(np.int64),
            checkpoints=checkpoints,
            hash8=hash8,
            advance=advance,
            fillers=filler_slots,
            offsets=offsets,
            entries=entries,
            bucket_bits=bucket_bits,
            posting_bits=posting_bits,
            fingerprints=count,
            max_bucket=int(counts.max()) if counts.size else 0,
        )

    # -- storage -------------------------------------------------------------------------

    _ARRAYS = (
        "works",
        "word_starts",
        "slot_starts",
        "checkpoints",
        "hash8",
        "advance",
        "fillers",
        "offsets",
        "entries",
    )
    _IN_MEMORY = frozenset({"works", "word_starts", "slot_starts", "offsets"})

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in self._ARRAYS:
            array = np.ascontiguousarray(getattr(self, name))
            np.save(folder / f"{name}.npy", array, allow_pickle=False)
        header = {
            "bucket_bits": self.bucket_bits,
            "posting_bits": self.posting_bits,
            "fingerprints": self.fingerprints,
            "max_bucket": self.max_bucket,
        }
        (folder / "segment.json").write_text(json.dumps(header), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> _Segment:
        try:
            header = json.loads((folder / "segment.json").read_text(encoding="utf-8"))
            arrays = {
                # A plain ndarray view of the mapping: same pages, without np.memmap's
                # per-indexing overhead (which dominated lookups).
                name: np.load(
                    folder / f"{name}.npy",
                    mmap_mode=None if name in cls._IN_MEMORY else "r",
                    allow_pickle=False,
                ).view(np.ndarray)
                for name in cls._ARRAYS
            }
            segment = cls(
                **arrays,
                bucket_bits=int(header["bucket_bits"]),
                posting_bits=int(header["posting_bits"]),
                fingerprints=int(header["fingerprints"]),
                max_bucket=int(header["max_bucket"]),
                name=folder.name,
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UnreadableInputError(f"text index segment {folder} is damaged: {error}") from None
        if not segment._consistent():
            raise UnreadableInputError(f"text index segment {folder} has the wrong layout")
        return segment

    def _consistent(self) -> bool:
        slots = int(self.hash8.size)
        works = int(self.works.size)
        return (
            self.hash8.dtype == np.uint8
            and self.advance.dtype == np.uint8
            and self.advance.size == (3 * slots + 7) // 8 + 1
            and self.fillers.dtype == np.int64
            and self.checkpoints.size == (slots + _BLOCK - 1) // _BLOCK
            and self.word_starts.size == self.slot_starts.size == works + 1
            and self.offsets.size == (1 << self.bucket_bits) + 1
            and int(self.offsets[-1]) == self.entries.size
            and self.entries.dtype in (np.uint32, np.uint64)
            and 0 <= self.bucket_bits <= _KEY_BITS
        )

    def __len__(self) -> int:
        return self.fingerprints

    @property
    def seeds(self) -> int:
        return int(self.entries.size)

    # -- reading the stream --------------------------------------------------------------

    def _advances(self, slots: _IntArray) -> _IntArray:
        """Words from the previous slot to each slot (3 bits each, 1-8)."""
        bit = slots * 3
        low = self.advance[bit >> 3].astype(np.int64)
        high = self.advance[(bit >> 3) + 1].astype(np.int64)
        steps: _IntArray = (((low | (high << 8)) >> (bit & 7)) & 7) + 1
        return steps

    def _fillers(self, slots: _IntArray) -> _BoolArray:
        if self.fillers.size == 0:
            return np.zeros(slots.shape, dtype=np.bool_)
        at = np.minimum(np.searchsorted(self.fillers, slots), self.fillers.size - 1)
        found: _BoolArray = self.fillers[at] == slots
        return found

    def decode(self) -> tuple[_IntArray, _UInt8Array, _BoolArray]:
        """Every slot: word position, hash8, and whether it is a fingerprint (not a filler)."""
        slots = np.arange(self.hash8.size, dtype=np.int64)
        steps = self._advances(slots)
        real = ~self._fillers(slots)
        steps[::_BLOCK] = 0  # a block's first slot sits at its checkpoint
        running = np.cumsum(steps)
        block = slots // _BLOCK
        starts = np.asarray(self.checkpoints).astype(np.int64)
        positions = starts[block] + running - running[::_BLOCK][block]
        return positions, np.asarray(self.hash8), real

    def seed_keys(self) -> tuple[_IntArray, _UInt32Array]:
        """(slot, 24-bit key) of every seed."""
        entries = np.asarray(self.entries).astype(np.uint64)
        slots = (entries & _U64((1 << self.posting_bits) - 1)).astype(np.int64)
        residual_bits = _KEY_BITS - self.bucket_bits
        residual = entries >> _U64(self.posting_bits)
        bounds = np.asarray(self.offsets).astype(np.int64)
        counts = bounds[1:] - bounds[:-1]
        buckets = np.repeat(np.arange(counts.size, dtype=np.uint64), counts)
        top24 = ((buckets << _U64(residual_bits)) | residual).astype(np.uint32)
        return slots, top24

    # -- matching ------------------------------------------------------------------------

    def lookup(self, keys: _UInt32Array) -> tuple[_IntArray, _IntArray]:
        """(index into ``keys``, stream slot) of every seed with the same 32-bit key.

        The keys are found through :attr:`directory` in :attr:`keys32` (both in memory,
        about one random access each); only keys found there read the memory-mapped
        entries.
        """
        if self.entries.size == 0 or keys.size == 0:
            return _EMPTY, _EMPTY
        bucket = (keys >> np.uint32(32 - self.directory_bits)).astype(np.intp)
        low = self.directory[bucket]
        counts = self.directory[bucket + 1] - low
        which = np.repeat(np.arange(keys.size), counts)
        flat = np.arange(which.size) + np.repeat(low - np.cumsum(counts) + counts, counts)
        same = self.keys32[flat] == keys[which]
        which, flat = which[same], flat[same]
        if which.size == 0:
            return _EMPTY, _EMPTY
        slots = (self.entries[flat] & ((1 << self.posting_bits) - 1)).astype(np.int64)
        if which.size > MAX_POSTINGS:
            # A key with more than MAX_POSTINGS seeds occurs in many works: not evidence.
            frequent = np.bincount(which, minlength=keys.size) > MAX_POSTINGS
            if frequent.any():
                keep = ~frequent[which]
                which, slots = which[keep], slots[keep]
        return which.astype(np.int64), slots

    def _row_advances(self, anchors: _IntArray) -> _IntArray:
        """Advances (1-8 words) of the :data:`_ROW` slots from each block-aligned anchor.

        A block of 128 slots starts on a byte boundary (128 x 3 bits = 48 bytes), so a row
        is :data:`_ROW` / 8 consecutive three-byte groups of eight slots each: one gather of
        32-bit words (see :attr:`advance_words`) and a shift per slot, instead of two byte
        gathers per slot.
        """
        groups = (anchors >> 3)[:, None] + _ROW_GROUPS
        if int(groups[:, -1].max()) >= self.advance_words.size:
            # A row reaching the stream's last bytes, where a 32-bit word would run past
            # the array: read those rows byte by byte.
            return self._row_advances_bytewise(anchors)
        steps = (self.advance_words[groups][..., None] >> _ROW_SHIFTS) & np.uint32(7)
        decoded: _IntArray = steps.reshape(anchors.size, _ROW).astype(np.int64)
        decoded += 1
        return decoded

    def _row_advances_bytewise(self, anchors: _IntArray) -> _IntArray:
        """:meth:`_row_advances` for rows at the end of the stream (bytes past it read as
        the last byte: those slots lie beyond the last work, and verification masks them)."""
        at = ((anchors >> 3) * 3)[:, None] + _ROW_BYTES
        np.minimum(at, self.advance.size - 1, out=at)
        raw = self.advance[at].reshape(-1, _ROW // 8, 3).astype(np.uint32)
        packed = raw[..., 0] | (raw[..., 1] << np.uint32(8)) | (raw[..., 2] << np.uint32(16))
        steps = (packed[..., None] >> _ROW_SHIFTS) & np.uint32(7)
        decoded: _IntArray = steps.reshape(anchors.size, _ROW).astype(np.int64)
        decoded += 1
        return decoded

    def verify(
        self, seed_query: _IntArray, seed_slots: _IntArray, query: _QueryView
    ) -> tuple[_IntArray, _IntArray, _IntArray, _BoolArray]:
        """Pairs (work number, word in work, word in query, is the seed) around seed hits.

        Each seed's neighbourhood is decoded as one row of a matrix (block-aligned, so that a
        checkpoint anchors the row's running sum of advances); every fingerprint in it is
        compared with the query's fingerprints lying within :data:`_DIAGONAL_TOLERANCE` words
        of the seed's diagonal. Positions stay relative to the row's checkpoint until the
        few pairs found are converted. This runs once per document with a seed hit and most
        of its cost is the number of array operations, so they are kept few.
        """
        work = np.searchsorted(self.slot_starts[1:], seed_slots, side="right")
        spans = self.work_slots[work]
        low = np.maximum(seed_slots - NEIGHBOURHOOD, spans[:, 0])
        high = np.minimum(seed_slots + (NEIGHBOURHOOD + 1), spans[:, 1])
        anchor = low & ~(_BLOCK - 1)
        steps = self._row_advances(anchor)
        steps[:, 0] = 0  # a block's first slot sits at its checkpoint
        positions = np.cumsum(steps, axis=1, out=steps)
        seed_column = seed_slots - anchor
        inside = (_ROW_COLUMNS >= (low - anchor)[:, None]) & (
            _ROW_COLUMNS < (high - anchor)[:, None]
        )
        rows, columns = np.nonzero(inside)
        slots = anchor[rows] + columns
        local = positions[rows, columns]
        hashes = self.hash8[slots].astype(np.int16)
        hashes += 1
        # Where each fingerprint would sit in the padded query on the seed's diagonal, minus
        # the tolerance; the padding (see _QueryView) keeps every index inside the array.
        diagonal = query.positions[seed_query] - positions[np.arange(seed_slots.size), seed_column]
        diagonal += _QUERY_PAD - _DIAGONAL_TOLERANCE
        at = (local + diagonal[rows])[:, None] + _TOLERANCE_OFFSETS
        pair, shift = np.nonzero(query.dense[at] == hashes[:, None])
        if self.fillers.size:
            # Fillers are not fingerprints; their stored hash8 is 0, so only pairs on that
            # value need the (binary-searched) check.
            zero = np.flatnonzero(hashes[pair] == 1)
            if zero.size:
                real = np.ones(pair.size, dtype=np.bool_)
                real[zero] = ~self._fillers(slots[pair[zero]])
                pair, shift = pair[real], shift[real]
        query_at = at[pair, shift] - _QUERY_PAD
        row = rows[pair]
        base = self.checkpoints[anchor // _BLOCK].astype(np.int64) - self.word_starts[work]
        # The seed itself: its column, on the diagonal exactly.
        seed_pair = (columns[pair] == seed_column[row]) & (shift == _DIAGONAL_TOLERANCE)
        return self.works[work[row]], local[pair] + base[row], query_at, seed_pair


@dataclass(frozen=True, slots=True)
class _QueryView:
    keys: _UInt32Array
    positions: _IntArray
    #: hash8 + 1 of the fingerprint starting at each word (0: none), padded on both sides
    #: by _QUERY_PAD words so that lookups near the ends need no bounds checks.
    dense: npt.NDArray[np.int16]

    @classmethod
    def build(cls, keys: _UInt32Array, positions: _IntArray, word_count: int) -> _QueryView:
        dense = np.zeros(word_count + 2 * _QUERY_PAD, dtype=np.int16)
        dense[positions + _QUERY_PAD] = (keys & np.uint32(0xFF)).astype(np.int16) + 1
        return cls(keys, positions, dense)


def _merge(segments: Sequence[_Segment]) -> _Segment:
    """One segment holding the works of ``segments`` (stream re-encoded, seeds re-bucketed)."""
    numbers: list[_IntArray] = []
    word_starts: list[_IntArray] = [np.zeros(1, dtype=np.int64)]
    print_starts: list[_IntArray] = [np.zeros(1, dtype=np.int64)]
    absolute: list[_IntArray] = []
    low_bytes: list[_UInt32Array] = []
    seeds: list[_BoolArray] = []
    tops: list[_UInt32Array] = []
    word_base = 0
    print_base = 0
    for segment in segments:
        positions, hash8, real = segment.decode()
        real_index = np.cumsum(real) - 1  # slot -> fingerprint number
        seed_slots, top24 = segment.seed_keys()
        order = np.argsort(seed_slots, kind="stable")
        is_seed = np.zeros(int(real.sum()), dtype=np.bool_)
        is_seed[real_index[seed_slots]] = True
        numbers.append(np.asarray(segment.works))
        word_starts.append(segment.word_starts[1:] + word_base)
        # slot_starts point at a work's first fingerprint slot (or the end of the stream).
        real_of_work = np.append(real_index, int(real.sum()))[segment.slot_starts]
        print_starts.append(real_of_work[1:] + print_base)
        absolute.append(positions[real] + word_base)
        low_bytes.append(hash8[real].astype(np.uint32))
        seeds.append(is_seed)
        tops.append(top24[order])
        word_base += int(segment.word_starts[-1])
        print_base += int(real.sum())
    return _Segment._from_arrays(
        np.concatenate(numbers),
        np.concatenate(word_starts),
        np.concatenate(print_starts),
        np.concatenate(absolute),
        np.concatenate(low_bytes),
        np.concatenate(seeds),
        top24=np.concatenate(tops),
    )


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
    work_pos: _IntArray,
    query_pos: _IntArray,
    seed: _BoolArray,
    *,
    k: int,
    gap: int,
    max_shift: int,
    presorted: bool = False,
) -> list[tuple[MatchRun, int, int]]:
    """Aligned runs from verified pairs, as in :func:`consentry.fingerprint.text.containment`,
    each with its number of pairs and of seed pairs (see :func:`_weigh`).

    ``presorted``: the pairs already come in (work position, query position) order.
    """
    if not presorted:
        order = np.lexsort((query_pos, work_pos))
        work_pos, query_pos, seed = work_pos[order], query_pos[order], seed[order]
    works: list[int] = work_pos.tolist()
    queries: list[int] = query_pos.tolist()
    seeds: list[bool] = seed.tolist()
    runs: list[tuple[MatchRun, int, int]] = []
    # The current run (plain locals: this loop runs for every candidate work of every
    # document): first work / query word, last work / query word, pairs, seed pairs.
    started = False
    work_first = query_first = work_last = query_last = pairs = seed_pairs = 0
    index = 0
    total = len(works)
    while index < total:
        work_at = works[index]
        end = index + 1
        while end < total and works[end] == work_at:
            end += 1
        if started and work_at - work_last <= gap:
            expected = query_last + (work_at - work_last)
            best = index
            if end > index + 1:  # several query words for this work word: the closest
                best = min(range(index, end), key=lambda i: abs(queries[i] - expected))
            if abs(queries[best] - expected) <= max_shift and queries[best] > query_last:
                work_last, query_last = work_at, queries[best]
                pairs += 1
                seed_pairs += seeds[best]
                index = end
                continue
        chosen = index
        if started:
            runs.append(
                (
                    MatchRun(work_first, work_last + k, query_first, query_last + k),
                    pairs,
                    seed_pairs,
                )
            )
            # Prefer an occurrence after the previous run, so that a passage quoted twice
            # still aligns in order.
            for later in range(index, end):
                if queries[later] > query_last:
                    chosen = later
                    break
        started = True
        work_first = work_last = work_at
        query_first = query_last = queries[chosen]
        pairs, seed_pairs = 1, int(seeds[chosen])
        index = end
    if started:
        runs.append(
            (MatchRun(work_first, work_last + k, query_first, query_last + k), pairs, seed_pairs)
        )
    return runs


def _weigh(runs: list[tuple[MatchRun, int, int]]) -> tuple[list[MatchRun], int]:
    """The passages that count as evidence, and the longest that may satisfy ``min_run``.

    A seed pair agrees on 32 key bits; a stream pair on 8 bits plus its alignment, which
    chance matches about once in a few hundred fingerprints examined. So:

    * a run counts if it holds a seed, or two or more pairs on the diagonal of a seed-holding
      run (give or take :data:`_MAX_SHIFT` words): lone stream pairs and stray chance runs
      off the seed's alignment are noise;
    * counted runs of two or more pairs each, on the same diagonal (give or take
      :data:`_BRIDGE_DRIFT` words) and at most :data:`_BRIDGE` words apart, are one passage:
      a typo-damaged stretch between them lost its fingerprints, not its text, and nothing but
      a real shared passage puts two verified runs on one alignment (coverage is inferred
      *between* aligned evidence, never beyond it; a lone seed is never bridged, because a
      chance 32-bit seed collision plus one chance run must not become a passage);
    * a passage may satisfy the longest-run condition only with three or more pairs or two
      seeds: a shared stock phrase (one seed) that chance extended by one stream pair must not
      pass for a 12-word passage.
    """
    anchors = [run.query_start - run.work_start for run, _, seeds in runs if seeds]
    counted = [
        (run, pairs, seeds)
        for run, pairs, seeds in runs
        if seeds
        or (
            pairs >= 2
            and any(abs(run.query_start - run.work_start - a) <= _MAX_SHIFT for a in anchors)
        )
    ]
    counted.sort(key=lambda item: (item[0].work_start, item[0].query_start))
    passages: list[tuple[MatchRun, int, int]] = []
    for run, pairs, seeds in counted:
        if passages:
            last, last_pairs, last_seeds = passages[-1]
            drift = (run.query_start - run.work_start) - (last.query_start - last.work_start)
            if (
                pairs >= 2
                and last_pairs >= 2
                and run.work_start - last.work_end <= _BRIDGE
                and abs(drift) <= _BRIDGE_DRIFT
                and run.query_start > last.query_start
            ):
                passages[-1] = (
                    MatchRun(
                        last.work_start,
                        max(last.work_end, run.work_end),
                        last.query_start,
                        max(last.query_end, run.query_end),
                    ),
                    last_pairs + pairs,
                    last_seeds + seeds,
                )
                continue
        passages.append((run, pairs, seeds))
    longest = max(
        (run.words for run, pairs, seeds in passages if pairs >= 3 or seeds >= 2), default=0
    )
    return [run for run, _, _ in passages], longest


# --------------------------------------------------------------------------------------------
# the index


class TextContainmentIndex:
    """Two-tier index of registered works' winnowed k-grams (see the module docstring)."""

    def __init__(
        self,
        *,
        k: int = DEFAULT_K,
        window: int = DEFAULT_WINDOW,
        seed_window: int = SEED_WINDOW,
        seed_key_limit: int = SEED_KEY_LIMIT,
        min_matched_words: int = DEFAULT_MIN_MATCHED_WORDS,
        min_run: int = DEFAULT_MIN_RUN,
        short_work_share: float = DEFAULT_SHORT_WORK_SHARE,
        stop: StopHashes | None = None,
    ) -> None:
        self._k = k
        self._window = window
        self._seed_window = seed_window
        self._seed_key_limit = seed_key_limit
        self.min_matched_words = min_matched_words
        self.min_run = min_run
        self.short_work_share = short_work_share
        self._stop = stop if stop is not None else boilerplate_stop_hashes()
        self._watermark = 0
        self._work_ids: list[str] = []
        self._work_index: dict[str, int] = {}
        self._words: list[int] = []
        self._segments: list[_Segment] = []
        self._pending_works: list[_WorkPrints] = []
        self._pending: _Segment | None = None
        #: Format version of the directory this index was loaded from (None: built here).
        #: A version 1 directory is converted in memory on every load until it is saved
        #: again; callers that own the directory (a home, not a signed snapshot) should
        #: save when this is older than :data:`VERSION`.
        self.loaded_version: int | None = None

    @property
    def outdated(self) -> bool:
        """Loaded from an older on-disk format; saving it again upgrades the directory."""
        return self.loaded_version is not None and self.loaded_version < VERSION

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
        """Number of indexed fingerprints (both tiers describe the same fingerprints)."""
        return sum(len(s) for s in self._segments) + sum(w.keys.size for w in self._pending_works)

    @property
    def seed_count(self) -> int:
        """Fingerprints in the candidate tier."""
        segments = self._all_segments()
        return sum(s.seeds for s in segments)

    @property
    def work_count(self) -> int:
        return len(self._work_ids)

    def add(self, work_id: str, fingerprints: Sequence[Fingerprint], row_id: int) -> None:
        for fp in fingerprints:
            if fp.kind == WINNOW_KIND:
                self.add_fingerprint(work_id, winnowed_of(fp))
        self._watermark = max(self._watermark, row_id)

    def add_fingerprint(self, work_id: str, fingerprint: TextFingerprint) -> None:
        """Absorb one work's decoded winnowed fingerprint (a work may be added once)."""
        if fingerprint.k != self._k:
            raise ValueError(f"fingerprint uses k={fingerprint.k}, the index k={self._k}")
        if work_id in self._work_index:
            return  # the same registration replayed: already indexed
        keep = ~self._stop.mask(fingerprint.hashes)
        keys = (fingerprint.hashes[keep] >> _U64(32)).astype(np.uint32)
        self._add_keys(work_id, keys, fingerprint.positions[keep], fingerprint.word_count)

    def _add_keys(
        self, work_id: str, keys: _UInt32Array, positions: _IntArray, word_count: int
    ) -> None:
        number = len(self._work_ids)
        self._work_index[work_id] = number
        self._work_ids.append(work_id)
        self._words.append(word_count)
        positions = positions.astype(np.int64)
        seeds = seed_mask(keys, positions, word_count, k=self._k, window=self._seed_window)
        seeds &= keys < self._seed_key_limit
        self._pending_works.append(_WorkPrints(number, word_count, keys, positions, seeds))
        self._pending = None

    def match(self, fingerprints: Sequence[Fingerprint]) -> list[WorkMatch]:
        hits: list[TextHit] = []
        for fp in fingerprints:
            if fp.kind == WINNOW_KIND:
                hits.extend(self.match_fingerprint(winnowed_of(fp)))
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
        keys = (query.hashes[keep] >> _U64(32)).astype(np.uint32)
        view: _QueryView | None = None  # built only for documents with a seed hit
        works: list[_IntArray] = []
        work_pos: list[_IntArray] = []
        query_pos: list[_IntArray] = []
        seeds: list[_BoolArray] = []
        probe = np.flatnonzero(keys < self._seed_key_limit)  # no seed has a larger key
        probe_keys = keys[probe]
        for segment in self._all_segments():
            which, slots = segment.lookup(probe_keys)
            if which.size == 0:
                continue
            which = probe[which]
            if view is None:
                positions = query.positions[keep].astype(np.int64)
                view = _QueryView.build(keys, positions, query.word_count)
            owners, local, at, seed = segment.verify(which, slots, view)
            works.append(owners)
            work_pos.append(local)
            query_pos.append(at)
            seeds.append(seed)
        if not works:
            return []
        work = np.concatenate(works)
        wpos = np.concatenate(work_pos)
        qpos = np.concatenate(query_pos)
        seed = np.concatenate(seeds)
        # Neighbourhoods of nearby seeds overlap: keep each pair once (a seed if any copy is).
        order = np.lexsort((~seed, qpos, wpos, work))
        work, wpos, qpos, seed = work[order], wpos[order], qpos[order], seed[order]
        first = np.ones(work.size, dtype=np.bool_)
        first[1:] = (work[1:] != work[:-1]) | (wpos[1:] != wpos[:-1]) | (qpos[1:] != qpos[:-1])
        work, wpos, qpos, seed = work[first], wpos[first], qpos[first], seed[first]
        bounds = np.flatnonzero(np.diff(work)) + 1
        starts = np.concatenate(([0], bounds))
        stops = np.append(bounds, work.size)
        seeds_per_work = np.add.reduceat(seed.astype(np.int64), starts)
        keep = seeds_per_work > 0
        if not all_candidates and self.min_run > 0:
            # Only a passage of three pairs or two seeds can satisfy min_run (see _weigh):
            # works with less (mostly one chance 32-bit seed collision) need no chaining.
            keep &= (stops - starts >= 3) | (seeds_per_work >= 2)
        if all_candidates:
            keep[:] = True
        gap = self._window + self._k
        out: list[TextHit] = []
        for start, stop in zip(starts[keep].tolist(), stops[keep].tolist(), strict=True):
            number = int(work[start])
            words = self._words[number]
            chained = _chain(
                wpos[start:stop],
                qpos[start:stop],
                seed[start:stop],
                k=self._k,
                gap=gap,
                max_shift=_MAX_SHIFT,
                presorted=True,
            )
            counted, longest = _weigh(chained)
            runs = [
                MatchRun(
                    r.work_start,
                    min(r.work_end, words),
                    r.query_start,
                    min(r.query_end, query.word_count),
                )
                for r in counted
            ]
            if not runs:
                continue
            matched = covered_words(runs)
            longest = min(longest, words)
            needed = required_words(
                words,
                min_matched_words=self.min_matched_words,
                min_run=self.min_run,
                short_work_share=self.short_work_share,
            )
            if not all_candidates and (matched < needed or longest < self.min_run):
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

    def _all_segments(self) -> list[_Segment]:
        if self._pending is None and self._pending_works:
            self._pending = _Segment.build(self._pending_works, self._k)
        return [*self._segments, *([self._pending] if self._pending is not None else [])]

    def flush(self) -> None:
        """Turn pending additions into a segment and merge segments past the limit."""
        segments = self._all_segments()
        self._pending_works, self._pending = [], None
        segments = [s for s in segments if s.works.size]
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
                "seed_window": self._seed_window,
                "seed_key_limit": self._seed_key_limit,
                "min_matched_words": self.min_matched_words,
                "min_run": self.min_run,
                "short_work_share": self.short_work_share,
                "segments": names,
                "fingerprints": len(self),
                "seeds": sum(s.seeds for s in self._segments),
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
        except (OSError, ValueError) as error:
            raise UnreadableInputError(f"text index at {directory} is damaged: {error}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UnreadableInputError(f"{directory} is not a text containment index")
        if meta.get("version") == 1:
            return _load_version_1(directory, meta, work_ids)
        if meta.get("version") != VERSION:
            raise UnreadableInputError(
                f"text index at {directory} has version {meta.get('version')!r}; this "
                f"Consentry reads versions 1 and {VERSION} (a newer Consentry wrote it)"
            )
        try:
            words = np.load(directory / "work_words.npy", allow_pickle=False)
            index = cls(
                k=int(meta["k"]),
                window=int(meta["window"]),
                seed_window=int(meta["seed_window"]),
                seed_key_limit=int(meta.get("seed_key_limit", 1 << 32)),
                min_matched_words=int(meta["min_matched_words"]),
                min_run=int(meta["min_run"]),
                # Indexes saved before short works had a rule of their own get it on load.
                short_work_share=float(meta.get("short_work_share", DEFAULT_SHORT_WORK_SHARE)),
            )
            watermark = int(meta["watermark"])
            names = [str(n) for n in meta["segments"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UnreadableInputError(f"text index at {directory} is damaged: {error}") from None
        if len(work_ids) != words.size:
            raise UnreadableInputError(f"text index at {directory} is inconsistent")
        index._watermark = watermark
        index.loaded_version = VERSION
        index._work_ids = work_ids
        index._work_index = {w: n for n, w in enumerate(work_ids)}
        index._words = [int(w) for w in words]
        index._segments = [_Segment.load(directory / name) for name in names]
        if any(int(s.works.max(initial=-1)) >= len(work_ids) for s in index._segments):
            raise UnreadableInputError(f"text index at {directory} is inconsistent")
        return index

    def disk_bytes(self, directory: Path) -> int:
        """Bytes the saved index takes in ``directory``."""
        return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


def _load_version_1(
    directory: Path, meta: dict[str, Any], work_ids: list[str]
) -> TextContainmentIndex:
    """Convert a version 1 index (single tier: sorted 32-bit keys and global word positions)
    in memory. It held the top 32 bits of every non-stop fingerprint hash and its position,
    which is all this design uses, so the result equals indexing the fingerprints afresh."""
    try:
        starts = np.load(directory / "work_starts.npy", allow_pickle=False).astype(np.int64)
        words = np.load(directory / "work_words.npy", allow_pickle=False).astype(np.int64)
        keys_parts: list[_UInt32Array] = []
        position_parts: list[_IntArray] = []
        for name in meta["segments"]:
            keys_parts.append(np.load(directory / name / "keys.npy", allow_pickle=False))
            position_parts.append(
                np.load(directory / name / "postings.npy", allow_pickle=False).astype(np.int64)
            )
        index = TextContainmentIndex(
            k=int(meta["k"]),
            window=int(meta["window"]),
            min_matched_words=int(meta["min_matched_words"]),
            min_run=int(meta["min_run"]),
        )
        watermark = int(meta["watermark"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UnreadableInputError(f"text index at {directory} is damaged: {error}") from None
    if not (len(work_ids) == starts.size == words.size) or any(
        k.dtype != np.uint32 or k.shape != p.shape
        for k, p in zip(keys_parts, position_parts, strict=True)
    ):
        raise UnreadableInputError(f"text index at {directory} is inconsistent")
    keys = np.concatenate(keys_parts) if keys_parts else np.zeros(0, dtype=np.uint32)
    where = np.concatenate(position_parts) if position_parts else _EMPTY
    order = np.argsort(where, kind="stable")
    keys, where = keys[order], where[order]
    owner = np.searchsorted(starts, where, side="right") - 1
    edges = np.searchsorted(owner, np.arange(len(work_ids) + 1), side="left")
    for number, work_id in enumerate(work_ids):
        low, high = int(edges[number]), int(edges[number + 1])
        local = where[low:high] - starts[number]
        index._add_keys(work_id, keys[low:high], local, int(words[number]))
    index._watermark = watermark
    index.loaded_version = 1
    index.flush()
    return index


class TextContainmentIndexFactory:
    """Creates or loads :class:`TextContainmentIndex` (segments memory-mapped)."""

    name = "text-containment"

    def create(self) -> TextContainmentIndex:
        return TextContainmentIndex()

    def load(self, directory: Path) -> TextContainmentIndex:
        return TextContainmentIndex.load(directory)
