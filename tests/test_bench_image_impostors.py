"""The all-against-all image impostor count (bench/bench_image_impostors.py) and its picture set
(bench/imagedistractors.py): the group split, the picture selection, one query through the
real index, and the bounds the report derives from the pairs."""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_image_impostors as impostors
from bench.bench_image_fmr import register
from bench.fmrstats import balanced_groups, balanced_split, clopper_pearson, per_query
from bench.imagecorpus import Entry
from bench.imagedistractors import _members, _too_close, normalise

from test_match_cli import jpeg, picture


def test_balanced_groups_are_disjoint_complete_balanced_and_deterministic() -> None:
    counts = {"a": 100, "b": 90, "c": 60, "d": 30, "e": 20, "f": 5}
    groups = balanced_groups(counts, 3)
    assert len(groups) == 3
    assert frozenset().union(*groups) == set(counts)
    assert sum(len(g) for g in groups) == len(counts)
    assert sorted(sum(counts[f] for f in g) for g in groups) == [95, 100, 110]
    assert balanced_groups(counts, 3) == groups
    assert balanced_groups(counts, 2) == balanced_split(counts)
    with pytest.raises(ValueError, match="at least one group"):
        balanced_groups(counts, 0)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_members_reads_pictures_and_pk3_archives_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.PNG").write_bytes(b"png")
    (tmp_path / "a.jpg").write_bytes(b"jpg")
    (tmp_path / "notes.txt").write_text("not a picture")
    with zipfile.ZipFile(tmp_path / "textures.pk3", "w") as pk3:
        pk3.writestr("textures/wall.tga", b"tga")
        pk3.writestr("scripts/wall.shader", b"text")
        pk3.writestr("textures/floor.jpg", b"floor")
    (tmp_path / "broken.pk3").write_bytes(b"PK\x03\x04 truncated")
    found = list(_members(tmp_path))
    assert found == [
        ("a.jpg", b"jpg"),
        ("textures.pk3/textures/floor.jpg", b"floor"),
        ("textures.pk3/textures/wall.tga", b"tga"),
        ("b/z.PNG", b"png"),
    ]


def test_normalise_keeps_textured_pictures_and_drops_small_flat_and_corrupt_ones() -> None:
    kept = normalise(_png(picture(1, (300, 200))))
    assert kept is not None
    stored, codes = kept
    with Image.open(io.BytesIO(stored)) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (300, 200), "RGB")
    assert codes.shape == (8, 32)
    assert codes.dtype == np.uint8
    assert normalise(_png(picture(1, (300, 100)))) is None  # shorter side < 128
    assert normalise(_png(Image.new("RGB", (300, 300), (40, 90, 200)))) is None  # flat
    assert normalise(b"\x89PNG\r\n\x1a\n truncated") is None
    assert normalise(b"") is None


def test_normalise_flattens_transparency_on_white() -> None:
    rgba = picture(2, (200, 200)).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 0).point(lambda _: 0))
    rgba.paste(picture(2, (100, 100)).convert("RGBA"), (50, 50))
    kept = normalise(_png(rgba))
    assert kept is not None
    with Image.open(io.BytesIO(kept[0])) as im:
        corner = im.convert("RGB").getpixel((5, 5))
    assert isinstance(corner, tuple)
    assert min(corner) >= 245


def test_too_close_compares_with_every_dihedral_variant_of_the_kept() -> None:
    first = normalise(_png(picture(3, (256, 256))))
    other = normalise(_png(picture(4, (256, 256))))
    assert first is not None
    assert other is not None
    turned = normalise(_png(picture(3, (256, 256)).transpose(Image.Transpose.ROTATE_90)))
    assert turned is not None
    assert not _too_close([], first[1])
    assert _too_close([first[1]], first[1])
    assert _too_close([first[1]], turned[1])  # the kept picture's turned variant is close
    assert not _too_close([first[1]], other[1])


@pytest.fixture
def tiny_index(tmp_path: Path) -> Iterator[list[str]]:
    """Three pictures on disk, the first two registered as works 0 and 1."""
    paths = []
    for seed in (11, 12, 13):
        path = tmp_path / f"{seed}.jpg"
        path.write_bytes(jpeg(picture(seed, (400, 300)), 95))
        paths.append(str(path))
    index = impostors.HammingIndex()
    impostors._ORDINAL.clear()
    for ordinal, path in enumerate(paths[:2]):
        index.add(f"W{ordinal}", register(path), ordinal + 1)
        impostors._ORDINAL[f"W{ordinal}"] = ordinal
    impostors._INDEX[:] = [index]
    impostors._PATHS[:] = paths
    yield paths
    impostors._INDEX.clear()
    impostors._PATHS.clear()
    impostors._ORDINAL.clear()


