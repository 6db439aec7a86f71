"""Whole-picture matches between GLOBAL_UNCONFIRMED and GLOBAL_THRESHOLD bits are confirmed by
the box hashes, with the query aligned as the matched code implies (index/alignment.py)."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from PIL import Image

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.image import (
    GRID_BOXES,
    GRID_RECORD,
    KIND_GRID,
    KIND_PDQ,
    KIND_WORKING_COPY,
    decode_grid,
    decode_working_copy,
)
from consentry.fingerprint.pdq import DIHEDRAL_ORDER, DIHEDRAL_TRANSPOSE
from consentry.index.alignment import TAG_ALL, TAG_PDQ, TAG_TRIM, transform_key, variant_matrix
from consentry.index.hamming import (
    ALIGNED_THRESHOLD,
    GLOBAL_THRESHOLD,
    GLOBAL_UNCONFIRMED,
    MAX_ALIGNED_WORKS,
    GlobalCandidate,
    GlobalRule,
    HammingIndex,
)
from test_index_aligned import of_kind, query, registered
from test_match_cli import picture


def grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), np.uint8)


def warp(source: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = cv2.warpAffine(source.astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR)
    return np.asarray(out, np.float32)


def close(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey difference away from the edges (resampling blurs them)."""
    m = 6
    return float(np.abs(a[m:-m, m:-m] - b[m:-m, m:-m].astype(np.float32)).mean())


WORK_SIZE = (256, 192)


@pytest.mark.parametrize(
    ("name", "how"),
    [(n, t) for n, t in zip(DIHEDRAL_ORDER, DIHEDRAL_TRANSPOSE, strict=True) if t is not None],
)
def test_a_dihedral_variant_maps_the_query_onto_the_work(name: str, how: Image.Transpose) -> None:
    # The work is the query transposed as the variant's code says, at the work's size.
    item = picture(3, (240, 180))
    work = grey(item.transpose(how).resize(WORK_SIZE, Image.Resampling.BILINEAR))
    matrix = variant_matrix(f"full~{name}", TAG_PDQ, grey(item), WORK_SIZE)
    assert matrix is not None
    aligned = warp(grey(item), matrix, WORK_SIZE)
    assert close(aligned, work) < 6.0
    # The identity would not do (a check that the comparison can fail).
    plain = variant_matrix("full", TAG_PDQ, grey(item), WORK_SIZE)
    assert plain is not None
    if how not in (Image.Transpose.TRANSPOSE,):
        assert close(warp(grey(item), plain, WORK_SIZE), work) > 20.0


def test_the_region_recipes_mirror_is_left_to_right() -> None:
    item = picture(4, (240, 180))
    work = grey(item.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize(WORK_SIZE))
    matrix = variant_matrix("all~flip", TAG_ALL, grey(item), WORK_SIZE)
    assert matrix is not None
    assert close(warp(grey(item), matrix, WORK_SIZE), work) < 6.0


@pytest.mark.parametrize("angle", [-3, -2, 2, 3])
def test_a_small_rotation_variant_turns_the_query_back(angle: int) -> None:
    work_image = picture(5, (256, 192))
    # The item is the work turned `angle` degrees counter-clockwise, as the variant assumes.
    item = work_image.rotate(angle, resample=Image.Resampling.BILINEAR)
    matrix = variant_matrix(f"all~rotate{angle:+d}", TAG_ALL, grey(item), WORK_SIZE)
    assert matrix is not None
    back = warp(grey(item), matrix, WORK_SIZE)
    centre = (slice(30, -30), slice(30, -30))  # the turned-in corners are not the work's
    right = close(back[centre], grey(work_image)[centre])
    assert right < 6.0
    wrong = variant_matrix(f"all~rotate{-angle:+d}", TAG_ALL, grey(item), WORK_SIZE)
    assert wrong is not None
    assert close(warp(grey(item), wrong, WORK_SIZE)[centre], grey(work_image)[centre]) > 2 * right


def test_a_trim_match_maps_the_trimmed_box_onto_the_whole_work() -> None:
    work_image = picture(6, (200, 150))
    padded = Image.new("RGB", (260, 210), (0, 0, 0))
    padded.paste(work_image, (30, 30))
    matrix = variant_matrix("trim", TAG_ALL, grey(padded), WORK_SIZE)
    assert matrix is not None
    work = grey(work_image.resize(WORK_SIZE, Image.Resampling.BILINEAR))
    assert close(warp(grey(padded), matrix, WORK_SIZE), work) < 8.0


