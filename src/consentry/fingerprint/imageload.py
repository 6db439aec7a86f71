"""Decode untrusted image bytes into one RGB picture, safely and the same way everywhere.

Every image fingerprinter starts here, for works being registered and for items passing the
gate, so both sides see the same pixels. Images come from strangers, so decoding:

1. refuses empty input and names formats we do not read (SVG, HEIC/HEIF, PDF, PostScript);
2. lets Pillow identify only a short list of common raster formats
   (:data:`SUPPORTED_FORMATS`): fewer parsers, less attack surface, and no format that would
   run an external program (Pillow's EPS reader calls Ghostscript);
3. checks the declared size before any pixel is decoded, so a decompression bomb (a small
   file declaring billions of pixels) is refused cheaply; Pillow's own bomb check
   (``Image.MAX_IMAGE_PIXELS``) is turned from a warning into the same refusal;
4. for JPEG, asks libjpeg to decode at 1/2, 1/4 or 1/8 scale when the caller only needs a
   small picture (``target_size``), as Pillow's ``thumbnail`` does; :func:`load_scaled`
   goes further for hashing (a smaller scale, and the luminance plane alone, see there);
5. decodes, applies the EXIF orientation, takes the first frame of animations, and converts
   every Pillow mode to RGB: transparency is composited on white, palettes expanded, 16-bit
   and float images scaled to 8 bits, the rare CIELAB image converted with LittleCMS.
   Embedded ICC profiles are not applied (CMYK uses Pillow's plain formula): perceptual
   hashes such as PDQ barely notice such colour shifts, and decoding stays independent of
   colour-management libraries for everything else.

Any failure raises :class:`~consentry.errors.UnreadableInputError` with one line saying what
is wrong (empty, unknown format, too large, truncated or corrupt), so the gate can deny the
item with that reason. Pillow's warnings are errors while decoding, whatever the process's
warning filters: a file Pillow is unsure about (corrupt EXIF, short read) is refused
consistently rather than only in test runs. ``warnings.catch_warnings`` is process-global,
so decode from several processes rather than several threads (the gate already does).

Sources: Pillow's handbook on file formats, decompression bombs and ``Image.draft``
(https://pillow.readthedocs.io); the EXIF 2.32 Orientation tag (CIPA DC-008-2019).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from consentry.errors import InvalidInputError, UnreadableInputError

__all__ = ["DEFAULT_MAX_PIXELS", "SUPPORTED_FORMATS", "ScaledImage", "load_image", "load_scaled"]

#: Pillow's default decompression-bomb limit (about 89.5 million pixels, a 9,460-pixel square).
DEFAULT_MAX_PIXELS: Final = 89_478_485

#: Pillow format names tried, in order. AVIF is used only when Pillow was built with it.
SUPPORTED_FORMATS: Final[tuple[str, ...]] = (
    "JPEG",
    "PNG",
    "WEBP",
    "GIF",
    "TIFF",
    "BMP",
    "AVIF",
    "PPM",
)

_WHITE: Final = (255, 255, 255)
# 16-bit samples map onto 8 bits by 65535 / 255 = 257 (so 0 -> 0 and 65535 -> 255 exactly).
_SIXTEEN_TO_EIGHT_BITS: Final = 257.0
# ISO base media ("ftyp") brands of HEIF and its HEVC flavour (HEIC), which Pillow cannot read.
_HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})


def load_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
) -> Image.Image:
    """Decode ``data`` into an ``RGB`` image, refusing anything unsafe or unreadable.

    ``max_pixels`` bounds width x height as declared by the file; Pillow's global limit
    (``PIL.Image.MAX_IMAGE_PIXELS``, the same number by default) applies as well.

    ``target_size`` says the caller will shrink the picture to fit ``target_size`` pixels
    square (e.g. :data:`consentry.fingerprint.pdq.PDQ_WORKING_SIZE`). JPEGs are then decoded
    at the smallest DCT scale (1/2, 1/4 or 1/8) that keeps both sides at least twice that
    size, which is Pillow's ``thumbnail`` rule and several times faster for large photos.
    The result may be larger than ``target_size``: this function never resamples.

    Raises :class:`~consentry.errors.UnreadableInputError` if the bytes are empty, not a
    supported image, too large, truncated or corrupt, and
    :class:`~consentry.errors.InvalidInputError` for a non-positive limit or target.
    """
    if max_pixels < 1:
        msg = f"max_pixels must be at least 1, got {max_pixels}"
        raise InvalidInputError(msg)
    if target_size is not None and target_size < 1:
        msg = f"target_size must be at least 1 pixel, got {target_size}"
        raise InvalidInputError(msg)

    def request(width: int, height: int) -> tuple[int, int] | None:
        # Pillow's thumbnail rule: both sides at least twice the target.
        return None if target_size is None else (2 * target_size, 2 * target_size)

    return _decode(data, max_pixels, request, grey_above=None)[0]


@dataclass(frozen=True, slots=True)
class ScaledImage:
    """A picture decoded for hashing, possibly at a reduced JPEG scale.

    ``full_size`` is the size (width, height) the picture has at full scale, after the EXIF
    orientation; ``image`` may be smaller by a power of two on both sides.
    """

    image: Image.Image
    full_size: tuple[int, int]


def load_scaled(
    data: bytes,
    *,
    fit: int,
    min_fraction: float,
    grey: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ScaledImage:
    """Decode ``data`` for a caller that shrinks the picture to fit ``fit`` pixels square.

    Like :func:`load_image` (same checks, same errors), but JPEGs are decoded at the
    smallest DCT scale (1/2, 1/4 or 1/8) that keeps both sides at least ``min_fraction``
    of the shrunk picture's (instead of twice it), and with ``grey=True`` pictures larger
    than ``fit`` come back as ``L``: libjpeg decodes the luminance plane alone, skipping
    chroma upsampling and colour conversion (JPEG's Y is ``0.299 R + 0.587 G + 0.114 B``,
    the weights of Pillow's ``convert("L")`` and of PDQ); other formats are converted.
    Pictures within ``fit`` stay ``RGB``: they are not shrunk, and PDQ takes their exact
    floating-point luminance (8-bit Y moves a conformance vector's hash by 8 bits).
    A 1080p JPEG is decoded as 480 x 270 grey pixels in about 55 % of the time of a full
    decode (the entropy decoding, which no scale skips, is most of what remains).
    The caller resamples from ``image`` as if from the full-size picture (``full_size``).
    Non-JPEG images are decoded whole.
    """
    if fit < 1:
        msg = f"fit must be at least 1 pixel, got {fit}"
        raise InvalidInputError(msg)
    if not 0.0 < min_fraction <= 1.0:
        msg = f"min_fraction must be in (0, 1], got {min_fraction}"
        raise InvalidInputError(msg)

    def request(width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, fit / max(width, height))
        return (
            max(1, math.ceil(width * scale * min_fraction)),
            max(1, math.ceil(height * scale * min_fraction)),
        )

    image, full_size = _decode(data, max_pixels, request, grey_above=fit if grey else None)
    if grey and image.mode != "L" and max(full_size) > fit:
        image = image.convert("L")
    return ScaledImage(image, full_size)


def _decode(
    data: bytes,
    max_pixels: int,
    request: Callable[[int, int], tuple[int, int] | None],
    *,
    grey_above: int | None,
) -> tuple[Image.Image, tuple[int, int]]:
    """The checked decode shared by :func:`load_image` and :func:`load_scaled`.

    ``request(width, height)`` gives the smallest size a JPEG may be decoded at (Pillow's
    ``draft``), or None for full scale; returns the image (RGB, or L for a JPEG with a
    luminance plane larger than ``grey_above`` on a side) and its full-scale size after
    orientation.
    """
    # 1. Empty input and formats we recognise but do not read.
    if not data:
        msg = "cannot read image: the input is empty (0 bytes)"
        raise UnreadableInputError(msg)
    unsupported = _describe_unsupported(data)
    if unsupported is not None:
        msg = f"cannot read image: {unsupported} is not a supported image format"
        raise UnreadableInputError(msg)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 2. Identify (reads headers only).
        image = _open(data)
        fmt = image.format or "image"
        try:
            # 3. Refuse oversized images before decoding a single pixel.
            width, height = image.size
            if width < 1 or height < 1:
                msg = f"cannot read image: the {fmt} file declares {width} x {height} pixels"
                raise UnreadableInputError(msg)
            if width * height > max_pixels:
                msg = (
                    f"cannot read image: {fmt} of {width} x {height} = {width * height:,} pixels "
                    f"exceeds the limit of {max_pixels:,} pixels (possible decompression bomb)"
                )
                raise UnreadableInputError(msg)
            # 4. Decode large JPEGs at reduced scale when only a small picture is needed.
            wanted = request(width, height)
            grey = grey_above is not None and max(width, height) > grey_above
            if wanted is not None and fmt in ("JPEG", "MPO"):
                image.draft("L" if grey else None, wanted)
            # 5. Decode (the first frame of an animation is the current one after opening),
            # orient, and normalise the mode.
            image.load()
            decoded = image.size
            ImageOps.exif_transpose(image, in_place=True)
            if image.size != decoded:  # a quarter turn: the full size turns with it
                width, height = height, width
            if grey and image.mode == "L" and "transparency" not in image.info:
                return image, (width, height)
            return _to_rgb(image), (width, height)
        except UnreadableInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            msg = f"cannot read image: {fmt} is too large to decode safely ({exc})"
            raise UnreadableInputError(msg) from exc
        except Exception as exc:
            # Decoders of untrusted input fail in many ways (OSError, SyntaxError, ValueError,
            # struct.error, zlib errors, IndexError, warnings as errors); all mean the same
            # thing to us, and the gate must fail closed on every one of them.
            detail = str(exc) or type(exc).__name__
            msg = f"cannot read image: truncated or corrupt {fmt} data ({detail})"
            raise UnreadableInputError(msg) from exc


def _open(data: bytes) -> Image.Image:
    """``Image.open`` restricted to :data:`SUPPORTED_FORMATS`, errors translated."""
    Image.init()  # registers every plugin once, so that the AVIF check below is reliable
    formats = [name for name in SUPPORTED_FORMATS if name in Image.OPEN]
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        msg = f"cannot read image: too large to decode safely ({exc})"
        raise UnreadableInputError(msg) from exc
    except UnidentifiedImageError as exc:
        head = data[:8].hex(" ")
        msg = (
            f"cannot read image: unknown or unsupported format "
            f"({len(data):,} bytes starting {head})"
        )
        raise UnreadableInputError(msg) from exc
    except Exception as exc:
        # A recognised header whose fields do not parse (see load_image on why so broad).
        detail = str(exc) or type(exc).__name__
        msg = f"cannot read image: corrupt image header ({detail})"
        raise UnreadableInputError(msg) from exc


def _describe_unsupported(data: bytes) -> str | None:
    """A name for well-known non-raster or unsupported formats, for a clearer message."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in head:
        return "SVG (vector graphics; export it as PNG)"
    if head.startswith(b"%pdf"):
        return "PDF (a document; export its pages as PNG)"
    if head.startswith(b"%!ps") or data.startswith(b"\xc5\xd0\xd3\xc6"):
        return "PostScript/EPS (export it as PNG)"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS and "AVIF" not in Image.OPEN:
            return "AVIF (this Pillow build cannot decode it; convert it to JPEG or PNG)"
        if brand in _HEIF_BRANDS:
            return "HEIC/HEIF (convert it to JPEG or PNG)"
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to ``RGB``: alpha over white, palettes expanded, deep images scaled."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _deep_to_rgb(image)
    if mode == "LAB":
        # Pillow's plain convert() misreads CIELAB as if it were RGB-like; LittleCMS does it.
        converted = ImageCms.applyTransform(image, _lab_to_srgb())
        if converted is None:  # only with inPlace=True, which is not used here
            raise UnreadableInputError("cannot read image: CIELAB conversion failed")
        return converted
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if not has_alpha:
        # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's conversions (CMYK naively, without
        # its ICC profile).
        return image.convert("RGB")
    # Palette and colour-key transparency become an alpha channel through RGBA, which is
    # also Pillow's recommended route (converting them straight to RGB warns).
    rgba = image if mode == "RGBA" else image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, _WHITE)
    flat.paste(rgba, (0, 0), rgba)
    return flat


@cache
def _lab_to_srgb() -> ImageCms.ImageCmsTransform:
    return ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )


def _deep_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer or float greyscale to 8-bit RGB.

    Pillow's own conversion clips these to 0..255, which turns most 16-bit pictures white.
    Integer images are read as 16-bit samples (what Pillow decodes into ``I;16``/``I``);
    float images have no agreed white point, so their range is stretched to 0..255.
    """
    samples: npt.NDArray[np.float64] = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(samples.min()), float(samples.max())
        scaled = (samples - low) * (255.0 / (high - low)) if high > low else samples * 0.0
    else:
        scaled = np.clip(samples, 0.0, 65535.0) / _SIXTEEN_TO_EIGHT_BITS
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
