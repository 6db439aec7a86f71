"""Reading a gate policy from TOML (``--policy FILE``), strictly.

Unknown keys are errors, not ignored: a typo such as ``open_licenses`` must not silently
leave a dataset builder with a different policy than the one they wrote.

Example::

    licensee = "P3"                      # who will train (a party id in the snapshot)
    purpose = "train-genai"              # from the purposes vocabulary
    at = "2026-12-01T00:00:00Z"          # optional; default: when the run starts
    bases = ["grant", "open-licence"]    # "grant" is always on; the others are opt-in
    open_licences = ["CC0-1.0"]          # SPDX ids accepted with the open-licence basis
    owned_tag = "lumen-own"              # provenance value of the licensee's own items
    [fields]                             # item metadata keys the bases read
    license = "license"
    provenance = "provenance"
    source = "source"
    [[collection_licences]]              # contracts covering whole sources
    contract_id = "C-2026-001"
    source = "archive.example"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from consentry.domain.bases import Basis, CollectionLicence, Policy
from consentry.domain.purposes import parse_purpose
from consentry.errors import InvalidInputError
from consentry.registry.timeparse import now, parse_time

__all__ = ["load_policy", "policy_from_mapping", "policy_to_json"]

_KEYS = {
    "licensee",
    "purpose",
    "at",
    "bases",
    "open_licences",
    "owned_tag",
    "fields",
    "collection_licences",
}
_FIELDS = {"license", "provenance", "source"}


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"policy: {where} must be a list of strings")
    return value


def policy_from_mapping(data: Mapping[str, Any], *, default_at: datetime | None = None) -> Policy:
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InvalidInputError(
            f"policy: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})"
        )
    licensee = data.get("licensee")
    if not isinstance(licensee, str) or not licensee.strip():
        raise InvalidInputError("policy: `licensee` (a party id) is required")
    purpose_raw = data.get("purpose")
    if not isinstance(purpose_raw, str):
        raise InvalidInputError("policy: `purpose` is required")
    at_raw = data.get("at")
    if at_raw is None:
        at = default_at or now()
    elif isinstance(at_raw, datetime):
        at = parse_time(at_raw.isoformat())
    elif isinstance(at_raw, str):
        at = parse_time(at_raw)
    else:
        raise InvalidInputError("policy: `at` must be an ISO 8601 time")
    bases: set[Basis] = {Basis.GRANT}
    for name in _strings(data.get("bases", ["grant"]), "bases"):
        try:
            bases.add(Basis(name))
        except ValueError:
            valid = ", ".join(b.value for b in Basis)
            raise InvalidInputError(f"policy: unknown basis {name!r} (known: {valid})") from None
    fields = data.get("fields", {})
    if not isinstance(fields, dict) or set(fields) - _FIELDS:
        raise InvalidInputError(f"policy: [fields] may set only {', '.join(sorted(_FIELDS))}")
    contracts = []
    for entry in data.get("collection_licences", []):
        if not isinstance(entry, dict) or set(entry) != {"contract_id", "source"}:
            raise InvalidInputError(
                "policy: each [[collection_licences]] needs exactly contract_id and source"
            )
        contracts.append(CollectionLicence(str(entry["contract_id"]), str(entry["source"])))
    owned = data.get("owned_tag")
    if owned is not None and not isinstance(owned, str):
        raise InvalidInputError("policy: owned_tag must be a string")
    licences = frozenset(_strings(data.get("open_licences", []), "open_licences"))
    if Basis.OPEN_LICENCE in bases and not licences:
        raise InvalidInputError("policy: basis open-licence needs open_licences = [...]")
    if Basis.OWNED in bases and not owned:
        raise InvalidInputError("policy: basis owned needs owned_tag")
    if Basis.COLLECTION_LICENCE in bases and not contracts:
        raise InvalidInputError("policy: basis collection-licence needs [[collection_licences]]")
    return Policy(
        licensee=licensee.strip().upper(),
        purpose=parse_purpose(purpose_raw),
        at=at,
        bases=frozenset(bases),
        open_licences=licences,
        owned_tag=owned,
        collection_licences=tuple(contracts),
        licence_field=str(fields.get("license", "license")),
        provenance_field=str(fields.get("provenance", "provenance")),
        source_field=str(fields.get("source", "source")),
    )


def load_policy(path: Path, *, default_at: datetime | None = None) -> Policy:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"policy file {path} not found") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"policy file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"policy file {path}: {exc}") from None
    return policy_from_mapping(data, default_at=default_at)


def policy_to_json(policy: Policy) -> dict[str, Any]:
    """The policy as recorded in manifests (and compared on --resume)."""
    return {
        "licensee": policy.licensee,
        "purpose": policy.purpose.value,
        "at": policy.at.isoformat(),
        "bases": sorted(b.value for b in policy.bases),
        "open_licences": sorted(policy.open_licences),
        "owned_tag": policy.owned_tag,
        "collection_licences": [
            {"contract_id": c.contract_id, "source": c.source} for c in policy.collection_licences
        ],
        "fields": {
            "license": policy.licence_field,
            "provenance": policy.provenance_field,
            "source": policy.source_field,
        },
    }
