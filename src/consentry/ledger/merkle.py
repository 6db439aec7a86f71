"""RFC 9162 Merkle tree hashing, proofs and their verification (pure: no I/O).

Everything here follows RFC 9162 (Certificate Transparency Version 2.0), §2.1, which keeps the
RFC 6962 tree: SHA-256, leaf hashes ``SHA-256(0x00 || data)``, interior hashes
``SHA-256(0x01 || left || right)``, the root of the empty tree ``SHA-256("")``, and the left
subtree of an ``n``-leaf tree holding the largest power of two *smaller* than ``n`` leaves.

Two families of functions build proofs:

* list-based (:func:`root_from_leaf_hashes`, :func:`inclusion_proof`,
  :func:`consistency_proof`) take every leaf hash and follow the RFC's recursive definitions
  (§2.1.1, §2.1.3.1, §2.1.4.1) literally. They are the reference, and cost O(n log n).
* node-based (:func:`root_from_nodes`, :func:`inclusion_proof_from_nodes`,
  :func:`consistency_proof_from_nodes`) read *perfect subtree* hashes through a
  :class:`NodeReader` and touch only O(log n) nodes. A store persists, on every append, the
  perfect subtrees the new leaf completes (:func:`nodes_to_store_on_append`, or
  :meth:`CompactRange.append` when it keeps the right edge in memory) in a table keyed by
  ``(level, index)``; node ``(level, index)`` covers leaves ``[index * 2**level,
  (index + 1) * 2**level)``.

Verification (:func:`verify_inclusion`, :func:`verify_consistency`) implements the algorithms of
RFC 9162 §2.1.3.2 and §2.1.4.2 and raises :class:`~consentry.errors.VerificationError` naming the
first check that failed; it also insists that the proof has exactly the number of hashes the
algorithm consumes, so no padded or truncated proof is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from consentry.errors import InvalidInputError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MemoryNodeStore",
    "NodeReader",
    "consistency_proof",
    "consistency_proof_from_nodes",
    "inclusion_proof",
    "inclusion_proof_from_nodes",
    "leaf_hash",
    "node_hash",
    "nodes_to_store_on_append",
    "perfect_subtree_hash",
    "root_from_leaf_hashes",
    "root_from_nodes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 hash, the only hash RFC 6962 / RFC 9162 trees use here."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: ``MTH({}) = SHA-256()`` (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

NodeTriple = tuple[int, int, bytes]
"""``(level, index, hash)`` of one perfect subtree, as a store persists it."""


class NodeReader(Protocol):
    """Read access to the stored hashes of perfect subtrees.

    ``node(level, index)`` returns the hash of the perfect subtree of ``2**level`` leaves that
    starts at leaf ``index * 2**level``; level 0 holds the leaf hashes themselves. Readers are
    only asked for subtrees that are complete in the tree size being proved.
    """

    def node(self, level: int, index: int) -> bytes:
        """Return the hash of perfect subtree ``(level, index)``."""


# --- hashing (RFC 9162 §2.1.1) ---------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """Hash of a leaf: ``SHA-256(0x00 || data)`` (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1).

    The distinct prefixes keep a leaf from ever being mistaken for an interior node (second
    preimage resistance across levels).
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash ``MTH(D[n])`` of the given leaf hashes (RFC 9162 §2.1.1).

    Built bottom-up: pairing neighbours level by level and carrying an odd last node up
    unchanged gives exactly the RFC's "largest power of two smaller than n" split, in O(n).
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def perfect_subtree_hash(level: int, index: int, get_leaf_hash: Callable[[int], bytes]) -> bytes:
    """Hash of perfect subtree ``(level, index)`` computed from its ``2**level`` leaf hashes.

    For a store that keeps only leaf hashes, or to rebuild a node table: O(2**level) callbacks.
    """
    _check_non_negative(level=level, index=index)
    frontier = CompactRange()
    start = index << level
    for i in range(start, start + (1 << level)):
        frontier.append(get_leaf_hash(i))
    return frontier.root()


# --- list-based proofs: RFC 9162 §2.1.3.1 and §2.1.4.1 taken literally ------------------------


