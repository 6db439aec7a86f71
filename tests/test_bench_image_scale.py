"""The registry-scale benchmark's configurations ("before", "session 12", "cap N") set the
index as it was, and only inside their block."""

from __future__ import annotations

import numpy as np
import pytest
from bench import bench_image_scale

from consentry.index import hamming
from consentry.index.hamming import HammingIndex

OWNER = np.array([3, 3, 5], np.uint32)
QUERY = np.array([0, 1, 0], np.int64)
DISTANCE = np.array([4, 9, 2], np.int64)
WORKS = np.array([3, 5], np.int64)


def _votes() -> list[int]:
    return list(hamming._nearest_votes(OWNER, QUERY, DISTANCE, 2, WORKS).tolist())


def _inside_before() -> tuple[int, list[int], bool]:
    with bench_image_scale._before():
        return hamming.LOCAL_BUCKET_FACTOR, _votes(), hamming.RESCAN_VERIFIED


def _fail_inside_before() -> None:
    with bench_image_scale._before():
        raise RuntimeError


def test_before_ranks_by_matched_keypoints_with_the_old_cap_and_restores() -> None:
    shipped_votes = hamming._nearest_votes
    assert _votes() == [1, 1]  # keypoint 0's nearest is in work 5, keypoint 1's in work 3
    assert _inside_before() == (256, [0, 0], False)
    with pytest.raises(RuntimeError):
        _fail_inside_before()  # restored on the way out of a failed run too
    assert hamming.LOCAL_BUCKET_FACTOR == 64
    assert hamming._nearest_votes is shipped_votes
    assert hamming.RESCAN_VERIFIED
    assert _votes() == [1, 1]


def _inside(name: str) -> tuple[int, bool, int]:
    """Cap, rescan, and the inliers ``match`` asks for, inside a configuration."""
    asked: list[int] = []

    def scored(self: HammingIndex, fingerprints: object, **kw: int) -> list[object]:
        asked.append(kw.get("min_inliers", hamming.MIN_INLIERS))
        return []

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HammingIndex, "scored", scored)
        with bench_image_scale._configuration(name):
            HammingIndex().match([])
            return hamming.LOCAL_BUCKET_FACTOR, hamming.RESCAN_VERIFIED, asked[0]


def test_each_configuration_sets_its_cap_rescan_and_inliers_and_restores_them() -> None:
    shipped_match = HammingIndex.match
    assert _inside("shipped") == (64, True, 12)
    assert _inside("session 12") == (64, False, 10)
    assert _inside("before") == (256, False, 10)
    assert _inside("cap 128") == (128, True, 12)
    assert (hamming.LOCAL_BUCKET_FACTOR, hamming.RESCAN_VERIFIED) == (64, True)
    assert HammingIndex.match is shipped_match
