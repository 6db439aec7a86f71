"""The web benchmark's load generator: open-loop form posts over persistent HTTP/1.1.

Run in a process of its own (``python -m bench.web_load CONFIG.json RESULT.json``) so that its
CPU is measured apart from the server's and its event loop never shares a GIL with it.

Why a small HTTP/1.1 client of our own instead of httpx: at several hundred requests per
second on a 2-core machine shared with the server under test, the generator's own CPU decides
whether we measure the server or the client. Writing a request is one ``bytes`` join and
reading a response is one ``readuntil`` plus one ``readexactly``; httpx spends several times
that per request in its layers. The generator reports its own CPU share so a saturated
generator cannot pass unnoticed.

Open loop: request *i* is due at ``start + i / rate`` whatever happened to the earlier ones.
A due request waits in a queue for a free connection if all are busy, and its latency is
measured from the time it was *due*, not from when it was sent, so a server that stalls is
charged for the whole stall (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

_FORM_TOKEN = re.compile(rb'name="form_token" value="([^"]+)"')
_COOKIE = "consentry_form"


class HttpError(Exception):
    """The server closed the connection or answered with something that is not HTTP/1.1."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One persistent HTTP/1.1 connection (Content-Length or chunked responses)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        reader, writer = await self._open()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.close()
            raise HttpError(f"connection closed before a response: {exc}") from None
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        if not status_line.startswith("HTTP/1.1 "):
            self.close()
            raise HttpError(f"not an HTTP/1.1 response: {status_line[:40]!r}")
        status = int(status_line[9:12])
        parsed: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            # Set-Cookie may repeat; the benchmark needs only ours, so keep every value.
            parsed[key] = f"{parsed[key]}\n{value.strip()}" if key in parsed else value.strip()
        if "content-length" in parsed:
            payload = await reader.readexactly(int(parsed["content-length"]))
        elif parsed.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            payload = b"".join(chunks)
        else:
            payload = b""
        if parsed.get("connection", "").lower() == "close":
            self.close()
        return Response(status, parsed, payload)


def cookie_value(set_cookie: str, name: str) -> str | None:
    # The server marks the cookie Secure (production mode): a browser would not send it over
    # plain-HTTP loopback, so we read it here and send it back ourselves, as the TLS proxy in
    # front of a real deployment would let a browser do.
    for line in set_cookie.split("\n"):
        first = line.split(";", 1)[0]
        key, _, value = first.partition("=")
        if key.strip() == name:
            return value.strip()
    return None


async def fetch_tokens(
    host: str, port: int, slug: str, count: int, concurrency: int = 8
) -> list[tuple[str, str]]:
    """``count`` (form_token, cookie nonce) pairs, each from its own statement page view."""
    tokens: list[tuple[str, str]] = []

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while len(tokens) < count:
                response = await conn.request("GET", f"/statements/{slug}")
                match = _FORM_TOKEN.search(response.body)
                nonce = cookie_value(response.headers.get("set-cookie", ""), _COOKIE)
                if response.status != 200 or match is None or nonce is None:
                    raise HttpError(f"statement page {slug}: status {response.status}, no form")
                tokens.append((match.group(1).decode(), nonce))
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens[:count]


def signer(run: int, i: int) -> tuple[str, str]:
    """The e-mail and client address of submission ``i`` of run ``run``: all distinct.

    Two in three signers use webmail (exempt from the per-domain limits, as in real life); the
    rest are spread over 500 organisation domains per run, well under the per-domain limits.
    Every submission comes from its own address (a crowd, not a bot), which the server
    believes because the generator connects from a trusted proxy (127.0.0.1).
    """
    if i % 3:
        email = f"signer-{run}-{i}@{('gmail.com', 'outlook.com')[i % 2]}"
    else:
        email = f"signer-{run}-{i}@org{i % 500}-r{run}.example.net"
    # 10.0.0.0/8 split into 64 runs of 262,144 addresses each.
    return email, str(ipaddress.IPv4Address((10 << 24) + ((run % 64) << 18) + (i % (1 << 18))))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def sign_load(config: dict[str, Any]) -> dict[str, Any]:
    """Post ``rate`` submissions a second for ``seconds``; see the module docstring."""
    host, port, slug = config["host"], int(config["port"]), config["slug"]
    rate, seconds, run = float(config["rate"]), float(config["seconds"]), int(config["run"])
    tokens: list[tuple[str, str]] = [tuple(t) for t in config["tokens"]]  # type: ignore[misc]
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    accepted: list[str] = []
    path = f"/statements/{slug}/sign"

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while (job := await queue.get()) is not None:
                i, due = job
                email, ip = signer(run, i)
                token, nonce = tokens[i % len(tokens)]
                body = urlencode(
                    {
                        "form_token": token,
                        "name": f"Signer {run}-{i}",
                        "email": email,
                        "occupation": "writer",
                        "country": "",
                        "organisation": "",
                        "website": "",  # the honeypot, left empty as a person would
                        "show_name": "1",
                    }
                ).encode()
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": f"{_COOKIE}={nonce}",
                    "X-Forwarded-For": ip,
                    "User-Agent": "consentry-bench/1",
                }
                try:
                    response = await conn.request("POST", path, headers, body)
                except (HttpError, OSError, asyncio.IncompleteReadError) as exc:
                    statuses[f"error:{type(exc).__name__}"] += 1
                    conn.close()
                    continue
                latencies.append(time.perf_counter() - due)
                statuses[str(response.status)] += 1
                if 200 <= response.status < 300:
                    accepted.append(email)
        finally:
            conn.close()

    connections = int(config.get("connections", 128))
    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    sent_by = time.perf_counter()
    for _ in workers:
        queue.put_nowait(None)
    # Whatever has not answered within the grace period is reported as unanswered.
    _done, pending = await asyncio.wait(workers, timeout=float(config.get("grace", 60)))
    for task in pending:
        task.cancel()
    finished = time.perf_counter()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    answered = sum(statuses.values())
    if answered < total:
        statuses["unanswered"] += total - answered
    latencies.sort()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ok = len(accepted)
    return {
        "offered_rate": rate,
        "seconds": seconds,
        "offered": total,
        "dispatch_lag_s": sent_by - (start + (total - 1) / rate) if total else 0.0,
        "wall_s": finished - start,
        "achieved_rate": ok / (finished - start) if finished > start else 0.0,
        "accepted": ok,
        "statuses": dict(statuses),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
        "generator_cpu": cpu / (finished - start) if finished > start else 0.0,
        "accepted_emails": accepted,
    }


async def closed_loop(
    host: str, port: int, path: str, connections: int, seconds: float
) -> dict[str, Any]:
    """GET ``path`` as fast as ``connections`` keep-alive connections allow (wrk's method)."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    response = await conn.request("GET", path)
                except (HttpError, OSError, asyncio.IncompleteReadError) as exc:
                    statuses[f"error:{type(exc).__name__}"] += 1
                    conn.close()
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[str(response.status)] += 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    wall = time.perf_counter() - start
    latencies.sort()
    ok = sum(n for status, n in statuses.items() if status.startswith(("2", "3")))
    return {
        "rate": ok / wall,
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    if config["mode"] == "sign":
        result = asyncio.run(sign_load(config))
    elif config["mode"] == "tokens":
        pairs = asyncio.run(
            fetch_tokens(config["host"], int(config["port"]), config["slug"], int(config["count"]))
        )
        result = {"tokens": pairs}
    else:
        result = asyncio.run(
            closed_loop(
                config["host"],
                int(config["port"]),
                config["path"],
                int(config["connections"]),
                float(config["seconds"]),
            )
        )
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
