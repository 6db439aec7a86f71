"""Containment fingerprints for writing: word k-grams, winnowing and MinHash.

The question is "does document D contain (part of) registered work W?" — an excerpt of a poem
inside a forum post, a chapter inside a scraped e-book, re-typeset and with typos. Whole-document
similarity cannot answer it (a 50-word excerpt is 0.1 % of a novel), so the primary fingerprint
is a *set of local fingerprints* selected by winnowing:

    Schleimer, Wilkerson & Aiken, "Winnowing: Local Algorithms for Document Fingerprinting",
    SIGMOD 2003, doi:10.1145/872757.872770.

Steps (all vectorised with numpy; the only per-token Python work is the tokenising regex):

1. :func:`~consentry.fingerprint.textnorm.normalise` the text into word tokens.
2. Hash every token once to 64 bits: a polynomial hash over its UTF-8 bytes computed for a whole
   batch with prefix sums (``sum c_j P^j`` over the batch, cut at token boundaries and shifted
   by the inverse power of ``P`` mod 2^64), then the MurmurHash3 64-bit finaliser.
3. Roll word k-gram hashes: ``g_i = fmix64(sum_j t_{i+j} B^(k-1-j))`` with ``k`` shifted array
   operations.
4. Winnow with window ``w``: in every window of ``w`` consecutive k-gram hashes select the
   minimum; ties go to the previous selection if it is still in the window, else to the
   rightmost minimum (the paper's *robust winnowing*, section 4.2, which keeps runs of equal
   hashes — "la la la la" — from selecting every position).

Parameters (``k = 6`` words, ``w = 8``):

* Winnowing guarantees that any shared passage of at least ``t = w + k - 1 = 13`` words yields
  a shared fingerprint, and selects about ``2 / (w + 1) ≈ 0.22`` fingerprints per word
  (100,000-word novel → about 22,000 fingerprints, 12 bytes each).
* ``k`` trades typo robustness against chance matches. A character typo breaks one word and so
  the ``k`` k-grams that contain it: at 1 % character errors (about 5 % of words broken) 74 % of
  6-grams survive; at 3 % (about 16 % of words) 35 % survive — enough to align a passage, see
  :func:`containment`. Five-word sequences such as "at the end of the" are common English and
  would match unrelated texts everywhere; six words make chance matches rare and they are
  further filtered by :func:`is_attribution`, which asks for *runs* of matches, not hits.

Whole-document near-duplicates use a MinHash signature (:func:`minhash_signature`) over the set
of winnowed fingerprint hashes (a content-defined sample of the k-gram set), computed with the
same construction as ``datasketch``'s
``MinHash(scheme="affine64")`` (MurmurHash3 finaliser, then ``a h + b mod 2^64`` with odd ``a``,
parameters drawn from ``numpy.random.RandomState(seed)``), so the signatures can be loaded into
``datasketch.LeanMinHash`` for LSH indexing; computing it here keeps it vectorised (datasketch
hashes every item with a Python call) and keeps the stored format ours.

This module is pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from consentry.errors import UnreadableInputError
from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.deferred import Deferred, DeferredFingerprint
from consentry.fingerprint.documents import extract_text
from consentry.fingerprint.textnorm import iter_joined_utf8

__all__ = [
    "DEFAULT_K",
    "DEFAULT_MIN_MATCHED_WORDS",
    "DEFAULT_MIN_RUN",
    "DEFAULT_NUM_PERM",
    "DEFAULT_SHORT_WORK_SHARE",
    "DEFAULT_WINDOW",
    "MINHASH_KIND",
    "MINHASH_SEED",
    "WINNOW_KIND",
    "ContainmentScore",
    "MatchRun",
    "StopHashes",
    "TextFingerprint",
    "TextFingerprinter",
    "containment",
    "decode_fingerprint",
    "decode_minhash",
    "encode_fingerprint",
    "encode_minhash",
    "fingerprint_text",
    "is_attribution",
    "kgram_hashes",
    "minhash_signature",
    "minhash_similarity",
    "required_words",
    "token_hashes",
    "winnow",
    "winnowed_of",
]

DEFAULT_K = 6
DEFAULT_WINDOW = 8
DEFAULT_NUM_PERM = 128
#: Fixed so that signatures made on any machine compare; changing it needs a new kind.
MINHASH_SEED = 1

#: Attribution thresholds (see :func:`is_attribution`).
DEFAULT_MIN_MATCHED_WORDS = 40
DEFAULT_MIN_RUN = 12
#: A work too short for 40 matched words (a poem, a lyric, a short statement) is attributed
#: when this share of its words is matched (see :func:`required_words`).
DEFAULT_SHORT_WORK_SHARE = 0.5

WINNOW_KIND = "text-winnow-v1"
MINHASH_KIND = "text-minhash-v1"

_U64 = np.uint64
_UInt64Array = npt.NDArray[np.uint64]
_IntArray = npt.NDArray[np.int64]

# Odd 64-bit constants (odd so that they are invertible mod 2^64). Changing any of them changes
# every fingerprint: they are part of the "-v1" kinds.
_TOKEN_BASE = 0x9E3779B97F4A7C15
_TOKEN_BASE_INVERSE = pow(_TOKEN_BASE, -1, 1 << 64)
_KGRAM_BASE = 0xBF58476D1CE4E5B9
_LENGTH_MIX = 0x94D049BB133111EB
_SEPARATOR_BYTE = 0x1F


def _fmix64(values: _UInt64Array) -> _UInt64Array:
    """MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit to all outputs.

    Array arithmetic wraps modulo 2^64 silently (scalar arithmetic would warn), which is
    exactly the intended behaviour.
    """
    # In place on one copy with one scratch array: this runs on every token and every k-gram
    # of every document checked, and fresh temporaries per step cost more than the arithmetic.
    out = values >> _U64(33)
    scratch = np.empty_like(out)
    np.bitwise_xor(out, values, out=out)
    for multiplier in _FMIX_MULTIPLIERS:
        np.multiply(out, multiplier, out=out)
        np.right_shift(out, _U64(33), out=scratch)
        np.bitwise_xor(out, scratch, out=out)
    return out


_FMIX_MULTIPLIERS = (_U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53))


def _powers(base: int, count: int) -> _UInt64Array:
    """``base^0 .. base^(count-1)`` mod 2^64 (a read-only view of a cached, growing table)."""
    table = _POWER_TABLES.get(base)
    if table is None or table.size < count:
        size = max(count, 1 << 16, 0 if table is None else 2 * table.size)
        powers = np.full(size, base, dtype=np.uint64)
        powers[0] = 1
        table = np.cumprod(powers, dtype=np.uint64)
        table.flags.writeable = False
        _POWER_TABLES[base] = table
    return table[:count]


#: Power tables by base, grown on demand (8 bytes per byte of the largest batch hashed; the
#: largest batch is one chunk of text, about 4 MB).
_POWER_TABLES: dict[int, _UInt64Array] = {}


# --------------------------------------------------------------------------------------------
# hashing


def _hash_joined(joined: bytes) -> _UInt64Array:
    """Hash every token of a U+001F-joined UTF-8 batch (see the module docstring, step 2);
    empty tokens (repeated separators) are skipped."""
    raw = np.frombuffer(joined, dtype=np.uint8)
    # Tokens are the runs of non-separator bytes: their edges are where "is a word byte"
    # flips (the array is padded with a separator on both sides), starts and ends
    # alternating. Repeated separators of a loose join so make no empty tokens to filter.
    edges = np.zeros(raw.size + 2, dtype=np.int8)
    np.not_equal(raw, _SEPARATOR_BYTE, out=edges[1:-1].view(np.bool_))
    flips = np.flatnonzero(edges[1:] != edges[:-1])
    starts = flips[0::2]
    ends = flips[1::2]
    lengths = ends - starts
    # +1 so that a zero byte would still count; prefix[i] = sum_{j<i} c_j P^j. Built in place
    # (one buffer, no concatenation), like the per-token steps: this function is a hot spot
    # of fingerprinting, and on arrays of a few thousand items temporaries cost as much as
    # the arithmetic.
    prefix = np.empty(raw.size + 1, dtype=np.uint64)
    prefix[0] = 0
    weighted = prefix[1:]
    np.add(raw, 1, out=weighted, dtype=np.uint64, casting="unsafe")
    np.multiply(weighted, _powers(_TOKEN_BASE, raw.size), out=weighted)
    np.cumsum(weighted, dtype=np.uint64, out=weighted)
    polynomial = prefix[ends]
    polynomial -= prefix[starts]
    polynomial *= _powers(_TOKEN_BASE_INVERSE, raw.size + 1)[starts]
    mixed_length = lengths.astype(np.uint64)
    mixed_length *= _U64(_LENGTH_MIX)
    polynomial ^= mixed_length
    return _fmix64(polynomial)


def token_hashes(text: str) -> _UInt64Array:
    """64-bit hash of every normalised word token of ``text``, in order."""
    parts = [_hash_joined(joined) for joined in iter_joined_utf8(text)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def kgram_hashes(tokens: _UInt64Array, k: int = DEFAULT_K) -> _UInt64Array:
    """Hashes of the word k-grams ``tokens[i:i+k]``; hash ``i`` starts at word ``i``.

    A text shorter than ``k`` words yields one hash over all its words, so that short works
    (a haiku, a title) are fingerprinted too; it can match only the same short text.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    count = tokens.size
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    width = min(k, count)
    rolled = tokens[: count - width + 1].copy()
    for offset in range(1, width):
        np.multiply(rolled, _U64(_KGRAM_BASE), out=rolled)
        np.add(rolled, tokens[offset : count - width + 1 + offset], out=rolled)
    np.bitwise_xor(rolled, _U64(width), out=rolled)
    return _fmix64(rolled)


