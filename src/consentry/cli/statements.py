"""``consentry statement …``: public statements and their signatures, for operators.

Every change is audited (``statement audit``) under the name given by ``--by`` (default:
``cli:<login name>``). These commands need no mail settings: they change the database and the
mail worker (``consentry mail worker``) sends whatever e-mail a change queued.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.output import Out, json_option
from consentry.config import RateLimits, ServerSettings, parse_rate
from consentry.errors import ConfigurationError, InvalidInputError, UnreadableInputError
from consentry.registry.timeparse import parse_time
from consentry.statements import (
    InvalidationCondition,
    SignatureRecord,
    SignatureState,
    StatementChanges,
    StatementService,
    StatementSpec,
    StatementView,
)
from consentry.statements.model import OPTIONAL_FIELDS

__all__ = ["service_for", "statement", "statement_json"]

F = TypeVar("F", bound=Callable[..., Any])
_MAX_TEXT_FILE = 1 << 20


def _default_by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in some containers
        return "cli"


def by_option(func: F) -> F:
    """``--by``: who the audit trail names for this change (an option-bundle decorator)."""
    return click.option(
        "--by",
        "by",
        default=None,
        help="Operator named in the audit trail (default: cli:<login name>).",
    )(func)


def service_for(app: AppContext) -> StatementService:
    # check=False: administering statements needs no secret key or mail server.
    settings = ServerSettings.load(app.settings, dev=False, check=False)
    return StatementService(app.database(), settings)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def statement_json(v: StatementView) -> dict[str, Any]:
    return {
        "slug": v.slug,
        "title": v.title,
        "state": v.state.value,
        "languages": list(v.languages),
        "opens_at": _when(v.opens_at),
        "closes_at": _when(v.closes_at),
        "goal": v.goal,
        "required_fields": list(v.required_fields),
        "signature_count": v.signature_count,
        "count_updated_at": _when(v.count_updated_at),
        "rate_limits": v.rate_limits.as_json() if v.rate_limits else None,
        "text": v.text,
    }


def _statement_line(v: StatementView) -> str:
    goal = f"/{v.goal}" if v.goal else ""
    return f"{v.slug}\t{v.state.value}\t{v.signature_count}{goal}\t{v.title}"


def signature_json(r: SignatureRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "statement": r.slug,
        "state": r.state.value,
        "ordinal": r.ordinal,
        "kind": r.kind,
        "name": r.name,
        "email": r.email,
        "show_name": r.show_name,
        "occupation": r.occupation,
        "country": r.country,
        "organisation": r.organisation,
        "ip": r.ip,
        "user_agent": r.user_agent,
        "language": r.language,
        "created_at": r.created_at.isoformat(),
        "confirmed_at": _when(r.confirmed_at),
        "withdrawn_at": _when(r.withdrawn_at),
        "vetted_by": r.vetted_by,
        "vetted_at": _when(r.vetted_at),
        "vet_method": r.vet_method,
        "fraud_reason": r.fraud_reason,
        "invalidated_reason": r.invalidated_reason,
        "erased": r.erased,
    }


def _signature_line(r: SignatureRecord) -> str:
    why = r.fraud_reason or r.invalidated_reason or ""
    ordinal = f"#{r.ordinal}" if r.ordinal else "-"
    return f"{r.id}\t{r.state.value}\t{ordinal}\t{r.kind}\t{r.name or '-'}\t{r.email or '-'}" + (
        f"\t{why}" if why else ""
    )


def _text(text: str | None, text_file: str | None, *, required: bool) -> str | None:
    if text is not None and text_file is not None:
        raise InvalidInputError("give --text or --text-file, not both")
    if text_file is not None:
        path = Path(text_file)
        try:
            if path.stat().st_size > _MAX_TEXT_FILE:
                raise UnreadableInputError(f"{path} is larger than {_MAX_TEXT_FILE} bytes")
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableInputError(f"cannot read {path}: {exc}") from None
    if text is None and required:
        raise InvalidInputError("the statement's text is required: --text or --text-file")
    return text


def _required(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    fields = tuple(f.strip() for f in value.split(",") if f.strip())
    unknown = [f for f in fields if f not in OPTIONAL_FIELDS]
    if unknown:
        raise InvalidInputError(
            f"--require: unknown field {unknown[0]!r}; choose from {', '.join(OPTIONAL_FIELDS)}"
        )
    return fields


def _rates(values: tuple[str, ...], base: RateLimits) -> RateLimits | None:
    if not values:
        return None
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rate = value.partition("=")
        if not sep:
            raise InvalidInputError(f"--rate takes NAME=N/S (e.g. ip_burst=5/60), got {value!r}")
        parse_rate(rate, name=f"--rate {name}")
        pairs[name.strip()] = rate.strip()
    try:
        return RateLimits.from_json(pairs, base=base)
    except ConfigurationError as exc:
        raise InvalidInputError(f"--rate: {exc}") from None


def _time(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    return parse_time(value, end_of_day=end_of_day) if value else None


_rate_option = click.option(
    "--rate",
    "rates",
    multiple=True,
    metavar="NAME=N/S",
    help="This statement's own limit, e.g. ip_burst=5/60 (ip_burst, ip_sustained, "
    "domain_burst, domain_sustained; repeatable).",
)


@click.group()
def statement() -> None:
    """Create, open, close and look after public statements and their signatures."""


@statement.command("create")
@click.option("--slug", required=True, help="Short name in the URL: /statements/<slug>.")
@click.option("--title", required=True, help="Title of the statement.")
@click.option("--text", default=None, help="The statement's text.")
@click.option("--text-file", default=None, help="Read the text from this UTF-8 file.")
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="Language tag the statement is offered in (repeatable; the first is the main one).",
)
@click.option("--opens", default=None, help="Opening time (ISO 8601; default: when opened).")
@click.option("--closes", default=None, help="Closing time (ISO 8601; a bare date: end of day).")
@click.option("--goal", type=int, default=None, help="Signature goal shown with the count.")
@click.option(
    "--require", default=None, help="Fields signers must give: occupation,country,organisation."
)
@_rate_option
@by_option
@json_option
@pass_app
def statement_create(
    app: AppContext,
    slug: str,
    title: str,
    text: str | None,
    text_file: str | None,
    languages: tuple[str, ...],
    opens: str | None,
    closes: str | None,
    goal: int | None,
    require: str | None,
    rates: tuple[str, ...],
    by: str | None,
    as_json: bool,
) -> None:
    """Create a statement as a draft (nobody can sign until `statement open`)."""
    service = service_for(app)
    spec = StatementSpec(
        slug=slug,
        title=title,
        text=cast(str, _text(text, text_file, required=True)),
        languages=languages or ("en",),
        opens_at=_time(opens),
        closes_at=_time(closes, end_of_day=True),
        goal=goal,
        required_fields=_required(require) or (),
        rate_limits=_rates(rates, service.settings.rate_limits),
    )
    view = service.create_statement(spec, by=by or _default_by())
    Out(as_json).emit(statement_json(view), _statement_line(view))


@statement.command("edit")
@click.argument("slug")
@click.option("--title", default=None, help="New title (drafts only).")
@click.option("--text", default=None, help="New text (drafts only).")
@click.option("--text-file", default=None, help="Read the new text from this UTF-8 file.")
@click.option("--language", "languages", multiple=True, help="Replace the languages (repeatable).")
@click.option("--opens", default=None, help="New opening time (ISO 8601).")
@click.option(
    "--closes", default=None, help="New closing time (ISO 8601; a bare date: end of day)."
)
@click.option("--goal", type=int, default=None, help="New signature goal.")
@click.option("--require", default=None, help="Replace the required fields (drafts only).")
@_rate_option
@click.option(
    "--clear",
    "clear",
    multiple=True,
    type=click.Choice(["opens", "closes", "goal", "rate"]),
    help="Remove the opening or closing time, the goal or the own rate limits (repeatable).",
)
@by_option
@json_option
@pass_app
def statement_edit(
    app: AppContext,
    slug: str,
    title: str | None,
    text: str | None,
    text_file: str | None,
    languages: tuple[str, ...],
    opens: str | None,
    closes: str | None,
    goal: int | None,
    require: str | None,
    rates: tuple[str, ...],
    clear: tuple[str, ...],
    by: str | None,
    as_json: bool,
) -> None:
    """Change a statement (its title and text only while it is a draft)."""
    service = service_for(app)
    names = {"opens": "opens_at", "closes": "closes_at", "goal": "goal", "rate": "rate_limits"}
    changes = StatementChanges(
        title=title,
        text=_text(text, text_file, required=False),
        languages=languages or None,
        opens_at=_time(opens),
        closes_at=_time(closes, end_of_day=True),
        goal=goal,
        required_fields=_required(require),
        rate_limits=_rates(rates, service.settings.rate_limits),
        clear=frozenset(names[c] for c in clear),
    )
    view = service.update_statement(slug, changes, by=by or _default_by())
    Out(as_json).emit(statement_json(view), _statement_line(view))


@statement.command("open")
@click.argument("slug")
@by_option
@json_option
@pass_app
def statement_open(app: AppContext, slug: str, by: str | None, as_json: bool) -> None:
    """Open a statement for signatures (from its opening time, if it has one)."""
    view = service_for(app).open_statement(slug, by=by or _default_by())
    Out(as_json).emit(statement_json(view), _statement_line(view))


@statement.command("close")
@click.argument("slug")
@by_option
@json_option
@pass_app
def statement_close(app: AppContext, slug: str, by: str | None, as_json: bool) -> None:
    """Close a statement: no more signatures or confirmations (closed stays closed)."""
    view = service_for(app).close_statement(slug, by=by or _default_by())
    Out(as_json).emit(statement_json(view), _statement_line(view))


@statement.command("list")
@click.option("--public", is_flag=True, help="Only what the public sees (no drafts).")
@json_option
@pass_app
def statement_list(app: AppContext, public: bool, as_json: bool) -> None:
    """List statements: slug, state, count(/goal), title (JSON Lines with --json)."""
    views = service_for(app).list_statements(include_drafts=not public)
    out = Out(as_json)
    for view in views:
        out.emit(statement_json(view), _statement_line(view))
    if not views and not as_json:
        out.note("no statements yet; create one with `consentry statement create`")


@statement.command("show")
@click.argument("slug")
@json_option
@pass_app
def statement_show(app: AppContext, slug: str, as_json: bool) -> None:
    """Show one statement with its text."""
    view = service_for(app).statement(slug)

    def human() -> str:
        lines = [_statement_line(view)]
        if view.opens_at or view.closes_at:
            lines.append(f"open\t{_when(view.opens_at) or '-'} .. {_when(view.closes_at) or '-'}")
        if view.required_fields:
            lines.append(f"requires\t{','.join(view.required_fields)}")
        if view.rate_limits:
            lines.append(f"limits\t{json.dumps(view.rate_limits.as_json())}")
        return "\n".join([*lines, "", view.text])

    Out(as_json).emit(statement_json(view), human)


@statement.command("signatures")
@click.argument("slug")
@click.option(
    "--state",
    type=click.Choice([s.value for s in SignatureState]),
    default=None,
    help="Only signatures in this state.",
)
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@pass_app
def statement_signatures(
    app: AppContext, slug: str, state: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """List a statement's signatures with their personal data (operators only)."""
    records = service_for(app).signatures(
        slug, state=SignatureState(state) if state else None, limit=limit, offset=offset
    )
    out = Out(as_json)
    for record in records:
        out.emit(signature_json(record), _signature_line(record))
    if not records and not as_json:
        out.note("no signatures")


