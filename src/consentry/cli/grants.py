"""``consentry grant …``: explicit, scoped, revocable licences."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.options import PURPOSE_CHOICE
from consentry.cli.output import Out, json_option
from consentry.domain import Grant, PaymentKind, parse_purpose, parse_verification_level
from consentry.errors import InvalidInputError
from consentry.registry.ids import parse_id
from consentry.registry.jsonable import grant_json
from consentry.registry.mapping import get_row, load_grants
from consentry.registry.queries import list_grants
from consentry.registry.service import GrantSpec, RegistryService
from consentry.registry.timeparse import parse_time
from consentry.store.tables import GrantRow

__all__ = ["grant"]


def _state(g: Grant) -> str:
    if g.revocation is not None:
        return f"revoked from {g.revocation.effective.isoformat()}"
    agreed = ",".join(a.party_id for a in g.agreements)
    return f"agreed by {agreed}"


def _line(g: Grant) -> str:
    scope = (
        ",".join(sorted(g.work_ids, key=lambda w: int(w[1:])))
        if g.work_ids
        else f"catalogue of {g.catalogue.holder_id if g.catalogue else '?'}"
    )
    purposes = ",".join(sorted(p.value for p in g.purposes))
    expires = f" until {g.expires.date().isoformat()}" if g.expires else ""
    return f"{g.id}\t{scope} -> {g.licensee}\t{purposes}{expires}\t{_state(g)}"


@click.group()
def grant() -> None:
    """Create, agree to, list, show and revoke grants."""


@grant.command("create")
@click.option("--work", "works", multiple=True, help="Work id covered (repeatable).")
@click.option("--catalogue", default=None, help="Grant over all works of this holder (--by).")
@click.option(
    "--include-future", is_flag=True, help="Catalogue grant also covers works registered later."
)
@click.option("--licensee", required=True, help="Party id of the licensee.")
@click.option(
    "--purpose",
    "purposes",
    required=True,
    multiple=True,
    type=PURPOSE_CHOICE,
    help="Purpose from the vocabulary (repeatable).",
)
@click.option("--by", "by", required=True, help="Holder who grants (agrees by granting).")
@click.option("--not-before", default=None, help="Start of validity (ISO 8601).")
@click.option("--expires", default=None, help="End of validity; a date means end of that day.")
@click.option("--terms", default="", help="Free-text terms.")
@click.option(
    "--payment",
    type=click.Choice([p.value for p in PaymentKind]),
    default="free",
    show_default=True,
    help="Payment model.",
)
@click.option("--amount", default=None, help="Amount for flat / per-item payment.")
@click.option("--currency", default=None, help="ISO 4217 currency of the amount, e.g. EUR.")
@click.option(
    "--min-verification",
    type=click.Choice(["unverified", "email", "vouched", "operator"]),
    default="unverified",
    show_default=True,
    help="Holders must be verified at least this well for the grant to count.",
)
@json_option
@pass_app
def grant_create(
    app: AppContext,
    works: tuple[str, ...],
    catalogue: str | None,
    include_future: bool,
    licensee: str,
    purposes: tuple[str, ...],
    by: str,
    not_before: str | None,
    expires: str | None,
    terms: str,
    payment: str,
    amount: str | None,
    currency: str | None,
    min_verification: str,
    as_json: bool,
) -> None:
    """Create a grant. It is pending until every holder of each covered work agrees."""
    try:
        parsed_amount = Decimal(amount) if amount is not None else None
    except InvalidOperation:
        raise InvalidInputError(f"--amount is not a number: {amount!r}") from None
    spec = GrantSpec(
        by=by,
        licensee=licensee,
        purposes=frozenset(parse_purpose(p) for p in purposes),
        work_ids=works,
        catalogue_holder=catalogue,
        include_future=include_future,
        not_before=parse_time(not_before) if not_before else None,
        expires=parse_time(expires, end_of_day=True) if expires else None,
        terms_text=terms,
        payment=PaymentKind(payment),
        amount=parsed_amount,
        currency=currency.upper() if currency else None,
        min_verification=parse_verification_level(min_verification),
    )
    if include_future and catalogue is None:
        raise InvalidInputError("--include-future applies to --catalogue grants only")
    with app.database().write() as session:
        g = RegistryService(session).create_grant(spec)
    Out(as_json).emit({"grant_id": g.id, **grant_json(g)}, f"{g.id}\t{_state(g)}")


@grant.command("agree")
@click.argument("grant_id")
@click.option("--by", "by", required=True, help="Co-holder who agrees.")
@json_option
@pass_app
def grant_agree(app: AppContext, grant_id: str, by: str, as_json: bool) -> None:
    """Record a co-holder's agreement to a grant."""
    with app.database().write() as session:
        g = RegistryService(session).agree(grant_id, by)
    Out(as_json).emit({"grant_id": g.id, **grant_json(g)}, f"{g.id}\t{_state(g)}")


@grant.command("revoke")
@click.argument("grant_id")
@click.option("--by", "by", required=True, help="Grantor or holder who revokes.")
@click.option("--at", "at", default=None, help="Effective time (not before now).")
@click.option("--reason", default="", help="Why (kept in the log).")
@json_option
@pass_app
def grant_revoke(
    app: AppContext, grant_id: str, by: str, at: str | None, reason: str, as_json: bool
) -> None:
    """Revoke a grant for future uses; its history stays."""
    effective = parse_time(at) if at else None
    with app.database().write() as session:
        g = RegistryService(session).revoke(grant_id, by, effective=effective, reason=reason)
    Out(as_json).emit({"grant_id": g.id, **grant_json(g)}, f"{g.id}\t{_state(g)}")


@grant.command("list")
@click.option("--work", default=None, help="Only grants listing this work.")
@click.option("--party", default=None, help="Only grants by, to, or over this party.")
@json_option
@pass_app
def grant_list(app: AppContext, work: str | None, party: str | None, as_json: bool) -> None:
    """List grants (JSON Lines with --json)."""
    with app.database().read() as session:
        grants = list_grants(session, work=work, party=party)
    out = Out(as_json)
    for g in grants:
        out.emit(grant_json(g), _line(g))


@grant.command("show")
@click.argument("grant_id")
@json_option
@pass_app
def grant_show(app: AppContext, grant_id: str, as_json: bool) -> None:
    """Show one grant with its agreements and revocation."""
    with app.database().read() as session:
        get_row(session, GrantRow, "grant", grant_id)
        g = load_grants(session, [parse_id("grant", grant_id)])[0]

    def human() -> str:
        t = g.terms
        pay = t.payment.value + (f" {t.amount} {t.currency}" if t.amount is not None else "")
        lines = [
            _line(g),
            f"  granted by {g.grantor} at {g.created_at.isoformat()}",
            f"  terms: {pay}{'; ' + t.text if t.text else ''}",
            f"  holders must be at least: {g.min_verification.label}",
        ]
        if g.not_before:
            lines.append(f"  valid from {g.not_before.isoformat()}")
        lines += [f"  agreed by {a.party_id} at {a.at.isoformat()}" for a in g.agreements]
        return "\n".join(lines)

    Out(as_json).emit(grant_json(g), human)
