"""PDQ perceptual image hash (256 bits plus a 0..100 quality score), in pure numpy.

PDQ is Meta's photo hash, published with ThreatExchange under a BSD licence. This module is
written from its description, not translated from its code:

- "The TMK+PDQF Video-Hashing Algorithm and the PDQ Image Similarity Algorithm"
  (``hashing/hashing.pdf`` in https://github.com/facebook/ThreatExchange), and
- ``pdq/README.md`` there, which defines conformance: with the images of ``pdq/data``, a
  port's hash must be within Hamming distance 10 of the reference hash whenever the port's
  quality is 80 or more.

The steps, for an image of ``W x H`` pixels:

1. Shrink images larger than 512 px on either side to fit in 512 x 512, keeping the aspect
   ratio, exactly as the reference Python port does with Pillow's ``Image.thumbnail`` (bicubic,
   ``reducing_gap=2``). The expected hashes of ThreatExchange's test vectors come from that
   port: hashing the full-size image instead misses them by up to 12 bits.
2. Luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` as floats (grey images are used as is).
3. Jarosz tent filter: two passes of a 1-D box filter along rows and along columns, window
   ``ceil(size / 128)`` (half of the 1/64 block, since two passes of a box make a tent), then
   decimation to 64 x 64 by sampling at block centres.
4. Quality: the sum of absolute neighbour differences of the 64 x 64 image, each scaled to
   percent of full range and truncated to an integer, divided by 90 and capped at 100.
5. 2-D DCT of the 64 x 64 image, keeping frequencies 1..16 in both directions (16 x 16; the
   DC row and column are dropped so that brightness offsets do not matter).
6. Each of the 256 coefficients becomes one bit: 1 if it is above the median (the lower
   median, as Torben's algorithm in the reference returns).

Luminance, the bicubic resampling of step 1 and step 3 are all linear, so this module takes
the luminance first (rounded to 8 bits for images that are shrunk, no coarser than the
reference's 8-bit resampling; exact otherwise), applies Pillow's integer pre-shrink
(``reduce``) when thumbnail would, and folds resampling, tent filter and decimation of each
axis into one 64 x n matrix, cached per size: the 64 x 64 image is ``Ay @ Y @ Ax.T``. On
ThreatExchange's vectors the hashes equal the reference's bit for bit, and a 1920 x 1080
image hashes in about 3-6 ms (one Pillow conversion, one float32 matrix product). When
hashing in several processes, set ``OPENBLAS_NUM_THREADS=1``: BLAS threads competing for
busy cores make the product several times slower.

Bit layout and hex form follow the reference: bit ``16 i + j`` is DCT coefficient ``(i, j)``
(``i`` vertical frequency, ``j`` horizontal), stored as sixteen 16-bit words, and the hex
string (and :attr:`PdqResult.hash`) lists word 15 first, each big-endian.

The eight dihedral variants (rotations and mirror images) are derived from the one DCT, as
the reference does: mirroring negates the odd-symmetry coefficients, transposing swaps the
axes. See :data:`DIHEDRAL_ORDER` and :data:`DIHEDRAL_TRANSPOSE`.

This module is pure: no I/O. Decode untrusted bytes with
:func:`consentry.fingerprint.imageload.load_image` first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from consentry.errors import InvalidInputError

__all__ = [
    "DIHEDRAL_ORDER",
    "DIHEDRAL_TRANSPOSE",
    "PDQ_HASH_BYTES",
    "PDQ_WORKING_SIZE",
    "PdqResult",
    "hamming",
    "hash_from_hex",
    "hash_to_hex",
    "pdq_bits_from_downsamples",
    "pdq_dihedral_from_downsample",
    "pdq_downsample",
    "pdq_hash",
    "pdq_hash_dihedral",
    "pdq_hash_from_downsample",
]

#: Length of a PDQ hash in bytes (256 bits).
PDQ_HASH_BYTES: Final = 32

#: Images larger than this on either side are first shrunk to fit (reference Python port).
#: Pass it as ``target_size`` to :func:`~consentry.fingerprint.imageload.load_image` so that
#: JPEGs are decoded at a reduced scale, as the reference's ``thumbnail`` call does.
PDQ_WORKING_SIZE: Final = 512

#: The order of :func:`pdq_hash_dihedral`'s results (the reference's order and names).
DIHEDRAL_ORDER: Final[tuple[str, ...]] = (
    "original",
    "rotate-90",
    "rotate-180",
    "rotate-270",
    "flip-x",
    "flip-y",
    "flip-plus-1",
    "flip-minus-1",
)

#: For each entry of :data:`DIHEDRAL_ORDER`, the Pillow transpose that turns the original
#: image into the one whose hash that variant approximates (``None``: the original itself).
#: "rotate-90" is a counter-clockwise quarter turn (Pillow's ``ROTATE_90``); "flip-x" mirrors
#: top to bottom (about the horizontal axis), "flip-y" left to right; "flip-plus-1" mirrors
#: about the main diagonal (a transpose) and "flip-minus-1" about the anti-diagonal. Checked
#: against ThreatExchange's ``pdq/data/reg-test-input/dih`` images.
DIHEDRAL_TRANSPOSE: Final[tuple[Image.Transpose | None, ...]] = (
    None,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)

# Below this size on either side the reference (C++) returns an all-zero hash of quality 0:
# a 64 x 64 downsample of fewer pixels says nothing about the picture.
_MIN_HASHABLE_DIM: Final = 5
_DOWNSAMPLE: Final = 64
_DCT_SIZE: Final = 16
# Two box passes per axis make a tent; each box is 1/128 of the side (half a 1/64 block).
_JAROSZ_WINDOW_DIVISOR: Final = 2 * _DOWNSAMPLE
_JAROSZ_PASSES: Final = 2
# Pillow's thumbnail() default: shrink by an integer factor with reduce() until the
# remaining bicubic step is at most 2x, then resample.
_REDUCING_GAP: Final = 2.0
# Pillow's bicubic kernel is Keys' cubic convolution with a = -0.5, support 2.
_BICUBIC_A: Final = -0.5
_BICUBIC_SUPPORT: Final = 2.0

_FloatArray = npt.NDArray[np.float64]
_Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class PdqResult:
    """One PDQ hash: 32 bytes (reference bit order, see the module docstring) and quality.

    Quality is 0..100; ThreatExchange recommends discarding hashes of quality below 50,
    which flat or nearly blank images get.
    """

    hash: bytes
    quality: int

    def __post_init__(self) -> None:
        if len(self.hash) != PDQ_HASH_BYTES:
            msg = f"a PDQ hash has {PDQ_HASH_BYTES} bytes, got {len(self.hash)}"
            raise InvalidInputError(msg)
        if not 0 <= self.quality <= 100:
            msg = f"PDQ quality must be 0..100, got {self.quality}"
            raise InvalidInputError(msg)

    @property
    def hex(self) -> str:
        """The hash as 64 lower-case hex digits, as ThreatExchange writes it."""
        return self.hash.hex()


def pdq_hash(image: Image.Image, *, full_size: tuple[int, int] | None = None) -> PdqResult:
    """The PDQ hash and quality of ``image``.

    ``image`` should be ``RGB`` or ``L`` (as :func:`~.imageload.load_image` returns); other
    modes are converted with Pillow's ``convert("RGB")``, which drops any alpha channel as
    the reference does.

    ``full_size``: ``image`` is a JPEG decoded at a reduced DCT scale
    (:func:`~.imageload.load_scaled`) of a picture of this size; the hash is then that of
    the full-size picture, approximately (see :func:`_reduced_axis_matrix`).
    """
    dct, quality = _dct16(image, full_size)
    if dct is None:
        return PdqResult(bytes(PDQ_HASH_BYTES), 0)
    return PdqResult(_bits(dct), quality)


def pdq_hash_dihedral(
    image: Image.Image, *, full_size: tuple[int, int] | None = None
) -> list[PdqResult]:
    """PDQ hashes of ``image`` and of its seven rotations and mirror images.

    The list follows :data:`DIHEDRAL_ORDER`; entry ``k`` approximates the hash of
    ``image.transpose(DIHEDRAL_TRANSPOSE[k])``. Not exactly: PDQ's box windows of even width
    and its decimation points are not centred, so mirroring the image does not exactly mirror
    the 64 x 64 downsample. On ThreatExchange's test photo some variants equal the hash of the
    transformed image and others differ by 16 to 18 of 256 bits, the same as with the
    reference; that is still well inside the recommended match distance of 31.
    All eight share the quality of the original. They come from one DCT, so this costs about
    the same as :func:`pdq_hash`. ``full_size`` as in :func:`pdq_hash`.
    """
    dct, quality = _dct16(image, full_size)
    if dct is None:
        return [PdqResult(bytes(PDQ_HASH_BYTES), 0) for _ in DIHEDRAL_ORDER]
    return _dihedral(dct, quality)


def pdq_dihedral_from_downsample(down64: _FloatArray) -> list[PdqResult]:
    """:func:`pdq_hash_dihedral` of a 64 x 64 filtered luminance (see :func:`pdq_downsample`)."""
    down = _checked_downsample(down64)
    return _dihedral(_DCT_MATRIX @ down @ _DCT_MATRIX.T, _quality(down))


def _dihedral(dct: _FloatArray, quality: int) -> list[PdqResult]:
    # Coefficient (i, j) is frequency i + 1 vertically and j + 1 horizontally; mirroring an
    # axis multiplies frequency k by (-1) ** k, i.e. negates even indices.
    sign = np.where(np.arange(_DCT_SIZE) % 2 == 1, 1.0, -1.0)
    by_row = dct * sign[:, None]  # mirrored top to bottom
    by_col = dct * sign[None, :]  # mirrored left to right
    both = by_row * sign[None, :]  # both mirrors: a half turn
    variants = (dct, by_col.T, both, by_row.T, by_row, by_col, dct.T, both.T)
    return [PdqResult(_bits(v), quality) for v in variants]


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits between two hashes of equal length."""
    if len(a) != len(b):
        msg = f"cannot compare hashes of different lengths ({len(a)} and {len(b)} bytes)"
        raise InvalidInputError(msg)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def hash_to_hex(value: bytes) -> str:
    """A 32-byte PDQ hash as 64 lower-case hex digits (ThreatExchange's text form)."""
    if len(value) != PDQ_HASH_BYTES:
        msg = f"a PDQ hash has {PDQ_HASH_BYTES} bytes, got {len(value)}"
        raise InvalidInputError(msg)
    return value.hex()


