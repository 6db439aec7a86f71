"""Build the image recognition corpus from Debian packages into ``bench/.corpus/`` (not committed).

Real photographs and artwork, not synthetic noise: landscape photographs (Endless Sky), painted
portraits and story art (Wesnoth), desktop wallpapers (GNOME, MATE, KDE Plasma, UKUI), game
textures (SuperTuxKart, Extreme Tux Racer, Neverball, Hedgewars), clip-art stamps (Tux Paint)
and sky and planet imagery (Stellarium). Packages are fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x``: nothing is installed.

Selection, in a fixed order so that the corpus is the same on every machine with the same
package versions:

1. every JPEG/PNG/WebP of at least :data:`MIN_SIDE` pixels on its shorter side;
2. flattened on white (transparency), shrunk to at most :data:`MAX_SIDE` on the longer side
   and stored as JPEG quality 95 (the "original" a creator registers);
3. images too flat for any perceptual hash (PDQ quality < 50) are dropped;
4. near-duplicates are dropped (PDQ distance <= :data:`DEDUP_DISTANCE` to an image already
   kept, any of the 8 dihedral variants): the same wallpaper at twelve sizes, texture
   variants, mirrored sprites. Without this, a "distractor" that is really a copy of a
   registered image would count as a false match.

``python -m bench.imagecorpus`` builds it; :func:`corpus` builds on demand and returns the
list of kept files. :func:`entries` returns the same files with their provenance (source
package, path inside it, and the package *family*, :func:`package_family`), for benchmarks
that must keep registered and distractor pictures from unrelated sources.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from consentry.fingerprint.pdq import pdq_hash_dihedral

HERE = Path(__file__).resolve().parent
ROOT = HERE / ".corpus"
PACKAGES = (
    "endless-sky-data",
    "wesnoth-1.16-data",
    "plasma-workspace-wallpapers",
    "gnome-backgrounds",
    "mate-backgrounds",
    "ukui-wallpapers",
    "supertuxkart-data",
    "stellarium-data",
    "tuxpaint-stamps-default",
    "hedgewars-data",
    "extremetuxracer-data",
    "neverball-data",
)
MIN_SIDE = 200
MAX_SIDE = 1280
DEDUP_DISTANCE = 40
_EXTS = (".jpg", ".jpeg", ".png", ".webp")


# Name parts that say what kind of files a package holds, not whose they are: wesnoth-1.16-data,
# wesnoth-music and wesnoth are one source.
_NOT_A_SOURCE = frozenset(
    {
        "art",
        "artwork",
        "backgrounds",
        "common",
        "data",
        "default",
        "extra",
        "extras",
        "images",
        "music",
        "sounds",
        "stamps",
        "textures",
        "theme",
        "themes",
        "wallpapers",
    }
)
_VERSION = re.compile(r"^[0-9][0-9.]*$")


@dataclass(frozen=True, slots=True)
class Entry:
    """One corpus image and where it came from."""

    path: Path
    package: str
    source: str  # path of the original file inside the package
    family: str  # see package_family


def package_family(package: str) -> str:
    """The source a Debian package's files come from: its name without version numbers and
    words such as ``data``, ``music`` or ``wallpapers`` (``wesnoth-1.16-data`` -> ``wesnoth``,
    ``tuxpaint-stamps-default`` -> ``tuxpaint``). A name made only of such words stays whole."""
    parts = package.lower().split("-")
    kept = [p for p in parts if p not in _NOT_A_SOURCE and not _VERSION.match(p)]
    return "-".join(kept) if kept else package.lower()


def entries() -> list[Entry]:
    """The corpus images with their provenance, in :func:`corpus` order (built on first use)."""
    files = corpus()
    manifest = json.loads((ROOT / "manifest.json").read_text())
    if len(manifest) != len(files):  # pragma: no cover - corpus() wrote this very manifest
        raise RuntimeError(f"{ROOT / 'manifest.json'} does not match the corpus")
    return [
        Entry(path, e["package"], e["source"], package_family(e["package"]))
        for path, e in zip(files, manifest, strict=True)
    ]


def fetch(package: str) -> Path:
    debs = ROOT / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
    target = ROOT / "raw" / package
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(tmp)], check=True)
        tmp.rename(target)
    return target


def _candidates(folder: Path) -> list[Path]:
    out = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        out.extend(Path(root) / n for n in sorted(names) if n.lower().endswith(_EXTS))
    return out


def _normalise(path: Path) -> bytes | None:
    try:
        with Image.open(path) as im:
            if min(im.size) < MIN_SIDE:
                return None
            return stored_jpeg(im)
    except Exception:  # a package file we cannot read is simply skipped
        return None


def stored_jpeg(im: Image.Image) -> bytes:
    """What a corpus keeps of a picture: flattened on white (transparency), shrunk to at most
    :data:`MAX_SIDE` on the longer side, JPEG quality 95."""
    im.load()
    if im.mode in ("RGBA", "LA", "PA", "P") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, (0, 0), rgba)
    else:
        rgb = im.convert("RGB")
    rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def corpus() -> list[Path]:
    """The corpus images (built on first use), in a fixed order."""
    manifest = ROOT / "manifest.json"
    if manifest.exists():
        return [ROOT / "images" / e["file"] for e in json.loads(manifest.read_text())]
    images = ROOT / "images"
    images.mkdir(parents=True, exist_ok=True)
    kept: list[dict[str, str]] = []
    codes: list[np.ndarray] = []
    for package in PACKAGES:
        folder = fetch(package)
        count = 0
        for path in _candidates(folder):
            data = _normalise(path)
            if data is None:
                continue
            with Image.open(io.BytesIO(data)) as im:
                variants = pdq_hash_dihedral(im)
            if variants[0].quality < 50:
                continue
            mine = np.frombuffer(b"".join(v.hash for v in variants), np.uint8).reshape(8, 32)
            if codes:
                stack = np.stack(codes).view(np.uint64)  # (n, 4)
                xor = stack[:, None, :] ^ mine.view(np.uint64)[None, :, :]
                dist = np.bitwise_count(xor).sum(axis=2)
                if int(dist.min()) <= DEDUP_DISTANCE:
                    continue
            codes.append(mine[0])
            name = f"{len(kept):05d}.jpg"
            (images / name).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()[:16]
            rel = str(path.relative_to(folder))
            kept.append({"file": name, "package": package, "source": rel, "sha256": digest})
            count += 1
        print(f"corpus: {package}: {count} images", file=sys.stderr, flush=True)
    manifest.write_text(json.dumps(kept, indent=1))
    return [images / e["file"] for e in kept]


if __name__ == "__main__":
    files = corpus()
    print(f"{len(files)} images in {ROOT / 'images'}")
