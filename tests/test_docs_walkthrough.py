"""docs/cli.md is executable: its walk-through runs as written, and its reference is current.

The walk-through block runs command by command as real subprocesses of the console script (with
``--json`` appended). Capitalised placeholders (``ANN``, ``W1``, ``G1`` …) are bound by
``# -> NAMES`` comments to the ids the commands print, and substituted in later commands;
``# admit: REASON`` / ``# deny: REASON`` assert the decision ``check`` prints.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from consentry.cli import cli
from consentry.cli.demo import write_demo_files
from consentry.cli.lazy import subcommands
from consentry.config import SETTINGS

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cli.md"
CONSOLE = Path(sys.executable).parent / "consentry"
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9]*$")


@dataclass(frozen=True)
class Step:
    line: int
    argv: list[str]
    binds: list[str]
    expect: tuple[str, str] | None  # (decision, reason)


def walkthrough(doc: str) -> list[Step]:
    start = doc.index("<!-- walkthrough:start -->")
    end = doc.index("<!-- walkthrough:end -->")
    first_line = doc.count("\n", 0, start) + 1
    steps = []
    for offset, raw in enumerate(doc[start:end].splitlines()):
        line = raw.strip()
        if not line.startswith("consentry"):
            continue
        command, _, comment = line.partition(" #")
        argv = shlex.split(command)
        comment = comment.strip()
        binds: list[str] = []
        expect = None
        if comment.startswith("->"):
            binds = comment[2:].split()
            assert binds, f"docs/cli.md:{first_line + offset}: `# ->` names nothing"
            assert all(PLACEHOLDER.match(b) for b in binds), binds
        elif comment:
            decision, sep, reason = comment.partition(":")
            assert sep, f"docs/cli.md:{first_line + offset}: unknown comment {comment!r}"
            assert decision in ("admit", "deny"), comment
            expect = (decision, reason.strip())
        steps.append(Step(first_line + offset, argv, binds, expect))
    return steps


def _ids(stdout: str) -> list[str]:
    out = []
    for line in stdout.splitlines():
        obj = json.loads(line)
        out.append(next(obj[k] for k in ("id", "work_id", "grant_id") if k in obj))
    return out


def test_the_walkthrough_parses() -> None:
    steps = walkthrough(DOC.read_text(encoding="utf-8"))
    assert len(steps) >= 10
    assert all(s.argv[0] == "consentry" for s in steps)
    assert any(s.binds for s in steps)
    assert {s.expect[0] for s in steps if s.expect} == {"admit", "deny"}


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """On SQLite only: each step is a fresh process (~1-2 s of start-up), and the same story
    runs in-process on every backend in tests/test_cli.py."""
    files = write_demo_files(tmp_path / "demo")
    cwd = tmp_path / "work"
    cwd.mkdir()
    shutil.copyfile(files["story"], cwd / "story.txt")
    shutil.copyfile(files["cover"], cwd / "cover.jpg")
    env = {**os.environ, "CONSENTRY_HOME": str(tmp_path / "home")}
    env.pop("CONSENTRY_DATABASE_URL", None)

    bound: dict[str, str] = {}
    for step in walkthrough(DOC.read_text(encoding="utf-8")):
        argv = [bound.get(a, a) for a in step.argv[1:]]
        where = f"docs/cli.md:{step.line}: `{shlex.join(step.argv)}`"
        unbound = [a for a in step.argv[1:] if PLACEHOLDER.match(a) and a not in bound]
        assert unbound == [], f"{where} uses {unbound} before a `# ->` names them"
        result = subprocess.run(
            [CONSOLE, *argv, "--json"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{where} exited {result.returncode}: {result.stderr}"
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert lines, f"{where} printed nothing"
        if step.binds:
            ids = _ids(result.stdout)
            assert len(ids) == len(step.binds), (where, ids)
            bound.update(zip(step.binds, ids, strict=True))
        if step.expect is not None:
            decision, reason = step.expect
            (obj,) = lines
            assert obj["decision"] == decision, f"{where}: {obj}"
            assert reason in obj["reasons"], f"{where}: {obj}"
    assert {"ANN", "BO", "LAB", "W1", "W2", "G1", "R1"} <= set(bound)


# -- the reference ---------------------------------------------------------------------------


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(subcommands(group).items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_a_reference_heading() -> None:
    doc = DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (consentry [a-z -]+)$", doc, flags=re.MULTILINE))
    missing = [f"consentry {' '.join(p)}" for p in _commands(cli)]
    missing = [m for m in missing if m not in headings]
    assert missing == [], f"not documented in docs/cli.md: {missing}"


def test_the_generated_reference_is_up_to_date() -> None:
    generator = runpy.run_path(str(REPO / "scripts" / "gen_cli_docs.py"))
    doc = DOC.read_text(encoding="utf-8")
    mark = generator["MARK"]
    assert doc.count(mark) == 1
    tail = doc[doc.index(mark) :]
    assert tail == generator["reference"](), (
        "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_docs.py"
    )


def test_every_setting_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in doc]
    assert missing == [], f"settings missing from docs/cli.md: {missing}"
