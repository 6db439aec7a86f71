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
list of kept files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
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


def _fetch(package: str) -> Path:
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
            im.load()
            if im.mode in ("RGBA", "LA", "PA", "P") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, (0, 0), rgba)
                rgb = flat
            else:
                rgb = im.convert("RGB")
    except Exception:  # a package file we cannot read is simply skipped
        return None
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
        folder = _fetch(package)
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