# --------------------------------------------------------------------------------------------
# winnowing


def _window_minima(hashes: _UInt64Array, width: int) -> _UInt64Array:
    """Minimum of every ``width`` consecutive hashes, over doubling spans (a sparse table):
    about ``log2(width) + 1`` array operations instead of ``width - 1``."""
    minima = hashes
    span = 1
    while span * 2 <= width:
        minima = np.minimum(minima[:-span], minima[span:])
        span *= 2
    if span < width:  # the minimum is idempotent: two overlapping spans cover the window
        minima = np.minimum(minima[: minima.size - (width - span)], minima[width - span :])
    return minima if minima is not hashes else hashes.copy()


def winnow(hashes: _UInt64Array, window: int = DEFAULT_WINDOW) -> _IntArray:
    """Indices selected by robust winnowing (Schleimer, Wilkerson & Aiken 2003, section 4.2).

    In each window of ``window`` consecutive hashes the minimum is selected; on ties the
    previously selected index is kept while it is still in the window, otherwise the rightmost
    minimum is taken. Returns the distinct selected indices in increasing order. Fewer hashes
    than ``window`` form a single window. ``window=1`` selects every index.

    The window minima come from ``log2(w) + 1`` element-wise ``minimum`` operations over
    doubling spans and the rightmost minimal index from ``w`` shifted comparisons
    (contiguous array work with no Python loop per window; for ``w = 8`` this beats
    ``argmin`` over a ``sliding_window_view``). Only windows whose minimum is tied are
    revisited in Python; ties of 64-bit hashes come from repeated k-grams, at most one step
    per window.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    count = hashes.size
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    width = min(window, count)
    if width == 1:
        return np.arange(count, dtype=np.int64)
    windows = count - width + 1
    minima = _window_minima(hashes, width)
    # Fast path: when no window's minimum is tied (the usual case for 64-bit hashes of prose)
    # no tie rule applies, and the selection is simply every position that is the minimum of
    # some window containing it. Counting each window's minimal positions in the same pass
    # tells whether that holds.
    chosen = np.zeros(count, dtype=np.bool_)
    hits = np.zeros(windows, dtype=np.uint8)
    hit = np.empty(windows, dtype=np.bool_)
    for shift in range(width):
        np.equal(hashes[shift : shift + windows], minima, out=hit)
        chosen[shift : shift + windows] |= hit
        hits += hit
    if not (hits > 1).any():
        fast: _IntArray = np.flatnonzero(chosen).astype(np.int64)
        return fast
    rightmost = np.full(windows, -1, dtype=np.int64)
    ties = np.zeros(windows, dtype=np.int8)
    for shift in range(width - 1, -1, -1):
        hit = hashes[shift : shift + windows] == minima
        ties += hit
        np.copyto(rightmost, shift, where=hit & (rightmost < 0))
    selected: _IntArray = np.arange(windows, dtype=np.int64) + rightmost
    for window_start in np.flatnonzero(ties > 1).tolist():
        # Tied minimum: keep the previous choice if it is still inside this window and minimal.
        if window_start == 0:
            continue
        previous = int(selected[window_start - 1])
        if previous >= window_start and hashes[previous] == minima[window_start]:
            selected[window_start] = previous
    keep = np.ones(selected.size, dtype=np.bool_)
    keep[1:] = selected[1:] != selected[:-1]
    result: _IntArray = selected[keep]
    return result


# --------------------------------------------------------------------------------------------
# stop hashes


def _sorted_distinct(values: _UInt64Array) -> _UInt64Array:
    """Sorted distinct values. Not ``np.unique``: its first call imports ``numpy.ma`` (~10 ms
    of every gate worker's start-up), and sorting is all these arrays need."""
    ordered = np.sort(values)
    keep = np.ones(ordered.size, dtype=np.bool_)
    keep[1:] = ordered[1:] != ordered[:-1]
    result: _UInt64Array = ordered[keep]
    return result


@dataclass(frozen=True, slots=True, eq=False)
class StopHashes:
    """k-gram hashes that never count as evidence (licence boilerplate, legal notices, ...).

    Built from *all* k-grams of the boilerplate texts (not only the winnowed ones), so whatever
    a work or a document selects from a boilerplate passage is recognised. Apply it when
    fingerprinting (the hashes are removed before winnowing) and/or when comparing
    (:func:`containment` ignores them), so that lists updated after registration still apply.
    """

    hashes: _UInt64Array = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    k: int = DEFAULT_K
    #: Which values of the top 16 bits occur among the stop hashes (a 64 KB pre-filter).
    prefixes: npt.NDArray[np.bool_] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # mask() binary-searches: keep the hashes sorted and unique whatever was passed.
        hashes = np.asarray(self.hashes, dtype=np.uint64)
        if hashes.size > 1 and not bool(np.all(hashes[1:] > hashes[:-1])):
            hashes = _sorted_distinct(hashes)
        object.__setattr__(self, "hashes", hashes)
        prefixes = np.zeros(1 << 16, dtype=np.bool_)
        prefixes[(hashes >> _U64(48)).astype(np.intp)] = True
        object.__setattr__(self, "prefixes", prefixes)

    @classmethod
    def from_texts(cls, texts: Iterable[str], *, k: int = DEFAULT_K) -> StopHashes:
        """Stop hashes made of every word k-gram of ``texts``."""
        parts = [kgram_hashes(token_hashes(text), k) for text in texts]
        merged = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        return cls(hashes=_sorted_distinct(merged), k=k)

    def __len__(self) -> int:
        return int(self.hashes.size)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | np.integer):
            return False
        return bool(self.mask(np.array([value], dtype=np.uint64))[0])

    def mask(self, hashes: _UInt64Array) -> npt.NDArray[np.bool_]:
        """``True`` where ``hashes`` holds a stop hash."""
        if self.hashes.size == 0:
            return np.zeros(hashes.size, dtype=np.bool_)
        # A 65,536-bit table of the stop hashes' top 16 bits rules out nearly every hash with
        # one lookup; only the few that pass are binary-searched in the sorted list.
        maybe = self.prefixes[(hashes >> _U64(48)).astype(np.intp)]
        found = np.zeros(hashes.size, dtype=np.bool_)
        candidates = np.flatnonzero(maybe)
        if candidates.size:
            wanted = hashes[candidates]
            at = np.minimum(np.searchsorted(self.hashes, wanted), self.hashes.size - 1)
            found[candidates] = self.hashes[at] == wanted
        return found

    def union(self, other: StopHashes) -> StopHashes:
        """Both lists together (they must use the same ``k``)."""
        if other.k != self.k:
            raise ValueError(f"cannot merge stop hashes for k={self.k} and k={other.k}")
        return StopHashes(np.union1d(self.hashes, other.hashes).astype(np.uint64), self.k)


