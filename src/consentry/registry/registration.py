"""Registering files in bulk: fingerprint outside transactions, write in chunks.

A directory of thousands of files is registered in chunks of ``chunk_size`` works per
transaction (each file in its own savepoint), so an interrupted run leaves whole works or
nothing, never half a work, and re-running the same command skips what is already registered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from consentry.domain import Dispute, Work
from consentry.errors import ConsentryError, UnreadableInputError
from consentry.fingerprint import fingerprint_all
from consentry.fingerprint.media import detect_media_type
from consentry.registry.files import FileProblem, iter_files, read_file
from consentry.registry.limits import RecognitionLimit, recognition_limits
from consentry.registry.service import HolderSpec, PreparedWork, RegistryService
from consentry.store.database import Database

__all__ = ["RegisterOutcome", "prepare_file", "register_paths"]


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    path: Path
    work: Work | None = None
    disputes: tuple[Dispute, ...] = ()
    error: str | None = None
    #: What the recognisers cannot do for this work (see :mod:`consentry.registry.limits`).
    limits: tuple[RecognitionLimit, ...] = ()


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
) -> Iterator[RegisterOutcome]:
    """Register every file under ``paths``; bad files are reported and skipped."""
    # Fail on bad holders before reading any file: that is a usage error, not a file error.
    with db.write() as session:
        RegistryService(session).holder_rows(holders)

    pending: list[tuple[Path, PreparedWork]] = []

    def flush() -> Iterator[RegisterOutcome]:
        outcomes: list[RegisterOutcome] = []
        with db.write() as session:
            service = RegistryService(session)
            for path, prepared in pending:
                try:
                    with session.begin_nested():
                        reg = service.register_work(prepared, holders)
                    limits = recognition_limits(prepared.fingerprints)
                    outcomes.append(RegisterOutcome(path, reg.work, reg.disputes, limits=limits))
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
        pending.append((entry, prepared))
        if len(pending) >= chunk_size:
            yield from flush()
    if pending:
        yield from flush()