@statement.command("vet")
@click.argument("signature_id", type=int)
@click.option(
    "--as",
    "kind",
    required=True,
    type=click.Choice(["notable", "organisation"]),
    help="Feature the signer as a notable person or as an organisation.",
)
@click.option(
    "--method", required=True, help="How the signer was vetted (e.g. 'called their agent')."
)
@click.option("--note", default="", help="Anything else worth keeping.")
@by_option
@json_option
@pass_app
def statement_vet(
    app: AppContext,
    signature_id: int,
    kind: str,
    method: str,
    note: str,
    by: str | None,
    as_json: bool,
) -> None:
    """Feature a validated signer as notable or as an organisation, recording who and how."""
    service = service_for(app)
    service.vet(
        signature_id,
        cast(Literal["notable", "organisation"], kind),
        by=by or _default_by(),
        method=method,
        note=note,
    )
    record = service.signature(signature_id)
    Out(as_json).emit(signature_json(record), _signature_line(record))


@statement.command("unvet")
@click.argument("signature_id", type=int)
@by_option
@json_option
@pass_app
def statement_unvet(app: AppContext, signature_id: int, by: str | None, as_json: bool) -> None:
    """Stop featuring a signer (back to an ordinary signature)."""
    service = service_for(app)
    service.unvet(signature_id, by=by or _default_by())
    record = service.signature(signature_id)
    Out(as_json).emit(signature_json(record), _signature_line(record))


