"""Reading the registry: listings, a work's status, recognition and decisions for files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from consentry.domain import (
    Decision,
    Dispute,
    Grant,
    ItemFacts,
    Party,
    Purpose,
    Reservation,
    Work,
    WorkMatch,
    decide,
    grant_failures,
)
from consentry.domain.decide import best_matches
from consentry.domain.view import RegistryView
from consentry.errors import UnreadableInputError
from consentry.fingerprint import fingerprint_all
from consentry.fingerprint.base import Fingerprint
from consentry.fingerprint.media import detect_media_type
from consentry.index.base import Matcher
from consentry.registry.files import FileProblem, iter_files, read_file
from consentry.registry.ids import format_id, parse_id
from consentry.registry.indexes import open_indexes
from consentry.registry.mapping import (
    build_view,
    dispute_from_row,
    get_row,
    load_grants,
    load_works,
    party_from_row,
)
from consentry.registry.service import fingerprint_lookup
from consentry.store.tables import (
    DisputeRow,
    FingerprintRow,
    GrantRow,
    GrantWorkRow,
    PartyRow,
    WorkHolderRow,
    WorkRow,
)

__all__ = [
    "ExactMatcher",
    "FileCheck",
    "GrantStatus",
    "Matcher",
    "WorkStatus",
    "check_files",
    "list_disputes",
    "list_grants",
    "list_parties",
    "list_works",
    "match_files",
    "registry_matchers",
    "work_status",
]


def list_parties(session: Session) -> list[Party]:
    return [party_from_row(r) for r in session.scalars(select(PartyRow).order_by(PartyRow.id))]


def list_works(session: Session, holder: str | None = None) -> list[Work]:
    query = select(WorkRow.id).order_by(WorkRow.id)
    if holder is not None:
        number = get_row(session, PartyRow, "party", holder).id
        query = query.join(WorkHolderRow, WorkHolderRow.work_id == WorkRow.id).where(
            WorkHolderRow.party_id == number
        )
    return load_works(session, session.scalars(query))


def list_grants(
    session: Session, *, work: str | None = None, party: str | None = None
) -> list[Grant]:
    query = select(GrantRow.id).order_by(GrantRow.id)
    if work is not None:
        number = get_row(session, WorkRow, "work", work).id
        query = query.outerjoin(GrantWorkRow, GrantWorkRow.grant_id == GrantRow.id).where(
            GrantWorkRow.work_id == number
        )
    if party is not None:
        number = get_row(session, PartyRow, "party", party).id
        query = query.where(
            or_(
                GrantRow.grantor == number,
                GrantRow.licensee == number,
                GrantRow.catalogue_holder == number,
            )
        )
    return load_grants(session, session.scalars(query.distinct()))


def list_disputes(session: Session, *, open_only: bool = False) -> list[Dispute]:
    query = select(DisputeRow).order_by(DisputeRow.id)
    if open_only:
        query = query.where(DisputeRow.resolved_at.is_(None))
    return [dispute_from_row(d) for d in session.scalars(query)]


# -- status --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrantStatus:
    grant: Grant
    state: str
    """``in-force`` or the reason codes that keep it from counting, joined by commas."""
    detail: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkStatus:
    work: Work
    at: datetime
    grants: tuple[GrantStatus, ...]
    reservations: tuple[Reservation, ...]
    disputes: tuple[Dispute, ...]


def work_status(session: Session, work_id: str, at: datetime) -> WorkStatus:
    """Who may use the work for what at ``at``: every grant with its state, and what blocks."""
    number = get_row(session, WorkRow, "work", work_id).id
    view = build_view(session, [number])
    work = view.works[format_id("work", number)]
    statuses = []
    for grant in view.grants_for(work):
        # Judge the grant for its own licensee and purposes: what remains is its state.
        purpose = min(grant.purposes)
        failures = grant_failures(grant, work, grant.licensee, purpose, at, view)
        if grant.created_at > at:
            statuses.append(GrantStatus(grant, "not-recorded-yet", ()))
            continue
        state = ",".join(sorted({f.reason.value for f in failures})) or "in-force"
        statuses.append(GrantStatus(grant, state, tuple(f.detail for f in failures)))
    return WorkStatus(
        work=work,
        at=at,
        grants=tuple(statuses),
        reservations=tuple(r for r in view.reservations_for(work) if r.active(at)),
        disputes=tuple(d for d in view.disputes_for(work) if d.open_at(at)),
    )


# -- recognition and checks ------------------------------------------------------------------


class ExactMatcher:
    """Byte-identical copies, by SHA-256 lookup in the registry's fingerprint table."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def match(self, fingerprints: Sequence[Fingerprint]) -> list[WorkMatch]:
        keys = [fingerprint_lookup(f.value) for f in fingerprints if f.kind == "sha256"]
        if not keys:
            return []
        rows = self.session.scalars(
            select(FingerprintRow.work_id)
            .where(FingerprintRow.kind == "sha256", FingerprintRow.lookup.in_(keys))
            .distinct()
            .order_by(FingerprintRow.work_id)
        )
        return [WorkMatch(format_id("work", n), 1.0, "exact") for n in rows]


def registry_matchers(session: Session, home: Path) -> list[Matcher]:
    """Exact matching plus every match index of the home, brought up to date."""
    return [ExactMatcher(session), *open_indexes(session, home)]


@dataclass(frozen=True, slots=True)
class FileCheck:
    path: Path
    facts: ItemFacts
    decision: Decision | None = None


def _facts_for(path: Path, max_bytes: int, matchers: Sequence[Matcher]) -> ItemFacts:
    try:
        data = read_file(path, max_bytes)
        media = detect_media_type(data, path.name)
        prints = fingerprint_all(data, media.value, query=True)
    except UnreadableInputError as exc:
        return ItemFacts(str(path), unreadable=str(exc))
    matches = [m for matcher in matchers for m in matcher.match(prints)]
    return ItemFacts(str(path), tuple(best_matches(matches)))


def match_files(
    session: Session,
    paths: Iterable[str | Path],
    max_bytes: int,
    matchers: Sequence[Matcher] | None = None,
) -> Iterator[FileCheck]:
    """Recognition only: which registered works each file contains."""
    active = list(matchers) if matchers is not None else [ExactMatcher(session)]
    for entry in iter_files(paths):
        if isinstance(entry, FileProblem):
            facts = ItemFacts(str(entry.path), unreadable=f"{entry.path}: {entry.message}")
            yield FileCheck(entry.path, facts)
            continue
        yield FileCheck(entry, _facts_for(entry, max_bytes, active))


def check_files(
    session: Session,
    paths: Iterable[str | Path],
    *,
    licensee: str,
    purpose: Purpose,
    at: datetime,
    max_bytes: int,
    matchers: Sequence[Matcher] | None = None,
) -> Iterator[FileCheck]:
    """A decision per file: recognise, then :func:`decide` on a view of the matched works."""
    licensee_id = format_id("party", get_row(session, PartyRow, "party", licensee).id)
    for checked in match_files(session, paths, max_bytes, matchers):
        numbers = [parse_id("work", m.work_id) for m in checked.facts.matches]
        view: RegistryView = build_view(session, numbers)
        decision = decide(checked.facts, licensee_id, purpose, at, view)
        yield FileCheck(checked.path, checked.facts, decision)
