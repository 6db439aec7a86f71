"""The `consentry` command, driven in-process through ``consentry.cli.main(argv)``.

The contract (docs/cli.md): with ``--json`` stdout carries only JSON (one object or JSON Lines);
without it, the answer is human text on stdout; bad input exits 1 with one line on stderr that
starts with ``error:`` and names the problem. A few runs go through the real console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest

import consentry
from consentry.cli import cli, main
from consentry.cli.demo import write_demo_files
from consentry.cli.lazy import subcommands

CONSOLE = Path(sys.executable).parent / "consentry"


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    def lines(self) -> list[dict[str, Any]]:
        """stdout as JSON Lines; fails if any line is not a JSON object."""
        objs = []
        for line in self.out.splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"`consentry {' '.join(self.argv)}` printed non-JSON: {line!r}")
            assert isinstance(obj, dict), line
            objs.append(obj)
        return objs

    def one(self) -> dict[str, Any]:
        (obj,) = self.lines()
        return obj


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str | Path) -> Run:
        args = tuple(str(a) for a in argv)
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Run(args, code, captured.out, captured.err)

    def ok(self, *argv: str | Path) -> Run:
        run = self(*argv)
        assert run.code == 0, f"`consentry {' '.join(run.argv)}` -> {run.code}: {run.err}"
        return run

    def json(self, *argv: str | Path) -> Run:
        """A successful --json run whose stdout is nothing but JSON."""
        run = self.ok(*argv, "--json")
        assert run.out.strip(), f"`consentry {' '.join(run.argv)}` printed nothing"
        run.lines()
        return run

    def human(self, *argv: str | Path) -> Run:
        """A successful human-mode run: the answer is on stdout, and it is not JSON."""
        run = self.ok(*argv)
        assert run.out.strip(), f"`consentry {' '.join(run.argv)}` printed nothing on stdout"
        first = run.out.lstrip()[:1]
        assert first not in "{[", f"human mode printed JSON: {run.out[:80]!r}"
        return run


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path, groups included (a group is a command too: it has --help)."""
    yield prefix
    for name, command in sorted(subcommands(group).items()):
        if isinstance(command, click.Group):
            yield from walk(command, (*prefix, name))
        else:
            yield (*prefix, name)


def leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(subcommands(group).items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*prefix, name))
        else:
            yield (*prefix, name)


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = subcommands(command)[name]
    return command


# -- no registry needed ----------------------------------------------------------------------


def test_help_on_every_command(run: Cli) -> None:
    paths = list(walk(cli))
    assert len(paths) > 20
    for path in paths:
        result = run(*path, "--help")
        assert result.code == 0, (path, result.err)
        # In-process, click names the program after sys.argv[0] (pytest): match the rest.
        usage = result.out.splitlines()[0]
        assert usage.startswith("Usage: "), result.out
        assert " ".join(("", *path, "[OPTIONS]")) in usage, usage
        command = command_at(path)
        assert (command.help or "").strip(), f"`consentry {' '.join(path)}` has no help text"
        assert command.help is not None
        summary = " ".join(command.help.strip().splitlines()[0].split())
        assert summary in " ".join(result.out.split())
        assert result.err == ""


def test_every_command_takes_json() -> None:
    """The contract (GUIDE §3, docs/cli.md): *every* command takes --json."""
    missing = [
        " ".join(path)
        for path in leaves(cli)
        if "--json" not in {o for p in command_at(path).params for o in p.opts}
    ]
    assert missing == [], f"commands without --json: {missing}"


def test_version(run: Cli) -> None:
    result = run("--version")
    assert result.code == 0
    assert result.out.strip() == f"consentry, version {consentry.__version__}"


