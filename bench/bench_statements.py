"""The statements service without HTTP: ``sign_many`` batches and the outbox worker.

What the web layer's group commit buys: signatures per second through
``StatementService.sign_many`` at batch sizes 1, 50 and 200 (each batch one transaction with
its duplicate check, rate-limit counts, signature, token and outbox rows), on SQLite and, when
a server is configured (``CONSENTRY_BENCH_POSTGRES_URL`` or ``CONSENTRY_TEST_POSTGRES_URL``),
PostgreSQL. The floor is the same number of signature rows written by one plain executemany
INSERT per batch, in the same database. The outbox line sends queued confirmations over real
SMTP to an aiosmtpd sink running in a process of its own (``bench.web_sink``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from consentry.config import RateLimits, ServerSettings, Settings
from consentry.statements import (
    OutboxWorker,
    SignRequest,
    StatementService,
    StatementSpec,
)
from consentry.store.database import Database
from consentry.store.statement_tables import SignatureRow

# Limits out of the way: this measures the work, not the refusals.
_UNLIMITED = RateLimits((10**9, 60), (10**9, 86400), (10**9, 60), (10**9, 86400))


def _requests(n: int, tag: str) -> list[SignRequest]:
    return [
        SignRequest(
            slug="bench",
            name=f"Signer {i}",
            email=f"{tag}{i}@example{i % 97}.org",
            show_name=i % 3 != 0,
            occupation="writer",
            country="FR",
            organisation=None,
            ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            user_agent="Mozilla/5.0 (bench)",
            honeypot="",
            form_age_seconds=30.0,
        )
        for i in range(n)
    ]


def _floor(db: Database, statement_id: int, n: int, batch: int) -> float:
    now = datetime.now(UTC)
    rows = [
        {
            "statement_id": statement_id,
            "state": "fraudulent",  # outside the live unique index: no collisions with ours
            "name": f"Floor {i}",
            "email": f"floor{i}@example.org",
            "email_canonical": f"floor{i}@example.org",
            "email_domain": "example.org",
            "show_name": True,
            "ip": "10.0.0.1",
            "ip_key": "10.0.0.1",
            "user_agent": "floor",
            "language": "en",
            "created_at": now,
            "counted": False,
            "kind": "person",
        }
        for i in range(n)
    ]
    started = time.perf_counter()
    for start in range(0, n, batch):
        with db.write(log=False) as session:
            session.execute(insert(SignatureRow), rows[start : start + batch])
    return n / (time.perf_counter() - started)


def _measure(registry: Settings, n: int) -> list[tuple[str, float, float]]:
    server = ServerSettings.load(registry, dev=True, env={"CONSENTRY_SECRET_KEY": "b" * 48})
    out = []
    with Database(registry) as db:
        db.migrate()
        service = StatementService(db, server)
        service.create_statement(
            StatementSpec(slug="bench", title="Bench", text="x", rate_limits=_UNLIMITED), by="bench"
        )
        service.open_statement("bench", by="bench")
        with db.read() as session:
            statement_id = session.execute(text("SELECT id FROM statements")).scalar_one()
        for batch in (1, 50, 200):
            count = n // 10 if batch == 1 else n
            requests = _requests(count, f"b{batch}x")
            started = time.perf_counter()
            for start in range(0, count, batch):
                results = service.sign_many(requests[start : start + batch])
                assert all(r.outcome.value == "accepted" for r in results)  # noqa: S101
            ours = count / (time.perf_counter() - started)
            out.append(
                (f"sign_many, batches of {batch}", ours, _floor(db, statement_id, count, batch))
            )
    return out


def _outbox(registry: Settings, folder: Path, cap: int) -> tuple[int, float, float]:
    """Send ``cap`` queued messages to an SMTP sink in a process of its own.

    The sink (``bench.web_sink``) logs recipients instead of writing a maildir: one fsync
    per message would measure the disk, not the worker. Returns (sent, messages/s, worker
    CPU ms per message).
    """
    folder.mkdir(parents=True, exist_ok=True)
    port_file = folder / "port"
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.web_sink", str(folder / "recipients"), str(port_file)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        url = f"smtp://127.0.0.1:{port_file.read_text().strip()}"
        server = ServerSettings.load(
            registry, dev=True, env={"CONSENTRY_SECRET_KEY": "b" * 48, "CONSENTRY_SMTP_URL": url}
        )
        with Database(registry) as db:
            worker = OutboxWorker(db, server)
            started, cpu = time.perf_counter(), time.process_time()
            sent = 0
            while sent < cap and (batch := worker.run_once(limit=200)):
                sent += batch
            wall = time.perf_counter() - started
            return sent, sent / wall, (time.process_time() - cpu) / max(sent, 1) * 1000
    finally:
        sink.terminate()
        sink.wait(30)


@contextlib.contextmanager
def _postgres() -> Iterator[str | None]:
    admin_url = os.environ.get("CONSENTRY_BENCH_POSTGRES_URL") or os.environ.get(
        "CONSENTRY_TEST_POSTGRES_URL"
    )
    if not admin_url:
        yield None
        return
    name = f"consentry_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(quick: bool) -> str:
    n = 1_000 if quick else 10_000
    lines = [
        "## Statements service (no HTTP)",
        "",
        "| backend | what | ours | floor (plain INSERT, same batches) | ours ÷ floor |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="consentry-bench-statements-") as tmp:
        folder = Path(tmp)
        backends: list[tuple[str, dict[str, str]]] = [
            ("SQLite", {"CONSENTRY_HOME": str(folder / "sqlite")})
        ]
        with _postgres() as pg_url:
            if pg_url:
                backends.append(
                    (
                        "PostgreSQL",
                        {"CONSENTRY_HOME": str(folder / "pg"), "CONSENTRY_DATABASE_URL": pg_url},
                    )
                )
            for label, env in backends:
                registry = Settings.load(env=env)
                for what, ours, floor in _measure(registry, n):
                    lines.append(
                        f"| {label} | {what} | {ours:,.0f} signatures/s | {floor:,.0f} rows/s "
                        f"| {ours / floor:.2f} |"
                    )
                sent, rate, cpu_ms = _outbox(registry, folder / f"{label}-sink", n // 5)
                lines.append(
                    f"| {label} | outbox worker → SMTP sink process (aiosmtpd), {sent:,} "
                    f"messages | {rate:,.0f} messages/s ({cpu_ms:.2f} ms worker CPU each) "
                    "| — | — |"
                )
    if len(backends) == 1:
        lines += ["", "PostgreSQL not measured: set CONSENTRY_BENCH_POSTGRES_URL."]
    return "\n".join(lines)