# --------------------------------------------------------------------------------------------
# fingerprints


@dataclass(frozen=True, slots=True, eq=False)
class TextFingerprint:
    """Winnowed k-gram hashes of one text and the word index where each k-gram starts.

    ``positions`` are token indices into :func:`~consentry.fingerprint.textnorm.normalise`'s
    output, increasing; ``word_count`` is the number of tokens of the whole text. With
    ``window == 1`` every k-gram is kept, which is what a *query* document should use for the
    best recall (it is compared, never stored).
    """

    hashes: _UInt64Array
    positions: _IntArray
    word_count: int
    k: int = DEFAULT_K
    window: int = DEFAULT_WINDOW

    def __len__(self) -> int:
        return int(self.hashes.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TextFingerprint):
            return NotImplemented
        return (
            (self.word_count, self.k, self.window) == (other.word_count, other.k, other.window)
            and np.array_equal(self.hashes, other.hashes)
            and np.array_equal(self.positions, other.positions)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: not hashable


def fingerprint_text(
    text: str,
    *,
    k: int = DEFAULT_K,
    window: int = DEFAULT_WINDOW,
    stop: StopHashes | None = None,
) -> TextFingerprint:
    """Winnowed word k-gram fingerprint of already decoded, markup-free ``text``."""
    return _fingerprint_stream(_token_batches(text), k=k, window=window, stop=stop)


def _token_batches(text: str) -> Iterator[_UInt64Array]:
    """Token hashes of ``text`` in batches of at least :data:`_BATCH_TOKENS` (but the last).

    Normalisation hands over text with non-ASCII letters in pieces of about 4 K characters;
    gathering them keeps fingerprinting's per-batch work (and its batch boundaries) to one
    per ``_BATCH_TOKENS`` tokens, so a typical document is a single batch.
    """
    gathered: list[_UInt64Array] = []
    size = 0
    for joined in iter_joined_utf8(text):
        hashes = _hash_joined(joined)
        if hashes.size:
            gathered.append(hashes)
            size += hashes.size
            if size >= _BATCH_TOKENS:
                yield gathered[0] if len(gathered) == 1 else np.concatenate(gathered)
                gathered, size = [], 0
    if gathered:
        yield gathered[0] if len(gathered) == 1 else np.concatenate(gathered)


#: Memory stays bounded: a batch is at most this plus one normalisation chunk.
_BATCH_TOKENS = 1 << 16


def _fingerprint_stream(
    batches: Iterable[_UInt64Array], *, k: int, window: int, stop: StopHashes | None
) -> TextFingerprint:
    """:func:`_fingerprint_tokens` over a stream of token-hash batches, in bounded memory.

    A text of one batch (up to about 4 M characters) gives exactly ``_fingerprint_tokens``'s
    result. Longer texts are processed batch by batch, carrying the last ``k - 1`` tokens and
    the last ``window - 1`` k-grams over, so every k-gram and every window is formed once and
    memory holds one batch plus the selected fingerprints (not arrays of every token and
    k-gram: about 3.5x the input instead of 12x for a 1 GB single-line text). The only
    possible difference to the one-shot computation: robust winnowing's tie rule ("keep the
    previous choice") is not applied in the first window after a batch boundary — a tie of
    two equal 64-bit hashes exactly there.
    """
    batches = iter(batches)
    pending: list[_UInt64Array] = []
    pending_count = 0
    for batch in batches:
        pending.append(batch)
        pending_count += batch.size
        if pending_count >= k:
            break
    else:
        # Fewer than k words in all: one k-gram of every word (see kgram_hashes).
        tokens = np.concatenate(pending) if pending else np.zeros(0, dtype=np.uint64)
        return _fingerprint_tokens(tokens, k=k, window=window, stop=stop)
    following = next(batches, None)
    if following is None:
        # All of it in hand (every document under a chunk of about 4 M characters): the
        # one-shot computation, which the streaming one equals, without its bookkeeping.
        tokens = pending[0] if len(pending) == 1 else np.concatenate(pending)
        return _fingerprint_tokens(tokens, k=k, window=window, stop=stop)
    chosen_hashes: list[_UInt64Array] = []
    chosen_positions: list[_IntArray] = []
    word_count = 0
    token_tail = np.zeros(0, dtype=np.uint64)
    gram_tail = np.zeros(0, dtype=np.uint64)
    position_tail = np.zeros(0, dtype=np.int64)
    emitted = -1  # last selected k-gram position

    def feed(tokens: _UInt64Array) -> None:
        nonlocal token_tail, gram_tail, position_tail, emitted, word_count
        first_token = word_count - token_tail.size  # global index of buffer[0]
        word_count += tokens.size
        buffer = np.concatenate((token_tail, tokens)) if token_tail.size else tokens
        if buffer.size < k:
            token_tail = buffer
            return
        grams = kgram_hashes(buffer, k)
        positions = np.arange(grams.size, dtype=np.int64) + first_token
        token_tail = buffer[grams.size :].copy()
        if stop is not None and len(stop):
            _check_k(stop.k, k)
            keep = ~stop.mask(grams)
            grams, positions = grams[keep], positions[keep]
        all_grams = np.concatenate((gram_tail, grams))
        all_positions = np.concatenate((position_tail, positions))
        picked = winnow(all_grams, window) if all_grams.size >= window else None
        if picked is not None:
            new = all_positions[picked] > emitted
            chosen_hashes.append(all_grams[picked][new])
            chosen_positions.append(all_positions[picked][new])
            if new.any():
                emitted = int(chosen_positions[-1][-1])
            keep_from = max(all_grams.size - (window - 1), 0)
        else:
            keep_from = 0
        gram_tail = all_grams[keep_from:].copy()
        position_tail = all_positions[keep_from:].copy()

    first = np.concatenate(pending)
    del pending
    feed(first)
    feed(following)
    for batch in batches:
        feed(batch)
    if gram_tail.size and (not chosen_hashes or emitted < 0):
        # Fewer k-grams than one window in all: a single window (as winnow() does).
        picked = winnow(gram_tail, window)
        chosen_hashes.append(gram_tail[picked])
        chosen_positions.append(position_tail[picked])
    hashes = np.concatenate(chosen_hashes) if chosen_hashes else np.zeros(0, dtype=np.uint64)
    positions = (
        np.concatenate(chosen_positions) if chosen_positions else np.zeros(0, dtype=np.int64)
    )
    return TextFingerprint(hashes, positions, word_count=word_count, k=k, window=window)


def _fingerprint_tokens(
    tokens: _UInt64Array, *, k: int, window: int, stop: StopHashes | None
) -> TextFingerprint:
    grams = kgram_hashes(tokens, k)
    positions = np.arange(grams.size, dtype=np.int64)
    if stop is not None and len(stop):
        _check_k(stop.k, k)
        keep = ~stop.mask(grams)
        grams, positions = grams[keep], positions[keep]
    chosen = winnow(grams, window)
    return TextFingerprint(
        hashes=grams[chosen],
        positions=positions[chosen],
        word_count=int(tokens.size),
        k=k,
        window=window,
    )


def _check_k(stop_k: int, k: int) -> None:
    if stop_k != k:
        raise ValueError(f"stop hashes were built for k={stop_k}, fingerprints use k={k}")


_HEADER = struct.Struct("<BBBxQQ")  # version, k, window, pad, word_count, fingerprint count
_VERSION = 1


def encode_fingerprint(fingerprint: TextFingerprint) -> str:
    """Compact text form: base64 of a 20-byte header, uint64 hashes and uint32 positions (LE)."""
    if not (0 < fingerprint.k < 256 and 0 < fingerprint.window < 256):
        raise ValueError("k and window must be between 1 and 255")
    if fingerprint.word_count >= 1 << 32:
        raise ValueError("texts of 2^32 words or more cannot be encoded")
    header = _HEADER.pack(
        _VERSION, fingerprint.k, fingerprint.window, fingerprint.word_count, len(fingerprint)
    )
    body = (
        fingerprint.hashes.astype("<u8").tobytes() + fingerprint.positions.astype("<u4").tobytes()
    )
    return base64.b64encode(header + body).decode("ascii")


class _Winnowed(DeferredFingerprint):
    """A ``text-winnow-v1`` fingerprint that carries the arrays it was made from.

    Checking a document fingerprints it and at once hands the fingerprint to the index: if
    the index had to decode the value the fingerprinter had just encoded (base64, copies,
    validation: about a tenth of matching), the work would be done twice. The index reads
    the arrays through :func:`winnowed_of` instead, and the text value is encoded only when
    something reads it (registration stores it; recognition never does). The arrays are
    read-only, so no reader can change what another one sees. Pickled, it is a plain
    fingerprint with its encoded value (:class:`DeferredFingerprint`).
    """

    __slots__ = ("winnowed",)
    winnowed: TextFingerprint

    def __init__(self, winnowed: TextFingerprint) -> None:
        winnowed.hashes.flags.writeable = False
        winnowed.positions.flags.writeable = False
        encoded: Deferred[Mapping[str, str]] = Deferred(lambda: {"": encode_fingerprint(winnowed)})
        super().__init__(WINNOW_KIND, "full", encoded, "")
        object.__setattr__(self, "winnowed", winnowed)


def winnowed_of(fingerprint: Fingerprint) -> TextFingerprint:
    """The arrays of a ``text-winnow-v1`` fingerprint: those it was made from when it comes
    from this module's fingerprinter, else decoded (and checked) from its value."""
    if isinstance(fingerprint, _Winnowed):
        return fingerprint.winnowed
    return decode_fingerprint(fingerprint.value)


def decode_fingerprint(value: str) -> TextFingerprint:
    """Read back :func:`encode_fingerprint`'s output, checking it is well formed.

    Raises:
        UnreadableInputError: the value is not a well-formed ``text-winnow-v1`` fingerprint.
    """
    raw = _b64decode(value, WINNOW_KIND)
    if len(raw) < _HEADER.size:
        raise UnreadableInputError(f"{WINNOW_KIND} fingerprint is truncated")
    version, k, window, word_count, count = _HEADER.unpack_from(raw)
    if version != _VERSION or k == 0 or window == 0:
        raise UnreadableInputError(f"{WINNOW_KIND} fingerprint has an unknown header")
    if len(raw) != _HEADER.size + 12 * count:
        raise UnreadableInputError(f"{WINNOW_KIND} fingerprint has the wrong length")
    body = raw[_HEADER.size :]
    hashes = np.frombuffer(body, dtype="<u8", count=count).astype(np.uint64)
    positions = np.frombuffer(body, dtype="<u4", count=count, offset=8 * count).astype(np.int64)
    if count and (np.any(np.diff(positions) <= 0) or positions[-1] >= max(word_count, 1)):
        raise UnreadableInputError(f"{WINNOW_KIND} fingerprint has inconsistent positions")
    return TextFingerprint(hashes, positions, int(word_count), int(k), int(window))


def _b64decode(value: str, kind: str) -> bytes:
    try:
        # strict_mode validates in C; b64decode(validate=True) runs a regular expression over
        # the whole value first, which costs more than the decoding on the matching path.
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise UnreadableInputError(f"{kind} fingerprint is not valid base64") from error


# --------------------------------------------------------------------------------------------
# MinHash


@functools.lru_cache(maxsize=8)
def _minhash_permutations(num_perm: int, seed: int) -> tuple[_UInt64Array, _UInt64Array]:
    """datasketch's affine64 permutation parameters (odd ``a``, any ``b``).

    ``RandomState`` is numpy's frozen legacy generator: its stream is guaranteed not to change
    between numpy versions, which a stored signature needs.
    """
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 63, num_perm, dtype=np.uint64) * _U64(2) + _U64(1)
    b = generator.randint(0, 1 << 64, num_perm, dtype=np.uint64)
    a.flags.writeable = False  # cached: shared by every call
    b.flags.writeable = False
    return a, b


