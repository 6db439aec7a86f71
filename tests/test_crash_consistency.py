"""A `work register` killed with SIGKILL mid-run leaves a consistent registry, and re-running
the same command finishes the job, registering every file exactly once (docs/cli.md, "Bad
input": transactions of up to 200 works; an interrupted run leaves whole works or none)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import text

from consentry.config import Settings
from consentry.store.database import Database

CONSOLE = Path(sys.executable).parent / "consentry"
FILES = 1000
CHUNK = 200  # registration's transaction size (registration.register_paths)


def _env(backend_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **backend_env}
    if "CONSENTRY_DATABASE_URL" not in backend_env:
        env.pop("CONSENTRY_DATABASE_URL", None)
    return env


def _consentry(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSOLE, *map(str, args)], env=env, capture_output=True, text=True, check=False
    )


def _write_tree(root: Path) -> dict[str, str]:
    """FILES small text files in nested folders; returns path -> sha256."""
    digests = {}
    for i in range(FILES):
        path = root / f"vol-{i % 5}" / f"ch-{i % 11:02d}" / f"page-{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = f"Page {i}. The keeper counted {i * 7} steps on the iron stairs.\n".encode()
        path.write_bytes(data)
        digests[str(path)] = hashlib.sha256(data).hexdigest()
    return digests


def _scalar(db: Database, sql: str, **params: str) -> int:
    with db.read() as session:
        return int(session.execute(text(sql), params).scalar_one())


def _assert_consistent(db: Database) -> int:
    """The registry invariants a crash must not break; returns the number of works."""
    works = _scalar(db, "SELECT count(*) FROM works")
    parties = _scalar(db, "SELECT count(*) FROM parties")
    # Every work is whole: at least one holder, and its SHA-256 and ISCC fingerprints.
    assert (
        _scalar(
            db,
            "SELECT count(*) FROM works w WHERE NOT EXISTS "
            "(SELECT 1 FROM work_holders h WHERE h.work_id = w.id)",
        )
        == 0
    )
    for kind in ("sha256", "iscc"):
        missing = _scalar(
            db,
            "SELECT count(*) FROM works w WHERE NOT EXISTS (SELECT 1 FROM fingerprints f "
            "WHERE f.work_id = w.id AND f.kind = :kind)",
            kind=kind,
        )
        assert missing == 0, f"a work without its {kind} fingerprint"
    # Nothing points at a work that is not there.
    for table in ("fingerprints", "work_holders", "identifiers"):
        orphans = _scalar(
            db,
            f"SELECT count(*) FROM {table} t WHERE NOT EXISTS "  # noqa: S608 - fixed literals
            "(SELECT 1 FROM works w WHERE w.id = t.work_id)",
        )
        assert orphans == 0, f"orphan rows in {table}"
    # One journal event per change, and nothing else: a party.add per party, a
    # work.register per work, each naming its subject.
    with db.read() as session:
        kinds = Counter(
            dict(session.execute(text("SELECT kind, count(*) FROM events GROUP BY kind")).all())
        )
        subjects = set(
            session.execute(
                text("SELECT subject FROM events WHERE kind = 'work.register'")
            ).scalars()
        )
        ids = {f"W{n}" for n in session.execute(text("SELECT id FROM works")).scalars()}
        seqs = list(session.execute(text("SELECT seq FROM events ORDER BY seq")).scalars())
    assert kinds == Counter({"party.add": parties, "work.register": works})
    assert subjects == ids
    assert seqs == list(range(1, len(seqs) + 1)), "the journal has gaps"
    return works


def test_sigkill_mid_registration_leaves_a_consistent_registry(
    backend_env: dict[str, str], tmp_path: Path
) -> None:
    env = _env(backend_env)
    settings = Settings.load(env=backend_env)
    root = tmp_path / "manuscripts"
    digests = _write_tree(root)
    assert _consentry(env, "init").returncode == 0
    assert _consentry(env, "party", "add", "--name", "Ann Author").returncode == 0

    # 1. Start the batch and kill it once at least one transaction has committed (its lines
    #    are printed after the commit), while later files are still being processed.
    proc = subprocess.Popen(
        [CONSOLE, "work", "register", str(root), "--holder", "P1", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    printed = []
    try:
        while len(printed) < CHUNK + 1:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the registration finished before it was killed"
    assert len(printed) > CHUNK

    # 2. What the killed run left behind is consistent, and made of whole transactions.
    with Database(settings) as db:
        if settings.sqlite_path is not None:
            with sqlite3.connect(settings.sqlite_path) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            conn.close()
        works = _assert_consistent(db)
        assert CHUNK <= works < FILES
        assert works % CHUNK == 0, f"{works} works: a transaction was cut in half"
        with db.read() as session:
            stored = set(session.execute(text("SELECT id FROM works")).scalars())
        assert {int(x["work_id"][1:]) for x in printed} <= stored  # printed means committed

    ledger = _consentry(env, "ledger", "verify", "--json")
    assert ledger.returncode == 0, ledger.stderr
    assert json.loads(ledger.stdout)["ok"] is True

    # 3. Re-running the same command finishes the job and registers nothing twice.
    again = _consentry(env, "work", "register", root, "--holder", "P1", "--json")
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert len(lines) == FILES
    skipped = [x for x in lines if "error" in x]
    assert all("already registered as W" in x["error"] for x in skipped)
    assert len(skipped) == works
    assert again.returncode == 1  # the skipped files count as not registered this time

    with Database(settings) as db:
        assert _assert_consistent(db) == FILES
        with db.read() as session:
            sha = Counter(
                session.execute(
                    text("SELECT lookup FROM fingerprints WHERE kind = 'sha256'")
                ).scalars()
            )
    assert set(sha) == set(digests.values())
    assert set(sha.values()) == {1}, "a file was registered twice"
    ledger = _consentry(env, "ledger", "verify", "--json")
    assert ledger.returncode == 0, ledger.stderr
    assert json.loads(ledger.stdout)["size"] == FILES + 1
