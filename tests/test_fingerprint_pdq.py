"""PDQ: conformance with ThreatExchange's reference vectors, robustness, dihedral variants.

The vectors live outside the repository (``../shared/vectors/pdq``, or ``$CONSENTRY_VECTORS``);
see their README. Conformance follows ThreatExchange's rule for ports: distance <= 10 from the
reference hash whenever the port's quality is >= 80.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from consentry.errors import InvalidInputError
from consentry.fingerprint.image import DRAFT_FRACTION
from consentry.fingerprint.imageload import load_image, load_scaled
from consentry.fingerprint.pdq import (
    DIHEDRAL_ORDER,
    DIHEDRAL_TRANSPOSE,
    PDQ_HASH_BYTES,
    PDQ_WORKING_SIZE,
    PdqResult,
    hamming,
    hash_from_hex,
    hash_to_hex,
    pdq_dihedral_from_downsample,
    pdq_downsample,
    pdq_hash,
    pdq_hash_dihedral,
    pdq_hash_from_downsample,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("CONSENTRY_VECTORS", REPO_ROOT / ".." / "shared" / "vectors"))
PDQ_VECTORS = VECTORS / "pdq"
MISSING = "missing-vectors"

CONFORMANCE_DISTANCE = 10
CONFORMANCE_QUALITY = 80
# ThreatExchange's recommended match threshold; unrelated photos sit near 128.
MATCH_DISTANCE = 31

DIH_FILES = (
    "reg-test-input__dih__bridge-1-original.jpg",
    "reg-test-input__dih__bridge-2-rotate-90.jpg",
    "reg-test-input__dih__bridge-3-rotate-180.jpg",
    "reg-test-input__dih__bridge-4-rotate-270.jpg",
    "reg-test-input__dih__bridge-5-flipx.jpg",
    "reg-test-input__dih__bridge-6-flipy.jpg",
    "reg-test-input__dih__bridge-7-flip-plus-1.jpg",
    "reg-test-input__dih__bridge-8-flip-minus-1.jpg",
)
BRIDGE_EDITS = (
    "blur-a-little",
    "blur-a-lot",
    "high-contrast",
    "high-saturation",
    "sharpen-a-little",
    "sharpen-a-lot",
    "shrink-a-little",
    "shrink-a-lot",
    "square-128x128",
    "square-256x256",
    "square-512x512",
)
# Measured 0..16 bits (sharpen-a-lot is the largest); 20 leaves room for decoder differences
# and stays well inside the match threshold.
EDIT_DISTANCE = 20
# PDQ's box windows of even width and its decimation points are not centred, so a mirrored
# image does not give an exactly mirrored downsample. The reference has the same gap (our
# hashes of these files equal its hashes): 0 bits for some variants, 16-18 for others.
DIHEDRAL_DISTANCE = 20


def _vectors_dir() -> Path:
    if not (PDQ_VECTORS / "expected.json").is_file():
        pytest.fail(
            f"PDQ test vectors not found at {PDQ_VECTORS}: check out ../shared/vectors next to "
            "the repository or set CONSENTRY_VECTORS to the vectors directory"
        )
    return PDQ_VECTORS


def _expected_vectors() -> list[Any]:
    """Parameters for the conformance test; one placeholder that fails if files are absent."""
    path = PDQ_VECTORS / "expected.json"
    if not path.is_file():
        return [pytest.param(MISSING, "", id=MISSING)]
    vectors = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    return [pytest.param(v["file"], v["pdq_hex"], id=Path(v["file"]).name) for v in vectors]


@cache
def _load(name: str) -> Image.Image:
    """Decode a vector image once per session (callers never modify it in place)."""
    data = (_vectors_dir() / "images" / name).read_bytes()
    return load_image(data, target_size=PDQ_WORKING_SIZE)


@cache
def _hash(name: str) -> PdqResult:
    return pdq_hash(_load(name))


def _smooth_noise(width: int, height: int, seed: int = 7) -> Image.Image:
    """A photo-like RGB test image: blurred colour noise, so PDQ quality is high."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    return image.filter(ImageFilter.GaussianBlur(2))


