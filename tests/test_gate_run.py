"""End to end: a registry built with the CLI, exported as a snapshot, gated offline.

``consentry snapshot export|info`` and ``consentry gate`` are run as a user runs them (in
process through ``consentry.cli.main.main``, and as a real subprocess where a process has to
die): tampered snapshots, every dataset format, the opt-in bases and licence laundering, policy
and output-folder errors, resume after ``kill -9``, a process pool, and the HTML report in a
real headless browser. The gate never touches a database, so the registry is SQLite in a
temporary home.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rfc8785

from consentry.cli.demo import write_demo_files
from consentry.cli.main import main
from consentry.errors import InvalidInputError
from consentry.gate.decisions import decision_leaf, read_chunk
from consentry.gate.logbundle import SNAPSHOT_STATEMENT, sign_statement
from consentry.gate.snapshot import _manifest_id
from consentry.gate.sources import open_source
from consentry.ledger.keys import load_operator_signer
from consentry.ledger.merkle import leaf_hash, root_from_leaf_hashes
from process_support import HAVE_PROC, live_descendants, still_running

CONSENTRY = Path(sys.executable).parent / "consentry"
CHROMIUM = Path("/usr/bin/chromium")
_CARDS = ("items", "admitted", "denied")
PURPOSE = "train-genai"


# --- running the CLI ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli(*args: str | Path) -> Result:
    """``consentry ARGS`` in this process; exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


def ok(*args: str | Path) -> Result:
    result = cli(*args)
    assert result.code == 0, f"consentry {' '.join(map(str, args))} failed: {result.err}"
    return result


def fails(*args: str | Path, match: str) -> Result:
    """The command exits 1 with one ``error:`` line on stderr that matches ``match``."""
    result = cli(*args)
    assert result.code == 1, (result.code, result.out, result.err)
    assert result.out == ""
    assert re.search(match, result.err), result.err
    return result


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONSENTRY_DATABASE_URL", None)
    env.pop("CONSENTRY_HOME", None)
    return env


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENTRY_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONSENTRY_HOME", raising=False)


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """A registry (SQLite, in ``home``) and its exported snapshot.

    ``story`` has a grant in force for LAB, ``poem`` a pending one (co-holder BO has not
    agreed), ``lyrics`` a revoked one, ``essay`` none; ``cover`` (held by BO) has a grant in
    force but BO reserved it. ``blog`` and ``diary`` are unregistered, ``empty`` is empty.
    """

    home: Path
    snapshot: Path
    files: dict[str, Path]
    lab: str
    ann: str
    bo: str
    works: dict[str, str]
    grants: dict[str, str]

    @property
    def operator_pub(self) -> Path:
        """The registry operator's public key: what gate users pin."""
        return self.home / "keys" / "operator.pub"

    def text(self, name: str) -> str:
        return self.files[name].read_text(encoding="utf-8")

    def data(self, name: str) -> bytes:
        return self.files[name].read_bytes()


def build_registry(root: Path) -> Registry:
    home = root / "home"
    files = write_demo_files(root / "files")

    def run(*args: str | Path) -> Any:
        result = ok("--home", home, *args, "--json")
        lines = [json.loads(line) for line in result.out.splitlines() if line.strip()]
        return lines[0] if len(lines) == 1 else lines

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CONSENTRY_DATABASE_URL", raising=False)
        mp.delenv("CONSENTRY_HOME", raising=False)
        run("init")
        ann = run("party", "add", "--name", "Ann Author", "--email", "ann@example.org")["id"]
        bo = run("party", "add", "--name", "Bo Press", "--kind", "organisation")["id"]
        lab = run("party", "add", "--name", "Lumen Lab", "--kind", "organisation")["id"]
        works: dict[str, str] = {}
        for name in ("story", "lyrics", "essay"):
            works[name] = run("work", "register", files[name], "--holder", ann)["work_id"]
        works["poem"] = run("work", "register", files["poem"], "--holder", ann, "--co-holder", bo)[
            "work_id"
        ]
        works["cover"] = run("work", "register", files["cover"], "--holder", bo)["work_id"]
        grant = ("grant", "create", "--licensee", lab, "--purpose", PURPOSE, "--by", ann)
        grants = {
            name: run(*grant, "--work", works[name])["grant_id"]
            for name in ("story", "poem", "lyrics")
        }
        # BO grants the cover, then reserves it: a reservation beats every grant.
        cover_grant = ("grant", "create", "--licensee", lab, "--purpose", PURPOSE, "--by", bo)
        grants["cover"] = run(*cover_grant, "--work", works["cover"])["grant_id"]
        run("grant", "revoke", grants["lyrics"], "--by", ann, "--reason", "changed my mind")
        run("reserve", "--by", bo, "--work", works["cover"], "--purpose", PURPOSE)
        snapshot = root / "registry.snapshot"
        run("snapshot", "export", "--out", snapshot)
    return Registry(home, snapshot, files, lab, ann, bo, works, grants)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("registry"))


EXPECTED_FILES = {
    # name in the demo folder: (decision, reasons, work, grant)
    "story.txt": ("admit", ["grant-in-force"], "story", "story"),
    "poem.txt": ("deny", ["grant-pending-agreement"], "poem", "poem"),
    "lyrics.txt": ("deny", ["grant-revoked"], "lyrics", "lyrics"),
    "essay.txt": ("deny", ["no-grant"], "essay", None),
    "cover.jpg": ("deny", ["reserved"], "cover", "cover"),
    "blog-post.txt": ("deny", ["no-matching-work"], None, None),
    "diary.txt": ("deny", ["no-matching-work"], None, None),
    "corrupt.txt": ("deny", ["unreadable"], None, None),
}


def files_dataset(reg: Registry, root: Path) -> Path:
    """The demo files, plus a nested copy of the granted story (admitted at its own path)."""
    data = root / "dataset"
    shutil.copytree(reg.files["story"].parent, data)
    (data / "nested" / "deeper").mkdir(parents=True)
    shutil.copyfile(reg.files["story"], data / "nested" / "deeper" / "story-copy.txt")
    return data


def gate_args(reg: Registry, source: Path, out: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "gate",
        source,
        "--snapshot",
        reg.snapshot,
        "--operator-key",
        reg.operator_pub,
        "--out",
        out,
        *extra,
    ]


def default_policy(reg: Registry) -> list[str]:
    return ["--licensee", reg.lab, "--purpose", PURPOSE]


def decisions(out: Path) -> list[dict[str, Any]]:
    return pq.read_table(out / "decisions.parquet").to_pylist()


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def merkle_root(rows: list[dict[str, Any]]) -> str:
    return root_from_leaf_hashes([leaf_hash(decision_leaf(row)) for row in rows]).hex()


# --- snapshots --------------------------------------------------------------------------------


