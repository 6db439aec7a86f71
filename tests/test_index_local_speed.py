"""The local stage's cheaper bookkeeping keeps exactly what it kept before: the same
candidate works, the same one-to-one keypoint pairs in the same order, the same distances."""

from __future__ import annotations

import base64
from collections.abc import Callable

import numpy as np
import pytest

from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.image import (
    DRAFT_FRACTION,
    KIND_LOCAL,
    ImageFingerprinter,
    _grey_bytes,
    _local_value,
    _orb,
    _working_grey,
    decode_local_features,
)
from consentry.fingerprint.imageload import load_scaled
from consentry.fingerprint.pdq import PDQ_WORKING_SIZE
from consentry.index import hamming, verify
from consentry.index.hamming import LOCAL_RADIUS, MIN_BUCKET_CAP, CodeIndex, HammingIndex
from consentry.index.verify import Verified
from test_match_cli import jpeg, picture

_Fit = Callable[[np.ndarray, np.ndarray], Verified | None]


def orb_value(xy: np.ndarray, descriptors: np.ndarray) -> str:
    """An ``orb1`` value: quarter-pixel positions and descriptors, 36 bytes a keypoint."""
    records = np.zeros((len(xy), 36), np.uint8)
    records[:, :4] = np.rint(xy * 4).astype("<u2").view(np.uint8).reshape(-1, 4)
    records[:, 4:] = descriptors
    return base64.b64encode(records.tobytes()).decode("ascii")


