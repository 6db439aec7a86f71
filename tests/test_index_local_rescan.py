"""The local stage rescans a chosen work whose found pairs agree, but too few (guided
matching).

The lookup skips overfull chunk buckets (:data:`~consentry.index.hamming.LOCAL_BUCKET_FACTOR`)
to stay fast as the registry grows. A work of generic texture keeps most of its descriptors
in such buckets, so the lookup finds few of its pairs: enough to choose it, too few to verify
it. :data:`~consentry.index.hamming.RESCAN_VERIFIED` compares such a work's keypoints with
the whole query and fits again.
"""

from __future__ import annotations

import numpy as np
import pytest

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.image import KIND_LOCAL
from consentry.index import hamming
from consentry.index.hamming import CHUNKS, LEGACY_MIN_INLIERS, MIN_BUCKET_CAP, HammingIndex
from test_index_local_speed import orb_value, popcount

KEYPOINTS = 60
#: Keypoints of the work that the capped lookup still finds (each in buckets of its own):
#: enough to choose the work (at least the inlier threshold) ...
VISIBLE = 12
#: ... but two of them are elsewhere in the query (a chance agreement of descriptors), so
#: those pairs alone give fewer inliers than the threshold.
MISPLACED = 2
FILLER_WORKS = 160


def _crowded_index(
    rng: np.random.Generator, misplaced: tuple[int, ...] = (MISPLACED,)
) -> tuple[HammingIndex, list[Fingerprint]]:
    """One work per entry of ``misplaced`` ("own", then "second"), each of 60 keypoints,
    48 of them hidden: every one of their 16 chunk values is shared by more than
    :data:`MIN_BUCKET_CAP` filler codes (far from every query keypoint otherwise), so the
    capped lookup skips all their buckets. The query holds every work's keypoints, the
    first ``misplaced[i]`` of work i's visible ones at other places."""
    names = ("own", "second")[: len(misplaced)]
    places = [rng.uniform(20, 236, (KEYPOINTS, 2)) for _ in names]
    codes = [rng.integers(0, 256, (KEYPOINTS, 32), dtype=np.uint8) for _ in names]
    hidden = np.concatenate([c[VISIBLE:] for c in codes])
    # Filler row j takes its chunk c from hidden code (j + c) mod H: every chunk value of
    # every hidden code is in MIN_BUCKET_CAP + 1 rows, with as few rows as possible (the
    # cap grows with the index), and each row is far from every code but in one chunk.
    rows = len(hidden) * (MIN_BUCKET_CAP + 1)
    source = (np.arange(rows)[:, None] + np.arange(CHUNKS)[None, :]) % len(hidden)
    chunks = hidden.view(np.uint16).reshape(len(hidden), CHUNKS)
    fillers = np.ascontiguousarray(chunks[source, np.arange(CHUNKS)[None, :]]).view(np.uint8)
    index = HammingIndex()
    for k, part in enumerate(np.array_split(fillers, FILLER_WORKS)):
        positions = rng.uniform(20, 236, (len(part), 2))
        index.add(f"filler{k}", [Fingerprint(KIND_LOCAL, orb_value(positions, part), "all")], k + 1)
    query_xy = []
    for i, (name, xy, code) in enumerate(zip(names, places, codes, strict=True)):
        index.add(name, [Fingerprint(KIND_LOCAL, orb_value(xy, code), "all")], FILLER_WORKS + i + 1)
        moved = xy.copy()
        moved[: misplaced[i]] = rng.uniform(20, 236, (misplaced[i], 2))  # random places
        query_xy.append(moved)
        # Fillers are random beyond their shared chunk: none is within the radius.
        assert int(popcount(fillers[:, None, :], code[None, :3, :]).min()) > hamming.LOCAL_RADIUS
    value = orb_value(np.concatenate(query_xy), np.concatenate(codes))
    return index, [Fingerprint(KIND_LOCAL, value, "all")]


def test_the_capped_lookup_sees_only_the_visible_keypoints() -> None:
    index, query = _crowded_index(np.random.default_rng(5))
    own = query[0]
    _, descriptors = hamming.decode_local_features(own.value)
    q, owner, _, _ = index.local_codes.search(
        descriptors, hamming.LOCAL_RADIUS, flips=False, bucket_factor=hamming.LOCAL_BUCKET_FACTOR
    )
    own_ordinal = index._work_ids.index("own")
    assert sorted(set(q[owner == own_ordinal].tolist())) == list(range(VISIBLE))


def test_rescan_verifies_the_chosen_work_with_all_its_keypoints() -> None:
    index, query = _crowded_index(np.random.default_rng(5))
    found = index.match(query)
    assert [m.work_id for m in found] == ["own"]
    assert found[0].stage == "local"
    assert found[0].evidence["inliers"] == KEYPOINTS - MISPLACED


