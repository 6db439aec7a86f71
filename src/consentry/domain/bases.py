"""Gate policy: which explicit bases, besides a grant, may admit an item. Pure.

The registry's grants are always a basis. A dataset builder may opt in to more: public domain,
named open licences, their own items (a provenance tag), or a collection licence (a contract
covering a named source). These bases only ever apply to items that contain **no registered
work**: an item that contains a registered work is decided by grants alone, whatever its
metadata claims. That closes "licence laundering" (a registered photo relabelled CC-BY on a
re-upload site is still denied without a grant in force).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from consentry.domain.decide import ItemFacts, decide
from consentry.domain.decision import Decision, Evidence, Outcome, Reason
from consentry.domain.purposes import Purpose
from consentry.domain.view import RegistryView

__all__ = ["Basis", "CollectionLicence", "Policy", "basis_of", "decide_with_policy"]

# Licence values (SPDX ids, Creative Commons marks) that mean "public domain".
PUBLIC_DOMAIN_MARKS = frozenset({"public-domain", "pdm", "pdm-1.0", "cc-pddc", "publicdomain"})


class Basis(StrEnum):
    GRANT = "grant"
    PUBLIC_DOMAIN = "public-domain"
    OPEN_LICENCE = "open-licence"
    OWNED = "owned"
    COLLECTION_LICENCE = "collection-licence"


@dataclass(frozen=True, slots=True)
class CollectionLicence:
    """A contract (``contract_id``) covering every item from one named source."""

    contract_id: str
    source: str


@dataclass(frozen=True, slots=True)
class Policy:
    """What the gate admits: a licensee, a purpose, a time, and the accepted bases."""

    licensee: str
    purpose: Purpose
    at: datetime
    bases: frozenset[Basis] = frozenset({Basis.GRANT})
    open_licences: frozenset[str] = frozenset()
    """Accepted SPDX licence ids, compared case-insensitively (e.g. ``CC0-1.0``)."""
    owned_tag: str | None = None
    """Provenance tag value marking the licensee's own items."""
    collection_licences: tuple[CollectionLicence, ...] = ()
    licence_field: str = "license"
    provenance_field: str = "provenance"
    source_field: str = "source"
    extra: Mapping[str, Any] = field(default_factory=dict)


def _text(metadata: Mapping[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _other_basis(metadata: Mapping[str, Any], policy: Policy) -> Evidence | None:
    """The first opt-in basis the item's metadata satisfies, as admit evidence."""
    licence = _text(metadata, policy.licence_field)
    lowered = licence.lower() if licence else None
    if Basis.PUBLIC_DOMAIN in policy.bases and lowered in PUBLIC_DOMAIN_MARKS:
        return Evidence(Reason.BASIS_PUBLIC_DOMAIN, detail=f"{policy.licence_field}={licence}")
    accepted = {name.lower() for name in policy.open_licences}
    if Basis.OPEN_LICENCE in policy.bases and lowered is not None and lowered in accepted:
        return Evidence(Reason.BASIS_OPEN_LICENCE, detail=f"{policy.licence_field}={licence}")
    tag = _text(metadata, policy.provenance_field)
    if Basis.OWNED in policy.bases and policy.owned_tag and tag == policy.owned_tag:
        return Evidence(Reason.BASIS_OWNED, detail=f"{policy.provenance_field}={tag}")
    source = _text(metadata, policy.source_field)
    if Basis.COLLECTION_LICENCE in policy.bases and source is not None:
        for contract in policy.collection_licences:
            if contract.source == source:
                return Evidence(
                    Reason.BASIS_COLLECTION_LICENCE,
                    detail=f"contract {contract.contract_id} covers source {source}",
                )
    return None


def decide_with_policy(
    item: ItemFacts, metadata: Mapping[str, Any], policy: Policy, view: RegistryView
) -> Decision:
    """:func:`decide` under a gate policy; other bases admit only unregistered, readable items."""
    decision = decide(item, policy.licensee, policy.purpose, policy.at, view)
    if decision.admitted or decision.reasons != (Reason.NO_MATCHING_WORK,):
        # Registered content (or unreadable input): grants alone decide. No laundering.
        return decision
    basis = _other_basis(metadata, policy)
    if basis is None:
        return decision
    return Decision(Outcome.ADMIT, (basis.reason,), (*decision.evidence, basis))


def basis_of(decision: Decision) -> Basis | None:
    """Which basis admitted the decision (``None`` for a deny)."""
    if not decision.admitted:
        return None
    return {
        Reason.GRANT_IN_FORCE: Basis.GRANT,
        Reason.BASIS_PUBLIC_DOMAIN: Basis.PUBLIC_DOMAIN,
        Reason.BASIS_OPEN_LICENCE: Basis.OPEN_LICENCE,
        Reason.BASIS_OWNED: Basis.OWNED,
        Reason.BASIS_COLLECTION_LICENCE: Basis.COLLECTION_LICENCE,
    }[decision.reasons[0]]
