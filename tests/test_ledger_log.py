"""The tamper-evident log on every backend: each event is a leaf appended in the event's own
transaction, roots and proofs match the RFC 9162 reference, checkpoints chain and refuse an
inconsistent tree, verification names the first bad index, keys are private, and party.add
leaves carry salted commitments instead of personal data."""

from __future__ import annotations

import hashlib
import itertools
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text

from consentry.config import Settings
from consentry.domain import PartyKind
from consentry.errors import (
    ConfigurationError,
    InvalidInputError,
    StoreError,
    VerificationError,
)
from consentry.ledger import merkle
from consentry.ledger.keys import (
    create_operator_key,
    load_operator_signer,
    operator_key_path,
    operator_pub_path,
    read_operator_vkey,
)
from consentry.ledger.log import (
    TransparencyLog,
    commitment,
    erase_party_secrets,
    init_log,
)
from consentry.ledger.note import Checkpoint, Signer, generate_signer, open_note, parse_signer_key
from consentry.registry.events import record_event
from consentry.registry.service import RegistryService
from consentry.store.database import Database, _alembic_config
from consentry.store.log_tables import LogCheckpointRow, LogNodeRow, PartySecretRow
from consentry.store.tables import EventRow, PartyRow

AT = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
ORIGIN = "test.consentry.example/log"


def _append(db: Database, count: int, start: int = 0) -> None:
    with db.write() as session:
        for n in range(start, start + count):
            record_event(session, "test.event", f"X{n}", AT, {"n": n})


def _leaf_hashes(db: Database) -> list[bytes]:
    with db.read() as session:
        payloads = session.scalars(select(EventRow.payload).order_by(EventRow.seq)).all()
    return [merkle.leaf_hash(p.encode("utf-8")) for p in payloads]


def _signer(db: Database, settings: Settings) -> Signer:
    init_log(db, settings, env={"CONSENTRY_LOG_ORIGIN": ORIGIN})
    return load_operator_signer(settings.home)


def _size(db: Database) -> int:
    with db.read() as session:
        return TransparencyLog(session).size()


def _tamper_node(db: Database, level: int, index: int) -> None:
    with db.write() as session:
        session.execute(
            text('UPDATE log_nodes SET hash = :h WHERE level = :l AND "index" = :i'),
            {"h": b"\x42" * 32, "l": level, "i": index},
        )


# -- appending -------------------------------------------------------------------------------


def test_every_append_keeps_the_root_equal_to_the_reference(db: Database) -> None:
    # Batches of different sizes so transactions end at odd and even sizes alike.
    total = 0
    for batch in (1, 1, 2, 3, 5, 8, 13):
        _append(db, batch, total)
        total += batch
        hashes = _leaf_hashes(db)
        with db.read() as session:
            log = TransparencyLog(session)
            assert log.size() == total == len(hashes)
            assert log.root() == merkle.root_from_leaf_hashes(hashes)
            for size in range(total + 1):
                assert log.root(size) == merkle.root_from_leaf_hashes(hashes[:size])
    with db.read() as session:
        seqs = session.scalars(select(EventRow.seq).order_by(EventRow.seq)).all()
        stored = session.execute(
            select(LogNodeRow.level, LogNodeRow.index).order_by(LogNodeRow.level)
        ).all()
    assert seqs == list(range(1, total + 1))
    # Exactly the perfect subtrees of a 33-leaf tree: 33 + 16 + 8 + 4 + 2 + 1.
    assert len(stored) == sum(total >> level for level in range(6))


def test_a_rolled_back_change_leaves_no_gap_in_seq_or_log(db: Database) -> None:
    _append(db, 2)

    def abandoned_change() -> None:
        with db.write() as session:
            record_event(session, "test.event", "X-lost", AT, {})
            raise RuntimeError("abandon the change")

    with pytest.raises(RuntimeError, match="abandon"):
        abandoned_change()
    with db.write() as session:
        row = record_event(session, "test.event", "X1", AT, {"b": 2, "a": "é"})
    assert row.payload == (
        '{"a":"é","at":"2030-05-01T12:00:00+00:00","b":2,"kind":"test.event","subject":"X1"}'
    )
    with db.read() as session:
        seqs = session.scalars(select(EventRow.seq).order_by(EventRow.seq)).all()
        subjects = session.scalars(select(EventRow.subject).order_by(EventRow.seq)).all()
        assert TransparencyLog(session).size() == 3
        leaf = TransparencyLog(session).leaf_hash(2)
    assert seqs == [1, 2, 3]
    assert "X-lost" not in subjects
    assert leaf == merkle.leaf_hash(row.payload.encode("utf-8"))


