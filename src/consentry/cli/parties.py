"""``consentry party …``: the people and organisations in the registry."""

from __future__ import annotations

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.output import Out, json_option
from consentry.domain import Party, PartyKind, parse_verification_level
from consentry.registry.jsonable import party_json
from consentry.registry.mapping import load_party
from consentry.registry.queries import list_parties
from consentry.registry.service import RegistryService

__all__ = ["party"]


def _line(p: Party) -> str:
    extra = f" vouched by {p.vouched_by}" if p.vouched_by else ""
    extra += " (registrar)" if p.is_registrar else ""
    return f"{p.id}\t{p.kind.value}\t{p.name}\t{p.email or '-'}\t{p.verification.label}{extra}"


@click.group()
def party() -> None:
    """Add, list, show and verify parties (creators, publishers, labels, licensees)."""


@party.command("add")
@click.option("--name", required=True, help="Display name of the person or organisation.")
@click.option("--email", default=None, help="Contact e-mail (kept private; never in the log).")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in PartyKind]),
    default=PartyKind.PERSON.value,
    show_default=True,
    help="Person or organisation.",
)
@json_option
@pass_app
def party_add(app: AppContext, name: str, email: str | None, kind: str, as_json: bool) -> None:
    """Add a party; prints its id."""
    with app.database().write() as session:
        p = RegistryService(session).add_party(name, email, PartyKind(kind))
    Out(as_json).emit(party_json(p), f"{p.id}\t{p.name}")


@party.command("list")
@json_option
@pass_app
def party_list(app: AppContext, as_json: bool) -> None:
    """List every party (JSON Lines with --json)."""
    with app.database().read() as session:
        parties = list_parties(session)
    out = Out(as_json)
    for p in parties:
        out.emit(party_json(p), _line(p))
    if not parties and not as_json:
        out.note("no parties yet; add one with `consentry party add`")


@party.command("show")
@click.argument("party_id")
@json_option
@pass_app
def party_show(app: AppContext, party_id: str, as_json: bool) -> None:
    """Show one party."""
    with app.database().read() as session:
        p = load_party(session, party_id)
    Out(as_json).emit(party_json(p), _line(p))


@party.command("verify")
@click.argument("party_id")
@click.option(
    "--level",
    required=True,
    type=click.Choice(["unverified", "email", "operator"]),
    help="Verification the operator records (vouching is `party vouch`).",
)
@click.option(
    "--registrar",
    is_flag=True,
    help="Also make this operator-verified organisation a registrar that may vouch.",
)
@json_option
@pass_app
def party_verify(
    app: AppContext, party_id: str, level: str, registrar: bool, as_json: bool
) -> None:
    """Record the operator's verification of a party."""
    with app.database().write() as session:
        p = RegistryService(session).verify_party(
            party_id, parse_verification_level(level), registrar=registrar
        )
    Out(as_json).emit(party_json(p), _line(p))


@party.command("vouch")
@click.argument("party_id")
@click.option("--by", "by", required=True, help="The registrar organisation that vouches.")
@json_option
@pass_app
def party_vouch(app: AppContext, party_id: str, by: str, as_json: bool) -> None:
    """Record that a registrar organisation (a guild, a society) vouches for a party."""
    with app.database().write() as session:
        p = RegistryService(session).vouch(party_id, by)
    Out(as_json).emit(party_json(p), _line(p))
