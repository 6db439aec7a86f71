"""Consentry: an opt-in consent registry for creative works and the training-data gate.

The public API is what ``__all__`` lists (pinned by ``tests/test_public_api.py``); everything
else is internal and may change. The gate's names load lazily, so ``import consentry`` stays
cheap for code that only needs the domain values.

Example::

    from consentry import Gate
    gate = Gate.from_snapshot("registry.snapshot", policy="policy.toml")
    print(gate.decide(open("photo.jpg", "rb").read()).decision.outcome)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consentry.domain import (
    Decision,
    Evidence,
    ItemFacts,
    MemoryRegistryView,
    Outcome,
    Purpose,
    Reason,
    WorkMatch,
    decide,
)
from consentry.domain.bases import Basis, CollectionLicence, Policy, decide_with_policy
from consentry.errors import (
    ConfigurationError,
    ConflictError,
    ConsentryError,
    DatabaseLockedError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    SchemaVersionError,
    StoreError,
    UnreadableInputError,
    VerificationError,
)

if TYPE_CHECKING:
    from consentry.gate.engine import Gate, GateDecision
    from consentry.gate.item import Item
    from consentry.gate.snapshot import Snapshot

__version__ = "0.1.0"

__all__ = [
    "Basis",
    "CollectionLicence",
    "ConfigurationError",
    "ConflictError",
    "ConsentryError",
    "DatabaseLockedError",
    "Decision",
    "Evidence",
    "Gate",
    "GateDecision",
    "InvalidInputError",
    "Item",
    "ItemFacts",
    "MemoryRegistryView",
    "NotFoundError",
    "Outcome",
    "PermissionDeniedError",
    "Policy",
    "Purpose",
    "Reason",
    "SchemaVersionError",
    "Snapshot",
    "StoreError",
    "UnreadableInputError",
    "VerificationError",
    "WorkMatch",
    "__version__",
    "decide",
    "decide_with_policy",
]

_LAZY = {
    "Gate": "consentry.gate.engine",
    "GateDecision": "consentry.gate.engine",
    "Item": "consentry.gate.item",
    "Snapshot": "consentry.gate.snapshot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'consentry' has no attribute {name!r}")