def test_savepoints_keep_the_log_and_the_journal_aligned(db: Database) -> None:
    """The per-transaction cache of the tree's edge must not survive a savepoint's end."""
    with db.write() as session:
        record_event(session, "test.event", "X0", AT, {})

        def undone() -> None:
            with session.begin_nested():
                record_event(session, "test.event", "X-undone", AT, {})
                raise RuntimeError("undo the savepoint")

        with pytest.raises(RuntimeError, match="undo"):
            undone()
        record_event(session, "test.event", "X1", AT, {})
        with session.begin_nested():
            record_event(session, "test.event", "X2", AT, {})
        record_event(session, "test.event", "X3", AT, {})
    with db.read() as session:
        subjects = session.scalars(select(EventRow.subject).order_by(EventRow.seq)).all()
        seqs = session.scalars(select(EventRow.seq).order_by(EventRow.seq)).all()
        log = TransparencyLog(session)
        assert log.root() == merkle.root_from_leaf_hashes(_leaf_hashes(db))
        assert log.verify(from_scratch=True).ok
    assert subjects == ["X0", "X1", "X2", "X3"]
    assert seqs == [1, 2, 3, 4]


def test_appending_refuses_when_the_log_and_the_journal_disagree(db: Database) -> None:
    _append(db, 3)
    with db.write() as session:
        session.execute(
            text('INSERT INTO log_nodes (level, "index", hash) VALUES (0, 3, :h)'),
            {"h": b"\x00" * 32},
        )
    with pytest.raises(StoreError, match="journal ends at seq 3 but the log holds 4"):
        _append(db, 1, 3)


def test_a_migration_logs_the_events_that_were_already_there(settings: Settings) -> None:
    with Database(settings) as db:
        with db.engine.begin() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        with db.engine.begin() as conn:
            for n in range(1, 8):
                conn.execute(
                    text(
                        "INSERT INTO events (seq, at, kind, subject, payload)"
                        " VALUES (:n, :at, 'old.event', :s, :p)"
                    ),
                    {"n": n, "at": datetime(2030, 1, 1), "s": f"X{n}", "p": f'{{"n":{n}}}'},
                )
        db.migrate()
        hashes = _leaf_hashes(db)
        assert len(hashes) == 7
        _append(db, 2, 100)
        with db.read() as session:
            log = TransparencyLog(session)
            assert log.root() == merkle.root_from_leaf_hashes(_leaf_hashes(db))
            assert log.verify(from_scratch=True).ok


# -- proofs ----------------------------------------------------------------------------------


def test_inclusion_and_consistency_proofs_match_the_reference_and_verify(db: Database) -> None:
    _append(db, 13)
    hashes = _leaf_hashes(db)
    with db.read() as session:
        log = TransparencyLog(session)
        for size in range(1, 14):
            root = merkle.root_from_leaf_hashes(hashes[:size])
            for index in range(size):
                proof = log.inclusion_proof(index, size)
                assert proof == merkle.inclusion_proof(index, hashes[:size])
                merkle.verify_inclusion(index, size, hashes[index], proof, root)
            for size1 in range(1, size + 1):
                proof = log.consistency_proof(size1, size)
                assert proof == merkle.consistency_proof(size1, hashes[:size])
                old = merkle.root_from_leaf_hashes(hashes[:size1])
                merkle.verify_consistency(size1, size, old, root, proof)
        with pytest.raises(InvalidInputError, match="not between 0 and the log size 13"):
            log.inclusion_proof(0, 14)
        with pytest.raises(InvalidInputError, match="not in a tree of 13"):
            log.inclusion_proof(13, 13)


# -- checkpoints -----------------------------------------------------------------------------


def test_checkpoints_are_signed_stored_and_chain(db: Database, settings: Settings) -> None:
    signer = _signer(db, settings)
    with db.write() as session:
        empty = TransparencyLog(session).checkpoint(signer)
    for batch in (3, 1, 4):
        _append(db, batch, 100 + batch)
        with db.write() as session:
            TransparencyLog(session).checkpoint(signer)
    with db.read() as session:
        log = TransparencyLog(session)
        stored = log.checkpoints()
        assert [cp.size for cp in stored] == [0, 3, 4, 8]
        hashes = _leaf_hashes(db)
        for cp in stored:
            text_, signers = open_note(cp.note, [signer.verifier()])
            assert signers == [ORIGIN]
            parsed = Checkpoint.parse(text_)
            assert (parsed.origin, parsed.size) == (ORIGIN, cp.size)
            assert (
                parsed.root_hash == cp.root_hash == merkle.root_from_leaf_hashes(hashes[: cp.size])
            )
        for old, new in itertools.pairwise(stored[1:]):
            proof = log.consistency_proof(old.size, new.size)
            merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
        report = log.verify(from_scratch=True)
    assert report.ok, report.problems
    assert report.checkpoints_checked == 4
    assert Checkpoint.parse(open_note(empty, [signer.verifier()])[0]).size == 0


