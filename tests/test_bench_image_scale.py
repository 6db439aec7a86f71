"""The registry-scale benchmark's "before" configuration is the index as it was, and only
inside its block."""

from __future__ import annotations

import numpy as np
import pytest
from bench import bench_image_scale

from consentry.index import hamming

OWNER = np.array([3, 3, 5], np.uint32)
QUERY = np.array([0, 1, 0], np.int64)
DISTANCE = np.array([4, 9, 2], np.int64)
WORKS = np.array([3, 5], np.int64)


def _votes() -> list[int]:
    return list(hamming._nearest_votes(OWNER, QUERY, DISTANCE, 2, WORKS).tolist())


def _inside_before() -> tuple[int, list[int]]:
    with bench_image_scale._before():
        return hamming.LOCAL_BUCKET_FACTOR, _votes()


def _fail_inside_before() -> None:
    with bench_image_scale._before():
        raise RuntimeError


def test_before_ranks_by_matched_keypoints_with_the_old_cap_and_restores() -> None:
    shipped_votes = hamming._nearest_votes
    assert _votes() == [1, 1]  # keypoint 0's nearest is in work 5, keypoint 1's in work 3
    assert _inside_before() == (256, [0, 0])
    with pytest.raises(RuntimeError):
        _fail_inside_before()  # restored on the way out of a failed run too
    assert hamming.LOCAL_BUCKET_FACTOR == 64
    assert hamming._nearest_votes is shipped_votes
    assert _votes() == [1, 1]


def _factor_inside(name: str) -> int:
    with bench_image_scale._configuration(name):
        return hamming.LOCAL_BUCKET_FACTOR


def test_each_configuration_sets_its_cap_and_restores_it() -> None:
    assert _factor_inside("shipped") == 64
    assert _factor_inside("before") == 256
    assert _factor_inside("cap 128") == 128
    assert hamming.LOCAL_BUCKET_FACTOR == 64