def test_the_console_script(tmp_path: Path) -> None:
    """The installed entry point maps results to exit codes like main() does."""
    env = {**os.environ, "CONSENTRY_HOME": str(tmp_path / "nowhere")}
    env.pop("CONSENTRY_DATABASE_URL", None)
    version = subprocess.run(
        [CONSOLE, "--version"], capture_output=True, text=True, env=env, check=False
    )
    assert (version.returncode, version.stdout.strip()) == (
        0,
        f"consentry, version {consentry.__version__}",
    )
    missing = subprocess.run(
        [CONSOLE, "party", "list", "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.startswith("error: ")
    assert len(missing.stderr.splitlines()) == 1
    assert "consentry init" in missing.stderr


# -- a registry on each backend --------------------------------------------------------------


def test_every_registry_command_in_json_and_human_mode(
    run: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    files = write_demo_files(tmp_path / "files")
    init = run.json("init").one()
    assert init["schema"]
    assert run.json("init").one()["schema"] == init["schema"]  # idempotent

    ann = run.json("party", "add", "--name", "Ann Author", "--email", "ann@example.org").one()
    bo = run.json("party", "add", "--name", "Bo Press", "--kind", "organisation").one()
    lab = run.json("party", "add", "--name", "Lumen Lab", "--kind", "organisation").one()
    orla = run.json("party", "add", "--name", "Orla Operator", "--kind", "organisation").one()
    assert (ann["id"], bo["id"], lab["id"], orla["id"]) == ("P1", "P2", "P3", "P4")
    assert (ann["email"], bo["kind"]) == ("ann@example.org", "organisation")
    human = run.human("party", "add", "--name", "Cy Human")
    assert human.out.startswith("P5\t")

    verified = run.json("party", "verify", orla["id"], "--level", "operator", "--registrar").one()
    assert (verified["verification"], verified["registrar"]) == ("operator", True)
    vouched = run.json("party", "vouch", ann["id"], "--by", orla["id"]).one()
    assert (vouched["verification"], vouched["vouched_by"]) == ("vouched", orla["id"])
    assert [p["id"] for p in run.json("party", "list").lines()] == ["P1", "P2", "P3", "P4", "P5"]
    assert run.json("party", "show", "p2").one()["name"] == "Bo Press"
    assert "Bo Press" in run.human("party", "show", "P2").out
    assert len(run.human("party", "list").out.splitlines()) == 5

    registered = run.json(
        "work",
        "register",
        files["story"],
        "--holder",
        ann["id"],
        "--co-holder",
        bo["id"],
        "--role",
        f"{bo['id']}=publisher",
        "--share",
        f"{ann['id']}=70",
        "--share",
        f"{bo['id']}=30",
        "--title",
        "The Lighthouse Keeper's Daughter",
        "--identifier",
        "isbn:9780141439518",
    ).one()
    assert registered == {"path": str(files["story"]), "work_id": "W1", "media_type": "text"}
    cover = run.json("work", "register", files["cover"], "--holder", bo["id"]).one()
    assert (cover["work_id"], cover["media_type"]) == ("W2", "image")
    shown = run.json("work", "show", "W1").one()
    assert shown["title"] == "The Lighthouse Keeper's Daughter"
    assert shown["identifiers"] == [{"scheme": "isbn", "value": "9780141439518"}]
    assert {(h["party_id"], h["role"], h["share"]) for h in shown["holders"]} == {
        ("P1", "author", "70"),
        ("P2", "publisher", "30"),
    }
    assert {"sha256", "iscc"} <= {f["kind"] for f in shown["fingerprints"]}
    assert [w["id"] for w in run.json("work", "list").lines()] == ["W1", "W2"]
    assert [w["id"] for w in run.json("work", "list", "--holder", ann["id"]).lines()] == ["W1"]
    assert "isbn:9780141439518" in run.human("work", "show", "W1").out
    assert len(run.human("work", "list").out.splitlines()) == 2

    created = run.json(
        "grant",
        "create",
        "--work",
        "W1",
        "--licensee",
        lab["id"],
        "--purpose",
        "train-genai",
        "--purpose",
        "rag",
        "--by",
        ann["id"],
        "--expires",
        "2099-12-31",
        "--payment",
        "flat",
        "--amount",
        "100",
        "--currency",
        "eur",
    ).one()
    assert created["grant_id"] == "G1"
    assert created["purposes"] == ["rag", "train-genai"]
    assert created["terms"] == {"text": "", "payment": "flat", "amount": "100", "currency": "EUR"}
    assert created["expires"].startswith("2100-01-01T00:00:00")  # end of 31 December
    pending = run.json("check", files["story"], "--licensee", lab["id"], "--purpose", "rag").one()
    assert (pending["decision"], pending["reasons"]) == ("deny", ["grant-pending-agreement"])
    agreed = run.json("grant", "agree", "G1", "--by", bo["id"]).one()
    assert {a["party_id"] for a in agreed["agreements"]} == {"P1", "P2"}
    admitted = run.json("check", files["story"], "--licensee", lab["id"], "--purpose", "rag")
    assert (admitted.one()["decision"], admitted.one()["reasons"]) == ("admit", ["grant-in-force"])
    assert run.human(
        "check", files["story"], "--licensee", "P3", "--purpose", "rag"
    ).out.startswith("admit\t")
    assert [g["id"] for g in run.json("grant", "list", "--work", "W1").lines()] == ["G1"]
    assert run.ok("grant", "list", "--party", "P5", "--json").out == ""
    assert run.json("grant", "show", "G1").one()["licensee"] == "P3"
    assert "agreed by" in run.human("grant", "show", "G1").out
    assert "G1" in run.human("grant", "list").out

    reservation = run.json("reserve", "--by", bo["id"], "--work", "W1", "--purpose", "rag").one()
    assert (reservation["id"], reservation["work_id"], reservation["purposes"]) == (
        "R1",
        "W1",
        ["rag"],
    )
    reserved = run.json("check", files["story"], "--licensee", lab["id"], "--purpose", "rag")
    assert reserved.one()["reasons"] == ["reserved"]
    status = run.json("status", "W1").one()
    assert status["work_id"] == "W1"
    assert [(g["grant_id"], g["state"]) for g in status["grants"]] == [("G1", "in-force")]
    assert [r["id"] for r in status["reservations"]] == ["R1"]
    assert status["disputes"] == []
    text = run.human("status", "W1").out
    assert "RESERVED by P2" in text
    assert "G1: P3 for rag,train-genai: in-force" in text
    assert run.json("status", "W1", "--at", "2000-01-01").one()["grants"][0]["state"] == (
        "not-recorded-yet"
    )
    lifted = run.json("reserve", "--by", bo["id"], "--lift", "R1").one()
    assert lifted["lifted_at"] is not None

    # Mallory registers Ann's story under her own name: registered, and a dispute opens.
    mallory = run.json("party", "add", "--name", "Mallory").one()
    copy = tmp_path / "copy" / "story.txt"
    copy.parent.mkdir()
    shutil.copyfile(files["story"], copy)
    claim = run.json("work", "register", copy, "--holder", mallory["id"]).one()
    assert (claim["work_id"], claim["disputes"]) == ("W3", ["D1"])
    disputed = run.json("check", files["story"], "--licensee", lab["id"], "--purpose", "rag")
    assert "disputed" in disputed.one()["reasons"]
    assert [d["id"] for d in run.json("dispute", "list", "--open").lines()] == ["D1"]
    assert "DISPUTED (D1)" in run.human("status", "W1").out
    opened = run.json("dispute", "open", "W2", "W3", "--reason", "looks alike").one()
    assert opened["id"] == "D2"
    resolved = run.json(
        "dispute", "resolve", "D1", "--by", orla["id"], "--void", "W3", "--note", "Ann first"
    ).one()
    assert resolved["resolved_at"] is not None
    assert "W3" in resolved["resolution"]
    assert [d["id"] for d in run.json("dispute", "list", "--open").lines()] == ["D2"]
    assert [d["id"] for d in run.json("dispute", "list").lines()] == ["D1", "D2"]
    assert "resolved" in run.human("dispute", "list").out
    kept = run.json("dispute", "resolve", "D2", "--by", orla["id"], "--keep-both").one()
    assert kept["resolution"] == "both registrations stand"
    assert run.ok("dispute", "list", "--open", "--json").out == ""

    revoked = run.json("grant", "revoke", "G1", "--by", bo["id"], "--reason", "enough").one()
    assert revoked["revocation"]["by"] == "P2"
    after = run.json("check", files["story"], "--licensee", lab["id"], "--purpose", "rag").one()
    assert after["reasons"] == ["grant-revoked"]

    # The human forms of the mutations print to stdout too.
    assert run.human(
        "grant", "create", "--work", "W2", "--licensee", "P3", "--purpose", "search", "--by", "P2"
    ).out.startswith("G2\t")
    assert run.human("reserve", "--by", "P2", "--all", "--purpose", "search").out.startswith("R2")
    assert run.human("work", "register", files["poem"], "--holder", "P5").out.startswith("W4\t")


def _error_cases(files: dict[str, Path]) -> list[tuple[list[str], str]]:
    story = str(files["story"])
    return [
        # unknown ids, of every kind
        (["party", "show", "P99"], "P99"),
        (["party", "verify", "P99", "--level", "email"], "P99"),
        (["party", "vouch", "P1", "--by", "P99"], "P99"),
        (["work", "show", "W99"], "W99"),
        (["work", "show", "banana"], "banana"),
        (["work", "list", "--holder", "P99"], "P99"),
        (["work", "register", story, "--holder", "P99"], "P99"),
        (["grant", "show", "G99"], "G99"),
        (["grant", "agree", "G99", "--by", "P1"], "G99"),
        (["grant", "revoke", "G99", "--by", "P1"], "G99"),
        (["grant", "list", "--work", "W99"], "W99"),
        (
            [
                "grant",
                "create",
                "--work",
                "W99",
                "--licensee",
                "P2",
                "--purpose",
                "rag",
                "--by",
                "P1",
            ],
            "W99",
        ),
        (
            [
                "grant",
                "create",
                "--work",
                "W1",
                "--licensee",
                "P99",
                "--purpose",
                "rag",
                "--by",
                "P1",
            ],
            "P99",
        ),
        (["reserve", "--by", "P1", "--lift", "R99"], "R99"),
        (["reserve", "--by", "P1", "--work", "W99", "--purpose", "rag"], "W99"),
        (["dispute", "resolve", "D99", "--by", "P1", "--keep-both"], "D99"),
        (["dispute", "open", "W1", "W99", "--reason", "x"], "W99"),
        (["status", "W99"], "W99"),
        (["check", story, "--licensee", "P99", "--purpose", "rag"], "P99"),
        # malformed times
        (["status", "W1", "--at", "yesterday"], "yesterday"),
        (
            ["check", story, "--licensee", "P2", "--purpose", "rag", "--at", "2030-13-45"],
            "2030-13-45",
        ),
        (["grant", "revoke", "G1", "--by", "P1", "--at", "soon"], "soon"),
        (
            [
                "grant",
                "create",
                "--work",
                "W1",
                "--licensee",
                "P2",
                "--purpose",
                "rag",
                "--by",
                "P1",
                "--expires",
                "31/12/2030",
            ],
            "31/12/2030",
        ),
        (
            [
                "grant",
                "create",
                "--work",
                "W1",
                "--licensee",
                "P2",
                "--purpose",
                "rag",
                "--by",
                "P1",
                "--not-before",
                "tomorrow",
            ],
            "tomorrow",
        ),
        # unknown purposes and other choices: usage errors are exit 1 with one line too
        (["check", story, "--licensee", "P2", "--purpose", "training"], "training"),
        (
            [
                "grant",
                "create",
                "--work",
                "W1",
                "--licensee",
                "P2",
                "--purpose",
                "ads",
                "--by",
                "P1",
            ],
            "ads",
        ),
        (["reserve", "--by", "P1", "--work", "W1", "--purpose", "everything"], "everything"),
        (["party", "add", "--name", "X", "--kind", "robot"], "robot"),
        (["check", story, "--licensee", "P2"], "--purpose"),  # a missing required option
        # options that contradict each other
        (
            ["work", "register", story, str(files["poem"]), "--holder", "P1", "--title", "Both"],
            "--title",
        ),
        (
            ["work", "register", str(files["story"].parent), "--holder", "P1", "--title", "Dir"],
            "--title",
        ),
        (["work", "register", story, "--holder", "P1", "--share", "P1=50"], "50"),
        (
            [
                "grant",
                "create",
                "--work",
                "W1",
                "--licensee",
                "P2",
                "--purpose",
                "rag",
                "--by",
                "P1",
                "--payment",
                "flat",
                "--amount",
                "ten",
                "--currency",
                "EUR",
            ],
            "ten",
        ),
        (
            [
                "grant",
                "create",
                "--work",
                "W1",
                "--licensee",
                "P2",
                "--purpose",
                "rag",
                "--by",
                "P1",
                "--payment",
                "flat",
                "--amount",
                "NaN",
                "--currency",
                "EUR",
            ],
            "NaN",
        ),
        (["dispute", "resolve", "D1", "--by", "P1"], "--keep-both"),
        (["party", "add", "--name", "Y", "--email", "not-mail"], "not-mail"),
    ]


def test_bad_input_is_one_line_on_stderr_and_exit_1(
    run: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    files = write_demo_files(tmp_path / "files")
    not_yet = run("party", "list", "--json")
    problems: list[str] = []

    def expect_error(result: Run, needle: str) -> None:
        lines = result.err.splitlines()
        if (
            result.code != 1
            or result.out != ""
            or len(lines) != 1
            or not lines[0].startswith("error: ")
            or needle not in lines[0]
        ):
            problems.append(
                f"`consentry {' '.join(result.argv)}` -> exit {result.code}, "
                f"stdout {result.out!r}, stderr {result.err!r} (wanted one 'error:' line "
                f"naming {needle!r})"
            )

    expect_error(not_yet, "consentry init")
    run.ok("init")
    run.ok("party", "add", "--name", "Ann")
    run.ok("party", "add", "--name", "Lab", "--kind", "organisation")
    run.ok("work", "register", files["story"], "--holder", "P1")
    run.ok("grant", "create", "--work", "W1", "--licensee", "P2", "--purpose", "rag", "--by", "P1")
    for argv, needle in _error_cases(files):
        expect_error(run(*argv), needle)
        expect_error(run(*argv, "--json"), needle)
    assert problems == [], "\n".join(problems)


def _tree(root: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = root / f"shelf-{i % 7}" / f"box-{i % 13:02d}" / f"note-{i:04d}.txt"
        paths.append(path)
    for folder in {p.parent for p in paths}:
        folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        path.write_text(f"Note {i}: the tide came in at {i % 24:02d}:{i % 60:02d}.\n")
    return paths


def test_register_a_directory_tree(run: Cli, cli_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "tree"
    # 1,500 files on SQLite; on PostgreSQL fewer (still several 200-work transactions), as
    # each work costs a dozen round trips there and the batch logic is the same.
    postgres = "CONSENTRY_DATABASE_URL" in cli_env
    good = _tree(root, 300 if postgres else 1500)
    (root / "shelf-0" / "empty.txt").write_bytes(b"")
    # Tests run as root, so chmod 000 would not stop a read: a link to nowhere cannot be read.
    (root / "shelf-1" / "gone.txt").symlink_to(root / "no-such-file.txt")
    (root / ".hidden.txt").write_text("hidden files are skipped\n")
    missing = tmp_path / "not-there.txt"
    bad = {str(root / "shelf-0" / "empty.txt"), str(root / "shelf-1" / "gone.txt"), str(missing)}

    run.ok("init")
    run.ok("party", "add", "--name", "Ann")
    first = run("work", "register", root, missing, "--holder", "P1", "--json")
    assert first.code == 1
    lines = first.lines()
    assert len(lines) == len(good) + len(bad)
    errors = {x["path"]: x["error"] for x in lines if "error" in x}
    assert set(errors) == bad
    assert "empty" in errors[str(root / "shelf-0" / "empty.txt")]
    assert "gone.txt" in errors[str(root / "shelf-1" / "gone.txt")]
    assert "no such file" in errors[str(missing)]
    registered = {x["path"]: x["work_id"] for x in lines if "work_id" in x}
    assert set(registered) == {str(p) for p in good}
    assert len(set(registered.values())) == len(good)
    assert first.err.strip().splitlines()[-1].startswith(f"error: 3 of {len(good) + 3} files")

    works = run.json("work", "list", "--holder", "P1").lines()
    assert len(works) == len(good)

    again = run("work", "register", root, "--holder", "P1", "--json")
    assert again.code == 1
    repeat = again.lines()
    assert len(repeat) == len(good) + 2
    assert not [x for x in repeat if "work_id" in x]
    already = [x for x in repeat if "already registered as W" in x["error"]]
    assert len(already) == len(good)
    for x in already:
        assert x["error"].endswith(registered[x["path"]])
    assert len(run.json("work", "list").lines()) == len(good)

    shelf = root / "shelf-0"
    checked = run.json("check", shelf, "--licensee", "P1", "--purpose", "search").lines()
    on_shelf = sorted(str(p) for p in good if p.is_relative_to(shelf))
    by_path = {x["path"]: x for x in checked}
    assert sorted(by_path) == sorted([*on_shelf, str(shelf / "empty.txt")])
    for path in on_shelf:
        decision = by_path[path]
        assert (decision["decision"], decision["reasons"]) == ("deny", ["no-grant"])
        assert decision["evidence"][0]["work_id"] == registered[path]
    assert by_path[str(shelf / "empty.txt")]["reasons"] == ["unreadable"]
    gone = run.json("check", root / "shelf-1" / "gone.txt", "--licensee", "P1", "--purpose", "rag")
    assert gone.one()["reasons"] == ["unreadable"]
    human = run.human("check", good[0], "--licensee", "P1", "--purpose", "search")
    assert human.out.splitlines()[0] == f"deny\t{good[0]}\tno-grant"