def hash_from_hex(text: str) -> bytes:
    """Parse 64 hex digits (either case, surrounding whitespace ignored) into a PDQ hash."""
    digits = text.strip()
    if len(digits) != 2 * PDQ_HASH_BYTES:
        msg = f"a PDQ hash is {2 * PDQ_HASH_BYTES} hex digits, got {len(digits)} characters"
        raise InvalidInputError(msg)
    try:
        return bytes.fromhex(digits)
    except ValueError as exc:
        msg = f"a PDQ hash must be hex digits only, got {digits!r}"
        raise InvalidInputError(msg) from exc


# -- pipeline ---------------------------------------------------------------------------------


def pdq_downsample(
    image: Image.Image, *, full_size: tuple[int, int] | None = None
) -> _FloatArray | None:
    """PDQ's 64 x 64 filtered luminance of ``image`` (steps 1-3), None if too small to hash.

    With :func:`pdq_hash_from_downsample` this splits :func:`pdq_hash`, so that a caller can
    transform the small picture (e.g. turn it by a few degrees) and hash it again cheaply.
    """
    return _downsample(image, full_size)


def pdq_hash_from_downsample(down64: _FloatArray) -> PdqResult:
    """The PDQ hash and quality of a 64 x 64 filtered luminance (steps 4-6)."""
    down = _checked_downsample(down64)
    return PdqResult(_bits(_DCT_MATRIX @ down @ _DCT_MATRIX.T), _quality(down))