def test_an_unchanged_log_returns_the_latest_checkpoint(db: Database, settings: Settings) -> None:
    signer = _signer(db, settings)
    _append(db, 2)
    with db.write() as session:
        first = TransparencyLog(session).checkpoint(signer)
    with db.write() as session:
        again = TransparencyLog(session).checkpoint(signer)
        assert len(TransparencyLog(session).checkpoints()) == 1
    assert again == first


def test_a_checkpoint_inconsistent_with_the_previous_is_refused(
    db: Database, settings: Settings
) -> None:
    signer = _signer(db, settings)
    # (size of the stored checkpoint, size to sign next, node an attacker rewrites meanwhile)
    for old, new, (level, index) in [(4, 6, (2, 0)), (6, 9, (1, 2)), (9, 11, (0, 8))]:
        _append(db, old - _size(db), _size(db))
        with db.write() as session:
            TransparencyLog(session).checkpoint(signer)
        _append(db, new - old, old)
        with db.read() as session:
            original = session.scalars(
                select(LogNodeRow.hash).where(LogNodeRow.level == level, LogNodeRow.index == index)
            ).one()
        _tamper_node(db, level, index)
        with pytest.raises(
            VerificationError, match=f"not consistent with the stored checkpoint of {old}"
        ):
            with db.write() as session:
                TransparencyLog(session).checkpoint(signer)
        with db.write() as session:
            session.execute(
                text('UPDATE log_nodes SET hash = :h WHERE level = :l AND "index" = :i'),
                {"h": original, "l": level, "i": index},
            )
    with db.read() as session:
        assert session.scalars(select(LogCheckpointRow.size)).all() == [4, 6, 9]


def test_only_the_logs_own_key_signs_checkpoints(db: Database, settings: Settings) -> None:
    _signer(db, settings)
    stranger = parse_signer_key(generate_signer("someone.else/log")[0])
    impostor = parse_signer_key(generate_signer(ORIGIN)[0])
    with db.write() as session:
        log = TransparencyLog(session)
        with pytest.raises(ConfigurationError, match="origin is"):
            log.checkpoint(stranger)
        with pytest.raises(ConfigurationError, match="not the registry's"):
            log.checkpoint(impostor)


# -- verification ----------------------------------------------------------------------------


def _edit_event(db: Database, seq: int, payload: str) -> None:
    """What an attacker with database access does: lift the append-only guard, then edit."""
    with db.engine.begin() as conn:
        if db.settings.is_sqlite:
            conn.execute(text("DROP TRIGGER events_no_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_append_only"))
        conn.execute(
            text("UPDATE events SET payload = :p WHERE seq = :s"), {"p": payload, "s": seq}
        )


def test_verify_names_the_first_edited_event(db: Database, settings: Settings) -> None:
    signer = _signer(db, settings)
    _append(db, 9)
    with db.write() as session:
        TransparencyLog(session).checkpoint(signer)
    _edit_event(db, 6, '{"forged":true}')
    for from_scratch in (False, True):
        with db.read() as session:
            report = TransparencyLog(session).verify(from_scratch=from_scratch)
        assert not report.ok
        assert report.bad_index == 5
        assert report.problems[0].startswith("log index 5: event seq 6")


