"""The JSON API under ``/api/v1``, the slim ``count.json`` and the health check.

Read-only and public: every response model lives in :mod:`consentry.web.models` and is
separate from the service's dataclasses, so nothing private can leak by being added there.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from consentry.errors import ConsentryError, NotFoundError
from consentry.statements import PublicSigner, StatementState, StatementView
from consentry.web.deps import Web
from consentry.web.models import (
    CountPublic,
    ErrorPublic,
    HealthPublic,
    SignerPublic,
    StatementDetailPublic,
    StatementPublic,
)

__all__ = ["router"]

router = APIRouter()

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "No published statement has this slug."}
}
_BAD_QUERY: dict[int | str, dict[str, Any]] = {
    422: {"description": "A query parameter is out of range or malformed."}
}
# Public, read-only, without credentials: any site may read these (e.g. its own widget).
_CORS = {"access-control-allow-origin": "*"}
_NOTABLES_LIMIT = 1000


def _published(view: StatementView) -> StatementView:
    if view.state == StatementState.DRAFT:
        raise NotFoundError(f"no statement {view.slug!r}")
    return view


def _statement(web: Web, view: StatementView) -> StatementPublic:
    return StatementPublic(
        slug=view.slug,
        title=view.title,
        state="open" if view.state == StatementState.OPEN else "closed",
        languages=list(view.languages),
        opens_at=view.opens_at,
        closes_at=view.closes_at,
        goal=view.goal,
        signature_count=view.signature_count,
        count_updated_at=view.count_updated_at,
        url=f"{web.settings.base_url}/statements/{view.slug}",
    )


def _signer(signer: PublicSigner) -> SignerPublic:
    return SignerPublic(
        ordinal=signer.ordinal,
        name=signer.name,
        occupation=signer.occupation,
        country=signer.country,
        kind=signer.kind,
    )


@router.get(
    "/api/v1/statements",
    response_model=list[StatementPublic],
    tags=["statements"],
    summary="Published statements (open and closed) with their batched counts",
)
def list_statements(web: Web) -> JSONResponse:
    views = web.service.list_statements(include_drafts=False)
    body = [_statement(web, v).model_dump(mode="json") for v in views if v.state != "draft"]
    return JSONResponse(body, headers=_CORS)


@router.get(
    "/api/v1/statements/{slug}",
    response_model=StatementDetailPublic,
    responses=_NOT_FOUND,
    tags=["statements"],
    summary="One statement: text, state, count, goal, vetted notables and organisations",
)
def get_statement(slug: str, web: Web) -> JSONResponse:
    view = _published(web.service.statement(slug))
    # Notables and organisations come first in the public list (the service's order).
    vetted = [
        s for s in web.service.public_signers(slug, limit=_NOTABLES_LIMIT) if s.kind != "person"
    ]
    detail = StatementDetailPublic(
        **_statement(web, view).model_dump(),
        text=view.text,
        required_fields=list(view.required_fields),
        notables=[_signer(s) for s in vetted if s.kind == "notable"],
        organisations=[_signer(s) for s in vetted if s.kind == "organisation"],
    )
    return JSONResponse(detail.model_dump(mode="json"), headers=_CORS)


@router.get(
    "/api/v1/statements/{slug}/signers",
    response_model=list[SignerPublic],
    responses={**_NOT_FOUND, **_BAD_QUERY},
    tags=["statements"],
    summary="Validated signers who chose to be shown (others as null names), notables first",
)
def list_signers(
    slug: str,
    web: Web,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    _published(web.service.statement(slug))
    signers = web.service.public_signers(slug, limit=limit, offset=offset)
    return JSONResponse([_signer(s).model_dump(mode="json") for s in signers], headers=_CORS)


@router.get(
    "/statements/{slug}/count.json",
    response_model=CountPublic,
    responses={
        **_NOT_FOUND,
        304: {"description": "Not modified (the ETag in If-None-Match is current)."},
    },
    tags=["counts"],
    summary="The batched signature count, served from memory with cache headers",
)
async def count_json(slug: str, request: Request, web: Web) -> Response:
    entry = web.counts.get(slug)
    if entry is None:
        # A statement published since the last refresh; unknown slugs raise NotFoundError.
        view = _published(await run_in_threadpool(web.service.statement, slug))
        entry = web.counts.put(view)
    headers = {
        "cache-control": f"public, max-age={max(1, int(web.settings.count_interval))}",
        "etag": entry.etag,
        **_CORS,
    }
    if request.headers.get("if-none-match") == entry.etag:
        return Response(status_code=304, headers=headers)
    return Response(entry.body, media_type="application/json", headers=headers)


@router.get(
    "/healthz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "The database is unreachable."}},
    tags=["health"],
    summary="Liveness and database reachability",
)
def health(web: Web) -> JSONResponse:
    try:
        with web.db.read() as session:
            session.execute(text("SELECT 1"))
    except (ConsentryError, OSError):
        body = HealthPublic(status="unavailable", database="unavailable")
        return JSONResponse(
            body.model_dump(), status_code=503, headers={"cache-control": "no-store"}
        )
    body = HealthPublic(status="ok", database="ok")
    return JSONResponse(body.model_dump(), headers={"cache-control": "no-store"})