def pdq_bits_from_downsamples(downs: npt.NDArray[np.floating]) -> list[bytes]:
    """The PDQ hashes (steps 4-6, without quality) of a stack of 64 x 64 downsamples
    (``k`` x 64 x 64): one batched DCT instead of ``k`` calls of
    :func:`pdq_hash_from_downsample`, for callers that judge the quality otherwise."""
    if downs.ndim != 3 or downs.shape[1:] != (_DOWNSAMPLE, _DOWNSAMPLE):
        msg = f"expected k x {_DOWNSAMPLE} x {_DOWNSAMPLE} downsamples, got {downs.shape}"
        raise InvalidInputError(msg)
    dct = _DCT_MATRIX @ downs.astype(np.float64) @ _DCT_MATRIX.T
    return [_bits(block) for block in dct]


def _checked_downsample(down64: _FloatArray) -> _FloatArray:
    if down64.shape != (_DOWNSAMPLE, _DOWNSAMPLE):
        msg = f"a PDQ downsample is {_DOWNSAMPLE} x {_DOWNSAMPLE}, got {down64.shape}"
        raise InvalidInputError(msg)
    result: _FloatArray = down64.astype(np.float64)
    return result


def _dct16(
    image: Image.Image, full_size: tuple[int, int] | None = None
) -> tuple[_FloatArray | None, int]:
    """The 16 x 16 DCT block and quality, or ``(None, 0)`` for images too small to hash."""
    down64 = _downsample(image, full_size)
    if down64 is None:
        return None, 0
    quality = _quality(down64)
    dct = _DCT_MATRIX @ down64 @ _DCT_MATRIX.T
    return dct, quality


