"""End to end: register writing, then `consentry match` / `check` find excerpts of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consentry.cli import main
from consentry.index.text import BOILERPLATE
from test_fingerprint_documents import encrypt_pdf, make_epub, make_pdf, zip_bomb_epub

_SYLLABLES = "ka lo mi ne ru sa te vo da pi gre tho an el or us ba fen wil ost".split()
_RNG = np.random.default_rng(11)
_VOCABULARY = sorted({"".join(_RNG.choice(_SYLLABLES, _RNG.integers(1, 4))) for _ in range(4000)})
_WEIGHTS = 1.0 / np.arange(1, len(_VOCABULARY) + 1)
_WEIGHTS /= _WEIGHTS.sum()


def prose(words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(_VOCABULARY), size=words, p=_WEIGHTS)
    out = []
    for n, index in enumerate(chosen):
        out.append(_VOCABULARY[index] + ("." if rng.random() < 0.07 else ""))
        if n % 90 == 89:
            out[-1] += "\n\n"
    return " ".join(out)


def typos(text: str, rate: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    chars = list(text)
    for index in np.flatnonzero(rng.random(len(chars)) < rate):
        if chars[index].isalpha():
            chars[index] = "q"
    return "".join(chars)


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> list[dict[str, Any]]:
    capsys.readouterr()
    code = main([*(str(a) for a in argv), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


NOVEL = prose(4000, seed=1)
POEM = prose(600, seed=2)
HOST = prose(1500, seed=3)


def words(text: str, start: int, count: int) -> str:
    return " ".join(text.split()[start : start + count])


def inside(passage: str) -> str:
    host = HOST.split(" ")
    return " ".join(host[:600]) + "\n\n" + passage + "\n\n" + " ".join(host[600:])


@pytest.fixture
def registry(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, str]:
    cli(capsys, "init")
    author = cli(capsys, "party", "add", "--name", "Ann Author")[0]["id"]
    lab = cli(capsys, "party", "add", "--name", "Lab", "--kind", "organisation")[0]["id"]
    works = tmp_path / "works"
    works.mkdir()
    (works / "novel.txt").write_text(NOVEL, encoding="utf-8")
    (works / "poem.md").write_text("# A poem\n\n" + POEM, encoding="utf-8")
    registered = cli(capsys, "work", "register", works, "--holder", author)
    ids = {Path(r["path"]).name: r["work_id"] for r in registered}
    return {"author": author, "lab": lab, "novel": ids["novel.txt"], "poem": ids["poem.md"]}


def test_match_finds_excerpts_in_every_format_and_nothing_in_unrelated_text(
    registry: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a_plain.txt").write_text(inside(words(NOVEL, 1000, 200)), encoding="utf-8")
    (docs / "b_typos.txt").write_text(
        inside(typos(words(NOVEL, 2000, 300), 0.02, seed=5)), encoding="utf-8"
    )
    html = "<!DOCTYPE html><html><body><h1>Blog</h1><p>" + inside(words(POEM, 100, 120))
    (docs / "c_page.html").write_text(html.replace("\n\n", "</p><p>") + "</p>", encoding="utf-8")
    (docs / "d_book.epub").write_bytes(make_epub([HOST, words(NOVEL, 3000, 250)]))
    (docs / "e_paper.pdf").write_bytes(make_pdf(inside(words(NOVEL, 500, 200))))
    (docs / "f_unrelated.txt").write_text(prose(3000, seed=99), encoding="utf-8")
    boilerplate = "Chapter 1\n\nAll rights reserved.\n\n" + "\n\n".join(BOILERPLATE)
    (docs / "g_boilerplate.txt").write_text(boilerplate, encoding="utf-8")
    (docs / "h_quote.txt").write_text(inside(words(NOVEL, 50, 20)), encoding="utf-8")

    results = {Path(r["path"]).name: r for r in cli(capsys, "match", docs)}
    expected = {
        "a_plain.txt": registry["novel"],
        "b_typos.txt": registry["novel"],
        "c_page.html": registry["poem"],
        "d_book.epub": registry["novel"],
        "e_paper.pdf": registry["novel"],
    }
    for name, work_id in expected.items():
        matches = results[name]["matches"]
        assert [m["work_id"] for m in matches] == [work_id], name
        (match,) = matches
        assert match["stage"] == "text"
        assert match["matched_words"] >= 60
        assert match["passages"][0]["work_words"][1] > match["passages"][0]["work_words"][0]
    assert results["a_plain.txt"]["matches"][0]["passages"][0]["work_words"][0] >= 990
    for name in ("f_unrelated.txt", "g_boilerplate.txt", "h_quote.txt"):
        assert results[name]["matches"] == [], name
        assert "error" not in results[name]


def test_check_admits_an_excerpt_of_a_granted_text(
    registry: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(
        capsys,
        "grant", "create", "--work", registry["poem"], "--licensee", registry["lab"],
        "--purpose", "train-genai", "--by", registry["author"],
    )  # fmt: skip
    excerpt = tmp_path / "excerpt.txt"
    excerpt.write_text(inside(words(POEM, 200, 150)), encoding="utf-8")
    novel = tmp_path / "novel-excerpt.txt"
    novel.write_text(inside(words(NOVEL, 100, 150)), encoding="utf-8")
    args = ("--licensee", registry["lab"], "--purpose", "train-genai")
    decisions = {Path(r["path"]).name: r for r in cli(capsys, "check", excerpt, novel, *args)}
    assert decisions["excerpt.txt"]["decision"] == "admit"
    assert decisions["novel-excerpt.txt"]["decision"] == "deny"
    assert decisions["novel-excerpt.txt"]["reasons"] == ["no-grant"]


def test_bad_inputs_get_a_per_file_error_and_the_batch_goes_on(
    registry: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "bad"
    docs.mkdir()
    (docs / "a_binary.txt").write_bytes(bytes(range(256)) * 64)
    (docs / "b_invalid.txt").write_bytes(b"\xc3\x28\xa0\xa1 " * 400)
    (docs / "c_bomb.epub").write_bytes(zip_bomb_epub(32 << 20))
    (docs / "d_locked.pdf").write_bytes(encrypt_pdf(make_pdf(words(NOVEL, 0, 300))))
    (docs / "e_good.txt").write_text(inside(words(NOVEL, 1500, 200)), encoding="utf-8")
    results = {Path(r["path"]).name: r for r in cli(capsys, "match", docs)}
    assert len(results) == 5
    assert "binary" in results["a_binary.txt"]["error"]
    assert "UTF-8" in results["b_invalid.txt"]["error"]
    assert "ZIP bomb" in results["c_bomb.epub"]["error"]
    assert "encrypted PDF" in results["d_locked.pdf"]["error"]
    assert [m["work_id"] for m in results["e_good.txt"]["matches"]] == [registry["novel"]]
    args = ("--licensee", registry["lab"], "--purpose", "train-genai")
    denied = cli(capsys, "check", docs / "c_bomb.epub", *args)[0]
    assert (denied["decision"], denied["reasons"]) == ("deny", ["unreadable"])