def minhash_signature(
    grams: _UInt64Array, *, num_perm: int = DEFAULT_NUM_PERM, seed: int = MINHASH_SEED
) -> _UInt64Array:
    """MinHash signature of the *set* of k-gram hashes ``grams`` (Broder 1997).

    Equal to ``datasketch.MinHash(num_perm, seed, scheme="affine64", hashfunc=int)`` updated
    with the same integers. Computed in blocks so that memory stays at a few MB.
    """
    a, b = _minhash_permutations(num_perm, seed)
    signature = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    # No np.unique: the minimum ignores repeats, and sorting costs more than the repeats.
    mixed = _fmix64(grams)
    columns_a, columns_b = a[:, None], b[:, None]
    block = 1 << 13
    for begin in range(0, mixed.size, block):
        # Permutations as rows, items as columns: the product is built in place and the
        # minimum runs along contiguous rows (several times faster than the transpose).
        product = np.multiply(columns_a, mixed[None, begin : begin + block])
        product += columns_b
        np.minimum(signature, product.min(axis=1), out=signature)
    return signature


def minhash_similarity(left: _UInt64Array, right: _UInt64Array) -> float:
    """Estimated Jaccard similarity of the two k-gram sets (share of equal signature slots)."""
    if left.shape != right.shape:
        raise ValueError("MinHash signatures of different lengths cannot be compared")
    empty = np.iinfo(np.uint64).max
    if left.size == 0 or np.all(left == empty) or np.all(right == empty):
        return 0.0
    return float(np.count_nonzero(left == right)) / left.size


