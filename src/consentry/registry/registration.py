"""Registering files in bulk: fingerprint outside transactions, write in chunks.

A directory of thousands of files is registered in chunks of ``chunk_size`` works per
transaction (each file in its own savepoint), so an interrupted run leaves whole works or
nothing, never half a work, and re-running the same command skips what is already registered.

Each new work is also matched against the home's indexes as they stood when the batch began
(``similar``): a registered work it resembles — a copy registered by someone else, or another
picture of the same subject, which recognition cannot tell apart (two photographs of the
full Moon) — is reported with the outcome, so that the holders can open a dispute or know
that an item recognised as one may be recognised as both. Works of the same batch are not
compared with each other (that would rebuild the indexes' delta segments file by file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.domain import Dispute, Work, WorkMatch
from consentry.domain.decide import best_matches
from consentry.errors import ConsentryError, UnreadableInputError
from consentry.fingerprint import fingerprint_all
from consentry.fingerprint.media import detect_media_type
from consentry.index import WorkIndex
from consentry.registry.files import FileProblem, iter_files, read_file
from consentry.registry.ids import parse_id
from consentry.registry.indexes import open_indexes
from consentry.registry.limits import RecognitionLimit, recognition_limits
from consentry.registry.service import HolderSpec, PreparedWork, RegistryService
from consentry.store.database import Database
from consentry.store.tables import WorkRow

__all__ = ["RegisterOutcome", "prepare_file", "register_paths"]


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    path: Path
    work: Work | None = None
    disputes: tuple[Dispute, ...] = ()
    error: str | None = None
    #: What the recognisers cannot do for this work (see :mod:`consentry.registry.limits`).
    limits: tuple[RecognitionLimit, ...] = ()
    #: Registered works this one resembles, best first (see the module docstring).
    similar: tuple[WorkMatch, ...] = ()


def prepare_file(
    path: Path,
    max_bytes: int,
    *,
    title: str | None = None,
    identifiers: Sequence[tuple[str, str]] = (),
) -> PreparedWork:
    data = read_file(path, max_bytes)
    media = detect_media_type(data, path.name)
    prints = fingerprint_all(data, media.value)
    return PreparedWork(
        title=title or path.stem,
        media_type=media,
        size_bytes=len(data),
        fingerprints=tuple(prints),
        identifiers=tuple(identifiers),
    )


def register_paths(
    db: Database,
    paths: Iterable[str | Path],
    holders: Sequence[HolderSpec],
    *,
    title: str | None = None,
    identifiers: Sequence[tuple[str, str]] = (),
    chunk_size: int = 200,
    similar: bool = True,
) -> Iterator[RegisterOutcome]:
    """Register every file under ``paths``; bad files are reported and skipped.

    ``similar``: match each new work against the registered ones first (see the module
    docstring); off, a large import skips that cost.
    """
    # Fail on bad holders before reading any file: that is a usage error, not a file error.
    with db.write() as session:
        RegistryService(session).holder_rows(holders)
    indexes: list[WorkIndex] = []
    if similar:
        with db.read() as session:
            indexes = open_indexes(session, db.settings.home)

    pending: list[tuple[Path, PreparedWork, tuple[WorkMatch, ...]]] = []

    def flush() -> Iterator[RegisterOutcome]:
        outcomes: list[RegisterOutcome] = []
        with db.write() as session:
            service = RegistryService(session)
            for path, prepared, resembles in pending:
                try:
                    with session.begin_nested():
                        reg = service.register_work(prepared, holders)
                    limits = recognition_limits(prepared.fingerprints)
                    disputed = {w for d in reg.disputes for w in d.work_ids}  # told already
                    live = _not_void(
                        session, tuple(m for m in resembles if m.work_id not in disputed)
                    )
                    outcomes.append(
                        RegisterOutcome(path, reg.work, reg.disputes, limits=limits, similar=live)
                    )
                except ConsentryError as exc:
                    outcomes.append(RegisterOutcome(path, error=f"{path}: {exc}"))
        pending.clear()
        yield from outcomes

    for entry in iter_files(paths):
        if isinstance(entry, FileProblem):
            yield RegisterOutcome(entry.path, error=f"{entry.path}: {entry.message}")
            continue
        try:
            prepared = prepare_file(
                entry, db.settings.max_file_bytes, title=title, identifiers=identifiers
            )
        except UnreadableInputError as exc:
            yield RegisterOutcome(entry, error=str(exc))
            continue
        # Registration's fingerprints, not a query's: without a query's working copy the
        # image index confirms nothing by aligned pixels, so only close codes (<= 16 bits) or
        # >= 24 keypoint inliers count: a resemblance reported is a strong one.
        resembles = tuple(
            best_matches([m for index in indexes for m in index.match(prepared.fingerprints)])
        )
        pending.append((entry, prepared, resembles))
        if len(pending) >= chunk_size:
            yield from flush()
    if pending:
        yield from flush()


def _not_void(session: Session, matches: tuple[WorkMatch, ...]) -> tuple[WorkMatch, ...]:
    """The matches whose work is still registered (indexes keep voided works)."""
    if not matches:
        return ()
    numbers = {parse_id("work", m.work_id) for m in matches}
    live = set(
        session.scalars(select(WorkRow.id).where(WorkRow.id.in_(numbers), WorkRow.void.is_(False)))
    )
    return tuple(m for m in matches if parse_id("work", m.work_id) in live)
