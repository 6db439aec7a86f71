"""A larger set of real pictures for the all-against-all image impostor count.

:mod:`bench.imagecorpus` holds 3,852 pictures, deduplicated across the whole corpus at 40
bits: enough for recall, too few for a direct count near one false match in a million
queries (:mod:`bench.bench_image_impostors` needs billions of query-work pairs). This module
adds the pictures of 25 more Debian packages (games' portraits, textures, maps and story
art, robot-vision frames, codec test images) to the corpus's own, cached in
``bench/.corpus/image-distractors/`` (not committed).

Selection differs from the recognition corpus on purpose:

* pictures of at least :data:`MIN_SIDE` (128) pixels on their shorter side, JPEG, PNG, WebP,
  BMP, TGA and the netpbm formats, also inside Quake-style ``.pk3`` archives (zip files);
* flattened on white, at most 1,280 px, stored as JPEG quality 95, PDQ quality >= 50, as
  in :mod:`bench.imagecorpus`;
* near-duplicates dropped **within a package family only** (PDQ <= 40 bits, any dihedral
  variant): the recognition corpus also drops them across families, which removes exactly
  the unrelated pictures whose whole-picture codes come close, the pairs an impostor count
  must keep. Pictures that really are the same across families (a NASA photograph in two
  games) are then matches the benchmark lists and a person classifies.

``python -m bench.imagedistractors`` builds it and prints the counts per package.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from bench.imagecorpus import DEDUP_DISTANCE, Entry, fetch, package_family, stored_jpeg
from consentry.fingerprint.pdq import pdq_hash_dihedral

HERE = Path(__file__).resolve().parent
ROOT = HERE / ".corpus" / "image-distractors"
#: Packages whose pictures join the recognition corpus's for the impostor count (none of the
#: recognition corpus's own families; forks that share art, such as Cube 2 and Red Eclipse,
#: are represented once).
PACKAGES = (
    "naev-data",
    "torcs-data",
    "redeclipse-data",
    "megaglest-data",
    "widelands-data",
    "freedroidrpg-data",
    "supertux-data",
    "fillets-ng-data",
    "scorched3d-data",
    "kodi-data",
    "marble-data",
    "desktop-base",
    "warzone2100-data",
    "lincity-ng-data",
    "pingus-data",
    "freeciv-data",
    "visp-images-data",
    "libjxl-testdata",
    "nexuiz-textures",
    "ufoai-textures",
    "freeorion-data",
    "berusky2-data",
    "warmux-data",
    "enlightenment-data",
    "trigger-rally-data",
)
MIN_SIDE = 128
MIN_QUALITY = 50
_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tga", ".pgm", ".ppm", ".pnm")
# Decompression-bomb guard for the package files (the largest texture here is 8192 x 8192).
_MAX_PIXELS = 80_000_000


def _members(folder: Path) -> Iterator[tuple[str, bytes]]:
    """(path inside the package, bytes) of every picture, in a fixed order; a ``.pk3`` is
    read as the zip file it is."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            rel = str(path.relative_to(folder))
            low = name.lower()
            if low.endswith(_EXTS):
                yield rel, path.read_bytes()
            elif low.endswith(".pk3"):
                try:
                    with zipfile.ZipFile(path) as pk3:
                        for info in sorted(pk3.infolist(), key=lambda i: i.filename):
                            if info.filename.lower().endswith(_EXTS):
                                yield f"{rel}/{info.filename}", pk3.read(info)
                except zipfile.BadZipFile:
                    continue


def normalise(data: bytes) -> tuple[bytes, npt.NDArray[np.uint8]] | None:
    """The stored JPEG and its 8 dihedral PDQ codes (8, 32), or None when the file is too
    small, too flat for PDQ or unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if min(im.size) < MIN_SIDE or im.size[0] * im.size[1] > _MAX_PIXELS:
                return None
            stored = stored_jpeg(im)
    except Exception:  # a package file Pillow cannot read is simply skipped
        return None
    with Image.open(io.BytesIO(stored)) as im:
        variants = pdq_hash_dihedral(im)
    if variants[0].quality < MIN_QUALITY:
        return None
    return stored, np.frombuffer(b"".join(v.hash for v in variants), np.uint8).reshape(8, 32)


def _normalise_member(member: tuple[str, bytes]) -> tuple[str, bytes, bytes] | None:
    out = normalise(member[1])
    return None if out is None else (member[0], out[0], out[1].tobytes())


def _too_close(kept: list[npt.NDArray[np.uint8]], codes: npt.NDArray[np.uint8]) -> bool:
    """Whether the picture's original code is within DEDUP_DISTANCE of any dihedral variant
    of a picture already kept (same test as :mod:`bench.imagecorpus`)."""
    if not kept:
        return False
    stack = np.stack(kept).view(np.uint64)  # (n, 8, 4)
    xor = stack ^ codes[0].view(np.uint64)[None, None, :]
    return int(np.bitwise_count(xor).sum(axis=2).min()) <= DEDUP_DISTANCE


def corpus() -> list[Entry]:
    """The extra pictures with their provenance (built on first use), in a fixed order."""
    manifest = ROOT / "manifest.json"
    images = ROOT / "images"
    if not manifest.exists():
        images.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, str]] = []
        by_family: dict[str, list[npt.NDArray[np.uint8]]] = {}
        with get_context("fork").Pool(os.cpu_count() or 1) as pool:
            for package in PACKAGES:
                members = _members(fetch(package))
                codes_of = by_family.setdefault(package_family(package), [])
                count = 0
                for found in pool.imap(_normalise_member, members, chunksize=8):
                    if found is None:
                        continue
                    rel, stored, raw = found
                    codes = np.frombuffer(raw, np.uint8).reshape(8, 32)
                    if _too_close(codes_of, codes):
                        continue
                    codes_of.append(codes)
                    name = f"{len(kept):05d}.jpg"
                    (images / name).write_bytes(stored)
                    digest = hashlib.sha256(stored).hexdigest()[:16]
                    kept.append({"file": name, "package": package, "source": rel, "sha256": digest})
                    count += 1
                print(f"image distractors: {package}: {count}", file=sys.stderr, flush=True)
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(kept, indent=1))
        tmp.rename(manifest)  # the manifest appears only once every picture is written
    return [
        Entry(images / e["file"], e["package"], e["source"], package_family(e["package"]))
        for e in json.loads(manifest.read_text())
    ]


if __name__ == "__main__":
    found = corpus()
    print(f"{len(found)} pictures in {ROOT / 'images'}")
