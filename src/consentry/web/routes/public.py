"""Public pages: statements, the sign form, confirmation and withdrawal, the widget.

Pages work without JavaScript. What the signer sees never depends on what the service decided
about them: a new signature, a duplicate and a suppressed one (honeypot, too fast, blocklisted,
rate-limited) all get the same thank-you page, so a bot or a curious person learns nothing.
"""

from __future__ import annotations

import html
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from consentry.errors import NotFoundError
from consentry.statements import (
    SignOutcome,
    SignRequest,
    StatementState,
    StatementView,
    TokenError,
    TokenInfo,
)
from consentry.web.deps import Web, form_nonce, read_form
from consentry.web.security import FORM_COOKIE, cookie_flags, token_scope

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
OPTIONAL_FIELDS = ("occupation", "country", "organisation")
# Cap what we pass on; the service has its own (smaller) limits and reports them as errors.
_FIELD_CAP = 1000


def widget_snippet(base_url: str, slug: str) -> str:
    src = html.escape(f"{base_url}/statements/{slug}/widget", quote=True)
    return (
        f'<iframe src="{src}" title="Signatures" width="360" height="64" '
        'style="border:0" loading="lazy"></iframe>'
    )


async def public_statement(web: Web, slug: str) -> StatementView:
    """A published statement, from the count cache when possible; drafts do not exist here."""
    entry = web.counts.get(slug)
    view = entry.view if entry else await run_in_threadpool(web.service.statement, slug)
    if view.state == StatementState.DRAFT:
        raise NotFoundError(f"no statement {slug!r}")
    return view


def _with_form_cookie(web: Web, response: Response, nonce: str) -> Response:
    response.set_cookie(
        FORM_COOKIE, nonce, max_age=24 * 3600, path="/", **cookie_flags(dev=web.settings.dev)
    )
    return response


