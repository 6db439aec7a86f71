"""``consentry operator …``: accounts for the web admin pages (argon2-hashed passwords).

The password comes from ``--password-file``, else ``CONSENTRY_OPERATOR_PASSWORD``, else a
hidden prompt on the terminal: never from a command-line argument, which other users of the
machine can read in the process list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.output import Out, json_option
from consentry.errors import InvalidInputError, UnreadableInputError
from consentry.statements import Operator, OperatorService
from consentry.statements.operators import ROLES

__all__ = ["operator"]

_ENV = "CONSENTRY_OPERATOR_PASSWORD"


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableInputError(f"cannot read {password_file}: {exc}") from None
        password = text.rstrip("\r\n")
    elif os.environ.get(_ENV):
        password = os.environ[_ENV]
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, err=True, type=str
        )
    if not password:
        raise InvalidInputError("the password is empty")
    return password


def _json(o: Operator) -> dict[str, Any]:
    return {
        "id": o.id,
        "username": o.username,
        "roles": sorted(o.roles),
        "created_at": o.created_at.isoformat(),
    }


def _line(o: Operator) -> str:
    return f"{o.username}\t{','.join(sorted(o.roles))}\t{o.created_at.isoformat()}"


_password_file = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Read the password from this file (else ${_ENV}, else a hidden prompt).",
)


@click.group()
def operator() -> None:
    """Add and list operator accounts of the web admin pages; change passwords."""


@operator.command("add")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(sorted(ROLES)),
    help="operator (statements, signatures, blocklist) or vetter (vet signers); repeatable.",
)
@_password_file
@json_option
@pass_app
def operator_add(
    app: AppContext,
    username: str,
    roles: tuple[str, ...],
    password_file: Path | None,
    as_json: bool,
) -> None:
    """Add an operator account."""
    service = OperatorService(app.database())
    created = service.create(username, _password(password_file), frozenset(roles))
    Out(as_json).emit(_json(created), _line(created))


@operator.command("list")
@json_option
@pass_app
def operator_list(app: AppContext, as_json: bool) -> None:
    """List operator accounts and their roles (JSON Lines with --json)."""
    operators = OperatorService(app.database()).operators()
    out = Out(as_json)
    for o in operators:
        out.emit(_json(o), _line(o))
    if not operators and not as_json:
        out.note("no operators yet; add one with `consentry operator add`")


@operator.command("passwd")
@click.argument("username")
@_password_file
@json_option
@pass_app
def operator_passwd(
    app: AppContext, username: str, password_file: Path | None, as_json: bool
) -> None:
    """Set an operator's password; ends every session of that operator."""
    service = OperatorService(app.database())
    service.get(username)  # refuse an unknown name before asking for a password
    service.set_password(username, _password(password_file))
    Out(as_json).emit({"username": username, "password_changed": True}, f"{username}: changed")
