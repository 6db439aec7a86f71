"""``consentry audit``: a gate run certified from its manifest, and every way it can fail.

A registry is built with the real CLI in a temporary SQLite home (see
``test_gate_run.build_registry``), exported as a signed snapshot and gated with a runner key;
each test then audits the run — or a copy of it edited the way a forger would — and checks
that the numbered step that should fail does, with a message that says why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentry.config import Settings
from consentry.gate.audit import STEP_NAMES
from consentry.gate.decisions import DECISION_SCHEMA, decision_leaf
from consentry.gate.logbundle import MANIFEST_STATEMENT, load_signer_file, sign_statement
from consentry.ledger import merkle
from consentry.ledger.keys import load_operator_signer
from consentry.ledger.log import TransparencyLog
from consentry.ledger.note import Checkpoint, generate_signer, parse_signer_key
from consentry.store.database import Database
from consentry.store.log_tables import LogCheckpointRow
from test_gate_run import (
    PURPOSE,
    Registry,
    Result,
    build_registry,
    cli,
    default_policy,
    files_dataset,
    ok,
)


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENTRY_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONSENTRY_HOME", raising=False)
    monkeypatch.delenv("CONSENTRY_OPERATOR_KEY", raising=False)


@dataclass(frozen=True)
class Run:
    """A gated run: the registry, the output folder and the runner's key files."""

    reg: Registry
    out: Path
    runner_key: Path

    @property
    def runner_pub(self) -> Path:
        return self.runner_key.with_name(self.runner_key.name + ".pub")

    @property
    def manifest(self) -> Path:
        return self.out / "manifest.json"


def gated_run(root: Path, *policy: str | Path) -> Run:
    reg = build_registry(root / "registry")
    runner_key = root / "runner.key"
    vkey = ok("key", "generate", "--out", runner_key).out.strip()
    assert runner_key.stat().st_mode & 0o777 == 0o600
    assert (root / "runner.key.pub").read_text(encoding="utf-8").strip() == vkey
    data = files_dataset(reg, root)
    out = root / "gated"
    args = ["gate", data, "--snapshot", reg.snapshot, "--operator-key", reg.operator_pub]
    ok(*args, "--out", out, *(policy or default_policy(reg)), "--sign-key", runner_key)
    return Run(reg, out, runner_key)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return gated_run(tmp_path_factory.mktemp("audit"))


@pytest.fixture
def copy(run: Run, tmp_path: Path) -> Run:
    """A copy of the gated run to edit (the registry is shared and left alone)."""
    out = tmp_path / "gated"
    shutil.copytree(run.out, out)
    return Run(run.reg, out, run.runner_key)


def audit(r: Run, *extra: str | Path, pinned: bool = True) -> Result:
    keys: list[str | Path] = ["--operator-key", r.reg.operator_pub]
    if pinned:
        keys += ["--runner-key", r.runner_pub]
    return cli("audit", r.manifest, *keys, *extra, "--json")


def failed_steps(result: Result) -> dict[int, list[str]]:
    """The problems of each failed step; the command exited 1 naming the verdict."""
    assert result.code == 1, (result.out, result.err)
    report = result.json()
    assert report["verdict"] == "not certified"
    assert report["certified"] is False
    assert result.err.startswith("error: not certified: ")
    return {s["number"]: s["problems"] for s in report["steps"] if s["status"] == "fail"}


def load_manifest(r: Run) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(r.manifest.read_text(encoding="utf-8"))
    return data


def write_signed(r: Run, manifest: dict[str, Any]) -> None:
    """Write an edited manifest and sign it with the runner's key, as the runner could."""
    raw = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    r.manifest.write_bytes(raw)
    signer = load_signer_file(r.runner_key)
    note = sign_statement(signer, MANIFEST_STATEMENT, hashlib.sha256(raw).hexdigest())
    (r.out / "manifest.sig").write_text(note, encoding="utf-8")


