"""The alignment a whole-picture code match implies, for confirming it by the box hashes.

A query's whole-picture codes are hashes of the query picture itself, of its mirrored and
quarter-turned versions (PDQ's dihedral variants), of its left-right mirror image and
trimmed box (``pdqr1`` ``all~flip``, ``trim``), and of the picture turned back by a few
degrees (``~rotate±k``). When one of them is close to a registered work's code, the
variant says how the query would have to be transformed to look like the work: turn it,
mirror it, cut its borders, then stretch it to the work's size. :func:`variant_matrix`
writes that as a 2 x 3 affine matrix from the query's working-copy pixels to the work's,
which :func:`~consentry.fingerprint.image.aligned_distance` uses to compare the two
pictures' box hashes, as the local stage does with the matrix RANSAC found.

Why a second kind of evidence for whole-picture matches: between 17 and 30 bits apart,
two unrelated pictures of the same kind (two nebulae, two skies) are rare but the
benchmark's impostor tail there is an extrapolation (``docs/image-false-matches.md``); the
box hashes of the aligned pictures must then agree as well, which is a different
measurement (ten smaller boxes, compared one by one, best one kept).

Only the work's box hashes and size are stored, not the box its ``trim`` code came from,
so a match on a registered ``trim`` code implies no alignment here (None): such a match is
confirmed only if another code of the same work is, or by the local stage.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from consentry.fingerprint.image import (
    ROTATION_VARIANT,
    ROTATIONS,
    VARIANT_SEP,
    Box,
    aligned_distance,
    trim_box,
)
from consentry.fingerprint.pdq import DIHEDRAL_ORDER, DIHEDRAL_TRANSPOSE

__all__ = [
    "TAG_ALL",
    "TAG_PDQ",
    "TAG_TRIM",
    "implied_aligned_distance",
    "small_rotation",
    "transform_key",
    "variant_matrix",
]

#: Names of the registered code a match was found on (see ``hamming._TAG_NAMES``).
TAG_PDQ: Final = "pdq"
TAG_ALL: Final = "pdqr-all"
TAG_TRIM: Final = "pdqr-trim"

_SMALL: Final = {f"{a:+g}": a for a in ROTATIONS}
_TRANSPOSE_OF: Final[dict[str, Image.Transpose]] = {
    name: how
    for name, how in zip(DIHEDRAL_ORDER, DIHEDRAL_TRANSPOSE, strict=True)
    if how is not None
}
# The region recipe's one mirrored variant is the left-right mirror image.
_TRANSPOSE_OF["flip"] = Image.Transpose.FLIP_LEFT_RIGHT

_Matrix = npt.NDArray[np.float64]


def transform_key(region: str, tag: str) -> tuple[str, str] | None:
    """What decides the implied alignment of a query code ``region`` matched on a registered
    code ``tag``: the query's box (whole or trimmed) and its variant; None if the match
    implies none (a registered ``trim`` code, or a variant this module does not know).

    Codes with equal keys imply the same matrix (``full`` and ``all`` are both the whole
    picture), so a caller compares the pictures once per key.
    """
    if tag == TAG_TRIM:
        return None
    base, _, variant = region.partition(VARIANT_SEP)
    if base not in ("full", "all", "trim"):
        return None
    if variant and variant not in _TRANSPOSE_OF and not _is_small_rotation(variant):
        return None
    return ("trim" if base == "trim" else "whole", variant)


def variant_matrix(
    region: str, tag: str, query: npt.NDArray[np.uint8], work_size: tuple[int, int]
) -> _Matrix | None:
    """The 2 x 3 matrix from ``query`` (its grey working copy) pixels to the pixels of a
    registered work's working copy of ``work_size`` (width, height) that a match of the
    query's code ``region`` on the work's code ``tag`` implies; None if it implies none
    (see :func:`transform_key`)."""
    key = transform_key(region, tag)
    if key is None:
        return None
    base, variant = key
    height, width = query.shape
    box: Box = trim_box(query.astype(np.float32)) if base == "trim" else (0, 0, width, height)
    return _matrix(box, variant, work_size)


def implied_aligned_distance(
    region: str, tag: str, query: npt.NDArray[np.uint8], record: bytes
) -> int | None:
    """The aligned distance (:func:`~consentry.fingerprint.image.aligned_distance`) of a query
    (its grey working copy) to a registered work (its ``pdqg1`` ``record``) under the
    alignment a match of the query's code ``region`` on the work's code ``tag`` implies;
    None if it implies none or no box is covered."""
    width, height = (int(v) for v in np.frombuffer(record[:4], "<u2"))
    matrix = variant_matrix(region, tag, query, (width, height))
    found = None if matrix is None else aligned_distance(query, matrix, record)
    return None if found is None else found[0]


@lru_cache(maxsize=256)
def _matrix(box: Box, variant: str, work_size: tuple[int, int]) -> _Matrix:
    # Built in continuous coordinates (a pixel's centre at i + 0.5), where crops, mirrors and
    # stretches are exact, then moved to OpenCV's pixel-index coordinates at the end.
    left, top, right, bottom = box
    width, height = float(right - left), float(bottom - top)
    steps = [_shift(-left, -top)]
    if _is_small_rotation(variant):
        # The ``~rotate+k`` code is the picture turned back by k degrees about its centre,
        # with its size unchanged (``image._rotation_hashes``).
        steps.append(_rotation(-_SMALL[variant.removeprefix(ROTATION_VARIANT)], width, height))
    elif variant:
        flip, (width, height) = _transpose(_TRANSPOSE_OF[variant], width, height)
        steps.append(flip)
    work_width, work_height = work_size
    steps.append(np.diag([work_width / width, work_height / height, 1.0]))
    matrix = _shift(0.5, 0.5)  # pixel index to continuous
    for step in steps:
        matrix = step @ matrix
    matrix = _shift(-0.5, -0.5) @ matrix  # and back
    out: _Matrix = np.ascontiguousarray(matrix[:2])
    out.flags.writeable = False
    return out


def _is_small_rotation(variant: str) -> bool:
    return variant.startswith(ROTATION_VARIANT) and variant.removeprefix(ROTATION_VARIANT) in _SMALL


@lru_cache(maxsize=128)  # a handful of region names, looked up for every code of every item
def small_rotation(region: str) -> float | None:
    """The angle of a small-rotation variant (``all~rotate+3``: 3.0); None for any other
    region ("rotate-90" etc. are PDQ's dihedral variants, not small rotations)."""
    variant = region.partition(VARIANT_SEP)[2]
    return _SMALL[variant.removeprefix(ROTATION_VARIANT)] if _is_small_rotation(variant) else None


def _shift(dx: float, dy: float) -> _Matrix:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]], np.float64)


