"""The local stage's second kind of evidence: the query, aligned by the keypoints' transform,
compared with the registered picture's box hashes (``pdqg1``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consentry.errors import InvalidInputError
from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.deferred import DeferredFingerprint
from consentry.fingerprint.image import (
    GRID_RECORD,
    KIND_GRID,
    KIND_WORKING_COPY,
    WORK_SIDE,
    ImageFingerprinter,
    aligned_distance,
    decode_grid,
    decode_working_copy,
)
from consentry.index.hamming import (
    ALIGNED_THRESHOLD,
    LEGACY_MIN_INLIERS,
    UNCONFIRMED_INLIERS,
    HammingIndex,
    HammingIndexFactory,
)
from consentry.registry.registration import prepare_file
from test_match_cli import jpeg, picture


def registered(n: int) -> list[Fingerprint]:
    return ImageFingerprinter().fingerprint(jpeg(picture(n), 95), "image")


def query(image: Image.Image) -> list[Fingerprint]:
    return ImageFingerprinter().query_fingerprint(jpeg(image, 85), "image")


def crop(n: int, keep: float = 0.7) -> Image.Image:
    image = picture(n)
    w, h = image.size
    return image.crop((0, 0, int(w * keep), int(h * keep)))


def of_kind(prints: list[Fingerprint], kind: str) -> list[Fingerprint]:
    return [f for f in prints if f.kind == kind]


@pytest.fixture(scope="module")
def index() -> HammingIndex:
    out = HammingIndex()
    for n in range(4):
        out.add(f"W{n + 1}", registered(n), n + 1)
    return out


def test_registration_keeps_box_hashes_and_never_the_pixels(tmp_path: Path) -> None:
    prints = registered(0)
    (grid,) = of_kind(prints, KIND_GRID)
    record = decode_grid(grid.value)
    assert len(record) == GRID_RECORD
    width, height, mask = np.frombuffer(record[:6], "<u2").tolist()
    assert (width, height) == (WORK_SIDE, round(360 * WORK_SIDE / 480))
    assert mask == (1 << 10) - 1  # every box of a textured picture is hashed
    assert of_kind(prints, KIND_WORKING_COPY) == []
    # What registration stores (prepare_file is what `consentry work register` runs).
    path = tmp_path / "work.jpg"
    path.write_bytes(jpeg(picture(0), 95))
    kinds = {f.kind for f in prepare_file(path, 1 << 20).fingerprints}
    assert KIND_GRID in kinds
    assert KIND_WORKING_COPY not in kinds


def test_a_query_carries_its_working_copy_deferred_and_no_box_hashes() -> None:
    prints = query(picture(0))
    assert of_kind(prints, KIND_GRID) == []
    (copy,) = of_kind(prints, KIND_WORKING_COPY)
    assert isinstance(copy, DeferredFingerprint)
    assert not copy.computed
    pixels = decode_working_copy(copy.value)
    assert pixels.shape == (round(360 * WORK_SIDE / 480), WORK_SIDE)
    assert pixels.dtype == np.uint8


def test_aligned_distance_tells_the_same_picture_from_another() -> None:
    record = decode_grid(of_kind(registered(0), KIND_GRID)[0].value)
    same = decode_working_copy(of_kind(query(picture(0)), KIND_WORKING_COPY)[0].value)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    found = aligned_distance(same, identity, record)
    assert found is not None
    assert found[0] <= 16
    # A 70 % crop from the top left, enlarged back to the working copy's side: the transform
    # from its pixels to the work's is a scale of 0.7.
    cropped = decode_working_copy(of_kind(query(crop(0)), KIND_WORKING_COPY)[0].value)
    scale = np.array([[0.7, 0.0, 0.0], [0.0, 0.7, 0.0]])
    found = aligned_distance(cropped, scale, record)
    assert found is not None
    assert found[0] <= ALIGNED_THRESHOLD
    # The centre box (0) lies outside a top-left 70 % crop; cell 0 (top left) lies inside.
    assert found[1] != 0
    # Another picture, aligned the same way, is far.
    other = decode_working_copy(of_kind(query(picture(7)), KIND_WORKING_COPY)[0].value)
    found = aligned_distance(other, identity, record)
    assert found is not None
    assert found[0] > ALIGNED_THRESHOLD + 10
    # A transform that puts the query beside the work covers no box.
    beside = np.array([[1.0, 0.0, 400.0], [0.0, 1.0, 0.0]])
    assert aligned_distance(same, beside, record) is None


def test_a_crop_matches_locally_with_the_aligned_distance_as_evidence(
    index: HammingIndex,
) -> None:
    found = index.match(query(crop(2)))
    assert found[0].work_id == "W3"
    assert found[0].stage == "local"
    assert found[0].evidence["aligned_distance"] <= ALIGNED_THRESHOLD
    assert found[0].evidence["aligned_box"] in range(10)


def test_keypoints_without_agreeing_pixels_need_many_inliers(index: HammingIndex) -> None:
    prints = query(crop(2))
    # The same keypoints, but another picture's pixels: the transform is found, the aligned
    # comparison fails.
    foreign = of_kind(query(crop(5)), KIND_WORKING_COPY)[0]
    swapped = [f for f in prints if f.kind != KIND_WORKING_COPY] + [foreign]
    lax = index.scored(swapped, global_threshold=-1, unconfirmed_inliers=1)
    (found,) = [m for m in lax if m.work_id == "W3"]
    assert found.evidence["aligned_distance"] > ALIGNED_THRESHOLD
    inliers = found.evidence["inliers"]
    strict = index.scored(swapped, global_threshold=-1, unconfirmed_inliers=inliers + 1)
    assert all(m.work_id != "W3" for m in strict)
    # By default: a match only with UNCONFIRMED_INLIERS or more.
    default = [m.work_id for m in index.scored(swapped, global_threshold=-1)]
    assert ("W3" in default) == (inliers >= UNCONFIRMED_INLIERS)


def test_a_query_without_its_working_copy_needs_many_inliers(index: HammingIndex) -> None:
    bare = [f for f in query(crop(2)) if f.kind != KIND_WORKING_COPY]
    lax = index.scored(bare, global_threshold=-1, unconfirmed_inliers=1)
    (found,) = [m for m in lax if m.work_id == "W3"]
    assert "aligned_distance" not in found.evidence
    strict = index.scored(
        bare, global_threshold=-1, unconfirmed_inliers=found.evidence["inliers"] + 1
    )
    assert all(m.work_id != "W3" for m in strict)


def test_works_registered_before_box_hashes_match_on_inliers_alone() -> None:
    legacy = HammingIndex()
    for n in range(4):
        legacy.add(f"W{n + 1}", [f for f in registered(n) if f.kind != KIND_GRID], n + 1)
    found = legacy.scored(query(crop(2)), global_threshold=-1, unconfirmed_inliers=10**6)
    assert found[0].work_id == "W3"
    assert found[0].evidence["inliers"] >= LEGACY_MIN_INLIERS
    assert "aligned_distance" not in found[0].evidence


def test_an_index_saved_before_box_hashes_loads_and_matches_as_before(
    tmp_path: Path,
) -> None:
    index = HammingIndex()
    for n in range(4):
        index.add(f"W{n + 1}", [f for f in registered(n) if f.kind != KIND_GRID], n + 1)
    index.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert "grids" not in meta["files"]  # nothing to save
    loaded = HammingIndexFactory().load(tmp_path)
    found = loaded.scored(query(crop(2)), global_threshold=-1, unconfirmed_inliers=10**6)
    assert found[0].work_id == "W3"
    # A work registered later, with box hashes, is confirmed; the older ones still are not.
    loaded.add("W5", registered(5), 5)
    loaded.save(tmp_path)
    again = HammingIndexFactory().load(tmp_path)
    assert "aligned_distance" in again.match(query(crop(5)))[0].evidence
    old = again.scored(query(crop(2)), global_threshold=-1, unconfirmed_inliers=10**6)
    assert "aligned_distance" not in old[0].evidence


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "pdqg1"),
        (base64.b64encode(b"\x00" * (GRID_RECORD - 1)).decode(), "holds"),
        (base64.b64encode(b"\xff\xff\xff\xff" + b"\x00" * (GRID_RECORD - 4)).decode(), "65535"),
        (base64.b64encode(b"\x00" * GRID_RECORD).decode(), "0 x 0"),
    ],
)
def test_a_malformed_box_hash_record_is_refused(value: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        HammingIndex().add("W1", [Fingerprint(KIND_GRID, value)], 1)


@pytest.mark.parametrize("value", ["3x3:AAAA", "axb:", "2x2:!!!"])
def test_a_malformed_working_copy_is_refused(index: HammingIndex, value: str) -> None:
    prints = [f for f in query(crop(2)) if f.kind != KIND_WORKING_COPY]
    with pytest.raises(InvalidInputError, match=KIND_WORKING_COPY):
        index.match([*prints, Fingerprint(KIND_WORKING_COPY, value)])


def test_a_box_mostly_covered_is_compared() -> None:
    # A crop keeping 70 % from 27 % in: the half-side cell from the middle column and row
    # is 96 % covered along each side (92 % in all), enough to be compared.
    image = picture(3)
    w, h = image.size
    left, top = round(w * 0.27), round(h * 0.27)
    cropped = image.crop((left, top, left + round(w * 0.7), top + round(h * 0.7)))
    record = decode_grid(of_kind(registered(3), KIND_GRID)[0].value)
    pixels = decode_working_copy(of_kind(query(cropped), KIND_WORKING_COPY)[0].value)
    width = np.frombuffer(record[:2], "<u2")[0]
    scale = 0.7 * float(width) / WORK_SIDE * WORK_SIDE / pixels.shape[1]
    offset = 0.27 * float(width)
    matrix = np.array([[scale, 0.0, offset], [0.0, scale, offset * 360 / 480]])
    found = aligned_distance(pixels, matrix, record)
    assert found is not None
    assert found[0] <= ALIGNED_THRESHOLD