def _downsample(image: Image.Image, full_size: tuple[int, int] | None) -> _FloatArray | None:
    width, height = image.size if full_size is None else full_size
    if width < _MIN_HASHABLE_DIM or height < _MIN_HASHABLE_DIM:
        return None
    if image.mode not in ("RGB", "L"):
        try:
            image = image.convert("RGB")
        except (ValueError, OSError) as exc:
            msg = f"cannot hash an image of mode {image.mode!r}: {exc}"
            raise InvalidInputError(msg) from exc
    out_width, out_height = _thumbnail_size(width, height)
    if full_size is None or full_size == image.size:
        luma = _luma(image, (out_width, out_height))
        along_rows = _axis_matrix(height, out_height)
        along_cols = _axis_matrix(width, out_width)
    else:
        grey = image if image.mode == "L" else image.convert("L")
        luma = np.asarray(grey).astype(np.float32)
        along_rows = _reduced_axis_matrix(height, image.height, out_height)
        along_cols = _reduced_axis_matrix(width, image.width, out_width)
    # The big product in float32 (BLAS sgemm), the 64 x 64 remainder in float64.
    partial = (along_rows @ luma).astype(np.float64)
    down64: _FloatArray = partial @ along_cols.T.astype(np.float64)
    return down64


def _luma(image: Image.Image, out_size: tuple[int, int]) -> _Float32Array:
    """``0.299 R + 0.587 G + 0.114 B`` (grey images as they are), pre-shrunk like Pillow.

    Large images also get Pillow's integer pre-shrink (``reduce``) here, on the pixels, so
    that the per-axis matrices stay small however long the image is.
    """
    if out_size == image.size:
        # Images within 512 px are used as they are by the reference, in exact floating
        # point; Pillow's "F" conversion computes the same weighted sum in float32.
        return np.asarray(image.convert("F"), dtype=np.float32)
    # The reference resamples large images in 8-bit RGB, rounding every channel to an
    # integer, so its luminance is only good to about one level anyway. Pillow's 8-bit
    # luminance (same coefficients, rounded) is four times smaller to copy out than float
    # luminance, which makes a 1080p image hash about three times faster.
    grey = image if image.mode == "L" else image.convert("L")
    factors = (_reduce_factor(image.width, out_size[0]), _reduce_factor(image.height, out_size[1]))
    if factors != (1, 1):
        # Block means, the last partial block averaged over the pixels it has (Pillow's rule,
        # which the matrices of _axis_matrix assume).
        grey = grey.reduce(factors)
    return np.asarray(grey).astype(np.float32)