def test_without_rescan_the_visible_keypoints_are_too_few(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same index verified with the lookup's pairs alone: 12 pairs, 10 of them
    agreeing, fewer inliers than a work without box hashes needs, so the test above
    depends on the rescan."""
    assert VISIBLE - MISPLACED < LEGACY_MIN_INLIERS <= VISIBLE
    monkeypatch.setattr(hamming, "RESCAN_VERIFIED", False)
    index, query = _crowded_index(np.random.default_rng(5))
    assert index.match(query) == []


def test_a_work_whose_found_pairs_barely_agree_is_not_rescanned() -> None:
    """Eight of the twelve visible keypoints elsewhere: the found pairs agree with fewer
    than RESCAN_FROM_INLIERS inliers, so the work is not rescanned (an unrelated work
    does as well by chance), and not found, although all its pairs would verify it."""
    assert VISIBLE - 8 < hamming.RESCAN_FROM_INLIERS
    index, query = _crowded_index(np.random.default_rng(5), misplaced=(8,))
    assert index.match(query) == []


def test_only_the_most_promising_works_are_rescanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two works both worth a rescan (9 and 6 of their found pairs agree): only the one
    with more inliers is rescanned, unless RESCAN_MAX_WORKS allows both."""
    assert hamming.RESCAN_MAX_WORKS == 1
    assert hamming.RESCAN_FROM_INLIERS <= VISIBLE - 6 < VISIBLE - 3 < LEGACY_MIN_INLIERS
    index, query = _crowded_index(np.random.default_rng(6), misplaced=(3, 6))
    assert [m.work_id for m in index.match(query)] == ["own"]
    monkeypatch.setattr(hamming, "RESCAN_MAX_WORKS", 2)
    index, query = _crowded_index(np.random.default_rng(6), misplaced=(3, 6))
    assert sorted(m.work_id for m in index.match(query)) == ["own", "second"]


def _brute_force(
    codes: np.ndarray,
    owners: np.ndarray,
    queries: np.ndarray,
    wanted: set[int],
    radius: int,
    segments: list[range],
) -> list[tuple[int, int, int, int]]:
    """For each query, work and segment: the closest code within the radius, the lowest
    entry of equally close ones, as (query, work, distance, entry)."""
    d = popcount(queries[:, None, :], codes[None, :, :])
    out = []
    for k in range(len(queries)):
        for work in wanted:
            for segment in segments:
                mine = [e for e in segment if int(owners[e]) == work and d[k, e] <= radius]
                if mine:
                    e = min(mine, key=lambda e: (int(d[k, e]), e))
                    out.append((k, work, int(d[k, e]), e))
    return sorted(out)


def test_closest_of_finds_each_query_codes_closest_code_of_the_chosen_works() -> None:
    """Whatever the buckets hold: for every query code and chosen work, its closest code in
    each segment (main first, then delta, as :meth:`CodeIndex.search_ranked` numbers
    entries), ties to the lowest entry, also when a work's codes were added in two parts
    (its ordinal reused: owners out of order)."""
    rng = np.random.default_rng(9)
    base = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    codes = np.repeat(base, 40, axis=0)
    # Flip 0-25 bits of each copy: some within the radius of its base, some beyond; many
    # copies equally close to a query, so that ties are broken.
    for row in codes:
        for bit in rng.choice(256, int(rng.integers(0, 26)), replace=False):
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    # The main segment's owners out of order (a work added again), the delta's in order.
    owners = rng.integers(0, 5, len(codes)).astype(np.uint32)
    owners[215:] = np.sort(owners[215:])
    index = hamming.CodeIndex()
    aux = np.arange(len(codes), dtype=np.uint32)
    index.add(codes[:215], owners[:215], aux[:215])
    index.seal()  # the main segment
    index.add(codes[215:], owners[215:], aux[215:])
    index.seal()  # small enough to stay a delta segment
    assert (len(index.main), len(index.delta)) == (215, 25)
    queries = base.copy()
    wanted = np.array([1, 4], np.int64)
    q, owner, got_aux, dist, rank = index.closest_of(queries, wanted, 20)
    got = sorted(zip(q.tolist(), owner.tolist(), dist.tolist(), rank.tolist(), strict=True))
    expected = _brute_force(codes, owners, queries, {1, 4}, 20, [range(215), range(215, 240)])
    assert got == expected
    assert {entry for *_, entry in expected} & set(range(215, 240))  # both segments answer
    assert len(got) > len(queries)  # several works per query
    assert np.array_equal(got_aux, aux[rank])  # entries numbered as inserted here
    assert index.closest_of(queries, np.array([7], np.int64), 20)[0].tolist() == []


def test_the_distance_matrix_counts_every_differing_bit() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (7, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    b[0] = a[0]
    b[1] = ~a[1]
    words = [np.ascontiguousarray(x.view(np.uint64).T) for x in (a, b)]
    got = hamming._distance_matrix(*words)
    assert got.shape == (7, 5)
    assert np.array_equal(got, popcount(a[:, None, :], b[None, :, :]))
    assert (got[0, 0], got[1, 1]) == (0, 256)  # 256 does not overflow
