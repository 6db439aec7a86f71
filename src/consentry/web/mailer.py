"""The e-mail outbox worker of ``consentry serve``, in a child process of its own.

Why a process and not a thread here: rendering and sending a confirmation e-mail costs CPU
of the same order as taking the signature, and in the serving process it would share one GIL
(one core) with the event loop and the group-commit writer. In its own process it uses the
machine's other core. It stays a single process per deployment whatever ``--workers`` is, so
two senders never race for the same messages. (``create_app(outbox=True)``, used by tests and
by embedding, keeps the simpler in-process thread.)

Stopping: Ctrl-C reaches the whole process group, so the child ignores SIGINT and stops when
the parent sets the shared event — after the batch in flight, so nothing is sent twice or
left half-recorded. Messages still queued simply wait in the outbox table for the next start.
A parent that dies without setting it (``kill -9``, a crash) stops the child too
(:func:`~consentry.orphans.when_parent_ends`): an orphaned sender would otherwise run
forever, and beside the next ``consentry serve`` break the one-sender rule.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from multiprocessing.synchronize import Event as ProcessEvent

from consentry.config import ServerSettings
from consentry.orphans import when_parent_ends

__all__ = ["outbox_process"]


def _main(settings: ServerSettings, stop: ProcessEvent) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from consentry.statements.outbox import OutboxWorker
    from consentry.store.database import Database
    from consentry.web.logging import configure_logging

    configure_logging()
    local = threading.Event()

    def relay() -> None:  # OutboxWorker waits on a threading.Event; mirror the shared one
        stop.wait()
        local.set()

    threading.Thread(target=relay, name="outbox-stop", daemon=True).start()
    when_parent_ends(local.set, name="outbox-parent-watch")  # gone without telling us
    with Database(settings.registry) as db:
        OutboxWorker(db, settings).run_forever(local)


@contextlib.contextmanager
def outbox_process(settings: ServerSettings, *, timeout: float = 30.0) -> Iterator[None]:
    """Run the outbox worker in a child process for the duration of the block."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads
    stop = context.Event()
    process = context.Process(
        target=_main, args=(settings, stop), name="consentry-outbox", daemon=True
    )
    process.start()
    try:
        yield
    finally:
        stop.set()
        process.join(timeout)
        if process.is_alive():
            process.terminate()
            process.join(5)
