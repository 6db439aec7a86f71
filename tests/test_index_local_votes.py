"""Which works the local stage verifies: nearest-neighbour votes first.

A query's keypoints fall within the lookup radius of many registered keypoints; counting, per
work, the query keypoints matched at all let works full of generic corners take every one of
the :data:`~consentry.index.hamming.MAX_VERIFIED` places. Counting the query keypoints whose
*nearest* match is in a work ranks the work the query was made from first.
"""

from __future__ import annotations

import numpy as np
import pytest

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.image import KIND_LOCAL
from consentry.index import hamming
from consentry.index.hamming import LOCAL_RADIUS, MAX_VERIFIED, HammingIndex
from test_index_local_speed import orb_value, popcount

KEYPOINTS = 60


def _flip(desc: np.ndarray, bits: int, rng: np.random.Generator, *, first_bytes: int) -> np.ndarray:
    """``desc`` with ``bits`` distinct bits flipped in each row, all within its first
    ``first_bytes`` bytes (the other chunks stay equal, so the lookup finds every row)."""
    out = desc.copy()
    for row in out:
        for bit in rng.choice(8 * first_bytes, bits, replace=False):
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


def _index_with_decoys(rng: np.random.Generator) -> tuple[HammingIndex, list[Fingerprint]]:
    """The query's own work registered last, after MAX_VERIFIED + 2 decoys that match every
    query keypoint as often (30 bits away, within the radius) but nowhere near the same
    place, so that counting matched keypoints ties them all and the decoys, registered
    first, take every place."""
    xy = rng.uniform(20, 236, (KEYPOINTS, 2))
    desc = rng.integers(0, 256, (KEYPOINTS, 32), dtype=np.uint8)
    index = HammingIndex()
    decoys = MAX_VERIFIED + 2
    for k in range(decoys):
        decoy = _flip(desc, 30, rng, first_bytes=16)
        assert int(popcount(decoy, desc).max()) <= LOCAL_RADIUS
        index.add(
            f"decoy{k}",
            [
                Fingerprint(
                    KIND_LOCAL, orb_value(rng.uniform(20, 236, (KEYPOINTS, 2)), decoy), "all"
                )
            ],
            k + 1,
        )
    own = _flip(desc, 2, rng, first_bytes=32)
    index.add("own", [Fingerprint(KIND_LOCAL, orb_value(xy, own), "all")], decoys + 1)
    return index, [Fingerprint(KIND_LOCAL, orb_value(xy, desc), "all")]


def test_the_work_holding_the_nearest_matches_is_verified_first() -> None:
    index, query = _index_with_decoys(np.random.default_rng(11))
    found = index.match(query)
    assert [m.work_id for m in found] == ["own"]
    assert found[0].stage == "local"
    assert found[0].evidence["inliers"] == KEYPOINTS


def test_without_the_votes_the_decoys_take_every_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same index ranked by matched keypoints alone (every vote zero): the work is
    never verified, so the test above depends on the votes."""

    def no_votes(
        owner: np.ndarray, query: np.ndarray, distance: np.ndarray, queries: int, works: np.ndarray
    ) -> np.ndarray:
        return np.zeros(len(works), np.int64)

    monkeypatch.setattr(hamming, "_nearest_votes", no_votes)
    index, query = _index_with_decoys(np.random.default_rng(11))
    assert index.match(query) == []


def test_nearest_votes_count_each_query_keypoint_once_per_work_at_its_nearest() -> None:
    rng = np.random.default_rng(12)
    n, queries = 3000, 50
    owner = rng.integers(0, 40, n).astype(np.uint32)
    query = rng.integers(0, queries, n).astype(np.int64)
    distance = rng.integers(0, 41, n).astype(np.int64)  # many ties, and repeated rows
    works = np.unique(owner[::3]).astype(np.int64)  # some voted works are not candidates
    votes = hamming._nearest_votes(owner, query, distance, queries, works)
    best = {k: int(distance[query == k].min()) for k in set(query.tolist())}
    expected = [
        len(
            {
                int(k)
                for k, o, d in zip(query, owner, distance, strict=True)
                if o == w and d == best[int(k)]
            }
        )
        for w in works.tolist()
    ]
    assert votes.tolist() == expected
    assert hamming._nearest_votes(owner, query, distance, queries, works[:0]).tolist() == []
