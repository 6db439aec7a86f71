"""Recognition and query cost as the registry grows: the local stage at registry scale.

The recognition benchmark (:mod:`bench.bench_image`) registers 200 works; a real registry
holds many thousands, and the local stage (ORB keypoints, the one that finds crops, overlays,
turns and screenshots) looks every query keypoint up among all registered keypoints. Here
the same 200 works and their queries (the families the local stage is for, plus a JPEG
control) are matched in registries of growing size: the 200 works alone, then with other
works added from the all-against-all corpus (:func:`bench.bench_image_impostors.pictures`:
the recognition corpus's other pictures and 17,000 from 25 more Debian packages), up to
every one of them (~21,000 works, ~3 M keypoints).

Two configurations, each on the same index and queries:

- **shipped**: the index as it is (:mod:`consentry.index.hamming`);
- **session 12**: the chosen works verified with the pairs the capped lookup found, not
  against every query keypoint, with 10 inliers (the index of sessions 11 and 12, before
  ``RESCAN_VERIFIED`` and 12 inliers);
- **before**: as session 12, but candidate works ranked by distinct matched query
  keypoints alone and overfull buckets skipped from 256 times the mean bucket size (the
  index before nearest-neighbour votes).

``BENCH_SCALE_CAPS=128,256`` adds a configuration per listed bucket factor: the shipped
ranking with that cap (``cap 128``), to weigh recall against cost at each size.

Per registry size and configuration: recall per family (the query's own work among the
matches; at scale another registered picture of the same package may also match, or rank
first, rightly), and CPU time per query (decode and fingerprints excluded: they do not
depend on the registry), mean and 99th percentile.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from multiprocessing import get_context

# One BLAS thread per process, set before numpy loads (as bench_image does): the CPU time per
# query is read with time.process_time, which also counts OpenBLAS's threads spinning
# between the small products of the aligned comparison — twice the single-threaded figure
# at 21,076 works (47 against 20 ms a query, one process).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench import bench_image
from bench.bench_image_fmr import register
from bench.bench_image_impostors import pictures
from bench.imagecorpus import corpus
from consentry.domain.decision import WorkMatch
from consentry.fingerprint.base import Fingerprint
from consentry.index import hamming
from consentry.index.hamming import HammingIndex

FAMILIES = (
    "jpeg q90..20",
    "crop 20 %",
    "crop 30 %",
    "rotate 10 deg",
    "pad 30 %",
    "overlay text/logo",
    "screenshot",
)
#: Works registered besides the 200 (None: every other picture of the corpus).
EXTRA = (0, 2_000, 8_000, None)
QUICK_EXTRA = (0, 400)

_INDEX: list[HammingIndex] = []
_QUERIES: list[list[Fingerprint]] = []


def _log(text: str) -> None:
    print(f"bench image_scale: {text}", file=sys.stderr, flush=True)


def _query(job: tuple[str, str, int]) -> list[Fingerprint]:
    return bench_image._query(job)[0]


@contextmanager
def _cap(factor: int) -> Iterator[None]:
    """The shipped ranking with overfull buckets skipped from ``factor`` times the mean."""
    saved = hamming.LOCAL_BUCKET_FACTOR
    hamming.LOCAL_BUCKET_FACTOR = factor  # type: ignore[misc]
    try:
        yield
    finally:
        hamming.LOCAL_BUCKET_FACTOR = saved  # type: ignore[misc]


#: Inliers a verification confirmed by the box hashes needed before session 13.
SESSION12_MIN_INLIERS = 10


@contextmanager
def _session12() -> Iterator[None]:
    """The chosen works verified with the lookup's pairs alone, at 10 inliers."""
    saved, saved_match = hamming.RESCAN_VERIFIED, HammingIndex.match

    def match(self: HammingIndex, fingerprints: Sequence[Fingerprint]) -> list[WorkMatch]:
        return self.scored(fingerprints, min_inliers=SESSION12_MIN_INLIERS)

    hamming.RESCAN_VERIFIED = False  # type: ignore[misc]
    HammingIndex.match = match  # type: ignore[method-assign]
    try:
        yield
    finally:
        hamming.RESCAN_VERIFIED = saved  # type: ignore[misc]
        HammingIndex.match = saved_match  # type: ignore[method-assign]


def _configuration(name: str) -> AbstractContextManager[None]:
    if name == "before":
        return _before()
    if name == "session 12":
        return _session12()
    if name.startswith("cap "):
        return _cap(int(name.removeprefix("cap ")))
    return nullcontext()


