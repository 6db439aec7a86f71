"""What registration tells a holder the recognisers cannot do for a work (registry/limits.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consentry.cli import main
from consentry.fingerprint import fingerprint_all
from consentry.fingerprint import image as image_fp
from consentry.fingerprint import text as text_fp
from consentry.fingerprint.base import Fingerprint
from consentry.index.hamming import MIN_INLIERS
from consentry.registry import limits
from consentry.registry.limits import FEW_KEYPOINTS, recognition_limits
from test_match_cli import picture

WORDS = "the keeper folds the hours the tide forgets and hangs them where the gulls go by".split()


def _text(words: int) -> list[Fingerprint]:
    text = " ".join(WORDS[i % len(WORDS)] + str(i) for i in range(words))
    return fingerprint_all(text.encode(), "text")


def _codes(found: tuple[limits.RecognitionLimit, ...]) -> list[str]:
    return [x.code for x in found]


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _keypoints(prints: list[Fingerprint]) -> int:
    return sum(
        len(image_fp.decode_local_features(f.value)[1])
        for f in prints
        if f.kind == image_fp.KIND_LOCAL
    )


def test_the_kind_names_repeated_to_keep_imports_light_are_the_recognisers() -> None:
    assert limits.WINNOW_KIND == text_fp.WINNOW_KIND
    assert limits.IMAGE_WHOLE_KINDS == {image_fp.KIND_PDQ, image_fp.KIND_REGION}
    assert limits.IMAGE_LOCAL_KIND == image_fp.KIND_LOCAL
    assert limits._SURE_WORDS == 4 * (text_fp.DEFAULT_WINDOW - 1)


@pytest.mark.parametrize(
    ("words", "codes", "needed"),
    [(9, ["too-short"], None), (11, ["too-short"], None), (19, ["too-short"], None),
     (20, ["short"], 12), (27, ["short"], 14), (28, [], None), (300, [], None)],
)  # fmt: skip
def test_texts_too_short_for_the_containment_rule_are_told(
    words: int, codes: list[str], needed: int | None
) -> None:
    found = recognition_limits(_text(words))
    assert _codes(found) == codes
    if codes:
        assert found[0].message.startswith(f"{words} words: ")
    if words < 12:
        assert "only exact copies of the file are recognised" in found[0].message
    elif words < 20:
        assert "rarely recognised inside another document" in found[0].message
    if needed is not None:
        assert f"only when {needed} or more of them" in found[0].message


def test_a_rich_picture_has_no_limit() -> None:
    prints = fingerprint_all(_png(np.asarray(picture(3))), "image")
    assert _keypoints(prints) >= FEW_KEYPOINTS
    assert recognition_limits(prints) == ()


def test_a_tiled_picture_has_no_whole_picture_hash() -> None:
    patch = np.random.default_rng(2).uniform(60, 200, (32, 32))
    prints = fingerprint_all(_png(np.tile(patch, (8, 8))), "image")
    assert not {f.kind for f in prints} & {image_fp.KIND_PDQ, image_fp.KIND_REGION}
    codes = _codes(recognition_limits(prints))
    assert codes[0] == "no-whole-picture-hash"
    assert set(codes) <= {"no-whole-picture-hash", "few-distinctive-points"}


def test_a_small_picture_has_few_distinctive_points() -> None:
    small = np.asarray(picture(3).resize((64, 48)))  # an icon: hashed whole, 29 keypoints
    prints = fingerprint_all(_png(small), "image")
    points = _keypoints(prints)
    assert {f.kind for f in prints} & {image_fp.KIND_PDQ, image_fp.KIND_REGION}
    assert MIN_INLIERS <= points < FEW_KEYPOINTS
    found = recognition_limits(prints)
    assert _codes(found) == ["few-distinctive-points"]
    assert f"only {points} distinctive points" in found[0].message


def test_a_flat_picture_and_an_unread_kind_of_file_are_exact_copies_only() -> None:
    prints = fingerprint_all(_png(np.full((64, 64), 90)), "image")
    assert _keypoints(prints) < MIN_INLIERS
    assert _codes(recognition_limits(prints)) == ["exact-copies-only"]
    audio = fingerprint_all(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8, "audio")
    assert {f.kind for f in audio} <= {"sha256", "iscc"}
    found = recognition_limits(audio)
    assert _codes(found) == ["exact-copies-only"]
    assert "no recogniser reads this kind of file" in found[0].message


def test_a_damaged_fingerprint_row_gives_no_limit_rather_than_an_error() -> None:
    damaged = [Fingerprint(text_fp.WINNOW_KIND, "not base64 at all!")]
    assert recognition_limits(damaged) == ()


def test_register_and_show_tell_the_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert main(["--home", str(home), "init"]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "party", "add", "--name", "Ann", "--json"]) == 0
    party = json.loads(capsys.readouterr().out)["id"]
    haiku = tmp_path / "haiku.txt"
    haiku.write_text("an old pond\na frog jumps in\nsplash! silence again\n")
    story = tmp_path / "story.txt"
    story.write_text(" ".join(f"{WORDS[i % len(WORDS)]}{i}" for i in range(400)))
    args = ["--home", str(home), "work", "register", str(haiku), str(story), "--holder", party]
    assert main([*args, "--json"]) == 0
    out = capsys.readouterr()
    first, second = (json.loads(line) for line in out.out.splitlines())
    assert [x["code"] for x in first["limits"]] == ["too-short"]
    assert first["limits"][0]["message"].startswith("10 words: too short")
    assert "limits" not in second
    assert f"{first['work_id']}: 10 words: too short" in out.err  # told on stderr too

    assert main(["--home", str(home), "work", "show", first["work_id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [x["code"] for x in shown["limits"]] == ["too-short"]
    assert main(["--home", str(home), "work", "show", second["work_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["limits"] == []
    assert main(["--home", str(home), "work", "show", first["work_id"]]) == 0
    assert "  limit: 10 words: too short" in capsys.readouterr().out