def encode_minhash(signature: _UInt64Array) -> str:
    """Base64 of the little-endian uint64 signature slots."""
    return base64.b64encode(signature.astype("<u8").tobytes()).decode("ascii")


def decode_minhash(value: str) -> _UInt64Array:
    """Read back :func:`encode_minhash`'s output."""
    raw = _b64decode(value, MINHASH_KIND)
    if not raw or len(raw) % 8:
        raise UnreadableInputError(f"{MINHASH_KIND} fingerprint has the wrong length")
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


# --------------------------------------------------------------------------------------------
# containment


@dataclass(frozen=True, slots=True)
class MatchRun:
    """One aligned passage: words ``[work_start, work_end)`` of the work appear as words
    ``[query_start, query_end)`` of the query (token indices, as in ``normalise``)."""

    work_start: int
    work_end: int
    query_start: int
    query_end: int

    @property
    def words(self) -> int:
        """Length of the passage in the work, in words."""
        return self.work_end - self.work_start


@dataclass(frozen=True, slots=True, eq=False)
class ContainmentScore:
    """How much of a work a query document contains, with the evidence.

    ``fraction`` is the share of the work's (non-stop) fingerprints found anywhere in the query.
    ``matched_words`` is the number of the work's words covered by aligned runs of matches and
    ``longest_run`` the longest such run, in words; both tolerate isolated typos (a run may
    skip a fingerprint that a typo destroyed). ``runs`` lists every aligned passage, longest
    first ties broken by position; ``work_positions`` / ``query_positions`` are the token
    indices of every matched fingerprint, pairwise, in work order.
    """

    fraction: float
    matched_fingerprints: int
    work_fingerprints: int
    matched_words: int
    longest_run: int
    work_word_count: int
    query_word_count: int
    runs: tuple[MatchRun, ...]
    work_positions: _IntArray
    query_positions: _IntArray