@statement.command("invalidate")
@click.argument("slug")
@click.option("--ip", default=None, help="Signed from this address or CIDR (203.0.113.0/24).")
@click.option("--domain", default=None, help="E-mail domain (and its subdomains).")
@click.option("--from", "created_from", default=None, help="Signed at or after this time.")
@click.option("--to", "created_to", default=None, help="Signed before this time.")
@click.option("--user-agent", default=None, help="User agent containing this text.")
@click.option(
    "--state",
    type=click.Choice(["pending", "validated"]),
    default=None,
    help="Only pending or only validated signatures (default: both).",
)
@click.option("--dry-run", is_flag=True, help="Only count; change nothing (still audited).")
@by_option
@json_option
@pass_app
def statement_invalidate(
    app: AppContext,
    slug: str,
    ip: str | None,
    domain: str | None,
    created_from: str | None,
    created_to: str | None,
    user_agent: str | None,
    state: str | None,
    dry_run: bool,
    by: str | None,
    as_json: bool,
) -> None:
    """Invalidate the signatures matching every given condition (try --dry-run first)."""
    condition = InvalidationCondition(
        ip=ip,
        email_domain=domain,
        created_from=_time(created_from),
        created_to=_time(created_to),
        user_agent_contains=user_agent,
        state=SignatureState(state) if state else None,
    )
    count = service_for(app).invalidate(slug, condition, by=by or _default_by(), dry_run=dry_run)
    verb = "would invalidate" if dry_run else "invalidated"
    Out(as_json).emit(
        {"statement": slug, "dry_run": dry_run, "count": count}, f"{verb} {count} signatures"
    )


