"""Match indexes: fingerprints of registered works in, candidate works for a query out.

An index is a derived cache of the registry's ``fingerprints`` table. It records a watermark
(the highest fingerprint row it has absorbed), so the registry can bring it up to date
incrementally after registrations, rebuild it from scratch at any time, and copy it into a
snapshot for the offline gate. Indexes never decide anything: they say which registered works
an item appears to contain, with a score and the stage that matched. (Voided works stay in
an index; :func:`consentry.domain.decide` ignores them.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from consentry.domain.decision import WorkMatch
from consentry.fingerprint.base import Fingerprint

__all__ = ["Matcher", "WorkIndex", "WorkIndexFactory"]


class Matcher(Protocol):
    """Anything that finds registered works from an item's fingerprints."""

    def match(self, fingerprints: Sequence[Fingerprint]) -> list[WorkMatch]: ...


class WorkIndex(Protocol):
    """One family of recognition (perceptual image hashes, text containment, ...)."""

    @property
    def name(self) -> str:
        """Stable name; also the index's folder name inside a home or snapshot."""

    @property
    def kinds(self) -> frozenset[str]:
        """Fingerprint kinds this index absorbs and queries with."""

    @property
    def watermark(self) -> int:
        """Highest registry fingerprint row id absorbed (0 when empty)."""

    def add(self, work_id: str, fingerprints: Sequence[Fingerprint], row_id: int) -> None:
        """Absorb a registered work's fingerprints of this index's kinds (row_id: watermark)."""

    def match(self, fingerprints: Sequence[Fingerprint]) -> list[WorkMatch]:
        """Registered works the query fingerprints point to, best first, at operating threshold."""

    def save(self, directory: Path) -> None:
        """Persist atomically into ``directory`` (created if needed)."""


class WorkIndexFactory(Protocol):
    """Creates an empty index or loads a saved one (memory-mapped where the format allows)."""

    name: str

    def create(self) -> WorkIndex: ...

    def load(self, directory: Path) -> WorkIndex: ...