def popcount(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unpackbits(a ^ b, axis=-1).sum(axis=-1)


@pytest.mark.parametrize("path", ["table", "bits", "sort"])
def test_distinct_counts_by_table_by_bits_or_by_sorting(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path != "table":  # too long a key range for the table
        monkeypatch.setattr(hamming, "_DENSE_SPAN", 0)
        monkeypatch.setattr(hamming, "_DENSE_FACTOR", 0)
    if path == "sort":  # and too many works for the bits
        monkeypatch.setattr(hamming, "_BITSET_FACTOR", 0)
    rng = np.random.default_rng(1)
    major = rng.integers(0, 50, 5000).astype(np.int64)
    major[major == 7] = 49  # a work absent among others
    # Keypoints across three 64-bit words, many repeated pairs, the last keypoint included.
    minor = rng.integers(0, 160, 5000).astype(np.int64)
    minor[:3] = [0, 63, 159]
    values, counts = hamming._distinct_counts(major, minor, 160)
    pairs = {(int(a), int(b)) for a, b in zip(major, minor, strict=True)}
    expected = sorted({a for a, _ in pairs})
    assert values.tolist() == expected
    assert counts.tolist() == [sum(1 for a, _ in pairs if a == w) for w in expected]


def test_closest_per_group_is_the_first_of_a_sort_by_group_then_closeness() -> None:
    rng = np.random.default_rng(2)
    group = rng.integers(0, 300, 4000).astype(np.int64)
    group[group % 7 == 0] = 5  # absent groups, and one crowded group
    closeness = rng.integers(0, 50, 4000).astype(np.int64)  # many ties
    picked = hamming._closest_per_group(group, closeness, 300)
    order = np.lexsort((closeness, group))
    first = np.ones(len(order), bool)
    first[1:] = group[order][1:] != group[order][:-1]
    reference = order[first]
    # Tied positions are interchangeable (the same match found twice): compare what they
    # hold, in group order.
    assert group[picked].tolist() == group[reference].tolist()
    assert closeness[picked].tolist() == closeness[reference].tolist()


def test_distance_counts_every_differing_bit_up_to_all_256() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    b[0] = a[0]  # 0 bits
    b[1] = ~a[1]  # all 256 bits: the largest sum of the four 64-bit counts
    b[2] = a[2] ^ np.uint8(0x80)  # one bit a byte: 32
    got = hamming._distance(a, b)
    assert got.tolist() == popcount(a, b).tolist()
    assert got[:3].tolist() == [0, 256, 32]
    # One query against many rows (broadcast), as a single-code search does.
    assert hamming._distance(a[:1], b).tolist() == popcount(a[:1], b).tolist()


def test_search_ranked_over_main_and_delta_equals_brute_force() -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (2200, 32), dtype=np.uint8)
    for i in range(2000, 2200, 3):  # near copies in the delta of codes in the main segment
        codes[i] = codes[i - 2000]
        codes[i, rng.integers(0, 32, 3)] ^= np.uint8(0x11)
    index = CodeIndex()
    index.add(codes[:2000], np.arange(2000, dtype=np.uint32), np.arange(2000, dtype=np.uint32))
    index.seal()
    index.add(codes[2000:], np.arange(2000, 2200, dtype=np.uint32), np.zeros(200, np.uint32))
    index.seal()
    assert len(index.main) == 2000
    assert len(index.delta) == 200
    queries = codes[0:200:3]
    q, owner, aux, dist, rank = index.search_ranked(queries, 31, unique=False)
    found = set(zip(q.tolist(), owner.tolist(), dist.tolist(), rank.tolist(), strict=True))
    d = popcount(queries[:, None, :], codes[None, :, :])
    near = np.nonzero(d <= 31)
    expected = {(int(k), int(e), int(d[k, e]), int(e)) for k, e in zip(*near, strict=True)}
    assert found == expected  # complete within 31, ranks main first then delta
    assert (aux[owner < 2000] == owner[owner < 2000]).all()
    # Only the delta holds a code: the main segment's empty results do not shift anything.
    alone = CodeIndex()
    alone.add(codes[:1], np.zeros(1, np.uint32), np.full(1, 9, np.uint32))
    q, owner, aux, dist, rank = alone.search_ranked(codes[:1], 0)
    assert (q.tolist(), owner.tolist(), aux.tolist(), dist.tolist(), rank.tolist()) == (
        [0],
        [0],
        [9],
        [0],
        [0],
    )


def _synthetic_works(
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """A query's keypoints and works that share many of them, with the ties the reduction
    must break as before: query keypoints at one position, registered keypoints equally
    close to one query keypoint, registered keypoints at one position."""
    nq = 90
    q_xy = rng.integers(40, 900, (nq, 2)) / 4.0
    q_xy[80:] = q_xy[:10]  # ten positions held by two query keypoints each
    q_desc = rng.integers(0, 256, (nq, 32), dtype=np.uint8)
    works = []
    for w in range(7):
        angle = np.radians(rng.uniform(-30, 30))
        scale = rng.uniform(0.7, 1.4)
        turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shown = rng.choice(nq, 55, replace=False)
        xy = q_xy[shown] @ turn.T + rng.uniform(0, 30, 2)
        if w == 6:  # keypoints that agree, positions that do not: few inliers
            xy = rng.integers(0, 1000, (55, 2)) / 4.0
        xy = np.clip(np.round(xy * 4) / 4 + rng.integers(-2, 3, xy.shape) / 4, 0, 1000)
        desc = q_desc[shown].copy()
        for row in desc:  # 0-20 bits off: within the radius, some sharing few chunks
            for bit in rng.choice(256, int(rng.integers(0, 21)), replace=False):
                row[bit // 8] ^= np.uint8(1 << (bit % 8))
        # Equally close twins elsewhere, and other keypoints at one registered position,
        # as close to other query keypoints (all exact copies: distance 0).
        twins_xy = rng.integers(0, 1000, (8, 2)) / 4.0
        desc[10:18] = q_desc[shown[10:18]]
        shared_xy = xy[10:18].copy()
        shared_desc = q_desc[rng.choice(nq, 8)].copy()
        noise_xy = rng.integers(0, 1000, (20, 2)) / 4.0
        noise_desc = rng.integers(0, 256, (20, 32), dtype=np.uint8)
        works.append(
            (
                np.concatenate([xy, twins_xy, shared_xy, noise_xy]),
                np.concatenate([desc, desc[:8], shared_desc, noise_desc]),
            )
        )
    return q_xy, q_desc, works


def test_local_stage_fits_the_pairs_verify_similarity_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The index reduces the raw matches of all candidate works at once; per work, the fit
    must see exactly the points, in the order, that :func:`verify_similarity` passes on
    from the same raw matches listed in index order."""
    rng = np.random.default_rng(6)
    q_xy, q_desc, works = _synthetic_works(rng)
    fillers = [
        (rng.integers(0, 1000, (80, 2)) / 4.0, rng.integers(0, 256, (80, 32), dtype=np.uint8))
        for _ in range(25)
    ]
    index = HammingIndex()
    registered = [*works[:4], *fillers]
    for ordinal, (xy, desc) in enumerate(registered):
        index.add(f"W{ordinal}", [Fingerprint(KIND_LOCAL, orb_value(xy, desc), "all")], 1)
    index.local_codes.seal()
    for ordinal, (xy, desc) in enumerate(works[4:], len(registered)):  # into the delta
        index.add(f"W{ordinal}", [Fingerprint(KIND_LOCAL, orb_value(xy, desc), "all")], 1)
        registered.append((xy, desc))
    index.local_codes.seal()
    assert len(index.local_codes.delta) > 0

    # The raw matches, as the index finds them: within the radius and equal on one chunk
    # (none of these buckets is overfull), listed by entry number, i.e. insertion order.
    all_xy = np.concatenate([xy for xy, _ in registered])
    all_desc = np.concatenate([desc for _, desc in registered])
    owner = np.concatenate([np.full(len(xy), w) for w, (xy, _) in enumerate(registered)])
    chunks_q, chunks_r = q_desc.view("<u2"), all_desc.view("<u2")
    assert np.unique(chunks_r, return_counts=True)[1].max() <= MIN_BUCKET_CAP
    d = popcount(q_desc[:, None, :], all_desc[None, :, :])
    share = (chunks_q[:, None, :] == chunks_r[None, :, :]).any(axis=2)
    query_of, entry = np.nonzero(((d <= LOCAL_RADIUS) & share).T)[::-1]

    fitted: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"index": [], "reference": []}

    def recorder(name: str, fit: _Fit) -> _Fit:
        def record(a: np.ndarray, b: np.ndarray) -> Verified | None:
            fitted[name].append((a.copy(), b.copy()))
            return fit(a, b)

        return record

    monkeypatch.setattr(hamming, "fit_similarity", recorder("index", hamming.fit_similarity))
    monkeypatch.setattr(verify, "fit_similarity", recorder("reference", verify.fit_similarity))
    prints = [Fingerprint(KIND_LOCAL, orb_value(q_xy, q_desc), "all")]
    found = {m.work_id: m for m in index.scored(prints, min_inliers=1)}

    votes = {w: len(set(query_of[owner[entry] == w].tolist())) for w in range(len(registered))}
    # Verified first: the works holding the nearest match of the most query keypoints
    # (ties vote for each work), then those with the most distinct matched keypoints.
    nearest = {k: int(d[k, entry[query_of == k]].min()) for k in set(query_of.tolist())}
    near_votes = {
        w: len(
            {
                int(k)
                for k, e in zip(query_of, entry, strict=True)
                if owner[e] == w and d[k, e] == nearest[int(k)]
            }
        )
        for w in range(len(registered))
    }
    candidates = sorted(
        (w for w, n in votes.items() if n >= 8), key=lambda w: (-near_votes[w], -votes[w], w)
    )
    assert len(candidates) >= 6  # the seven works but the one without agreeing positions
    expected: dict[str, Verified | None] = {}
    for w in candidates[: hamming.MAX_VERIFIED]:
        mine = owner[entry] == w
        expected[f"W{w}"] = verify.verify_similarity(
            q_xy[query_of[mine]], all_xy[entry[mine]], d[query_of[mine], entry[mine]]
        )
    assert len(fitted["index"]) == len(fitted["reference"]) == len(expected)
    for (qa, ra), (qb, rb) in zip(fitted["index"], fitted["reference"], strict=True):
        assert np.array_equal(qa, qb)
        assert np.array_equal(ra, rb)
    for work, verified in expected.items():
        if verified is None or verified.inliers < hamming.LEGACY_MIN_INLIERS:
            assert work not in found
            continue
        assert found[work].evidence == {
            "inliers": verified.inliers,
            "keypoint_matches": verified.matches,
            "scale": round(verified.scale, 3),
            "rotation_degrees": round(verified.rotation_degrees, 1),
        }
    assert any(work in found for work in expected)


def test_keypoint_positions_are_those_orb_reports() -> None:
    """The ``orb1`` value holds each keypoint's position as ORB reports it (``kp.pt``),
    rounded to quarter pixels, whichever way the positions are read out."""
    data = jpeg(picture(3))
    scaled = load_scaled(data, fit=PDQ_WORKING_SIZE, min_fraction=DRAFT_FRACTION, grey=True)
    pixels = _grey_bytes(_working_grey(scaled.image))
    keypoints, _ = _orb().detectAndCompute(pixels, None)
    assert len(keypoints) > 50
    xy, _ = decode_local_features(_local_value(pixels))
    reported = np.array([kp.pt for kp in keypoints], np.float64)
    assert np.array_equal(xy, np.clip(np.rint(reported * 4.0), 0, 65535) / 4.0)
    query = ImageFingerprinter().query_fingerprint(data, "image")
    assert [f.value for f in query if f.kind == KIND_LOCAL] == [_local_value(pixels)]