def containment(
    query_fp: TextFingerprint,
    work_fp: TextFingerprint,
    *,
    stop: StopHashes | None = None,
    max_gap: int | None = None,
    max_shift: int = 3,
) -> ContainmentScore:
    """How much of the work ``work_fp`` the document ``query_fp`` contains.

    1. Drop stop hashes on both sides.
    2. Find which work fingerprints occur in the query (sorted lookup, vectorised).
    3. Walk the matched work fingerprints in order and chain them into runs: the next match
       extends the current run when it lies at most ``max_gap`` words further in the work
       (default ``window + k``, i.e. at most about one lost fingerprint) and its query position
       is where the run predicts, give or take ``max_shift`` words (OCR splits and merges
       words). Among repeated occurrences in the query the one closest to the prediction wins.
    4. Sum the runs' lengths in the work (``last position + k - first position``).

    Both fingerprints must use the same ``k``. The query may be winnowed like the work, or
    made with ``window=1`` (all k-grams), which finds more of a typo-ridden excerpt.
    """
    if query_fp.k != work_fp.k:
        raise ValueError(f"fingerprints use different k ({query_fp.k} and {work_fp.k})")
    k = work_fp.k
    gap = max_gap if max_gap is not None else work_fp.window + k
    # 1. stop hashes
    work_hashes, work_positions = work_fp.hashes, work_fp.positions
    query_hashes, query_positions = query_fp.hashes, query_fp.positions
    if stop is not None and len(stop):
        _check_k(stop.k, k)
        keep_work = ~stop.mask(work_hashes)
        work_hashes, work_positions = work_hashes[keep_work], work_positions[keep_work]
        keep_query = ~stop.mask(query_hashes)
        query_hashes, query_positions = query_hashes[keep_query], query_positions[keep_query]
    # 2. lookup
    order = np.argsort(query_hashes, kind="stable")  # stable: equal hashes stay in text order
    sorted_hashes = query_hashes[order]
    sorted_positions = query_positions[order]
    lows = np.searchsorted(sorted_hashes, work_hashes, side="left")
    highs = np.searchsorted(sorted_hashes, work_hashes, side="right")
    matched = np.flatnonzero(highs > lows)
    # 3. chain into runs
    runs: list[MatchRun] = []
    pairs_work: list[int] = []
    pairs_query: list[int] = []
    run: list[int] | None = None  # [work_start, query_start, last_work, last_query]
    for index in matched.tolist():
        work_at = int(work_positions[index])
        candidates = sorted_positions[lows[index] : highs[index]]
        if run is not None and work_at - run[2] <= gap:
            expected = run[3] + (work_at - run[2])
            best = int(candidates[np.argmin(np.abs(candidates - expected))])
            if abs(best - expected) <= max_shift and best > run[3]:
                run[2], run[3] = work_at, best
                pairs_work.append(work_at)
                pairs_query.append(best)
                continue
        if run is not None:
            runs.append(MatchRun(run[0], run[2] + k, run[1], run[3] + k))
        query_at = int(candidates[0])
        if run is not None:
            # Prefer an occurrence after the previous run, so that a passage quoted twice
            # still aligns in order.
            later = candidates[candidates > run[3]]
            if later.size:
                query_at = int(later[0])
        run = [work_at, query_at, work_at, query_at]
        pairs_work.append(work_at)
        pairs_query.append(query_at)
    if run is not None:
        runs.append(MatchRun(run[0], run[2] + k, run[1], run[3] + k))
    # 4. totals; a text shorter than k words has one k-gram of all its words
    runs = [_clip(r, work_fp.word_count, query_fp.word_count) for r in runs]
    matched_words = covered_words(runs)
    longest = max((r.words for r in runs), default=0)
    total = int(work_hashes.size)
    return ContainmentScore(
        fraction=matched.size / total if total else 0.0,
        matched_fingerprints=int(matched.size),
        work_fingerprints=total,
        matched_words=matched_words,
        longest_run=longest,
        work_word_count=work_fp.word_count,
        query_word_count=query_fp.word_count,
        runs=tuple(sorted(runs, key=lambda r: (-r.words, r.work_start))),
        work_positions=np.array(pairs_work, dtype=np.int64),
        query_positions=np.array(pairs_query, dtype=np.int64),
    )