def _statement_page(
    web: Web,
    request: Request,
    view: StatementView,
    *,
    page: int = 0,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    issued = web.forms.issue("sign:" + view.slug, form_nonce(request))
    signers_html, more = _signers_fragment(web, view.slug, page)
    values = {"name": "", "email": "", "show_name": "1", **(values or {})}
    errors = errors or {}
    known = {"name", "email", *OPTIONAL_FIELDS}
    response = web.templates.render(
        "statement.html",
        status=status,
        s=view,
        signers_html=signers_html,
        more=more,
        page=page,
        form_token=issued.token,
        values=values,
        errors=errors,
        general_errors=[msg for key, msg in errors.items() if key not in known],
        optional_fields=OPTIONAL_FIELDS,
        snippet=widget_snippet(web.settings.base_url, view.slug),
    )
    return _with_form_cookie(web, response, issued.nonce)


def _signers_fragment(web: Web, slug: str, page: int) -> tuple[Markup, bool]:
    """The rendered list of signatories, and whether there are more pages.

    The first page is what almost every visitor sees; it changes only when the count job
    folds in new confirmations, so it is kept for one count interval instead of being read
    and rendered for each of the thousands of page views a busy statement gets.
    """
    now = time.monotonic()
    cached = web.fragment_cache.get(slug) if page == 0 else None
    if cached is not None and cached[0] > now:
        return cached[1], cached[2]
    signers = web.service.public_signers(slug, limit=PAGE_SIZE + 1, offset=page * PAGE_SIZE)
    html = web.templates.env.get_template("_signers.html").render(signers=signers[:PAGE_SIZE])
    fragment, more = Markup(html), len(signers) > PAGE_SIZE  # noqa: S704 - autoescaped render
    if page == 0:
        web.fragment_cache[slug] = (now + web.settings.count_interval, fragment, more)
    return fragment, more


def _published_view(web: Web, slug: str) -> StatementView:
    """Like :func:`public_statement`, for code already running in a worker thread."""
    entry = web.counts.get(slug)
    view = entry.view if entry else web.service.statement(slug)
    if view.state == StatementState.DRAFT:
        raise NotFoundError(f"no statement {slug!r}")
    return view


@router.get("/")
def index(web: Web) -> Response:
    statements = [
        s for s in web.service.list_statements(include_drafts=False) if s.state != "draft"
    ]
    return web.templates.render("index.html", statements=statements)


@router.get("/statements/{slug}")
def statement_page(
    slug: str, request: Request, web: Web, page: Annotated[int, Query(ge=0, le=100_000)] = 0
) -> Response:
    return _statement_page(web, request, _published_view(web, slug), page=page)


@router.post("/statements/{slug}/sign")
async def sign(slug: str, request: Request, web: Web) -> Response:
    form = await read_form(request, web)
    age = web.forms.verify(
        form.get("form_token", ""), "sign:" + slug, request.cookies.get(FORM_COOKIE)
    )
    view = await public_statement(web, slug)

    def text(name: str) -> str:
        return form.get(name, "").strip()[:_FIELD_CAP]

    sign_request = SignRequest(
        slug=slug,
        name=text("name"),
        email=text("email"),
        show_name=form.get("show_name", "") in ("1", "on", "yes", "true"),
        occupation=text("occupation") or None,
        country=text("country") or None,
        organisation=text("organisation") or None,
        ip=web.client_ip(request),
        user_agent=request.headers.get("user-agent", "")[:500],
        honeypot=form.get("website", "")[:_FIELD_CAP],
        form_age_seconds=age,
    )
    result = await web.batcher.submit(sign_request)
    if result.outcome == SignOutcome.INVALID:
        values = {k: text(k) for k in ("name", "email", *OPTIONAL_FIELDS)}
        values["show_name"] = "1" if sign_request.show_name else ""
        return await run_in_threadpool(
            _statement_page, web, request, view, values=values, errors=result.errors, status=400
        )
    return HTMLResponse(_thanks(web, view))


def _thanks(web: Web, view: StatementView) -> bytes:
    """The thank-you page, rendered once per statement title: it is the same for everyone
    (that is the point), so the busiest POST of the service need not render it each time."""
    key = (view.slug, view.title)
    page = web.page_cache.get(key)
    if page is None:
        ttl_hours = int(web.settings.confirm_ttl.total_seconds() // 3600)
        html = web.templates.env.get_template("thanks.html").render(s=view, ttl_hours=ttl_hours)
        page = web.page_cache[key] = html.encode()
    return page


@router.get("/statements/{slug}/widget")
async def widget(slug: str, web: Web) -> Response:
    """The embeddable count: loaded by every page that embeds it, so rendered once per count."""
    view = await public_statement(web, slug)
    max_age = max(1, int(web.settings.count_interval))
    key = (f"widget:{view.slug}:{view.signature_count}:{view.state}", view.title)
    page = web.page_cache.get(key)
    if page is None:
        stale = [k for k in web.page_cache if k[0].startswith(f"widget:{view.slug}:")]
        for old_key in stale:  # one rendered widget per statement is kept
            web.page_cache.pop(old_key, None)
        template = web.templates.env.get_template("widget.html")
        page = template.render(s=view, base_url=web.settings.base_url).encode()
        web.page_cache[key] = page
    return HTMLResponse(page, headers={"cache-control": f"public, max-age={max_age}"})


# -- confirmation and withdrawal ------------------------------------------------------------

_TEXT = {
    "confirm": {
        "heading": "Confirm your signature",
        "explain": "Press the button to confirm that you sign this statement.",
        "button": "Confirm my signature",
    },
    "withdraw": {
        "heading": "Withdraw your signature",
        "explain": "Press the button to withdraw your signature. It will no longer be counted "
        "or listed. You can sign again later.",
        "button": "Withdraw my signature",
    },
}
_TOKEN_STATUS = {"unknown": 404, "expired": 410, "used": 409}


def _token_error(web: Web, purpose: str, exc: TokenError) -> Response:
    reason = getattr(exc, "reason", "unknown")
    messages = {
        "unknown": "This link is not valid. Check that you copied the whole link from the e-mail.",
        "expired": "This link has expired. Sign the statement again to get a new link.",
        "used": (
            "This link has already been used: your signature is confirmed."
            if purpose == "confirm"
            else "This link has already been used: your signature was withdrawn."
        ),
    }
    status = _TOKEN_STATUS.get(reason, 400)
    heading = {404: "Link not valid", 410: "Link expired", 409: "Already done"}.get(
        status, "Link not valid"
    )
    return web.templates.render(
        "error.html", status=status, heading=heading, message=messages.get(reason, str(exc))
    )


def _token_page(
    web: Web, request: Request, token: str, purpose: Literal["confirm", "withdraw"]
) -> Response:
    try:
        info = web.service.token_info(token, purpose)
    except TokenError as exc:
        return _token_error(web, purpose, exc)
    issued = web.forms.issue(token_scope(token), form_nonce(request))
    response = web.templates.render(
        "token.html",
        info=info,
        token=token,
        purpose=purpose,
        form_token=issued.token,
        text=_TEXT[purpose],
    )
    # The page holds a live secret in its URL and form: keep it out of every cache.
    response.headers["cache-control"] = "no-store"
    return _with_form_cookie(web, response, issued.nonce)


async def _token_post(
    web: Web, request: Request, token: str, purpose: Literal["confirm", "withdraw"]
) -> Response:
    form = await read_form(request, web)
    web.forms.verify(
        form.get("form_token", ""), token_scope(token), request.cookies.get(FORM_COOKIE)
    )
    action = web.service.confirm if purpose == "confirm" else web.service.withdraw
    try:
        info: TokenInfo = await run_in_threadpool(action, token)
    except TokenError as exc:
        return _token_error(web, purpose, exc)
    if purpose == "confirm":
        heading = "Signature confirmed"
        number = f" You are signatory number {info.ordinal:,}." if info.ordinal else ""
        message = f"Thank you: your signature counts.{number} The public count updates shortly."
    else:
        heading = "Signature withdrawn"
        message = "Your signature has been withdrawn: it is no longer counted or listed."
    response = web.templates.render("done.html", heading=heading, message=message, info=info)
    response.headers["cache-control"] = "no-store"
    return response


@router.get("/confirm/{token}")
def confirm_page(token: str, request: Request, web: Web) -> Response:
    """Shows a button only: e-mail scanners that follow links must not confirm anything."""
    return _token_page(web, request, token, "confirm")


@router.post("/confirm/{token}")
async def confirm(token: str, request: Request, web: Web) -> Response:
    return await _token_post(web, request, token, "confirm")


@router.get("/withdraw/{token}")
def withdraw_page(token: str, request: Request, web: Web) -> Response:
    return _token_page(web, request, token, "withdraw")


@router.post("/withdraw/{token}")
async def withdraw(token: str, request: Request, web: Web) -> Response:
    return await _token_post(web, request, token, "withdraw")
