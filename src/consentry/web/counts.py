"""The public counts, served from memory.

``count.json`` is the endpoint every embedded widget and every curious visitor polls, so it
must never touch the database: a background job folds new confirmations into the stored
counts (``StatementService.refresh_counts``, one write per interval rather than one per
signature) and then replaces this in-memory table in one assignment. Readers on the event loop
see either the old table or the new one, never half of each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from consentry.statements import StatementService, StatementView

__all__ = ["CountCache", "CountEntry", "CountJob", "CountJsonFastPath"]

_log = logging.getLogger("consentry.web.counts")


@dataclass(frozen=True, slots=True)
class CountEntry:
    view: StatementView
    body: bytes  # the count.json document, encoded once per refresh
    etag: str


def _entry(view: StatementView) -> CountEntry:
    updated = view.count_updated_at.isoformat() if view.count_updated_at else None
    doc = {
        "slug": view.slug,
        "signature_count": view.signature_count,
        "goal": view.goal,
        "updated_at": updated,
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    return CountEntry(view, body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


class CountCache:
    def __init__(self) -> None:
        self._entries: dict[str, CountEntry] = {}
        self.refreshed_at: datetime | None = None

    def replace(self, views: Iterable[StatementView], at: datetime | None = None) -> None:
        self._entries = {view.slug: _entry(view) for view in views}
        self.refreshed_at = at

    def put(self, view: StatementView) -> CountEntry:
        entry = _entry(view)
        self._entries = {**self._entries, view.slug: entry}
        return entry

    def get(self, slug: str) -> CountEntry | None:
        return self._entries.get(slug)

    def views(self) -> list[StatementView]:
        return [entry.view for entry in self._entries.values()]


class CountJob:
    """Every ``interval`` seconds: fold new signatures into the counts and refresh the cache.

    Once an hour it also anonymises the signatures of statements closed longer than the
    configured period (the service decides which), so no separate cron job is needed.
    """

    def __init__(
        self,
        service: StatementService,
        cache: CountCache,
        interval: float,
        *,
        anonymise_every: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.cache = cache
        self.interval = interval
        self.anonymise_every = anonymise_every
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="count-job", daemon=True)
        self._last_anonymise = float("-inf")

    def run_once(self) -> None:
        self.service.refresh_counts()
        views = self.service.list_statements(include_drafts=False)
        self.cache.replace(views, datetime.now().astimezone())
        if self._clock() - self._last_anonymise >= self.anonymise_every:
            self._last_anonymise = self._clock()
            erased = self.service.anonymise_closed()
            if erased:
                _log.info("anonymised closed statements", extra={"fields": {"count": erased}})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception as exc:  # a locked or briefly unreachable database: try again later
                _log.warning("count refresh failed: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


class _Template:
    """What the access log reads from ``scope["route"]``: the path template."""

    path = "/statements/{slug}/count.json"


_COUNT_PATH = re.compile(r"^/statements/([^/]+)/count\.json$")


class CountJsonFastPath:
    """Serves ``count.json`` straight from :class:`CountCache`, before FastAPI's routing.

    ``count.json`` is what every widget polls, so it must cost as little as an HTTP response
    can: no routing, no dependency resolution, no validation — one dictionary look-up and a
    pre-encoded body. The FastAPI route of the same path stays: it documents the endpoint in
    the OpenAPI schema and answers what this path passes on (a statement not in the cache
    yet, an unknown slug, other methods).
    """

    def __init__(self, app: ASGIApp, cache: CountCache, max_age: int) -> None:
        self.app = app
        self.cache = cache
        self.cache_control = f"public, max-age={max_age}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            match = _COUNT_PATH.match(scope["path"])
            entry = self.cache.get(unquote(match.group(1))) if match else None
            if entry is not None:
                scope["route"] = _Template
                await self._send(scope, send, entry)
                return
        await self.app(scope, receive, send)

    async def _send(self, scope: Scope, send: Send, entry: CountEntry) -> None:
        etag = entry.etag.encode()
        fresh = any(name == b"if-none-match" and value == etag for name, value in scope["headers"])
        headers = [
            (b"cache-control", self.cache_control),
            (b"etag", etag),
            (b"access-control-allow-origin", b"*"),
        ]
        if fresh:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(entry.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else entry.body
        await send({"type": "http.response.body", "body": body})
