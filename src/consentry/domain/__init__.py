"""The pure domain: parties, works, holders, grants, purposes and the fail-closed decision."""

from consentry.domain.decide import ItemFacts, decide, grant_failures
from consentry.domain.decision import Decision, Evidence, Outcome, Reason, WorkMatch
from consentry.domain.model import (
    Agreement,
    CatalogueScope,
    Dispute,
    Grant,
    Holder,
    MediaType,
    Party,
    PartyKind,
    PaymentKind,
    Reservation,
    Revocation,
    Terms,
    VerificationLevel,
    Work,
    parse_verification_level,
)
from consentry.domain.purposes import PURPOSES_VERSION, Purpose, parse_purpose
from consentry.domain.view import MemoryRegistryView, RegistryView

__all__ = [
    "PURPOSES_VERSION",
    "Agreement",
    "CatalogueScope",
    "Decision",
    "Dispute",
    "Evidence",
    "Grant",
    "Holder",
    "ItemFacts",
    "MediaType",
    "MemoryRegistryView",
    "Outcome",
    "Party",
    "PartyKind",
    "PaymentKind",
    "Purpose",
    "Reason",
    "RegistryView",
    "Reservation",
    "Revocation",
    "Terms",
    "VerificationLevel",
    "Work",
    "WorkMatch",
    "decide",
    "grant_failures",
    "parse_purpose",
    "parse_verification_level",
]
