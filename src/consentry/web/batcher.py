"""Group commit for signature submissions.

Each sign POST puts its request on a queue and waits. One writer thread takes what has queued
up (up to ``max_batch`` requests, waiting at most ``max_wait`` seconds for more once the first
has arrived), hands the whole batch to ``StatementService.sign_many`` — one write transaction,
one fsync — and gives every waiting request its own result. A response is sent only after the
commit, so an accepted submission is durable when the signer sees the thank-you page.

Why a thread and not the event loop: ``sign_many`` is blocking database work; running it in
one dedicated thread keeps the loop free for other requests and makes the single-writer rule
of SQLite explicit instead of a lock fight between executor threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from consentry.errors import ConsentryError

__all__ = ["BatcherClosedError", "GroupCommitBatcher"]

Req = TypeVar("Req")
Res = TypeVar("Res")
_log = logging.getLogger("consentry.web.batcher")


class BatcherClosedError(ConsentryError):
    """The service is shutting down and accepts no more submissions."""


class GroupCommitBatcher(Generic[Req, Res]):
    def __init__(
        self,
        commit: Callable[[Sequence[Req]], list[Res]],
        *,
        max_batch: int = 200,
        max_wait: float = 0.005,
        name: str = "sign-batcher",
    ) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.SimpleQueue[tuple[Req, concurrent.futures.Future[Res]] | None] = (
            queue.SimpleQueue()
        )
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.batches = 0  # statistics for tests and the benchmark
        self.largest_batch = 0

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking requests, finish every queued one, then stop the thread."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit_nowait(self, request: Req) -> concurrent.futures.Future[Res]:
        if self._closed.is_set():
            raise BatcherClosedError("the service is shutting down; please try again")
        future: concurrent.futures.Future[Res] = concurrent.futures.Future()
        self._queue.put((request, future))
        return future

    async def submit(self, request: Req) -> Res:
        """Queue one request and wait (without blocking the loop) for its committed result."""
        return await asyncio.wrap_future(self.submit_nowait(request))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                stopping = True
                batch = []
            else:
                batch = [first]
            deadline = time.monotonic() + self.max_wait
            # Drain whatever is already waiting, then wait a little for stragglers; under load
            # the queue is never empty and batches fill without any waiting at all.
            while len(batch) < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get_nowait()
                        if timeout <= 0
                        else self._queue.get(timeout=timeout)
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    continue
                batch.append(item)
            if stopping:
                while True:  # a closing batcher still finishes what was queued before close
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        batch.append(item)
            for start in range(0, len(batch), self.max_batch):
                self._flush(batch[start : start + self.max_batch])

    def _flush(self, batch: list[tuple[Req, concurrent.futures.Future[Res]]]) -> None:
        if not batch:
            return
        live = [(req, fut) for req, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self._commit([req for req, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"sign_many returned {len(results)} results for {len(live)}")
        except BaseException as exc:  # every waiter learns of the failure; nothing hangs
            _log.warning("batch of %d failed: %s", len(live), type(exc).__name__)
            for _, fut in live:
                fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(live))
        for (_, fut), result in zip(live, results, strict=True):
            fut.set_result(result)
