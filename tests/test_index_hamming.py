"""The image index: multi-index search is exact within its radius, persistence, matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consentry.errors import InvalidInputError
from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.image import ImageFingerprinter
from consentry.index import default_index_factories
from consentry.index.hamming import (
    ALIGNED_THRESHOLD,
    MIN_INLIERS,
    CodeIndex,
    HammingIndex,
    HammingIndexFactory,
)
from consentry.index.verify import fit_similarity, verify_similarity
from test_match_cli import jpeg, picture


def flip_bits(code: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    out = code.copy()
    for bit in rng.choice(256, count, replace=False):
        out[bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


def brute(codes: np.ndarray, query: np.ndarray, radius: int) -> set[int]:
    d = np.unpackbits(codes ^ query[None, :], axis=1).sum(axis=1)
    return set(np.flatnonzero(d <= radius).tolist())


@pytest.mark.parametrize("radius", [0, 10, 31])
def test_search_equals_brute_force_within_31(radius: int) -> None:
    rng = np.random.default_rng(radius)
    codes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    near = np.stack([flip_bits(codes[i], int(rng.integers(0, 32)), rng) for i in range(0, 300)])
    codes = np.concatenate([codes, near])
    index = CodeIndex()
    index.add(codes[:2000], np.arange(2000, dtype=np.uint32), np.zeros(2000, np.uint32))
    index.seal()  # main segment
    rest = len(codes) - 2000
    index.add(codes[2000:], np.arange(2000, len(codes), dtype=np.uint32), np.zeros(rest, np.uint32))
    for i in range(0, 300, 7):
        query = codes[i]
        q, owner, _, dist = index.search(query[None, :], radius)
        assert set(owner.tolist()) == brute(codes, query, radius)
        assert (q == 0).all()
        assert (dist <= radius).all()
        assert len(owner) == len(set(owner.tolist()))  # found through several chunks, once
    # Many queries at once take the other candidate-gathering path: same answers.
    batch = codes[0:300:7]
    q, owner, _, dist = index.search(batch, radius)
    assert len(batch) * 16 * 17 > 1024
    for k, query in enumerate(batch):
        assert set(owner[q == k].tolist()) == brute(codes, query, radius)
    pairs = list(zip(q.tolist(), owner.tolist(), strict=True))
    assert len(pairs) == len(set(pairs))
    assert (dist <= radius).all()


def test_is_a_default_index() -> None:
    assert any(f.name == "image-hamming" for f in default_index_factories())


@pytest.fixture(scope="module")
def works() -> dict[str, list[Fingerprint]]:
    fp = ImageFingerprinter()
    return {f"W{n + 1}": fp.fingerprint(jpeg(picture(n), 95), "image") for n in range(4)}


def query(image: Image.Image, quality: int = 80) -> list[Fingerprint]:
    return ImageFingerprinter().query_fingerprint(jpeg(image, quality), "image")


def test_match_ranks_the_right_work_first_with_stage_and_evidence(
    works: dict[str, list[Fingerprint]],
) -> None:
    index = HammingIndex()
    for row, (work_id, prints) in enumerate(works.items(), 1):
        index.add(work_id, prints, row)
    assert index.watermark == 4
    found = index.match(query(picture(2), 40))
    assert found[0].work_id == "W3"
    assert found[0].stage in ("pdq", "local")
    assert 0.0 < found[0].score <= 1.0
    w, h = picture(2).size
    cropped = index.match(query(picture(2).crop((0, 0, int(w * 0.7), int(h * 0.7)))))
    assert cropped[0].work_id == "W3"
    assert cropped[0].stage == "local"
    assert cropped[0].evidence["inliers"] >= MIN_INLIERS
    assert cropped[0].evidence["aligned_distance"] <= ALIGNED_THRESHOLD
    assert index.match(query(picture(50))) == []
    assert index.match([]) == []


def test_save_load_memory_mapped_and_incremental(
    works: dict[str, list[Fingerprint]], tmp_path: Path
) -> None:
    factory = HammingIndexFactory()
    index = factory.create()
    items = list(works.items())
    for row, (work_id, prints) in enumerate(items[:2], 1):
        index.add(work_id, prints, row)
    folder = tmp_path / "idx"
    index.save(folder)
    loaded = factory.load(folder)
    assert loaded.watermark == 2
    assert isinstance(loaded.global_codes.main.codes, np.memmap)
    assert loaded.match(query(picture(1)))[0].work_id == "W2"
    for row, (work_id, prints) in enumerate(items[2:], 3):
        loaded.add(work_id, prints, row)
    loaded.save(folder)
    again = factory.load(folder)
    assert again.watermark == 4
    assert len(again) == 4
    assert again.match(query(picture(3)))[0].work_id == "W4"
    assert again.match(query(picture(0)))[0].work_id == "W1"
    # The box hashes are saved and loaded with the rest.
    w, h = picture(3).size
    cropped = again.match(query(picture(3).crop((0, 0, int(w * 0.7), int(h * 0.7)))))
    assert cropped[0].work_id == "W4"
    assert "aligned_distance" in cropped[0].evidence
    # Old generations are cleaned up: one set of files per segment, the work ids, the box
    # hashes.
    assert len(list(folder.glob("*.npy"))) == 2 * 2 * 5 + 2


def test_load_refuses_a_foreign_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        HammingIndexFactory().load(tmp_path)
    (tmp_path / "meta.json").write_text('{"format": "other", "version": 1}')
    with pytest.raises(InvalidInputError, match="not a version-1 image index"):
        HammingIndexFactory().load(tmp_path)


def test_malformed_hash_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="hex"):
        HammingIndex().add("W1", [Fingerprint("pdq", "zz" * 32, "full")], 1)


def test_overfull_buckets_are_skipped_without_losing_close_codes() -> None:
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    codes[:, :2] = 0  # every code shares chunk 0: one bucket of 3000 entries
    index = CodeIndex()
    index.add(codes, np.arange(3000, dtype=np.uint32), np.zeros(3000, np.uint32))
    for i in range(0, 3000, 301):
        query = flip_bits(codes[i], 6, rng)
        query[:2] = 0
        _, owner, _, _ = index.search(query[None, :], 10, flips=False, bucket_factor=1)
        # Within 14 bits a code still agrees exactly on one of the 15 other chunks.
        assert set(owner.tolist()) == brute(codes, query, 10)


def test_local_stage_runs_only_when_the_global_stage_finds_nothing(
    works: dict[str, list[Fingerprint]], monkeypatch: pytest.MonkeyPatch
) -> None:
    index = HammingIndex()
    for row, (work_id, prints) in enumerate(works.items(), 1):
        index.add(work_id, prints, row)
    calls: list[int] = []
    original = HammingIndex._match_local

    def counting(self: HammingIndex, fps: list[Fingerprint], rule: object) -> object:
        calls.append(1)
        return original(self, fps, rule)  # type: ignore[arg-type]

    monkeypatch.setattr(HammingIndex, "_match_local", counting)
    found = index.match(query(picture(1), 60))
    assert found[0].work_id == "W2"
    assert found[0].stage == "pdq"
    assert calls == []
    w, h = picture(1).size
    cropped = index.match(query(picture(1).crop((0, 0, int(w * 0.7), int(h * 0.7)))))
    assert cropped[0].work_id == "W2"
    assert cropped[0].stage == "local"
    assert calls == [1]


def test_rotation_variants_match_only_when_nothing_else_does(
    works: dict[str, list[Fingerprint]],
) -> None:
    index = HammingIndex()
    for row, (work_id, prints) in enumerate(works.items(), 1):
        index.add(work_id, prints, row)
    # A copy of W2 turned 3 degrees: the plain whole-picture codes miss it, the variant that
    # turns it back matches, and the evidence says by how much the item was turned.
    turned = picture(1).rotate(3.0, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    prints = query(turned)
    found = index.match(prints)
    assert found[0].work_id == "W2"
    assert found[0].stage == "pdq"
    assert found[0].evidence["item_rotation_degrees"] in (2.0, 3.0)
    plain = [f for f in prints if "~rotate+" not in f.region and "~rotate-" not in f.region]
    assert all(
        "item_rotation_degrees" not in m.evidence for m in index.match(plain) if m.stage == "pdq"
    )
    # An unturned copy matches through its plain codes: the rotated ones are never tried.
    straight = index.match(query(picture(1), 60))
    assert straight[0].work_id == "W2"
    assert "item_rotation_degrees" not in straight[0].evidence
    # Dihedral variants named "rotate-90" are not small rotations.
    assert all(m.stage != "pdq" for m in index.match(query(picture(50))))


def test_search_without_unique_lists_the_same_pairs_with_duplicates() -> None:
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, (2000, 32), dtype=np.uint8)
    index = CodeIndex()
    index.add(codes, np.arange(2000, dtype=np.uint32), np.arange(2000, dtype=np.uint32) * 3)
    queries = np.stack([flip_bits(codes[i], 8, rng) for i in range(0, 2000, 97)])
    q, owner, _, dist = index.search(queries, 31)
    q2, owner2, aux2, dist2, rank = index.search_ranked(queries, 31, unique=False)
    unique_pairs = set(zip(q.tolist(), owner.tolist(), dist.tolist(), strict=True))
    listed = list(zip(q2.tolist(), owner2.tolist(), dist2.tolist(), strict=True))
    assert set(listed) == unique_pairs
    # A code within 8 bits agrees exactly on at least 8 of its 16 chunks: found repeatedly.
    assert len(listed) > len(unique_pairs)
    assert (aux2 == owner2 * 3).all()
    assert (rank == owner2).all()  # one segment: the rank is the insertion order


@pytest.mark.parametrize("degrees", [10, 45, 100, 135])
def test_the_local_stage_finds_a_copy_turned_by_any_angle(degrees: int) -> None:
    # Reuse at any angle is real: a galaxy photograph turned 120 degrees in one game is
    # another's skybox, and a texture pack's normal map turned 130 degrees; both found in
    # the impostor count. A prior on the turn was measured and dropped for that reason
    # (docs/recognition-images.md, "Why this design").
    index = HammingIndex()
    index.add("W", ImageFingerprinter().fingerprint(jpeg(picture(1)), "image"), 1)
    turned = picture(1).rotate(degrees, Image.Resampling.BILINEAR, expand=True)
    matches = index.match(ImageFingerprinter().query_fingerprint(jpeg(turned), "image"))
    assert [(m.work_id, m.stage) for m in matches] == [("W", "local")]
    assert abs(float(str(matches[0].evidence["rotation_degrees"])) - degrees) < 1.0


def test_fit_after_the_index_reduction_equals_verify_similarity() -> None:
    """The index reduces matches to one per keypoint itself, then fits: same outcome as
    :func:`verify_similarity` on the raw matches."""
    rng = np.random.default_rng(5)
    registered = np.round(rng.uniform(0, 250, (60, 2)) * 4) / 4
    angle = np.radians(12.0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    query = np.round((registered @ turn.T * 0.8 + [20.0, 5.0]) * 4) / 4
    # Duplicated and noisy matches: a second, worse match for some query points.
    noise = np.round(rng.uniform(0, 250, (20, 2)) * 4) / 4
    q = np.concatenate([query, query[:20]])
    r = np.concatenate([registered, noise])
    d = np.concatenate([rng.integers(0, 20, 60), rng.integers(25, 40, 20)]).astype(np.int64)
    raw = verify_similarity(q, r, d)
    assert raw is not None
    assert raw.inliers >= 55
    assert abs(raw.scale - 1.25) < 0.02
    # The reduction by hand: closest per query point, then ordered by registered position.
    keep = np.ones(len(q), bool)
    keep[60:] = False  # the noisy ones are farther than their twins
    order = np.lexsort((r[keep][:, 1], r[keep][:, 0]))
    fitted = fit_similarity(q[keep][order], r[keep][order])
    assert fitted == raw
    assert fit_similarity(q[:3], r[:3]) is None