def _clip(run: MatchRun, work_words: int, query_words: int) -> MatchRun:
    return MatchRun(
        run.work_start,
        min(run.work_end, work_words),
        run.query_start,
        min(run.query_end, query_words),
    )


def covered_words(runs: list[MatchRun]) -> int:
    """Words of the work covered by the union of the runs (runs may overlap in the work)."""
    covered = 0
    reach = -1
    for run in sorted(runs, key=lambda r: r.work_start):
        start = max(run.work_start, reach)
        if run.work_end > start:
            covered += run.work_end - start
            reach = run.work_end
    return covered


def required_words(
    work_words: int,
    *,
    min_matched_words: int = DEFAULT_MIN_MATCHED_WORDS,
    min_run: int = DEFAULT_MIN_RUN,
    short_work_share: float = DEFAULT_SHORT_WORK_SHARE,
) -> int:
    """Matched words that attribute a document to a work of ``work_words`` words.

    ``min_matched_words`` (40) for most works. A work of fewer than ``min_matched_words /
    short_work_share`` words (80 by default: a poem, a lyric) needs ``short_work_share`` of
    its words instead, and never fewer than ``min_run``: without this a 30-word poem could
    never be attributed, not even when a document holds all of it. Half and not more because
    coverage is counted between fingerprints, and a work's first and last fingerprints may
    lie up to ``window - 1`` positions from its ends: a verbatim copy covers at least
    ``work_words - 2 (window - 1)`` words, which is half of any work of 28 words or more.
    What keeps chance out is the passage of ``min_run`` words that :func:`is_attribution`
    asks of every work (no chance passage that long was seen in 17,541 independent
    documents); the 40 words keep a quoted famous line of a *long* work from attributing,
    and a document that holds half of a short poem has quoted much of the work
    (``docs/recognition-text.md``, "Short works"). Works of fewer than ``min_run`` words are
    never attributed (their exact copies are still recognised by file hash).
    ``short_work_share`` 0 turns the rule off.
    """
    if short_work_share <= 0:
        return min_matched_words
    share = math.ceil(short_work_share * work_words - 1e-9)
    return min(min_matched_words, max(min_run, share))


