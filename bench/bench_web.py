"""Web service benchmark (issue 7): signing load, zero lost, ``count.json``, on SQLite and PG.

For each backend, in the same run:

1. a fresh registry (a SQLite file; on PostgreSQL a fresh database), ``consentry init``, one
   open statement per signing run (``consentry statement create`` / ``open``: per-statement
   rate limits start empty for every run), a real SMTP sink in a child process
   (:mod:`bench.web_sink`), and ``consentry serve`` in production mode (real secret key, SMTP
   URL of the sink, loopback base URL, ``CONSENTRY_TRUSTED_PROXIES=127.0.0.1``) on a free port;
2. signing load: an open-loop generator in a child process (:mod:`bench.web_load`) posts the
   real sign form at a fixed rate, each submission with its own e-mail and its own
   ``X-Forwarded-For`` address (believed because the generator is the trusted proxy, so the
   crowd stays under the per-IP limits, which remain at their defaults); CSRF tokens and their
   cookies come from real statement page views fetched more than the minimum fill time
   (default 3 s, unchanged) before use. Rates rise until one misses a target (the knee);
3. zero lost: every 2xx submission must be a row in the database, have a confirmation outbox
   row, and arrive at the SMTP sink once the outbox drains (drain time measured);
4. ``count.json``, the statement page and ``/healthz`` under ``wrk`` (or a Python closed-loop
   generator when wrk is missing), and the floor for signing: plain batched INSERTs of
   signature rows into the same database.

The server's access log (one JSON line per request, as in production) goes to a file.
``CONSENTRY_BENCH_WEB_RATES`` (e.g. ``330,500``), ``CONSENTRY_BENCH_WEB_WORKERS`` and
``CONSENTRY_BENCH_WEB_BACKENDS`` (``sqlite,postgres``) override the rates tried, the server's
worker processes and the backends; ``CONSENTRY_BENCH_WEB_PROFILE=1`` samples the server with
py-spy during each measurement (collapsed stacks in bench/results/profile-*.txt).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text

from consentry.cli import main as cli_main
from consentry.config import Settings
from consentry.store.database import Database
from consentry.store.statement_tables import OutboxRow, SignatureRow, StatementRow

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONSENTRY = str(Path(sys.executable).parent / "consentry")

SIGN_TARGET = 330.0  # submissions/s sustained: 10x the 2019 UK petitions peak
P95_TARGET_MS = 300.0
COUNT_TARGET = 2000.0  # count.json requests/s
DEFAULT_RATES = (330.0, 500.0, 700.0)
LOWER_STEP = 0.6  # when the first rate fails, the next run offers 60 % of it
MIN_RATE = 20.0
TOKENS_PER_RUN = 200  # distinct page views whose form tokens the submissions of a run reuse
SIGNED = "bench-signed"  # the statement the INSERT floor fills with validated signers


# -- child processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(env: Mapping[str, str], *args: str) -> dict[str, Any]:
    """Run the consentry CLI in-process (fast: no interpreter start-up) against ``env``."""
    import io

    saved = {k: os.environ.get(k) for k in env}
    saved.setdefault("CONSENTRY_DATABASE_URL", os.environ.get("CONSENTRY_DATABASE_URL"))
    os.environ.pop("CONSENTRY_DATABASE_URL", None)
    os.environ.update(env)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = cli_main([*args, "--json"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if code != 0:
        raise RuntimeError(f"consentry {' '.join(args)} failed (exit {code})")
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return lines[0] if lines else {}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and its live children (``serve --workers``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # gone, or no /proc on this system
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            total += sum(_cpu_seconds(int(child)) for child in task.read_text().split())
    return total


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _sink(workdir: Path) -> Iterator[tuple[int, Path]]:
    recipients, port_file = workdir / "recipients.txt", workdir / "sink.port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.web_sink", str(recipients), str(port_file)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the SMTP sink did not start")
            time.sleep(0.05)
        yield int(port_file.read_text()), recipients
    finally:
        _stop(proc)


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URL we built
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@contextlib.contextmanager
def _server(env: Mapping[str, str], port: int, log: Path, workers: int) -> Iterator[int]:
    """``consentry serve`` on ``port``; yields its pid once ``/healthz`` answers 200."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CONSENTRY, "serve", "--host", "127.0.0.1", "--port", str(port)]
            + (["--workers", str(workers)] if workers > 1 else []),
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while _get(f"http://127.0.0.1:{port}/healthz", timeout=2) != 200:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"consentry serve exited ({proc.returncode}):\n{tail}")
                if time.monotonic() > deadline:
                    raise RuntimeError("consentry serve did not become healthy in 120 s")
                time.sleep(0.1)
            yield proc.pid
        finally:
            _stop(proc)


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """With ``CONSENTRY_BENCH_WEB_PROFILE=1``: py-spy samples the server during a signing run.

    The collapsed stacks (``--format raw``) are copied next to bench/results/ so that what
    costs what can be read off afterwards; py-spy (PyPI) must be installed.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.environ.get("CONSENTRY_BENCH_WEB_PROFILE") or not Path(spy).exists():
        return None
    target = HERE / "results" / out.name
    target.parent.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "-o",
            str(target),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _child_load(config: dict[str, Any], workdir: Path, name: str) -> dict[str, Any]:
    """Run :mod:`bench.web_load` in a child process and return its JSON result."""
    cfg, res = workdir / f"{name}.json", workdir / f"{name}.result.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "bench.web_load", str(cfg), str(res)], cwd=REPO, check=True
    )
    result: dict[str, Any] = json.loads(res.read_text(encoding="utf-8"))
    return result


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _throughput(
    port: int,
    path: str,
    seconds: float,
    workdir: Path,
    connections: int = 64,
    *,
    use_wrk: bool = True,
) -> dict[str, Any]:
    """Closed-loop GET rate of ``path``: wrk if installed, else the Python generator."""
    url = f"http://127.0.0.1:{port}{path}"
    wrk = shutil.which("wrk") if use_wrk else None
    if wrk is None:
        result = _child_load(
            {
                "mode": "get",
                "host": "127.0.0.1",
                "port": port,
                "path": path,
                "connections": connections,
                "seconds": seconds,
            },
            workdir,
            "get",
        )
        result["tool"] = "python"
        return result
    secs = max(1, round(seconds))
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{secs}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def ms(value: str | None) -> float:
        if value is None:
            return float("nan")
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
        return float(number) * _WRK_UNITS.get(unit, float("nan"))

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    return {
        "tool": "wrk",
        "rate": rate,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
        "p50_ms": ms(pct.get("50")),
        "p99_ms": ms(pct.get("99")),
    }


# -- PostgreSQL --------------------------------------------------------------------------------


def _postgres_admin_url() -> tuple[str | None, str]:
    """A server URL whose user may create databases, and how it was found (or why not)."""
    for var in ("CONSENTRY_BENCH_POSTGRES_URL", "CONSENTRY_TEST_POSTGRES_URL"):
        if os.environ.get(var):
            return os.environ[var], var
    script = REPO / ".ci" / "start-postgres.sh"
    try:
        out = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, check=True, timeout=300
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"no PostgreSQL: set CONSENTRY_BENCH_POSTGRES_URL ({exc})"
    url = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return (url, ".ci/start-postgres.sh") if url.startswith("postgresql") else (None, out.stderr)


@contextlib.contextmanager
def _pg_database(admin_url: str) -> Iterator[str]:
    name = f"consentry_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


# -- measurements ------------------------------------------------------------------------------


@dataclass
class SignRun:
    slug: str
    load: dict[str, Any]
    server_cpu: float  # CPU seconds of the server process per second of the run
    loadavg: str
    in_db: int = 0  # accepted submissions found as pending signature rows
    states: dict[str, int] = field(default_factory=dict)  # their states (fraud reasons apart)
    with_outbox: int = 0  # ... that have a confirmation outbox row
    delivered: int = 0  # ... whose e-mail reached the SMTP sink
    drain_s: float = float("nan")  # end of the load until the last of them was delivered
    outbox_states: dict[str, int] = field(default_factory=dict)
    # Server CPU from the start of the load until the last e-mail left, per accepted
    # submission: what one signature costs the server, its e-mail included.
    cpu_per_signature_us: float = float("nan")

    @property
    def lost(self) -> int:
        accepted = int(self.load["accepted"])
        return accepted - min(self.in_db, self.with_outbox, self.delivered)

    def meets(self) -> bool:
        load = self.load
        return (
            load["accepted"] == load["offered"]
            and load["p95_ms"] < P95_TARGET_MS
            and self.lost == 0
        )


@dataclass
class BackendResult:
    backend: str
    note: str = ""
    runs: list[SignRun] = field(default_factory=list)
    count: dict[str, Any] = field(default_factory=dict)
    page: dict[str, Any] = field(default_factory=dict)
    page_signed: dict[str, Any] = field(default_factory=dict)
    signed: int = 0  # validated signers of the statement whose page is page_signed
    healthz: dict[str, Any] = field(default_factory=dict)
    insert_rows_per_s: float = float("nan")
    count_loadavg: str = ""


def _verify(
    settings: Settings, slug: str, run: SignRun, recipients: Path, timeout: float, finished: float
) -> None:
    """Zero lost: DB rows, outbox rows, then wait for the sink to hold every accepted e-mail."""
    accepted = set(run.load["accepted_emails"])
    db = Database(settings)
    try:
        with db.read() as session:
            statement_id = session.scalar(select(StatementRow.id).where(StatementRow.slug == slug))
            rows = session.execute(
                select(SignatureRow.email, SignatureRow.state, SignatureRow.fraud_reason).where(
                    SignatureRow.statement_id == statement_id
                )
            ).all()
            outboxed = set(
                session.scalars(
                    select(SignatureRow.email)
                    .join(OutboxRow, OutboxRow.signature_id == SignatureRow.id)
                    .where(SignatureRow.statement_id == statement_id, OutboxRow.kind == "confirm")
                )
            )
        states: Counter[str] = Counter()
        for email, state, reason in rows:
            if email in accepted:
                states[f"{state}:{reason}" if reason else state] += 1
        run.states = dict(states)
        run.in_db = sum(1 for email, state, _ in rows if email in accepted and state == "pending")
        run.with_outbox = len(accepted & outboxed)
        delivered: set[str] = set()
        deadline = time.monotonic() + timeout
        offset = 0
        while True:
            with recipients.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk.rfind(b"\n") + 1  # only whole lines; the sink may be mid-write
            offset += complete
            delivered.update(chunk[:complete].decode().split())
            if accepted <= delivered:
                run.drain_s = time.perf_counter() - finished
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        run.delivered = len(accepted & delivered)
        with db.read() as session:
            run.outbox_states = {
                state: int(n)
                for state, n in session.execute(
                    select(OutboxRow.state, func.count()).group_by(OutboxRow.state)
                )
            }
    finally:
        db.close()


def _insert_floor(settings: Settings, slug: str, total: int, batch: int = 200) -> float:
    """Rows/s of plain batched INSERTs of signature rows (the signing path's floor).

    The rows are validated signatures with ordinals, so that the statement they belong to
    then shows a realistic public list (its page is measured with them).
    """
    db = Database(settings)
    try:
        with db.read() as session:
            statement_id = session.scalar(select(StatementRow.id).where(StatementRow.slug == slug))
        started = time.perf_counter()
        for start in range(0, total, batch):
            rows = [
                {
                    "statement_id": statement_id,
                    "state": "validated",
                    "ordinal": i + 1,
                    "confirmed_at": _now(),
                    "name": f"Floor {i}",
                    "email": f"floor-{i}@example.net",
                    "email_canonical": f"floor-{i}@example.net",
                    "email_domain": "example.net",
                    "show_name": True,
                    "occupation": "writer",
                    "ip": f"10.200.{(i >> 8) & 255}.{i & 255}",
                    "ip_key": f"10.200.{(i >> 8) & 255}.{i & 255}",
                    "user_agent": "consentry-bench/1",
                    "language": "en",
                    "created_at": _now(),
                    "counted": False,
                    "kind": "person",
                }
                for i in range(start, min(total, start + batch))
            ]
            with db.write(log=False) as session:  # one transaction per batch, as group commit
                session.execute(insert(SignatureRow), rows)
        return total / (time.perf_counter() - started)
    finally:
        db.close()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def measure_backend(
    backend: str,
    workdir: Path,
    *,
    database_url: str | None,
    seconds: float,
    rates: tuple[float, ...],
    get_seconds: float,
    workers: int = 1,
    floor_rows: int = 20_000,
    tokens_per_run: int = TOKENS_PER_RUN,
    use_wrk: bool = True,
) -> BackendResult:
    """Everything the module docstring lists, for one backend; see :func:`run`."""
    result = BackendResult(backend)
    home = workdir / "home"
    env = {"CONSENTRY_HOME": str(home)}
    if database_url:
        env["CONSENTRY_DATABASE_URL"] = database_url
    _cli(env, "init")
    # One statement per run (rate limits count per statement), plus one for a lower rate
    # should the first already miss a target, and one the INSERT floor writes into.
    slugs = [f"bench-{i}" for i in range(len(rates) + 1)]
    for slug in [*slugs, SIGNED]:
        _cli(
            env,
            "statement",
            "create",
            "--slug",
            slug,
            "--title",
            f"Bench {slug}",
            "--text",
            "We ask that our work is not used without our consent.",
        )
    for slug in [*slugs, SIGNED]:
        _cli(env, "statement", "open", slug)
    settings = Settings.load(env=env)
    # Before the server starts: the floor is measured on an otherwise idle database.
    result.insert_rows_per_s = _insert_floor(settings, SIGNED, floor_rows)
    result.signed = floor_rows
    with _sink(workdir) as (smtp_port, recipients):
        port = _free_port()
        server_env = {
            **env,
            "CONSENTRY_SECRET_KEY": secrets.token_urlsafe(48),
            "CONSENTRY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "CONSENTRY_MAIL_FROM": "Consentry bench <bench@example.net>",
            "CONSENTRY_BASE_URL": f"http://127.0.0.1:{port}",
            "CONSENTRY_TRUSTED_PROXIES": "127.0.0.1",
        }
        with _server(server_env, port, workdir / "server.log", workers) as pid:
            plan = list(rates)
            for run_no, slug in enumerate(slugs):
                if run_no >= len(plan):
                    break
                rate = plan[run_no]
                base = {"host": "127.0.0.1", "port": port, "slug": slug}
                tokens = _child_load(
                    {**base, "mode": "tokens", "count": tokens_per_run}, workdir, f"tokens-{slug}"
                )["tokens"]
                time.sleep(3.2)  # older than the default minimum fill time (3 s) when used
                loadavg = _loadavg()
                cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
                profiler = _profile(pid, seconds, workdir / f"profile-{backend}-{rate:.0f}.txt")
                load = _child_load(
                    {
                        **base,
                        "mode": "sign",
                        "rate": rate,
                        "seconds": seconds,
                        "run": run_no + 1,
                        "tokens": tokens,
                    },
                    workdir,
                    f"sign-{slug}",
                )
                finished = time.perf_counter()
                if profiler is not None:
                    profiler.wait()
                run = SignRun(
                    slug, load, (_cpu_seconds(pid) - cpu0) / (finished - t0), loadavg=loadavg
                )
                _verify(settings, slug, run, recipients, max(120.0, 4 * seconds), finished)
                run.cpu_per_signature_us = (
                    (_cpu_seconds(pid) - cpu0) / max(1, int(load["accepted"])) * 1e6
                )
                result.runs.append(run)
                print(_run_line(backend, run), file=sys.stderr, flush=True)
                if not run.meets():
                    if run_no == 0 and rate * LOWER_STEP >= MIN_RATE:
                        # The first rate already fails: one run lower brackets the knee.
                        plan[1:] = [rate * LOWER_STEP]
                        continue
                    break  # the knee: higher rates would only fail harder
            result.count_loadavg = _loadavg()
            for name, path in (
                ("count", f"/statements/{slugs[0]}/count.json"),
                ("healthz", "/healthz"),
                ("page", f"/statements/{slugs[0]}"),
                ("page_signed", f"/statements/{SIGNED}"),
            ):
                cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
                profiler = _profile(pid, get_seconds, workdir / f"profile-{backend}-{name}.txt")
                figure = _throughput(port, path, get_seconds, workdir, use_wrk=use_wrk)
                if profiler is not None:
                    profiler.wait()
                cpu = _cpu_seconds(pid) - cpu0
                figure["server_cpu"] = cpu / (time.perf_counter() - t0)
                figure["cpu_us_per_request"] = cpu / max(1, figure["requests"]) * 1e6
                setattr(result, name, figure)
    return result


def _run_line(backend: str, run: SignRun) -> str:
    load = run.load
    return (
        f"[bench web] {backend} {load['offered_rate']:.0f}/s: achieved "
        f"{load['achieved_rate']:.0f}/s, p95 {load['p95_ms']:.0f} ms, statuses {load['statuses']}, "
        f"in db {run.in_db}/{load['accepted']}, delivered {run.delivered}, lost {run.lost}"
    )


# -- report ------------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def render(results: list[BackendResult], *, seconds: float, workers: int) -> str:
    lines = [
        "## Web service — `python -m bench web`",
        "",
        f"`consentry serve` (uvicorn, {workers} worker process{'es' if workers > 1 else ''}, "
        "production settings) on loopback; an open-loop generator in its own process posts the "
        f"real sign form for {seconds:g} s per rate, each submission with its own e-mail and "
        "its own X-Forwarded-For address (the generator is the trusted proxy 127.0.0.1, so "
        "the per-IP limits stay at their defaults); latency is measured from each request's "
        "scheduled time. CSRF tokens come from real page views fetched ≥ 3 s (the default "
        f"minimum fill time) before use, {TOKENS_PER_RUN} per run, each reused by many "
        "submissions (the server keeps no token state, so reuse costs it nothing extra). "
        "Zero lost = every 2xx submission is a pending row with a confirmation outbox row and "
        "its e-mail reached the SMTP sink (a real aiosmtpd server in another process).",
        "",
    ]
    for res in results:
        lines.append(f"### {res.backend}")
        lines.append("")
        if res.note:
            lines += [res.note, ""]
        if not res.runs:
            continue
        lines += [
            "| offered | achieved | p50 | p95 | p99 | statuses | accepted / in DB / outbox / "
            "delivered | drain | server CPU | generator CPU | load avg | target |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for run in res.runs:
            load = run.load
            statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(load["statuses"].items()))
            verdict = (
                f"≥ 330/s, p95 < 300 ms, 0 lost {_mark(run.meets())}"
                if load["offered_rate"] >= SIGN_TARGET
                else "—"
            )
            lines.append(
                f"| {load['offered_rate']:.0f}/s | {load['achieved_rate']:.0f}/s | "
                f"{load['p50_ms']:.0f} ms | {load['p95_ms']:.0f} ms | {load['p99_ms']:.0f} ms | "
                f"{statuses} | {load['accepted']:,} / {run.in_db:,} / {run.with_outbox:,} / "
                f"{run.delivered:,} (lost {run.lost}) | {run.drain_s:.1f} s | "
                f"{run.server_cpu:.0%} | {load['generator_cpu']:.0%} | {run.loadavg} | {verdict} |"
            )
        other = {
            k: v for run in res.runs for k, v in run.states.items() if not k.startswith("pending")
        }
        if other:
            lines += ["", f"Accepted submissions not stored as pending: {other}."]
        lines.append("")
        floor = res.insert_rows_per_s
        # Server CPU per accepted submission at the first rate (HTTP, group commit and the
        # confirmation e-mail, all in the server process): what one core can sustain at best.
        first = res.runs[0]
        sign_cpu = f"{first.cpu_per_signature_us:,.0f} incl. its e-mail"
        # Judged on the offered rate: the achieved one includes the tail after the last send.
        met = [r.load for r in res.runs if r.meets()]
        top = max(met, key=lambda load: float(load["offered_rate"]), default=None)
        best = float(top["achieved_rate"]) if top else 0.0
        best_text = (
            f"{best:,.0f}/s achieved at {top['offered_rate']:.0f}/s offered"
            if top
            else "none of the rates tried"
        )
        best_ok = top is not None and float(top["offered_rate"]) >= SIGN_TARGET
        lines += [
            "| figure | rate | p50 | p99 | server CPU (µs/request) | ÷ floor | target |",
            "|---|---|---|---|---|---|---|",
            f"| plain batched INSERT of signature rows (200 per transaction) | {floor:,.0f} "
            "rows/s | | | | 1.00 (floor) | — |",
            f"| signing, highest rate meeting every target | {best_text} | | | {sign_cpu} | "
            f"{best / floor:.3f} | ≥ 330/s {_mark(best_ok)} |",
        ]
        for name, fig, target in (
            ("`/healthz` (SELECT 1; floor for GETs)", res.healthz, None),
            ("`count.json`", res.count, COUNT_TARGET),
            ("statement page, pending signatures only", res.page, None),
            (f"statement page, {res.signed:,} validated signers", res.page_signed, None),
        ):
            if not fig:
                continue
            errors = fig.get("non_2xx", 0) or ""
            ratio = fig["rate"] / res.healthz["rate"] if res.healthz else float("nan")
            verdict = f"≥ {target:,.0f}/s {_mark(fig['rate'] >= target)}" if target else "—"
            lines.append(
                f"| {name} ({fig['tool']}, 64 connections{f', {errors} non-2xx' if errors else ''})"
                f" | {fig['rate']:,.0f}/s | {fig['p50_ms']:.1f} ms | {fig['p99_ms']:.1f} ms | "
                f"{fig['server_cpu']:.0%} ({fig['cpu_us_per_request']:,.0f}) | {ratio:.2f} | "
                f"{verdict} |"
            )
        lines += [
            "",
            f"One server process spends {first.cpu_per_signature_us:,.0f} µs of CPU per "
            "signature (HTTP, group commit and its confirmation e-mail, counted until the "
            "outbox drained): one core can carry at most "
            f"{1e6 / first.cpu_per_signature_us:,.0f} signatures/s. Load average before the "
            f"GET measurements: {res.count_loadavg}.",
            "",
        ]
    return "\n".join(lines)


def _rates(quick: bool) -> tuple[float, ...]:
    raw = os.environ.get("CONSENTRY_BENCH_WEB_RATES")
    if raw:
        return tuple(float(x) for x in raw.split(",") if x.strip())
    return DEFAULT_RATES[:2] if quick else DEFAULT_RATES


def run(quick: bool) -> str:
    seconds = 5.0 if quick else 60.0
    get_seconds = 5.0 if quick else 15.0
    rates = _rates(quick)
    workers = int(os.environ.get("CONSENTRY_BENCH_WEB_WORKERS", "1"))
    backends = os.environ.get("CONSENTRY_BENCH_WEB_BACKENDS", "sqlite,postgres").split(",")
    results: list[BackendResult] = []
    with tempfile.TemporaryDirectory(prefix="consentry-bench-web-") as tmp:
        root = Path(tmp)
        common: dict[str, Any] = {
            "seconds": seconds,
            "rates": rates,
            "get_seconds": get_seconds,
            "workers": workers,
        }
        if "sqlite" in backends:
            (root / "sqlite").mkdir()
            results.append(measure_backend("SQLite", root / "sqlite", database_url=None, **common))
        if "postgres" in backends:
            admin_url, how = _postgres_admin_url()
            if admin_url is None:
                results.append(BackendResult("PostgreSQL", note=f"Skipped: {how.strip()}"))
            else:
                (root / "postgres").mkdir()
                with _pg_database(admin_url) as url:
                    res = measure_backend(
                        "PostgreSQL", root / "postgres", database_url=url, **common
                    )
                    res.note = f"Server from {how}, a fresh database for the run."
                    results.append(res)
    return render(results, seconds=seconds, workers=workers)
