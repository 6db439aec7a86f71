"""``consentry reserve`` and ``consentry dispute …``: explicit refusals and contested claims."""

from __future__ import annotations

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.options import PURPOSE_CHOICE
from consentry.cli.output import Out, json_option
from consentry.domain import Dispute, parse_purpose
from consentry.errors import InvalidInputError
from consentry.registry.jsonable import dispute_json, reservation_json
from consentry.registry.queries import list_disputes
from consentry.registry.service import RegistryService

__all__ = ["dispute", "reserve"]


@click.command()
@click.option("--by", "by", required=True, help="The holder who reserves (or lifts).")
@click.option("--work", default=None, help="Work to reserve; omit with --all.")
@click.option("--all", "all_works", is_flag=True, help="Reserve every work the holder holds.")
@click.option(
    "--purpose",
    "purposes",
    multiple=True,
    type=PURPOSE_CHOICE,
    help="Purpose reserved (repeatable).",
)
@click.option("--lift", default=None, help="Lift this reservation id instead of creating one.")
@json_option
@pass_app
def reserve(
    app: AppContext,
    by: str,
    work: str | None,
    all_works: bool,
    purposes: tuple[str, ...],
    lift: str | None,
    as_json: bool,
) -> None:
    """Reserve a work (or all of a holder's works) against purposes: beats every grant."""
    with app.database().write() as session:
        service = RegistryService(session)
        if lift is not None:
            if work or all_works or purposes:
                raise InvalidInputError("--lift takes only --by")
            r = service.lift_reservation(lift, by)
        else:
            if bool(work) == all_works:
                raise InvalidInputError("give either --work ID or --all")
            r = service.reserve(by, frozenset(parse_purpose(p) for p in purposes), work)
    what = r.work_id or f"all works of {r.by}"
    verb = "lifted" if r.lifted_at else "reserved"
    purposes_text = ",".join(sorted(p.value for p in r.purposes))
    Out(as_json).emit(reservation_json(r), f"{r.id}\t{verb}\t{what}\t{purposes_text}")


def _line(d: Dispute) -> str:
    state = f"resolved: {d.resolution}" if d.resolved_at else "open"
    return f"{d.id}\t{d.work_ids[0]} vs {d.work_ids[1]}\t{state}\t{d.reason}"


@click.group()
def dispute() -> None:
    """Contested registrations: while a dispute is open, neither side's grants count."""


@dispute.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only disputes still open.")
@json_option
@pass_app
def dispute_list(app: AppContext, open_only: bool, as_json: bool) -> None:
    """List disputes (JSON Lines with --json)."""
    with app.database().read() as session:
        disputes = list_disputes(session, open_only=open_only)
    out = Out(as_json)
    for d in disputes:
        out.emit(dispute_json(d), _line(d))


@dispute.command("open")
@click.argument("work_a")
@click.argument("work_b")
@click.option("--reason", required=True, help="Why these registrations conflict.")
@json_option
@pass_app
def dispute_open(app: AppContext, work_a: str, work_b: str, reason: str, as_json: bool) -> None:
    """Open a dispute between two registered works that claim the same content."""
    with app.database().write() as session:
        d = RegistryService(session).open_dispute(work_a, work_b, reason)
    Out(as_json).emit(dispute_json(d), _line(d))


@dispute.command("resolve")
@click.argument("dispute_id")
@click.option("--by", "by", required=True, help="Operator-verified party who resolves.")
@click.option("--void", "void_work", default=None, help="The registration found wrong.")
@click.option("--keep-both", is_flag=True, help="Both registrations stand.")
@click.option("--note", default="", help="Reasoning, kept in the log.")
@json_option
@pass_app
def dispute_resolve(
    app: AppContext,
    dispute_id: str,
    by: str,
    void_work: str | None,
    keep_both: bool,
    note: str,
    as_json: bool,
) -> None:
    """Resolve a dispute: void one registration, or keep both."""
    if bool(void_work) == keep_both:
        raise InvalidInputError("give either --void WORK or --keep-both")
    with app.database().write() as session:
        d = RegistryService(session).resolve_dispute(dispute_id, by, void_work=void_work, note=note)
    Out(as_json).emit(dispute_json(d), _line(d))
