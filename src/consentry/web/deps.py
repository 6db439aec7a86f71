"""Typed dependencies shared by the route modules."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import UploadFile

from consentry.web.app import WebState

__all__ = ["Web", "get_web", "read_form"]

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_MAX_FIELDS = 40
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


async def get_web(request: Request) -> WebState:
    # async on purpose: a plain ``def`` dependency would cost a thread hop on every request.
    web: WebState = request.app.state.web
    return web


Web = Annotated[WebState, Depends(get_web)]


async def read_form(request: Request, web: WebState) -> dict[str, str]:
    """The posted form as text fields (first value wins); anything else is a clean 4xx.

    The body size is already capped by the request middleware (``max_form_bytes`` → 413);
    file parts and absurd field counts are refused here.
    """
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in _FORM_TYPES:
        raise HTTPException(415, "Send this form as application/x-www-form-urlencoded.")
    form = await request.form(
        max_files=0, max_fields=_MAX_FIELDS, max_part_size=web.settings.max_form_bytes
    )
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            raise HTTPException(400, "This form takes no files.")
        if "\x00" in value:
            raise HTTPException(400, "The form contains a NUL character.")
        fields.setdefault(key, value)
    return fields


def form_nonce(request: Request) -> str | None:
    """The double-submit cookie's value if it looks like one of ours (else a new one is set)."""
    from consentry.web.security import FORM_COOKIE

    value = request.cookies.get(FORM_COOKIE)
    return value if value and _NONCE.match(value) else None
