"""What one signature costs the web service, part by part: ``python -m bench.web_costs``.

The load benchmark (:mod:`bench.bench_web`) measures the whole server; this takes it apart,
in-process and with CPU time rather than wall time, so the figures hold on a busy machine:

- ``sign_many`` per signature (batches of 200, as the group-commit batcher makes them), and
  the request validation in it;
- the e-mail outbox per message, split into its steps (claim, render, send, record; timed by
  wrapping the worker's own methods), against a real SMTP server in a child process;
- ``build_message`` next to the same message built directly with ``email.mime.text.MIMEText``
  (the classic API; the reference the shipped builder is compared with);
- the web layer per request, calling the ASGI app directly (no HTTP parsing): ``count.json``,
  ``/healthz``, the statement page and the sign POST (process CPU: every thread);
- the first page of the public signers list at 0, 20,000 and 100,000 validated signers;
- sign POSTs through the ASGI app at 330/s for 10 s (open loop), with the outbox worker
  sending in the same process and without it: what the e-mail does to signing latency.

SQLite always; PostgreSQL too when ``CONSENTRY_BENCH_POSTGRES_URL`` or
``CONSENTRY_TEST_POSTGRES_URL`` names a server whose user may create databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.header import Header
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import insert

from consentry.config import ServerSettings, Settings
from consentry.statements import SignRequest, StatementService
from consentry.statements.messages import MessageParts, build_message, render
from consentry.statements.model import StatementSpec
from consentry.statements.outbox import OutboxWorker
from consentry.store.database import Database
from consentry.store.statement_tables import SignatureRow

BATCH = 200


def _cpu_us(fn: Callable[[], object], n: int, clock: Callable[[], float]) -> float:
    started = clock()
    for _ in range(n):
        fn()
    return (clock() - started) / n * 1e6


def _requests(run: int, n: int, slug: str = "costs") -> list[SignRequest]:
    return [
        SignRequest(
            slug=slug,
            name=f"Signer {run}-{i}",
            email=f"s-{run}-{i}@gmail.com" if i % 3 else f"s-{run}-{i}@org{i % 500}.example.net",
            show_name=True,
            occupation="writer",
            country=None,
            organisation=None,
            ip=f"10.{run % 256}.{(i >> 8) & 255}.{i & 255}",
            user_agent="consentry-bench/1",
            honeypot="",
            form_age_seconds=10.0,
        )
        for i in range(n)
    ]


@contextmanager
def _registry(pg_admin: str | None, smtp_url: str) -> Iterator[tuple[Database, ServerSettings]]:
    """A fresh registry with one open statement: a SQLite file, or a new PostgreSQL database."""
    from bench.bench_web import _pg_database

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="consentry-costs-"))
        env = {"CONSENTRY_HOME": tmp}
        if pg_admin:
            env["CONSENTRY_DATABASE_URL"] = stack.enter_context(_pg_database(pg_admin))
        registry = Settings.load(env=env)
        db = Database(registry)
        db.migrate()
        settings = ServerSettings.load(
            registry,
            dev=False,
            env={
                "CONSENTRY_SECRET_KEY": "k" * 48,
                "CONSENTRY_SMTP_URL": smtp_url,
                "CONSENTRY_MAIL_FROM": "Consentry bench <bench@example.net>",
                "CONSENTRY_TRUSTED_PROXIES": "127.0.0.1",
                # The form is posted the instant it is issued here; a real signer takes longer.
                "CONSENTRY_MIN_FILL_SECONDS": "0",
            },
        )
        service = StatementService(db, settings)
        service.create_statement(StatementSpec(slug="costs", title="Costs", text="t"), by="bench")
        service.open_statement("costs", by="bench")
        try:
            yield db, settings
        finally:
            db.close()


def service_costs(pg_admin: str | None) -> list[str]:
    from bench.bench_web import _sink

    lines = []
    # The SMTP server runs in a child process, so that this process's CPU time is the
    # worker's alone (it may send over several connections from threads of its own).
    with tempfile.TemporaryDirectory() as tmp, _sink(Path(tmp)) as (port, _):
        with _registry(pg_admin, f"smtp://127.0.0.1:{port}") as (db, settings):
            service = StatementService(db, settings)
            service.sign_many(_requests(0, BATCH))  # warm caches and compiled statements
            batches = [_requests(run, BATCH) for run in range(1, 11)]
            n = len(batches) * BATCH
            validate = (
                _cpu_us(
                    lambda: [service.validate_request(r) for b in batches for r in b],
                    1,
                    time.thread_time,
                )
                / n
            )
            batches = [_requests(run, BATCH) for run in range(11, 21)]
            sign = _cpu_us(lambda: [service.sign_many(b) for b in batches], 1, time.thread_time) / n
            lines.append(f"| `sign_many`, batches of {BATCH} | {sign:,.0f} µs per signature |")
            lines.append(
                f"| … of which request validation (e-mail syntax, fields) | {validate:,.0f} µs |"
            )

            worker = OutboxWorker(db, settings)
            steps = {"_claim": 0.0, "_render": 0.0, "_send": 0.0, "_record": 0.0}
            for name in steps:
                original = getattr(worker, name)

                def timed(*args: Any, _name: str = name, _f: Any = original) -> Any:
                    started = time.process_time()
                    try:
                        return _f(*args)
                    finally:
                        steps[_name] += time.process_time() - started

                setattr(worker, name, timed)
            started, sent = time.process_time(), 0
            while batch := worker.run_once(100):
                sent += batch
            total = (time.process_time() - started) / sent * 1e6
            parts = ", ".join(f"{k[1:]} {v / sent * 1e6:,.0f}" for k, v in steps.items())
            lines.append(f"| outbox `run_once(100)` | {total:,.0f} µs per message ({parts}) |")
    return lines


def message_costs() -> list[str]:
    parts = MessageParts(
        kind="confirm",
        to="signer-1-2@gmail.com",
        name="Signer 1",
        title="A statement «with» accents",
        statement_url="https://example.net/statements/a",
        withdraw_url="https://example.net/withdraw/abc",
        confirm_url="https://example.net/confirm/def",
        ordinal=None,
        confirm_hours=48,
    )
    now = datetime.now(UTC)
    ours = _cpu_us(
        lambda: build_message(
            parts, mail_from="Consentry <bench@example.net>", when=now
        ).as_bytes(),
        1000,
        time.thread_time,
    )

    def legacy() -> bytes:
        subject, body = render(parts)
        message = MIMEText(body, "plain", "utf-8")
        message["Subject"] = Header(subject, "utf-8")
        message["From"] = "Consentry <bench@example.net>"
        message["To"] = parts.to
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain="example.net")
        message["Auto-Submitted"] = "auto-generated"
        return message.as_bytes()

    old = _cpu_us(legacy, 1000, time.thread_time)
    return [
        f"| `build_message(…).as_bytes()` as shipped | {ours:,.0f} µs |",
        f"| the same message with `email.mime.text.MIMEText` (compat32 API), for comparison "
        f"| {old:,.0f} µs |",
    ]


async def _asgi(
    app: Any, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    status, out_headers, chunks = 0, [], []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status, out_headers = message["status"], message["headers"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, out_headers, b"".join(chunks)


async def _web_costs(pg_admin: str | None) -> list[str]:
    from consentry.web.app import create_app

    lines = []
    with _registry(pg_admin, "smtp://127.0.0.1:9") as (_, settings):
        app = create_app(settings, outbox=False)
        async with app.router.lifespan_context(app):
            _, headers, page = await _asgi(app, "GET", "/statements/costs", [])
            token = re.search(rb'name="form_token" value="([^"]+)"', page)
            cookie = next(v.decode() for k, v in headers if k == b"set-cookie")
            assert token is not None  # noqa: S101 - the page always has the form
            form_token, nonce = token.group(1).decode(), cookie.split(";")[0].split("=", 1)[1]

            def post(i: int) -> Any:
                body = urlencode(
                    {"form_token": form_token, "name": f"S {i}", "email": f"s-{i}@gmail.com",
                     "website": "", "show_name": "1"}
                ).encode()  # fmt: skip
                return _asgi(
                    app,
                    "POST",
                    "/statements/costs/sign",
                    [
                        ("content-type", "application/x-www-form-urlencoded"),
                        ("cookie", f"consentry_form={nonce}"),
                        ("x-forwarded-for", f"10.9.{(i >> 8) & 255}.{i & 255}"),
                        ("content-length", str(len(body))),
                    ],
                    body,
                )

            for i in range(200):
                await post(i)
            for label, path, n in (
                ("`count.json`", "/statements/costs/count.json", 3000),
                ("`/healthz`", "/healthz", 1000),
                ("statement page (200 pending, no validated signers)", "/statements/costs", 300),
            ):
                started = time.process_time()
                for _ in range(n):
                    await _asgi(app, "GET", path, [])
                cost = (time.process_time() - started) / n * 1e6
                lines.append(f"| {label}, ASGI app only | {cost:,.0f} µs per request |")
            n = 2000
            started = time.process_time()
            for k in range(0, n, 100):  # 100 at a time, so that the batcher forms batches
                await asyncio.gather(*(post(1000 + k + j) for j in range(100)))
            cost = (time.process_time() - started) / n * 1e6
            lines.append(
                f"| sign POST, ASGI app only (form, CSRF, batcher + `sign_many`, thank-you page) "
                f"| {cost:,.0f} µs per request |"
            )
    return lines


def signer_list_costs(pg_admin: str | None) -> list[str]:
    lines = []
    with _registry(pg_admin, "smtp://127.0.0.1:9") as (db, settings):
        service = StatementService(db, settings)
        statement_id = 1  # the only statement of this fresh registry
        have = 0
        for total in (0, 20_000, 100_000):
            for start in range(have, total, 5000):
                rows = [
                    {
                        "statement_id": statement_id,
                        "state": "validated",
                        "ordinal": i + 1,
                        "name": f"Signer {i}",
                        "email": f"v-{i}@example.net",
                        "email_canonical": f"v-{i}@example.net",
                        "email_domain": "example.net",
                        "show_name": True,
                        "ip": "10.0.0.1",
                        "ip_key": "10.0.0.1",
                        "language": "en",
                        "created_at": datetime.now(UTC),
                        "counted": True,
                        "kind": "person",
                    }
                    for i in range(start, min(total, start + 5000))
                ]
                with db.write(log=False) as session:
                    session.execute(insert(SignatureRow), rows)
            have = total
            service.public_signers("costs", limit=101)
            cost = _cpu_us(
                lambda: service.public_signers("costs", limit=101), 30, time.perf_counter
            )
            lines.append(
                f"| `public_signers(limit=101)` at {total:,} validated signers | "
                f"{cost / 1000:,.2f} ms (wall, includes the database's own work) |"
            )
    return lines


async def _outbox_effect(pg_admin: str | None, *, outbox: bool, rate: float, seconds: float) -> str:
    from bench.bench_web import _sink
    from consentry.web.app import create_app

    with (
        tempfile.TemporaryDirectory() as tmp,
        _sink(Path(tmp)) as (port, _),
        _registry(pg_admin, f"smtp://127.0.0.1:{port}") as (_, settings),
    ):
        app = create_app(settings, outbox=outbox)
        async with app.router.lifespan_context(app):
            _, headers, page = await _asgi(app, "GET", "/statements/costs", [])
            token = re.search(rb'name="form_token" value="([^"]+)"', page)
            cookie = next(v.decode() for k, v in headers if k == b"set-cookie")
            assert token is not None  # noqa: S101 - the page always has the form
            form_token, nonce = token.group(1).decode(), cookie.split(";")[0].split("=", 1)[1]
            latencies: list[float] = []

            async def post(i: int, due: float) -> int:
                body = urlencode(
                    {"form_token": form_token, "name": f"S {i}", "email": f"e-{i}@gmail.com",
                     "website": "", "show_name": "1"}
                ).encode()  # fmt: skip
                status, _, _ = await _asgi(
                    app,
                    "POST",
                    "/statements/costs/sign",
                    [
                        ("content-type", "application/x-www-form-urlencoded"),
                        ("cookie", f"consentry_form={nonce}"),
                        ("x-forwarded-for", f"10.8.{(i >> 8) & 255}.{i & 255}"),
                        ("content-length", str(len(body))),
                    ],
                    body,
                )
                latencies.append(time.perf_counter() - due)
                return status

            tasks = []
            start = time.perf_counter()
            for i in range(int(rate * seconds)):
                due = start + i / rate
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(i, due)))
            statuses = await asyncio.gather(*tasks)
            wall = time.perf_counter() - start
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
    where = "outbox worker in the same process" if outbox else "no outbox worker"
    return (
        f"| sign POSTs at {rate:.0f}/s for {seconds:.0f} s, {where} | "
        f"{len(statuses) / wall:,.0f}/s, p50 {p50 * 1000:,.0f} ms, p95 {p95 * 1000:,.0f} ms "
        f"(statuses {sorted(set(statuses))}) |"
    )


def main() -> int:
    pg = os.environ.get("CONSENTRY_BENCH_POSTGRES_URL") or os.environ.get(
        "CONSENTRY_TEST_POSTGRES_URL"
    )
    out = ["## What one signature costs, part by part — `python -m bench.web_costs`", ""]
    out += ["| e-mail composition | CPU |", "|---|---|", *message_costs(), ""]
    for backend, admin in (("SQLite", None), ("PostgreSQL", pg)):
        if backend == "PostgreSQL" and not admin:
            out += ["PostgreSQL skipped: set CONSENTRY_BENCH_POSTGRES_URL.", ""]
            continue
        out += [f"### {backend}", "", "| part | CPU |", "|---|---|"]
        out += service_costs(admin)
        out += asyncio.run(_web_costs(admin))
        out += signer_list_costs(admin)
        for outbox in (True, False):
            out.append(asyncio.run(_outbox_effect(admin, outbox=outbox, rate=330.0, seconds=10.0)))
        out.append("")
    text = "\n".join(out)
    print(text)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "web_costs.md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