@contextmanager
def _before() -> Iterator[None]:
    """The index as it ranked candidate works before nearest-neighbour votes: every vote
    zero, buckets skipped from 256 times the mean."""
    saved = hamming._nearest_votes

    def no_votes(
        owner: np.ndarray, query: np.ndarray, distance: np.ndarray, queries: int, works: np.ndarray
    ) -> np.ndarray:
        return np.zeros(len(works), np.int64)

    hamming._nearest_votes = no_votes
    try:
        with _cap(256), _session12():
            yield
    finally:
        hamming._nearest_votes = saved


def _match(i: int) -> tuple[list[str], float]:
    started = time.process_time()
    found = _INDEX[0].match(_QUERIES[i])
    return [m.work_id for m in found], time.process_time() - started


def run(quick: bool) -> str:
    started = time.perf_counter()
    files = [str(p) for p in corpus()]
    random.Random(bench_image.SEED).shuffle(files)
    works = files[: 50 if quick else 200]
    mine = {os.path.realpath(p) for p in works}
    others = [str(e.path) for e in pictures() if os.path.realpath(e.path) not in mine]
    random.Random(bench_image.SEED).shuffle(others)
    sizes = [len(others) if n is None else n for n in (QUICK_EXTRA if quick else EXTRA)]
    others = others[: max(sizes)]
    jobs = [(p, f, bench_image._seed(p, f)) for f in FAMILIES for p in works]
    caps = os.environ.get("BENCH_SCALE_CAPS", "")
    configurations = ["shipped", "session 12", "before"] + [
        f"cap {int(c)}" for c in caps.split(",") if c
    ]
    ctx = get_context("fork")  # the workers inherit the index built before each pool
    workers = os.cpu_count() or 1
    t = time.perf_counter()
    with ctx.Pool(workers) as pool:
        own = pool.map(register, works, chunksize=4)
        extra = pool.map(register, others, chunksize=16)
        _QUERIES[:] = pool.map(_query, jobs, chunksize=8)
    _log(
        f"fingerprinted {len(works) + len(others):,} pictures and {len(jobs):,} queries "
        f"in {time.perf_counter() - t:.0f} s"
    )

    rows = []
    for size in sizes:
        index = HammingIndex()
        for i, prints in enumerate(own):
            index.add(f"W{i}", prints, i + 1)
        for i, prints in enumerate(extra[:size]):
            index.add(f"X{i}", prints, len(own) + i + 1)
        index.global_codes.seal()
        index.local_codes.seal()
        _INDEX[:] = [index]
        for config in configurations:
            t = time.perf_counter()
            with _configuration(config), ctx.Pool(workers) as pool:
                results = pool.map(_match, range(len(jobs)), chunksize=8)
            found = dict.fromkeys(FAMILIES, 0)
            for (path, family, _), (ids, _) in zip(jobs, results, strict=True):
                found[family] += f"W{works.index(path)}" in ids
            cpu = np.array([c for _, c in results]) * 1e3
            rows.append(
                f"| {len(own) + size:,} | {len(index.local_codes):,} | {config} | "
                + " | ".join(f"{found[f] / len(works):.3f}" for f in FAMILIES)
                + f" | {cpu.mean():.1f} | {np.percentile(cpu, 99):.1f} |"
            )
            _log(f"{len(own) + size:,} works, {config}: {time.perf_counter() - t:.0f} s")
    _INDEX.clear()
    lines = [
        "## Image recognition as the registry grows (local stage at scale)",
        "",
        f"The {len(works)} registered works of `bench image` and their queries "
        f"({len(works)} per family) matched in registries holding them and up to "
        f"{max(sizes):,} other works (the all-against-all corpus, `bench image_impostors`). "
        "Recall: the query's own work among the matches. CPU per query: index lookup and "
        "verification only (decode and fingerprints excluded), one core. *shipped*: the "
        "index as it is; *session 12*: the chosen works verified with the capped lookup's "
        "pairs alone, 10 inliers; *before*: as session 12 with candidate works ranked by "
        "matched keypoints alone, overfull buckets skipped from 256 times the mean size.",
        "",
        "| works | keypoints | configuration | "
        + " | ".join(FAMILIES)
        + " | CPU ms / query, mean | p99 |",
        "|---|---|---|" + "---|" * len(FAMILIES) + "---|---|",
        *rows,
        "",
        f"Run took {time.perf_counter() - started:.0f} s.",
    ]
    return "\n".join(lines)