@pytest.fixture
def snap_copy(reg: Registry, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.snapshot"
    shutil.copytree(reg.snapshot, copy)
    return copy


def test_snapshot_info_verifies_and_reports_counts(reg: Registry) -> None:
    info = ok("snapshot", "info", reg.snapshot, "--operator-key", reg.operator_pub, "--json").json()
    assert info["verified"] is True
    assert info["id"].startswith("sha256:")
    assert info["counts"] == {
        "parties": 3,
        "works": 5,
        "grants": 4,
        "reservations": 1,
        "disputes": 0,
        "fingerprints": info["counts"]["fingerprints"],
        "log_events": 11,  # 5 work.register, 4 grant.create, 1 grant.revoke, 1 reservation
    }
    assert info["operator_key_pinned"] is True
    vkey = reg.operator_pub.read_text(encoding="utf-8").strip()
    assert info["log"]["operator_vkey"] == vkey
    assert info["log"]["origin"] == vkey.split("+")[0]
    assert info["log"]["checkpoint_size"] >= 11  # the party events are logged too
    assert info["counts"]["fingerprints"] >= 5
    on_disk = json.loads((reg.snapshot / "MANIFEST.json").read_bytes())
    assert info["id"] == on_disk["id"] == _manifest_id(on_disk)
    # A snapshot leaves the operator: no e-mail addresses in it.
    assert b"ann@example.org" not in (reg.snapshot / "registry.json").read_bytes()
    human = ok("snapshot", "info", reg.snapshot, "--operator-key", reg.operator_pub)
    assert info["id"] in human.out
    assert "verified" in human.out


def info_fails(reg: Registry, snapshot: Path, match: str) -> Result:
    """``consentry snapshot info`` with the registry's key pinned fails matching ``match``."""
    return fails("snapshot", "info", snapshot, "--operator-key", reg.operator_pub, match=match)


def _gate_refuses(reg: Registry, snapshot: Path, tmp_path: Path, match: str) -> None:
    data = files_dataset(reg, tmp_path)
    out = tmp_path / "out"
    key = ("--operator-key", reg.operator_pub)
    fails(
        "gate", data, "--snapshot", snapshot, *key, "--out", out, *default_policy(reg), match=match
    )
    assert not out.exists()  # stopped before the run started


def test_one_edited_byte_in_registry_json_is_caught(
    reg: Registry, snap_copy: Path, tmp_path: Path
) -> None:
    path = snap_copy / "registry.json"
    raw = bytearray(path.read_bytes())
    at = raw.index(b"Ann Author") + 1
    raw[at] ^= 0x01  # "Ann" -> "Aon": same size, different content
    path.write_bytes(bytes(raw))
    message = r"registry\.json.*content hash|content hash.*registry\.json"
    info_fails(reg, snap_copy, match=message)
    _gate_refuses(reg, snap_copy, tmp_path, message)
    # --no-verify skips the re-hash: the manifest itself is still intact.
    assert ok("snapshot", "info", snap_copy, "--no-verify", "--json").json()["verified"] is False


def test_a_stray_file_is_caught(reg: Registry, snap_copy: Path, tmp_path: Path) -> None:
    (snap_copy / "index").mkdir(exist_ok=True)
    (snap_copy / "index" / "extra.bin").write_bytes(b"not listed")
    fails(
        "snapshot",
        "info",
        snap_copy,
        "--operator-key",
        reg.operator_pub,
        match=r"not in the manifest: index/extra\.bin",
    )
    _gate_refuses(reg, snap_copy, tmp_path, r"index/extra\.bin")


def test_a_missing_file_is_caught(reg: Registry, snap_copy: Path) -> None:
    (snap_copy / "fingerprints.parquet").unlink()
    fails(
        "snapshot",
        "info",
        snap_copy,
        "--operator-key",
        reg.operator_pub,
        match=r"missing fingerprints\.parquet",
    )


def test_a_hand_edited_manifest_does_not_match_its_id(
    reg: Registry, snap_copy: Path, tmp_path: Path
) -> None:
    path = snap_copy / "MANIFEST.json"
    data = json.loads(path.read_bytes())
    data["counts"]["works"] += 1
    path.write_bytes(rfc8785.dumps(data))
    fails(
        "snapshot",
        "info",
        snap_copy,
        "--operator-key",
        reg.operator_pub,
        match="does not match its id",
    )
    _gate_refuses(reg, snap_copy, tmp_path, "does not match its id")


def test_a_snapshot_from_a_newer_consentry_is_refused(
    reg: Registry, snap_copy: Path, tmp_path: Path
) -> None:
    path = snap_copy / "MANIFEST.json"
    data = json.loads(path.read_bytes())
    data["version"] = 99
    data["id"] = _manifest_id(data)  # self-consistent: only the version check can fail
    path.write_bytes(rfc8785.dumps(data))
    fails(
        "snapshot",
        "info",
        snap_copy,
        "--operator-key",
        reg.operator_pub,
        match=r"version 99.*newer",
    )
    _gate_refuses(reg, snap_copy, tmp_path, "newer")


def test_not_a_snapshot(reg: Registry, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    fails("snapshot", "info", empty, match="not a Consentry snapshot")
    fails("snapshot", "info", reg.files["story"], match="not a snapshot directory")
    fails("snapshot", "info", tmp_path / "missing", match="not a snapshot directory")
    other = tmp_path / "other"
    other.mkdir()
    (other / "MANIFEST.json").write_text('{"format": "something-else"}', encoding="utf-8")
    fails("snapshot", "info", other, match=r"not a Consentry snapshot \(format")
    _gate_refuses(reg, empty, tmp_path, "not a Consentry snapshot")


def test_export_never_overwrites(reg: Registry) -> None:
    fails("--home", reg.home, "snapshot", "export", "--out", reg.snapshot, match="already exists")


# --- signed snapshots: each rejection names its check ------------------------------------------


@pytest.fixture(scope="module")
def other_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another registry (another origin and operator key) with a snapshot at ``snapshot``."""
    root = tmp_path_factory.mktemp("other-registry")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CONSENTRY_DATABASE_URL", raising=False)
        mp.delenv("CONSENTRY_HOME", raising=False)
        ok("--home", home, "init")
        ok("--home", home, "party", "add", "--name", "Someone Else")
        ok("--home", home, "snapshot", "export", "--out", root / "snapshot")
    return home


def _resign(snapshot: Path, home: Path) -> None:
    """Re-hash every listed file, re-id the manifest and sign it with ``home``'s operator key.

    What an operator (or a thief of the operator key) could do: the checks after the
    signature must still catch what is wrong inside.
    """
    path = snapshot / "MANIFEST.json"
    data = json.loads(path.read_bytes())
    for name, meta in data["files"].items():
        raw = (snapshot / name).read_bytes()
        meta.update(sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
    data["id"] = _manifest_id(data)
    path.write_bytes(rfc8785.dumps(data))
    signer = load_operator_signer(home)
    (snapshot / "SIGNATURE").write_text(
        sign_statement(signer, SNAPSHOT_STATEMENT, data["id"]), encoding="utf-8"
    )


def _edit_log(snapshot: Path, edit: Any) -> None:
    path = snapshot / "log.json"
    data = json.loads(path.read_bytes())
    edit(data)
    path.write_bytes(rfc8785.dumps(data))


def test_a_snapshot_checked_with_another_operators_key_is_refused(
    reg: Registry, other_home: Path, tmp_path: Path
) -> None:
    other_pub = other_home / "keys" / "operator.pub"
    message = r"snapshot check 2 \(signature\) failed: .*does not verify with the operator key"
    fails("snapshot", "info", reg.snapshot, "--operator-key", other_pub, match=message)
    data = files_dataset(reg, tmp_path)
    out = tmp_path / "out"
    args = ("gate", data, "--snapshot", reg.snapshot, "--out", out, *default_policy(reg))
    fails(*args, "--operator-key", other_pub, match=message)
    # The key string itself works as well as the file, and CONSENTRY_OPERATOR_KEY too.
    vkey = reg.operator_pub.read_text(encoding="utf-8").strip()
    ok("snapshot", "info", reg.snapshot, "--operator-key", vkey)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONSENTRY_OPERATOR_KEY", str(other_pub))
        fails("snapshot", "info", reg.snapshot, match=message)


def test_a_signature_over_another_snapshot_id_is_refused(reg: Registry, snap_copy: Path) -> None:
    signer = load_operator_signer(reg.home)
    forged = sign_statement(signer, SNAPSHOT_STATEMENT, "sha256:" + "0" * 64)
    (snap_copy / "SIGNATURE").write_text(forged, encoding="utf-8")
    key = ("--operator-key", reg.operator_pub)
    fails("snapshot", "info", snap_copy, *key, match=r"check 2 .*signature is for 'sha256:0000")


def test_a_snapshot_without_signature_is_refused(
    reg: Registry, snap_copy: Path, tmp_path: Path
) -> None:
    (snap_copy / "SIGNATURE").unlink()
    message = r"check 2 \(signature\) failed: .*no SIGNATURE file"
    info_fails(reg, snap_copy, match=message)
    _gate_refuses(reg, snap_copy, tmp_path, message)


def test_an_edited_log_json_is_refused(reg: Registry, snap_copy: Path, tmp_path: Path) -> None:
    def revoke_nothing(data: dict[str, Any]) -> None:
        # Drop the revocation: the lyrics grant would look in force.
        data["events"] = [e for e in data["events"] if e["kind"] != "grant.revoke"]

    _edit_log(snap_copy, revoke_nothing)
    key = ("--operator-key", reg.operator_pub)
    fails("snapshot", "info", snap_copy, *key, match=r"check 4 .*content hash of log\.json")
    _gate_refuses(reg, snap_copy, tmp_path, r"content hash of log\.json")


def test_an_edited_event_fails_its_inclusion_proof_even_when_re_signed(
    reg: Registry, snap_copy: Path
) -> None:
    def edit_payload(data: dict[str, Any]) -> None:
        event = next(e for e in data["events"] if e["kind"] == "grant.create")
        event["payload"] = event["payload"].replace('"train-genai"', '"search"')

    _edit_log(snap_copy, edit_payload)
    _resign(snap_copy, reg.home)
    key = ("--operator-key", reg.operator_pub)
    fails("snapshot", "info", snap_copy, *key, match=r"check 6 \(inclusion\).*grant\.create")


def test_a_checkpoint_naming_another_origin_is_refused(reg: Registry, snap_copy: Path) -> None:
    signer = load_operator_signer(reg.home)

    def other_origin(data: dict[str, Any]) -> None:
        text = data["checkpoint"].split("\n\n")[0] + "\n"
        data["checkpoint"] = signer.sign(text.replace(signer.name, "elsewhere.example/log", 1))

    _edit_log(snap_copy, other_origin)
    _resign(snap_copy, reg.home)
    key = ("--operator-key", reg.operator_pub)
    fails("snapshot", "info", snap_copy, *key, match=r"check 5 .*from log 'elsewhere\.example/log'")


def test_a_snapshot_of_another_registry_signed_with_this_key_is_refused(
    reg: Registry, other_home: Path, snap_copy: Path
) -> None:
    other = json.loads((other_home.parent / "snapshot" / "MANIFEST.json").read_bytes())
    path = snap_copy / "MANIFEST.json"
    data = json.loads(path.read_bytes())
    data["log"] = other["log"]
    path.write_bytes(rfc8785.dumps(data))
    _resign(snap_copy, reg.home)
    key = ("--operator-key", reg.operator_pub)
    fails("snapshot", "info", snap_copy, *key, match=r"check 3 .*another origin/operator")


def test_no_pinned_key_is_refused_unless_trusting_the_snapshot_knowingly(
    reg: Registry, tmp_path: Path
) -> None:
    message = r"no operator key pinned.*--trust-snapshot-key"
    fails("snapshot", "info", reg.snapshot, match=message)
    data = files_dataset(reg, tmp_path)
    plain = ["gate", data, "--snapshot", reg.snapshot, *default_policy(reg)]
    fails(*plain, "--out", tmp_path / "refused", match=message)
    info = ok("snapshot", "info", reg.snapshot, "--trust-snapshot-key", "--json").json()
    assert info["operator_key_pinned"] is False
    assert "NOT pinned" in ok("snapshot", "info", reg.snapshot, "--trust-snapshot-key").out
    out = tmp_path / "trusted"
    ok(*plain, "--out", out, "--trust-snapshot-key")
    assert manifest(out)["snapshot"]["operator_key_pinned"] is False


# --- a directory of files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def files_run(reg: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    root = tmp_path_factory.mktemp("files-run")
    data = files_dataset(reg, root)
    out = root / "gated"
    result = ok(*gate_args(reg, data, out, *default_policy(reg), "--json"))
    return data, out, result


def test_gate_on_files_json_output_and_exit_code(reg: Registry, files_run: Any) -> None:
    _, out, result = files_run
    assert result.code == 0  # seven denials are answers, not failures
    (line,) = result.out.splitlines()
    obj = json.loads(line)
    assert obj["items"] == 9
    assert obj["admit"] == 2
    assert obj["deny"] == 7
    assert obj["by_reason"] == {
        "grant-in-force": 2,
        "grant-pending-agreement": 1,
        "grant-revoked": 1,
        "no-grant": 1,
        "no-matching-work": 2,
        "reserved": 1,
        "unreadable": 1,
    }
    assert obj["by_basis"] == {"grant": 2}
    assert obj["merkle_root"] == manifest(out)["decisions"]["merkle_root"]
    assert obj["snapshot_id"] == manifest(out)["snapshot"]["id"]
    assert Path(obj["manifest"]) == out / "manifest.json"
    assert sorted(p.name for p in out.iterdir()) == [
        "admitted",
        "decisions.parquet",
        "manifest.json",
        "report.html",
    ]


def test_gate_on_files_admits_exactly_the_granted_files(reg: Registry, files_run: Any) -> None:
    data, out, _ = files_run
    admitted = out / "admitted"
    found = sorted(p.relative_to(admitted).as_posix() for p in admitted.rglob("*") if p.is_file())
    assert found == ["nested/deeper/story-copy.txt", "story.txt"]
    for rel in found:
        assert (admitted / rel).read_bytes() == (data / rel).read_bytes()
    assert manifest(out)["admitted"] == {
        "format": "files",
        "files": ["admitted/nested/deeper/story-copy.txt", "admitted/story.txt"],
    }


def test_gate_on_files_decisions_table(reg: Registry, files_run: Any) -> None:
    _, out, _ = files_run
    rows = decisions(out)
    assert [r["ordinal"] for r in rows] == list(range(9))
    by_key = {r["key"]: r for r in rows}
    assert len(by_key) == 9
    expected = dict(EXPECTED_FILES)
    expected["nested/deeper/story-copy.txt"] = expected["story.txt"]
    assert set(by_key) == set(expected)
    for key, (decision, reasons, work, grant) in expected.items():
        row = by_key[key]
        assert row["decision"] == decision, key
        assert row["reasons"] == reasons, key
        assert row["work_ids"] == ([reg.works[work]] if work else []), key
        assert row["grant_ids"] == ([reg.grants[grant]] if grant else []), key
        assert row["basis"] == ("grant" if decision == "admit" else None), key
        assert (row["error"] is not None) == (reasons == ["unreadable"]), key
        if work:
            assert row["scores"] == [1.0]
            assert row["stages"] == ["exact"]
        evidence = json.loads(row["evidence"])
        assert evidence
        assert {e["reason"] for e in evidence} >= set(reasons)
    # the schema the contract lists, in its order
    assert pq.read_schema(out / "decisions.parquet").names == [
        "ordinal",
        "key",
        "decision",
        "reasons",
        "basis",
        "work_ids",
        "scores",
        "stages",
        "grant_ids",
        "error",
        "source",
        "evidence",
    ]


def test_gate_on_files_manifest_and_merkle_root(reg: Registry, files_run: Any) -> None:
    data, out, _ = files_run
    m = manifest(out)
    snapshot_id = json.loads((reg.snapshot / "MANIFEST.json").read_bytes())["id"]
    assert m["snapshot"]["id"] == snapshot_id
    assert m["policy"]["licensee"] == reg.lab
    assert m["policy"]["purpose"] == PURPOSE
    assert m["policy"]["bases"] == ["grant"]
    assert m["counts"]["items"] == 9
    assert m["counts"]["admit"] == 2
    assert m["counts"]["deny"] == 7
    assert m["input"]["format"] == "files"
    names = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert sorted(f["name"] for f in m["input"]["files"]) == names
    for entry in m["input"]["files"]:
        content = (data / entry["name"]).read_bytes()
        assert entry["size"] == len(content)
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    rows = decisions(out)
    assert m["decisions"]["count"] == len(rows)
    assert m["decisions"]["merkle_root"] == merkle_root(rows)
    digest = hashlib.sha256((out / "decisions.parquet").read_bytes()).hexdigest()
    assert m["decisions"]["sha256"] == digest
    # Changing any one decision changes the root.
    forged = [dict(r) for r in rows]
    forged[1]["decision"] = "admit"
    assert merkle_root(forged) != m["decisions"]["merkle_root"]


def test_gate_on_files_corrupt_images_are_unreadable(reg: Registry, tmp_path: Path) -> None:
    """docs/gate.md: a corrupt image becomes a deny with reason ``unreadable``."""
    data = tmp_path / "images"
    data.mkdir()
    (data / "truncated.jpg").write_bytes(reg.data("cover")[:1500])
    (data / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n and then no image at all")
    out = tmp_path / "out"
    ok(*gate_args(reg, data, out, *default_policy(reg)))
    rows = decisions(out)
    assert {r["key"]: r["reasons"] for r in rows} == {
        "garbage.png": ["unreadable"],
        "truncated.jpg": ["unreadable"],
    }
    assert all(r["error"] for r in rows)


def test_gate_human_output(reg: Registry, tmp_path: Path) -> None:
    data = files_dataset(reg, tmp_path)
    result = ok(*gate_args(reg, data, tmp_path / "out", *default_policy(reg)))
    assert "9 items: 2 admitted, 7 denied" in result.out
    assert "grant-revoked" in result.out


# --- formats ----------------------------------------------------------------------------------

# (demo file, licence, source); the texts are the registered files' exact contents.
TABLE_ROWS = [
    ("story", "CC-BY-4.0", "press.example"),
    ("poem", "CC0-1.0", "press.example"),
    ("essay", "unknown", "blog.example"),
    ("blog", "CC0-1.0", "blog.example"),
    ("story", "proprietary", "mirror.example"),
    ("diary", "CC-BY-4.0", "diary.example"),
    ("lyrics", "CC0-1.0", "lyrics.example"),
]
TABLE_ADMITTED = [0, 4]
DEMO_NAMES = {"blog": "unregistered", "diary": "diary"}


def table_columns(reg: Registry) -> dict[str, list[Any]]:
    texts = [reg.text(DEMO_NAMES.get(name, name)) for name, _, _ in TABLE_ROWS]
    return {
        "id": [f"doc-{i:02d}" for i in range(len(TABLE_ROWS))],
        "text": texts,
        "license": [lic for _, lic, _ in TABLE_ROWS],
        "source": [src for _, _, src in TABLE_ROWS],
    }


def make_table(reg: Registry, fmt: str, root: Path) -> Path:
    columns = table_columns(reg)
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    if fmt == "jsonl":
        path = root / "corpus.jsonl"
        path.write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
        )
    elif fmt == "csv":
        path = root / "corpus.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(list(columns))
            writer.writerows([list(row.values()) for row in rows])
    elif fmt == "parquet":
        path = root / "corpus.parquet"
        pq.write_table(pa.table(columns), path, row_group_size=3)
    elif fmt == "webdataset":
        path = root / "shards"
        path.mkdir()
        for shard, part in (("shard-000000.tar", rows[:4]), ("shard-000001.tar", rows[4:])):
            with tarfile.open(path / shard, "w", format=tarfile.PAX_FORMAT) as tar:
                for row in part:
                    meta = {"license": row["license"], "source": row["source"]}
                    for ext, payload in (
                        ("txt", row["text"].encode("utf-8")),
                        ("json", json.dumps(meta).encode("utf-8")),
                    ):
                        info = tarfile.TarInfo(f"{row['id']}.{ext}")
                        info.size = len(payload)
                        info.mtime = 1_700_000_000
                        tar.addfile(info, io.BytesIO(payload))
    else:
        assert fmt == "hf"
        path = root / "hf-dataset"
        datasets.disable_progress_bars()
        try:
            datasets.Dataset.from_dict(columns).save_to_disk(str(path))
        finally:
            datasets.enable_progress_bars()
    return path


def _hf_rows(path: Path) -> list[dict[str, Any]]:
    loaded = datasets.load_from_disk(str(path))
    return [dict(row) for row in loaded]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "webdataset", "hf"])
def test_formats_admitted_subset_in_the_same_format(
    reg: Registry, tmp_path: Path, fmt: str
) -> None:
    source = make_table(reg, fmt, tmp_path)
    out = tmp_path / "out"
    result = ok(*gate_args(reg, source, out, *default_policy(reg), "--json")).json()
    assert (result["items"], result["admit"]) == (len(TABLE_ROWS), len(TABLE_ADMITTED))
    assert result["by_reason"] == {
        "grant-in-force": 2,
        "grant-pending-agreement": 1,
        "grant-revoked": 1,
        "no-grant": 1,
        "no-matching-work": 2,
    }
    rows = decisions(out)
    assert [r["ordinal"] for r in rows if r["decision"] == "admit"] == TABLE_ADMITTED
    # the licence column says CC0 for the pending poem: grants alone decide registered works
    assert rows[1]["reasons"] == ["grant-pending-agreement"]
    assert [r["source"] for r in rows] == [src for _, _, src in TABLE_ROWS]
    assert manifest(out)["admitted"]["format"] == fmt
    assert manifest(out)["decisions"]["merkle_root"] == merkle_root(rows)

    admitted = out / "admitted"
    columns = table_columns(reg)
    if fmt == "jsonl":
        lines = source.read_bytes().splitlines(keepends=True)
        subset = admitted / source.name
        assert subset.read_bytes() == b"".join(lines[i] for i in TABLE_ADMITTED)
    elif fmt == "csv":
        subset = admitted / source.name
        with subset.open(encoding="utf-8", newline="") as fh:
            got = list(csv.reader(fh))
        with source.open(encoding="utf-8", newline="") as fh:
            original = list(csv.reader(fh))
        assert got == [original[0]] + [original[i + 1] for i in TABLE_ADMITTED]
    elif fmt == "parquet":
        subset = admitted / source.name
        table = pq.read_table(subset)
        assert table.schema == pq.read_schema(source)
        assert table.to_pylist() == pq.read_table(source).take(TABLE_ADMITTED).to_pylist()
    elif fmt == "webdataset":
        subset = admitted
        assert sorted(p.name for p in admitted.iterdir()) == [
            "shard-000000.tar",
            "shard-000001.tar",
        ]
        members: dict[str, bytes] = {}
        for shard in sorted(admitted.iterdir()):
            with tarfile.open(shard) as tar:
                for info in tar.getmembers():
                    handle = tar.extractfile(info)
                    assert handle is not None
                    members[info.name] = handle.read()
        wanted = [columns["id"][i] for i in TABLE_ADMITTED]
        assert sorted(members) == sorted(f"{k}.{ext}" for k in wanted for ext in ("json", "txt"))
        for i in TABLE_ADMITTED:
            assert members[f"{columns['id'][i]}.txt"] == columns["text"][i].encode("utf-8")
    else:
        subset = admitted
        expected = [{name: columns[name][i] for name in columns} for i in TABLE_ADMITTED]
        assert _hf_rows(admitted) == expected

    # re-openable as a dataset of the same format, holding exactly the admitted items
    reopened = list(open_source(subset))
    assert [item.data for item in reopened] == [
        columns["text"][i].encode("utf-8") for i in TABLE_ADMITTED
    ]
    # and gating the subset again admits all of it
    again = ok(*gate_args(reg, subset, tmp_path / "again", *default_policy(reg), "--json"))
    assert again.json()["admit"] == again.json()["items"] == len(TABLE_ADMITTED)


# --- bases and licence laundering -------------------------------------------------------------

ALL_BASES = ["grant", "open-licence", "public-domain", "owned", "collection-licence"]


def policy_toml(lab: str, bases: list[str], **extra: str) -> str:
    lines = [
        f'licensee = "{lab}"',
        f'purpose = "{PURPOSE}"',
        f"bases = {json.dumps(bases)}",
        'open_licences = ["CC0-1.0", "CC-BY-4.0"]',
        'owned_tag = "lumen-own"',
        *(f"{key} = {value}" for key, value in extra.items()),
        "[fields]",
        'license = "licence_id"',
        'provenance = "provenance"',
        'source = "origin"',
        "[[collection_licences]]",
        'contract_id = "C-2026-001"',
        'source = "archive.example"',
    ]
    return "\n".join(lines) + "\n"


# (content, metadata, decision, reasons, basis); content None = unreadable.
BASIS_ROWS: list[tuple[str | None, dict[str, str], str, list[str], str | None]] = [
    # unregistered items: each opt-in basis admits
    ("u-cc0", {"licence_id": "CC0-1.0"}, "admit", ["basis-open-licence"], "open-licence"),
    ("u-cc0-lower", {"licence_id": "cc0-1.0"}, "admit", ["basis-open-licence"], "open-licence"),
    ("u-pd", {"licence_id": "public-domain"}, "admit", ["basis-public-domain"], "public-domain"),
    ("u-owned", {"provenance": "lumen-own"}, "admit", ["basis-owned"], "owned"),
    (
        "u-coll",
        {"origin": "archive.example"},
        "admit",
        ["basis-collection-licence"],
        "collection-licence",
    ),
    # ... and nothing admits an unregistered item with no accepted basis
    ("u-mit", {"licence_id": "MIT", "origin": "other.example"}, "deny", ["no-matching-work"], None),
    ("u-wrong-tag", {"provenance": "someone-else"}, "deny", ["no-matching-work"], None),
    # registered works, no grant in force: the metadata never launders them
    ("essay", {"licence_id": "CC0-1.0"}, "deny", ["no-grant"], None),
    ("essay", {"licence_id": "public-domain"}, "deny", ["no-grant"], None),
    ("essay", {"provenance": "lumen-own"}, "deny", ["no-grant"], None),
    ("essay", {"origin": "archive.example"}, "deny", ["no-grant"], None),
    ("lyrics", {"licence_id": "CC0-1.0"}, "deny", ["grant-revoked"], None),
    ("poem", {"provenance": "lumen-own"}, "deny", ["grant-pending-agreement"], None),
    ("cover", {"licence_id": "public-domain"}, "deny", ["reserved"], None),
    # a registered work with a grant in force is admitted on the grant, whatever it says
    ("story", {"licence_id": "CC0-1.0"}, "admit", ["grant-in-force"], "grant"),
    # unreadable: denied whatever the metadata
    (
        None,
        {"licence_id": "CC0-1.0", "provenance": "lumen-own", "origin": "archive.example"},
        "deny",
        ["unreadable"],
        None,
    ),
]
REGISTERED = {"essay", "lyrics", "poem", "story", "cover"}


def bases_dataset(reg: Registry, root: Path) -> Path:
    """A directory-free JSONL corpus: text rows, and the cover image by path."""
    images = root / "img"
    images.mkdir(parents=True)
    shutil.copyfile(reg.files["cover"], images / "cover.jpg")
    lines = []
    for i, (content, meta, *_rest) in enumerate(BASIS_ROWS):
        row: dict[str, Any] = {"id": f"b{i:02d}", **meta}
        if content == "cover":
            row["image"] = "img/cover.jpg"
        elif content in REGISTERED:
            row["text"] = reg.text(content)
        elif content is None:
            row["text"] = None
        else:
            row["text"] = f"An unregistered text about {content}.\n"
        lines.append(json.dumps(row) + "\n")
    path = root / "bases.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def gate_bases(
    reg: Registry, tmp_path: Path, bases: list[str], name: str, *columns: str
) -> list[dict[str, Any]]:
    root = tmp_path / name
    root.mkdir()
    data = bases_dataset(reg, root)
    policy = root / "policy.toml"
    policy.write_text(policy_toml(reg.lab, bases), encoding="utf-8")
    out = root / "out"
    ok(*gate_args(reg, data, out, "--policy", policy, *columns))
    rows = decisions(out)
    keyed = "--key-column" in columns
    keys = [f"b{i:02d}" if keyed else f"row-{i}" for i in range(len(BASIS_ROWS))]
    assert [r["key"] for r in rows] == keys
    admitted = (out / "admitted" / data.name).read_bytes().splitlines(keepends=True)
    lines = data.read_bytes().splitlines(keepends=True)
    assert admitted == [lines[r["ordinal"]] for r in rows if r["decision"] == "admit"]
    return rows


def test_bases_admit_only_unregistered_items(reg: Registry, tmp_path: Path) -> None:
    rows = gate_bases(reg, tmp_path, ALL_BASES, "all")
    for row, (content, meta, decision, reasons, basis) in zip(rows, BASIS_ROWS, strict=True):
        where = f"{content} {meta}"
        assert row["decision"] == decision, where
        assert row["reasons"] == reasons, where
        assert row["basis"] == basis, where
    launder = [r for r, spec in zip(rows, BASIS_ROWS, strict=True) if spec[0] == "essay"]
    assert all(r["work_ids"] == [reg.works["essay"]] for r in launder)
    evidence = json.loads(rows[0]["evidence"])
    assert {"reason": "basis-open-licence", "detail": "licence_id=CC0-1.0"}.items() <= evidence[
        -1
    ].items()
    assert rows[4]["source"] == "archive.example"  # fields.source is what the report uses


def test_bases_with_a_key_column_still_read_every_other_column(
    reg: Registry, tmp_path: Path
) -> None:
    """docs/gate.md: ``--meta-column`` (repeatable; default: every other column)."""
    rows = gate_bases(reg, tmp_path, ALL_BASES, "keyed", "--key-column", "id")
    assert rows[4]["source"] == "archive.example"
    for row, (content, meta, decision, reasons, _basis) in zip(rows, BASIS_ROWS, strict=True):
        assert (row["decision"], row["reasons"]) == (decision, reasons), f"{content} {meta}"


def test_meta_column_limits_the_metadata(reg: Registry, tmp_path: Path) -> None:
    # Only the licence column reaches the policy: provenance and source are not read.
    rows = gate_bases(reg, tmp_path, ALL_BASES, "meta", "--meta-column", "licence_id")
    admitted = {spec[4] for row, spec in zip(rows, BASIS_ROWS, strict=True) if row["basis"]}
    assert admitted == {"open-licence", "public-domain", "grant"}
    assert {r["source"] for r in rows} == {None}


@pytest.mark.parametrize(
    ("dropped", "row"),
    [("open-licence", 0), ("public-domain", 2), ("owned", 3), ("collection-licence", 4)],
)
def test_without_the_basis_the_same_item_is_denied(
    reg: Registry, tmp_path: Path, dropped: str, row: int
) -> None:
    bases = [b for b in ALL_BASES if b != dropped]
    rows = gate_bases(reg, tmp_path, bases, dropped)
    assert rows[row]["decision"] == "deny"
    assert rows[row]["reasons"] == ["no-matching-work"]
    assert rows[row]["basis"] is None
    # the other bases are unaffected
    for i, spec in enumerate(BASIS_ROWS):
        if spec[4] not in (None, "grant", dropped):
            assert rows[i]["decision"] == "admit", spec


def test_grants_only_policy_admits_no_unregistered_item(reg: Registry, tmp_path: Path) -> None:
    rows = gate_bases(reg, tmp_path, ["grant"], "grants-only")
    admitted = [r["ordinal"] for r in rows if r["decision"] == "admit"]
    assert admitted == [i for i, spec in enumerate(BASIS_ROWS) if spec[0] == "story"]
    unregistered = [
        r for r, spec in zip(rows, BASIS_ROWS, strict=True) if spec[0] not in REGISTERED
    ]
    assert {tuple(r["reasons"]) for r in unregistered} == {("no-matching-work",), ("unreadable",)}


# --- policy errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            'licensee = "{lab}"\npurpose = "train-genai"\nopen_licenses = ["CC0-1.0"]\n',
            r"unknown key 'open_licenses'",
            id="unknown-key",
        ),
        pytest.param('purpose = "train-genai"\n', r"`licensee`.*required", id="missing-licensee"),
        pytest.param(
            'licensee = "{lab}"\npurpose = "train-genai"\nbases = ["grant", "fair-use"]\n',
            r"unknown basis 'fair-use'",
            id="unknown-basis",
        ),
        pytest.param(
            'licensee = "{lab}"\npurpose = "train-genai"\nbases = ["open-licence"]\n',
            r"open-licence needs open_licences",
            id="open-licence-without-licences",
        ),
        pytest.param(
            'licensee = "{lab}"\npurpose = "train-genai"\nbases = ["owned"]\n',
            r"owned needs owned_tag",
            id="owned-without-tag",
        ),
        pytest.param(
            'licensee = "{lab}"\npurpose = "train-genai"\nbases = ["collection-licence"]\n',
            r"collection-licence needs",
            id="collection-without-contracts",
        ),
        pytest.param(
            'licensee = "{lab}"\npurpose = "train-genai"\n[fields]\nlicence = "x"\n',
            r"\[fields\] may set only",
            id="unknown-field",
        ),
        pytest.param(
            'licensee = "{lab}"\npurpose = \n', r"policy file .*policy\.toml", id="malformed-toml"
        ),
        pytest.param(
            'licensee = "P999"\npurpose = "train-genai"\n',
            r"licensee P999 is not a party in snapshot sha256:",
            id="licensee-not-in-snapshot",
        ),
        pytest.param('licensee = "{lab}"\npurpose = "sell-it"\n', r"sell-it", id="unknown-purpose"),
    ],
)
def test_policy_errors_stop_before_anything_is_written(
    reg: Registry, tmp_path: Path, text: str, match: str
) -> None:
    data = files_dataset(reg, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(text.replace("{lab}", reg.lab), encoding="utf-8")
    out = tmp_path / "out"
    result = fails(*gate_args(reg, data, out, "--policy", policy), match=match)
    assert len(result.err.strip().splitlines()) == 1
    assert not out.exists()


def test_policy_file_and_licensee_together_is_an_error(reg: Registry, tmp_path: Path) -> None:
    data = files_dataset(reg, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'licensee = "{reg.lab}"\npurpose = "{PURPOSE}"\n', encoding="utf-8")
    out = tmp_path / "out"
    fails(*gate_args(reg, data, out, "--policy", policy, "--licensee", reg.lab), match="not both")
    fails(*gate_args(reg, data, out, "--licensee", reg.lab), match="--policy FILE, or")
    fails(*gate_args(reg, data, out, "--policy", tmp_path / "nope.toml"), match="not found")
    assert not out.exists()


# --- output folder rules ----------------------------------------------------------------------


def test_a_finished_run_is_never_overwritten(reg: Registry, tmp_path: Path) -> None:
    data = files_dataset(reg, tmp_path)
    out = tmp_path / "out"
    ok(*gate_args(reg, data, out, *default_policy(reg)))
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    fails(*gate_args(reg, data, out, *default_policy(reg)), match="finished gate run")
    fails(*gate_args(reg, data, out, *default_policy(reg), "--resume"), match="finished gate run")
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_a_non_empty_unrelated_out_dir_is_refused(reg: Registry, tmp_path: Path) -> None:
    data = files_dataset(reg, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    fails(*gate_args(reg, data, out, *default_policy(reg)), match="not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_empty_existing_out_dir_is_fine(reg: Registry, tmp_path: Path) -> None:
    data = files_dataset(reg, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert ok(*gate_args(reg, data, out, *default_policy(reg), "--json")).json()["admit"] == 2


def test_missing_source_is_an_error(reg: Registry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fails(*gate_args(reg, tmp_path / "nope", out, *default_policy(reg)), match="no such file")
    assert not out.exists()


# --- resume after kill -9 ---------------------------------------------------------------------

BIG_ROWS = 4000


def big_corpus(reg: Registry, path: Path, n: int) -> Path:
    """``n`` small text rows: every fifth a registered text, the rest unregistered."""
    registered = [reg.text(name) for name in ("story", "poem", "lyrics", "essay")]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            if i % 5 == 0:
                text = registered[(i // 5) % len(registered)]
            else:
                text = f"Unregistered note {i}: the tide came in at {i % 24:02d}:00.\n"
            fh.write(json.dumps({"text": text, "source": f"site-{i % 7}.example"}) + "\n")
    return path


def _card(report: Path, name: str) -> int:
    found = re.search(rf'id="{name}"[^>]*>(\d+)<', report.read_text(encoding="utf-8"))
    assert found, f"no #{name} in {report}"
    return int(found.group(1))


def _wait_for_chunks(proc: subprocess.Popen[bytes], chunks: Path, at_least: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if chunks.is_dir() and len(list(chunks.glob("*.leaves"))) >= at_least:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"no chunk files appeared in {chunks} (exit {proc.returncode}): {err.decode()}")


def test_resume_after_kill_9_equals_an_uninterrupted_run(reg: Registry, tmp_path: Path) -> None:
    data = big_corpus(reg, tmp_path / "corpus.jsonl", BIG_ROWS)
    killed = tmp_path / "killed"
    args = [*gate_args(reg, data, killed, *default_policy(reg)), "--chunk-size", "20"]
    args += ["--workers", "1"]
    proc = subprocess.Popen(
        [str(CONSENTRY), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    chunks = killed / ".gate-work" / "chunks"
    try:
        _wait_for_chunks(proc, chunks, at_least=3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "manifest.json").exists(), "the run finished before it was killed"

    # Only whole chunks: every *.leaves holds 20 decisions and their summary.
    done = sorted(chunks.glob("*.leaves"))
    assert done
    leftovers = {p.name for p in chunks.iterdir()} - {p.name for p in done}
    assert all(re.fullmatch(r"\d{8}\.leaves\.tmp", name) for name in leftovers), leftovers
    for path in done:
        leaves, summary = read_chunk(path)
        rows = [json.loads(line) for line in leaves.splitlines()]
        first = int(path.stem) * 20
        assert [row["ordinal"] for row in rows] == list(range(first, first + 20))
        assert (summary.first, summary.count) == (first, 20)
    state = json.loads((killed / ".gate-work" / "state.json").read_bytes())

    # Without --resume: refused, nothing touched.
    fails(*args, match="unfinished")
    assert sorted(chunks.glob("*.leaves")) == done

    resumed = ok(*args, "--resume", "--json").json()
    assert not (killed / ".gate-work").exists()
    m_killed = manifest(killed)
    assert m_killed["policy"] == state["policy"]  # the first attempt's decision time is kept

    straight = tmp_path / "straight"
    plain = [*gate_args(reg, data, straight, *default_policy(reg)), "--chunk-size", "20"]
    uninterrupted = ok(*plain, "--workers", "1", "--json").json()
    m_straight = manifest(straight)

    assert resumed["items"] == BIG_ROWS
    assert pq.read_table(killed / "decisions.parquet").equals(
        pq.read_table(straight / "decisions.parquet")
    )
    rows = decisions(killed)
    assert rows == decisions(straight)
    assert [r["ordinal"] for r in rows] == list(range(BIG_ROWS))
    assert m_killed["decisions"]["merkle_root"] == m_straight["decisions"]["merkle_root"]
    assert m_killed["decisions"]["merkle_root"] == merkle_root(rows)
    assert resumed["merkle_root"] == uninterrupted["merkle_root"]
    assert (killed / "admitted" / data.name).read_bytes() == (
        straight / "admitted" / data.name
    ).read_bytes()
    assert m_killed["counts"] == m_straight["counts"]
    assert m_killed["counts"]["admit"] == BIG_ROWS // 5 // 4  # the story: one fifth of a fifth
    assert m_killed["input"] == m_straight["input"]
    for card in ("items", "admitted", "denied"):
        assert _card(killed / "report.html", card) == _card(straight / "report.html", card)


@pytest.mark.skipif(not HAVE_PROC, reason="reads /proc")
def test_workers_end_when_the_run_is_killed(reg: Registry, tmp_path: Path) -> None:
    """``kill -9`` of a run with workers: the workers (and the forkserver they keep alive)
    exit too, instead of waiting forever for a pool that is gone; --resume still finishes."""
    data = big_corpus(reg, tmp_path / "corpus.jsonl", 5 * BIG_ROWS)
    out = tmp_path / "killed"
    args = [*gate_args(reg, data, out, *default_policy(reg)), "--chunk-size", "20"]
    args += ["--workers", "2"]
    proc = subprocess.Popen(
        [str(CONSENTRY), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        _wait_for_chunks(proc, out / ".gate-work" / "chunks", at_least=3)
        deadline = time.monotonic() + 60
        while len(below := live_descendants(proc.pid)) < 3:  # forkserver and 2 workers
            assert proc.poll() is None, "the run ended before its workers were seen"
            assert time.monotonic() < deadline, f"no workers below the run: {below}"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "manifest.json").exists(), "the run finished before it was killed"
    deadline = time.monotonic() + 15
    while alive := still_running(below):
        assert time.monotonic() < deadline, f"processes of the killed run still run: {alive}"
        time.sleep(0.1)
    assert ok(*args, "--resume", "--json").json()["items"] == 5 * BIG_ROWS


def interrupt(args: list[str | Path], out: Path, after_chunks: int) -> None:
    """Run ``consentry ARGS`` and stop it with Ctrl-C after ``after_chunks`` chunks."""
    from consentry.gate import run as run_module

    real = run_module.write_chunk
    written: list[Path] = []

    def write_then_interrupt(path: Path, leaves: bytes, summary: Any) -> None:
        # Chunks are written on the run's collector thread; the interrupt reaches the main
        # thread with the next chunk it hands over, as a Ctrl-C would between two chunks.
        if len(written) == after_chunks:
            raise KeyboardInterrupt
        real(path, leaves, summary)
        written.append(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "write_chunk", write_then_interrupt)
        fails(*args, match="aborted|interrupted")
    assert len(list((out / ".gate-work" / "chunks").glob("*.leaves"))) == after_chunks
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_chunk_that_cannot_be_written_stops_the_run_and_resume_finishes_it(
    reg: Registry, tmp_path: Path, workers: str
) -> None:
    # A full disk while saving the resume state: one clear error line, no outputs, and the
    # whole chunks already saved are kept, so --resume ends as an uninterrupted run would.
    from consentry.gate import run as run_module

    data = big_corpus(reg, tmp_path / "corpus.jsonl", 400)
    out, straight = tmp_path / "out", tmp_path / "straight"
    args = [*gate_args(reg, data, out, *default_policy(reg)), "--chunk-size", "20"]
    args += ["--workers", workers]
    real = run_module.write_chunk
    calls: list[Path] = []

    def full_disk_at_the_fifth(path: Path, leaves: bytes, summary: Any) -> None:
        calls.append(path)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, leaves, summary)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "write_chunk", full_disk_at_the_fifth)
        fails(*args, match="No space left on device")
    assert not (out / "manifest.json").exists()
    assert not (out / "decisions.parquet").exists()
    assert 4 <= len(list((out / ".gate-work" / "chunks").glob("*.leaves"))) < 20
    ok(*args, "--resume")
    ok(*gate_args(reg, data, straight, *default_policy(reg)), "--chunk-size", "20")
    assert decisions(out) == decisions(straight)
    root = manifest(out)["decisions"]["merkle_root"]
    assert root == manifest(straight)["decisions"]["merkle_root"]


def interrupted_run(reg: Registry, data: Path, out: Path, after_chunks: int) -> list[str | Path]:
    args = [*gate_args(reg, data, out, *default_policy(reg)), "--chunk-size", "20"]
    interrupt(args, out, after_chunks)
    return args


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param(("--purpose", PURPOSE, "search"), "policy differs", id="purpose"),
        pytest.param(("--licensee", "LAB", "ANN"), "policy differs", id="licensee"),
        pytest.param(("--chunk-size", "20", "30"), "chunk size differs", id="chunk-size"),
    ],
)
def test_resume_with_a_different_policy_is_refused(
    reg: Registry, tmp_path: Path, change: tuple[str, str, str], match: str
) -> None:
    data = big_corpus(reg, tmp_path / "corpus.jsonl", 100)
    out = tmp_path / "out"
    args = interrupted_run(reg, data, out, after_chunks=2)
    option, old, new = change
    old = {"LAB": reg.lab}.get(old, old)
    new = {"ANN": reg.ann}.get(new, new)
    at = args.index(option) + 1
    assert args[at] == old
    changed = [*args[:at], new, *args[at + 1 :]]
    fails(*changed, "--resume", match=match)
    assert not (out / "manifest.json").exists()
    assert len(list((out / ".gate-work" / "chunks").glob("*.leaves"))) == 2
    # the same command resumes it
    assert ok(*args, "--resume", "--json").json()["items"] == 100


def test_resume_with_a_changed_source_is_refused(reg: Registry, tmp_path: Path) -> None:
    data = big_corpus(reg, tmp_path / "corpus.jsonl", 100)
    out = tmp_path / "out"
    args = interrupted_run(reg, data, out, after_chunks=1)
    with data.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "one more row"}) + "\n")
    fails(*args, "--resume", match="input differs")


def test_resume_with_a_policy_file_that_changed_is_refused(reg: Registry, tmp_path: Path) -> None:
    data = big_corpus(reg, tmp_path / "corpus.jsonl", 100)
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_toml(reg.lab, ["grant"]), encoding="utf-8")
    out = tmp_path / "out"
    args = [*gate_args(reg, data, out, "--policy", policy), "--chunk-size", "20"]
    interrupt(args, out, after_chunks=1)
    policy.write_text(policy_toml(reg.lab, ALL_BASES), encoding="utf-8")
    fails(*args, "--resume", match="policy differs")


# --- a process pool -------------------------------------------------------------------------


def test_two_workers_decide_exactly_as_one(reg: Registry, tmp_path: Path) -> None:
    data = big_corpus(reg, tmp_path / "corpus.jsonl", 240)
    outs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        args = gate_args(reg, data, out, *default_policy(reg), "--chunk-size", "20")
        ok(*args, "--workers", workers)
        outs[workers] = out
    one, two = outs["1"], outs["2"]
    assert decisions(one) == decisions(two)
    assert len(decisions(two)) == 240
    assert manifest(one)["decisions"]["merkle_root"] == manifest(two)["decisions"]["merkle_root"]
    assert manifest(one)["counts"] == manifest(two)["counts"]
    assert (one / "admitted" / data.name).read_bytes() == (
        two / "admitted" / data.name
    ).read_bytes()


def test_chunks_of_items_carrying_their_bytes_end_at_the_byte_cap(
    reg: Registry, tmp_path: Path
) -> None:
    """Sources that hold content in memory (Parquet, tar shards) split by bytes as well as by
    count, so a chunk of large items stays small; the decisions are those of one big chunk,
    and resuming with another cap is refused (it would split the source differently)."""
    from consentry.gate.policy import policy_from_mapping
    from consentry.gate.run import run_gate
    from consentry.gate.sources import chunked

    table = make_table(reg, "parquet", tmp_path)
    source = open_source(table)
    sizes = [len(item.data or b"") for item in source.scan()]
    cap = max(sizes) + 1  # at least two items in every chunk but the last
    split = [raws for _, raws in chunked(source, 1024, cap)]
    assert sum(map(len, split)) == len(sizes)
    assert 1 < len(split) < len(sizes)
    at = 0
    for raws in split:
        held = sizes[at : at + len(raws)]
        assert sum(held[:-1]) < cap  # the chunk ended at the item that reached the cap...
        assert sum(held) >= cap or at + len(raws) == len(sizes)  # ...or at the end
        at += len(raws)

    policy = policy_from_mapping(
        {"licensee": reg.lab, "purpose": PURPOSE, "at": "2026-12-01T00:00:00Z"}
    )

    def gate(out: Path, **options: Any) -> Any:
        source = open_source(table)
        return run_gate(source, reg.snapshot, policy, out, operator_key=reg.operator_pub, **options)

    whole = gate(tmp_path / "whole")
    out = tmp_path / "capped"

    class Stop(Exception):
        pass

    def stop_after_first_chunk(n: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        gate(out, chunk_max_bytes=cap, on_progress=stop_after_first_chunk)
    assert len(list((out / ".gate-work" / "chunks").glob("*.leaves"))) == 1
    with pytest.raises(InvalidInputError, match="chunk max bytes differs"):
        gate(out, resume=True)
    capped = gate(out, chunk_max_bytes=cap, resume=True)
    assert decisions(out) == decisions(whole.out)
    assert capped.manifest["decisions"]["merkle_root"] == whole.manifest["decisions"]["merkle_root"]
    assert capped.manifest["counts"] == whole.manifest["counts"]


def _mixed_corpus(reg: Registry, path: Path, n: int, form: str) -> tuple[Path, list[str]]:
    """Registered and unregistered texts whose metadata the policy's bases read, as JSON
    Lines (optionally keyed by a column) or CSV; also the options that name the columns."""
    registered = [reg.text(name) for name in ("story", "poem", "lyrics", "essay")]
    rows = []
    for i in range(n):
        text = registered[i % 4] if i % 3 == 0 else f"Unregistered note {i}, tide at {i % 24}.\n"
        licence = ["CC0-1.0", "", "All rights reserved", "cc-by-4.0"][i % 4]
        origin = ["archive.example", "elsewhere.example", ""][i % 3]
        rows.append({"id": f"item-{i}", "text": text, "licence_id": licence, "origin": origin})
    rows.append({"id": "broken", "text": 42, "licence_id": "CC0-1.0", "origin": ""})
    if form == "csv":
        with path.with_suffix(".csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows[:-1])
        return path.with_suffix(".csv"), []
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
        fh.write("\n{not json\n")  # a blank line (no item) and an unreadable one
    return path, (["--key-column", "id"] if form == "jsonl-keyed" else [])


@pytest.mark.parametrize("form", ["jsonl", "jsonl-keyed", "csv"])
def test_two_workers_write_byte_identical_outputs(
    reg: Registry, tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers parse raw rows (JSON Lines, CSV) or get finished items (a key column): either
    way every output is byte for byte that of one worker, whatever the part sizes were."""
    from consentry.gate import run as run_module

    # The workers decide every part (by default the main process decides until one is up).
    monkeypatch.setattr(run_module, "_DECIDE_WHILE_WORKERS_START", False)
    data, columns = _mixed_corpus(reg, tmp_path / "corpus.jsonl", 150, form)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        policy_toml(reg.lab, ALL_BASES, at='"2026-12-01T00:00:00Z"'), encoding="utf-8"
    )
    outs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        args = gate_args(reg, data, out, "--policy", policy, "--chunk-size", "40", *columns)
        ok(*args, "--workers", workers)
        outs[workers] = out
    one, two = outs["1"], outs["2"]
    for name in ("decisions.parquet", "report.html", f"admitted/{data.name}"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    m_one, m_two = manifest(one), manifest(two)
    assert m_one["decisions"] == m_two["decisions"]
    assert m_one["counts"] == m_two["counts"]
    assert m_one["grants"] == m_two["grants"]
    rows = decisions(one)
    assert m_one["decisions"]["merkle_root"] == merkle_root(rows)
    assert [r["ordinal"] for r in rows] == list(range(len(rows)))
    counts = m_one["counts"]["by_reason"]
    # Every path was taken: grants, other bases, laundering refused, unreadable rows.
    assert min(counts["grant-in-force"], counts["basis-open-licence"], counts["no-grant"]) > 0
    assert counts.get("unreadable", 0) == (0 if form == "csv" else 2)


def test_the_end_of_the_source_goes_to_the_workers_in_short_parts(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts are long (~0.1 s of work: fewer tasks for the main process), so two workers
    could end a whole part apart; the source's last items are cut into parts eight times
    shorter instead, and whichever worker is free first takes more of them. The decisions
    are one worker's."""
    from concurrent.futures import ProcessPoolExecutor

    from consentry.gate import run as run_module
    from consentry.gate.policy import policy_from_mapping

    monkeypatch.setattr(run_module, "_DECIDE_WHILE_WORKERS_START", False)
    monkeypatch.setattr(run_module._ItemCost, "part_size", lambda self: 40)
    parts: dict[int, list[int]] = {}
    submit = ProcessPoolExecutor.submit

    def spy(self: ProcessPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if fn is run_module._decide_part:
            chunk_no, _part, _first, raws = args
            parts.setdefault(chunk_no, []).append(len(raws))
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", spy)
    policy = policy_from_mapping(
        {"licensee": reg.lab, "purpose": PURPOSE, "at": "2026-12-01T00:00:00Z"}
    )

    def gate(data: Path, out: Path, workers: int) -> Any:
        return run_module.run_gate(
            open_source(data),
            reg.snapshot,
            policy,
            out,
            workers=workers,
            chunk_size=100,
            operator_key=reg.operator_pub,
        )

    data, _ = _mixed_corpus(reg, tmp_path / "uneven.jsonl", 299, "jsonl")  # 301 rows
    gate(data, tmp_path / "uneven", 2)
    assert parts == {0: [40, 40, 20], 1: [40, 40, 20], 2: [40, 40, 20], 3: [1]}
    parts.clear()
    data, _ = _mixed_corpus(reg, tmp_path / "even.jsonl", 298, "jsonl")  # 300 rows
    two = gate(data, tmp_path / "two", 2)
    # The last chunk is within 2 parts per worker of the end: all of it in parts of 40 / 8.
    assert parts == {0: [40, 40, 20], 1: [40, 40, 20], 2: [5] * 20}
    one = gate(data, tmp_path / "one", 1)
    assert decisions(two.out) == decisions(one.out)
    assert two.counts["items"] == 300
    # A longer last chunk: ordinary parts, then the short ones over the last 2 x 2 x 10 items.
    bounds = run_module._part_bounds(952, 10, 2)
    assert [end - start for start, end in bounds] == [10] * 91 + [2] + [1] * 40
    assert [start for start, _ in bounds[1:]] == [end for _, end in bounds[:-1]]
    assert run_module._part_bounds(952, 10, 0) == [(s, min(s + 10, 952)) for s in range(0, 952, 10)]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_empty_dataset_gates_to_empty_outputs(
    reg: Registry, tmp_path: Path, workers: str
) -> None:
    """No items is an answer too: an empty table, the empty tree's root, an empty subset."""
    data = tmp_path / "empty.jsonl"
    data.write_bytes(b"")
    out = tmp_path / "out"
    ok(*gate_args(reg, data, out, *default_policy(reg)), "--workers", workers)
    m = manifest(out)
    assert m["counts"]["items"] == 0
    assert m["decisions"]["count"] == 0
    assert m["decisions"]["merkle_root"] == hashlib.sha256(b"").hexdigest()  # RFC 9162
    assert decisions(out) == []
    assert (out / "admitted" / data.name).read_bytes() == b""
    assert not (out / ".gate-work").exists()


def test_two_workers_read_a_folder_of_files_as_one_does(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers get file paths and read the files themselves (the main process reads none):
    decisions, report and the copied subset are those of one worker, byte for byte."""
    from consentry.gate import run as run_module

    monkeypatch.setattr(run_module, "_DECIDE_WHILE_WORKERS_START", False)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    registered = [reg.text(name) for name in ("story", "poem", "lyrics", "essay")]
    for i in range(60):
        text = registered[i % 4] if i % 3 == 0 else f"Unregistered note {i}.\n"
        (folder / ("sub" if i % 2 else "") / f"n{i:03d}.txt").write_text(text, encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text(
        policy_toml(reg.lab, ["grant"], at='"2026-12-01T00:00:00Z"'), encoding="utf-8"
    )
    outs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        ok(
            *gate_args(reg, folder, out, "--policy", policy, "--chunk-size", "7"),
            "--workers",
            workers,
        )
        outs[workers] = out
    one, two = outs["1"], outs["2"]
    for name in ("decisions.parquet", "report.html"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert manifest(one)["admitted"] == manifest(two)["admitted"]
    admitted = manifest(two)["admitted"]["files"]
    assert admitted  # granted registered texts were admitted and copied
    for name in admitted:
        assert (two / name).read_bytes() == (one / name).read_bytes()
        assert (two / name).read_bytes() == (folder / name.removeprefix("admitted/")).read_bytes()
    rows = {row["key"]: row for row in decisions(two)}
    assert len(rows) == 60
    assert rows["n000.txt"]["work_ids"] == [reg.works["story"]]
    assert rows["sub/n001.txt"]["work_ids"] == []


# --- the report in a real browser -------------------------------------------------------------


def test_report_renders_in_a_headless_browser(
    reg: Registry, files_run: Any, tmp_path: Path
) -> None:
    _, out, _ = files_run
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the report must be checked in a real browser; "
            ".ci/run installs Debian's chromium (apt-get install chromium)"
        )
    report = (out / "report.html").resolve()
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--dump-dom",
        report.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, timeout=90, check=False)
    dom = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")[-2000:]
    counts = {name: re.search(rf'<div[^>]*id="{name}"[^>]*>(\d+)</div>', dom) for name in _CARDS}
    assert all(counts.values()), dom[:2000]
    assert {name: int(m.group(1)) for name, m in counts.items() if m} == {
        "items": 9,
        "admitted": 2,
        "denied": 7,
    }
    assert "<svg" in dom
    assert "grant-revoked" in dom
    assert reg.works["story"] in dom  # most matched works
    assert manifest(out)["decisions"]["merkle_root"] in dom
