"""``consentry status`` and ``consentry check``: who may use what, and may this file be used."""

from __future__ import annotations

from datetime import datetime

import click

from consentry.cli.context import AppContext, pass_app
from consentry.cli.options import PURPOSE_CHOICE
from consentry.cli.output import Out, json_option
from consentry.cli.progress import progress
from consentry.domain import parse_purpose
from consentry.registry.jsonable import dispute_json, reservation_json, time_json
from consentry.registry.queries import (
    check_files,
    match_files,
    registry_matchers,
    work_status,
)
from consentry.registry.timeparse import now, parse_time

__all__ = ["check", "match", "status"]


def _at(value: str | None) -> datetime:
    return parse_time(value) if value else now()


@click.command()
@click.argument("work_id")
@click.option("--at", "at", default=None, help="Time to judge at (ISO 8601; default now).")
@json_option
@pass_app
def status(app: AppContext, work_id: str, at: str | None, as_json: bool) -> None:
    """Who may use a work for what, now (or --at a time), and what blocks it."""
    when = _at(at)
    with app.database().read() as session:
        st = work_status(session, work_id, when)
    obj = {
        "work_id": st.work.id,
        "at": time_json(st.at),
        "void": st.work.void,
        "grants": [
            {
                "grant_id": g.grant.id,
                "licensee": g.grant.licensee,
                "purposes": sorted(p.value for p in g.grant.purposes),
                "state": g.state,
                "detail": list(g.detail),
            }
            for g in st.grants
        ],
        "reservations": [reservation_json(r) for r in st.reservations],
        "disputes": [dispute_json(d) for d in st.disputes],
    }

    def human() -> str:
        lines = [f"{st.work.id} {st.work.title!r} at {st.at.isoformat()}"]
        if st.work.void:
            lines.append("  VOID: registration voided by a dispute resolution")
        for d in st.disputes:
            lines.append(f"  DISPUTED ({d.id}): no grant counts while it is open")
        for r in st.reservations:
            purposes = ",".join(sorted(p.value for p in r.purposes))
            lines.append(f"  RESERVED by {r.by} for {purposes} ({r.id})")
        if not st.grants:
            lines.append("  no grants: nobody may use this work")
        for g in st.grants:
            purposes = ",".join(sorted(p.value for p in g.grant.purposes))
            lines.append(f"  {g.grant.id}: {g.grant.licensee} for {purposes}: {g.state}")
            lines += [f"      {d}" for d in g.detail if d]
        return "\n".join(lines)

    Out(as_json).emit(obj, human)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--licensee", required=True, help="Party id of the would-be user.")
@click.option("--purpose", required=True, type=PURPOSE_CHOICE, help="Intended purpose.")
@click.option("--at", "at", default=None, help="Time of use (ISO 8601; default now).")
@json_option
@pass_app
def check(
    app: AppContext,
    paths: tuple[str, ...],
    licensee: str,
    purpose: str,
    at: str | None,
    as_json: bool,
) -> None:
    """Decide, per file, whether the licensee may use it for the purpose (admit / deny + why).

    Denials are answers, not failures: the command exits 0 whatever it decides.
    """
    when = _at(at)
    out = Out(as_json)
    db = app.database()
    with db.read() as session, progress("checking") as bar:
        for result in check_files(
            session,
            paths,
            matchers=registry_matchers(session, db.settings.home),
            licensee=licensee,
            purpose=parse_purpose(purpose),
            at=when,
            max_bytes=db.settings.max_file_bytes,
        ):
            bar.advance()
            decision = result.decision
            assert decision is not None  # noqa: S101 - check_files always decides
            obj = {"path": str(result.path), **decision.to_json()}
            reasons = ", ".join(r.value for r in decision.reasons)
            grants = sorted({e.grant_id for e in decision.evidence if e.grant_id})
            via = f" via {', '.join(grants)}" if decision.admitted and grants else ""
            out.emit(obj, f"{decision.outcome.value}\t{result.path}\t{reasons}{via}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@json_option
@pass_app
def match(app: AppContext, paths: tuple[str, ...], as_json: bool) -> None:
    """Recognition only: which registered works each file contains (no decision).

    One result per file, matches best first with score and the stage that matched; an empty
    list when nothing matches at the operating threshold. Unreadable files get an ``error``.
    """
    out = Out(as_json)
    db = app.database()
    with db.read() as session, progress("matching") as bar:
        matchers = registry_matchers(session, db.settings.home)
        for result in match_files(session, paths, db.settings.max_file_bytes, matchers):
            bar.advance()
            facts = result.facts
            obj: dict[str, object] = {
                "path": str(result.path),
                "matches": [m.to_json() for m in facts.matches],
            }
            if facts.unreadable is not None:
                obj["error"] = facts.unreadable
            found = ", ".join(f"{m.work_id} ({m.stage} {m.score:.2f})" for m in facts.matches)
            human = f"{result.path}\t{found or facts.unreadable or 'no registered work'}"
            out.emit(obj, human)