_KIND = click.Choice(["ip", "domain"])


@statement.command("block")
@click.argument("kind", type=_KIND)
@click.argument("value")
@click.option("--note", default="", help="Why (kept in the blocklist and the audit trail).")
@by_option
@json_option
@pass_app
def statement_block(
    app: AppContext, kind: str, value: str, note: str, by: str | None, as_json: bool
) -> None:
    """Treat new signatures from an IP/CIDR or e-mail domain as fraudulent (all statements)."""
    service = service_for(app)
    service.block(cast(Literal["ip", "domain"], kind), value, by=by or _default_by(), note=note)
    _emit_blocklist(service, Out(as_json))


@statement.command("unblock")
@click.argument("kind", type=_KIND)
@click.argument("value")
@by_option
@json_option
@pass_app
def statement_unblock(
    app: AppContext, kind: str, value: str, by: str | None, as_json: bool
) -> None:
    """Remove an IP/CIDR or e-mail domain from the blocklist."""
    service = service_for(app)
    service.unblock(cast(Literal["ip", "domain"], kind), value, by=by or _default_by())
    _emit_blocklist(service, Out(as_json))


@statement.command("blocklist")
@json_option
@pass_app
def statement_blocklist(app: AppContext, as_json: bool) -> None:
    """List the blocklist: kind, value, who added it, note (JSON Lines with --json)."""
    _emit_blocklist(service_for(app), Out(as_json))


