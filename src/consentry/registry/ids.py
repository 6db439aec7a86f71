"""Identifiers as users see them: a letter for the kind and the never-reused row number."""

from __future__ import annotations

from consentry.errors import NotFoundError

__all__ = ["PREFIX", "format_id", "parse_id"]

PREFIX = {
    "party": "P",
    "work": "W",
    "grant": "G",
    "reservation": "R",
    "dispute": "D",
}


def format_id(kind: str, number: int) -> str:
    return f"{PREFIX[kind]}{number}"


def parse_id(kind: str, text: str) -> int:
    """Row number of an id like ``W12``; a bare number is accepted too."""
    raw = text.strip()
    prefix = PREFIX[kind]
    if raw[:1].upper() == prefix:
        raw = raw[1:]
    if not raw.isdigit() or int(raw) <= 0:
        raise NotFoundError(f"unknown {kind} id {text!r} (expected like {prefix}1)")
    return int(raw)