def _rotation(degrees: float, width: float, height: float) -> _Matrix:
    # Counter-clockwise on the screen for positive angles (y points down), as OpenCV's
    # getRotationMatrix2D and Pillow's rotate, about the picture's centre.
    theta = np.deg2rad(degrees)
    cos, sin = float(np.cos(theta)), float(np.sin(theta))
    turn = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]], np.float64)
    out: _Matrix = _shift(width / 2, height / 2) @ turn @ _shift(-width / 2, -height / 2)
    return out


def _transpose(
    how: Image.Transpose, width: float, height: float
) -> tuple[_Matrix, tuple[float, float]]:
    """Pillow's ``transpose(how)`` of a ``width`` x ``height`` picture, as a matrix in
    continuous coordinates, and the size it gives."""
    T = Image.Transpose
    rows: dict[Image.Transpose, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
        T.FLIP_LEFT_RIGHT: ((-1, 0, width), (0, 1, 0)),
        T.FLIP_TOP_BOTTOM: ((1, 0, 0), (0, -1, height)),
        T.ROTATE_180: ((-1, 0, width), (0, -1, height)),
        # A counter-clockwise quarter turn: the top-right corner goes to the top left.
        T.ROTATE_90: ((0, 1, 0), (-1, 0, width)),
        T.ROTATE_270: ((0, -1, height), (1, 0, 0)),
        T.TRANSPOSE: ((0, 1, 0), (1, 0, 0)),
        T.TRANSVERSE: ((0, -1, height), (-1, 0, width)),
    }
    first, second = rows[how]
    matrix = np.array([first, second, (0.0, 0.0, 1.0)], np.float64)
    swapped = how in (T.ROTATE_90, T.ROTATE_270, T.TRANSPOSE, T.TRANSVERSE)
    return matrix, ((height, width) if swapped else (width, height))