def story_grant(r: Run, manifest: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = manifest["grants"][r.reg.grants["story"]]
    return entry


# --- the happy path --------------------------------------------------------------------------


def test_a_signed_gate_run_is_certified_against_the_registry(run: Run, tmp_path: Path) -> None:
    html_out = tmp_path / "certificate.html"
    result = audit(run, "--log", run.reg.home, "--html", html_out)
    assert result.code == 0, result.err
    assert result.err == ""
    report = result.json()
    assert report["verdict"] == "certified"
    assert [(s["number"], s["status"]) for s in report["steps"]] == [
        (1, "pass"),
        (2, "pass"),
        (3, "pass"),
        (4, "pass"),
        (5, "pass"),
    ]
    assert report["problems"] == []
    # story.txt and its nested copy: two items, both by the story grant.
    assert (report["items"], report["admitted"]) == (9, 2)
    shares = {b["basis"]: b for b in report["bases"]}
    assert shares["grant"] == {
        "basis": "grant",
        "items": 2,
        "of_admitted": 1.0,
        "of_items": 0.222222,
    }
    assert shares["open-licence"]["items"] == 0
    assert report["policy"]["licensee"] == run.reg.lab
    page = html_out.read_text(encoding="utf-8")
    assert "Verdict: certified" in page
    assert "<script" not in page
    assert "Licensed Model" in page
    assert report["snapshot_id"] in page
    # The manifest carries the story grant's logged events and the work's registration.
    manifest = load_manifest(run)
    grant = story_grant(run, manifest)
    assert grant["works"] == [run.reg.works["story"]]
    assert [e["kind"] for e in grant["events"]] == ["grant.create"]
    work_events = manifest["works"][run.reg.works["story"]]["events"]
    assert [e["kind"] for e in work_events] == ["work.register"]
    assert manifest["runner_vkey"] == run.runner_pub.read_text(encoding="utf-8").strip()


def test_human_output_lists_the_steps(run: Run) -> None:
    keys = ("--operator-key", run.reg.operator_pub, "--runner-key", run.runner_pub)
    result = cli("audit", run.manifest, *keys, "--log", run.reg.home)
    assert result.code == 0, result.err
    assert result.out.startswith("verdict: certified")
    for number, name in enumerate(STEP_NAMES, 1):
        assert f"{number}. {name}" in result.out
    assert "grant (100.0%)" in result.out


def test_without_a_newer_log_the_audit_is_incomplete(run: Run) -> None:
    result = audit(run)
    assert result.code == 1
    report = result.json()
    assert report["verdict"] == "incomplete"
    assert report["steps"][4]["status"] == "skipped"
    assert "--log HOME" in report["steps"][4]["notes"][0]
    assert "step 5 (newer checkpoint) skipped" in result.err


def test_a_newer_checkpoint_file(run: Run, tmp_path: Path) -> None:
    # Nothing was logged since the snapshot: the latest checkpoint is the snapshot's.
    same = tmp_path / "same.checkpoint"
    same.write_text(ok("--home", run.reg.home, "ledger", "checkpoint").out, encoding="utf-8")
    assert audit(run, "--checkpoint", same).json()["verdict"] == "certified"
    # A checkpoint of another log fails; consistency with a larger one needs the registry.
    stranger, _ = generate_signer("elsewhere.example/log")
    text = Checkpoint("elsewhere.example/log", 99, bytes(32)).to_text()
    other = tmp_path / "other.checkpoint"
    other.write_text(parse_signer_key(stranger).sign(text), encoding="utf-8")
    problems = failed_steps(audit(run, "--checkpoint", other))
    assert list(problems) == [5]
    assert "does not verify with the operator key" in problems[5][0]


# --- step 1: the manifest's signature ---------------------------------------------------------


def test_a_manifest_edited_by_hand_fails_step_1(copy: Run) -> None:
    manifest = load_manifest(copy)
    manifest["counts"]["admit"] += 1
    copy.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    problems = failed_steps(audit(copy))
    assert "edited after signing" in problems[1][0]
    assert 2 in problems  # the counts no longer match the decisions either


def test_an_unsigned_manifest_fails_step_1(copy: Run) -> None:
    (copy.out / "manifest.sig").unlink()
    problems = failed_steps(audit(copy))
    assert list(problems) == [1]
    assert "not signed" in problems[1][0]


def test_an_unpinned_runner_key_fails_step_1(run: Run) -> None:
    problems = failed_steps(audit(run, "--log", run.reg.home, pinned=False))
    assert list(problems) == [1]
    assert "runner key not pinned" in problems[1][0]


def test_a_manifest_signed_by_another_runner_fails_step_1(copy: Run, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    ok("key", "generate", "--out", other)
    result = cli(
        "audit",
        copy.manifest,
        "--operator-key",
        copy.reg.operator_pub,
        "--runner-key",
        tmp_path / "other.key.pub",
        "--json",
    )
    problems = failed_steps(result)
    assert list(problems) == [1]
    assert "does not verify" in problems[1][0]


# --- step 2: the decisions --------------------------------------------------------------------


def test_an_edited_decision_row_fails_step_2(copy: Run) -> None:
    path = copy.out / "decisions.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    denied = next(r for r in rows if r["decision"] == "deny" and r["key"] == "essay.txt")
    denied.update(decision="admit", reasons=["grant-in-force"])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    problems = failed_steps(audit(copy))
    assert list(problems) == [2]
    text = " ".join(problems[2])
    assert "SHA-256" in text
    assert "Merkle root" in text
    assert "a decision was changed" in text


# --- step 3: the snapshot's checkpoint --------------------------------------------------------


def test_an_unknown_operator_key_fails_step_3(run: Run) -> None:
    origin = load_manifest(run)["log"]["origin"]
    _, stranger = generate_signer(origin)  # the right name, another key
    result = cli(
        "audit", run.manifest, "--operator-key", stranger, "--runner-key", run.runner_pub, "--json"
    )
    problems = failed_steps(result)
    assert 3 in problems
    text = " ".join(problems[3])
    assert "another origin/operator" in text
    assert "does not verify with the operator key" in text


def test_a_checkpoint_from_another_origin_fails_step_3(copy: Run, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ok("--home", other, "init")
    signer = load_operator_signer(other)
    manifest = load_manifest(copy)
    size = manifest["log"]["checkpoint_size"]
    forged = Checkpoint(signer.name, size, bytes(32)).to_text()  # any tree of that size
    manifest["log"]["checkpoint"] = signer.sign(forged)
    write_signed(copy, manifest)
    problems = failed_steps(audit(copy))
    assert "no signature from a trusted key" in problems[3][0]
    assert 4 in problems  # the proofs do not lead to that root


def test_an_unpinned_snapshot_key_fails_step_3(run: Run, tmp_path: Path) -> None:
    data = files_dataset(run.reg, tmp_path)
    out = tmp_path / "trusting"
    args = ["gate", data, "--snapshot", run.reg.snapshot, "--trust-snapshot-key"]
    ok(*args, "--out", out, *default_policy(run.reg), "--sign-key", run.runner_key)
    problems = failed_steps(audit(Run(run.reg, out, run.runner_key), "--log", run.reg.home))
    assert list(problems) == [3]
    assert "did not pin the operator key" in problems[3][0]


def test_a_checkpoint_size_edited_in_the_manifest_fails_step_3(copy: Run) -> None:
    manifest = load_manifest(copy)
    manifest["log"]["checkpoint_size"] += 1
    write_signed(copy, manifest)
    problems = failed_steps(audit(copy))
    assert "the manifest says" in problems[3][0]


# --- step 4: the grants in force --------------------------------------------------------------


@pytest.mark.parametrize("edit", ["flip", "reorder", "truncate", "extend"])
def test_an_edited_inclusion_proof_fails_step_4(copy: Run, edit: str) -> None:
    manifest = load_manifest(copy)
    event = story_grant(copy, manifest)["events"][0]
    proof: list[str] = event["proof"]
    assert len(proof) >= 2
    if edit == "flip":
        proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]
    elif edit == "reorder":
        proof[0], proof[1] = proof[1], proof[0]
    elif edit == "truncate":
        proof.pop()
    else:
        proof.append("00" * 32)
    write_signed(copy, manifest)
    problems = failed_steps(audit(copy))
    assert list(problems) == [4]
    assert "inclusion proof does not verify" in problems[4][0]
    assert "grant.create" in problems[4][0]


def test_an_edited_grant_payload_fails_step_4(copy: Run) -> None:
    manifest = load_manifest(copy)
    event = story_grant(copy, manifest)["events"][0]
    event["payload"] = event["payload"].replace('"terms":""', '"terms":"anything goes"')
    assert "anything goes" in event["payload"]
    write_signed(copy, manifest)
    problems = failed_steps(audit(copy))
    assert "inclusion proof does not verify" in problems[4][0]


def test_a_proof_for_the_wrong_tree_size_fails_step_4(copy: Run, tmp_path: Path) -> None:
    # Grow the log, then take a valid proof of the same leaf against the bigger tree.
    manifest = load_manifest(copy)
    event = story_grant(copy, manifest)["events"][0]
    home = tmp_path / "grown"
    shutil.copytree(copy.reg.home, home)
    ok("--home", home, "party", "add", "--name", "Late Comer")
    db = Database(Settings.load(home=home, env={}))
    try:
        with db.read() as session:
            log = TransparencyLog(session)
            wrong = log.inclusion_proof(event["index"], log.size())
    finally:
        db.close()
    assert [h.hex() for h in wrong] != event["proof"]
    event["proof"] = [h.hex() for h in wrong]
    write_signed(copy, manifest)
    problems = failed_steps(audit(copy))
    assert list(problems) == [4]
    assert "inclusion proof does not verify" in problems[4][0]


def test_a_grant_missing_from_the_manifest_fails_step_4(copy: Run) -> None:
    manifest = load_manifest(copy)
    del manifest["grants"][copy.reg.grants["story"]]
    write_signed(copy, manifest)
    problems = failed_steps(audit(copy))
    assert "not in the manifest's grants" in problems[4][0]


def test_a_forged_admission_hiding_a_revocation_is_caught_only_with_the_registry(
    tmp_path: Path,
) -> None:
    """The runner controls its manifest and decisions: it admits the revoked lyrics, leaves
    the revocation out of the evidence and re-signs. Offline the forgery is consistent; the
    registry shows the missing event."""
    r = gated_run(tmp_path)
    grant, lyrics = r.reg.grants["lyrics"], r.reg.works["lyrics"]
    path = r.out / "decisions.parquet"
    rows = pq.read_table(path).to_pylist()
    row = next(x for x in rows if x["key"] == "lyrics.txt")
    evidence = [{"grant_id": grant, "reason": "grant-in-force", "work_id": lyrics}]
    row.update(
        decision="admit",
        reasons=["grant-in-force"],
        basis="grant",
        grant_ids=[grant],
        evidence=json.dumps(evidence),
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=DECISION_SCHEMA), path)
    manifest = load_manifest(r)
    manifest["decisions"].update(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        merkle_root=merkle.root_from_leaf_hashes(
            [merkle.leaf_hash(decision_leaf(x)) for x in rows]
        ).hex(),
    )
    counts = manifest["counts"]
    counts.update(admit=counts["admit"] + 1, deny=counts["deny"] - 1)
    counts["by_basis"]["grant"] += 1
    logged = json.loads((r.reg.snapshot / "log.json").read_bytes())["events"]
    manifest["grants"][grant] = {
        "works": [lyrics],
        "events": [e for e in logged if e["subject"] == grant and e["kind"] == "grant.create"],
    }
    manifest["works"][lyrics] = {"events": [e for e in logged if e["subject"] == lyrics]}
    write_signed(r, manifest)
    offline = audit(r, "--checkpoint", r.reg.home / "nothing-newer")
    assert "unreadable" in offline.err  # (a missing file is bad input)
    same = tmp_path / "same.checkpoint"
    same.write_text(ok("--home", r.reg.home, "ledger", "checkpoint").out, encoding="utf-8")
    assert audit(r, "--checkpoint", same).json()["verdict"] == "certified"  # offline: fooled
    problems = failed_steps(audit(r, "--log", r.reg.home))
    assert list(problems) == [5]
    assert f"{grant}: log index" in problems[5][0]
    assert "(grant.revoke" in problems[5][0]
    assert "missing from the manifest" in problems[5][0]


# --- step 5: the registry's log ---------------------------------------------------------------


def _rewrite_event(home: Path, seq: int, payload: str) -> None:
    """Edit one journal row the way an attacker with the database file would."""
    with sqlite3.connect(home / "registry.db") as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (payload, seq))
    conn.close()


