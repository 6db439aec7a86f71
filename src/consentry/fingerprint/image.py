"""Image fingerprints: PDQ of the whole picture, trimmed and mirrored variants, local features.

One decode (:func:`~consentry.fingerprint.imageload.load_scaled`): JPEGs are decoded as
luminance only, at the smallest DCT scale (1/2 ... 1/8) keeping both sides at least
:data:`DRAFT_FRACTION` of PDQ's 512-px thumbnail; every stage below works on that one grey
picture. Then:

1. ``pdq``: the conforming PDQ hash of the picture (:mod:`consentry.fingerprint.pdq`) and its
   seven dihedral variants (regions ``full`` and ``full~rotate-90`` ... ``full~flip-minus-1``),
   plus ``full~rotate-3`` ... ``full~rotate+3``, small rotations as for ``all`` below
   (PDQ's 64 x 64 downsample turned back, :func:`_turned_back`), for interoperability
   with ThreatExchange and rotated or mirrored copies. From a reduced JPEG decode the hash
   is the full picture's up to the resampling
   (:func:`consentry.fingerprint.pdq.pdq_hash`, ``full_size``): within ThreatExchange's
   conformance distance on its test vectors, and 0.2-0.8 bits from the full decode's on
   average on the benchmark corpus.
2. ``pdqr1``: "region PDQ", the same recipe (64 x 64 area average, 16 x 16 DCT without the DC
   terms, bit = coefficient above the median) computed on a small grey working copy of the
   picture (:data:`WORK_SIDE` pixels on the longer side):

   - ``all``: the whole picture, and ``all~flip``, its left-right mirror image;
   - ``trim``: the picture without uniform borders (letterbox bars, padding, the flat canvas
     of a screenshot), and ``trim~flip``; emitted only when there is a border to trim;
   - ``all~rotate-3``, ``all~rotate-2``, ``all~rotate+2``, ``all~rotate+3``
     (:data:`ROTATIONS`): the working copy turned back by that many degrees, for copies
     turned slightly (``all~rotate+3`` assumes the item is the work turned 3 degrees
     counter-clockwise). The corners that turning brings in are filled by repeating the
     edge pixels, which keeps the hash closer than a black fill (median 6 vs 20 bits from
     the work's ``all`` hash for 3-degree copies on the benchmark corpus). The index tries
     them only when the other whole-picture codes match nothing, so they are deferred
     (below).

3. ``orb1``: up to :data:`LOCAL_FEATURES` ORB keypoints of the working copy (OpenCV), each
   as its position (quarter pixels of the working copy, two little-endian uint16) and its
   256-bit binary descriptor: 36 bytes a keypoint, base64 in the ``value``. These survive
   crops, padding, overlays, rotation and embedding in a larger canvas, which whole-picture
   hashes do not: moving a PDQ-style hash's window by 2 % of the side already flips about 50
   of 256 bits (measured on the benchmark corpus), so region hashes on a grid of crops would
   need a grid too dense to be useful. :mod:`consentry.index.hamming` uses them to find and
   geometrically verify (:mod:`consentry.index.verify`) works the hashes miss.

4. ``pdqg1`` (registration only): region-PDQ hashes of fixed boxes of the working copy
   (:data:`GRID_BOXES`: the centre 60 % and a 3 x 3 grid of half-side cells), with the
   working copy's size: what a query aligned by the local stage's transform is compared
   with (:func:`aligned_distance`). Two unrelated pictures can share a dozen ORB matches
   that agree on one similarity transform by chance; that the *pixels* then also agree,
   once the query is warped into the work's frame, is a second kind of evidence (how
   independent of the first is measured in ``docs/image-false-matches.md``). A picture
   whose every box is too flat gets a record with no box (:func:`grid_record`).
5. ``grey1`` (queries only, never registered): the query's 8-bit grey working copy, which
   the index warps for that comparison. A copy of the item's pixels, not a fingerprint:
   :meth:`ImageFingerprinter.query_fingerprint` adds it, deferred (encoded only if a
   candidate reaches the comparison), and registration never computes it, so no picture
   is ever stored.

Registration and checking compute the same list but for those two; the index stores a
registered work's un-mirrored hashes (``~`` marks query-only variants) and queries with
all of the item's.

The small-rotation hashes and ``orb1`` are
:class:`~consentry.fingerprint.deferred.DeferredFingerprint`: their values are computed
when first read. The index reads them only for items its cheaper stages did not match, so a
registered copy costs neither (about 1.5 ms of a 1080p JPEG's fingerprinting); registration
reads them all. A rotated hash is emitted when its un-turned hash is (quality), and
``orb1`` when the picture's grey range exceeds ORB's FAST threshold (empty if ORB still
finds no keypoint).

Hashes of pictures too flat to say anything (PDQ quality below :data:`MIN_QUALITY`, as
ThreatExchange recommends) are left out, so blank or nearly blank areas never match; so are
hashes whose bits are not decided (:func:`bit_margin` below :data:`MIN_MARGIN`, for the
whole picture or for its interior: tiled, striped, framed or faintly textured pictures whose
low frequencies are nearly all zero, which PDQ's quality rates as high as a photograph's).
A ``pdqg1`` box, which only confirms, is hashed if either PDQ's quality or its margin says
it holds something.

This module is pure: bytes in, fingerprints out.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from functools import lru_cache, partial
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.deferred import Deferred, DeferredFingerprint
from consentry.fingerprint.imageload import load_scaled
from consentry.fingerprint.pdq import (
    DIHEDRAL_ORDER,
    PDQ_WORKING_SIZE,
    pdq_bits_from_downsamples,
    pdq_dihedral_from_downsample,
    pdq_downsample,
)

__all__ = [
    "DRAFT_FRACTION",
    "GRID_BOXES",
    "GRID_RECORD",
    "INTERIOR_INSET",
    "KIND_GRID",
    "KIND_LOCAL",
    "KIND_PDQ",
    "KIND_REGION",
    "KIND_WORKING_COPY",
    "LOCAL_FEATURES",
    "MIN_MARGIN",
    "MIN_QUALITY",
    "ROTATIONS",
    "ROTATION_VARIANT",
    "VARIANT_SEP",
    "WORK_SIDE",
    "ImageFingerprinter",
    "aligned_distance",
    "bit_margin",
    "decode_grid",
    "decode_local_features",
    "decode_working_copy",
    "grid_record",
    "local_features",
    "region_hashes",
    "trim_box",
]

#: Kind of the conforming PDQ hashes.
KIND_PDQ: Final = "pdq"
#: Kind of the region hashes (version 1 of the recipe in the module docstring).
KIND_REGION: Final = "pdqr1"
#: JPEGs are decoded at a reduced scale keeping both sides at least this fraction of PDQ's
#: thumbnail (3/4: a 1080p JPEG at 1/4 scale, 480 x 270; at 1/2 the hash would be a little
#: closer to the full decode's and the decode 10 % slower; at 1/8 it would drift 2-3 bits).
DRAFT_FRACTION: Final = 0.75
#: Hashes of pictures flatter than this PDQ quality are not emitted.
MIN_QUALITY: Final = 50
#: Nor are hashes whose bits are not decided (:func:`bit_margin` below this): half of their
#: 256 DCT coefficients lie within this distance of the median that sets the bits. One
#: coefficient in ten moves by about 3 under a JPEG re-encode at quality 20 (measured on the
#: recognition corpus, PDQ's scale: a 64 x 64 grey picture, orthonormal DCT), so such a hash
#: is half noise. Worse, noise is not what two of them share: a picture constant along one
#: axis, tiled, or flat but for a frame has many coefficients at exactly zero, which all get
#: the same bit, so unrelated pictures of that kind agree on most bits (normal maps, UI
#: frames, stripes and tiled textures 0-16 bits apart in the all-against-all impostor count,
#: docs/image-false-matches.md) while PDQ's quality, a gradient sum, saturates at 100.
MIN_MARGIN: Final = 3.0
#: ... nor those whose picture, without the outer INTERIOR_INSET of PDQ's 64 x 64
#: downsample on each side (9 % of a side), is undecided: a thin frame round a flat
#: picture spreads over enough coefficients to pass :data:`MIN_MARGIN` once resampled (a
#: black square in a 1-px white frame: margin 2.7; enlarged x 1.5: 9.8), but it is the
#: frame's thickness and position the code then records, and unrelated framed panels share
#: them (a false match at 6 bits in the all-against-all count). The interior of such a
#: picture stays at margin 0.0-0.4; 0.4 % of the recognition corpus's hashed pictures and
#: 1.0 % of the impostor set's fall below 3 there (flat panels, frames, grid paper, a
#: glow), none of the benchmark's 200 registered works.
INTERIOR_INSET: Final = 6
#: Longer side of the grey working copy the region hashes are computed on.
WORK_SIDE: Final = 256
#: Kind of the local features (ORB keypoints and descriptors, version 1).
KIND_LOCAL: Final = "orb1"
#: At most this many keypoints per picture.
LOCAL_FEATURES: Final = 160
#: Bytes per keypoint in an ``orb1`` value: x, y (uint16, quarter pixels) and 32 descriptor bytes.
LOCAL_RECORD: Final = 36
#: Kind of the registered hashes of fixed boxes, for aligned comparison (version 1).
KIND_GRID: Final = "pdqg1"
#: Kind of a query's grey working copy (never registered, see the module docstring).
KIND_WORKING_COPY: Final = "grey1"
#: Boxes (left, top, right, bottom, as fractions of the picture's sides) hashed for the
#: aligned comparison: the centre 60 %, inside any crop of up to 20 % and most 10-degree
#: rotations; and nine half-side cells on a quarter-side grid, one of which lies inside
#: any crop of up to 30 % (give or take the coverage tolerance) and away from a caption
#: band or a corner logo.
GRID_BOXES: Final[tuple[tuple[float, float, float, float], ...]] = (
    (0.2, 0.2, 0.8, 0.8),
    *((x, y, x + 0.5, y + 0.5) for y in (0.0, 0.25, 0.5) for x in (0.0, 0.25, 0.5)),
)
#: Bytes of a ``pdqg1`` record: width, height, mask of the boxes hashed (three little-endian
#: uint16), then 32 bytes a box (zeros where the box is too flat to hash).
GRID_RECORD: Final = 6 + 32 * len(GRID_BOXES)
#: A box is compared only if the query covers at least this fraction of it (the rest is
#: filled by repeating the query's edge pixels).
GRID_COVERAGE: Final = 0.9
#: Separator between a region's name and its variant (``all~flip``); variants are query-only.
VARIANT_SEP: Final = "~"
#: Angles (degrees, counter-clockwise) of the query-only rotated ``all`` hashes: small
#: rotations move a whole-picture hash by 30-70 bits, beyond the match threshold. Steps of
#: one degree leave at most half a degree of residual rotation between 1.5 and 3.5 degrees.
ROTATIONS: Final[tuple[float, ...]] = (-3.0, -2.0, 2.0, 3.0)
#: Variant name prefix of those hashes (``all~rotate+3``).
ROTATION_VARIANT: Final = "rotate"

# Sample points a side of a box when measuring how much of it a query covers.
_COVERAGE_SAMPLES: Final = 32
# ORB's border (no keypoint nearer an edge) and patch size, pixels.
_ORB_EDGE: Final = 15
# ORB's FAST corner threshold (grey levels).
_FAST_THRESHOLD: Final = 10
_DOWN: Final = 64
_DCT: Final = 16
# A border row or column: its grey levels vary by less than this standard deviation...
_BORDER_STD: Final = 5.0
# ... and it is at most this far (mean grey level) from the outermost row or column.
_BORDER_MEAN: Final = 12.0
# Borders thinner than this fraction of the side are ignored (JPEG edge ringing, 1-px frames);
# at most this fraction is trimmed from one side.
_BORDER_MIN: Final = 0.02
_BORDER_MAX: Final = 0.45

_Floats = npt.NDArray[np.float64]
_F32 = npt.NDArray[np.float32]

Box = tuple[int, int, int, int]
"""A rectangle ``(left, top, right, bottom)`` in pixels of the working copy."""


class ImageFingerprinter:
    """PDQ and region hashes of an image (see the module docstring)."""

    name: Final = "image-pdq"

    def applies_to(self, media_type: str) -> bool:
        return media_type == "image"

    def fingerprint(self, data: bytes, media_type: str) -> list[Fingerprint]:
        """Fingerprints of ``data`` to register; raises ``UnreadableInputError`` if it cannot
        be decoded.

        The small-rotation hashes and the ORB keypoints are
        :class:`~consentry.fingerprint.deferred.DeferredFingerprint`: computed when first
        read, which the index does only for items its cheaper stages did not match.
        """
        return self._fingerprints(data, query=False)

    def query_fingerprint(self, data: bytes, media_type: str) -> list[Fingerprint]:
        """Fingerprints of ``data`` to recognise: as :meth:`fingerprint`, without the
        ``pdqg1`` box hashes (nothing matches on them) and with the deferred ``grey1``
        working copy, which the index warps to confirm a local-feature match
        (``fingerprint_all(..., query=True)`` calls this method)."""
        return self._fingerprints(data, query=True)

    def _fingerprints(self, data: bytes, *, query: bool) -> list[Fingerprint]:
        scaled = load_scaled(data, fit=PDQ_WORKING_SIZE, min_fraction=DRAFT_FRACTION, grey=True)
        image = scaled.image
        out: list[Fingerprint] = []
        down = pdq_downsample(image, full_size=scaled.full_size)
        pdq_ok = False
        if down is not None:
            variants = pdq_dihedral_from_downsample(down)
            pdq_ok = variants[0].quality >= MIN_QUALITY and _decided(down)
            if pdq_ok:
                for name, result in zip(DIHEDRAL_ORDER, variants, strict=True):
                    region = "full" if name == "original" else f"full{VARIANT_SEP}{name}"
                    out.append(Fingerprint(KIND_PDQ, result.hex, region))
        grey = _working_grey(image)
        regions = region_hashes(grey)
        # Rotated variants of a hash are emitted when the hash itself is (its quality is
        # enough): their own quality would need the computation they defer, and a picture
        # turned by 2-3 degrees is as flat or as busy as before.
        all_ok = any(region == "all" for region, _ in regions)
        if pdq_ok or all_ok:
            size = scaled.full_size
            turned: Deferred[Mapping[str, str]] = Deferred(
                partial(_rotation_hashes, down if pdq_ok else None, grey if all_ok else None, size)
            )
            if pdq_ok:
                out.extend(
                    DeferredFingerprint(KIND_PDQ, region, turned, region)
                    for region in _rotation_regions("full")
                )
        for region, value in regions:
            out.append(Fingerprint(KIND_REGION, value, region))
            if region == f"all{VARIANT_SEP}flip":
                out.extend(
                    DeferredFingerprint(KIND_REGION, region, turned, region)
                    for region in _rotation_regions("all")
                )
        pixels = _grey_bytes(grey)
        # FAST (ORB's detector) needs a pixel differing by more than its threshold from a
        # ring of neighbours: a picture with a smaller grey range has no keypoints at all.
        if pixels.size and int(pixels.max()) - int(pixels.min()) > _FAST_THRESHOLD:
            local: Deferred[Mapping[str, str]] = Deferred(lambda: {"all": _local_value(pixels)})
            out.append(DeferredFingerprint(KIND_LOCAL, "all", local, "all"))
            if query:
                copy: Deferred[Mapping[str, str]] = Deferred(
                    lambda: {"all": _working_copy_value(pixels)}
                )
                out.append(DeferredFingerprint(KIND_WORKING_COPY, "all", copy, "all"))
        if not query and out:  # (a picture with nothing to match needs nothing to confirm)
            record = grid_record(grey)
            out.append(Fingerprint(KIND_GRID, base64.b64encode(record).decode("ascii")))
        return out


def grid_record(grey: _F32) -> bytes:
    """The ``pdqg1`` record of a working copy (see :data:`GRID_RECORD`).

    A picture with every box too flat to hash still gets one, with an empty mask: its
    whole-picture codes may pass PDQ's quality gate while saying little (a flat texture's
    hash follows its noise), and without a record the index would take the work for one
    registered before box hashes and match it on the distance alone up to 30 bits. With
    it, a match that needs the aligned comparison cannot be confirmed (the all-against-all
    impostor count found such a work, lilac stripes, 28 bits from a white window frame).
    """
    height, width = grey.shape
    mask = 0
    hashes = bytearray(32 * len(GRID_BOXES))
    for k, box in enumerate(GRID_BOXES):
        left, top, right, bottom = _pixel_box(box, width, height)
        # A box is hashed when PDQ's quality or its bit margin says it holds something:
        # it only confirms a match found by other means, and a query's aligned box is
        # compared whatever its flatness. The margin keeps the boxes of dark, low-contrast
        # textures, whose gradients PDQ's quality reads as flat (quality 26-32, margin 6-7
        # for a dark leaf texture of the benchmark, whose turned copies then had nothing
        # to confirm them).
        dct = _dct16(grey[top:bottom, left:right], decided=False)
        if dct is not None:
            mask |= 1 << k
            hashes[32 * k : 32 * (k + 1)] = _bits(dct)
    return np.array([width, height, mask], "<u2").tobytes() + bytes(hashes)


def decode_grid(value: str) -> bytes:
    """The record of a ``pdqg1`` value; raises ``ValueError`` if it is not one."""
    record = base64.b64decode(value, validate=True)
    if len(record) != GRID_RECORD:
        msg = f"a {KIND_GRID} value holds {GRID_RECORD} bytes, got {len(record)}"
        raise ValueError(msg)
    # The size of a working copy: the comparison warps a query to it, so a record claiming
    # a larger one (corrupt, or not ours) must not make it allocate that much.
    # (A very thin picture's working copy can be a few pixels high: its record holds no box.)
    width, height = (int(v) for v in np.frombuffer(record[:4], "<u2"))
    if not (1 <= width <= WORK_SIDE and 1 <= height <= WORK_SIDE):
        msg = f"a {KIND_GRID} value of a {width} x {height} working copy (1 to {WORK_SIDE})"
        raise ValueError(msg)
    return record


def aligned_distance(
    query: npt.NDArray[np.uint8], matrix: npt.NDArray[np.float64], record: bytes
) -> tuple[int, int] | None:
    """Smallest distance between a registered picture's box hashes (``record``) and the same
    boxes of ``query`` (its grey working copy) warped into the registered picture's frame by
    ``matrix`` (2 x 3, query to registered working-copy pixels), with the box's number;
    None if no box hashed on both sides is covered by the query.

    Bits are compared as region-PDQ hashes are, so the distance of unrelated content is
    about as spread as between any two unrelated pictures' hashes, whatever made the
    keypoints agree.
    """
    width, height, mask = (int(v) for v in np.frombuffer(record[:6], "<u2"))
    if width < 8 or height < 8:
        return None
    inverse = cv2.invertAffineTransform(matrix)
    q_height, q_width = query.shape
    best: tuple[int, int] | None = None
    warped: _F32 | None = None
    for k, box in enumerate(GRID_BOXES):
        if not mask >> k & 1:
            continue
        left, top, right, bottom = _pixel_box(box, width, height)
        # Coverage: the box's sample points mapped back into the query. 32 a side: with 8,
        # a box covered 94 % along one side counted only 7 of 8 columns and was never
        # compared (a 30 % crop lost a tenth of its matches).
        xs = np.linspace(left + 0.5, right - 0.5, _COVERAGE_SAMPLES)
        ys = np.linspace(top + 0.5, bottom - 0.5, _COVERAGE_SAMPLES)
        points = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        back = points @ inverse[:, :2].T + inverse[:, 2]
        inside = (back[:, 0] >= -0.5) & (back[:, 0] <= q_width - 0.5)
        inside &= (back[:, 1] >= -0.5) & (back[:, 1] <= q_height - 0.5)
        if float(inside.mean()) < GRID_COVERAGE:
            continue
        if warped is None:
            warped = np.asarray(
                cv2.warpAffine(
                    query.astype(np.float32),
                    matrix.astype(np.float64),
                    (width, height),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE,
                ),
                np.float32,
            )
        # Not gated by quality, unlike the stored side: the registered box has content, and
        # a copy's box can fall below the gate after blurring or re-encoding (a flat road
        # texture with one hashed box lost its WebP, padded and turned copies); a flat box
        # of another picture compares as about random bits, far from any threshold.
        dct = _dct16(warped[top:bottom, left:right], gated=False)
        if dct is None:
            continue
        stored = np.frombuffer(record, np.uint8, 32, 6 + 32 * k)
        distance = int(np.bitwise_count(np.frombuffer(_bits(dct), np.uint8) ^ stored).sum())
        if best is None or distance < best[0]:
            best = (distance, k)
    return best


def decode_working_copy(value: str) -> npt.NDArray[np.uint8]:
    """The pixels of a ``grey1`` value; raises ``ValueError`` if it is not one."""
    size, _, payload = value.partition(":")
    width_text, _, height_text = size.partition("x")
    width, height = int(width_text), int(height_text)
    raw = base64.b64decode(payload, validate=True)
    if width <= 0 or height <= 0 or len(raw) != width * height:
        msg = f"a {KIND_WORKING_COPY} value of {width} x {height} holds {len(raw)} bytes"
        raise ValueError(msg)
    return np.frombuffer(raw, np.uint8).reshape(height, width)


def _working_copy_value(pixels: npt.NDArray[np.uint8]) -> str:
    height, width = pixels.shape
    return f"{width}x{height}:" + base64.b64encode(pixels.tobytes()).decode("ascii")


def _pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    left, top, right, bottom = box
    return (round(left * width), round(top * height), round(right * width), round(bottom * height))


def region_hashes(grey: _F32) -> list[tuple[str, str]]:
    """``(region, hex)`` for the whole picture and its trimmed version, each also mirrored."""
    height, width = grey.shape
    boxes: list[tuple[str, Box]] = [("all", (0, 0, width, height))]
    trimmed = trim_box(grey)
    if trimmed != (0, 0, width, height):
        boxes.append(("trim", trimmed))
    out: list[tuple[str, str]] = []
    for name, (left, top, right, bottom) in boxes:
        dct = _dct16(grey[top:bottom, left:right])
        if dct is None:
            continue
        out.append((name, _hex(dct)))
        out.append((f"{name}{VARIANT_SEP}flip", _hex(_mirror_lr(dct))))
    return out


def _rotation_regions(base: str) -> list[str]:
    return [f"{base}{VARIANT_SEP}{ROTATION_VARIANT}{angle:+g}" for angle in ROTATIONS]


def _rotation_hashes(
    pdq_down: _Floats | None, grey: _F32 | None, size: tuple[int, int]
) -> dict[str, str]:
    """The ``full~rotate±k`` and ``all~rotate±k`` hashes, each of :data:`ROTATIONS`.

    ``full``: PDQ's 64 x 64 downsample turned back (:func:`_turned_back`). ``all``: the
    working copy turned back, then hashed as ``all`` is. Turning the working copy costs
    about 0.5 ms more per item than turning its downsample, but the 64 x 64 downsample has
    already blurred fine repetitive textures into patterns that a turn of the picture
    changes, not just turns: on the benchmark's 200 copies turned 2-3 degrees, recall
    0.985 turning the downsample, 0.990 turning the working copy (the same draws). Both
    run only for items whose plain hashes matched nothing.
    """
    out: dict[str, str] = {}
    if pdq_down is not None:
        turned = _turned_back(pdq_down, size)
        codes = pdq_bits_from_downsamples(turned)
        out.update(zip(_rotation_regions("full"), (c.hex() for c in codes), strict=True))
    if grey is not None:
        height, width = grey.shape
        centre = ((width - 1) / 2.0, (height - 1) / 2.0)
        pictures = np.empty((len(ROTATIONS), height, width), np.float32)
        for k, angle in enumerate(ROTATIONS):
            # OpenCV's positive angles turn counter-clockwise, as Pillow's do; undo the
            # item's. Edge pixels repeated into the corners, as in _turned_back.
            matrix = cv2.getRotationMatrix2D(centre, -angle, 1.0)
            cv2.warpAffine(
                grey,
                matrix,
                (width, height),
                dst=pictures[k],  # written in place: no copy of each turned picture
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        # OpenCV's area resampling is _area_matrix's average (equal to ~1e-5), in half the
        # time of the two matrix products.
        down = np.stack(
            [cv2.resize(p, (_DOWN, _DOWN), interpolation=cv2.INTER_AREA) for p in pictures]
        )
        dct = _DCT_MATRIX32 @ down @ _DCT_MATRIX32.T
        out.update(zip(_rotation_regions("all"), (_hex(d) for d in dct), strict=True))
    return out


@lru_cache(maxsize=64)
def _turn_matrices(width: int, height: int) -> tuple[npt.NDArray[np.float64], ...]:
    """Affine maps turning a 64 x 64 downsample of a ``width`` x ``height`` picture back by
    each of :data:`ROTATIONS` (see :func:`_turned_back`)."""
    squeeze = np.diag([_DOWN / width, _DOWN / height])
    centre = np.array([(_DOWN - 1) / 2.0, (_DOWN - 1) / 2.0])
    out = []
    for angle in ROTATIONS:
        # OpenCV's positive angles turn counter-clockwise, as Pillow's do; undo the item's.
        rotation = cv2.getRotationMatrix2D((0.0, 0.0), -angle, 1.0)[:, :2]
        linear = squeeze @ rotation @ np.linalg.inv(squeeze)
        matrix = np.hstack([linear, (centre - linear @ centre)[:, None]])
        matrix.flags.writeable = False
        out.append(matrix)
    return tuple(out)


def _turned_back(down: npt.NDArray[np.floating], size: tuple[int, int]) -> _F32:
    """A 64 x 64 downsample of a ``size`` picture, turned back by each of :data:`ROTATIONS`
    (``len(ROTATIONS)`` x 64 x 64).

    The downsample is already low-pass, so turning it is nearly the same as turning the
    picture and downsampling again, at a fraction of the cost (on the benchmark's 200
    rotated copies: recall 0.980, against 0.990 turning the decoded picture). The picture
    is squeezed into 64 x 64, so a turn of the picture is ``S R S^-1`` on the downsample
    (``S`` the squeeze).
    The corners that turning brings in repeat the edge pixels: closer to the work's hash
    than a black fill (median 6 vs 20 bits for 3-degree copies on the benchmark corpus).
    Single precision: OpenCV's cubic warp is several times faster than in double, and the
    values differ by far less than the gaps between DCT coefficients that decide the bits.
    """
    source = np.ascontiguousarray(down, np.float32)
    out = np.empty((len(ROTATIONS), _DOWN, _DOWN), np.float32)
    for k, matrix in enumerate(_turn_matrices(*size)):
        out[k] = cv2.warpAffine(
            source,
            matrix,
            (_DOWN, _DOWN),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return out


def trim_box(grey: _F32) -> Box:
    """The picture without uniform borders on each side (the whole picture if none).

    A border line is a row or column whose grey levels hardly vary and whose mean is close
    to the outermost line's: letterbox bars, padding, a flat screenshot canvas.
    """
    height, width = grey.shape
    top = _border(grey, height)
    bottom = height - _border(grey[::-1, :], height)
    left = _border(grey.T, width)
    right = width - _border(grey[:, ::-1].T, width)
    if bottom - top < height // 4 or right - left < width // 4:
        return (0, 0, width, height)
    return (left, top, right, bottom)


def _border(lines: _F32, size: int) -> int:
    """How many leading rows of ``lines`` are border (0 if thinner than the minimum)."""
    limit = int(size * _BORDER_MAX)
    head = lines[:limit]
    if head.shape[0] == 0 or float(head[0].std()) > _BORDER_STD:
        return 0  # most pictures: the outermost line is not flat, nothing to measure
    means = head.mean(axis=1)
    flat = (head.std(axis=1) <= _BORDER_STD) & (np.abs(means - means[0]) <= _BORDER_MEAN)
    count = int(flat.size if flat.all() else np.argmin(flat))
    if count < max(1, math.ceil(size * _BORDER_MIN)):
        return 0
    # One more line: JPEG and resampling smear the edge between border and picture.
    return min(count + 1, limit)


def local_features(grey: _F32) -> str | None:
    """Base64 of up to :data:`LOCAL_FEATURES` ORB keypoints (x, y, descriptor), or None."""
    return _local_value(_grey_bytes(grey)) or None


def _grey_bytes(grey: _F32) -> npt.NDArray[np.uint8]:
    return np.ascontiguousarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))


def _local_value(pixels: npt.NDArray[np.uint8]) -> str:
    """The ``orb1`` value of 8-bit grey ``pixels``; empty when ORB finds no keypoint."""
    if min(pixels.shape) <= 2 * _ORB_EDGE:
        # No point is _ORB_EDGE from every border, so no keypoint; and OpenCV's pyramid
        # fails an assertion on a picture a few pixels high (a 3000 x 10 banner).
        return ""
    keypoints, descriptors = _orb().detectAndCompute(pixels, None)
    if descriptors is None or len(keypoints) == 0:
        return ""
    records = np.zeros((len(keypoints), LOCAL_RECORD), np.uint8)
    # OpenCV's own copy of the positions (single precision, as stored in the keypoints, so
    # the same values as reading ``kp.pt`` one keypoint at a time, 20 times faster).
    xy = np.asarray(cv2.KeyPoint.convert(keypoints), np.float64)
    quarter = np.clip(np.rint(xy * 4.0), 0, 65535).astype("<u2")
    records[:, :4] = quarter.view(np.uint8).reshape(-1, 4)
    records[:, 4:] = descriptors
    return base64.b64encode(records.tobytes()).decode("ascii")


def decode_local_features(value: str) -> tuple[_Floats, npt.NDArray[np.uint8]]:
    """Positions (n x 2, working-copy pixels) and descriptors (n x 32) of an ``orb1`` value."""
    raw = np.frombuffer(base64.b64decode(value, validate=True), np.uint8)
    records = raw[: raw.size - raw.size % LOCAL_RECORD].reshape(-1, LOCAL_RECORD)
    xy = records[:, :4].copy().view("<u2").astype(np.float64) / 4.0
    return xy.reshape(-1, 2), np.ascontiguousarray(records[:, 4:])


@lru_cache(maxsize=1)
def _orb() -> cv2.ORB:
    # Fixed parameters: registration and checking must extract the same way. A 1.3 pyramid
    # step over 5 levels covers copies shrunk or enlarged up to about 3x; FAST threshold 10
    # keeps keypoints on soft paintings as well as on photographs.
    cv2.setNumThreads(1)
    return cv2.ORB.create(
        nfeatures=LOCAL_FEATURES,
        scaleFactor=1.3,
        nlevels=5,
        edgeThreshold=_ORB_EDGE,
        patchSize=_ORB_EDGE,
        fastThreshold=_FAST_THRESHOLD,
    )


def _working_grey(image: Image.Image) -> _F32:
    """Grey copy with the longer side :data:`WORK_SIDE` (smaller pictures kept as they are)."""
    grey = image if image.mode == "L" else image.convert("L")
    width, height = grey.size
    scale = WORK_SIDE / max(width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = grey.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(grey, dtype=np.float32)


def _dct16(pixels: _F32, *, gated: bool = True, decided: bool = True) -> _Floats | None:
    """The 16 x 16 low-frequency DCT of a 64 x 64 area average, or None if too small or
    too flat.

    ``gated``: a whole-picture code, left out below :data:`MIN_QUALITY` or, if ``decided``,
    when :func:`_decided` says its bits are not. Not ``decided`` (a ``pdqg1`` box): kept
    at either PDQ's quality or a decided :func:`bit_margin`, see :func:`grid_record`.
    """
    height, width = pixels.shape
    if height < 8 or width < 8:
        return None
    down: _Floats = (_area_matrix(height) @ pixels @ _area_matrix(width).T).astype(np.float64)
    result: _Floats = _DCT_MATRIX @ down @ _DCT_MATRIX.T
    if not gated:
        return result
    if decided:
        return result if _quality(down) >= MIN_QUALITY and _decided(down, result) else None
    if _quality(down) >= MIN_QUALITY or bit_margin(result) >= MIN_MARGIN:
        return result
    return None


def bit_margin(dct: npt.NDArray[np.floating]) -> float:
    """How firmly a 16 x 16 DCT block decides its 256 bits: the median distance of its
    coefficients from the median that is their threshold (see :data:`MIN_MARGIN`).

    Written here because it reads the coefficients before they become bits; PDQ's own
    quality measure (:func:`_quality`) looks at the pixels' gradients instead, and a picture
    can be full of faint gradients whose low frequencies are all but zero. A hash's mirrored
    and turned variants are kept or left out with it: they are the same picture's.
    """
    flat = np.asarray(dct, dtype=np.float64).ravel()
    return float(np.median(np.abs(flat - _threshold(flat))))


def _decided(down: _Floats, dct: _Floats | None = None) -> bool:
    """Whether a 64 x 64 downsample (``dct``: its 16 x 16 DCT, if already computed) gives
    a hash whose bits are decided: :func:`bit_margin` at least :data:`MIN_MARGIN`, for the
    whole picture and for its interior (without the outer :data:`INTERIOR_INSET` of each
    side, see there)."""
    whole = _DCT_MATRIX @ down.astype(np.float64) @ _DCT_MATRIX.T if dct is None else dct
    if bit_margin(whole) < MIN_MARGIN:
        return False
    inset = INTERIOR_INSET
    inner = np.ascontiguousarray(down[inset : _DOWN - inset, inset : _DOWN - inset], np.float32)
    interior = _dct16(inner, gated=False)
    return interior is not None and bit_margin(interior) >= MIN_MARGIN


def _quality(down: _Floats) -> int:
    """PDQ's quality measure (see :mod:`consentry.fingerprint.pdq`)."""
    vertical = np.trunc((down[:-1, :] - down[1:, :]) * 100.0 / 255.0)
    horizontal = np.trunc((down[:, :-1] - down[:, 1:]) * 100.0 / 255.0)
    return min(int(np.abs(vertical).sum() + np.abs(horizontal).sum()) // 90, 100)


def _mirror_lr(dct: _Floats) -> _Floats:
    # Mirroring an axis multiplies horizontal frequency k (index k - 1) by (-1) ** k.
    sign = np.where(np.arange(_DCT) % 2 == 1, 1.0, -1.0)
    result: _Floats = dct * sign[None, :]
    return result


def _hex(dct: npt.NDArray[np.floating]) -> str:
    return _bits(dct).hex()


def _bits(dct: npt.NDArray[np.floating]) -> bytes:
    flat = dct.ravel()
    packed: npt.NDArray[np.uint8] = np.packbits(flat > _threshold(flat))
    return packed.tobytes()


def _threshold(flat: npt.NDArray[np.floating]) -> float:
    """The value a coefficient must exceed to give a 1 bit: the lower median, as PDQ's."""
    return float(np.partition(flat, flat.size // 2 - 1)[flat.size // 2 - 1])


@lru_cache(maxsize=256)
def _area_matrix(size: int) -> _F32:
    """64 x ``size``: output ``i`` averages input over ``[i, i + 1) * size / 64``."""
    edges = np.arange(_DOWN + 1, dtype=np.float64) * size / _DOWN
    starts = np.arange(size, dtype=np.float64)
    low = np.maximum(edges[:-1, None], starts[None, :])
    high = np.minimum(edges[1:, None], starts[None, :] + 1.0)
    weights = np.clip(high - low, 0.0, None) * (_DOWN / size)
    result: _F32 = weights.astype(np.float32)
    result.flags.writeable = False
    return result


def _make_dct_matrix() -> _Floats:
    rows = np.arange(1, _DCT + 1, dtype=np.float64)[:, None]
    cols = np.arange(_DOWN, dtype=np.float64)[None, :]
    matrix = math.sqrt(2.0 / _DOWN) * np.cos(math.pi / (2 * _DOWN) * rows * (2 * cols + 1))
    matrix.flags.writeable = False
    return matrix


_DCT_MATRIX: Final = _make_dct_matrix()
_DCT_MATRIX32: Final = _DCT_MATRIX.astype(np.float32)
