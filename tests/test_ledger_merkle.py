"""Tests of consentry.ledger.merkle: RFC 9162 hashing, proofs and verification.

The transparency-dev/merkle probes in ../shared/vectors/merkle pin interoperability; hypothesis
checks that the list-based (RFC-literal) and node-based (O(log n)) proofs agree and that any
tampering is rejected.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import InvalidInputError, VerificationError
from consentry.ledger import merkle
from consentry.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryNodeStore,
    consistency_proof,
    consistency_proof_from_nodes,
    inclusion_proof,
    inclusion_proof_from_nodes,
    leaf_hash,
    node_hash,
    nodes_to_store_on_append,
    perfect_subtree_hash,
    root_from_leaf_hashes,
    root_from_nodes,
    verify_consistency,
    verify_inclusion,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MISSING = "<vectors directory missing>"

# The tree behind the transparency-dev probes and its roots by size (vectors README).
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _vectors_root() -> Path:
    default = REPO_ROOT.parent / "shared" / "vectors"
    return Path(os.environ.get("CONSENTRY_VECTORS", default)) / "merkle"


def _probe_names(kind: str) -> list[str]:
    # Collected at import time so that each probe is its own test id; a missing directory
    # yields one sentinel id whose test fails through the fixture instead of vanishing.
    directory = _vectors_root() / kind
    names = sorted(p.name for p in directory.glob("*.json")) if directory.is_dir() else []
    return names or [MISSING]


@pytest.fixture(scope="session")
def merkle_vectors() -> Path:
    directory = _vectors_root()
    if not (directory / "inclusion").is_dir() or not (directory / "consistency").is_dir():
        pytest.fail(
            f"Merkle test vectors not found at {directory}; set CONSENTRY_VECTORS to the"
            " shared vectors directory (it holds merkle/inclusion and merkle/consistency)"
        )
    return directory


def _load(directory: Path, kind: str, name: str) -> dict[str, Any]:
    if name == MISSING:
        pytest.fail(f"no {kind} probes in {directory / kind}")
    data: dict[str, Any] = json.loads((directory / kind / name).read_text())
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _hashes(values: Sequence[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


# --- transparency-dev probes --------------------------------------------------------------


@pytest.mark.parametrize("name", _probe_names("inclusion"))
def test_inclusion_probe(merkle_vectors: Path, name: str) -> None:
    probe = _load(merkle_vectors, "inclusion", name)
    args = (
        probe["leafIdx"],
        probe["treeSize"],
        _b64(probe["leafHash"]),
        _hashes(probe["proof"]),
        _b64(probe["root"]),
    )
    if probe["wantErr"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("name", _probe_names("consistency"))
def test_consistency_probe(merkle_vectors: Path, name: str) -> None:
    probe = _load(merkle_vectors, "consistency", name)
    args = (
        probe["size1"],
        probe["size2"],
        _b64(probe["root1"]),
        _b64(probe["root2"]),
        _hashes(probe["proof"]),
    )
    if probe["wantErr"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_probe_sets_have_both_outcomes(merkle_vectors: Path) -> None:
    for kind in ("inclusion", "consistency"):
        outcomes = {
            json.loads(p.read_text())["wantErr"] for p in (merkle_vectors / kind).glob("*.json")
        }
        assert outcomes == {True, False}, kind


@pytest.mark.parametrize("size", range(len(REFERENCE_ROOTS)))
def test_reference_roots(size: int) -> None:
    hashes = [leaf_hash(leaf) for leaf in REFERENCE_LEAVES[:size]]
    expected = bytes.fromhex(REFERENCE_ROOTS[size])
    store = MemoryNodeStore(hashes)
    frontier = CompactRange()
    for hash_ in hashes:
        frontier.append(hash_)
    assert root_from_leaf_hashes(hashes) == expected
    assert root_from_nodes(size, store) == expected
    assert frontier.root() == expected
    assert CompactRange.from_nodes(size, store).root() == expected


def test_hash_prefixes() -> None:
    assert EMPTY_ROOT.hex() == REFERENCE_ROOTS[0]
    assert leaf_hash(b"").hex() == REFERENCE_ROOTS[1]
    left, right = leaf_hash(b""), leaf_hash(b"\x00")
    assert node_hash(left, right).hex() == REFERENCE_ROOTS[2]


# --- messages and argument checks ---------------------------------------------------------


def _reference_tree() -> list[bytes]:
    return [leaf_hash(leaf) for leaf in REFERENCE_LEAVES]


def test_inclusion_length_message_names_the_check() -> None:
    hashes = _reference_tree()
    proof = inclusion_proof(5, hashes)
    with pytest.raises(
        VerificationError,
        match=r"inclusion proof has 2 hashes, expected 3 for index 5 in a tree of 8",
    ):
        verify_inclusion(5, 8, hashes[5], proof[:2], root_from_leaf_hashes(hashes))


def test_inclusion_root_mismatch_message() -> None:
    hashes = _reference_tree()
    with pytest.raises(VerificationError, match=r"leads to root .*not the expected"):
        verify_inclusion(5, 8, hashes[4], inclusion_proof(5, hashes), root_from_leaf_hashes(hashes))


@pytest.mark.parametrize(
    ("size1", "size2", "proof_size", "match"),
    [
        (-1, 3, 0, "negative"),
        (4, 3, 0, "larger than new tree size"),
        (0, 5, 0, "empty tree"),
        (0, 0, 0, "empty tree"),
        (3, 3, 1, "must be empty"),
        (3, 8, 3, "has 3 hashes, expected 4"),
        (3, 8, 0, "has 0 hashes, expected 4"),
    ],
)
def test_consistency_rejections_name_the_check(
    size1: int, size2: int, proof_size: int, match: str
) -> None:
    proof = [EMPTY_ROOT] * proof_size
    with pytest.raises(VerificationError, match=match):
        verify_consistency(size1, size2, EMPTY_ROOT, EMPTY_ROOT, proof)


def test_rfc_algorithms_alone_reject_padded_and_truncated_proofs() -> None:
    # verify_* check the exact length first; the RFC loops must still refuse on their own.
    hashes = _reference_tree()
    path = inclusion_proof(5, hashes)
    with pytest.raises(VerificationError, match="longer"):
        merkle._root_from_inclusion_path(5, 7, hashes[5], [*path, EMPTY_ROOT])
    with pytest.raises(VerificationError, match="shorter"):
        merkle._root_from_inclusion_path(5, 7, hashes[5], path[:-1])
    proof = consistency_proof(3, hashes)
    root1 = root_from_leaf_hashes(hashes[:3])
    with pytest.raises(VerificationError, match="longer"):
        merkle._roots_from_consistency_path(3, 8, root1, [*proof, EMPTY_ROOT])
    with pytest.raises(VerificationError, match="shorter"):
        merkle._roots_from_consistency_path(3, 8, root1, proof[:-1])


def test_consistency_rejects_short_hashes() -> None:
    hashes = _reference_tree()
    proof = consistency_proof(3, hashes)
    proof[1] = proof[1][:31]
    root1, root2 = root_from_leaf_hashes(hashes[:3]), root_from_leaf_hashes(hashes)
    with pytest.raises(VerificationError, match="proof hash 1 is 31 bytes"):
        verify_consistency(3, 8, root1, root2, proof)


def test_consistency_names_which_root_failed() -> None:
    hashes = _reference_tree()
    proof = consistency_proof(3, hashes)
    root1, root2 = root_from_leaf_hashes(hashes[:3]), root_from_leaf_hashes(hashes)
    with pytest.raises(VerificationError, match="old root"):
        verify_consistency(3, 8, root2, root2, proof)
    with pytest.raises(VerificationError, match="new root"):
        verify_consistency(3, 8, root1, root1, proof)


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0)])
def test_inclusion_proof_rejects_indices_outside_the_tree(index: int, size: int) -> None:
    hashes = _reference_tree()[:size]
    store = MemoryNodeStore(hashes)
    with pytest.raises(InvalidInputError):
        inclusion_proof(index, hashes)
    with pytest.raises(InvalidInputError):
        inclusion_proof_from_nodes(index, size, store)


@pytest.mark.parametrize(("size1", "size2"), [(0, 4), (0, 0), (5, 4), (-1, 4)])
def test_consistency_proof_rejects_bad_sizes(size1: int, size2: int) -> None:
    hashes = _reference_tree()[:size2]
    store = MemoryNodeStore(hashes)
    with pytest.raises(InvalidInputError):
        consistency_proof(size1, hashes)
    with pytest.raises(InvalidInputError):
        consistency_proof_from_nodes(size1, size2, store)


def test_equal_sizes_give_the_empty_consistency_proof() -> None:
    hashes = _reference_tree()
    assert consistency_proof(8, hashes) == []
    assert consistency_proof_from_nodes(8, 8, MemoryNodeStore(hashes)) == []


def test_memory_store_refuses_incomplete_subtrees() -> None:
    store = MemoryNodeStore(_reference_tree()[:3])
    assert store.size == 3
    with pytest.raises(InvalidInputError, match="not complete"):
        store.node(1, 1)


def test_compact_range_checks_its_hashes() -> None:
    with pytest.raises(InvalidInputError, match="3 frontier hashes"):
        CompactRange(7, [EMPTY_ROOT])
    with pytest.raises(InvalidInputError):
        CompactRange(-1)
    assert CompactRange().root() == EMPTY_ROOT


def test_perfect_subtree_hash_from_leaves() -> None:
    hashes = _reference_tree()
    store = MemoryNodeStore(hashes)
    for level, count in ((0, 8), (1, 4), (2, 2), (3, 1)):
        for index in range(count):
            assert perfect_subtree_hash(level, index, hashes.__getitem__) == store.node(
                level, index
            )
    with pytest.raises(InvalidInputError):
        perfect_subtree_hash(-1, 0, hashes.__getitem__)


class CountingReader:
    """A NodeReader that counts reads, to pin the O(log n) promise."""

    def __init__(self, store: MemoryNodeStore) -> None:
        self.store = store
        self.reads = 0

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.store.node(level, index)


def test_node_functions_read_logarithmically_many_nodes() -> None:
    size = 1000
    store = MemoryNodeStore(leaf_hash(i.to_bytes(2, "big")) for i in range(size))
    bound = 2 * size.bit_length()  # inner + border + the tiles of one ephemeral node
    for index in (0, 1, 511, 512, 777, 999):
        reader = CountingReader(store)
        inclusion_proof_from_nodes(index, size, reader)
        assert reader.reads <= bound
    for size1 in (1, 3, 512, 513, 999):
        reader = CountingReader(store)
        consistency_proof_from_nodes(size1, size, reader)
        assert reader.reads <= bound + 1
    reader = CountingReader(store)
    root_from_nodes(size, reader)
    assert reader.reads == size.bit_count()
    reader = CountingReader(store)
    appended = nodes_to_store_on_append(size, leaf_hash(b"new"), reader)
    assert reader.reads == len(appended) - 1 <= size.bit_length()


# --- properties -----------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


def _tree(size: int, salt: int) -> list[bytes]:
    # Distinct leaves, so no tampering can be cancelled out by two equal leaf hashes.
    return [leaf_hash(salt.to_bytes(8, "big") + i.to_bytes(4, "big")) for i in range(size)]


@st.composite
def trees(draw: st.DrawFn, min_size: int = 1) -> list[bytes]:
    return _tree(draw(st.integers(min_size, 300)), draw(st.integers(0, 2**32)))


@PROPERTY_SETTINGS
@given(leaves=trees(), data=st.data())
def test_inclusion_proofs_agree_and_verify(leaves: list[bytes], data: st.DataObject) -> None:
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1))
    store = MemoryNodeStore(leaves)
    root = root_from_leaf_hashes(leaves)
    proof = inclusion_proof(index, leaves)
    assert inclusion_proof_from_nodes(index, size, store) == proof
    assert root_from_nodes(size, store) == root
    verify_inclusion(index, size, leaves[index], proof, root)


@PROPERTY_SETTINGS
@given(leaves=trees(), data=st.data())
def test_consistency_proofs_agree_and_verify(leaves: list[bytes], data: st.DataObject) -> None:
    size2 = len(leaves)
    size1 = data.draw(st.integers(1, size2))
    store = MemoryNodeStore(leaves)
    proof = consistency_proof(size1, leaves)
    assert consistency_proof_from_nodes(size1, size2, store) == proof
    root1, root2 = root_from_leaf_hashes(leaves[:size1]), root_from_leaf_hashes(leaves)
    verify_consistency(size1, size2, root1, root2, proof)


@PROPERTY_SETTINGS
@given(leaves=trees())
def test_compact_range_and_store_record_the_same_nodes(leaves: list[bytes]) -> None:
    frontier = CompactRange()
    store = MemoryNodeStore()
    for hash_ in leaves:
        expected = nodes_to_store_on_append(store.size, hash_, store)
        assert frontier.append(hash_) == expected
        store.append(hash_)
    assert frontier.size == store.size == len(leaves)
    assert frontier.root() == root_from_leaf_hashes(leaves)
    assert CompactRange.from_nodes(len(leaves), store).hashes == frontier.hashes
    for level, index, hash_ in expected:
        assert store.node(level, index) == hash_


def _flip_bit(proof: list[bytes], position: int, bit: int) -> list[bytes]:
    tampered = list(proof)
    hash_ = bytearray(tampered[position])
    hash_[bit // 8] ^= 1 << (bit % 8)
    tampered[position] = bytes(hash_)
    return tampered


INCLUSION_TAMPERING = ["flip", "drop", "add", "index", "size"]


@PROPERTY_SETTINGS
@given(
    leaves=trees(min_size=3),
    kind=st.sampled_from(INCLUSION_TAMPERING),
    data=st.data(),
)
def test_tampered_inclusion_proofs_are_rejected(
    leaves: list[bytes], kind: str, data: st.DataObject
) -> None:
    # The tree holds about 2 * size leaves so that a wrong size can also be a larger real
    # tree; size >= 2 so that every proof has a hash to tamper with.
    size = len(leaves) // 2 + 1
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, leaves[:size])
    root = root_from_leaf_hashes(leaves[:size])
    leaf, claimed_index, claimed_size = leaves[index], index, size
    if kind == "flip":
        position = data.draw(st.integers(0, len(proof) - 1))
        proof = _flip_bit(proof, position, data.draw(st.integers(0, 255)))
    elif kind == "drop":
        del proof[data.draw(st.integers(0, len(proof) - 1))]
    elif kind == "add":
        proof.insert(
            data.draw(st.integers(0, len(proof))), data.draw(st.binary(min_size=32, max_size=32))
        )
    elif kind == "index":
        claimed_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    else:
        # A wrong size is checked against the real root of that size, as a checkpoint gives.
        claimed_size = data.draw(st.integers(index + 1, len(leaves)).filter(lambda s: s != size))
        root = root_from_leaf_hashes(leaves[:claimed_size])
    with pytest.raises(VerificationError):
        verify_inclusion(claimed_index, claimed_size, leaf, proof, root)


CONSISTENCY_TAMPERING = ["flip", "drop", "add", "size1", "size2", "root1"]


@PROPERTY_SETTINGS
@given(
    leaves=trees(min_size=4),
    kind=st.sampled_from(CONSISTENCY_TAMPERING),
    data=st.data(),
)
def test_tampered_consistency_proofs_are_rejected(
    leaves: list[bytes], kind: str, data: st.DataObject
) -> None:
    size2 = len(leaves) // 2 + 1
    size1 = data.draw(st.integers(1, size2 - 1))
    proof = consistency_proof(size1, leaves[:size2])
    root1, root2 = root_from_leaf_hashes(leaves[:size1]), root_from_leaf_hashes(leaves[:size2])
    claimed1, claimed2 = size1, size2
    if kind == "flip":
        position = data.draw(st.integers(0, len(proof) - 1))
        proof = _flip_bit(proof, position, data.draw(st.integers(0, 255)))
    elif kind == "drop":
        del proof[data.draw(st.integers(0, len(proof) - 1))]
    elif kind == "add":
        proof.insert(
            data.draw(st.integers(0, len(proof))), data.draw(st.binary(min_size=32, max_size=32))
        )
    elif kind == "size1":
        claimed1 = data.draw(st.integers(1, size2 - 1).filter(lambda s: s != size1))
        root1 = root_from_leaf_hashes(leaves[:claimed1])
    elif kind == "size2":
        claimed2 = data.draw(st.integers(size1 + 1, len(leaves)).filter(lambda s: s != size2))
        root2 = root_from_leaf_hashes(leaves[:claimed2])
    else:
        # An old root from a different history of the same size.
        root1 = root_from_leaf_hashes(_tree(size1, data.draw(st.integers(2**33, 2**34))))
    with pytest.raises(VerificationError):
        verify_consistency(claimed1, claimed2, root1, root2, proof)
