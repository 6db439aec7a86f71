"""Keeping the home's match indexes up to date with the registry's fingerprints.

Indexes are derived data stored under ``<home>/index/<name>/``. Each records the highest
fingerprint row it absorbed; :func:`open_indexes` loads them and absorbs any newer rows before
matching, so a crash between a registration and an index save only costs a catch-up, and
``rebuild=True`` recreates them from the database alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.fingerprint.base import Fingerprint
from consentry.index import WorkIndex, WorkIndexFactory, default_index_factories
from consentry.registry.ids import format_id
from consentry.store.tables import FingerprintRow

__all__ = ["index_dir", "open_indexes"]

_BATCH = 5000


def index_dir(home: Path) -> Path:
    return home / "index"


def _catch_up(session: Session, index: WorkIndex) -> bool:
    """Absorb fingerprint rows newer than the index's watermark; True if anything changed."""
    changed = False
    while True:
        rows = session.execute(
            select(
                FingerprintRow.id,
                FingerprintRow.work_id,
                FingerprintRow.kind,
                FingerprintRow.region,
                FingerprintRow.value,
            )
            .where(FingerprintRow.id > index.watermark, FingerprintRow.kind.in_(index.kinds))
            .order_by(FingerprintRow.work_id, FingerprintRow.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return changed
        # Rows of one work arrive together (registration writes them in one transaction),
        # and ids grow with work ids, so ordering by work keeps the watermark monotone.
        for work_number, group in groupby(rows, key=lambda r: r.work_id):
            items = list(group)
            prints = [Fingerprint(r.kind, r.value, r.region) for r in items]
            index.add(format_id("work", work_number), prints, max(r.id for r in items))
        changed = True


def open_indexes(
    session: Session,
    home: Path,
    *,
    factories: Sequence[WorkIndexFactory] | None = None,
    rebuild: bool = False,
) -> list[WorkIndex]:
    """The home's indexes, brought up to date with the database (and saved if they moved)."""
    out: list[WorkIndex] = []
    for factory in factories if factories is not None else default_index_factories():
        folder = index_dir(home) / factory.name
        if rebuild and folder.exists():
            shutil.rmtree(folder)
        index = factory.load(folder) if folder.exists() else factory.create()
        # An index read from an older on-disk format is converted on every load until it is
        # written again; a home owns its folder, so upgrade it now (snapshots stay as signed).
        if _catch_up(session, index) or getattr(index, "outdated", False):
            index.save(folder)
        out.append(index)
    return out
