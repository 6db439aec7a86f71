"""The image fingerprinter: what it emits, determinism, robustness, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from consentry.errors import UnreadableInputError
from consentry.fingerprint import default_fingerprinters
from consentry.fingerprint.image import (
    KIND_GRID,
    KIND_LOCAL,
    KIND_PDQ,
    KIND_REGION,
    LOCAL_FEATURES,
    MIN_MARGIN,
    ROTATIONS,
    ImageFingerprinter,
    bit_margin,
    decode_local_features,
    trim_box,
)
from consentry.fingerprint.pdq import hamming
from test_match_cli import jpeg, picture, png_bomb


def prints(data: bytes) -> dict[tuple[str, str], str]:
    return {(f.kind, f.region): f.value for f in ImageFingerprinter().fingerprint(data, "image")}


def test_is_a_default_fingerprinter_for_images_only() -> None:
    fp = ImageFingerprinter()
    assert any(isinstance(f, ImageFingerprinter) for f in default_fingerprinters())
    assert fp.applies_to("image")
    assert not fp.applies_to("text")


def test_emits_pdq_with_dihedral_variants_region_hashes_and_local_features() -> None:
    out = prints(jpeg(picture(1)))
    assert (KIND_PDQ, "full") in out
    # 8 dihedral variants and 4 small rotations.
    assert sum(1 for kind, _ in out if kind == KIND_PDQ) == 8 + len(ROTATIONS)
    assert {(KIND_REGION, "all"), (KIND_REGION, "all~flip")} <= set(out)
    turned = {f"rotate{angle:+g}" for angle in ROTATIONS}
    assert {(KIND_PDQ, f"full~{t}") for t in turned} <= set(out)
    assert {(KIND_REGION, f"all~{t}") for t in turned} <= set(out)
    assert all(len(v) == 64 for (kind, _), v in out.items() if kind not in (KIND_LOCAL, KIND_GRID))
    xy, descriptors = decode_local_features(out[(KIND_LOCAL, "all")])
    assert 20 <= len(descriptors) <= LOCAL_FEATURES
    assert xy.shape == (len(descriptors), 2)
    assert descriptors.shape[1] == 32


def test_deterministic() -> None:
    data = jpeg(picture(2))
    assert prints(data) == prints(data)


def test_reencoded_copy_keeps_hashes_close_and_flip_matches_mirror_variant() -> None:
    original = picture(3)
    base = prints(jpeg(original, 95))
    copy = prints(jpeg(original.resize((240, 180)), 40))
    distance = hamming(bytes.fromhex(base[KIND_PDQ, "full"]), bytes.fromhex(copy[KIND_PDQ, "full"]))
    assert distance <= 20
    mirrored = prints(jpeg(ImageOps.mirror(original), 90))
    flip = bytes.fromhex(mirrored[KIND_REGION, "all~flip"])
    assert hamming(flip, bytes.fromhex(base[KIND_REGION, "all"])) <= 20


def test_letterbox_is_trimmed() -> None:
    original = picture(4)
    w, h = original.size
    canvas = Image.new("RGB", (w, h * 3 // 2), (0, 0, 0))
    canvas.paste(original, (0, h // 4))
    base = prints(jpeg(original))
    padded = prints(jpeg(canvas))
    assert (KIND_REGION, "trim") not in base
    trimmed = bytes.fromhex(padded[KIND_REGION, "trim"])
    assert hamming(trimmed, bytes.fromhex(base[KIND_REGION, "all"])) <= 24


def test_trim_box_finds_uniform_borders_and_leaves_pictures_alone() -> None:
    grey = np.full((100, 200), 255.0, np.float32)
    rng = np.random.default_rng(0)
    grey[20:80, 30:170] = rng.uniform(0, 255, (60, 140))
    left, top, right, bottom = trim_box(grey)
    assert 30 <= left <= 32
    assert 20 <= top <= 22
    assert 168 <= right <= 170
    assert 78 <= bottom <= 80
    noise = rng.uniform(0, 255, (100, 200)).astype(np.float32)
    assert trim_box(noise) == (0, 0, 200, 100)


def test_flat_picture_gives_no_perceptual_fingerprints() -> None:
    flat = Image.new("RGB", (300, 200), (90, 120, 200))
    assert prints(jpeg(flat)) == {}


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _tiled(seed: int) -> bytes:
    """A 256-px picture of one random 32-px patch repeated 8 x 8 times, like a game's tiled
    texture: every DCT coefficient but the tile's harmonics is zero."""
    patch = np.random.default_rng(seed).uniform(60, 200, (32, 32))
    return _png(np.tile(patch, (8, 8)))