def test_which_matches_imply_an_alignment() -> None:
    # Whole picture: PDQ's "full" and the region recipe's "all" are the same alignment.
    assert transform_key("full", TAG_PDQ) == transform_key("all", TAG_ALL)
    assert transform_key("full~rotate-90", TAG_PDQ) == ("whole", "rotate-90")
    assert transform_key("all~rotate+3", TAG_ALL) == ("whole", "rotate+3")
    assert transform_key("trim~flip", TAG_ALL) == ("trim", "flip")
    # The box a registered trim code came from is not stored: no alignment.
    assert transform_key("all", TAG_TRIM) is None
    assert variant_matrix("all", TAG_TRIM, np.zeros((8, 8), np.uint8), WORK_SIZE) is None
    # Unknown regions or variants (from a newer or foreign fingerprinter): none either.
    assert transform_key("centre", TAG_ALL) is None
    assert transform_key("all~rotate+7", TAG_ALL) is None


# The confirmed global stage, on works whose one whole-picture code is set at a chosen
# distance from the query's "full" code.


def flipped(code: str, bits: int) -> str:
    value = bytearray(bytes.fromhex(code))
    for b in range(bits):
        value[b // 8] ^= 1 << (b % 8)
    return value.hex()


def work_with_code(code: str, grid_of: int | None) -> list[Fingerprint]:
    """A work whose only whole-picture code is ``code``, without keypoints (so the local stage
    cannot match it), with the box hashes of picture ``grid_of`` (None: none, as registered
    before them)."""
    out = [Fingerprint(KIND_PDQ, code, "full")]
    if grid_of is not None:
        out += of_kind(registered(grid_of), KIND_GRID)
    return out


@pytest.fixture(scope="module")
def item() -> list[Fingerprint]:
    return query(picture(0))


def full_code(prints: list[Fingerprint]) -> str:
    return next(f.value for f in prints if f.kind == KIND_PDQ and f.region == "full")


def matches(index: HammingIndex, prints: list[Fingerprint]) -> list[str]:
    return [m.work_id for m in index.match(prints)]


def test_a_close_code_with_agreeing_pixels_matches_with_the_aligned_distance(
    item: list[Fingerprint],
) -> None:
    index = HammingIndex()
    index.add("SAME", work_with_code(flipped(full_code(item), 24), grid_of=0), 1)
    (found,) = index.match(item)
    assert found.work_id == "SAME"
    assert found.stage == "pdq"
    assert found.evidence["distance"] == 24
    assert found.evidence["region"] == TAG_PDQ
    assert found.evidence["aligned_distance"] <= ALIGNED_THRESHOLD


def test_a_close_code_with_other_pixels_does_not_match(item: list[Fingerprint]) -> None:
    index = HammingIndex()
    index.add("OTHER", work_with_code(flipped(full_code(item), 24), grid_of=7), 1)
    assert matches(index, item) == []
    (candidate,) = index.global_candidates(item)["OTHER"]
    assert candidate.distance == 24
    assert candidate.aligned is not None
    assert candidate.aligned > ALIGNED_THRESHOLD
    # At a laxer aligned threshold it would (the rule, not the data, decides).
    lax = index.scored(item, aligned_threshold=candidate.aligned)
    assert [m.work_id for m in lax] == ["OTHER"]


def test_a_very_close_code_matches_whatever_the_pixels(item: list[Fingerprint]) -> None:
    index = HammingIndex()
    index.add("OTHER", work_with_code(flipped(full_code(item), GLOBAL_UNCONFIRMED), 7), 1)
    (found,) = index.match(item)
    assert found.evidence["distance"] == GLOBAL_UNCONFIRMED
    assert "aligned_distance" not in found.evidence  # not even compared
    index = HammingIndex()
    index.add("OTHER", work_with_code(flipped(full_code(item), GLOBAL_UNCONFIRMED + 1), 7), 1)
    assert matches(index, item) == []


def test_works_without_box_hashes_match_on_the_distance_alone(item: list[Fingerprint]) -> None:
    index = HammingIndex()
    index.add("OLD", work_with_code(flipped(full_code(item), GLOBAL_THRESHOLD), None), 1)
    assert matches(index, item) == ["OLD"]
    index = HammingIndex()
    index.add("OLD", work_with_code(flipped(full_code(item), GLOBAL_THRESHOLD + 1), None), 1)
    assert matches(index, item) == []


def test_a_query_without_its_working_copy_needs_a_very_close_code(
    item: list[Fingerprint],
) -> None:
    bare = [f for f in item if f.kind != KIND_WORKING_COPY]
    index = HammingIndex()
    index.add("SAME", work_with_code(flipped(full_code(item), 24), grid_of=0), 1)
    assert matches(index, bare) == []
    assert matches(index, item) == ["SAME"]


def test_codes_that_match_but_pixels_that_do_not_leave_the_item_to_the_local_stage() -> None:
    # The real work is registered in full (keypoints too); a crop of it whose whole-picture
    # code is close to a foreign work's code must still find the real work locally.
    cropped = picture(2).crop((0, 0, 336, 252))
    item = query(cropped)
    index = HammingIndex()
    index.add("REAL", registered(2), 1)
    index.add("DECOY", work_with_code(flipped(full_code(item), 20), grid_of=7), 2)
    found = index.match(item)
    assert [m.work_id for m in found] == ["REAL"]
    assert found[0].stage == "local"


def test_a_re_encoded_registered_picture_is_confirmed_by_its_own_box_hashes() -> None:
    # End to end, on real fingerprints: a transposed, resized re-encode.
    index = HammingIndex()
    for n in range(3):
        index.add(f"W{n}", registered(n), n + 1)
    turned = picture(1).transpose(Image.Transpose.ROTATE_90).resize((300, 400))
    prints = query(turned)
    found = index.match(prints)
    assert found[0].work_id == "W1"
    assert found[0].stage == "pdq"
    for candidates in index.global_candidates(prints).values():
        for c in candidates:
            if c.aligned is not None and c.distance > GLOBAL_UNCONFIRMED:
                assert c.aligned <= ALIGNED_THRESHOLD  # only the real work comes close


def test_the_rule_is_written_once() -> None:
    rule = GlobalRule()
    near = GlobalCandidate(GLOBAL_UNCONFIRMED, None, TAG_PDQ, None, legacy=False)
    assert rule.accepts(near)
    confirmed = near._replace(distance=GLOBAL_THRESHOLD, aligned=ALIGNED_THRESHOLD)
    assert rule.accepts(confirmed)
    assert not rule.accepts(confirmed._replace(aligned=ALIGNED_THRESHOLD + 1))
    assert not rule.accepts(confirmed._replace(aligned=None))
    assert not rule.accepts(confirmed._replace(distance=GLOBAL_THRESHOLD + 1))
    assert rule.accepts(confirmed._replace(aligned=None, legacy=True))
    assert not rule.accepts_any([confirmed._replace(aligned=None)] * 3)
    assert rule.accepts_any([confirmed._replace(aligned=None), confirmed])


def test_the_borrowed_box_hashes_are_of_same_sized_different_pictures() -> None:
    # The works above borrow picture 0's or picture 7's box hashes: same working-copy size,
    # different content, so only the pixels tell them apart.
    a = decode_grid(of_kind(registered(0), KIND_GRID)[0].value)
    b = decode_grid(of_kind(registered(7), KIND_GRID)[0].value)
    assert a[:6] == b[:6]
    assert a != b
    copy = decode_working_copy(of_kind(query(picture(0)), KIND_WORKING_COPY)[0].value)
    assert copy.shape == (192, 256)


def test_at_most_max_aligned_works_are_compared_per_item(item: list[Fingerprint]) -> None:
    # Ten works whose codes are 18-27 bits from the item's and whose box hashes agree: a
    # registry of near-identical pictures must not make one item cost ten comparisons.
    index = HammingIndex()
    for k in range(10):
        index.add(f"N{18 + k}", work_with_code(flipped(full_code(item), 18 + k), 0), k + 1)
    found = sorted(m.work_id for m in index.match(item))
    assert found == [f"N{18 + k}" for k in range(MAX_ALIGNED_WORKS)]
    # The benchmarks' listing compares them all.
    listed = index.global_candidates(item)
    assert all(c.aligned is not None for cs in listed.values() for c in cs)


def test_a_copys_box_below_the_flatness_gate_is_still_compared() -> None:
    # The registered picture's last cell is hashed (the only box of its record, as for a
    # flat texture with one busy corner); in a blurred copy that cell falls below the
    # quality a box needs to be registered. It is still compared, and still close.
    from PIL import ImageFilter

    from consentry.fingerprint.image import GRID_BOXES, _dct16, _pixel_box, aligned_distance

    record = bytearray(of_kind_grid(3))
    last = len(GRID_BOXES) - 1
    record[4:6] = np.array([1 << last], "<u2").tobytes()
    copy = grey(picture(3, WORK_SIZE).filter(ImageFilter.GaussianBlur(4)))
    left, top, right, bottom = _pixel_box(GRID_BOXES[last], *WORK_SIZE)
    assert _dct16(copy[top:bottom, left:right].astype(np.float32)) is None  # below the gate
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    found = aligned_distance(copy, identity, bytes(record))
    assert found is not None
    assert found == (found[0], last)
    assert found[0] <= ALIGNED_THRESHOLD
    # Another picture, blurred alike, is far.
    other = grey(picture(8, WORK_SIZE).filter(ImageFilter.GaussianBlur(4)))
    far = aligned_distance(other, identity, bytes(record))
    assert far is not None
    assert far[0] > ALIGNED_THRESHOLD


def of_kind_grid(n: int) -> bytes:
    """The box hash record of picture ``n`` at the working-copy size of these tests."""
    from consentry.fingerprint.image import grid_record

    record = grid_record(grey(picture(n, WORK_SIZE)).astype(np.float32))
    assert record is not None
    return record


def _png(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _faint_mosaic() -> Image.Image:
    """A faint mosaic of 16-px cells 16 grey levels apart (256 x 256)."""
    cells = np.random.default_rng(1).integers(0, 2, (16, 16))
    return Image.fromarray((200 + 16 * np.kron(cells, np.ones((16, 16)))).astype(np.uint8))


def _cropped_by_3px(picture: Image.Image) -> list[Fingerprint]:
    """Query fingerprints of ``picture`` without its first 3 rows and columns."""
    from consentry.fingerprint.image import ImageFingerprinter

    return ImageFingerprinter().query_fingerprint(
        _png(np.asarray(picture.crop((3, 3, *picture.size)))), "image"
    )


def test_a_faint_texture_gets_boxes_by_their_margin_and_its_crop_is_confirmed() -> None:
    # A faint mosaic of 16-px cells 16 grey levels apart: every box is too flat for PDQ's
    # quality (fewer edges than the whole picture has) but decided by its bit margin, so
    # it is hashed. A copy cropped by 3 px is 17-30 bits away, where the distance needs
    # the aligned boxes to confirm it: they do.
    from consentry.fingerprint.image import ImageFingerprinter

    mosaic = _faint_mosaic()
    work = ImageFingerprinter().fingerprint(_png(np.asarray(mosaic)), "image")
    assert of_kind(work, KIND_PDQ)
    (grid,) = of_kind(work, KIND_GRID)
    record = decode_grid(grid.value)
    assert np.frombuffer(record[:6], "<u2").tolist() == [256, 256, (1 << len(GRID_BOXES)) - 1]
    index = HammingIndex()
    index.add("FAINT", work, 1)
    cropped = _cropped_by_3px(mosaic)
    (candidate,) = index.global_candidates(cropped)["FAINT"][:1]
    assert GLOBAL_UNCONFIRMED < candidate.distance <= GLOBAL_THRESHOLD
    assert candidate.aligned is not None
    assert candidate.aligned <= ALIGNED_THRESHOLD
    assert [m.work_id for m in index.match(cropped)] == ["FAINT"]


def test_a_work_with_no_box_is_not_taken_for_a_legacy_work() -> None:
    # A work whose record holds no box (a picture a few pixels high has none; so had
    # faint textures before boxes were kept by their margin): a copy 17-30 bits away
    # needs a confirmation nothing can give. Without the record (registered before box
    # hashes) the distance alone decides, as before.
    from consentry.fingerprint.image import ImageFingerprinter

    mosaic = _faint_mosaic()
    hashed = ImageFingerprinter().fingerprint(_png(np.asarray(mosaic)), "image")
    empty = np.array([256, 256, 0], "<u2").tobytes() + bytes(GRID_RECORD - 6)
    work = [f for f in hashed if f.kind != KIND_GRID]
    work.append(Fingerprint(KIND_GRID, base64.b64encode(empty).decode("ascii")))
    index = HammingIndex()
    index.add("FLAT", work, 1)
    cropped = _cropped_by_3px(mosaic)
    (candidate,) = index.global_candidates(cropped)["FLAT"][:1]
    assert GLOBAL_UNCONFIRMED < candidate.distance <= GLOBAL_THRESHOLD
    assert not candidate.legacy
    assert candidate.aligned is None
    assert index.match(cropped) == []
    legacy = HammingIndex()
    legacy.add("OLD", [f for f in work if f.kind != KIND_GRID], 1)
    assert [m.work_id for m in legacy.match(cropped)] == ["OLD"]
    # An exact copy still matches.
    assert [m.work_id for m in index.match(query(mosaic))] == ["FLAT"]


@pytest.mark.parametrize(
    ("width", "height"), [(0, 100), (100, 0), (257, 100), (100, 4000), (65535, 65535)]
)
def test_a_box_record_claiming_an_impossible_working_copy_is_refused(
    width: int, height: int
) -> None:
    import base64

    from consentry.fingerprint.image import GRID_RECORD

    record = np.array([width, height, 0], "<u2").tobytes() + bytes(GRID_RECORD - 6)
    with pytest.raises(ValueError, match=r"working copy \(1 to 256\)"):
        decode_grid(base64.b64encode(record).decode("ascii"))
    with pytest.raises(ValueError, match="holds"):
        decode_grid(base64.b64encode(record[:-1]).decode("ascii"))
