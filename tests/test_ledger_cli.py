"""The ledger commands end to end: init makes the operator key, checkpoints and status, a
verification that names the edited index on SQLite and PostgreSQL, grant receipts, and their
offline verification rejecting every kind of tampering with a message naming the check."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from consentry.cli.main import main
from consentry.ledger.note import Checkpoint, generate_signer, parse_signer_key

ORIGIN = "registry.example/consent-log"


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str | Path, code: int = 0) -> str:
        self.capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        assert rc == code, f"consentry {' '.join(map(str, args))} -> {rc}\n{out}\n{err}"
        self.err = err
        return out

    def json(self, *args: str | Path, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def _registry(cli: Cli, folder: Path) -> str:
    """A registry with a grant that was created, agreed by a co-holder and revoked."""
    cli("init")
    for name in ("Ann Author", "Bo Press", "Lumen Lab"):
        cli("party", "add", "--name", name)
    folder.mkdir(exist_ok=True)
    story = folder / "story.txt"
    story.write_text("The lighthouse keeper climbed the stairs every evening.\n")
    cli("work", "register", story, "--holder", "P1", "--co-holder", "P2")
    cli(
        "grant",
        "create",
        "--work",
        "W1",
        "--licensee",
        "P3",
        "--purpose",
        "train-genai",
        "--by",
        "P1",
    )
    cli("grant", "agree", "G1", "--by", "P2")
    cli("party", "add", "--name", "Cy Critic")
    cli("grant", "revoke", "G1", "--by", "P1")
    return str(cli.json("ledger", "key")["operator_vkey"])


# -- init, status, checkpoint, key ------------------------------------------------------------


def test_init_creates_the_operator_key_and_origin(
    cli: Cli, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSENTRY_LOG_ORIGIN", ORIGIN)
    made = cli.json("init")
    home = Path(cli_env["CONSENTRY_HOME"])
    key, pub = home / "keys" / "operator.key", home / "keys" / "operator.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert made["log_origin"] == ORIGIN
    assert made["operator_vkey"] == pub.read_text().strip()
    assert made["operator_vkey"].startswith(ORIGIN + "+")
    assert cli.json("init")["operator_vkey"] == made["operator_vkey"]  # idempotent
    assert cli("ledger", "key").strip() == made["operator_vkey"]

    status = cli.json("ledger", "status")
    assert status["origin"] == ORIGIN
    assert status["size"] == 0
    assert status["latest_checkpoint"] is None
    cli("party", "add", "--name", "Ann Author")
    first = cli.json("ledger", "checkpoint")
    assert (first["size"], first["new"]) == (1, True)
    assert first["note"].startswith(f"{ORIGIN}\n1\n")
    assert cli.json("ledger", "checkpoint")["new"] is False
    assert cli("ledger", "checkpoint").strip() == first["note"].strip()
    status = cli.json("ledger", "status")
    assert status["latest_checkpoint"]["size"] == 1
    assert status["root"] == first["root"]
    assert "covers every entry" in cli("ledger", "status")

    monkeypatch.setenv("CONSENTRY_LOG_ORIGIN", "another.example/log")
    cli("init", code=1)
    assert "origin never changes" in cli.err


def test_a_key_readable_by_others_is_refused(cli: Cli, cli_env: dict[str, str]) -> None:
    cli("init")
    key = Path(cli_env["CONSENTRY_HOME"]) / "keys" / "operator.key"
    key.chmod(0o644)
    cli("ledger", "checkpoint", code=1)
    assert "accessible to group or others" in cli.err
    assert "chmod 600" in cli.err


# -- verify ----------------------------------------------------------------------------------


def _attack(cli_env: dict[str, str], statement: str, params: dict[str, Any]) -> None:
    """Edit the journal as someone with database access would: drop the guard, then write."""
    url = cli_env.get("CONSENTRY_DATABASE_URL")
    sqlite = url is None
    engine = create_engine(url or f"sqlite:///{cli_env['CONSENTRY_HOME']}/registry.db")
    try:
        with engine.begin() as conn:
            if sqlite:
                conn.execute(text("DROP TRIGGER events_no_update"))
            else:
                conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_append_only"))
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def test_verify_fails_naming_the_index_of_an_edited_event(
    cli: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    _registry(cli, tmp_path / "files")
    cli("ledger", "checkpoint")
    assert cli.json("ledger", "verify")["ok"] is True
    assert "log verified" in cli("ledger", "verify", "--from-scratch")
    # The licensee of G1 (event seq 5, the grant.create) is rewritten to another party.
    _attack(
        cli_env,
        'UPDATE events SET payload = replace(payload, \'"licensee":"P3"\', \'"licensee":"P4"\')'
        " WHERE kind = 'grant.create'",
        {},
    )
    cli("ledger", "verify", code=1)
    assert "at log index 4" in cli.err
    assert "log index 4: event seq 5 (grant.create)" in cli.err
    report = cli.json("ledger", "verify", "--from-scratch", code=1)
    assert report["ok"] is False
    assert report["bad_index"] == 4


# -- receipts ------------------------------------------------------------------------------


def test_grant_receipt_proves_each_event_and_verifies_offline(
    cli: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    vkey = _registry(cli, tmp_path / "files")
    receipt = cli.json("grant", "receipt", "G1")
    assert receipt["grant_id"] == "G1"
    assert receipt["operator_vkey"] == vkey
    assert [(p["event"], p["index"]) for p in receipt["proofs"]] == [
        ("grant.create", 4),
        ("grant.agree", 5),
        ("grant.revoke", 7),
    ]
    # A fresh checkpoint was made because none covered the events; it covers all of them.
    assert cli.json("ledger", "status")["latest_checkpoint"]["size"] == 8
    human = cli("grant", "receipt", "G1")
    assert human.count("c2sp.org/tlog-proof@v1") == 3
    assert "# G1 grant.agree (log index 5)" in human

    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    pub = Path(cli_env["CONSENTRY_HOME"]) / "keys" / "operator.pub"
    checked = cli.json("receipt", "verify", path, "--vkey", vkey)
    assert checked["ok"] is True
    assert checked["checkpoint_size"] == 8
    assert "receipt verified" in cli("receipt", "verify", path, "--vkey", pub)
    single = tmp_path / "one.proof"
    single.write_text(receipt["proofs"][1]["proof"])
    assert cli.json("receipt", "verify", single, "--vkey", vkey)["proofs"][0]["event"] == (
        "grant.agree"
    )
    cli("grant", "receipt", "G9", code=1)
    assert "no grant G9" in cli.err


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One receipt, a later checkpoint and the operator key, for the tampering cases."""
    folder = tmp_path_factory.mktemp("receipts")

    def run(*args: str | Path) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main([str(a) for a in args])
        assert rc == 0, args
        return out.getvalue()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONSENTRY_HOME", str(folder / "home"))
        mp.delenv("CONSENTRY_DATABASE_URL", raising=False)
        mp.delenv("CONSENTRY_LOG_ORIGIN", raising=False)
        run("init")
        for name in ("Ann", "Bo", "Lab"):
            run("party", "add", "--name", name)
        story = folder / "story.txt"
        story.write_text("A story to license.\n")
        run("work", "register", story, "--holder", "P1", "--co-holder", "P2")
        run("grant", "create", "--work", "W1", "--licensee", "P3", "--purpose", "rag", "--by", "P1")
        run("grant", "agree", "G1", "--by", "P2")
        receipt = json.loads(run("grant", "receipt", "G1", "--json"))
        for name in ("Cy", "Di", "Ed"):
            run("party", "add", "--name", name)
        later = json.loads(run("ledger", "checkpoint", "--json"))
        vkey = run("ledger", "key").strip()
    return {"receipt": receipt, "later_note": later["note"], "vkey": vkey, "folder": folder}