def is_attribution(
    score: ContainmentScore,
    *,
    min_matched_words: int = DEFAULT_MIN_MATCHED_WORDS,
    min_run: int = DEFAULT_MIN_RUN,
    short_work_share: float = DEFAULT_SHORT_WORK_SHARE,
) -> bool:
    """Whether the evidence is strong enough to say the query contains the work.

    Both must hold: at least :func:`required_words` of the work's words aligned (40 by
    default; a share of a short work's), and one aligned run of at least ``min_run`` (default
    12) words.

    Why these defaults: a title, "Chapter 1", a copyright line ("All rights reserved") or a
    famous opening line quoted in an unrelated text is a single run of at most a dozen or two
    words; 40 words is about two or three sentences, more than any formula or single quoted
    line, and less than the 50-word excerpts the gate must catch. The run of 12 words (just
    under the winnowing guarantee ``w + k - 1 = 13``) stops many scattered chance 6-gram
    matches of everyday phrases from adding up to 40 words. Register boilerplate in
    :class:`StopHashes` so that it never counts at all.
    """
    needed = required_words(
        score.work_word_count,
        min_matched_words=min_matched_words,
        min_run=min_run,
        short_work_share=short_work_share,
    )
    return score.matched_words >= needed and score.longest_run >= min_run


# --------------------------------------------------------------------------------------------
# the fingerprinter


_APPLIES = frozenset(
    {
        "text",
        "text/html",
        "application/xhtml+xml",
        "text/markdown",
        "text/x-markdown",
        "application/pdf",
        "application/epub+zip",
    }
)


class TextFingerprinter:
    """Fingerprints writing: a winnowed k-gram set (containment) and a MinHash (near-duplicates).

    ``fingerprint`` returns two :class:`~consentry.fingerprint.base.Fingerprint` values,
    ``text-winnow-v1`` (read back with :func:`decode_fingerprint`) and ``text-minhash-v1``
    (:func:`decode_minhash`). Media types ``text`` and ``text/*`` apply; ``text/html`` and
    ``text/markdown`` (or a document starting with ``<!doctype html``/``<html``) are stripped of
    markup first.
    """

    def __init__(
        self,
        *,
        k: int = DEFAULT_K,
        window: int = DEFAULT_WINDOW,
        num_perm: int = DEFAULT_NUM_PERM,
        stop: StopHashes | None = None,
        legacy_fallback: bool = True,
    ) -> None:
        if stop is not None:
            _check_k(stop.k, k)
        self._k = k
        self._window = window
        self._num_perm = num_perm
        self._stop = stop
        self._legacy_fallback = legacy_fallback

    @property
    def name(self) -> str:
        return "text-winnow"

    def applies_to(self, media_type: str) -> bool:
        base = media_type.split(";", 1)[0].strip().lower()
        return base in _APPLIES or base.startswith("text/")

    def analyse(
        self, data: bytes, media_type: str = "text"
    ) -> tuple[TextFingerprint, _UInt64Array]:
        """The winnowed fingerprint and the MinHash signature of ``data``.

        Raises:
            UnreadableInputError: undecodable or binary data, or no words at all.
        """
        fingerprint = self._winnowed(data, media_type)
        # The MinHash set is the winnowed fingerprints, not every k-gram: winnowing is a
        # content-defined sample (the same passage selects the same hashes in both texts), so
        # the Jaccard estimate barely changes, and it costs 2 / (w + 1) of the work.
        return fingerprint, minhash_signature(fingerprint.hashes, num_perm=self._num_perm)

    def _winnowed(self, data: bytes, media_type: str) -> TextFingerprint:
        text = extract_text(data, media_type, legacy_fallback=self._legacy_fallback).text
        fingerprint = _fingerprint_stream(
            _token_batches(text), k=self._k, window=self._window, stop=self._stop
        )
        del text  # the fingerprint is all that is needed from here on
        if fingerprint.word_count == 0:
            raise UnreadableInputError("text item contains no words")
        return fingerprint

    def fingerprint(self, data: bytes, media_type: str) -> list[Fingerprint]:
        """``text-winnow-v1`` and ``text-minhash-v1`` fingerprints of ``data``."""
        winnowed, signature = self.analyse(data, media_type)
        return [
            _Winnowed(winnowed),
            Fingerprint(kind=MINHASH_KIND, value=encode_minhash(signature)),
        ]

    def query_fingerprint(self, data: bytes, media_type: str) -> list[Fingerprint]:
        """What recognising ``data`` needs: the ``text-winnow-v1`` fingerprint alone.

        No matcher reads ``text-minhash-v1`` (containment, not whole-document similarity, is
        the question, and the registry keeps each work's signature from registration), and
        the signature costs about a quarter of fingerprinting: checking and matching skip it
        (``fingerprint_all(..., query=True)`` calls this method).
        """
        return [_Winnowed(self._winnowed(data, media_type))]
