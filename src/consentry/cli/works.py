"""``consentry work …``: registering works (fingerprints only) and looking them up."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.output import Out, json_option
from consentry.cli.progress import progress
from consentry.domain import Work
from consentry.errors import InvalidInputError, UnreadableInputError
from consentry.registry.jsonable import work_json
from consentry.registry.limits import recognition_limits
from consentry.registry.mapping import get_row, load_works
from consentry.registry.queries import list_works
from consentry.registry.registration import register_paths
from consentry.registry.service import HolderSpec
from consentry.store.tables import WorkRow

__all__ = ["work"]


def _line(w: Work) -> str:
    holders = ",".join(h.party_id for h in w.holders)
    void = " (void)" if w.void else ""
    return f"{w.id}\t{w.media_type.value}\t{w.title}\tholders {holders}{void}"


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise InvalidInputError(f"{what} must look like PARTY=VALUE, got {value!r}")
        out[key.strip().upper()] = rest.strip()
    return out


def _holders(
    holder: str, co_holders: tuple[str, ...], roles: tuple[str, ...], shares: tuple[str, ...]
) -> list[HolderSpec]:
    role_of = _pairs(roles, "--role")
    share_of: dict[str, Decimal] = {}
    for key, raw in _pairs(shares, "--share").items():
        try:
            share_of[key] = Decimal(raw.rstrip("%"))
        except InvalidOperation:
            raise InvalidInputError(f"--share for {key} is not a number: {raw!r}") from None
        if not Decimal(0) < share_of[key] <= Decimal(100):
            raise InvalidInputError(f"--share for {key} must be between 0 and 100")
    ids = [holder, *co_holders]
    unknown = (set(role_of) | set(share_of)) - {i.upper() for i in ids}
    if unknown:
        raise InvalidInputError(f"--role/--share name non-holders: {', '.join(sorted(unknown))}")
    return [HolderSpec(i, role_of.get(i.upper(), "author"), share_of.get(i.upper())) for i in ids]


@click.group()
def work() -> None:
    """Register works and look them up. Only fingerprints are stored, never the files."""


@work.command("register")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--holder", required=True, help="Party id of the (first) rights holder.")
@click.option("--co-holder", "co_holders", multiple=True, help="Another holder (repeatable).")
@click.option("--role", "roles", multiple=True, help="PARTY=ROLE, e.g. P2=publisher.")
@click.option("--share", "shares", multiple=True, help="PARTY=PERCENT; all or none, sum 100.")
@click.option("--title", default=None, help="Title (one file only; default: the file name).")
@click.option(
    "--identifier",
    "identifiers",
    multiple=True,
    help="SCHEME:VALUE external id, e.g. isbn:9780141439518 (one file only).",
)
@click.option(
    "--similar/--no-similar",
    default=True,
    show_default=True,
    help="Report registered works each new one resembles (off: faster bulk imports).",
)
@json_option
@pass_app
def work_register(
    app: AppContext,
    paths: tuple[str, ...],
    holder: str,
    co_holders: tuple[str, ...],
    roles: tuple[str, ...],
    shares: tuple[str, ...],
    title: str | None,
    identifiers: tuple[str, ...],
    similar: bool,
    as_json: bool,
) -> None:
    """Register files as works (directories recurse); bad files are reported and skipped.

    Prints one work id per file (JSON Lines with ``path`` and ``work_id`` with --json), and
    on stderr (``limits`` and ``similar`` in JSON) what recognition cannot do for the work and
    which registered works it resembles. Exits 1 after the batch if any file could not be
    registered.
    """
    holders = _holders(holder, co_holders, roles, shares)
    parsed_ids: list[tuple[str, str]] = []
    for ident in identifiers:
        scheme, sep, value = ident.partition(":")
        if not sep or not scheme or not value:
            raise InvalidInputError(f"--identifier must look like SCHEME:VALUE, got {ident!r}")
        parsed_ids.append((scheme.strip().lower(), value.strip()))
    single = len(paths) == 1 and not os.path.isdir(paths[0])
    if (title or parsed_ids) and not single:
        raise InvalidInputError("--title and --identifier apply to a single file only")

    out = Out(as_json)
    db = app.database()
    failed = done = 0
    with progress("registering") as bar:
        outcomes = register_paths(
            db, paths, holders, title=title, identifiers=parsed_ids, similar=similar
        )
        for outcome in outcomes:
            bar.advance()
            if outcome.error is not None or outcome.work is None:
                failed += 1
                if as_json:
                    out.emit({"path": str(outcome.path), "error": outcome.error}, "")
                out.note(f"skipped: {outcome.error}")
                continue
            done += 1
            w = outcome.work
            record: dict[str, object] = {
                "path": str(outcome.path),
                "work_id": w.id,
                "media_type": w.media_type.value,
            }
            if outcome.disputes:
                record["disputes"] = [d.id for d in outcome.disputes]
            if outcome.limits:
                record["limits"] = [{"code": x.code, "message": x.message} for x in outcome.limits]
            if outcome.similar:
                record["similar"] = [m.to_json() for m in outcome.similar]
            out.emit(record, f"{w.id}\t{outcome.path}")
            for d in outcome.disputes:
                out.note(f"{w.id}: dispute {d.id} opened with {d.work_ids[0]} ({d.reason})")
            for limit in outcome.limits:
                out.note(f"{w.id}: {limit.message}")
            for m in outcome.similar:
                out.note(
                    f"{w.id}: resembles {m.work_id} ({m.stage} stage, score {m.score}): an "
                    "item recognised as one may be recognised as both; if one copies the "
                    f"other, `consentry dispute open {m.work_id} {w.id}`"
                )
    if failed:
        raise UnreadableInputError(f"{failed} of {failed + done} files could not be registered")


@work.command("list")
@click.option("--holder", default=None, help="Only works this party holds.")
@json_option
@pass_app
def work_list(app: AppContext, holder: str | None, as_json: bool) -> None:
    """List works (JSON Lines with --json)."""
    with app.database().read() as session:
        works = list_works(session, holder)
    out = Out(as_json)
    for w in works:
        out.emit(work_json(w), _line(w))


@work.command("show")
@click.argument("work_id")
@json_option
@pass_app
def work_show(app: AppContext, work_id: str, as_json: bool) -> None:
    """Show a work: holders, fingerprints, identifiers, and what recognition cannot do for it."""
    with app.database().read() as session:
        number = get_row(session, WorkRow, "work", work_id).id
        w = load_works(session, [number])[0]

    def human() -> str:
        lines = [_line(w), f"  registered {w.registered_at.isoformat()}"]
        lines += [
            f"  holder {h.party_id} ({h.role}{f', {h.share}%' if h.share else ''})"
            for h in w.holders
        ]
        lines += [f"  {f.kind}[{f.region}] {f.value[:80]}" for f in w.fingerprints]
        lines += [f"  {s}:{v}" for s, v in w.identifiers]
        lines += [f"  limit: {x.message}" for x in limits]
        return "\n".join(lines)

    limits = recognition_limits(w.fingerprints)
    record = work_json(w)
    record["limits"] = [{"code": x.code, "message": x.message} for x in limits]
    Out(as_json).emit(record, human)