def _whole_picture_codes(data: bytes) -> set[tuple[str, str]]:
    return {
        (f.kind, f.region)
        for f in ImageFingerprinter().fingerprint(data, "image")
        if f.kind in (KIND_PDQ, KIND_REGION)
    }


def test_bit_margin_is_the_median_distance_from_the_threshold() -> None:
    # 128 coefficients at -1 and 128 at +5: the threshold (lower median) is -1, half the
    # coefficients sit on it and half 6 away, so the median distance is (0 + 6) / 2.
    block = np.array([-1.0] * 128 + [5.0] * 128).reshape(16, 16)
    assert bit_margin(block) == pytest.approx(3.0)
    assert bit_margin(np.zeros((16, 16))) == 0.0
    spread = np.linspace(-100, 100, 256).reshape(16, 16)
    assert bit_margin(spread) == pytest.approx(50.0, abs=1.0)


@pytest.mark.parametrize(
    "pixels",
    [
        # Constant along one axis (stripes), a frame around a flat field,
        # a tiled patch: PDQ's quality rates some of them 100, yet most of their 256
        # coefficients are zero and their bits say nothing.
        pytest.param(
            np.tile(np.where((np.arange(300) // 37) % 2 == 0, 80, 200), (200, 1)), id="stripes"
        ),
        pytest.param(np.pad(np.full((160, 260), 200), 20, constant_values=40), id="frame"),
        pytest.param(
            np.tile(np.random.default_rng(2).uniform(60, 200, (32, 32)), (8, 8)), id="tiled"
        ),
    ],
)
def test_a_picture_whose_hash_bits_are_undecided_gets_no_whole_picture_code(
    pixels: np.ndarray,
) -> None:
    data = _png(pixels)
    assert _whole_picture_codes(data) == set()
    # Neither does a query of it: the same gate on both sides.
    query = ImageFingerprinter().query_fingerprint(data, "image")
    assert not [f for f in query if f.kind in (KIND_PDQ, KIND_REGION)]
    # It is still registered with what it has (keypoints, box record).
    assert {f.kind for f in ImageFingerprinter().fingerprint(data, "image")} >= {KIND_GRID}


def test_a_textured_picture_keeps_its_whole_picture_codes() -> None:
    assert {(KIND_PDQ, "full"), (KIND_REGION, "all")} <= _whole_picture_codes(jpeg(picture(5)))


def test_unrelated_tiled_pictures_whose_codes_agree_do_not_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two different random patches, each tiled 8 x 8: their PDQ hashes are 2 bits apart
    # (the zero coefficients all fall on one side of the median), which matched without
    # the margin gate, as normal maps and UI frames did in the impostor count.
    from consentry.fingerprint import image as image_module
    from consentry.index.hamming import HammingIndex

    a, b = _tiled(2), _tiled(12)

    def matched() -> list[str]:
        index = HammingIndex()
        index.add("A", ImageFingerprinter().fingerprint(a, "image"), 1)
        query = ImageFingerprinter().query_fingerprint(b, "image")
        return [m.work_id for m in index.match(query)]

    assert matched() == []
    monkeypatch.setattr(image_module, "MIN_MARGIN", 0.0)
    assert matched() == ["A"]
    assert MIN_MARGIN > 0.0


def _framed(side: int, border: int, inside: int, frame: int, scale: float = 1.0) -> bytes:
    """A flat square of grey ``inside`` in a ``border``-px frame of grey ``frame``."""
    pixels = np.full((side, side), frame, np.uint8)
    pixels[border:-border, border:-border] = inside
    framed = Image.fromarray(pixels)
    if scale != 1.0:
        framed = framed.resize((round(side * scale),) * 2, Image.Resampling.BICUBIC)
    return _png(np.asarray(framed))


def test_unrelated_framed_panels_do_not_match_on_their_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A grey panel in a 2-px light frame, registered; a black square in a 1-px white frame,
    # enlarged x 1.5 (resampling spreads the thin frame over enough coefficients for the
    # whole picture's margin to pass), queried. Their codes record only where the frames
    # are, so they agree on every bit: the impostor count's last flat false match (a
    # framed square against a framed normal map). The interior, without the outer 9 %,
    # is flat in both, and the interior gate leaves their codes out on both sides.
    from consentry.fingerprint import image as image_module
    from consentry.index.hamming import HammingIndex

    work, item = _framed(256, 2, 128, 240), _framed(128, 1, 0, 255, scale=1.5)

    def matched() -> list[str]:
        index = HammingIndex()
        index.add("PANEL", ImageFingerprinter().fingerprint(work, "image"), 1)
        query = ImageFingerprinter().query_fingerprint(item, "image")
        return [m.work_id for m in index.match(query)]

    assert _whole_picture_codes(work) == _whole_picture_codes(item) == set()
    assert matched() == []
    # With no inset the interior is the whole picture: what the margin gate alone let
    # through.
    monkeypatch.setattr(image_module, "INTERIOR_INSET", 0)
    assert (KIND_PDQ, "full") in _whole_picture_codes(item)
    assert prints(work)[(KIND_PDQ, "full")] == prints(item)[(KIND_PDQ, "full")]
    assert matched() == ["PANEL"]


@pytest.mark.parametrize(
    ("size", "recognised"),
    [
        ((2000, 60), True),
        ((60, 2000), True),
        ((2000, 20), False),
        ((3000, 10), False),
        ((1000, 4), False),
    ],
)
def test_a_very_thin_picture_registers_and_is_indexed(
    size: tuple[int, int], recognised: bool
) -> None:
    # Its working copy is a few pixels high: its box record holds no box, and ORB (whose
    # pyramid failed an OpenCV assertion on such a picture) finds no keypoint. At 100:1 and
    # thinner, PDQ's 64 x 64 downsample is constant along the short side, so at most 16 of
    # its hash's bits are decided and the hash is left out (MIN_MARGIN): registered, never
    # recognised. At 33:1 the PDQ hash still identifies it.
    from consentry.fingerprint.image import KIND_GRID, decode_grid
    from consentry.index.hamming import HammingIndex

    noise = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    found = ImageFingerprinter().fingerprint(buf.getvalue(), "image")
    (grid,) = [f for f in found if f.kind == KIND_GRID]
    assert np.frombuffer(decode_grid(grid.value)[4:6], "<u2")[0] == 0
    index = HammingIndex()
    index.add("THIN", found, 1)  # reads every deferred value
    matched = index.match(ImageFingerprinter().query_fingerprint(buf.getvalue(), "image"))
    assert [m.work_id for m in matched] == (["THIN"] if recognised else [])


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_pillow_mode_is_fingerprinted(mode: str) -> None:
    image = picture(5).convert(mode) if mode != "I;16" else picture(5).convert("L")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image, np.uint16) * 257).astype(np.uint16))
    buf = io.BytesIO()
    image.save(buf, "TIFF")
    assert (KIND_PDQ, "full") in prints(buf.getvalue())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40, "HEIC"),
        (png_bomb(50_000, 50_000), "decompression bomb"),
        (jpeg(picture(6))[:500], "(?i)truncated"),
        (jpeg(picture(6))[:5000], "(?i)truncated"),
        (b"not an image at all" * 5, "unknown"),
    ],
)
def test_bad_input_raises_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(UnreadableInputError, match=message):
        ImageFingerprinter().fingerprint(data, "image")


@pytest.mark.parametrize("angle", [3.0, -3.0, 2.0])
def test_rotation_variant_undoes_a_small_rotation(angle: float) -> None:
    """A copy turned by a few degrees: its matching ``rotate`` variant is near the work's hash."""
    work = picture(6, (640, 360))
    original = prints(jpeg(work))
    turned = prints(jpeg(work.rotate(angle, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))))
    for kind, plain, variant in (
        (KIND_PDQ, "full", f"full~rotate{angle:+g}"),
        (KIND_REGION, "all", f"all~rotate{angle:+g}"),
    ):
        before = hamming(bytes.fromhex(original[kind, plain]), bytes.fromhex(turned[kind, plain]))
        after = hamming(bytes.fromhex(original[kind, plain]), bytes.fromhex(turned[kind, variant]))
        assert after <= 30 < before, (kind, before, after)
        assert after < before - 10