def _quality(down64: _FloatArray) -> int:
    # Neighbour differences in percent of full scale, truncated toward zero like the
    # reference's int conversion, so that only significant gradients count.
    vertical = np.trunc((down64[:-1, :] - down64[1:, :]) * 100.0 / 255.0)
    horizontal = np.trunc((down64[:, :-1] - down64[:, 1:]) * 100.0 / 255.0)
    gradient_sum = int(np.abs(vertical).sum() + np.abs(horizontal).sum())
    return min(gradient_sum // 90, 100)


def _bits(dct: _FloatArray) -> bytes:
    flat = dct.ravel()
    # The lower median (rank 128 of 256), which Torben's algorithm returns for even counts.
    median = np.partition(flat, flat.size // 2 - 1)[flat.size // 2 - 1]
    bits = dct > median
    # Word i holds row i with bit j = column j; words are written 15 down to 0, big-endian,
    # so reversing both axes and packing most-significant-bit first gives the bytes.
    packed: npt.NDArray[np.uint8] = np.packbits(bits[::-1, ::-1], axis=1, bitorder="big")
    return packed.tobytes()


def _make_dct_matrix() -> _FloatArray:
    rows = np.arange(1, _DCT_SIZE + 1, dtype=np.float64)[:, None]
    cols = np.arange(_DOWNSAMPLE, dtype=np.float64)[None, :]
    matrix = math.sqrt(2.0 / _DOWNSAMPLE) * np.cos(
        math.pi / (2 * _DOWNSAMPLE) * rows * (2 * cols + 1)
    )
    matrix.flags.writeable = False
    return matrix


_DCT_MATRIX: Final = _make_dct_matrix()


# -- per-axis linear maps ---------------------------------------------------------------------


def _thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The size Pillow's ``thumbnail((512, 512))`` gives, or the input size if it fits."""
    box = PDQ_WORKING_SIZE
    if width <= box and height <= box:
        return width, height
    aspect = width / height
    # Pillow picks floor or ceil, whichever keeps the aspect ratio closer, at least 1.
    if 1.0 >= aspect:
        candidates = (math.floor(box * aspect), math.ceil(box * aspect))
        new_width = max(min(candidates, key=lambda n: abs(aspect - n / box)), 1)
        return new_width, box
    candidates = (math.floor(box / aspect), math.ceil(box / aspect))
    new_height = max(min(candidates, key=lambda n: 0 if n == 0 else abs(aspect - box / n)), 1)
    return box, new_height


def _reduce_factor(size_in: int, size_out: int) -> int:
    """The integer pre-shrink Pillow's ``resize(..., reducing_gap=2)`` applies to an axis."""
    if size_out == size_in:
        return 1
    return int(size_in / size_out / _REDUCING_GAP) or 1


@lru_cache(maxsize=32)
def _axis_matrix(size_in: int, size_out: int) -> _Float32Array:
    """The linear map of one (already reduced) axis: bicubic resample, tent, decimate.

    Its shape is 64 x ``ceil(size_in / factor)``, at most 64 x 2048 (whatever the image),
    since the reduce factor leaves less than four input samples per output sample.
    """
    tent = _tent_decimate(size_out)
    if size_out == size_in:
        combined = tent
    else:
        factor = _reduce_factor(size_in, size_out)
        reduced_size = -(-size_in // factor)
        # After reduce(), Pillow resamples the box [0, size_in / factor) of the reduced axis.
        combined = tent @ _bicubic_matrix(size_in / factor, reduced_size, size_out)
    result: _Float32Array = combined.astype(np.float32)
    result.flags.writeable = False
    return result


@lru_cache(maxsize=32)
def _reduced_axis_matrix(size_full: int, size_in: int, size_out: int) -> _Float32Array:
    """The linear map of an axis decoded at a reduced JPEG scale: bicubic, tent, decimate.

    The decoder's DCT scaling (``size_full / size_in``, a power of two) stands in for the
    reference's integer pre-shrink (``reduce``, a box filter); the rest is the reference's
    bicubic resampling of the full picture's extent ``[0, size_full)``, here
    ``[0, size_full / scale)`` of the reduced axis, to ``size_out``, then the tent filter.
    On the benchmark corpus as 1280 x 720 ... 4000 x 3000 JPEGs, decoded at 1/2 ... 1/8 with
    both sides at least 3/4 of the thumbnail's, the hash differs from the full decode's by
    0.2-0.8 bits on average (95th percentile 2, at most 6 of 256 bits).
    """
    scale = 1 << max(0, round(math.log2(size_full / size_in)))
    combined = _tent_decimate(size_out) @ _bicubic_matrix(size_full / scale, size_in, size_out)
    result: _Float32Array = combined.astype(np.float32)
    result.flags.writeable = False
    return result


def _bicubic_matrix(span: float, size_in: int, size_out: int) -> _FloatArray:
    """Pillow's bicubic resampling of ``[0, span)`` of ``size_in`` samples to ``size_out``.

    Mirrors Pillow's coefficient rule (``Resample.c``): the kernel is widened by the scale
    when shrinking, centred on each output pixel, clipped to the input and renormalised.
    """
    scale = span / size_out
    filter_scale = max(scale, 1.0)
    support = _BICUBIC_SUPPORT * filter_scale
    centres = (np.arange(size_out) + 0.5) * scale
    # C's (int) truncates toward zero; clamping to the input makes that equal to floor here.
    starts = np.clip(np.trunc(centres - support + 0.5), 0, size_in).astype(np.intp)
    stops = np.clip(np.trunc(centres + support + 0.5), 0, size_in).astype(np.intp)
    positions = np.arange(size_in)[None, :]
    inside = (positions >= starts[:, None]) & (positions < stops[:, None])
    distance = np.abs((positions - centres[:, None] + 0.5) / filter_scale)
    weights = np.where(inside, _bicubic(distance), 0.0)
    totals = weights.sum(axis=1, keepdims=True)
    normalised: _FloatArray = np.divide(
        weights, totals, out=np.zeros_like(weights), where=totals != 0.0
    )
    return normalised


def _bicubic(x: _FloatArray) -> _FloatArray:
    a = _BICUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    result: _FloatArray = np.where(x < 1.0, near, np.where(x < _BICUBIC_SUPPORT, far, 0.0))
    return result


def _tent_decimate(size: int) -> _FloatArray:
    """64 x ``size``: two box-filter passes (a tent), sampled at the 64 block centres."""
    window = (size + _JAROSZ_WINDOW_DIVISOR - 1) // _JAROSZ_WINDOW_DIVISOR
    # The reference's running-sum box covers [o - (window - half), o + half) around output o,
    # clipped to the vector and averaged over the samples actually inside.
    half = (window + 2) // 2
    outputs = np.arange(size)
    lows = np.maximum(0, outputs + half - window)
    highs = np.minimum(size, outputs + half)
    positions = np.arange(size)[None, :]
    box = ((positions >= lows[:, None]) & (positions < highs[:, None])).astype(np.float64)
    box /= (highs - lows)[:, None]
    samples = ((np.arange(_DOWNSAMPLE) + 0.5) * size / _DOWNSAMPLE).astype(np.intp)
    tent = box[samples]
    for _ in range(_JAROSZ_PASSES - 1):
        tent = tent @ box
    return tent