def _proof_lines(proof: str) -> tuple[list[str], str]:
    head, _, note = proof.partition("\n\n")
    return head.split("\n"), note


def _with_lines(proof: str, edit: Callable[[list[str]], list[str]]) -> str:
    lines, note = _proof_lines(proof)
    return "\n".join(edit(lines)) + "\n\n" + note


def _hash_positions(lines: list[str]) -> list[int]:
    start = next(i for i, line in enumerate(lines) if line.startswith("index ")) + 1
    return list(range(start, len(lines)))


def _edit_hash(lines: list[str]) -> list[str]:
    position = _hash_positions(lines)[0]
    raw = bytearray(base64.b64decode(lines[position]))
    raw[0] ^= 1
    return [*lines[:position], base64.b64encode(bytes(raw)).decode(), *lines[position + 1 :]]


def _swap_hashes(lines: list[str]) -> list[str]:
    first, second = _hash_positions(lines)[:2]
    out = list(lines)
    out[first], out[second] = out[second], out[first]
    return out


def _drop_last_hash(lines: list[str]) -> list[str]:
    return lines[:-1]


def _edit_payload(lines: list[str]) -> list[str]:
    payload = base64.b64decode(lines[1].removeprefix("extra "))
    forged = payload.replace(b'"rag"', b'"train-genai"')
    assert forged != payload
    return [lines[0], "extra " + base64.b64encode(forged).decode(), *lines[2:]]


def _resign(note: str) -> str:
    """The same checkpoint text signed by an attacker's key of the same name."""
    text_, _, _ = note.rpartition("\n\n")
    checkpoint = Checkpoint.parse(text_ + "\n")
    attacker = parse_signer_key(generate_signer(checkpoint.origin)[0])
    return attacker.sign(checkpoint.to_text())


