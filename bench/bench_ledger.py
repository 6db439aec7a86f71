"""Tamper-evident log on SQLite: append rate, inclusion-proof latency, receipt verification.

Each figure is quoted against a floor measured in the same run:

* appends: events/s through ``record_event`` (canonical JSON, log append, event insert), one
  transaction per N events, vs plain INSERTs of the same payloads into a scratch table with the
  same transaction sizes;
* proofs: ``TransparencyLog.inclusion_proof`` latency (p50/p99) in a log of 10^6 leaves (10^5
  with ``--quick``), built directly in ``log_nodes`` with bulk inserts;
* receipts: ``verify_receipt`` of one tlog proof per second on one core, vs one Ed25519
  verification plus one SHA-256 of the same payload (the cryptographic floor of any receipt).

Targets: >= 5,000 appends/s, proof <= 1 ms at 10^6, >= 20,000 receipt verifications/s.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text

from consentry.config import Settings
from consentry.ledger import merkle
from consentry.ledger.log import TransparencyLog, _open_note_cached, verify_receipt
from consentry.ledger.note import (
    Checkpoint,
    TlogProof,
    generate_signer,
    parse_signer_key,
    parse_tlog_proof,
)
from consentry.registry.events import record_event
from consentry.store.database import Database

AT = datetime(2030, 1, 1, tzinfo=UTC)


def _payload(n: int) -> dict[str, object]:
    """A grant.create-sized payload (ids, purposes, terms), different for every event."""
    return {
        "grantor": f"P{n % 977 + 1}",
        "licensee": f"P{n % 131 + 1000}",
        "purposes": ["rag", "train-genai"],
        "works": [f"W{n}", f"W{n + 1}"],
        "terms": "Attribution in the model card; no verbatim reproduction.",
        "payment": "flat",
        "amount": "120.00",
        "currency": "EUR",
    }


def _database(folder: Path) -> Database:
    db = Database(Settings.load(env={"CONSENTRY_HOME": str(folder)}))
    db.migrate()
    return db


def _appends(folder: Path, total: int, per_transaction: int) -> tuple[float, float]:
    """(events/s through record_event, rows/s of plain INSERTs), same transaction sizes."""
    db = _database(folder / f"appends-{per_transaction}")
    try:
        with db.write() as session:
            session.execute(
                text("CREATE TABLE scratch (seq INTEGER PRIMARY KEY, at TEXT, payload TEXT)")
            )
        started = time.perf_counter()
        for start in range(0, total, per_transaction):
            with db.write() as session:
                for n in range(start, min(start + per_transaction, total)):
                    record_event(session, "grant.create", f"G{n + 1}", AT, _payload(n))
        ours = total / (time.perf_counter() - started)
        insert = text("INSERT INTO scratch (seq, at, payload) VALUES (:s, :a, :p)")
        started = time.perf_counter()
        for start in range(0, total, per_transaction):
            with db.write() as session:
                for n in range(start, min(start + per_transaction, total)):
                    body = {"kind": "grant.create", "subject": f"G{n + 1}", **_payload(n)}
                    data = rfc8785.dumps(body).decode("utf-8")
                    session.execute(insert, {"s": n + 1, "a": AT.isoformat(), "p": data})
        floor = total / (time.perf_counter() - started)
        with db.read() as session:
            log = TransparencyLog(session)
            if log.size() != total or not log.verify().ok:
                raise RuntimeError("the benchmark log does not verify")
        return ours, floor
    finally:
        db.close()


def _leaf(n: int) -> bytes:
    """A small event payload in canonical JSON (sorted keys, no spaces)."""
    return b'{"at":"2030-01-01T00:00:00+00:00","kind":"bench.event","subject":"X%d"}' % n


def _build_log(db: Database, leaves: int) -> list[bytes]:
    """Fill log_nodes with ``leaves`` leaves directly (bulk inserts): the fast path."""
    frontier = merkle.CompactRange()
    leaf_hashes = [merkle.leaf_hash(_leaf(n)) for n in range(leaves)]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        batch: list[tuple[int, int, bytes]] = []
        for hash_ in leaf_hashes:
            batch.extend(frontier.append(hash_))
            if len(batch) >= 100_000:
                cursor.executemany(
                    'INSERT INTO log_nodes (level, "index", hash) VALUES (?,?,?)', batch
                )
                batch.clear()
        cursor.executemany('INSERT INTO log_nodes (level, "index", hash) VALUES (?,?,?)', batch)
        cursor.execute("COMMIT")
    finally:
        raw.close()
    return leaf_hashes


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _rate(fn: Callable[[], object], seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while True:
        for _ in range(100):
            fn()
        count += 100
        took = time.perf_counter() - started
        if took >= seconds:
            return count / took


def run(quick: bool) -> str:
    total = 2_000 if quick else 20_000
    leaves = 100_000 if quick else 1_000_000
    samples = 500 if quick else 2_000
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="consentry-bench-ledger-") as tmp:
        folder = Path(tmp)
        # 1. Appends, one transaction per N events.
        for per_transaction in (1, 100, 1_000):
            ours, floor = _appends(folder, total, per_transaction)
            target = "≥ 5,000/s" if per_transaction > 1 else "—"
            rows.append(
                (
                    f"append via record_event, {per_transaction} event(s)/transaction",
                    f"{ours:,.0f} events/s",
                    f"{floor:,.0f} rows/s plain INSERT",
                    f"{floor / ours:.1f}× floor",
                    target,
                )
            )
        # 2. Inclusion proofs in a big log.
        db = _database(folder / "proofs")
        try:
            started = time.perf_counter()
            leaf_hashes = _build_log(db, leaves)
            build = time.perf_counter() - started
            rng = random.Random(9162)
            timings: list[float] = []
            with db.read() as session:
                log = TransparencyLog(session)
                size = log.size()
                root = log.root(size)
                if root != merkle.root_from_leaf_hashes(leaf_hashes):
                    raise RuntimeError("the bulk-built log has the wrong root")
                for _ in range(samples):
                    index = rng.randrange(size)
                    started = time.perf_counter()
                    proof = log.inclusion_proof(index, size)
                    timings.append(time.perf_counter() - started)
                    merkle.verify_inclusion(index, size, leaf_hashes[index], proof, root)
                floor_timings = []
                for _ in range(samples):
                    index = rng.randrange(size)
                    started = time.perf_counter()
                    session.execute(
                        text('SELECT hash FROM log_nodes WHERE level = 0 AND "index" = :i'),
                        {"i": index},
                    ).scalar_one()
                    floor_timings.append(time.perf_counter() - started)
                # 3. A real receipt against a signed checkpoint of this log.
                signer = parse_signer_key(generate_signer("bench.consentry.local/log")[0])
                note = signer.sign(Checkpoint(signer.name, size, root).to_text())
                index = size // 3
                payload = _leaf(index)
                receipt = TlogProof(
                    index, tuple(log.inclusion_proof(index, size)), note, extra=payload
                ).to_text()
        finally:
            db.close()
        p50, p99 = _percentile(timings, 0.5), _percentile(timings, 0.99)
        floor50 = _percentile(floor_timings, 0.5)
        rows.append(
            (
                f"inclusion proof at {size:,} leaves (p50 / p99)",
                f"{p50 * 1e3:.3f} / {p99 * 1e3:.3f} ms",
                f"{floor50 * 1e3:.3f} ms one indexed node read (p50)",
                f"{p50 / floor50:.1f}× floor",
                "≤ 1 ms",
            )
        )
        rows.append(
            (
                f"bulk build of {size:,} leaves in log_nodes",
                f"{build:.1f} s",
                "—",
                "—",
                "—",
            )
        )
        verifier = signer.verifier()
        verify_receipt(receipt, verifier)  # must pass before it is timed
        public = verifier.public_key
        message = Checkpoint(signer.name, size, root).to_text().encode()
        signature = signer.private_key.sign(message)
        key = Ed25519PublicKey.from_public_bytes(public)
        seconds = 1.0 if quick else 3.0

        def cold() -> object:
            # A receipt against a checkpoint never seen before: full Ed25519 verification.
            _open_note_cached.cache_clear()
            return verify_receipt(receipt, verifier)

        cold_rate = _rate(cold, seconds)
        warm_rate = _rate(lambda: verify_receipt(receipt, verifier), seconds)
        floor_rate = _rate(
            lambda: (key.verify(signature, message), hashlib.sha256(payload).digest()), seconds
        )
        proof_hashes = len(parse_tlog_proof(receipt).hashes)
        hash_floor = _rate(
            lambda: [hashlib.sha256(payload).digest() for _ in range(proof_hashes + 1)], seconds
        )
        rows.append(
            (
                "receipt verification, new checkpoint each time, 1 core",
                f"{cold_rate:,.0f} /s",
                f"{floor_rate:,.0f} /s Ed25519 verify + SHA-256",
                f"{floor_rate / cold_rate:.1f}× floor",
                "≥ 20,000/s",
            )
        )
        rows.append(
            (
                "receipt verification, shared checkpoint (a snapshot's batch), 1 core",
                f"{warm_rate:,.0f} /s",
                f"{hash_floor:,.0f} /s the proof's {proof_hashes + 1} SHA-256s",
                f"{hash_floor / warm_rate:.1f}× floor",
                "≥ 20,000/s",
            )
        )
    header = (
        "## Tamper-evident log (SQLite)\n\n"
        f"{total:,} events per append run; proofs in a log of {leaves:,} leaves, "
        f"{samples:,} random indices; ratio = our time ÷ floor time.\n\n"
        "| measure | ours | floor | ratio | target |\n|---|---|---|---|---|\n"
    )
    return header + "\n".join(f"| {' | '.join(row)} |" for row in rows) + "\n"