def test_verify_catches_a_deleted_event(db: Database) -> None:
    _append(db, 4)
    with db.engine.begin() as conn:
        if db.settings.is_sqlite:
            conn.execute(text("DROP TRIGGER events_no_delete"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_append_only"))
        conn.execute(text("DELETE FROM events WHERE seq = 4"))
    with db.read() as session:
        report = TransparencyLog(session).verify()
    assert report.bad_index == 3
    assert "no event seq 4" in report.problems[0]


def test_from_scratch_catches_a_tampered_interior_node(db: Database) -> None:
    _append(db, 8)
    _tamper_node(db, 1, 1)
    with db.read() as session:
        assert TransparencyLog(session).verify(from_scratch=False).ok  # leaves are intact
        report = TransparencyLog(session).verify(from_scratch=True)
    assert not report.ok
    assert "log node (level 1, index 1) over leaves 2-3" in report.problems[0]
    assert report.bad_index == 2


def test_verify_catches_a_tampered_leaf_node_and_a_forged_checkpoint(
    db: Database, settings: Settings
) -> None:
    signer = _signer(db, settings)
    _append(db, 5)
    with db.write() as session:
        TransparencyLog(session).checkpoint(signer)
    forger = parse_signer_key(generate_signer(ORIGIN)[0])
    forged = forger.sign(Checkpoint(ORIGIN, 5, b"\x01" * 32).to_text())
    with db.write() as session:
        session.execute(text("UPDATE log_checkpoints SET note = :n WHERE size = 5"), {"n": forged})
    _tamper_node(db, 0, 2)
    with db.read() as session:
        report = TransparencyLog(session).verify()
    assert report.bad_index == 2
    assert any(
        "checkpoint 5" in p and "no signature from a trusted key" in p for p in report.problems
    )


# -- keys ------------------------------------------------------------------------------------


def test_operator_keys_are_private_and_a_readable_key_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    vkey = create_operator_key(home, ORIGIN)
    key, pub = operator_key_path(home), operator_pub_path(home)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert read_operator_vkey(home) == vkey
    assert pub.read_text().strip() == vkey
    assert load_operator_signer(home).verifier().to_vkey() == vkey
    for mode in (0o640, 0o604, 0o660):
        key.chmod(mode)
        with pytest.raises(ConfigurationError, match=r"group or others.*chmod 600"):
            load_operator_signer(home)
    key.chmod(0o600)
    with pytest.raises(ConfigurationError, match="already exists"):
        create_operator_key(home, ORIGIN)


def test_a_missing_key_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="run `consentry init`"):
        load_operator_signer(tmp_path)


def test_init_log_is_idempotent_and_pins_origin_and_key(db: Database, settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="not usable"):
        init_log(db, settings, env={"CONSENTRY_LOG_ORIGIN": "has space"})
    first = init_log(db, settings, env={})
    assert first.origin.startswith("consentry.local/")
    assert len(first.origin.removeprefix("consentry.local/")) == 8
    assert init_log(db, settings, env={}) == first
    with pytest.raises(ConfigurationError, match="origin never changes"):
        init_log(db, settings, env={"CONSENTRY_LOG_ORIGIN": "other.example/log"})
    # A home holding another registry's key is refused.
    operator_key_path(settings.home).unlink()
    operator_pub_path(settings.home).unlink()
    with pytest.raises(ConfigurationError, match="is not in"):
        init_log(db, settings, env={})
    create_operator_key(settings.home, first.origin)
    with pytest.raises(ConfigurationError, match="not this registry's"):
        init_log(db, settings, env={})


# -- personal data stays out of the log ------------------------------------------------------


def test_party_add_leaves_carry_commitments_not_personal_data(
    db: Database, settings: Settings
) -> None:
    signer = _signer(db, settings)
    with db.write() as session:
        service = RegistryService(session)
        ann = service.add_party("Ann Quillfeather", "Ann.Quill@Example.org", PartyKind.PERSON)
        lab = service.add_party("Lumen Lab", None, PartyKind.ORGANISATION)
    with db.write() as session:
        TransparencyLog(session).checkpoint(signer)
    with db.read() as session:
        payloads = session.scalars(select(EventRow.payload).order_by(EventRow.seq)).all()
        salts = {s.party_id: s.salt for s in session.scalars(select(PartySecretRow))}
    ann_body, lab_body = (json.loads(p) for p in payloads)
    for payload in payloads:
        for personal in ("Ann", "Quill", "quill", "example", "Lumen"):
            assert personal not in payload
    ann_salt = salts[int(ann.id[1:])]
    assert ann_body["name_commitment"] == commitment(ann_salt, "Ann Quillfeather")
    assert ann_body["email_commitment"] == commitment(ann_salt, "ann.quill@example.org")
    assert ann_body["name_commitment"] == hashlib.sha256(ann_salt + b"Ann Quillfeather").hexdigest()
    assert lab_body["email_commitment"] is None
    assert lab_body["name_commitment"] == commitment(salts[int(lab.id[1:])], "Lumen Lab")
    # Erasure: the salt goes, the log (and its checkpoint) still verify.
    with db.write() as session:
        assert erase_party_secrets(session, int(ann.id[1:]))
        assert not erase_party_secrets(session, int(ann.id[1:]))
    with db.read() as session:
        assert session.get(PartySecretRow, int(ann.id[1:])) is None
        report = TransparencyLog(session).verify(from_scratch=True)
    assert report.ok, report.problems


def test_deleting_a_party_deletes_its_salt(db: Database) -> None:
    with db.write() as session:
        pid = int(RegistryService(session).add_party("Bo", None, PartyKind.PERSON).id[1:])
    with db.write() as session:
        session.execute(text("DELETE FROM parties WHERE id = :n"), {"n": pid})
    with db.read() as session:
        assert session.get(PartySecretRow, pid) is None
        assert session.get(PartyRow, pid) is None
        assert TransparencyLog(session).verify().ok