# -- conformance ----------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "expected_hex"), _expected_vectors())
def test_reference_vectors(file: str, expected_hex: str) -> None:
    _vectors_dir()
    assert file != MISSING
    result = _hash(Path(file).name)
    distance = hamming(result.hash, hash_from_hex(expected_hex))
    if result.quality >= CONFORMANCE_QUALITY:
        assert distance <= CONFORMANCE_DISTANCE, (file, result.hex, result.quality)


@pytest.mark.parametrize(("file", "expected_hex"), _expected_vectors())
def test_reference_vectors_from_reduced_grey_decode(file: str, expected_hex: str) -> None:
    """The fingerprinter's fast path (JPEG luminance at 1/2 ... 1/8 scale) still conforms."""
    data = (_vectors_dir() / "images" / Path(file).name).read_bytes()
    scaled = load_scaled(data, fit=PDQ_WORKING_SIZE, min_fraction=DRAFT_FRACTION, grey=True)
    result = pdq_hash(scaled.image, full_size=scaled.full_size)
    if result.quality >= CONFORMANCE_QUALITY:
        distance = hamming(result.hash, hash_from_hex(expected_hex))
        assert distance <= CONFORMANCE_DISTANCE, (file, result.hex, result.quality)


@pytest.mark.parametrize("size", [(1920, 1080), (4000, 3000), (1280, 720), (2048, 1536)])
def test_reduced_jpeg_decode_hashes_like_the_full_decode(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """A JPEG decoded at 1/2 ... 1/8 scale hashes within a few bits of its full decode."""
    _smooth_noise(*size, seed=11).save(tmp_path / "big.jpg", "JPEG", quality=90)
    data = (tmp_path / "big.jpg").read_bytes()
    scaled = load_scaled(data, fit=PDQ_WORKING_SIZE, min_fraction=DRAFT_FRACTION, grey=True)
    assert scaled.image.width < size[0]  # the decode really was reduced
    full = pdq_hash(load_image(data, target_size=PDQ_WORKING_SIZE))
    fast = pdq_hash(scaled.image, full_size=scaled.full_size)
    assert full.quality >= CONFORMANCE_QUALITY
    assert hamming(full.hash, fast.hash) <= 8
    assert abs(full.quality - fast.quality) <= 5


@pytest.mark.parametrize("size", [(1920, 1080), (300, 200)])
def test_hash_split_at_the_downsample_is_the_same_hash(size: tuple[int, int]) -> None:
    image = _smooth_noise(*size)
    down = pdq_downsample(image)
    assert down is not None
    assert down.shape == (64, 64)
    assert pdq_hash_from_downsample(down) == pdq_hash(image)
    assert pdq_dihedral_from_downsample(down) == pdq_hash_dihedral(image)
    assert pdq_downsample(image.resize((4, 4))) is None
    with pytest.raises(InvalidInputError, match="64 x 64"):
        pdq_hash_from_downsample(down[:32])


def test_reference_vectors_include_high_quality_images() -> None:
    """Guard against a conformance run that checks nothing (e.g. every quality below 80)."""
    base = _vectors_dir()
    vectors = json.loads((base / "expected.json").read_text(encoding="utf-8"))["vectors"]
    checked = [v for v in vectors if _hash(Path(v["file"]).name).quality >= CONFORMANCE_QUALITY]
    assert len(checked) >= 10


# -- robustness on real edits ---------------------------------------------------------------


@pytest.mark.parametrize("edit", BRIDGE_EDITS)
def test_edited_photo_stays_close(edit: str) -> None:
    original = _hash("bridge-mods__aaa-orig.jpg")
    edited = _hash(f"bridge-mods__{edit}.jpg")
    assert edited.quality >= CONFORMANCE_QUALITY
    assert hamming(original.hash, edited.hash) <= EDIT_DISTANCE


def test_unrelated_photos_are_far_apart() -> None:
    bridge = _hash("bridge-mods__aaa-orig.jpg")
    for other in ("reg-test-input__labelme-subset__q0122.jpg", "misc-images__c.png"):
        assert hamming(bridge.hash, _hash(other).hash) > 3 * MATCH_DISTANCE


# -- dihedral variants ----------------------------------------------------------------------


def test_dihedral_order_matches_transposes() -> None:
    assert len(DIHEDRAL_ORDER) == len(DIHEDRAL_TRANSPOSE) == 8
    assert DIHEDRAL_TRANSPOSE[0] is None
    assert len(set(DIHEDRAL_TRANSPOSE)) == 8


@pytest.mark.parametrize("index", range(8), ids=DIHEDRAL_ORDER)
def test_dihedral_variant_matches_reference_file(index: int) -> None:
    variants = pdq_hash_dihedral(_load(DIH_FILES[0]))
    transformed = _hash(DIH_FILES[index])
    distances = [hamming(transformed.hash, v.hash) for v in variants]
    assert distances[index] <= DIHEDRAL_DISTANCE
    # ...and it is by far the nearest of the eight.
    assert sorted(distances)[1] > 3 * MATCH_DISTANCE
    assert min(distances) == distances[index]


@pytest.mark.parametrize("index", range(8), ids=DIHEDRAL_ORDER)
def test_dihedral_variant_matches_pillow_transpose(index: int) -> None:
    original = _load(DIH_FILES[0])
    transpose = DIHEDRAL_TRANSPOSE[index]
    transformed = original if transpose is None else original.transpose(transpose)
    variant = pdq_hash_dihedral(original)[index]
    assert hamming(pdq_hash(transformed).hash, variant.hash) <= DIHEDRAL_DISTANCE


def test_dihedral_first_is_the_plain_hash_and_quality_is_shared() -> None:
    image = _smooth_noise(300, 200)
    plain = pdq_hash(image)
    variants = pdq_hash_dihedral(image)
    assert variants[0] == plain
    assert {v.quality for v in variants} == {plain.quality}
    assert len({v.hash for v in variants}) == 8


def test_square_image_transpose_variant_is_exact() -> None:
    # A square image whose side is a multiple of 64 with odd window sizes downsamples
    # symmetrically under transposition, so the transposed variant is exact.
    image = _smooth_noise(384, 384)
    index = DIHEDRAL_ORDER.index("flip-plus-1")
    transposed = image.transpose(Image.Transpose.TRANSPOSE)
    assert pdq_hash(transposed) == pdq_hash_dihedral(image)[index]


# -- pipeline properties --------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1920, 1080), (3000, 2000), (700, 300), (513, 2000)])
def test_large_image_hash_equals_hash_of_its_thumbnail(size: tuple[int, int]) -> None:
    """The folded resample matrices reproduce Pillow's thumbnail(512), as the reference uses."""
    image = _smooth_noise(*size)
    thumb = image.copy()
    thumb.thumbnail((PDQ_WORKING_SIZE, PDQ_WORKING_SIZE))
    assert max(thumb.size) == PDQ_WORKING_SIZE
    # Up to a couple of bits: the thumbnail is rounded to 8 bits per channel.
    assert hamming(pdq_hash(image).hash, pdq_hash(thumb).hash) <= 4


def test_hash_has_half_the_bits_set() -> None:
    result = pdq_hash(_smooth_noise(256, 256))
    assert len(result.hash) == PDQ_HASH_BYTES
    assert hamming(result.hash, bytes(PDQ_HASH_BYTES)) == 128
    assert result.quality == 100


def test_grey_and_rgb_inputs_agree() -> None:
    grey = _smooth_noise(200, 150).convert("L")
    assert pdq_hash(grey) == pdq_hash(grey.convert("RGB"))


def test_other_modes_are_converted_like_the_reference() -> None:
    rgb = _smooth_noise(200, 150)
    rgba = rgb.copy()
    rgba.putalpha(0)  # the reference drops alpha; load_image is where it is composited
    assert pdq_hash(rgba) == pdq_hash(rgb)
    assert pdq_hash(rgb.convert("P")).quality > 0


def test_flat_image_has_zero_quality() -> None:
    assert pdq_hash(Image.new("RGB", (300, 200), (90, 120, 30))).quality == 0


@pytest.mark.parametrize("size", [(4, 100), (100, 4), (1, 1)])
def test_images_below_five_pixels_get_the_empty_hash(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, (255, 0, 0))
    assert pdq_hash(image) == PdqResult(bytes(PDQ_HASH_BYTES), 0)
    assert pdq_hash_dihedral(image) == [PdqResult(bytes(PDQ_HASH_BYTES), 0)] * 8


@pytest.mark.parametrize("size", [(5, 5), (64, 64), (65, 7), (512, 512)])
def test_small_and_exact_sizes_hash(size: tuple[int, int]) -> None:
    result = pdq_hash(_smooth_noise(*size))
    assert len(result.hash) == PDQ_HASH_BYTES
    assert 0 <= result.quality <= 100


def test_hash_is_deterministic() -> None:
    image = _smooth_noise(640, 480)
    assert pdq_hash(image) == pdq_hash(image.copy())


# -- values and helpers ---------------------------------------------------------------------


def test_hex_round_trip_and_reference_text_form() -> None:
    text = "d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22"
    value = hash_from_hex(text)
    assert len(value) == PDQ_HASH_BYTES
    assert hash_to_hex(value) == text
    assert hash_from_hex(f"  {text.upper()}\n") == value
    assert PdqResult(value, 100).hex == text


@pytest.mark.parametrize("text", ["", "00", "zz" * 32, "0" * 63, "0" * 66])
def test_hash_from_hex_rejects_malformed_text(text: str) -> None:
    with pytest.raises(InvalidInputError, match="PDQ hash"):
        hash_from_hex(text)


def test_hash_to_hex_rejects_wrong_length() -> None:
    with pytest.raises(InvalidInputError, match="32 bytes"):
        hash_to_hex(b"\x00" * 31)


def test_hamming_counts_bits_and_rejects_mismatched_lengths() -> None:
    zero = bytes(32)
    assert hamming(zero, zero) == 0
    assert hamming(zero, b"\xff" * 32) == 256
    assert hamming(zero, b"\x01" + bytes(30) + b"\x80") == 2
    with pytest.raises(InvalidInputError, match="different lengths"):
        hamming(zero, bytes(31))


@pytest.mark.parametrize(("value", "quality"), [(bytes(31), 50), (bytes(32), -1), (bytes(32), 101)])
def test_result_validates_its_fields(value: bytes, quality: int) -> None:
    with pytest.raises(InvalidInputError):
        PdqResult(value, quality)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
@settings(max_examples=50)
def test_hamming_is_a_metric_on_hex_round_trips(a: bytes, b: bytes) -> None:
    assert hash_from_hex(hash_to_hex(a)) == a
    assert hamming(a, b) == hamming(b, a)
    assert (hamming(a, b) == 0) == (a == b)
    assert hamming(a, b) <= hamming(a, bytes(32)) + hamming(bytes(32), b)


def test_very_long_image_hashes_with_small_matrices() -> None:
    # 200,000 x 6 pixels shrinks to 512 x 1 (quality aside): the pre-shrink runs on the
    # pixels, so no matrix as long as the image is ever built.
    ramp = np.tile(np.arange(200_000, dtype=np.uint32) % 251, (6, 1)).astype(np.uint8)
    result = pdq_hash(Image.fromarray(ramp))
    assert len(result.hash) == PDQ_HASH_BYTES
