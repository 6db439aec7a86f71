"""Image false-match rate: a direct count by provenance, and a per-pair impostor tail model.

Why a separate benchmark: :mod:`bench.bench_image` draws registered works and distractors
from one shuffled corpus, so a "distractor" can be an edited variant of a registered picture
from the same package (the same sprite, the same landscape with a logo). Removing those with
the matcher under test would remove exactly the false matches it should count. Here the
criterion is independent of the matcher: **provenance**.

1. The corpus (:func:`bench.imagecorpus.entries`) is split by package *family*
   (``wesnoth-1.16-data`` and ``wesnoth-music`` are one) into two groups of about equal size
   (:func:`bench.fmrstats.balanced_split`). Two folds: each group in turn is registered in a
   real :class:`~consentry.index.hamming.HammingIndex` and every picture of the other group
   is a distractor, untransformed and under several transformation families of
   :mod:`bench.bench_image`. Every picture is registered once and a distractor once.
2. Direct count: every distractor query through ``HammingIndex.match`` (the operating point);
   k false matches in n queries with a Clopper-Pearson 95 % interval, per transformation.
3. Per-stage impostor scores: for the global stage the exact smallest Hamming distance of
   every (query, registered work) pair over the code variants ``match`` compares (numpy
   popcount, all pairs); for the local stage the RANSAC inlier count of every candidate pair
   ``match`` verifies (``scored`` with the global stage switched off and an inlier threshold
   of 1). Tail models fitted to them (normal lower tail of distances, geometric upper tail
   of inliers), with observed vs fitted counts, give per-pair probabilities at any
   threshold; per query ~ registry size x per pair (independent pairs assumed).
4. The false matches that remain are listed (files, packages, stage, score, geometry).
5. Recall/FMR trade-off: a subset of registered pictures under every transformation family of
   :mod:`bench.bench_image` (positives), decided offline at other thresholds from the same
   lax scores (the offline decision at the operating point is checked against ``match``).
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import numpy.typing as npt
from PIL import Image

from bench.bench_image import FAMILIES, _jpeg
from bench.fmrstats import (
    DistanceTail,
    GeometricTail,
    balanced_split,
    clopper_pearson,
    geometric_tail_fit,
    per_query,
    widening_tail_fit,
)
from bench.imagecorpus import ROOT, Entry, entries
from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.image import (
    KIND_GRID,
    KIND_PDQ,
    KIND_REGION,
    KIND_WORKING_COPY,
    ImageFingerprinter,
    decode_grid,
    decode_working_copy,
)
from consentry.index.alignment import (
    TAG_ALL,
    TAG_PDQ,
    TAG_TRIM,
    implied_aligned_distance,
    small_rotation,
    transform_key,
)
from consentry.index.hamming import (
    ALIGNED_THRESHOLD,
    GLOBAL_THRESHOLD,
    GLOBAL_UNCONFIRMED,
    MIN_INLIERS,
    UNCONFIRMED_INLIERS,
    GlobalCandidate,
    GlobalRule,
    HammingIndex,
    LocalRule,
)

SEED = 20251126
#: Transformations every distractor goes through ("" = untransformed).
DISTRACTOR_FAMILIES = (
    "",
    "jpeg q90..20",
    "resize x0.25..x2",
    "crop 20 %",
    "pad 30 %",
    "overlay text/logo",
    "rotate 10 deg",
    "screenshot",
)
#: Registry sizes the per-query estimate is given for (besides the tested one).
REGISTRIES = (10**4, 10**5, 10**6)
TARGET = 1e-6
NEAR = 48  # impostor pairs within this global distance are listed
LOCAL_GRID = (8, 10, 12, 14, 16, 18, 20, 24, 28, 32)
# The local stage's rule: (fewest inliers with the aligned comparison, largest aligned
# distance, inliers enough without it); an aligned distance of -1 = inliers alone, the rule
# before pdqg1.
OPERATING = (MIN_INLIERS, ALIGNED_THRESHOLD, UNCONFIRMED_INLIERS)
RULE_GRID = (
    *((t, d, UNCONFIRMED_INLIERS) for t in (8, 10, 12) for d in (40, 50, 60)),
    (12, -1, 12),
    (16, -1, 16),
)
# The global stage's rule: (threshold, distance matching without the aligned comparison,
# largest aligned distance); unconfirmed = threshold is the rule before the comparison.
GLOBAL_OPERATING = (GLOBAL_THRESHOLD, GLOBAL_UNCONFIRMED, ALIGNED_THRESHOLD)
GLOBAL_GRID = (
    *((GLOBAL_THRESHOLD, u, ALIGNED_THRESHOLD) for u in (8, 12, 16, 20, 24)),
    (GLOBAL_THRESHOLD, GLOBAL_UNCONFIRMED, 40),
    (GLOBAL_THRESHOLD, GLOBAL_UNCONFIRMED, 60),
    *((t, t, ALIGNED_THRESHOLD) for t in (16, 20, 24, 28, 30)),
)
#: Impostor pairs this close (any code pair with an implied alignment) get an aligned
#: distance too, to measure how the box hashes of unrelated pictures agree when their
#: whole-picture codes come close.
NEAR_ALIGNED = 76
#: ... at most this many works a query, the closest.
NEAR_ALIGNED_WORKS = 40
CACHE = ROOT / "image_fmr.pickle"
#: Pairs of files from different package families that really show the same picture,
#: established by looking at every pair the operating point matched (2026-11-26, see
#: docs/image-false-matches.md): the same NASA/USGS maps and Hubble photographs ship in a
#: game and in a planetarium. Their matches are true, not false; they are reported apart.
#: (The Moon disc vs the Moon's map, same subject in another projection, is *not* listed.)
SHARED_CONTENT = frozenset(
    frozenset(pair)
    for pair in (
        ("textures/stktex_planetEarth_a.png", "textures/earth_cmap.png"),
        ("textures/stktex_planetEarth_a.png", "textures/earthmap.png"),
        ("textures/stktex_planetMars_a.png", "textures/mars.png"),
        ("tracks/xr591/galaxy1.jpg", "nebulae/default/n5426.png"),
    )
)
_MISSING = 999  # distance of a pair with no comparable codes

# Query code slots, as HammingIndex._match_global groups them: PDQ and region-PDQ codes are
# compared only with their own family; small-rotation variants only when nothing else matched.
_SLOTS = {"pdq": 8, "pdq-rot": 4, "pdqr": 4, "pdqr-rot": 4}


@dataclass
class Probe:
    """What one query produced: its global codes, ``match`` and the lax local scores."""

    fold: int
    entry: int
    family: str
    positive: bool
    codes: dict[str, npt.NDArray[np.uint8]]  # slot -> (k, 32)
    matches: list[tuple[int, str, float, dict[str, object]]]  # ordinal, stage, score, evidence
    # ordinal -> (inliers, scale, rotation, aligned distance or -1 when no box compared)
    local: dict[int, tuple[int, float, float, int]] = field(default_factory=dict)
    # ordinal -> the codes the global stage would try (HammingIndex.global_candidates)
    global_: dict[int, list[GlobalCandidate]] = field(default_factory=dict)
    # (ordinal, distance, aligned distance) of the closest code pair with an implied
    # alignment, for every work within NEAR_ALIGNED (distractors only)
    near: list[tuple[int, int, int]] = field(default_factory=list)
    error: str = ""


# -- workers (forked after the indexes are built) ----------------------------------------------

_INDEXES: list[HammingIndex] = []
_ORDINAL: list[dict[str, int]] = []
# Per fold: every registered whole-picture code (n, 32), its work ordinal and its tag; the
# works' box hash records (None: none).
_REG_ALL: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], list[str]]] = []
_GRIDS: list[list[bytes | None]] = []


def transformed(path: str, family: str, seed: int) -> bytes:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    return _jpeg(rgb, 95) if family == "" else FAMILIES[family](rgb, random.Random(seed))


def register(path: str) -> list[Fingerprint]:
    # What registration stores, minus the query-only working copy it never computes.
    return ImageFingerprinter().fingerprint(Path(path).read_bytes(), "image")


def _query_codes(prints: list[Fingerprint]) -> dict[str, npt.NDArray[np.uint8]]:
    lists: dict[str, list[bytes]] = {slot: [] for slot in _SLOTS}
    for fp in prints:
        if fp.kind not in (KIND_PDQ, KIND_REGION):
            continue
        rotated = small_rotation(fp.region) is not None
        slot = ("pdq" if fp.kind == KIND_PDQ else "pdqr") + ("-rot" if rotated else "")
        lists[slot].append(bytes.fromhex(fp.value))
    return {
        s: np.frombuffer(b"".join(v), np.uint8).reshape(-1, 32)[: _SLOTS[s]]
        for s, v in lists.items()
    }


def _probe(job: tuple[int, int, str, str, bool]) -> Probe:
    fold, entry, path, family, positive = job
    seed = zlib.crc32(f"{Path(path).name}|{family}|{SEED}".encode())
    try:
        data = transformed(path, family, seed)
        prints = ImageFingerprinter().query_fingerprint(data, "image")
    except Exception as exc:  # a query that cannot be fingerprinted matches nothing
        return Probe(fold, entry, family, positive, {}, [], error=repr(exc))
    index, ordinal = _INDEXES[fold], _ORDINAL[fold]
    found = [(ordinal[m.work_id], m.stage, m.score, m.evidence) for m in index.match(prints)]
    candidates = {ordinal[w]: c for w, c in index.global_candidates(prints).items()}
    near = [] if positive else near_aligned(prints, fold)
    # The global stage off (threshold -1), every threshold of the local stage at its laxest:
    # every candidate the local stage verifies, with its inliers and aligned distance.
    local = {}
    lax = {"min_inliers": 1, "aligned_threshold": 256, "unconfirmed_inliers": 1}
    for m in index.scored(prints, global_threshold=-1, **lax):
        ev = m.evidence
        aligned = ev.get("aligned_distance")
        local[ordinal[m.work_id]] = (
            int(str(ev["inliers"])),
            float(str(ev["scale"])),
            float(str(ev["rotation_degrees"])),
            -1 if aligned is None else int(str(aligned)),
        )
    codes = _query_codes(prints)
    return Probe(fold, entry, family, positive, codes, found, local, candidates, near)


def near_aligned(prints: list[Fingerprint], fold: int) -> list[tuple[int, int, int]]:
    """For every work of the fold with a code pair within :data:`NEAR_ALIGNED` bits that
    implies an alignment (PDQ with PDQ, region with region, not on a registered ``trim``
    code), the closest such pair's distance and the aligned distance it gives (-1: no box
    covered). Exhaustive over the fold's codes, unlike the index's search, which is
    complete only to 31 bits."""
    reg, owner, tags = _REG_ALL[fold]
    copy = [f for f in prints if f.kind == KIND_WORKING_COPY]
    names, codes, families = [], [], []
    for fp in prints:
        if fp.kind in (KIND_PDQ, KIND_REGION):
            names.append(fp.region)
            codes.append(bytes.fromhex(fp.value))
            families.append(0 if fp.kind == KIND_PDQ else 1)
    if not codes or not copy or len(reg) == 0:
        return []
    query = np.frombuffer(b"".join(codes), np.uint8).reshape(-1, 32)
    xor = query.view(np.uint64)[:, None, :] ^ reg.view(np.uint64)[None, :, :]
    dist = np.bitwise_count(xor).sum(axis=2)
    reg_family = np.array([0 if t == TAG_PDQ else 1 for t in tags])
    usable = np.array([t != TAG_TRIM for t in tags])
    ok = (np.array(families)[:, None] == reg_family[None, :]) & usable[None, :]
    dist = np.where(ok, dist, 10**6)
    qi, ri = np.nonzero(dist <= NEAR_ALIGNED)
    best: dict[int, tuple[int, int, int]] = {}
    for i, j in sorted(zip(qi.tolist(), ri.tolist(), strict=True), key=lambda p: dist[p]):
        work = int(owner[j])
        if work in best or transform_key(names[i], tags[j]) is None:
            continue
        best[work] = (int(dist[i, j]), i, j)
    pixels = None
    out = []
    for work, (d, i, j) in sorted(best.items(), key=lambda w: w[1][0])[:NEAR_ALIGNED_WORKS]:
        grid = _GRIDS[fold][work]
        if grid is None:
            continue
        if pixels is None:
            pixels = decode_working_copy(copy[0].value)
        aligned = implied_aligned_distance(names[i], tags[j], pixels, grid)
        out.append((work, d, -1 if aligned is None else aligned))
    return out


# -- exact global distances --------------------------------------------------------------------


def _stack(codes: list[npt.NDArray[np.uint8]], slots: int) -> tuple[npt.NDArray[np.uint64], ...]:
    """(n, slots, 4) uint64 codes and an (n, slots) validity mask."""
    out = np.zeros((len(codes), slots, 32), np.uint8)
    valid = np.zeros((len(codes), slots), bool)
    for i, c in enumerate(codes):
        out[i, : len(c)] = c[:slots]
        valid[i, : len(c)] = True
    return out.view(np.uint64), valid


def min_distances(
    queries: list[npt.NDArray[np.uint8]],
    registered: list[npt.NDArray[np.uint8]],
    q_slots: int,
    r_slots: int,
) -> npt.NDArray[np.int16]:
    """(queries, works) smallest Hamming distance between any query code and any registered
    code of the work; :data:`_MISSING` where either side has none."""
    q, q_ok = _stack(queries, q_slots)
    r, r_ok = _stack(registered, r_slots)
    best = np.full((len(q), len(r)), _MISSING, np.int16)
    block = 256
    for s in range(q_slots):
        for t in range(r_slots):
            ok_r = r_ok[:, t]
            for lo in range(0, len(q), block):
                xor = q[lo : lo + block, s, None, :] ^ r[None, :, t, :]
                dist = np.bitwise_count(xor).sum(axis=2, dtype=np.int16)
                ok = q_ok[lo : lo + block, s, None] & ok_r[None, :]
                dist[~ok] = _MISSING
                np.minimum(best[lo : lo + block], dist, out=best[lo : lo + block])
    return best


def _registered_codes(prints: list[Fingerprint]) -> dict[str, npt.NDArray[np.uint8]]:
    pdq = [bytes.fromhex(f.value) for f in prints if f.kind == KIND_PDQ and f.region == "full"]
    pdqr = [
        bytes.fromhex(f.value)
        for region in ("all", "trim")
        for f in prints
        if f.kind == KIND_REGION and f.region == region
    ]
    return {
        "pdq": np.frombuffer(b"".join(pdq), np.uint8).reshape(-1, 32),
        "pdqr": np.frombuffer(b"".join(pdqr), np.uint8).reshape(-1, 32),
    }


def _all_codes(
    works: list[list[Fingerprint]],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], list[str]]:
    tag_of = {(KIND_PDQ, "full"): TAG_PDQ, (KIND_REGION, "all"): TAG_ALL}
    tag_of[(KIND_REGION, "trim")] = TAG_TRIM
    codes, owner, tags = [], [], []
    for ordinal, prints in enumerate(works):
        for fp in prints:
            tag = tag_of.get((fp.kind, fp.region))
            if tag is not None:
                codes.append(bytes.fromhex(fp.value))
                owner.append(ordinal)
                tags.append(tag)
    array = np.frombuffer(b"".join(codes), np.uint8).reshape(-1, 32)
    return array, np.array(owner, np.int64), tags


def _grid_of(prints: list[Fingerprint]) -> bytes | None:
    grids = [f for f in prints if f.kind == KIND_GRID]
    return decode_grid(grids[0].value) if grids else None


def global_distances(
    probes: list[Probe], reg: list[dict[str, npt.NDArray[np.uint8]]]
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    """Per (query, work): the smallest distance over the non-rotated codes, and over the
    small-rotation codes (tried by ``match`` only when no work matched the first)."""
    out = []
    for suffix in ("", "-rot"):
        parts = [
            min_distances(
                [p.codes.get(f + suffix, np.empty((0, 32), np.uint8)) for p in probes],
                [r[f] for r in reg],
                _SLOTS[f + suffix],
                1 if f == "pdq" else 2,
            )
            for f in ("pdq", "pdqr")
        ]
        out.append(np.minimum(*parts))
    return out[0], out[1]


def local_ok(inliers: int, aligned: int, rule: tuple[int, int, int]) -> bool:
    """Whether a verified pair matches under ``rule`` (see :data:`OPERATING`)."""
    return LocalRule(*rule).accepts(inliers, aligned if aligned >= 0 else None)


def decide(
    candidates: dict[int, list[GlobalCandidate]],
    local: dict[int, tuple[int, float, float, int]],
    global_rule: tuple[int, int, int],
    rule: tuple[int, int, int],
) -> tuple[int, str]:
    """``match``'s decision for one query at other thresholds: (best work ordinal, stage), or
    (-1, "") when nothing matches. Global stage first (plain codes, then the small-rotation
    ones), then local; best = smallest distance / most inliers."""
    accepts = GlobalRule(*global_rule).accepts
    for rotated in (False, True):
        found = [
            (c.distance, ordinal)
            for ordinal, cs in candidates.items()
            for c in cs
            if (c.rotation is not None) == rotated and accepts(c)
        ]
        if found:
            return min(found)[1], "pdq"
    best, most = -1, 0
    for ordinal, (inliers, _, _, aligned) in local.items():
        if not local_ok(inliers, aligned, rule):
            continue
        if inliers > most or (inliers == most and ordinal < best):
            best, most = ordinal, inliers
    return best, "local" if best >= 0 else ""


# -- the run -----------------------------------------------------------------------------------


def _log(text: str) -> None:
    print(f"bench image_fmr: {text}", file=sys.stderr, flush=True)


def run(quick: bool) -> str:
    started_cpu = time.process_time()
    all_entries = entries()
    counts = Counter(e.family for e in all_entries)
    groups = balanced_split(counts)
    rng = random.Random(SEED)
    members: list[list[int]] = []
    for g in groups:
        idx = [i for i, e in enumerate(all_entries) if e.family in g]
        if quick:  # a smoke run: a sample of each group
            idx = sorted(rng.sample(idx, min(len(idx), 120)))
        members.append(idx)
    distractor_families = DISTRACTOR_FAMILIES[:3] if quick else DISTRACTOR_FAMILIES
    n_pos = 15 if quick else 100
    workers = os.cpu_count() or 1
    ctx = get_context("fork")  # the workers inherit the indexes built below

    registered_paths = [str(all_entries[i].path) for m in members for i in m]
    with ctx.Pool(workers) as pool:
        reg_prints = pool.map(register, registered_paths, chunksize=8)
    prints_of = dict(zip([i for m in members for i in m], reg_prints, strict=True))
    _log(f"registered {len(reg_prints)} pictures")
    _INDEXES.clear()
    _ORDINAL.clear()
    _REG_ALL.clear()
    _GRIDS.clear()
    reg_codes: list[list[dict[str, npt.NDArray[np.uint8]]]] = []
    for m in members:
        index = HammingIndex()
        for ordinal, i in enumerate(m):
            index.add(f"W{i}", prints_of[i], ordinal + 1)
        _INDEXES.append(index)
        _ORDINAL.append({f"W{i}": o for o, i in enumerate(m)})
        reg_codes.append([_registered_codes(prints_of[i]) for i in m])
        _REG_ALL.append(_all_codes([prints_of[i] for i in m]))
        _GRIDS.append([_grid_of(prints_of[i]) for i in m])

    jobs: list[tuple[int, int, str, str, bool]] = []
    for fold, m in enumerate(members):
        others = members[1 - fold]
        jobs += [
            (fold, i, str(all_entries[i].path), f, False)
            for f in distractor_families
            for i in others
        ]
        chosen = sorted(random.Random(SEED + fold).sample(m, min(n_pos, len(m))))
        jobs += [(fold, i, str(all_entries[i].path), f, True) for f in FAMILIES for i in chosen]
    with ctx.Pool(workers) as pool:
        probes = pool.map(_probe, jobs, chunksize=16)
    _log(f"probed {len(probes)} queries")

    dist: dict[int, tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]] = {}
    rows_of: dict[int, list[int]] = {}
    for fold in (0, 1):
        rows = [k for k, p in enumerate(probes) if p.fold == fold]
        rows_of[fold] = rows
        dist[fold] = global_distances([probes[k] for k in rows], reg_codes[fold])
    _log("global distances computed")
    at = {k: (fold, r) for fold, rows in rows_of.items() for r, k in enumerate(rows)}
    report = _Report(all_entries, groups, members, probes, dist, at, distractor_families)
    # The raw scores, for re-reading without re-running (bench/.corpus is not committed).
    with (CACHE.with_suffix(".quick.pickle") if quick else CACHE).open("wb") as fh:
        pickle.dump(report, fh)
    text = report.render(quick)
    cpu = time.process_time() - started_cpu
    return f"{text}\n\nMain process CPU time {cpu:.0f} s (workers not counted).\n"


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Models:
    """The per-pair models a rule's false-match rate is computed from (see the report)."""

    g_tail: DistanceTail  # whole-picture distances of impostor pairs
    confirm: Callable[[int], float]  # P(aligned <= a) for impostor pairs with close codes
    l_tail: GeometricTail  # inliers of impostor pairs
    a_tail: DistanceTail  # aligned distances of impostor pairs the local stage verified

    def global_pair(self, global_rule: tuple[int, int, int]) -> float:
        """P(a pair matches in the global stage) = F(unconfirmed) + (F(threshold) -
        F(unconfirmed)) x P(aligned <= a | close), F the conservative distance tail."""
        threshold, unconfirmed, aligned = global_rule
        f_t = self.g_tail.conservative(threshold)
        if unconfirmed >= threshold:
            return f_t
        f_u = self.g_tail.conservative(unconfirmed)
        return f_u + (f_t - f_u) * self.confirm(aligned)

    def local_pair(self, rule: tuple[int, int, int]) -> float:
        """P(I >= t) x P(aligned <= d) + P(I >= unconfirmed)."""
        t_local, t_aligned, t_unconfirmed = rule
        confirmed = 0.0
        if t_aligned >= 0 and t_local < t_unconfirmed:
            confirmed = self.l_tail.survival(t_local) * self.a_tail.conservative(t_aligned)
        return confirmed + self.l_tail.survival(t_unconfirmed)


