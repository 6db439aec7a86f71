"""The web application: ``create_app(settings)`` wires the service, pages, API and jobs.

Background work, and where it runs:

- **Count job** (thread, every ``count_interval`` s): folds new confirmations into the stored
  counts and refreshes the in-memory table ``count.json`` is served from. It runs in every
  worker process because each process serves counts from its own memory.
- **Outbox worker**: sends queued e-mail over SMTP. ``consentry serve`` runs it once per
  deployment in a child process of its own (:mod:`consentry.web.mailer` says why: rendering
  and sending cost as much CPU as signing, and a process uses the other core). With
  ``create_app(outbox=True)`` — tests, embedding — it is a thread of this process, stopped
  by a ``threading.Event`` at shutdown.
- **Dev SMTP server** (``--dev`` only): a real local SMTP server (aiosmtpd) that stores every
  message in a maildir inside the home, so signing works end to end without a mail provider.
- **Group-commit batcher** (thread): the single writer for signature submissions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from consentry import __version__
from consentry.config import ServerSettings, Settings
from consentry.errors import (
    ConflictError,
    ConsentryError,
    DatabaseLockedError,
    InvalidInputError,
    NotFoundError,
    StoreError,
)
from consentry.orphans import when_parent_ends
from consentry.statements import (
    OperatorService,
    SignRequest,
    SignResult,
    StatementService,
)
from consentry.statements.devsmtp import DevSMTPServer
from consentry.statements.outbox import OutboxWorker
from consentry.store.database import Database
from consentry.web.batcher import BatcherClosedError, GroupCommitBatcher
from consentry.web.counts import CountCache, CountJob, CountJsonFastPath
from consentry.web.middleware import RequestMiddleware
from consentry.web.ratelimit import SlidingWindowLimiter
from consentry.web.security import (
    ClientAddress,
    CsrfError,
    ForbiddenError,
    FormTokens,
    LoginRequiredError,
)

__all__ = ["Templates", "WebState", "app_from_environment", "create_app", "dev_maildir"]

_log = logging.getLogger("consentry.web")
STATIC_DIR = Path(__file__).with_name("static")


class Templates:
    """Jinja2 templates, compiled once per process (autoescaping on for every template)."""

    def __init__(self, *, reload: bool) -> None:
        self.env = Environment(
            loader=PackageLoader("consentry.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            auto_reload=reload,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(
        self,
        name: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=headers)


@dataclass
class WebState:
    """Everything a request handler needs, built once by :func:`create_app`."""

    settings: ServerSettings
    db: Database
    service: StatementService
    operators: OperatorService
    templates: Templates
    forms: FormTokens
    clients: ClientAddress
    counts: CountCache
    login_limiter: SlidingWindowLimiter
    batch_size: int = 200
    batch_wait: float = 0.005
    jobs: list[Any] = field(default_factory=list)
    # Pages that are identical for every visitor, by (slug, title): the thank-you page.
    page_cache: dict[tuple[str, str], bytes] = field(default_factory=dict)
    # The first page of each statement's signatories, rendered: (expires, html, more pages).
    fragment_cache: dict[str, tuple[float, Any, bool]] = field(default_factory=dict)
    _batcher: GroupCommitBatcher[SignRequest, SignResult] | None = None

    @property
    def batcher(self) -> GroupCommitBatcher[SignRequest, SignResult]:
        if self._batcher is None:  # only between requests of an app whose lifespan never ran
            raise BatcherClosedError("the service is not running; please try again")
        return self._batcher

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return self.clients.resolve(peer, request.headers.getlist("x-forwarded-for"))


def dev_maildir(settings: ServerSettings) -> Path:
    """Where the ``--dev`` SMTP server keeps what it receives."""
    return settings.registry.home / "dev-mail"


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path.endswith(".json")


_HEADINGS = {
    400: "This request could not be understood",
    403: "This form has expired",
    404: "Not found",
    405: "Method not allowed",
    409: "Already done",
    410: "This link has expired",
    413: "Too much data",
    422: "This request could not be understood",
    429: "Too many attempts",
    503: "Please try again in a moment",
}


def _error(request: Request, status: int, message: str, heading: str | None = None) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    web: WebState | None = getattr(request.app.state, "web", None)
    if web is None:
        return Response(message, status_code=status, media_type="text/plain")
    heading = heading or _HEADINGS.get(status, "Something went wrong")
    return web.templates.render("error.html", status=status, heading=heading, message=message)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = "There is nothing at this address."
        response = _error(request, exc.status_code, message)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it
        if _wants_json(request):
            errors = [
                {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
                for e in exc.errors()
            ]
            return JSONResponse({"detail": errors}, status_code=422)
        return _error(request, 400, "Some of the values in this request are not valid.")

    async def csrf_error(request: Request, exc: Exception) -> Response:
        return _error(
            request,
            403,
            f"The form could not be accepted ({exc}). Reload the page and try again; "
            "your browser must accept cookies from this site.",
        )

    async def consentry_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NotFoundError):
            return _error(request, 404, str(exc))
        if isinstance(exc, DatabaseLockedError | BatcherClosedError):
            response = _error(request, 503, "The service is busy; please try again.")
            response.headers["retry-after"] = "2"
            return response
        if isinstance(exc, StoreError):
            _log.error("database error: %s", exc)
            return _error(request, 503, "The service is unavailable; please try again later.")
        if isinstance(exc, ConflictError):
            return _error(request, 409, str(exc))
        if isinstance(exc, InvalidInputError):
            return _error(request, 400, str(exc))
        return _error(request, 400, str(exc))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)

    async def login_required(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/admin/login", status_code=303)

    async def forbidden(request: Request, exc: Exception) -> Response:
        return _error(request, 403, f"Not allowed: {exc}.", "Not allowed")

    app.add_exception_handler(CsrfError, csrf_error)
    app.add_exception_handler(LoginRequiredError, login_required)
    app.add_exception_handler(ForbiddenError, forbidden)
    app.add_exception_handler(ConsentryError, consentry_error)


@contextlib.contextmanager
def _background(web: WebState, *, outbox: bool, dev_smtp: bool) -> Iterator[None]:
    """Start the jobs of one process; stop them (in reverse order) when the app stops."""
    with contextlib.ExitStack() as stack:
        web.db.check_schema()  # refuse to serve an uninitialised or foreign-version registry
        if dev_smtp:
            smtp = web.settings.smtp
            server = DevSMTPServer(
                host=smtp.host, port=smtp.port, maildir=dev_maildir(web.settings)
            )
            stack.enter_context(server)
            _log.info(
                "dev SMTP server listening",
                extra={"fields": {"port": server.port, "maildir": str(dev_maildir(web.settings))}},
            )
        # Fresh per lifespan: an app may be started more than once (tests, reloads).
        batcher = GroupCommitBatcher(
            web.service.sign_many, max_batch=web.batch_size, max_wait=web.batch_wait
        )
        batcher.start()
        web._batcher = batcher
        stack.callback(batcher.close)
        web.jobs.clear()
        job = CountJob(web.service, web.counts, web.settings.count_interval)
        try:
            job.run_once()
        except ConsentryError as exc:
            _log.warning("first count refresh failed: %s", exc)
        job.start()
        stack.callback(job.stop)
        web.jobs.append(job)
        if outbox:
            stop = threading.Event()
            worker = OutboxWorker(web.db, web.settings)
            thread = threading.Thread(
                target=worker.run_forever, args=(stop,), name="outbox-worker", daemon=True
            )
            thread.start()

            def _stop_outbox() -> None:
                stop.set()
                thread.join(timeout=30)

            stack.callback(_stop_outbox)
            web.jobs.append(worker)
        yield


def create_app(
    settings: ServerSettings,
    *,
    outbox: bool = True,
    dev_smtp: bool | None = None,
    batch_size: int = 200,
    batch_wait: float = 0.005,
) -> FastAPI:
    """The ASGI application for one registry.

    ``outbox`` runs the e-mail worker in this process (``consentry serve --workers N`` runs
    it once in the parent instead); ``dev_smtp`` (default: ``settings.dev``) starts the local
    SMTP server at ``settings.smtp_url``; tests that run their own server turn it off.
    """
    db = Database(settings.registry)
    service = StatementService(db, settings)
    web = WebState(
        settings=settings,
        db=db,
        service=service,
        operators=OperatorService(db),
        templates=Templates(reload=settings.dev),
        forms=FormTokens(settings.secret_key),
        clients=ClientAddress(settings.trusted_proxies),
        counts=CountCache(),
        batch_size=batch_size,
        batch_wait=batch_wait,
        # Ten login attempts a minute per address: plenty for a person, slow for a guesser.
        login_limiter=SlidingWindowLimiter(10, 60.0),
    )
    run_dev_smtp = settings.dev if dev_smtp is None else dev_smtp

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with _background(web, outbox=outbox, dev_smtp=run_dev_smtp):
            yield
        db.close()

    app = FastAPI(
        title="Consentry",
        version=__version__,
        summary="Public statements with verified signatures (double opt-in).",
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        lifespan=lifespan,
    )
    app.state.web = web
    _install_error_handlers(app)
    # Added first, so it runs inside RequestMiddleware (logged, with the security headers).
    app.add_middleware(
        CountJsonFastPath, cache=web.counts, max_age=max(1, int(settings.count_interval))
    )
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_form_bytes, dev=settings.dev)
    # Routes are imported here so that importing this module stays cheap for the CLI.
    from consentry.web.routes import admin, api, public

    app.include_router(api.router)
    app.include_router(public.router)
    app.include_router(admin.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def app_from_environment() -> FastAPI:
    """The factory uvicorn's worker processes call (``consentry serve --workers N``).

    ``consentry serve`` passes its options through ``CONSENTRY_SERVE_*`` variables, which it
    sets itself; the settings come from the usual ``CONSENTRY_*`` variables.
    """
    from consentry.web.logging import configure_logging

    configure_logging()  # worker processes are fresh interpreters: set up their logs too
    dev = os.environ.get("CONSENTRY_SERVE_DEV") == "1"
    registry = Settings.load()
    settings = ServerSettings.load(registry, dev=dev)
    in_parent = os.environ.get("CONSENTRY_SERVE_BACKGROUND") == "parent"
    # uvicorn's workers go on serving when their supervisor is killed outright (kill -9): an
    # orphaned worker kept the port, so the next `consentry serve` could not bind it. Shut
    # down gracefully instead, as on `kill` (queued submissions are committed first).
    when_parent_ends(_terminate_self, name="serve-parent-watch")
    return create_app(settings, outbox=not in_parent, dev_smtp=dev and not in_parent)


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
