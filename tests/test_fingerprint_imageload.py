"""Safe image decoding: every Pillow mode to RGB, EXIF orientation, animations, JPEG draft,
and one clear UnreadableInputError for empty, unknown, oversized, truncated or corrupt input.

Fixtures are made here with Pillow (small files in ``tmp_path``); the decompression bomb is
a hand-built PNG header declaring a huge picture, a few dozen bytes long.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, features

from consentry.errors import InvalidInputError, UnreadableInputError
from consentry.fingerprint.imageload import DEFAULT_MAX_PIXELS, load_image, load_scaled

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
# JPEG and lossy conversions move colours a little.
LOSSY = 12


def _save(tmp_path: Path, image: Image.Image, fmt: str, **options: Any) -> bytes:
    path = tmp_path / f"fixture.{fmt.lower()}"
    image.save(path, fmt, **options)
    return path.read_bytes()


def _close(actual: object, expected: tuple[int, int, int], tolerance: int = 1) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(int(a) - b) <= tolerance for a, b in zip(actual, expected, strict=True))


def _unreadable(data: bytes, **options: Any) -> str:
    with pytest.raises(UnreadableInputError) as info:
        load_image(data, **options)
    message = str(info.value)
    assert message.startswith("cannot read image: ")
    assert "\n" not in message
    return message


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` 1-bit pixels but carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _noise(width: int, height: int, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


# -- every mode to RGB ----------------------------------------------------------------------


def _palette(transparent: bool) -> Image.Image:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([*RED, *BLUE])
    if transparent:
        image.info["transparency"] = 0
    return image


def _pa() -> Image.Image:
    image = Image.new("PA", (8, 8), (1, 0))
    image.putpalette([*RED, *BLUE])
    return image


def _uint16_gradient() -> Image.Image:
    row = np.linspace(0, 65535, 64).round().astype(np.uint16)
    values = np.tile(row, (8, 1))
    return Image.fromarray(values)


MODE_CASES: list[tuple[str, Callable[[], Image.Image], str, tuple[int, int, int], int]] = [
    ("1", lambda: Image.new("1", (8, 8), 1), "PNG", WHITE, 0),
    ("L", lambda: Image.new("L", (8, 8), 100), "PNG", (100, 100, 100), 0),
    ("P", lambda: _palette(transparent=False), "PNG", RED, 0),
    ("P-transparent", lambda: _palette(transparent=True), "PNG", WHITE, 0),
    ("PA", _pa, "TIFF", WHITE, 0),
    ("LA", lambda: Image.new("LA", (8, 8), (50, 255)), "PNG", (50, 50, 50), 0),
    ("LA-transparent", lambda: Image.new("LA", (8, 8), (50, 0)), "PNG", WHITE, 0),
    ("RGBA-half", lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 128)), "PNG", (255, 127, 127), 1),
    ("RGBA-webp", lambda: Image.new("RGBA", (8, 8), (0, 0, 255, 0)), "WEBP", WHITE, 0),
    ("CMYK-jpeg", lambda: Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", RED, LOSSY),
    ("CMYK-tiff", lambda: Image.new("CMYK", (8, 8), (255, 0, 255, 0)), "TIFF", GREEN, 0),
    ("I;16", _uint16_gradient, "PNG", (0, 0, 0), 0),
    ("I", lambda: Image.fromarray(np.full((8, 8), 65535, np.int32)), "TIFF", WHITE, 0),
    ("YCbCr", lambda: Image.new("YCbCr", (8, 8), (76, 85, 255)), "TIFF", RED, 2),
    ("LAB", lambda: Image.new("LAB", (8, 8), (128, 128, 128)), "TIFF", (119, 119, 119), 1),
]


@pytest.mark.parametrize(
    ("make", "fmt", "expected", "tolerance"),
    [pytest.param(*case[1:], id=case[0]) for case in MODE_CASES],
)
def test_every_mode_becomes_rgb(
    tmp_path: Path,
    make: Callable[[], Image.Image],
    fmt: str,
    expected: tuple[int, int, int],
    tolerance: int,
) -> None:
    source = make()
    image = load_image(_save(tmp_path, source, fmt))
    assert image.mode == "RGB"
    assert image.size == source.size
    assert _close(image.getpixel((0, 0)), expected, tolerance)


def test_rgb_colour_key_transparency_is_white(tmp_path: Path) -> None:
    source = Image.new("RGB", (8, 8), BLUE)
    source.putpixel((0, 0), RED)
    image = load_image(_save(tmp_path, source, "PNG", transparency=RED))
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((1, 1)) == BLUE


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    image = load_image(_save(tmp_path, _uint16_gradient(), "PNG"))
    grey = np.asarray(image)[0, :, 0]
    # Pillow's own I;16 -> RGB clips at 255 and would make almost every pixel white.
    assert grey[0] == 0
    assert grey[-1] == 255
    assert 120 <= grey[32] <= 135
    assert np.all(np.diff(grey.astype(int)) >= 0)


def test_float_image_is_stretched_to_full_range(tmp_path: Path) -> None:
    values = np.linspace(-2.0, 3.0, 50, dtype=np.float32).reshape(5, 10)
    image = load_image(_save(tmp_path, Image.fromarray(values), "TIFF"))
    grey = np.asarray(image)[..., 0]
    assert grey.min() == 0
    assert grey.max() == 255


# -- orientation, animation, formats --------------------------------------------------------


def _left_red_right_blue() -> Image.Image:
    image = Image.new("RGB", (48, 24), BLUE)
    image.paste(RED, (0, 0, 24, 24))
    return image


@pytest.mark.parametrize(
    ("orientation", "size", "red_at", "blue_at"),
    [
        (1, (48, 24), (4, 12), (44, 12)),
        (3, (48, 24), (44, 12), (4, 12)),  # half turn: red ends on the right
        (6, (24, 48), (12, 4), (12, 44)),  # shown turned clockwise: left side on top
        (8, (24, 48), (12, 44), (12, 4)),  # shown turned counter-clockwise: left at bottom
    ],
)
def test_exif_orientation_is_applied(
    tmp_path: Path,
    orientation: int,
    size: tuple[int, int],
    red_at: tuple[int, int],
    blue_at: tuple[int, int],
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    data = _save(tmp_path, _left_red_right_blue(), "JPEG", exif=exif.tobytes(), quality=95)
    image = load_image(data)
    assert image.size == size
    assert _close(image.getpixel(red_at), RED, LOSSY)
    assert _close(image.getpixel(blue_at), BLUE, LOSSY)


ANIMATED = [("GIF", {}), ("PNG", {}), ("WEBP", {"lossless": True})]


@pytest.mark.parametrize(("fmt", "options"), ANIMATED, ids=[a[0] for a in ANIMATED])
def test_animation_gives_its_first_frame(tmp_path: Path, fmt: str, options: dict[str, Any]) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    data = _save(
        tmp_path, frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options
    )
    with Image.open(tmp_path / f"fixture.{fmt.lower()}") as written:
        assert getattr(written, "n_frames", 1) == 3
    image = load_image(data)
    assert image.mode == "RGB"
    assert image.getpixel((8, 8)) == RED


FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "PPM"]
if features.check("avif"):
    FORMATS.append("AVIF")


@pytest.mark.parametrize("fmt", FORMATS)
def test_supported_formats_decode(tmp_path: Path, fmt: str) -> None:
    image = load_image(_save(tmp_path, Image.new("RGB", (20, 10), GREEN), fmt))
    assert image.mode == "RGB"
    assert image.size == (20, 10)
    assert _close(image.getpixel((10, 5)), GREEN, LOSSY)


def test_formats_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    # Pillow reads TGA, but its header has no magic number, so random bytes can pass for
    # one; we do not try it.
    message = _unreadable(_save(tmp_path, Image.new("RGB", (8, 8), RED), "TGA"))
    assert "unknown or unsupported format" in message


# -- JPEG draft -----------------------------------------------------------------------------


def test_jpeg_draft_decodes_at_reduced_scale(tmp_path: Path) -> None:
    data = _save(tmp_path, _noise(1200, 800), "JPEG")
    assert load_image(data).size == (1200, 800)
    # Both sides must stay at least 2 x 128: 1/2 scale (1/4 would make the height 200).
    assert load_image(data, target_size=128).size == (600, 400)
    assert load_image(data, target_size=64).size == (300, 200)
    assert load_image(data, target_size=600).size == (1200, 800)


def test_draft_and_orientation_combine(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    big = _left_red_right_blue().resize((960, 480))
    image = load_image(_save(tmp_path, big, "JPEG", exif=exif.tobytes()), target_size=60)
    assert image.size == (120, 240)
    assert _close(image.getpixel((60, 10)), RED, LOSSY)


def test_draft_is_ignored_for_other_formats(tmp_path: Path) -> None:
    data = _save(tmp_path, _noise(400, 300), "PNG")
    assert load_image(data, target_size=16).size == (400, 300)


# -- reduced-scale decoding for hashing -------------------------------------------------------


def test_scaled_jpeg_is_decoded_grey_at_the_smallest_scale_allowed(tmp_path: Path) -> None:
    data = _save(tmp_path, _noise(1920, 1080), "JPEG", quality=90)
    # Fit 512: the shrunk picture is 512 x 288; 3/4 of it is 384 x 216, which 1/4 scale
    # (480 x 270) keeps and 1/8 (240 x 135) would not.
    scaled = load_scaled(data, fit=512, min_fraction=0.75, grey=True)
    assert scaled.image.mode == "L"
    assert scaled.image.size == (480, 270)
    assert scaled.full_size == (1920, 1080)
    assert load_scaled(data, fit=512, min_fraction=1.0).image.size == (960, 540)
    colour = load_scaled(data, fit=512, min_fraction=0.75)
    assert colour.image.mode == "RGB"
    assert colour.image.size == (480, 270)


def test_scaled_grey_is_the_luminance_of_the_colour_decode(tmp_path: Path) -> None:
    picture = _noise(64, 48).resize((1024, 768), Image.Resampling.BICUBIC)
    data = _save(tmp_path, picture, "JPEG", quality=95)
    grey = np.asarray(load_scaled(data, fit=256, min_fraction=1.0, grey=True).image, np.float64)
    rgb = load_scaled(data, fit=256, min_fraction=1.0).image
    assert rgb.size == (256, 192)
    luma = np.asarray(rgb.convert("L"), np.float64)
    # JPEG's own Y plane vs Y recomputed from the decoded (chroma-upsampled, rounded) RGB.
    assert float(np.abs(grey - luma).mean()) < 1.5


def test_scaled_full_size_turns_with_the_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    big = _left_red_right_blue().resize((1600, 800))
    data = _save(tmp_path, big, "JPEG", exif=exif.tobytes())
    scaled = load_scaled(data, fit=100, min_fraction=1.0, grey=True)
    assert scaled.full_size == (800, 1600)
    assert scaled.image.size == (100, 200)


def test_scaled_other_formats_are_decoded_whole_and_made_grey(tmp_path: Path) -> None:
    data = _save(tmp_path, _noise(400, 300), "PNG")
    scaled = load_scaled(data, fit=16, min_fraction=0.5, grey=True)
    assert scaled.image.mode == "L"
    assert scaled.image.size == scaled.full_size == (400, 300)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_scaled_pictures_within_fit_stay_rgb(tmp_path: Path, fmt: str) -> None:
    # PDQ hashes pictures it does not shrink on exact float luminance, not 8-bit grey.
    data = _save(tmp_path, _noise(400, 300), fmt)
    scaled = load_scaled(data, fit=400, min_fraction=0.75, grey=True)
    assert scaled.image.mode == "RGB"
    assert scaled.image.size == scaled.full_size == (400, 300)


def test_scaled_grey_png_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("L", (20, 10), 0)
    data = _save(tmp_path, image, "PNG", transparency=0)
    scaled = load_scaled(data, fit=10, min_fraction=1.0, grey=True)
    assert scaled.image.mode == "L"
    assert scaled.image.getpixel((5, 5)) == 255


@pytest.mark.parametrize(
    "options",
    [
        {"fit": 0, "min_fraction": 0.5},
        {"fit": 8, "min_fraction": 0.0},
        {"fit": 8, "min_fraction": 1.5},
    ],
)
def test_scaled_bad_arguments(tmp_path: Path, options: dict[str, Any]) -> None:
    data = _save(tmp_path, _noise(8, 8), "PNG")
    with pytest.raises(InvalidInputError):
        load_scaled(data, **options)


def test_scaled_refuses_like_load_image() -> None:
    with pytest.raises(UnreadableInputError, match="empty"):
        load_scaled(b"", fit=8, min_fraction=0.5, grey=True)


# -- refusals -------------------------------------------------------------------------------


def test_empty_input() -> None:
    assert "empty" in _unreadable(b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path: Path, fmt: str) -> None:
    data = _save(tmp_path, _noise(64, 64), fmt)
    message = _unreadable(data[: len(data) // 2])
    assert f"truncated or corrupt {fmt} data" in message


def test_png_cut_inside_its_header(tmp_path: Path) -> None:
    data = _save(tmp_path, _noise(16, 16), "PNG")
    _unreadable(data[:20])


def test_png_with_bad_checksum(tmp_path: Path) -> None:
    data = bytearray(_save(tmp_path, _noise(32, 32), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    assert "corrupt" in _unreadable(bytes(data))


def test_random_bytes() -> None:
    data = np.random.default_rng(5).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    message = _unreadable(data)
    assert "unknown or unsupported format" in message
    assert "4,096 bytes" in message


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIC"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "PostScript"),
    ],
    ids=["svg", "svg-xml-bom", "heic", "pdf", "eps"],
)
def test_known_unsupported_formats_are_named(data: bytes, named: str) -> None:
    message = _unreadable(data)
    assert named in message
    assert "not a supported image format" in message


def test_plain_text_is_unknown() -> None:
    assert "unknown or unsupported format" in _unreadable(b"hello, world\n" * 10)


# -- decompression bombs --------------------------------------------------------------------


def test_bomb_beyond_pillows_hard_limit() -> None:
    data = _png_header_only(50_000, 50_000)
    assert len(data) < 200
    message = _unreadable(data)
    assert "too large" in message


def test_bomb_in_pillows_warning_zone_is_refused_too() -> None:
    # 100 M pixels: above Pillow's limit (a warning) but below twice it (an error).
    assert DEFAULT_MAX_PIXELS < 10_000 * 10_000 < 2 * DEFAULT_MAX_PIXELS
    assert "too large" in _unreadable(_png_header_only(10_000, 10_000))


def test_our_limit_is_checked_before_decoding() -> None:
    # A valid header with a body that would fail to decode: the size check comes first.
    message = _unreadable(_png_header_only(3_000, 3_000), max_pixels=1_000_000)
    assert "3000 x 3000 = 9,000,000 pixels exceeds the limit of 1,000,000" in message


def test_max_pixels_is_inclusive(tmp_path: Path) -> None:
    data = _save(tmp_path, _noise(100, 50), "PNG")
    assert load_image(data, max_pixels=5_000).size == (100, 50)
    assert "exceeds the limit of 4,999" in _unreadable(data, max_pixels=4_999)


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"max_pixels": 0}, {"target_size": 0}])
def test_bad_arguments(tmp_path: Path, options: dict[str, int]) -> None:
    data = _save(tmp_path, _noise(8, 8), "PNG")
    with pytest.raises(InvalidInputError) as info:
        load_image(data, **options)
    assert type(info.value) is InvalidInputError
