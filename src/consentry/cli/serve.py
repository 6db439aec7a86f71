"""``consentry serve``: the web service (statements, signing, admin pages, JSON API).

With ``--workers N`` uvicorn runs N worker processes. The e-mail outbox worker (a child
process, see :mod:`consentry.web.mailer`) and the ``--dev`` SMTP server run once, started here,
not once per worker (two senders would race for the same messages; two dev servers for one
port).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
from collections.abc import Iterator

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.output import Out, json_option
from consentry.config import ServerSettings
from consentry.errors import ConfigurationError

__all__ = ["serve"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _background(settings: ServerSettings) -> Iterator[None]:
    """The one-per-deployment jobs: the outbox worker (a child process) and the dev SMTP server."""
    from consentry.statements.devsmtp import DevSMTPServer
    from consentry.web.app import dev_maildir
    from consentry.web.mailer import outbox_process

    with contextlib.ExitStack() as stack:
        if settings.dev:
            smtp = settings.smtp
            stack.enter_context(
                DevSMTPServer(host=smtp.host, port=smtp.port, maildir=dev_maildir(settings))
            )
        stack.enter_context(outbox_process(settings))
        yield


class _Terminated(Exception):
    """SIGTERM arrived: leave through every ``finally``, then die by the signal."""


@contextlib.contextmanager
def _terminated_by_sigterm() -> Iterator[None]:
    """Stop the background jobs on SIGTERM (``kill``, ``docker stop``, systemd) as on Ctrl-C.

    uvicorn shuts down gracefully on SIGTERM, then restores the handler it found and raises
    the signal again. With the default handler that killed the process on the spot: the
    outbox child was never told to stop. Here the handler it finds raises, the ``with``
    blocks unwind (the child is stopped and joined), and only then does the process die by
    SIGTERM — what a supervisor that sent it expects to see.
    """

    def raise_terminated(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        raise  # not reached: the process has ended
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.option(
    "--dev",
    is_flag=True,
    help="Development mode: generated secret key, local SMTP sink (maildir in the home), "
    "cookies without Secure; loopback only.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (e.g. one per core).",
)
@json_option
@pass_app
def serve(app: AppContext, host: str, port: int, dev: bool, workers: int, as_json: bool) -> None:
    """Run the web service: public statements, signing, admin pages and the JSON API.

    Outside --dev it refuses to start without CONSENTRY_SECRET_KEY (32+ characters),
    CONSENTRY_SMTP_URL, CONSENTRY_MAIL_FROM and an https CONSENTRY_BASE_URL. Put it behind a
    reverse proxy that terminates TLS and list the proxy in CONSENTRY_TRUSTED_PROXIES.
    """
    import uvicorn

    from consentry.web.app import create_app, dev_maildir
    from consentry.web.logging import configure_logging

    if dev and not _loopback(host):
        raise ConfigurationError(
            f"--dev serves on loopback only (got --host {host}): its secret key and cookies "
            "are not fit for a network"
        )
    settings = ServerSettings.load(app.settings, dev=dev)
    app.database()  # refuses an uninitialised or foreign-version registry before binding
    out = Out(as_json)
    url = f"http://{host}:{port}"
    info = {
        "url": url,
        "admin": f"{url}/admin/login",
        "api": f"{url}/api/v1/docs",
        "base_url": settings.base_url,
        "dev": dev,
        "workers": workers,
        "dev_maildir": str(dev_maildir(settings)) if dev else None,
    }
    human = f"serving {url} (admin {url}/admin/login, API {url}/api/v1/docs)"
    if dev:
        human += f"; dev mail in {dev_maildir(settings)}"
    out.emit(info, human)
    configure_logging()
    common = {
        "host": host,
        "port": port,
        "access_log": False,  # ours logs path templates; uvicorn's would log secret tokens
        "log_config": None,
        # X-Forwarded-For is read by the app, and believed only from CONSENTRY_TRUSTED_PROXIES.
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        with _terminated_by_sigterm(), _background(settings):
            application = create_app(settings, outbox=False, dev_smtp=False)
            uvicorn.run(application, **common)  # type: ignore[arg-type]
        return
    os.environ["CONSENTRY_HOME"] = str(app.settings.home)
    os.environ["CONSENTRY_SERVE_DEV"] = "1" if dev else "0"
    os.environ["CONSENTRY_SERVE_BACKGROUND"] = "parent"
    with _terminated_by_sigterm(), _background(settings):
        uvicorn.run(
            "consentry.web.app:app_from_environment",
            factory=True,
            workers=workers,
            **common,  # type: ignore[arg-type]
        )
