"""Operator pages under ``/admin``: login, statements, signatures, vetting, invalidation,
blocklist, recount, CSV export, erasure.

Every form carries the session-bound synchronizer token (:func:`admin_csrf_token`); every
state change is a POST followed by a redirect (so a reload never repeats it) and is recorded
by the service in its operator audit table under the operator's username. Roles: ``operator``
may do everything; ``vetter`` may only read statements and signatures and vet signers.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from consentry.config import RateLimits
from consentry.errors import ConfigurationError, InvalidInputError
from consentry.statements import (
    InvalidationCondition,
    Operator,
    SignatureState,
    StatementChanges,
    StatementSpec,
)
from consentry.web.app import WebState
from consentry.web.deps import Web, form_nonce, read_form
from consentry.web.security import (
    FORM_COOKIE,
    SESSION_COOKIE,
    ForbiddenError,
    LoginRequiredError,
    admin_csrf_token,
    check_admin_csrf,
    cookie_flags,
)

__all__ = ["router"]

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 100
_OPTIONAL = ("occupation", "country", "organisation")
_DONE = {
    "created": "Statement created.",
    "saved": "Changes saved.",
    "opened": "Statement opened.",
    "closed": "Statement closed.",
    "recounted": "Recounted.",
    "vetted": "Signer vetted.",
    "unvetted": "Vetting removed.",
    "invalidated": "Signatures invalidated.",
    "blocked": "Added to the blocklist.",
    "unblocked": "Removed from the blocklist.",
    "erased": "Signer's personal data erased.",
}


# -- sessions and roles ---------------------------------------------------------------------


class Admin:
    """The signed-in operator of one request and what the templates need about them."""

    def __init__(self, web: WebState, operator: Operator, session_token: str) -> None:
        self.web = web
        self.operator = operator
        self.session_token = session_token
        self.csrf = admin_csrf_token(web.settings.secret_key, session_token)

    @property
    def username(self) -> str:
        return self.operator.username

    def require(self, role: Literal["operator", "vetter"]) -> None:
        # An operator may do anything a vetter may.
        if not (self.operator.has(role) or self.operator.has("operator")):
            raise ForbiddenError(f"this needs the {role} role")

    def render(self, name: str, *, status: int = 200, **context: Any) -> Response:
        done = context.pop("done", None)
        response = self.web.templates.render(
            name,
            status=status,
            admin=self,
            csrf=self.csrf,
            flash=_DONE.get(done or ""),
            **context,
        )
        response.headers["cache-control"] = "no-store"
        return response

    async def form(self, request: Request) -> dict[str, str]:
        fields = await read_form(request, self.web)
        check_admin_csrf(self.web.settings.secret_key, self.session_token, fields.get("csrf"))
        return fields


async def _admin(request: Request, web: WebState) -> Admin:
    token = request.cookies.get(SESSION_COOKIE)
    operator = await run_in_threadpool(web.operators.session, token) if token else None
    if operator is None or token is None:
        raise LoginRequiredError()
    return Admin(web, operator, token)


def _redirect(path: str, done: str | None = None) -> RedirectResponse:
    target = f"{path}?{urlencode({'done': done})}" if done else path
    return RedirectResponse(target, status_code=303)


# -- login / logout -------------------------------------------------------------------------


def _login_page(
    web: WebState, request: Request, *, error: str = "", username: str = "", status: int = 200
) -> Response:
    issued = web.forms.issue("admin-login", form_nonce(request))
    response = web.templates.render(
        "admin/login.html", status=status, form_token=issued.token, error=error, username=username
    )
    response.headers["cache-control"] = "no-store"
    response.set_cookie(
        FORM_COOKIE, issued.nonce, max_age=24 * 3600, path="/", **cookie_flags(dev=web.settings.dev)
    )
    return response


@router.get("/login")
def login_page(request: Request, web: Web) -> Response:
    return _login_page(web, request)


@router.post("/login")
async def login(request: Request, web: Web) -> Response:
    fields = await read_form(request, web)
    web.forms.verify(fields.get("form_token", ""), "admin-login", request.cookies.get(FORM_COOKIE))
    username = fields.get("username", "").strip()[:100]
    password = fields.get("password", "")[:1000]
    if not web.login_limiter.hit(web.client_ip(request)):
        return _login_page(
            web, request, error="Too many attempts; wait a minute.", username=username, status=429
        )
    operator = await run_in_threadpool(web.operators.authenticate, username, password)
    if operator is None:
        return _login_page(
            web, request, error="Wrong username or password.", username=username, status=401
        )
    token = await run_in_threadpool(web.operators.start_session, operator)
    response = _redirect("/admin/statements")
    response.set_cookie(SESSION_COOKIE, token, path="/admin", **cookie_flags(dev=web.settings.dev))
    return response


@router.post("/logout")
async def logout(request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    await admin.form(request)
    await run_in_threadpool(web.operators.end_session, admin.session_token)
    response = _redirect("/admin/login")
    response.delete_cookie(SESSION_COOKIE, path="/admin", **cookie_flags(dev=web.settings.dev))
    return response


@router.get("")
async def admin_home(request: Request, web: Web) -> Response:
    await _admin(request, web)
    return _redirect("/admin/statements")


# -- statements -----------------------------------------------------------------------------


def _parse_time(raw: str, name: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInputError(f"{name}: not a date and time ({raw!r})") from None
    # datetime-local inputs carry no zone: the admin pages work in UTC (and say so).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _parse_goal(raw: str) -> int | None:
    raw = raw.strip().replace(",", "").replace("_", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidInputError(f"goal: a positive whole number, not {raw[:20]!r}")
    return int(raw)


def _parse_limits(fields: dict[str, str]) -> RateLimits | None:
    given = {
        name: fields.get(f"rate_{name}", "").strip()
        for name, _ in RateLimits().items()
        if fields.get(f"rate_{name}", "").strip()
    }
    if not given:
        return None
    try:
        return RateLimits.from_json(given)
    except ConfigurationError as exc:
        raise InvalidInputError(str(exc)) from None


def _spec_fields(fields: dict[str, str]) -> dict[str, Any]:
    languages = tuple(
        part.strip() for part in fields.get("languages", "").split(",") if part.strip()
    )
    return {
        "title": fields.get("title", "").strip(),
        "text": fields.get("text", "").strip(),
        "languages": languages or ("en",),
        "opens_at": _parse_time(fields.get("opens_at", ""), "opens at"),
        "closes_at": _parse_time(fields.get("closes_at", ""), "closes at"),
        "goal": _parse_goal(fields.get("goal", "")),
        "required_fields": tuple(f for f in _OPTIONAL if fields.get(f"require_{f}")),
        "rate_limits": _parse_limits(fields),
    }


def _local(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if value else ""


@router.get("/statements")
async def statements(
    request: Request, web: Web, done: Annotated[str | None, Query(max_length=40)] = None
) -> Response:
    admin = await _admin(request, web)
    admin.require("vetter")
    views = await run_in_threadpool(web.service.list_statements, include_drafts=True)
    return admin.render("admin/statements.html", statements=views, done=done)


@router.get("/statements/new")
async def new_statement(request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    return admin.render(
        "admin/statement_form.html", s=None, values={}, error="", optional=_OPTIONAL, local=_local
    )


@router.post("/statements")
async def create_statement(request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    fields = await admin.form(request)
    slug = fields.get("slug", "").strip()
    try:
        spec = StatementSpec(slug=slug, **_spec_fields(fields))
        await run_in_threadpool(web.service.create_statement, spec, by=admin.username)
    except InvalidInputError as exc:
        return admin.render(
            "admin/statement_form.html",
            status=400,
            s=None,
            values=fields,
            error=str(exc),
            optional=_OPTIONAL,
            local=_local,
        )
    return _redirect(f"/admin/statements/{quote(slug)}", "created")


@router.get("/statements/{slug}")
async def statement(
    slug: str,
    request: Request,
    web: Web,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    admin = await _admin(request, web)
    admin.require("vetter")
    view = await run_in_threadpool(web.service.statement, slug)
    return admin.render(
        "admin/statement_form.html",
        s=view,
        values={},
        error="",
        optional=_OPTIONAL,
        local=_local,
        done=done,
    )


@router.post("/statements/{slug}")
async def update_statement(slug: str, request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    fields = await admin.form(request)
    view = await run_in_threadpool(web.service.statement, slug)
    try:
        parsed = _spec_fields(fields)
        clear = frozenset(
            name
            for name in ("opens_at", "closes_at", "goal", "rate_limits")
            if parsed[name] is None
        )
        frozen = view.state != "draft"  # the text signers signed cannot change
        changes = StatementChanges(
            title=None if frozen else parsed["title"],
            text=None if frozen else parsed["text"],
            languages=parsed["languages"],
            opens_at=parsed["opens_at"],
            closes_at=parsed["closes_at"],
            goal=parsed["goal"],
            required_fields=parsed["required_fields"],
            rate_limits=parsed["rate_limits"],
            clear=clear,
        )
        updated = await run_in_threadpool(
            web.service.update_statement, slug, changes, by=admin.username
        )
    except InvalidInputError as exc:
        return admin.render(
            "admin/statement_form.html",
            status=400,
            s=view,
            values=fields,
            error=str(exc),
            optional=_OPTIONAL,
            local=_local,
        )
    if updated.state != "draft":
        web.counts.put(updated)  # this process's public pages show the change at once
    return _redirect(f"/admin/statements/{quote(slug)}", "saved")


@router.get("/statements/{slug}/export.csv")
async def export_csv(slug: str, request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    buffer = io.StringIO()
    await run_in_threadpool(web.service.export_csv, slug, buffer)
    filename = "".join(c for c in slug if c.isalnum() or c in "-_") or "statement"
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{filename}-signatures.csv"',
            "cache-control": "no-store",
        },
    )


# -- signatures and vetting -----------------------------------------------------------------


@router.get("/statements/{slug}/signatures")
async def signatures(
    slug: str,
    request: Request,
    web: Web,
    state: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    admin = await _admin(request, web)
    admin.require("vetter")
    try:
        wanted = SignatureState(state) if state else None
    except ValueError:
        raise InvalidInputError(f"unknown signature state {state[:20]!r}") from None
    view = await run_in_threadpool(web.service.statement, slug)
    rows = await run_in_threadpool(
        lambda: web.service.signatures(
            slug, state=wanted, limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE
        )
    )
    return admin.render(
        "admin/signatures.html",
        s=view,
        rows=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        page=page,
        state=state,
        states=[s.value for s in SignatureState],
        done=done,
    )


@router.post("/signatures/{signature_id}/vet")
async def vet(signature_id: int, request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("vetter")
    fields = await admin.form(request)
    kind = fields.get("kind", "")
    if kind not in ("notable", "organisation"):
        raise InvalidInputError("kind must be notable or organisation")
    method = fields.get("method", "").strip()[:200]
    if not method:
        raise InvalidInputError("say how the signer was vetted (e.g. 'e-mail from agent')")
    note = fields.get("note", "").strip()[:1000]
    await run_in_threadpool(
        lambda: web.service.vet(
            signature_id,
            kind,  # type: ignore[arg-type]  # checked above
            by=admin.username,
            method=method,
            note=note,
        )
    )
    web.fragment_cache.clear()  # the public list shows the change at once
    return _redirect(_back(fields), "vetted")


@router.post("/signatures/{signature_id}/unvet")
async def unvet(signature_id: int, request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("vetter")
    fields = await admin.form(request)
    await run_in_threadpool(lambda: web.service.unvet(signature_id, by=admin.username))
    web.fragment_cache.clear()
    return _redirect(_back(fields), "unvetted")


def _back(fields: dict[str, str]) -> str:
    # Only our own admin paths: a posted "back" must not become an open redirect.
    back = fields.get("back", "")
    if back.startswith("/admin/") and "//" not in back and "\\" not in back:
        return back.split("?", 1)[0]
    return "/admin/statements"


# -- bulk invalidation ----------------------------------------------------------------------


def _condition(fields: dict[str, str]) -> InvalidationCondition:
    state = fields.get("state", "").strip()
    try:
        wanted = SignatureState(state) if state else None
    except ValueError:
        raise InvalidInputError(f"unknown signature state {state[:20]!r}") from None
    return InvalidationCondition(
        ip=fields.get("ip", "").strip() or None,
        email_domain=fields.get("email_domain", "").strip().lower() or None,
        created_from=_parse_time(fields.get("created_from", ""), "created from"),
        created_to=_parse_time(fields.get("created_to", ""), "created to"),
        user_agent_contains=fields.get("user_agent_contains", "").strip() or None,
        state=wanted,
    )


_CONDITION_FIELDS = (
    "ip",
    "email_domain",
    "created_from",
    "created_to",
    "user_agent_contains",
    "state",
)


@router.get("/statements/{slug}/invalidate")
async def invalidate_page(slug: str, request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    view = await run_in_threadpool(web.service.statement, slug)
    return admin.render(
        "admin/invalidate.html",
        s=view,
        values={},
        count=None,
        error="",
        states=["pending", "validated"],
    )


@router.post("/statements/{slug}/invalidate")
async def invalidate(slug: str, request: Request, web: Web) -> Response:
    """Two steps: ``dry-run`` shows how many signatures match; ``confirm`` invalidates them."""
    admin = await _admin(request, web)
    admin.require("operator")
    fields = await admin.form(request)
    view = await run_in_threadpool(web.service.statement, slug)
    values = {name: fields.get(name, "") for name in _CONDITION_FIELDS}
    confirm = fields.get("step") == "confirm"
    try:
        condition = _condition(fields)
        count = await run_in_threadpool(
            lambda: web.service.invalidate(slug, condition, by=admin.username, dry_run=not confirm)
        )
    except InvalidInputError as exc:
        return admin.render(
            "admin/invalidate.html",
            status=400,
            s=view,
            values=values,
            count=None,
            error=str(exc),
            states=["pending", "validated"],
        )
    if confirm:
        web.fragment_cache.clear()
        return _redirect(f"/admin/statements/{quote(slug)}/signatures", "invalidated")
    return admin.render(
        "admin/invalidate.html",
        s=view,
        values=values,
        count=count,
        error="",
        states=["pending", "validated"],
    )


# -- blocklist and erasure ------------------------------------------------------------------


def _blocklist(web: WebState) -> list[tuple[str, str, str, str]]:
    return web.service.blocklist()


@router.get("/blocklist")
async def blocklist_page(
    request: Request, web: Web, done: Annotated[str | None, Query(max_length=40)] = None
) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    entries = await run_in_threadpool(_blocklist, web)
    return admin.render("admin/blocklist.html", entries=entries, error="", done=done)


@router.post("/blocklist")
async def block(request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    fields = await admin.form(request)
    kind = fields.get("kind", "")
    value = fields.get("value", "").strip()
    remove = fields.get("remove") == "1"
    try:
        if kind not in ("ip", "domain"):
            raise InvalidInputError("kind must be ip or domain")
        if remove:
            await run_in_threadpool(
                lambda: web.service.unblock(kind, value, by=admin.username)  # type: ignore[arg-type]
            )
        else:
            note = fields.get("note", "").strip()[:500]
            await run_in_threadpool(
                lambda: web.service.block(kind, value, by=admin.username, note=note)  # type: ignore[arg-type]
            )
    except InvalidInputError as exc:
        entries = await run_in_threadpool(_blocklist, web)
        return admin.render("admin/blocklist.html", status=400, entries=entries, error=str(exc))
    return _redirect("/admin/blocklist", "unblocked" if remove else "blocked")


@router.post("/erase")
async def erase(request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    fields = await admin.form(request)
    email = fields.get("email", "").strip()
    if not email:
        raise InvalidInputError("give the e-mail address of the signer to erase")
    await run_in_threadpool(lambda: web.service.erase_signer(email, by=admin.username))
    web.fragment_cache.clear()
    return _redirect("/admin/blocklist", "erased")


# Registered last: its {action} segment would otherwise shadow the routes above.
@router.post("/statements/{slug}/{action}")
async def statement_action(slug: str, action: str, request: Request, web: Web) -> Response:
    admin = await _admin(request, web)
    admin.require("operator")
    await admin.form(request)
    if action == "open":
        await run_in_threadpool(web.service.open_statement, slug, by=admin.username)
        done = "opened"
    elif action == "close":
        await run_in_threadpool(web.service.close_statement, slug, by=admin.username)
        done = "closed"
    elif action == "recount":
        await run_in_threadpool(lambda: web.service.recount(slug, by=admin.username))
        done = "recounted"
    else:
        return web.templates.render(
            "error.html", status=404, heading="Not found", message="No such action."
        )
    # Refresh this process's public counts and list now rather than at the next tick.
    web.fragment_cache.clear()
    view = await run_in_threadpool(web.service.statement, slug)
    if view.state != "draft":
        web.counts.put(view)
    return _redirect(f"/admin/statements/{quote(slug)}", done)
