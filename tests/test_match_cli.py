"""End to end: register images, then `consentry match` / `check` find edited copies of them."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from consentry.cli import main


def picture(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A textured picture: smooth colour fields, shapes and fine detail (ORB needs corners)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 6.3)
        field = np.sin(xx / w * fx * 6.28 + phase) * np.cos(yy / h * fy * 6.28)
        channels.append(127 + 90 * field)
    base = Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(base)
    for _ in range(40):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(6, 40))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0))
        else:
            draw.rectangle((x - r, y - r, x + r // 2, y + r // 3), fill=colour)
    return base


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width`` x ``height`` pixels (its data stream is empty)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> list[dict[str, Any]]:
    capsys.readouterr()
    code = main([*(str(a) for a in argv), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def registry(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, str]:
    cli(capsys, "init")
    artist = cli(capsys, "party", "add", "--name", "Ada Artist")[0]["id"]
    lab = cli(capsys, "party", "add", "--name", "Lab", "--kind", "organisation")[0]["id"]
    works = tmp_path / "works"
    works.mkdir()
    for n in range(3):
        (works / f"pic{n}.jpg").write_bytes(jpeg(picture(n), 95))
    registered = cli(capsys, "work", "register", works, "--holder", artist)
    ids = {Path(r["path"]).stem: r["work_id"] for r in registered}
    return {"artist": artist, "lab": lab, **ids}


def test_match_finds_edited_copies_and_nothing_in_an_unrelated_picture(
    registry: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = picture(1)
    w, h = original.size
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "a_reencoded.jpg").write_bytes(jpeg(original, 30))
    (queries / "b_crop.jpg").write_bytes(jpeg(original.crop((40, 20, w - 30, h - 50))))
    padded = Image.new("RGB", (w, int(h * 1.3)), (0, 0, 0))
    padded.paste(original, (0, int(h * 0.15)))
    (queries / "c_letterbox.jpg").write_bytes(jpeg(padded))
    stamped = original.copy()
    ImageDraw.Draw(stamped).rectangle((0, int(h * 0.8), w, h), fill=(255, 255, 255))
    (queries / "d_overlay.png").write_bytes(_png(stamped))
    (queries / "e_flip.webp").write_bytes(_webp(ImageOps.mirror(original)))
    (queries / "f_unrelated.jpg").write_bytes(jpeg(picture(99)))
    results = {Path(r["path"]).stem: r for r in cli(capsys, "match", queries)}
    for name in ("a_reencoded", "b_crop", "c_letterbox", "d_overlay", "e_flip"):
        matches = results[name]["matches"]
        assert matches, name
        assert matches[0]["work_id"] == registry["pic1"], (name, matches)
        assert {"work_id", "score", "stage"} <= set(matches[0])
    assert results["f_unrelated"]["matches"] == []


def test_check_admits_a_reencoded_copy_of_a_granted_picture(
    registry: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(
        capsys,
        "grant", "create", "--work", registry["pic0"], "--licensee", registry["lab"],
        "--purpose", "train-genai", "--by", registry["artist"],
    )  # fmt: skip
    granted = tmp_path / "granted.jpg"
    granted.write_bytes(jpeg(picture(0).resize((320, 240)), 60))
    other = tmp_path / "other.jpg"
    other.write_bytes(jpeg(picture(2), 60))
    args = ("--licensee", registry["lab"], "--purpose", "train-genai")
    decisions = {Path(r["path"]).name: r for r in cli(capsys, "check", granted, other, *args)}
    assert decisions["granted.jpg"]["decision"] == "admit"
    assert decisions["other.jpg"]["decision"] == "deny"
    assert decisions["other.jpg"]["reasons"] == ["no-grant"]


def test_bad_images_get_a_per_file_error_and_the_batch_goes_on(
    registry: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a_empty.jpg").write_bytes(b"")
    good = jpeg(picture(2))
    (bad / "b_truncated.jpg").write_bytes(good[: len(good) // 3])
    (bad / "c_bomb.png").write_bytes(png_bomb(50_000, 50_000))
    (bad / "d_vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (bad / "e_unknown.png").write_bytes(b"\x89PNG-but-not-really" * 10)
    (bad / "f_good.jpg").write_bytes(good)
    results = {Path(r["path"]).stem: r for r in cli(capsys, "match", bad)}
    for name in ("a_empty", "b_truncated", "c_bomb", "d_vector", "e_unknown"):
        assert results[name]["matches"] == [], name
        assert results[name]["error"], name
    assert "decompression bomb" in results["c_bomb"]["error"]
    assert "SVG" in results["d_vector"]["error"]
    assert results["f_good"]["matches"][0]["work_id"] == registry["pic2"]
    assert "error" not in results["f_good"]
    decisions = cli(capsys, "check", bad, "--licensee", registry["lab"], "--purpose", "train-genai")
    by_name = {Path(r["path"]).stem: r for r in decisions}
    assert by_name["c_bomb"]["decision"] == "deny"
    assert by_name["c_bomb"]["reasons"] == ["unreadable"]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _webp(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "WEBP", quality=80)
    return buf.getvalue()
