"""Geometric verification of local-feature matches (RANSAC similarity transform, OpenCV).

Descriptor matches alone are weak evidence: two unrelated pictures share a few similar ORB
descriptors by chance. A true copy, even cropped, padded, rotated, scaled or partly covered,
has many matches that agree on one similarity transform (rotation, uniform scale,
translation). This module:

1. keeps, for each query keypoint, its nearest registered keypoint of the candidate work;
2. fits a similarity transform with RANSAC (``cv2.estimateAffinePartial2D``, reprojection
   threshold :data:`REPROJECTION_PX` in working-copy pixels);
3. counts the inliers, and rejects degenerate transforms (scale outside :data:`SCALE_RANGE`).

Source: Fischler and Bolles, "Random sample consensus" (CACM 24(6), 1981); OpenCV's
``estimateAffinePartial2D`` documentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["REPROJECTION_PX", "SCALE_RANGE", "Verified", "fit_similarity", "verify_similarity"]

#: RANSAC inlier threshold, in pixels of the 256-pixel working copy.
REPROJECTION_PX: Final = 4.0
#: Scale factors (query to registered) accepted as a plausible copy.
SCALE_RANGE: Final = (0.2, 6.0)
_MIN_POINTS: Final = 4
# At most this many RANSAC samples. A similarity needs 2 points per sample, so 200 samples
# find a transform with 99 % confidence down to 15 % inliers among the matches. Most fits
# are of candidate works that do not match at all, which run to this limit: on the
# benchmark 200 instead of 500 cut the local stage by 13 % with every family's recall and
# the false-match count unchanged; 100 lost one 20 %-crop match.
_RANSAC_ITERATIONS: Final = 200
_CONFIDENCE: Final = 0.99
_SEED: Final = 20240611


@dataclass(frozen=True, slots=True)
class Verified:
    """Outcome of one verification: inliers among ``matches`` and the transform's parameters
    (``matrix``: the 2 x 3 affine matrix, row by row, from query to registered working-copy
    pixels)."""

    inliers: int
    matches: int
    scale: float
    rotation_degrees: float
    matrix: tuple[float, float, float, float, float, float]


def verify_similarity(
    query_xy: npt.NDArray[np.float64],
    registered_xy: npt.NDArray[np.float64],
    distances: npt.NDArray[np.int64],
) -> Verified | None:
    """RANSAC similarity between matched points (one row per match); None if none fits.

    ``distances`` (Hamming, per match) decide which registered point a query point keeps
    when it matched several.
    """
    # 1. One match per query point (its closest), then one per registered point.
    order = np.lexsort((distances, query_xy[:, 1], query_xy[:, 0]))
    q, r, d = query_xy[order], registered_xy[order], distances[order]
    first = np.ones(len(q), bool)
    first[1:] = np.any(q[1:] != q[:-1], axis=1)
    q, r, d = q[first], r[first], d[first]
    order = np.lexsort((d, r[:, 1], r[:, 0]))
    q, r = q[order], r[order]
    first = np.ones(len(r), bool)
    first[1:] = np.any(r[1:] != r[:-1], axis=1)
    return fit_similarity(q[first], r[first])


def fit_similarity(
    query_xy: npt.NDArray[np.float64], registered_xy: npt.NDArray[np.float64]
) -> Verified | None:
    """RANSAC similarity between one-to-one matched points, as :func:`verify_similarity`
    after its step 1 (the index does that step for all candidate works at once, which is
    much cheaper than once per work). The points must be ordered by registered position
    (x, then y): RANSAC draws its samples by position in the list.
    """
    if len(query_xy) < _MIN_POINTS:
        return None
    # 2. Fit with RANSAC. OpenCV's RANSAC draws from its global RNG: seed it so that the
    # same item gives the same answer on every run.
    cv2.setRNGSeed(_SEED)
    fitted: tuple[Any, Any] = cv2.estimateAffinePartial2D(
        query_xy.astype(np.float32),
        registered_xy.astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=REPROJECTION_PX,
        maxIters=_RANSAC_ITERATIONS,
        confidence=_CONFIDENCE,
    )
    matrix, mask = fitted
    if matrix is None or mask is None:
        return None
    # 3. Inliers of a plausible transform.
    scale = math.hypot(float(matrix[0, 0]), float(matrix[1, 0]))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return None
    rotation = math.degrees(math.atan2(float(matrix[1, 0]), float(matrix[0, 0])))
    a, b, c, d, e, f = (float(v) for v in matrix.ravel())
    return Verified(int(mask.sum()), len(query_xy), scale, rotation, (a, b, c, d, e, f))