def _largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162 §2.1.1: the largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Inclusion proof ``PATH(index, D[n])`` of RFC 9162 §2.1.3.1, leaf's sibling first.

    Raises InvalidInputError unless ``0 <= index < len(leaf_hashes)``.
    """
    size = len(leaf_hashes)
    _check_non_negative(index=index)
    if index >= size:
        raise InvalidInputError(f"leaf index {index} is not in a tree of {size}")
    return _path(index, leaf_hashes)


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if m < k:
        return [*_path(m, d[:k]), root_from_leaf_hashes(d[k:])]
    return [*_path(m - k, d[k:]), root_from_leaf_hashes(d[:k])]


def consistency_proof(size1: int, leaf_hashes_of_size2: Sequence[bytes]) -> list[bytes]:
    """Consistency proof ``PROOF(size1, D[size2])`` of RFC 9162 §2.1.4.1.

    Defined for ``0 < size1 <= size2`` (equal sizes give the empty proof); a proof from the
    empty tree proves nothing, so ``size1 == 0`` raises InvalidInputError, as does
    ``size1 > size2``.
    """
    size2 = len(leaf_hashes_of_size2)
    _check_consistency_sizes(size1, size2)
    return _subproof(size1, leaf_hashes_of_size2, True)


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        # The old tree is a complete subtree here: the verifier already knows its hash
        # only when it is the whole old tree (b is true), otherwise it must be sent.
        return [] if b else [root_from_leaf_hashes(d)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return [*_subproof(m, d[:k], b), root_from_leaf_hashes(d[k:])]
    return [*_subproof(m - k, d[k:], False), root_from_leaf_hashes(d[:k])]


# --- node-based proofs: O(log n) reads of stored perfect subtrees -----------------------------


def root_from_nodes(size: int, reader: NodeReader) -> bytes:
    """``MTH(D[size])`` from the ``popcount(size)`` perfect subtrees that tile ``[0, size)``."""
    _check_non_negative(size=size)
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, reader)


def inclusion_proof_from_nodes(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """The same proof as :func:`inclusion_proof`, reading O(log size) nodes.

    Raises InvalidInputError unless ``0 <= index < size``.
    """
    _check_non_negative(index=index, size=size)
    if index >= size:
        raise InvalidInputError(f"leaf index {index} is not in a tree of {size}")
    return _path_from_nodes(0, index, size, reader)


def consistency_proof_from_nodes(size1: int, size2: int, reader: NodeReader) -> list[bytes]:
    """The same proof as :func:`consistency_proof`, reading O(log size2) nodes.

    The old tree ``[0, size1)`` ends in the perfect subtree ``(level, index)`` with
    ``level = ctz(size1)``; the RFC's SUBPROOF is that node's inclusion path in the new tree,
    preceded by the node itself unless it is the whole old tree (``size1`` a power of two),
    whose hash the verifier already holds as the old root.
    """
    _check_consistency_sizes(size1, size2)
    if size1 == size2:
        return []
    level = _trailing_zeros(size1)
    index = (size1 - 1) >> level
    path = _path_from_nodes(level, index, size2, reader)
    return path if index == 0 else [reader.node(level, index), *path]


def nodes_to_store_on_append(
    size_before: int, leaf_hash: bytes, reader: NodeReader
) -> list[NodeTriple]:
    """Perfect subtrees completed by appending ``leaf_hash`` at index ``size_before``.

    Returns ``(level, index, hash)`` from the leaf (level 0) upwards; one per trailing one-bit
    of ``size_before`` plus the leaf, so O(log n) reads of left siblings already stored.
    """
    _check_non_negative(size=size_before)
    out: list[NodeTriple] = [(0, size_before, leaf_hash)]
    current, index, level = leaf_hash, size_before, 0
    while index & 1:
        # An odd index is a right child: its left sibling is complete and already stored.
        current = node_hash(reader.node(level, index - 1), current)
        index, level = index >> 1, level + 1
        out.append((level, index, current))
    return out


def _path_from_nodes(level: int, index: int, size: int, reader: NodeReader) -> list[bytes]:
    """Inclusion path of perfect subtree ``(level, index)`` in the tree of ``size`` leaves.

    The path splits into an *inner* part (siblings below the level where the node's path and
    the last leaf's path meet) and a *border* part (left siblings above it). Only the topmost
    inner sibling can be an incomplete, "ephemeral" subtree: it is hashed from the perfect
    subtrees tiling it.
    """
    last = (size - 1) >> level
    inner = (index ^ last).bit_length()
    path: list[bytes] = []
    for offset in range(inner):
        node_level = level + offset
        sibling = (index >> offset) ^ 1
        start = sibling << node_level
        end = min(start + (1 << node_level), size)
        if end - start == 1 << node_level:
            path.append(reader.node(node_level, sibling))
        else:
            path.append(_range_hash(start, end, reader))
    offset, rest = inner, index >> inner
    while rest:
        if rest & 1:
            path.append(reader.node(level + offset, (index >> offset) ^ 1))
        offset, rest = offset + 1, rest >> 1
    return path


def _range_hash(start: int, end: int, reader: NodeReader) -> bytes:
    """``MTH(D[start:end])`` for a range whose start is aligned to its largest tile.

    The range is tiled by perfect subtrees, largest first (the binary digits of its length);
    folding them from the right reproduces the RFC's left-heavy split.
    """
    tiles = _tile(start, end - start, reader)
    current = tiles[-1]
    for tile in reversed(tiles[:-1]):
        current = node_hash(tile, current)
    return current


def _tile(start: int, count: int, reader: NodeReader) -> list[bytes]:
    tiles: list[bytes] = []
    position = start
    for level in reversed(range(count.bit_length())):
        if count >> level & 1:
            tiles.append(reader.node(level, position >> level))
            position += 1 << level
    return tiles


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


# --- incremental structures -------------------------------------------------------------------


class CompactRange:
    """The right edge ("frontier") of an append-only tree of ``size`` leaves.

    Holds the hashes of the perfect subtrees tiling ``[0, size)``, largest first: one per
    one-bit of ``size``, so O(log n) memory. Appending merges the trailing subtrees of equal
    size, which is also exactly the set of nodes a store must persist.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        _check_non_negative(size=size)
        self._size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise InvalidInputError(
                f"a tree of {size} leaves has {size.bit_count()} frontier hashes,"
                f" got {len(self._hashes)}"
            )

    @classmethod
    def from_nodes(cls, size: int, reader: NodeReader) -> CompactRange:
        """Load the frontier of ``[0, size)`` from stored nodes (``popcount(size)`` reads)."""
        _check_non_negative(size=size)
        return cls(size, _tile(0, size, reader))

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Perfect-subtree hashes along the right edge, largest (leftmost) first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[NodeTriple]:
        """Append one leaf hash; return the perfect subtrees it completes, leaf first."""
        out: list[NodeTriple] = [(0, self._size, leaf_hash)]
        current, index, level = leaf_hash, self._size, 0
        while index & 1:
            # The trailing one-bits of size are the smallest frontier subtrees, at the end.
            current = node_hash(self._hashes.pop(), current)
            index, level = index >> 1, level + 1
            out.append((level, index, current))
        self._hashes.append(current)
        self._size += 1
        return out

    def root(self) -> bytes:
        """``MTH(D[size])``: the frontier folded from the right (RFC 9162 §2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        current = self._hashes[-1]
        for tile in reversed(self._hashes[:-1]):
            current = node_hash(tile, current)
        return current


class MemoryNodeStore:
    """An in-memory append-only tree keeping every perfect subtree; a :class:`NodeReader`.

    The reference for a database-backed node table, and handy for tests and small snapshots.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0
        for hash_ in leaf_hashes:
            self.append(hash_)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and return its index."""
        for level, index, hash_ in nodes_to_store_on_append(self._size, leaf_hash, self):
            self._nodes[level, index] = hash_
        self._size += 1
        return self._size - 1

    def node(self, level: int, index: int) -> bytes:
        """Hash of perfect subtree ``(level, index)``; InvalidInputError if not complete yet."""
        try:
            return self._nodes[level, index]
        except KeyError:
            raise InvalidInputError(
                f"subtree (level {level}, index {index}) is not complete in a tree of {self._size}"
            ) from None


# --- verification: RFC 9162 §2.1.3.2 and §2.1.4.2 ---------------------------------------------


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.3.2, plus exact-length and hash-size checks. Raises VerificationError
    naming the first failed check; returns None when the proof verifies.
    """
    # 1. The leaf must be inside the tree (RFC step 1); this also rejects the empty tree.
    if index < 0 or index >= size:
        raise VerificationError(f"leaf index {index} is not in a tree of {size}")
    # 2. Every hash must be a SHA-256 digest, so truncated or padded hashes never get hashed.
    _check_hash_size("leaf hash", leaf_hash)
    _check_hash_size("root", root)
    for position, hash_ in enumerate(proof):
        _check_hash_size(f"proof hash {position}", hash_)
    # 3. The proof must have exactly the hashes the algorithm consumes for (index, size).
    expected = _inclusion_proof_size(index, size - 1)
    if len(proof) != expected:
        raise VerificationError(
            f"inclusion proof has {len(proof)} hashes, expected {expected}"
            f" for index {index} in a tree of {size}"
        )
    # 4. Recompute the root along the path (RFC steps 2-5) and compare.
    computed = _root_from_inclusion_path(index, size - 1, leaf_hash, proof)
    if not hmac.compare_digest(computed, root):
        raise VerificationError(
            f"inclusion proof for index {index} in a tree of {size} leads to root"
            f" {computed.hex()}, not the expected {root.hex()}"
        )


def _inclusion_proof_size(index: int, last: int) -> int:
    """Hashes in the inclusion path of node ``index`` when the last node is ``last``."""
    inner = (index ^ last).bit_length()
    return inner + (index >> inner).bit_count()


def _root_from_inclusion_path(index: int, last: int, seed: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 steps 2-5: fold the path into a root, starting from ``seed``."""
    fn, sn, r = index, last, seed
    # The sn checks repeat the RFC; the exact-length check before makes them a second line.
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # fn was the last node of its level and a left child, so it had no sibling there
            # and moved up unchanged: climb to the level where p is its left sibling.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the path to the root")
    return r


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``size2`` leaves with ``root2`` extends the one with ``root1``.

    RFC 9162 §2.1.4.2, plus the checks the RFC leaves implicit: the old tree may not be
    larger than the new one; equal sizes need an empty proof and equal roots; a proof from
    the empty tree is refused, since it binds nothing (the RFC defines proofs for
    ``0 < size1``); and the proof must have exactly the hashes the algorithm consumes.
    Raises VerificationError naming the first failed check.
    """
    # 1. Sizes are counts, and trees only grow.
    if size1 < 0:
        raise VerificationError(f"old tree size {size1} is negative")
    if size1 > size2:
        raise VerificationError(f"old tree size {size1} is larger than new tree size {size2}")
    # 2. Consistency with the empty tree proves nothing; a caller must not take it as evidence.
    if size1 == 0:
        raise VerificationError(
            f"a consistency proof from the empty tree to a tree of {size2} proves nothing"
        )
    # 3. The same size: nothing to prove, the roots must simply be equal.
    if size1 == size2:
        if proof:
            raise VerificationError(
                f"consistency proof between equal sizes {size1} must be empty, has {len(proof)}"
            )
        if not hmac.compare_digest(root1, root2):
            raise VerificationError(f"trees of equal size {size1} have different roots")
        return
    # 4. Every hash must be a SHA-256 digest.
    _check_hash_size("old root", root1)
    _check_hash_size("new root", root2)
    for position, hash_ in enumerate(proof):
        _check_hash_size(f"proof hash {position}", hash_)
    # 5. The proof must have exactly the hashes the algorithm consumes (RFC step 1 forbids
    #    an empty one; the exact count also rejects padding and truncation).
    expected = _consistency_proof_size(size1, size2)
    if len(proof) != expected:
        raise VerificationError(
            f"consistency proof has {len(proof)} hashes, expected {expected}"
            f" from a tree of {size1} to a tree of {size2}"
        )
    # 6. Recompute both roots along the path (RFC steps 2-7) and compare each.
    old, new = _roots_from_consistency_path(size1, size2, root1, proof)
    if not hmac.compare_digest(old, root1):
        raise VerificationError(
            f"consistency proof from {size1} to {size2} does not lead to the old root"
        )
    if not hmac.compare_digest(new, root2):
        raise VerificationError(
            f"consistency proof from {size1} to {size2} does not lead to the new root"
        )


def _consistency_proof_size(size1: int, size2: int) -> int:
    """Hashes in ``PROOF(size1, D[size2])`` for ``0 < size1 < size2``."""
    level = _trailing_zeros(size1)
    index = (size1 - 1) >> level
    seed = 0 if index == 0 else 1
    return seed + _inclusion_proof_size(index, (size2 - 1) >> level)


def _roots_from_consistency_path(
    size1: int, size2: int, root1: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 2-7: the old and new roots the proof leads to."""
    path = list(proof)
    # Step 2: a power-of-two old tree is itself a node of the new tree; its hash is root1.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # Steps 3-4: start at the last old leaf and climb while it is a right child.
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # Step 5: the first hash is the subtree both roots are computed from.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            # Nodes right of the old tree only count towards the new root.
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    # Step 7: the path must end exactly at the root.
    if sn != 0:
        raise VerificationError("consistency proof is shorter than the path to the root")
    return fr, sr


# --- argument checks --------------------------------------------------------------------------


def _check_hash_size(what: str, hash_: bytes) -> None:
    if len(hash_) != HASH_SIZE:
        raise VerificationError(f"{what} is {len(hash_)} bytes, expected {HASH_SIZE}")


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise InvalidInputError(f"{name} must not be negative, got {value}")


def _check_consistency_sizes(size1: int, size2: int) -> None:
    if size1 <= 0:
        raise InvalidInputError(
            f"a consistency proof needs an old tree of at least one leaf, got size {size1}"
        )
    if size1 > size2:
        raise InvalidInputError(f"old tree size {size1} is larger than new tree size {size2}")
