"""What :func:`consentry.domain.decide.decide` may read of the registry.

A view is plain data: the store builds one for the works an item matched, a snapshot holds one
for the whole registry. Keeping it a protocol lets both feed the same pure decision function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from consentry.domain.model import Dispute, Grant, Party, Reservation, Work

__all__ = ["MemoryRegistryView", "RegistryView"]


class RegistryView(Protocol):
    """Read access to the registry for :func:`~consentry.domain.decide.decide`."""

    def work(self, work_id: str) -> Work | None:
        """The work with this id, or ``None`` if the registry has none."""

    def party(self, party_id: str) -> Party | None:
        """The party with this id, or ``None``."""

    def grants_for(self, work: Work) -> Sequence[Grant]:
        """Every grant whose scope covers ``work`` (any licensee, purpose, state)."""

    def reservations_for(self, work: Work) -> Sequence[Reservation]:
        """Every reservation that names ``work`` or all works of one of its holders."""

    def disputes_for(self, work: Work) -> Sequence[Dispute]:
        """Every dispute ``work`` is a party to, open or resolved."""


@dataclass
class MemoryRegistryView:
    """A registry view held in memory (tests, snapshots, per-check views built by the store)."""

    works: dict[str, Work] = field(default_factory=dict)
    parties: dict[str, Party] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        # Grants listing works are indexed by work; catalogue grants by holder, so that a
        # lookup costs the grants that can matter, not all grants of the registry.
        self._by_work: dict[str, list[Grant]] = defaultdict(list)
        self._by_holder: dict[str, list[Grant]] = defaultdict(list)
        for grant in self.grants:
            for work_id in grant.work_ids:
                self._by_work[work_id].append(grant)
            if grant.catalogue is not None:
                self._by_holder[grant.catalogue.holder_id].append(grant)
        self._disputes_by_work: dict[str, list[Dispute]] = defaultdict(list)
        for dispute in self.disputes:
            for work_id in dispute.work_ids:
                self._disputes_by_work[work_id].append(dispute)

    @classmethod
    def of(
        cls,
        *,
        works: Iterable[Work] = (),
        parties: Iterable[Party] = (),
        grants: Iterable[Grant] = (),
        reservations: Iterable[Reservation] = (),
        disputes: Iterable[Dispute] = (),
    ) -> MemoryRegistryView:
        return cls(
            works={w.id: w for w in works},
            parties={p.id: p for p in parties},
            grants=list(grants),
            reservations=list(reservations),
            disputes=list(disputes),
        )

    def work(self, work_id: str) -> Work | None:
        return self.works.get(work_id)

    def party(self, party_id: str) -> Party | None:
        return self.parties.get(party_id)

    def grants_for(self, work: Work) -> Sequence[Grant]:
        seen: dict[str, Grant] = {g.id: g for g in self._by_work.get(work.id, ())}
        for holder_id in work.holder_ids:
            for grant in self._by_holder.get(holder_id, ()):
                if grant.covers_work(work):
                    seen.setdefault(grant.id, grant)
        return sorted(seen.values(), key=lambda g: g.id)

    def reservations_for(self, work: Work) -> Sequence[Reservation]:
        return [r for r in self.reservations if r.applies_to(work)]

    def disputes_for(self, work: Work) -> Sequence[Dispute]:
        return list(self._disputes_by_work.get(work.id, ()))