def test_a_rewritten_registry_log_fails_step_5(tmp_path: Path) -> None:
    r = gated_run(tmp_path)
    event = story_grant(r, load_manifest(r))["events"][0]
    edited = event["payload"].replace(f'"licensee":"{r.reg.lab}"', '"licensee":"P1"')
    assert edited != event["payload"]
    _rewrite_event(r.reg.home, event["index"] + 1, edited)
    problems = failed_steps(audit(r, "--log", r.reg.home))
    assert list(problems) == [5]
    text = " ".join(problems[5])
    assert f"log index {event['index']}" in text
    assert "the registry's event differs from the manifest's" in text
    assert "the registry's log does not verify" in text


def test_a_rebuilt_tree_and_re_signed_checkpoint_are_not_consistent(tmp_path: Path) -> None:
    """The operator rewrites an event, rebuilds the tree and signs a new checkpoint."""
    r = gated_run(tmp_path)
    event = story_grant(r, load_manifest(r))["events"][0]
    edited = event["payload"].replace(f'"licensee":"{r.reg.lab}"', '"licensee":"P1"')
    _rewrite_event(r.reg.home, event["index"] + 1, edited)
    ok("--home", r.reg.home, "party", "add", "--name", "Cover Story")
    with sqlite3.connect(r.reg.home / "registry.db") as conn:
        payloads = [p for (p,) in conn.execute("SELECT payload FROM events ORDER BY seq")]
        tree = merkle.CompactRange()
        nodes = [n for p in payloads for n in tree.append(merkle.leaf_hash(p.encode()))]
        conn.execute("DELETE FROM log_nodes")
        conn.executemany(
            'INSERT INTO log_nodes (level, "index", hash) VALUES (?, ?, ?)',
            [(level, index, hash_) for level, index, hash_ in nodes],
        )
    conn.close()
    signer = load_operator_signer(r.reg.home)
    size, root = tree.size, tree.root()
    db = Database(Settings.load(home=r.reg.home, env={}))
    try:
        with db.write() as session:
            note = signer.sign(Checkpoint(signer.name, size, root).to_text())
            session.add(
                LogCheckpointRow(size=size, root_hash=root, note=note, created_at=datetime.now(UTC))
            )
    finally:
        db.close()
    problems = failed_steps(audit(r, "--log", r.reg.home))
    assert list(problems) == [5]
    text = " ".join(problems[5])
    assert "is not consistent with the manifest's" in text
    assert "the log was rewritten" in text