def test_query_finds_a_registered_picture_and_nothing_for_another(tiny_index: list[str]) -> None:
    copy = impostors._query((1, "crop 20 %"))
    assert copy.works == 2
    assert not copy.error
    assert [f.work for f in copy.matches] == [1]
    assert copy.matches[0].stage in ("pdq", "local")
    assert copy.matches[0].detail
    assert impostors._query((2, "")).matches == ()


def test_query_that_cannot_be_read_is_an_error_not_a_match(
    tiny_index: list[str], tmp_path: Path
) -> None:
    Path(tiny_index[2]).write_bytes(b"\xff\xd8\xff not a jpeg")
    broken = impostors._query((2, ""))
    assert broken.error
    assert broken.matches == ()
    assert broken.works == 2


def _report(queries: list[impostors.Query], folder: Path) -> impostors.Report:
    # Pictures 0 and 2 are small (shorter side 150 px), 1 and 3 large (300 px).
    pics = []
    for n, package in enumerate(("a-data", "a-data", "b-data", "c-data")):
        path = folder / f"{n}.jpg"
        side = 300 if n % 2 else 150
        path.write_bytes(jpeg(picture(n, (side + 20, side)), 90))
        pics.append(Entry(path, package, f"art/{n}.png", package.split("-")[0]))
    return impostors.Report(
        pics, (frozenset({"a"}), frozenset({"b", "c"})), [[0, 1], [2, 3]], ("", "x"), queries
    )


def test_report_counts_pairs_bounds_and_lists_every_match(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hit = impostors.Found(2, "local", 0.5, "14 inliers of 30")
    same = impostors.Found(3, "pdq", 0.9, "distance 4 (full)")
    queries = [
        impostors.Query(0, "", 500_000, (hit,)),
        impostors.Query(1, "", 500_000, ()),
        impostors.Query(1, "x", 500_000, (same,)),
        impostors.Query(2, "x", 250_000, (), error="ValueError('bad')"),
    ]
    monkeypatch.setattr(
        impostors,
        "SHARED_CONTENT",
        frozenset({frozenset({("a-data", "art/1.png"), ("c-data", "art/3.png")})}),
    )
    report = _report(queries, tmp_path)
    assert report.shared(1, 3)
    assert report.shared(3, 1)
    assert not report.shared(0, 2)
    text = report.render(quick=False)
    # Errors face no works; the shared picture's match is listed but not counted.
    assert "**3 queries, 1,500,000 (query, registered work) pairs: 1 false matches**" in text
    assert "(1 matches of the same picture" in text
    assert "1 queries could not be fingerprinted" in text
    _, hi = clopper_pearson(1, 1_500_000)
    assert f"upper bound **{hi:.2e}**" in text
    assert f"| 200 | 7,500 | {per_query(hi, 200):.1e} | ✗ |" in text
    assert "| a-data: art/0.png | b-data: art/2.png | local | 0.50 | 14 inliers of 30 |" in text
    assert "| x (same picture) | a-data: art/1.png | c-data: art/3.png | pdq |" in text
    # By size: a large query faces the one large picture of the other group.
    assert "| both pictures >= 200 px | 2 | 0 |" in text
    assert "| either picture < 200 px | 1,499,998 | 1 |" in text


def test_report_with_no_match_bounds_by_the_pairs_alone(tmp_path: Path) -> None:
    queries = [impostors.Query(i % 2, "", 10**9, ()) for i in range(4)]
    text = _report(queries, tmp_path).render(quick=True)
    _, hi = clopper_pearson(0, 4 * 10**9)
    assert hi == pytest.approx(3.689 / 4e9, rel=1e-3)  # two-sided 95 %: -ln(0.025) / n
    assert "No query matched any work." in text
    assert f"| 200 | 20,000,000 | {per_query(hi, 200):.1e} | ✓ |" in text
    assert f"| 100,000 | 40,000 | {per_query(hi, 10**5):.1e} | ✗ |" in text


def test_recheck_makes_each_matched_pair_again_with_this_checkouts_matcher(
    tiny_index: list[str],
) -> None:
    pics = [Entry(Path(p), "pkg-data", Path(p).name, "pkg") for p in tiny_index]
    plan = impostors._Plan(pics, ("", "crop 20 %"), (frozenset({"pkg"}),), [[0, 1, 2]])
    queries = [
        impostors.Query(1, "crop 20 %", 2, (impostors.Found(1, "pdq", 0.9, "distance 4"),)),
        impostors.Query(2, "", 2, (impostors.Found(0, "local", 0.6, "12 inliers"),)),
    ]
    rows = impostors.recheck(plan, queries)
    copy = next(r for r in rows if r.startswith("| crop 20 %"))
    assert copy.split(" | ")[3] == "pdq: distance 4"
    assert copy.split(" | ")[4].startswith(("pdq: distance", "local:"))  # still the same picture
    unrelated = next(r for r in rows if r.startswith("| untransformed"))
    assert unrelated.endswith("| local: 12 inliers | — |")  # not matched any more
