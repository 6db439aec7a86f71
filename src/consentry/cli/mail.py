"""``consentry mail …``: the outbox worker that sends e-mail, and a local SMTP sink for --dev.

The worker needs the same ``CONSENTRY_SECRET_KEY`` as the server (links are derived from
it), an SMTP URL and a From address; with ``--dev`` it uses the development secret kept in
the home and the local sink (``consentry mail dev-server``).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.output import Out, json_option
from consentry.config import ServerSettings
from consentry.statements import DevSMTPServer, OutboxWorker

__all__ = ["mail"]


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM: the loop finishes its round and exits cleanly."""
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@click.group()
def mail() -> None:
    """Send the queued e-mail (the outbox worker) and run a local SMTP sink for development."""


@mail.command("worker")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--dev", is_flag=True, help="Development settings: dev secret, local SMTP sink.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Messages per SMTP connection.")  # fmt: skip
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds to wait when nothing is due.")  # fmt: skip
@json_option
@pass_app
def mail_worker(
    app: AppContext, once: bool, dev: bool, limit: int, interval: float, as_json: bool
) -> None:
    """Send due e-mail from the outbox over SMTP, retrying with backoff (until stopped)."""
    settings = ServerSettings.load(app.settings, dev=dev)
    worker = OutboxWorker(app.database(), settings)
    out = Out(as_json)
    if once:
        sent = 0
        while True:  # everything due now, one connection per batch of `limit`
            batch = worker.run_once(limit)
            sent += batch
            if batch < limit:
                break
        out.emit({"sent": sent, "outbox": worker.counts()}, f"sent {sent} messages")
        return
    stop = _stop_on_signals()
    out.note(f"mail worker: sending via {settings.smtp.host}:{settings.smtp.port}; Ctrl-C stops")
    worker.run_forever(stop, interval=interval, limit=limit)
    out.emit({"stopped": True, "outbox": worker.counts()}, "mail worker stopped")


@mail.command("status")
@json_option
@pass_app
def mail_status(app: AppContext, as_json: bool) -> None:
    """Count the outbox's messages by state (queued, sent, bounced, failed, cancelled)."""
    settings = ServerSettings.load(app.settings, dev=False, check=False)
    counts = OutboxWorker(app.database(), settings).counts()
    Out(as_json).emit(
        counts, "\n".join(f"{k}\t{v}" for k, v in sorted(counts.items())) or "the outbox is empty"
    )


@mail.command("dev-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8025, show_default=True,
              help="Port to listen on (0: any free port).")  # fmt: skip
@click.option("--maildir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where messages are stored (default: <home>/dev-mail).")  # fmt: skip
@json_option
@pass_app
def mail_dev_server(
    app: AppContext, host: str, port: int, maildir: Path | None, as_json: bool
) -> None:
    """Run a local SMTP server that keeps every message in a maildir (until stopped)."""
    folder = maildir or app.settings.home / "dev-mail"
    stop = _stop_on_signals()
    with DevSMTPServer(host=host, port=port, maildir=folder) as server:
        Out(as_json).emit(
            {"url": server.url, "maildir": str(folder)},
            f"SMTP sink at {server.url}, storing into {folder}; Ctrl-C stops",
        )
        stop.wait()
