"""How commands print: JSON on stdout with ``--json``, human text otherwise, noise on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["Out", "json_option"]

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    """The ``--json`` option every command takes (an option-bundle decorator)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print machine-readable JSON (one object, or JSON Lines for lists) on stdout.",
    )(func)


class Out:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, obj: Any, human: str | Callable[[], str]) -> None:
        """One result: its JSON form on stdout with ``--json``, else its human form."""
        if self.as_json:
            sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=False) + "\n")
            sys.stdout.flush()
        else:
            click.echo(human() if callable(human) else human)

    def note(self, text: str) -> None:
        """Human commentary and warnings: always stderr, so stdout stays parseable."""
        click.echo(text, err=True)