def test_a_revocation_after_the_snapshot_but_before_the_gate_time(tmp_path: Path) -> None:
    """The gate decided for a later time than the snapshot; the grant was revoked in between."""
    policy = tmp_path / "policy.toml"
    # The lab is P3 in build_registry (the policy is written before the registry exists).
    policy.write_text(
        f'licensee = "P3"\npurpose = "{PURPOSE}"\nat = "2099-01-01T00:00:00Z"\n',
        encoding="utf-8",
    )
    r = gated_run(tmp_path, "--policy", policy)
    assert r.reg.lab == "P3"
    assert audit(r, "--log", r.reg.home).code == 0
    ok("--home", r.reg.home, "grant", "revoke", r.reg.grants["story"], "--by", r.reg.ann)
    problems = failed_steps(audit(r, "--log", r.reg.home))
    assert list(problems) == [5]
    assert "grant.revoke" in problems[5][0]
    assert "recorded after the snapshot and takes effect before the gate time" in problems[5][0]


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_exits_1_naming_the_problem(run: Run, tmp_path: Path) -> None:
    key = ("--operator-key", run.reg.operator_pub)
    not_json = tmp_path / "manifest.json"
    not_json.write_text("{nope", encoding="utf-8")
    result = cli("audit", not_json, *key)
    assert (result.code, result.out) == (1, "")
    assert "not JSON" in result.err
    other = tmp_path / "other.json"
    other.write_text('{"format": "something"}', encoding="utf-8")
    assert "not a Consentry gate manifest" in cli("audit", other, *key).err
    both = cli("audit", run.manifest, *key, "--log", run.reg.home, "--checkpoint", not_json)
    assert "not both" in both.err
    missing_key = cli("audit", run.manifest, "--operator-key", tmp_path / "nope.pub")
    assert missing_key.code == 1
    assert "neither a verifier key nor a readable file" in missing_key.err


def test_key_generate_never_overwrites_and_gate_refuses_an_exposed_key(
    run: Run, tmp_path: Path
) -> None:
    result = cli("key", "generate", "--out", run.runner_key)
    assert result.code == 1
    assert "already exists" in result.err
    exposed = tmp_path / "exposed.key"
    ok("key", "generate", "--out", exposed, "--name", "lab.example/runner")
    exposed.chmod(0o644)
    data = files_dataset(run.reg, tmp_path)
    args = ["gate", data, "--snapshot", run.reg.snapshot, "--operator-key", run.reg.operator_pub]
    result = cli(*args, "--out", tmp_path / "o", *default_policy(run.reg), "--sign-key", exposed)
    assert result.code == 1
    assert "chmod 600" in result.err