@dataclass
class _Report:
    entries: list[Entry]
    groups: tuple[frozenset[str], frozenset[str]]
    members: list[list[int]]
    probes: list[Probe]
    dist: dict[int, tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]]
    at: dict[int, tuple[int, int]]
    distractor_families: tuple[str, ...]

    def distances(self, k: int) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]]:
        fold, row = self.at[k]
        plain, rot = self.dist[fold]
        return plain[row], rot[row]

    def shared(self, k: int, ordinal: int) -> bool:
        """Whether query k's picture and its fold's work ``ordinal`` are listed in
        :data:`SHARED_CONTENT` (file paths compared by their ending)."""
        p = self.probes[k]
        a = self.entries[p.entry].source
        b = self.entries[self.members[p.fold][ordinal]].source
        return any(
            (a.endswith(x) and b.endswith(y)) or (a.endswith(y) and b.endswith(x))
            for x, y in (tuple(pair) for pair in SHARED_CONTENT)
        )

    def false_match(
        self, k: int, global_rule: tuple[int, int, int], rule: tuple[int, int, int]
    ) -> bool:
        """Whether distractor query k matches a work it shares no content with."""
        ordinal = self.decision(k, global_rule, rule)[0]
        return ordinal >= 0 and not self.shared(k, ordinal)

    def decision(
        self, k: int, global_rule: tuple[int, int, int], rule: tuple[int, int, int]
    ) -> tuple[int, str]:
        return decide(self.probes[k].global_, self.probes[k].local, global_rule, rule)

    def render(self, quick: bool) -> str:
        dis = [k for k, p in enumerate(self.probes) if not p.positive]
        pos = [k for k, p in enumerate(self.probes) if p.positive]
        sizes = [len(m) for m in self.members]
        # Pairs: every distractor query against every work of its fold's registry.
        pairs = sum(len(self.members[self.probes[k].fold]) for k in dis)
        registry = round(sum(sizes) / 2)
        lines = [
            "## Image false-match rate (provenance split, per-pair tail model)",
            "",
            f"Corpus: {len(self.entries)} pictures from {len({e.package for e in self.entries})}"
            " Debian packages (bench/imagecorpus.py), split by package family into two groups: "
            + "; ".join(
                f"group {g + 1} ({sizes[g]} pictures{', sampled' if quick else ''}): "
                + ", ".join(sorted(self.groups[g]))
                for g in (0, 1)
            )
            + ". Two folds: each group registered in turn (a real HammingIndex), every picture "
            f"of the other group a distractor, {len(self.distractor_families)} ways "
            f"({', '.join(f or 'untransformed' for f in self.distractor_families)}): "
            f"**{len(dis):,} distractor queries, {pairs:,} (query, registered work) pairs**. "
            f"Operating point: global distance <= {GLOBAL_UNCONFIRMED} of 256 bits, or <= "
            f"{GLOBAL_THRESHOLD} with the aligned box hashes within {ALIGNED_THRESHOLD} bits; "
            "local stage "
            f">= {MIN_INLIERS} RANSAC inliers with the aligned box hashes within "
            f"{ALIGNED_THRESHOLD} bits, or >= {UNCONFIRMED_INLIERS} inliers alone. Positives "
            f"for the trade-off: {len(pos):,} "
            f"queries ({len(pos) // max(1, len(FAMILIES))} registered pictures under each of "
            f"the {len(FAMILIES)} families of bench_image).",
            "",
        ]
        errors = [p for p in self.probes if p.error]
        if errors:
            lines += [f"{len(errors)} queries could not be fingerprinted (they match nothing).", ""]
        lines += self.direct(dis)
        lines += self.remaining(dis)
        g_tail, g_lines = self.global_tail(dis, pairs, registry)
        c_tail, c_lines = self.global_confirmation(dis, registry, g_tail)
        l_tail, l_lines = self.local_tail(dis, pairs, registry)
        a_tail, a_lines = self.aligned_tail(dis, pairs, registry, l_tail)
        lines += g_lines + c_lines + l_lines + a_lines
        models = _Models(g_tail, c_tail, l_tail, a_tail)
        lines += self.tradeoff(dis, pos, registry, models)
        return "\n".join(lines)

    # 2. direct count
    def direct(self, dis: list[int]) -> list[str]:
        by_family: dict[str, list[int]] = {}
        for k in dis:
            by_family.setdefault(self.probes[k].family, []).append(k)
        rows = []
        total_k = 0
        for family in self.distractor_families:
            ks = by_family.get(family, [])
            false = sum(bool(self.probes[k].matches) for k in ks)
            total_k += false
            lo, hi = clopper_pearson(false, len(ks))
            rows.append(
                f"| {family or 'untransformed'} | {false} | {len(ks):,} | {false / len(ks):.1e} "
                f"| {lo:.1e} – {hi:.1e} |"
            )
        genuine = sum(
            bool(self.probes[k].matches) and not self.shared(k, self.probes[k].matches[0][0])
            for k in dis
        )
        g_lo, g_hi = clopper_pearson(genuine, len(dis))
        lo, hi = clopper_pearson(total_k, len(dis))
        rows.append(
            f"| **all** | **{total_k}** | **{len(dis):,}** | **{total_k / len(dis):.1e}** "
            f"| **{lo:.1e} – {hi:.1e}** |"
        )
        # The offline decision (used for the trade-off) must reproduce match() exactly.
        every = list(range(len(self.probes)))
        differ = sum(
            (self.decision(k, GLOBAL_OPERATING, OPERATING)[0] >= 0) != bool(p.matches)
            for k, p in ((k, self.probes[k]) for k in every)
        )
        return [
            "### Direct count at the operating point (HammingIndex.match)",
            "",
            "| distractor transformation | false matches k | queries n | k / n "
            "| Clopper–Pearson 95 % |",
            "|---|---|---|---|---|",
            *rows,
            f"| **all, shared content removed** | **{genuine}** | **{len(dis):,}** "
            f"| **{genuine / len(dis):.1e}** | **{g_lo:.1e} – {g_hi:.1e}** |",
            "",
            f"Shared content: {total_k - genuine} of the {total_k} matches pair files from "
            "different package families that show the same picture (SHARED_CONTENT, "
            "established by inspection; marked * below).",
            "",
            f"With k = 0 the 95 % upper bound is about 3 / n = {3 / len(dis):.1e}: a direct "
            f"claim of <= {TARGET:g} per query needs about {3 / TARGET:,.0f} clean distractor "
            "queries with no false match.",
            f"Check: the offline decision from the lax scores (used below for other thresholds) "
            f"differs from match() on {differ} of {len(every):,} queries.",
            "",
        ]

    # 4. the remaining matches
    def remaining(self, dis: list[int]) -> list[str]:
        rows = []
        for k in dis:
            p = self.probes[k]
            for ordinal, stage, score, ev in p.matches[:1]:
                q = self.entries[p.entry]
                w = self.entries[self.members[p.fold][ordinal]]
                if stage == "local":
                    detail = (
                        f"{ev['inliers']} inliers of {ev['keypoint_matches']}, scale "
                        f"{ev['scale']}, rotation {ev['rotation_degrees']}°, aligned "
                        f"distance {ev.get('aligned_distance', '-')}"
                    )
                else:
                    detail = f"distance {ev['distance']} ({ev['region']})"
                mark = " *" if self.shared(k, ordinal) else ""
                rows.append(
                    f"| {p.family or 'untransformed'}{mark} | {q.package}: {q.source} "
                    f"| {w.package}: {w.source} | {stage} | {score:.2f} | {detail} |"
                )
        if not rows:
            return ["No distractor query matched at the operating point.", ""]
        return [
            "### The false matches at the operating point (best match of each query)",
            "",
            "| transformation | distractor (package: file) | matched work | stage | score "
            "| evidence |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]

    # 3a. global stage
    def global_tail(
        self, dis: list[int], pairs: int, registry: int
    ) -> tuple[DistanceTail, list[str]]:
        hist = np.zeros(257, np.int64)
        near = []
        for fold in (0, 1):
            ks = [k for k in dis if self.probes[k].fold == fold]
            plain, rot = self.dist[fold]
            d = np.minimum(plain[[self.at[k][1] for k in ks]], rot[[self.at[k][1] for k in ks]])
            for i, j in np.argwhere(d <= NEAR):
                p, w = self.probes[ks[i]], self.entries[self.members[fold][j]]
                q = self.entries[p.entry]
                mark = " *" if self.shared(ks[i], int(j)) else ""
                near.append(
                    f"| {int(d[i, j])} | {p.family or 'untransformed'}{mark} "
                    f"| {q.package}: {q.source} | {w.package}: {w.source} |"
                )
            flat = d.ravel()
            hist += np.bincount(flat[flat <= 256], minlength=257)[:257]
        comparable = int(hist.sum())
        # The tail proper (CDF <= 1e-4) where there are enough pairs; a small run has to
        # reach further into the bulk.
        try:
            max_cdf, tail = widening_tail_fit(hist, (1e-4, 1e-3, 1e-2, 0.05))
        except ValueError as exc:
            raise RuntimeError("too few impostor pairs for a tail fit") from exc
        cum = np.cumsum(hist)
        smallest = int(np.flatnonzero(hist)[0])
        show = sorted(
            {GLOBAL_THRESHOLD, 36, 40, 44, 48, 52, 56, 60, smallest}
            | set(range(tail.fit_from, tail.fit_to + 1, 4 * tail.step))
            | {tail.fit_to}
        )
        rows = [
            f"| <= {d} | {int(cum[d]):,} | {comparable * tail.normal(d):,.3g} "
            f"| {comparable * tail.exponential(d):,.3g} "
            f"| {'fit' if tail.fit_from <= d <= tail.fit_to else ''} |"
            for d in show
            if d <= tail.fit_to
        ]
        k30 = int(cum[GLOBAL_THRESHOLD])
        hi = clopper_pearson(k30, comparable)[1]
        p_model = tail.conservative(GLOBAL_THRESHOLD)
        lines = [
            "### Global stage: impostor distances, all pairs",
            "",
            f"Per (distractor query, registered work) pair: the smallest Hamming distance over "
            f"every code pair match() compares (PDQ with PDQ: the query's 8 dihedral and 4 "
            f"small-rotation codes against the work's; region PDQ: up to 8 query codes against "
            f"the work's 'all' and 'trim'), {comparable:,} comparable pairs of {pairs:,}. "
            "Counting the rotated codes for every pair overstates the stage (match() tries them "
            f"only when no work matched the others). Smallest impostor distance observed: "
            f"**{smallest}**. Tail models fitted over distances {tail.fit_from}–{tail.fit_to} "
            f"(empirical CDF from 25 pairs up to {max_cdf:g}): normal (mean {tail.mu:.1f}, sd "
            f"{tail.sigma:.1f}) and exponential (log F linear in d, slope {tail.log_b:.3f} a "
            "bit; heavier-tailed, so the conservative one far below the data).",
            "",
            "| distance | observed pairs | normal model | exponential model | |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"At the operating threshold (<= {GLOBAL_THRESHOLD}): observed {k30} of "
            f"{comparable:,} pairs (95 % upper bound {hi:.1e} per pair); modelled "
            f"{tail.normal(GLOBAL_THRESHOLD):.1e} (normal) and "
            f"{tail.exponential(GLOBAL_THRESHOLD):.1e} (exponential) per pair, an extrapolation "
            f"{tail.fit_from - GLOBAL_THRESHOLD} bits below the fitted range. With the "
            f"conservative one, per query with a registry of {registry:,} works "
            f"{per_query(p_model, registry):.1e}, "
            + ", ".join(f"{r:,}: {per_query(p_model, r):.1e}" for r in REGISTRIES)
            + ".",
            "",
            f"Impostor pairs within {NEAR} bits (* = SHARED_CONTENT):",
            "",
            "| distance | transformation | distractor | registered work |",
            "|---|---|---|---|",
            *near,
            "",
        ]
        return tail, lines

    # 3a'. the global stage's aligned comparison
    def global_confirmation(
        self, dis: list[int], registry: int, g_tail: DistanceTail
    ) -> tuple[Callable[[int], float], list[str]]:
        near = [(d, a) for k in dis for o, d, a in self.probes[k].near if not self.shared(k, o)]
        if not near:
            # Nothing to measure (a small run): no evidence that the comparison helps, so
            # the model takes it as none.
            lines = [
                "### Global stage: the aligned comparison of close impostor pairs",
                "",
                f"No impostor pair within {NEAR_ALIGNED} bits: nothing to measure; the model "
                "below counts every close pair as confirmed.",
                "",
            ]
            return (lambda a: 1.0), lines
        dist = np.array([v[0] for v in near], np.int64)
        aligned = np.array([v[1] for v in near], np.int64)
        compared = aligned >= 0
        bands = [(0, 56), (57, 64), (65, 70), (71, NEAR_ALIGNED)]
        table = []
        for lo, hi in bands:
            sel = (dist >= lo) & (dist <= hi)
            got = aligned[sel & compared]
            if len(got) == 0:
                table.append(f"| {lo}–{hi} | {int(sel.sum()):,} | 0 | | | | | |")
                continue
            q1, q10, q50 = np.percentile(got, [1, 10, 50])
            table.append(
                f"| {lo}–{hi} | {int(sel.sum()):,} | {len(got):,} | {int(got.min())} "
                f"| {q1:.0f} | {q10:.0f} | {q50:.0f} | {int((got <= ALIGNED_THRESHOLD).sum())} |"
            )
        # Two populations, as for the local stage: every close pair compared, and the closer
        # ones; the model takes the one with the heavier tail at the threshold.
        fits = []
        for cut in (NEAR_ALIGNED, 64):
            sel = compared & (dist <= cut)
            hist = np.bincount(aligned[sel], minlength=257)[:257].astype(np.int64)
            try:
                max_cdf, fit = widening_tail_fit(hist, (1e-2, 0.05, 0.2), min_count=10)
            except ValueError:
                continue
            fits.append((cut, int(sel.sum()), max_cdf, fit))
        n_compared = int(compared.sum())
        if fits:
            tail = max((f[3] for f in fits), key=lambda t: t.conservative(ALIGNED_THRESHOLD))

            def confirm(a: int) -> float:
                return tail.conservative(a)

            how = "the fit with the larger P(aligned <= threshold)"
        else:
            # Too few pairs for a fit: the exact one-sided bound of what was seen.
            def confirm(a: int) -> float:
                return clopper_pearson(int((aligned[compared] <= a).sum()), n_compared)[1]

            how = "the Clopper–Pearson upper bound (too few pairs for a fit)"
        fit_rows = [
            f"| <= {cut} | {n:,} | {t.fit_from}–{t.fit_to} (CDF <= {cdf:g}) "
            f"| {t.mu:.1f} / {t.sigma:.1f} | {t.log_b:.3f} | {t.normal(ALIGNED_THRESHOLD):.1e} "
            f"| {t.exponential(ALIGNED_THRESHOLD):.1e} |"
            for cut, n, cdf, t in fits
        ]
        f_t = g_tail.conservative(GLOBAL_THRESHOLD)
        f_u = g_tail.conservative(GLOBAL_UNCONFIRMED)
        p_a = confirm(ALIGNED_THRESHOLD)
        p_pair = f_u + (f_t - f_u) * p_a
        lines = [
            "### Global stage: the aligned comparison of close impostor pairs",
            "",
            f"A whole-picture match between {GLOBAL_UNCONFIRMED + 1} and {GLOBAL_THRESHOLD} bits "
            "also needs the query, aligned as the matched code implies (mirrored, turned, "
            f"trimmed), to agree with the work's box hashes within {ALIGNED_THRESHOLD} bits. No "
            "impostor pair comes that close, so the comparison is measured on the closest ones: "
            f"for every (distractor, work) pair with a code pair within {NEAR_ALIGNED} bits that "
            f"implies an alignment (exhaustive over the fold's codes; at most "
            f"{NEAR_ALIGNED_WORKS} works a query), the aligned distance under the closest such "
            f"code pair: {len(near):,} pairs, {n_compared:,} with a box covered (the rest "
            "cannot be confirmed at all). If close codes came with close boxes, the low "
            "quantiles would fall in the closer bands:",
            "",
            f"| code distance | pairs | compared | smallest | 1 % | 10 % | median "
            f"| <= {ALIGNED_THRESHOLD} |",
            "|---|---|---|---|---|---|---|---|",
            *table,
            "",
            "| code distance | pairs compared | fitted over | normal mean / sd "
            f"| exponential slope | normal P(<= {ALIGNED_THRESHOLD}) "
            f"| exponential P(<= {ALIGNED_THRESHOLD}) |",
            "|---|---|---|---|---|---|---|",
            *fit_rows,
            "",
            f"Model per pair: F(<= {GLOBAL_UNCONFIRMED}) + (F(<= {GLOBAL_THRESHOLD}) - "
            f"F(<= {GLOBAL_UNCONFIRMED})) x P(aligned <= {ALIGNED_THRESHOLD} | close codes), F "
            f"the conservative distance tail above: {f_u:.1e} + ({f_t:.1e} - {f_u:.1e}) x "
            f"{p_a:.1e} ({how}) = **{p_pair:.1e}** (without the comparison: {f_t:.1e}); per "
            f"query with a registry of {registry:,} works {per_query(p_pair, registry):.1e}, "
            + ", ".join(f"{r:,}: {per_query(p_pair, r):.1e}" for r in REGISTRIES)
            + ". The conditional is taken from pairs whose codes are 34 or more bits apart "
            f"and applied to pairs {GLOBAL_UNCONFIRMED + 1}–{GLOBAL_THRESHOLD} bits apart: an "
            "extrapolation, which the band table shows the direction of.",
            "",
        ]
        return confirm, lines

    # 3b. local stage
    def impostor_local(self, dis: list[int]) -> list[dict[int, tuple[int, float, float, int]]]:
        """Each distractor query's verified pairs, the pairs of SHARED_CONTENT left out (they
        are true matches)."""
        return [
            {o: v for o, v in self.probes[k].local.items() if not self.shared(k, o)} for k in dis
        ]

    def local_tail(
        self, dis: list[int], pairs: int, registry: int
    ) -> tuple[GeometricTail, list[str]]:
        impostor = self.impostor_local(dis)
        inliers = np.array([v[0] for loc in impostor for v in loc.values()], np.int64)
        best = np.array([max((v[0] for v in loc.values()), default=0) for loc in impostor])
        t0 = 6
        tail = geometric_tail_fit(inliers, pairs, t0)
        q_tail = geometric_tail_fit(best, len(dis), t0)
        top = int(inliers.max()) if len(inliers) else t0
        rows = []
        for t in range(t0, max(top, UNCONFIRMED_INLIERS) + 1):
            seen = int((inliers == t).sum())
            rows.append(
                f"| {t} | {seen:,} | {tail.expected(t, pairs):,.1f} "
                f"| {int((inliers >= t).sum()):,} | {pairs * tail.survival(t):,.1f} |"
            )
        summary = []
        for t in (MIN_INLIERS, 12, UNCONFIRMED_INLIERS):
            k = int((inliers >= t).sum())
            lo, hi = clopper_pearson(k, pairs)
            summary.append(
                f"- >= {t}: observed {k} of {pairs:,} pairs ({k / pairs:.1e}, 95 % interval "
                f"{lo:.1e} – {hi:.1e}), modelled **{tail.survival(t):.1e} per pair**; per "
                f"query with a registry of {registry:,} works "
                f"{per_query(tail.survival(t), registry):.1e}, "
                + ", ".join(f"{r:,}: {per_query(tail.survival(t), r):.1e}" for r in REGISTRIES)
                + f"; per query directly (best inliers of each query) modelled "
                f"{q_tail.survival(t):.1e}, observed {int((best >= t).sum())} of {len(dis):,}."
            )
        lines = [
            "### Local stage: impostor inlier counts",
            "",
            f"Every candidate pair the local stage verifies (>= 8 distinct matched keypoints, "
            f"at most 8 works a query), inliers of the best RANSAC similarity; pairs never "
            f"verified count as 0 ({len(inliers):,} verified of {pairs:,} pairs; the pairs of "
            "SHARED_CONTENT left out). Tail model: "
            f"geometric above {t0} inliers, maximum likelihood: P(I >= t) = {tail.p0:.2e} x "
            f"{tail.ratio:.3f}^(t - {t0}); per query directly {q_tail.p0:.2e} x "
            f"{q_tail.ratio:.3f}^(t - {t0}).",
            "",
            "| inliers t | observed pairs = t | fitted | observed pairs >= t | fitted >= t |",
            "|---|---|---|---|---|",
            *rows,
            "",
            *summary,
            "",
        ]
        return tail, lines

    # 3c. the aligned comparison
    def aligned_tail(
        self, dis: list[int], pairs: int, registry: int, l_tail: GeometricTail
    ) -> tuple[DistanceTail, list[str]]:
        impostor = self.impostor_local(dis)
        values = [(v[0], v[3]) for loc in impostor for v in loc.values()]
        inliers = np.array([v[0] for v in values], np.int64)
        aligned = np.array([v[1] for v in values], np.int64)
        compared = aligned >= 0
        # Two populations: every compared pair, and those with >= 6 inliers (fewer pairs, but
        # closer to the ones the rule lets through: if keypoint agreement comes with pixel
        # agreement, their tail is the heavier). The model takes the larger.
        fits = []
        for floor in (1, 6):
            sel = compared & (inliers >= floor)
            hist = np.bincount(aligned[sel], minlength=257)[:257].astype(np.int64)
            try:
                cut, fit = widening_tail_fit(hist, (1e-3, 1e-2, 0.05, 0.2), min_count=10)
            except ValueError:
                continue  # too few pairs with this many inliers
            fits.append((floor, int(sel.sum()), hist, cut, fit))
        if not fits:
            raise RuntimeError("too few verified impostor pairs for an aligned-distance fit")
        _, n, hist, max_cdf, shown = fits[0]  # the table: the widest population fitted
        cum = np.cumsum(hist)
        show = sorted(
            {40, 50, 60, 70, 80, ALIGNED_THRESHOLD}
            | set(range(shown.fit_from, shown.fit_to + 1, 4 * shown.step))
        )
        rows = [
            f"| <= {d} | {int(cum[d]):,} | {n * shown.normal(d):,.3g} "
            f"| {n * shown.exponential(d):,.3g} "
            f"| {'fit' if shown.fit_from <= d <= shown.fit_to else ''} |"
            for d in show
        ]
        fit_rows = [
            f"| >= {floor} | {count:,} | {t.fit_from}–{t.fit_to} (CDF <= {cdf:g}) "
            f"| {t.mu:.1f} / {t.sigma:.1f} | {t.log_b:.3f} | {t.normal(ALIGNED_THRESHOLD):.1e} "
            f"| {t.exponential(ALIGNED_THRESHOLD):.1e} |"
            for floor, count, _, cdf, t in fits
        ]
        tail = max((f[4] for f in fits), key=lambda t: t.conservative(ALIGNED_THRESHOLD))
        # Does the aligned distance depend on the inliers? Its spread among the pairs with
        # more inliers, against all verified pairs.
        dependence = []
        for t in (1, 6, 8, 10, 12):
            sel = compared & (inliers >= t)
            if not sel.any():
                continue
            d = aligned[sel]
            q1, q10, q50 = np.percentile(d, [1, 10, 50])
            dependence.append(
                f"| >= {t} | {int(sel.sum()):,} | {int(d.min())} | {q1:.0f} | {q10:.0f} "
                f"| {q50:.0f} | {int((d <= ALIGNED_THRESHOLD).sum())} |"
            )
        p_d = tail.conservative(ALIGNED_THRESHOLD)
        k_joint = int(((inliers >= MIN_INLIERS) & compared & (aligned <= ALIGNED_THRESHOLD)).sum())
        p_joint = l_tail.survival(MIN_INLIERS) * p_d + l_tail.survival(UNCONFIRMED_INLIERS)
        lines = [
            "### The aligned comparison: impostor distances",
            "",
            f"For every verified impostor pair, the query warped into the work's frame by the "
            f"RANSAC transform and its box hashes compared with the work's (smallest distance "
            f"over the boxes both sides could hash): {n:,} of {len(values):,} verified pairs had "
            f"a box to compare. Tail models over distances {shown.fit_from}–{shown.fit_to} "
            f"(empirical CDF from 10 pairs up to {max_cdf:g}): normal (mean {shown.mu:.1f}, sd "
            f"{shown.sigma:.1f}) and exponential (slope {shown.log_b:.3f} a bit).",
            "",
            "| aligned distance | observed pairs | normal model | exponential model | |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Fits per population (the model below uses the one giving the larger "
            f"P(aligned <= {ALIGNED_THRESHOLD})):",
            "",
            "| inliers | pairs compared | fitted over | normal mean / sd | exponential slope "
            f"| normal P(<= {ALIGNED_THRESHOLD}) | exponential P(<= {ALIGNED_THRESHOLD}) |",
            "|---|---|---|---|---|---|---|",
            *fit_rows,
            "",
            "Independence of the two kinds of evidence: the aligned distance among pairs with "
            "more inliers (if keypoint agreement came with pixel agreement, the low quantiles "
            "would fall as the inliers rise).",
            "",
            f"| inliers | pairs | smallest | 1 % | 10 % | median | <= {ALIGNED_THRESHOLD} |",
            "|---|---|---|---|---|---|---|",
            *dependence,
            "",
            f"At the operating point: observed {k_joint} impostor pairs with >= {MIN_INLIERS} "
            f"inliers and an aligned distance <= {ALIGNED_THRESHOLD}. Modelled per pair, "
            f"P(I >= {MIN_INLIERS}) x P(aligned <= {ALIGNED_THRESHOLD}, the larger model: "
            f"{p_d:.1e}) + P(I >= {UNCONFIRMED_INLIERS}) = **{p_joint:.1e}**; per query with "
            f"a registry of {registry:,} works {per_query(p_joint, registry):.1e}, "
            + ", ".join(f"{r:,}: {per_query(p_joint, r):.1e}" for r in REGISTRIES)
            + ".",
            "",
        ]
        return tail, lines

    # 5. trade-off
    def tradeoff(self, dis: list[int], pos: list[int], registry: int, models: _Models) -> list[str]:
        def recall(
            ks: list[int], global_rule: tuple[int, int, int], rule: tuple[int, int, int]
        ) -> float:
            if not ks:
                return float("nan")
            right = 0
            for k in ks:
                p = self.probes[k]
                ordinal, _ = self.decision(k, global_rule, rule)
                right += ordinal >= 0 and self.members[p.fold][ordinal] == p.entry
            return right / len(ks)

        def name(rule: tuple[int, int, int]) -> str:
            t_local, t_aligned, t_unconfirmed = rule
            if t_aligned < 0:
                return f">= {t_unconfirmed} inliers alone"
            return f">= {t_local} & aligned <= {t_aligned}, or >= {t_unconfirmed}"

        def global_name(global_rule: tuple[int, int, int]) -> str:
            threshold, unconfirmed, aligned = global_rule
            if unconfirmed >= threshold:
                return f"<= {threshold} alone"
            return f"<= {unconfirmed}, or <= {threshold} & aligned <= {aligned}"

        hard = {"crop 20 %", "crop 30 %", "pad 30 %", "overlay text/logo", "screenshot"}
        hard |= {"rotate 10 deg"}
        pos_hard = [k for k in pos if self.probes[k].family in hard]
        easy = [k for k in pos if self.probes[k].family not in hard]
        g_model = models.global_pair(GLOBAL_OPERATING)

        def rates(p_pair: float) -> str:
            return " | ".join(f"{per_query(p_pair, r):.1e}" for r in (registry, *REGISTRIES))

        head = " | ".join(f"per query R={r:,}" for r in (registry, *REGISTRIES))
        local_rows = []
        for rule in RULE_GRID:
            false = sum(self.false_match(k, GLOBAL_OPERATING, rule) for k in dis)
            p_pair = models.local_pair(rule)
            mark = "**" if rule == OPERATING else ""
            local_rows.append(
                f"| {mark}{name(rule)}{mark} | {recall(pos, GLOBAL_OPERATING, rule):.3f} "
                f"| {recall(pos_hard, GLOBAL_OPERATING, rule):.3f} | {false} | {p_pair:.1e} "
                f"| {rates(p_pair + g_model)} |"
            )
        global_rows = []
        for global_rule in GLOBAL_GRID:
            false = sum(self.false_match(k, global_rule, OPERATING) for k in dis)
            p_pair = models.global_pair(global_rule)
            mark = "**" if global_rule == GLOBAL_OPERATING else ""
            global_rows.append(
                f"| {mark}{global_name(global_rule)}{mark} "
                f"| {recall(easy, global_rule, OPERATING):.3f} "
                f"| {recall(pos, global_rule, OPERATING):.3f} | {false} | {p_pair:.1e} "
                f"| {rates(p_pair + models.local_pair(OPERATING))} |"
            )
        before = (GLOBAL_THRESHOLD, GLOBAL_THRESHOLD, ALIGNED_THRESHOLD)
        per_family = []
        for family in FAMILIES:
            ks = [k for k in pos if self.probes[k].family == family]
            per_family.append(
                f"| {family} | {recall(ks, GLOBAL_OPERATING, OPERATING):.3f} "
                f"| {recall(ks, before, OPERATING):.3f} "
                f"| {recall(ks, before, (12, -1, 12)):.3f} |"
            )
        # Both stages together: the best recall whose modelled per-query rate is within the
        # target, for three registry sizes.
        advice = []
        for size in (registry, 10**4, 10**5):
            ok = [
                (recall(pos, g, rule), g, rule)
                for g in GLOBAL_GRID
                for rule in RULE_GRID
                if per_query(models.global_pair(g) + models.local_pair(rule), size) <= TARGET
            ]
            if not ok:
                advice.append(
                    f"- R = {size:,}: no pair of rules in the grid reaches {TARGET:g} per "
                    f"query (needs <= {TARGET / size:.0e} per pair)."
                )
                continue
            rec, g, rule = max(ok, key=lambda o: (o[0], -o[1][1], -o[2][0]))
            rate = per_query(models.global_pair(g) + models.local_pair(rule), size)
            advice.append(
                f"- R = {size:,} (<= {TARGET / size:.0e} per pair): global "
                f"{global_name(g)}, local {name(rule)}: recall {rec:.3f} overall, "
                f"{recall(pos_hard, g, rule):.3f} on the hard families (operating point: "
                f"{recall(pos, GLOBAL_OPERATING, OPERATING):.3f} / "
                f"{recall(pos_hard, GLOBAL_OPERATING, OPERATING):.3f}); modelled {rate:.1e} "
                "per query."
            )
        operating = g_model + models.local_pair(OPERATING)
        return [
            "### Recall / false-match trade-off (offline decision from the lax scores)",
            "",
            f"Positives: {len(pos):,} queries, of which {len(pos_hard):,} in the families the "
            f"local stage exists for ({', '.join(sorted(hard))}). False matches: of the "
            f"{len(dis):,} distractor queries, shared content not counted. Per pair: the global "
            "and local models above; per query: their sum times R (independent pairs). At the "
            f"operating point: {g_model:.1e} (global) + {models.local_pair(OPERATING):.1e} "
            f"(local) = **{operating:.1e} per pair**, per query **{rates(operating)}** "
            f"(R = {registry:,}, " + ", ".join(f"{r:,}" for r in REGISTRIES) + ").",
            "",
            f"Local stage rule (global: {global_name(GLOBAL_OPERATING)}; the operating rule in "
            "bold, the last two rows the rule without the aligned comparison):",
            "",
            f"| local rule | recall all | recall hard | false matches | per pair | {head} |",
            "|---|---|---|---|---|" + "---|" * (1 + len(REGISTRIES)),
            *local_rows,
            "",
            "Recall per family: the operating rules; the global stage without its aligned "
            "comparison; and both stages as before any aligned comparison (12 inliers alone):",
            "",
            "| family | operating | global alone | global alone, 12 inliers alone |",
            "|---|---|---|---|",
            *per_family,
            "",
            f"Global stage rule (local: {name(OPERATING)}; recall of the other families is "
            "where the global stage decides):",
            "",
            f"| global rule | recall other families | recall all | false matches "
            f"| per pair (global) | {head} |",
            "|---|---|---|---|---|" + "---|" * (1 + len(REGISTRIES)),
            *global_rows,
            "",
            "Best recall within the target by the models (conservative tails):",
            "",
            *advice,
        ]


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
