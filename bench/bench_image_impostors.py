"""Image false matches counted directly, all against all: about a billion impostor pairs.

:mod:`bench.bench_image_fmr` counts false matches of 30,816 distractor queries against 1,926
registered works (59 M pairs) and models the tails; a direct count near one false match in a
million queries needs far more. Here every picture of a much larger set is both a registered
work and a distractor, and the count is of **(query, registered work) pairs**, the unit in
which a biometric false-match rate is measured:

1. The pictures: the recognition corpus (:mod:`bench.imagecorpus`) and the larger set of
   :mod:`bench.imagedistractors`, with their package *families*. The families are dealt
   into :data:`GROUPS` groups of about equal size (:func:`bench.fmrstats.balanced_groups`).
2. For each group in turn, every picture of the *other* groups is registered in one real
   :class:`~consentry.index.hamming.HammingIndex`, and every picture of the group is a query,
   under :data:`FAMILIES_PER_PICTURE` of the 8 transformation families of
   :mod:`bench.bench_image_fmr` (untransformed among them), through ``HammingIndex.match``
   at the operating point. A query and the works it faces never come from the same package
   family, so every match is either the same picture shipped by two sources (listed in
   :data:`SHARED_CONTENT` after looking at the pair, or two files of one shared texture pack
   or of the same name: :meth:`Report.shared`) or a false match.
3. Pairs: each query counts once per work in the index it faced. With k false matches in n
   pairs, the Clopper-Pearson 95 % upper bound p of the per-pair rate gives the per-query rate
   at a registry of R works, 1 - (1 - p)^R: equivalently, the n pairs are n / R queries
   against disjoint registries of R works. Pairs that share a query or a work are not
   independent trials; the per-query count (each query against about 15,800 works) is given
   beside it, with no such assumption.

Each group's queries are cached in ``bench/.corpus/image-impostors/`` under a key of the
corpus, the settings and the source of the matcher, so an interrupted run resumes at the
group it was in and a changed matcher is measured afresh.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from PIL import Image

from bench import imagedistractors
from bench.bench_image_fmr import DISTRACTOR_FAMILIES, SEED, register, transformed
from bench.fmrstats import balanced_groups, clopper_pearson, per_query
from bench.imagecorpus import ROOT, Entry, entries
from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.image import ImageFingerprinter
from consentry.index.hamming import (
    ALIGNED_THRESHOLD,
    GLOBAL_THRESHOLD,
    GLOBAL_UNCONFIRMED,
    MIN_INLIERS,
    UNCONFIRMED_INLIERS,
    HammingIndex,
)

GROUPS = 4
#: Pairs of pictures at least this large on their shorter side (the recognition corpus's
#: selection, bench/imagecorpus.py MIN_SIDE) are counted apart from the rest.
LARGE = 200
#: Each picture is queried under this many of the transformation families (a sample seeded by
#: its file name): a query against ~16,000 works costs ~0.2 s here, most of it the local
#: stage's descriptor search, whose cost grows with the index as the pairs do, so the pairs
#: a CPU-hour buys are the same whatever the split; 3 of 8 keeps the run near 1.5 hours.
FAMILIES_PER_PICTURE = 3
TARGET = 1e-6
#: Registry sizes the per-query bound is given for: the recognition benchmark's (>= 200
#: registered works), bench_image_fmr's, and larger ones.
REGISTRIES = (200, 1_926, 10**4, 10**5)
CACHE = ROOT / "image-impostors"
_SRC = Path(__file__).resolve().parents[1] / "src" / "consentry"
#: Path parts of texture packs that several games ship: Trak's packs are in Nexuiz, Red
#: Eclipse and UFO:AI (``trak4/brick1``, ``tex_trak/``); two files from such a pack in two
#: games are the same picture or one of its maps (gloss, specular), not a false match.
SHARED_PACKS = ("trak",)
#: Pairs of files (package, path inside it) from different families that show the same
#: picture, established by looking at every pair this benchmark matched. Their matches are
#: true, not false; they are reported apart.
SHARED_CONTENT: frozenset[frozenset[tuple[str, str]]] = frozenset(
    frozenset(pair)
    for pair in (
        # The same mossy stone texture in MegaGlest and SuperTuxKart.
        (
            (
                "megaglest-data",
                "usr/share/games/megaglest/tilesets/evergreen/models/texture_big_stone.png",
            ),
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/mossy_stone.png"),
        ),
        # ... and MegaGlest's menu model carries it too (looked at in session 12: the same
        # swirl of moss, darker).
        (
            (
                "megaglest-data",
                "usr/share/games/megaglest/data/core/menu/main_model/texture_big_stone.tga",
            ),
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/mossy_stone.png"),
        ),
        # The same birch-leaf sprite, green in MegaGlest, recoloured yellow in SuperTuxKart
        # (birch_b.png, looked at in session 12, is birch_a.png with its leaves recoloured:
        # the same branches and trunk).
        (
            ("megaglest-data", "usr/share/games/megaglest/tilesets/birch_forest/models/birch.png"),
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/library/stklib_autumnBirch_a/birch_a.png",
            ),
        ),
        (
            ("megaglest-data", "usr/share/games/megaglest/tilesets/birch_forest/models/birch.png"),
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/library/stklib_autumnBirch_a/birch_b.png",
            ),
        ),
        # One dark walnut texture in three games (looked at in session 11: the same knots
        # and grain; UFO:AI's copy turned a quarter turn, MegaGlest's shrunk to 128 px).
        (
            (
                "megaglest-data",
                "usr/share/games/megaglest/techs/megapack/factions/romans/units/ballista/models/wood.png",
            ),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_material/wood012.png",
            ),
        ),
        (
            (
                "megaglest-data",
                "usr/share/games/megaglest/techs/megapack/factions/romans/units/ballista/models/wood.png",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/egyptsoc_mat/wood17.tga",
            ),
        ),
        (
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_material/wood012.png",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/egyptsoc_mat/wood17.tga",
            ),
        ),
        # Looked at in session 13: the same photograph of a rock face as the pair below
        # (the same crevices), UFO:AI's pjrock1 a closer crop of it (scale 0.79).
        (
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/rockMountain.jpg"),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_nature/pjrock1.png",
            ),
        ),
        # Looked at in session 13: one photographed rock surface, brown in UFO:AI, tinted
        # green with dark cracks painted over in SuperTuxKart (every crack of UFO:AI's at the
        # same place in both, scale 1.0).
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stktex_generic_rockA.png",
            ),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_nature/rock018.png",
            ),
        ),
        # Looked at on 2026-11-27: textures SuperTuxKart shares with Nexuiz and UFO:AI
        # (Trak's panels, pipes, crates and rocks, some recoloured), the nebulae Naev shares
        # with FreeOrion, the Earth map, the galaxy pair NGC 5426/5427 and Tux redrawn.
        (
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/rockMountain.jpg"),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_nature/pjrock17.png",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stk_emptyPanel_a.png",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/wall1a.tga",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stk_emptyPanel_a.png",
            ),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_trak/wall1e.png",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stk_emptyPanel_b.png",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/wall3a.tga",
            ),
        ),
        (
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/stk_futureBox_a.png"),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_alienb/ab_crate_a.png",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stk_generic_bedRock_a.png",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/stormkeep/rock.tga",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stk_generic_bedRock_a.png",
            ),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_nature/desert002.png",
            ),
        ),
        (
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/stk_greyMetal_a.png"),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/base1c.tga",
            ),
        ),
        (
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/stk_pipe_a.png"),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/pipez1a.tga",
            ),
        ),
        (
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/textures/stk_pipe_a.png"),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_trak/pipez1a.png",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stkt_rustedMetal_a.png",
            ),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_material/metall001.png",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/textures/stktex_planetEarth_a.png",
            ),
            ("supertux-data", "usr/share/games/supertux2/images/decal/retro/map.png"),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/ceil1_outer.png",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/ceil1a.tga",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/ceil1_outer.png",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/ceil1a_gloss.tga",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/tile3b.jpg",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/tile2a.tga",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/vertpanel1b.jpg",
            ),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_trak/vertpanel1d.png",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/vertpanel1b.jpg",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/vertpanel1a.tga",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/vertpanel2b.jpg",
            ),
            (
                "ufoai-textures",
                "usr/share/games/ufoai/base/0textures.pk3/textures/tex_trak/vertpanel2d.png",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/vertpanel2b.jpg",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/vertpanel2a.tga",
            ),
        ),
        (
            (
                "supertuxkart-data",
                "usr/share/games/supertuxkart/data/tracks/stk_enterprise/vertpanel2b.jpg",
            ),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/trak5/vertpanel2e.tga",
            ),
        ),
        (
            ("supertuxkart-data", "usr/share/games/supertuxkart/data/tracks/xr591/galaxy1.jpg"),
            ("stellarium-data", "usr/share/stellarium/nebulae/default/n5426.png"),
        ),
        (
            ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/animals/birds/cartoon/tux.png"),
            (
                "pingus-data",
                "usr/share/games/pingus/data/images/groundpieces/ground/penguinworld/penguin.png",
            ),
        ),
        (
            ("naev-data", "usr/share/naev/dat/gfx/bkg/nebula02.png"),
            ("freeorion-data", "usr/share/games/freeorion/default/data/art/nebulae/nebula2.png"),
        ),
        (
            ("naev-data", "usr/share/naev/dat/gfx/bkg/nebula04.png"),
            ("freeorion-data", "usr/share/games/freeorion/default/data/art/nebulae/nebula4.png"),
        ),
        (
            ("redeclipse-data", "usr/share/games/redeclipse/data/trak/trak5/floor2a.jpg"),
            (
                "nexuiz-textures",
                "usr/share/games/nexuiz/data/textures.pk3/textures/tutorial/floor2e.tga",
            ),
        ),
        # Looked at on 2026-11-27 (session 9), contrast stretched: one paper texture, near
        # white in Freeciv (grey levels 230-255), darker in Widelands (160-216). Counted
        # as false in session 8, before it was stretched.
        (
            ("freeciv-data", "usr/share/games/freeciv/themes/gui-qt/Classic/menu-overlay.png"),
            ("widelands-data", "usr/share/games/widelands/data/images/wui/plot_area_bg.png"),
        ),
    )
)


@dataclass(frozen=True, slots=True)
class Found:
    """One match of one query."""

    work: int  # index into the run's pictures
    stage: str
    score: float
    detail: str


@dataclass(frozen=True, slots=True)
class Query:
    """What one query produced."""

    entry: int
    family: str
    works: int  # size of the index it faced
    matches: tuple[Found, ...]
    error: str = ""


# -- workers (forked after the index is built) -------------------------------------------------

_INDEX: list[HammingIndex] = []
_ORDINAL: dict[str, int] = {}
_PATHS: list[str] = []


def _shorter_side(path: Path) -> int:
    with Image.open(path) as im:
        return min(im.size)


def _detail(evidence: dict[str, object], stage: str) -> str:
    if stage == "local":
        return (
            f"{evidence['inliers']} inliers of {evidence['keypoint_matches']}, scale "
            f"{evidence['scale']}, rotation {evidence['rotation_degrees']}°, aligned distance "
            f"{evidence.get('aligned_distance', '-')}"
        )
    aligned = evidence.get("aligned_distance")
    return f"distance {evidence['distance']} ({evidence['region']})" + (
        f", aligned distance {aligned}" if aligned is not None else ""
    )


def _query(job: tuple[int, str]) -> Query:
    entry, family = job
    path = _PATHS[entry]
    index = _INDEX[0]
    seed = zlib.crc32(f"{Path(path).name}|{family}|{SEED}".encode())
    try:
        prints = ImageFingerprinter().query_fingerprint(transformed(path, family, seed), "image")
    except Exception as exc:  # a query that cannot be fingerprinted matches nothing
        return Query(entry, family, len(index), (), error=repr(exc))
    found = tuple(
        Found(_ORDINAL[m.work_id], m.stage, m.score, _detail(m.evidence, m.stage))
        for m in index.match(prints)
    )
    return Query(entry, family, len(index), found)


# -- the run -----------------------------------------------------------------------------------


def _log(text: str) -> None:
    print(f"bench image_impostors: {text}", file=sys.stderr, flush=True)


def _matcher_digest() -> str:
    """A digest of the recogniser's source: cached queries of another matcher are not reused."""
    digest = hashlib.sha256()
    for folder in ("index", "fingerprint"):
        for path in sorted((_SRC / folder).glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def families_of(path: str, families: tuple[str, ...], quick: bool) -> list[str]:
    """The transformation families a picture is queried under: all of them in a quick run,
    else :data:`FAMILIES_PER_PICTURE` drawn with a seed of its file name, in their order."""
    if quick or FAMILIES_PER_PICTURE >= len(families):
        return list(families)
    rng = random.Random(zlib.crc32(f"{Path(path).name}|families|{SEED}".encode()))
    return sorted(rng.sample(families, FAMILIES_PER_PICTURE), key=families.index)


def pictures() -> list[Entry]:
    """Every picture of the count: the recognition corpus's, then the distractor set's."""
    return entries() + imagedistractors.corpus()


@dataclass(frozen=True)
class _Plan:
    pictures: list[Entry]
    families: tuple[str, ...]
    groups: tuple[frozenset[str], ...]
    members: list[list[int]]


def _plan(quick: bool) -> _Plan:
    pics = pictures()
    families = DISTRACTOR_FAMILIES[:3] if quick else DISTRACTOR_FAMILIES
    groups = balanced_groups(Counter(e.family for e in pics), GROUPS)
    members = [[i for i, e in enumerate(pics) if e.family in g] for g in groups]
    if quick:  # a smoke run: a sample of each group
        rng = random.Random(SEED)
        members = [sorted(rng.sample(m, min(len(m), 60))) for m in members]
    return _Plan(pics, families, groups, members)


def run(quick: bool) -> str:
    started = time.perf_counter()
    plan = _plan(quick)
    pics, families, groups, members = plan.pictures, plan.families, plan.groups, plan.members
    used = sorted(i for m in members for i in m)
    _PATHS[:] = [str(e.path) for e in pics]
    key = hashlib.sha256(
        repr(
            (
                [str(e.path) for e in pics],
                families,
                GROUPS,
                FAMILIES_PER_PICTURE,
                quick,
                _matcher_digest(),
            )
        ).encode()
    ).hexdigest()[:16]
    folder = CACHE / key
    folder.mkdir(parents=True, exist_ok=True)
    _log(f"queries cached in {folder}")
    ctx = get_context("fork")  # the workers inherit the index built below
    workers = os.cpu_count() or 1

    prints: dict[int, list[Fingerprint]] = {}
    queries: list[Query] = []
    queried = int(os.environ.get("BENCH_IMPOSTORS_GROUPS", GROUPS))
    if not 1 <= queried <= GROUPS:
        raise SystemExit(f"BENCH_IMPOSTORS_GROUPS must be 1..{GROUPS}, got {queried}")
    for g, group in enumerate(members[:queried]):
        cached = folder / f"group{g + 1}.pickle"
        if cached.exists():
            with cached.open("rb") as fh:
                # Files this benchmark wrote itself, under bench/.corpus (never fetched).
                queries += pickle.load(fh)  # noqa: S301
            _log(f"group {g + 1}: cached")
            continue
        if not prints:
            t = time.perf_counter()
            with ctx.Pool(workers) as pool:
                done = pool.map(register, [_PATHS[i] for i in used], chunksize=8)
            prints = dict(zip(used, done, strict=True))
            _log(f"registered {len(used):,} pictures in {time.perf_counter() - t:.0f} s")
        inside = set(group)
        index = HammingIndex()
        _ORDINAL.clear()
        for ordinal, i in enumerate(i for i in used if i not in inside):
            index.add(f"W{i}", prints[i], ordinal + 1)
            _ORDINAL[f"W{i}"] = i
        # Built once here, shared by the forked workers (else each builds its own on its
        # first query).
        index.global_codes.seal()
        index.local_codes.seal()
        _INDEX[:] = [index]
        jobs = [(i, f) for i in group for f in families_of(_PATHS[i], families, quick)]
        t = time.perf_counter()
        mine = []
        with ctx.Pool(workers) as pool:
            for done_query in pool.imap(_query, jobs, chunksize=16):
                mine.append(done_query)
                if len(mine) % 5_000 == 0:
                    rate = len(mine) / (time.perf_counter() - t)
                    _log(f"group {g + 1}: {len(mine):,} of {len(jobs):,} queries ({rate:.0f}/s)")
        took = time.perf_counter() - t
        _log(
            f"group {g + 1}: {len(jobs):,} queries against {len(index):,} works in {took:.0f} s "
            f"({sum(bool(q.matches) for q in mine)} matched)"
        )
        tmp = cached.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(mine, fh)
        tmp.rename(cached)
        queries += mine
    _INDEX.clear()
    report = Report(pics, groups, members, families, queries, queried)
    took = time.perf_counter() - started
    return f"{report.render(quick)}\n\nRun took {took:.0f} s (cached groups not re-run).\n"


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    pictures: list[Entry]
    groups: tuple[frozenset[str], ...]
    members: list[list[int]]
    families: tuple[str, ...]
    queries: list[Query]
    queried: int = GROUPS  # groups whose pictures were queried (the first ones)

    def shared(self, a: int, b: int) -> bool:
        """Whether pictures a and b are known to be the same picture: listed in
        :data:`SHARED_CONTENT`, both from a texture pack several games ship
        (:data:`SHARED_PACKS`), or the same file name (``pipez1a.tga`` and ``pipez1a.png``)."""
        pa, pb = self.pictures[a], self.pictures[b]
        if frozenset({(pa.package, pa.source), (pb.package, pb.source)}) in SHARED_CONTENT:
            return True
        if any(t in pa.source.lower() and t in pb.source.lower() for t in SHARED_PACKS):
            return True
        return Path(pa.source).stem.lower() == Path(pb.source).stem.lower()

    def false_matches(self, q: Query) -> list[Found]:
        return [f for f in q.matches if not self.shared(q.entry, f.work)]

    def render(self, quick: bool) -> str:
        ok = [q for q in self.queries if not q.error]
        pairs = sum(q.works for q in ok)
        false_pairs = sum(len(self.false_matches(q)) for q in ok)
        false_queries = sum(bool(self.false_matches(q)) for q in ok)
        shared_pairs = sum(len(q.matches) for q in ok) - false_pairs
        packages = {e.package for e in self.pictures}
        n_pics = sum(len(m) for m in self.members)
        lines = [
            "## Image false matches, all against all (direct count of impostor pairs)",
            "",
            f"{n_pics:,} pictures{' (sampled)' if quick else ''} from {len(packages)} Debian "
            f"packages in {sum(len(g) for g in self.groups)} package families "
            "(bench/imagecorpus.py and bench/imagedistractors.py), dealt by family into "
            f"{len(self.groups)} groups of "
            + ", ".join(f"{len(m):,}" for m in self.members)
            + " pictures. "
            + (
                "Each group in turn queried"
                if self.queried == len(self.groups)
                else f"Group 1 (of {len(self.groups)}) queried"
                if self.queried == 1
                else f"Groups 1-{self.queried} (of {len(self.groups)}) in turn queried"
            )
            + " against every picture of the other groups registered in one HammingIndex, "
            f"each picture under {FAMILIES_PER_PICTURE if not quick else len(self.families)} "
            f"of {len(self.families)} transformations "
            f"({', '.join(f or 'untransformed' for f in self.families)}). Operating point: "
            f"global distance <= {GLOBAL_UNCONFIRMED} bits, or <= {GLOBAL_THRESHOLD} with "
            f"the aligned box hashes within {ALIGNED_THRESHOLD}; local stage >= "
            f"{MIN_INLIERS} inliers with the aligned box hashes within {ALIGNED_THRESHOLD}, "
            f"or >= {UNCONFIRMED_INLIERS} alone.",
            "",
            f"**{len(ok):,} queries, {pairs:,} (query, registered work) pairs: "
            f"{false_pairs} false matches** ({shared_pairs} matches of the same picture "
            "shipped by two sources, listed apart).",
            "",
        ]
        lines += [
            "Groups: "
            + "; ".join(
                f"{g + 1}: {', '.join(sorted(families))}" for g, families in enumerate(self.groups)
            )
            + ".",
            "",
        ]
        errors = len(self.queries) - len(ok)
        if errors:
            lines += [f"{errors} queries could not be fingerprinted (they match nothing).", ""]
        lines += self._bounds(ok, pairs, false_pairs, false_queries)
        lines += self._by_family(ok)
        lines += self._by_size(ok)
        lines += self._matches(ok)
        return "\n".join(lines)

    def _bounds(self, ok: list[Query], pairs: int, k: int, k_queries: int) -> list[str]:
        _, p_hi = clopper_pearson(k, pairs)
        _, q_hi = clopper_pearson(k_queries, len(ok))
        works = round(pairs / len(ok))
        rows = [
            f"| {r:,} | {pairs / r:,.0f} | {per_query(p_hi, r):.1e} | "
            f"{'✓' if per_query(p_hi, r) <= TARGET else '✗'} |"
            for r in REGISTRIES
        ]
        return [
            "### Bounds",
            "",
            f"Per pair: {k} in {pairs:,}, Clopper–Pearson 95 % upper bound **{p_hi:.2e}**. "
            f"Per query against the ~{works:,} works each faced: {k_queries} in {len(ok):,}, "
            f"upper bound {q_hi:.1e}.",
            "",
            f"| registry (works) | equivalent queries (pairs / registry) | per-query 95 % upper "
            f"bound | <= {TARGET:g} |",
            "|---|---|---|---|",
            *rows,
            "",
        ]

    def _by_family(self, ok: list[Query]) -> list[str]:
        rows = []
        for family in self.families:
            qs = [q for q in ok if q.family == family]
            if not qs:
                continue
            pairs = sum(q.works for q in qs)
            k = sum(len(self.false_matches(q)) for q in qs)
            _, hi = clopper_pearson(k, pairs)
            rows.append(
                f"| {family or 'untransformed'} | {len(qs):,} | {pairs:,} | {k} | {hi:.1e} |"
            )
        return [
            "| transformation | queries | pairs | false matches | per-pair 95 % upper bound |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]

    def _by_size(self, ok: list[Query]) -> list[str]:
        """Pairs and false matches apart for pictures of at least :data:`LARGE` px on the
        shorter side (the recognition corpus's selection) and smaller ones."""
        large = [_shorter_side(e.path) >= LARGE for e in self.pictures]
        group_of = {i: g for g, m in enumerate(self.members) for i in m}
        big_in = [sum(large[i] for i in m) for m in self.members]
        big_all = sum(big_in)
        counts = {"both": [0, 0], "either": [0, 0]}
        for q in ok:
            g = group_of[q.entry]
            # The index a query faced: every picture of the other groups.
            big_works = big_all - big_in[g]
            both = big_works if large[q.entry] else 0
            counts["both"][0] += both
            counts["either"][0] += q.works - both
            for f in self.false_matches(q):
                counts["both" if large[q.entry] and large[f.work] else "either"][1] += 1
        rows = []
        for name, label in (
            ("both", f"both pictures >= {LARGE} px"),
            ("either", f"either picture < {LARGE} px"),
        ):
            pairs, k = counts[name]
            if pairs == 0:
                continue
            _, hi = clopper_pearson(k, pairs)
            rows.append(
                f"| {label} | {pairs:,} | {k} | {k / pairs:.1e} | {hi:.1e} "
                f"| {per_query(hi, REGISTRIES[0]):.1e} |"
            )
        return [
            "| pictures (shorter side) | pairs | false matches | per pair | 95 % upper bound "
            f"| per query at {REGISTRIES[0]} works |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]

    def _matches(self, ok: list[Query]) -> list[str]:
        rows = []
        for q in ok:
            for f in q.matches:
                a, b = self.pictures[q.entry], self.pictures[f.work]
                mark = " (same picture)" if self.shared(q.entry, f.work) else ""
                rows.append(
                    f"| {q.family or 'untransformed'}{mark} | {a.package}: {a.source} "
                    f"| {b.package}: {b.source} | {f.stage} | {f.score:.2f} | {f.detail} |"
                )
        if not rows:
            return ["No query matched any work.", ""]
        return [
            "### Every match",
            "",
            "| transformation | query (package: file) | matched work | stage | score | evidence |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]


# -- re-reading a cached run -------------------------------------------------------------------


def recheck(plan: _Plan, queries: list[Query]) -> list[str]:
    """Every match of a cached run re-checked with this checkout's matcher, the pair alone: the
    work registered in an index of its own, the query made again. A global-stage decision is
    per work, so a pair no longer matched here is not matched in the full index either (the
    query's local stage, skipped before, may then match another work: not checked here)."""
    rows = []
    for q in queries:
        for f in q.matches:
            a, b = plan.pictures[q.entry], plan.pictures[f.work]
            index = HammingIndex()
            index.add("W", register(str(b.path)), 1)
            seed = zlib.crc32(f"{a.path.name}|{q.family}|{SEED}".encode())
            data = transformed(str(a.path), q.family, seed)
            now = index.match(ImageFingerprinter().query_fingerprint(data, "image"))
            after = f"{now[0].stage}: {_detail(now[0].evidence, now[0].stage)}" if now else "—"
            rows.append(
                f"| {q.family or 'untransformed'} | {a.package}: {a.source} "
                f"| {b.package}: {b.source} | {f.stage}: {f.detail} | {after} |"
            )
    return [
        "### Every match re-checked with this checkout's matcher (the pair alone)",
        "",
        "| transformation | query | work | in the run | now |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def main(argv: list[str]) -> int:
    """``python -m bench.bench_image_impostors KEY``: the report of the cached run in
    ``bench/.corpus/image-impostors/KEY`` (the groups it finished), with every match
    re-checked by this checkout's matcher."""
    if len(argv) != 1:
        print(main.__doc__, file=sys.stderr)
        return 2
    folder = CACHE / argv[0]
    queries: list[Query] = []
    done = 0
    while (folder / f"group{done + 1}.pickle").exists():
        with (folder / f"group{done + 1}.pickle").open("rb") as fh:
            queries += pickle.load(fh)  # noqa: S301 - written by this benchmark
        done += 1
    if not done:
        print(f"no cached group in {folder}", file=sys.stderr)
        return 1
    plan = _plan(quick=False)
    report = Report(plan.pictures, plan.groups, plan.members, plan.families, queries, done)
    print(report.render(quick=False))
    print("\n".join(recheck(plan, queries)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