def _emit_blocklist(service: StatementService, out: Out) -> None:
    entries = service.blocklist()
    for kind, value, note, created_by in entries:
        out.emit(
            {"kind": kind, "value": value, "note": note, "created_by": created_by},
            f"{kind}\t{value}\t{created_by}\t{note}",
        )
    if not entries and not out.as_json:
        out.note("the blocklist is empty")


@statement.command("erase")
@click.argument("email")
@by_option
@json_option
@pass_app
def statement_erase(app: AppContext, email: str, by: str | None, as_json: bool) -> None:
    """Erase a signer's personal data from every statement (counts stay consistent)."""
    count = service_for(app).erase_signer(email, by=by or _default_by())
    Out(as_json).emit({"erased": count}, f"erased the personal data of {count} signatures")


@statement.command("recount")
@click.argument("slug")
@by_option
@json_option
@pass_app
def statement_recount(app: AppContext, slug: str, by: str | None, as_json: bool) -> None:
    """Recount a statement's validated signatures from scratch and fix any drift."""
    before, after = service_for(app).recount(slug, by=by or _default_by())
    Out(as_json).emit(
        {"statement": slug, "before": before, "after": after, "drift": after - before},
        f"{slug}: {before} -> {after}"
        + ("" if before == after else f" (drift {after - before:+d})"),
    )


@statement.command("refresh-counts")
@json_option
@pass_app
def statement_refresh_counts(app: AppContext, as_json: bool) -> None:
    """Fold new confirmations and withdrawals into the public counts (the server does this)."""
    folded = service_for(app).refresh_counts()
    Out(as_json).emit({"folded": folded}, f"folded {folded} signatures into the counts")


@statement.command("anonymise")
@by_option
@json_option
@pass_app
def statement_anonymise(app: AppContext, by: str | None, as_json: bool) -> None:
    """Anonymise statements closed longer than CONSENTRY_ANONYMISE_AFTER_DAYS."""
    count = service_for(app).anonymise_closed(by=by or _default_by())
    Out(as_json).emit({"anonymised": count}, f"anonymised {count} signatures")


@statement.command("export-csv")
@click.argument("slug")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="CSV file to write (contains personal data: keep it safe).",
)
@json_option
@pass_app
def statement_export_csv(app: AppContext, slug: str, output: Path, as_json: bool) -> None:
    """Export every signature of a statement as CSV (formula-like cells neutralised)."""
    service = service_for(app)
    service.statement(slug)  # refuse an unknown slug before creating the file
    try:
        with output.open("w", encoding="utf-8", newline="") as handle:
            rows = service.export_csv(slug, handle)
    except OSError as exc:
        raise UnreadableInputError(f"cannot write {output}: {exc}") from None
    Out(as_json).emit(
        {"statement": slug, "rows": rows, "output": str(output)}, f"{rows} rows -> {output}"
    )


@statement.command("audit")
@click.argument("slug", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_app
def statement_audit(app: AppContext, slug: str | None, limit: int, as_json: bool) -> None:
    """Show the operators' audit trail (newest first), for one statement or all."""
    service = service_for(app)
    if slug is not None:
        service.statement(slug)
    out = Out(as_json)
    for action in service.actions(slug=slug, limit=limit):
        out.emit(
            action,
            f"{action['at']}\t{action['operator']}\t{action['action']}\t"
            f"{action['statement'] or '-'}\t{json.dumps(action['params'], sort_keys=True)}",
        )