def _with_note(proof: str, note: str) -> str:
    return "\n".join(_proof_lines(proof)[0]) + "\n\n" + note


def _resigned(proof: str) -> str:
    return _with_note(proof, _resign(_proof_lines(proof)[1]))


Tamper = Callable[[dict[str, Any], dict[str, Any]], str]


def _proofs(receipt: dict[str, Any], edit: Callable[[str], str], which: int = 0) -> str:
    changed = json.loads(json.dumps(receipt))
    changed["proofs"][which]["proof"] = edit(changed["proofs"][which]["proof"])
    return json.dumps(changed)


def _field(receipt: dict[str, Any], **changes: Any) -> str:
    changed = json.loads(json.dumps(receipt))
    for key, value in changes.items():
        if key == "grant_id":
            changed["grant_id"] = value
        else:
            changed["proofs"][0][key] = value
    return json.dumps(changed)


TAMPERINGS: dict[str, tuple[Tamper, str]] = {
    "edited proof line": (
        lambda r, b: _proofs(r, lambda p: _with_lines(p, _edit_hash)),
        "inclusion",
    ),
    "re-ordered hashes": (
        lambda r, b: _proofs(r, lambda p: _with_lines(p, _swap_hashes)),
        "inclusion",
    ),
    "truncated proof": (
        lambda r, b: _proofs(r, lambda p: _with_lines(p, _drop_last_hash)),
        "inclusion",
    ),
    "truncated file": (lambda r, b: json.dumps(r)[:-200], "format"),
    "edited event payload": (
        lambda r, b: _proofs(r, lambda p: _with_lines(p, _edit_payload)),
        "inclusion",
    ),
    "checkpoint signed by an unknown key": (
        lambda r, b: _proofs(r, _resigned),
        "checkpoint signature",
    ),
    "proof for the wrong size": (
        lambda r, b: _proofs(r, lambda p: _with_note(p, b["later_note"])),
        "inclusion",
    ),
    "edited checkpoint root": (
        lambda r, b: _proofs(
            r,
            lambda p: p.replace(
                p.split("\n\n")[1].split("\n")[2], base64.b64encode(b"\x07" * 32).decode()
            ),
        ),
        "checkpoint signature",
    ),
    "index of another entry": (lambda r, b: _field(r, index=r["proofs"][0]["index"] + 1), "format"),
    "event relabelled": (lambda r, b: _field(r, event="grant.revoke"), "event"),
    "receipt for another grant": (lambda r, b: _field(r, grant_id="G2"), "event"),
    "payload stripped": (
        lambda r, b: _proofs(r, lambda p: _with_lines(p, lambda ls: [ls[0], *ls[2:]])),
        "format",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_tampered_receipts_are_rejected_naming_the_check(
    case: str, bundle: dict[str, Any], cli: Cli, tmp_path: Path
) -> None:
    tamper, check = TAMPERINGS[case]
    path = tmp_path / "tampered.json"
    path.write_text(tamper(bundle["receipt"], bundle))
    result = cli.json("receipt", "verify", path, "--vkey", bundle["vkey"], code=1)
    assert result["ok"] is False
    assert result["check"] == check, result["error"]
    assert f"receipt check '{check}' failed" in cli.err


def test_the_untampered_bundle_verifies(bundle: dict[str, Any], cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(bundle["receipt"]))
    assert cli.json("receipt", "verify", path, "--vkey", bundle["vkey"])["ok"] is True
    # The swap and the truncation cases need proofs of at least two hashes.
    lines, _ = _proof_lines(bundle["receipt"]["proofs"][0]["proof"])
    assert len(_hash_positions(lines)) >= 2


@pytest.mark.parametrize("other", ["same name, other key", "other name"])
def test_a_wrong_vkey_is_rejected(
    other: str, bundle: dict[str, Any], cli: Cli, tmp_path: Path
) -> None:
    name = bundle["vkey"].split("+", 1)[0] if other.startswith("same") else "other.example/log"
    wrong = generate_signer(name)[1]
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(bundle["receipt"]))
    key_file = tmp_path / "wrong.pub"
    key_file.write_text(wrong + "\n")
    cli("receipt", "verify", path, "--vkey", key_file, code=1)
    assert "receipt check 'checkpoint signature' failed" in cli.err
    assert "no signature from a trusted key" in cli.err


def test_a_bad_vkey_argument_is_a_usage_error(
    bundle: dict[str, Any], cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(bundle["receipt"]))
    cli("receipt", "verify", path, "--vkey", tmp_path / "missing.pub", code=1)
    assert "neither a verifier key nor a readable file" in cli.err
    assert os.environ.get("CONSENTRY_LOG_ORIGIN") is None
