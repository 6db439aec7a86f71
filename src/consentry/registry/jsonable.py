"""JSON forms of registry values, shared by the CLI, snapshots and reports.

Keys are stable: scripts and other tools parse them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from consentry.domain import (
    Agreement,
    CatalogueScope,
    Dispute,
    Grant,
    Holder,
    MediaType,
    Party,
    PartyKind,
    PaymentKind,
    Purpose,
    Reservation,
    Revocation,
    Terms,
    Work,
    parse_verification_level,
)
from consentry.fingerprint.base import Fingerprint

__all__ = [
    "dispute_from_json",
    "dispute_json",
    "grant_from_json",
    "grant_json",
    "party_from_json",
    "party_json",
    "reservation_from_json",
    "reservation_json",
    "time_json",
    "work_from_json",
    "work_json",
]


def time_json(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def party_json(p: Party) -> dict[str, Any]:
    return {
        "id": p.id,
        "kind": p.kind.value,
        "name": p.name,
        "email": p.email,
        "verification": p.verification.label,
        "vouched_by": p.vouched_by,
        "registrar": p.is_registrar,
    }


def work_json(w: Work) -> dict[str, Any]:
    return {
        "id": w.id,
        "title": w.title,
        "media_type": w.media_type.value,
        "registered_at": time_json(w.registered_at),
        "created_at": time_json(w.created_at),
        "void": w.void,
        "holders": [
            {
                "party_id": h.party_id,
                "role": h.role,
                "share": str(h.share) if h.share is not None else None,
            }
            for h in w.holders
        ],
        "fingerprints": [
            {"kind": f.kind, "region": f.region, "value": f.value} for f in w.fingerprints
        ],
        "identifiers": [{"scheme": s, "value": v} for s, v in w.identifiers],
    }


def grant_json(g: Grant) -> dict[str, Any]:
    return {
        "id": g.id,
        "grantor": g.grantor,
        "licensee": g.licensee,
        "purposes": sorted(p.value for p in g.purposes),
        "created_at": time_json(g.created_at),
        "works": sorted(g.work_ids, key=lambda w: int(w[1:])),
        "catalogue": (
            {"holder": g.catalogue.holder_id, "include_future": g.catalogue.include_future}
            if g.catalogue
            else None
        ),
        "not_before": time_json(g.not_before),
        "expires": time_json(g.expires),
        "terms": {
            "text": g.terms.text,
            "payment": g.terms.payment.value,
            "amount": str(g.terms.amount) if g.terms.amount is not None else None,
            "currency": g.terms.currency,
        },
        "min_verification": g.min_verification.label,
        "agreements": [{"party_id": a.party_id, "at": time_json(a.at)} for a in g.agreements],
        "revocation": (
            {
                "by": g.revocation.by,
                "at": time_json(g.revocation.at),
                "effective": time_json(g.revocation.effective),
                "reason": g.revocation.reason,
            }
            if g.revocation
            else None
        ),
    }


def reservation_json(r: Reservation) -> dict[str, Any]:
    return {
        "id": r.id,
        "by": r.by,
        "work_id": r.work_id,
        "purposes": sorted(p.value for p in r.purposes),
        "created_at": time_json(r.created_at),
        "lifted_at": time_json(r.lifted_at),
    }


def dispute_json(d: Dispute) -> dict[str, Any]:
    return {
        "id": d.id,
        "works": list(d.work_ids),
        "opened_at": time_json(d.opened_at),
        "reason": d.reason,
        "resolved_at": time_json(d.resolved_at),
        "resolution": d.resolution,
    }


# -- back from JSON (snapshots) ----------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _decimal(value: Any) -> Decimal | None:
    return Decimal(value) if value is not None else None


def party_from_json(d: dict[str, Any]) -> Party:
    return Party(
        id=d["id"],
        kind=PartyKind(d["kind"]),
        name=d["name"],
        email=d.get("email"),
        verification=parse_verification_level(d["verification"]),
        vouched_by=d.get("vouched_by"),
        is_registrar=bool(d.get("registrar", False)),
    )


def work_from_json(d: dict[str, Any]) -> Work:
    registered = _time(d["registered_at"])
    assert registered is not None  # noqa: S101 - required field, validated by the schema
    return Work(
        id=d["id"],
        title=d["title"],
        media_type=MediaType(d["media_type"]),
        registered_at=registered,
        holders=tuple(
            Holder(h["party_id"], h["role"], _decimal(h.get("share"))) for h in d["holders"]
        ),
        fingerprints=tuple(
            Fingerprint(f["kind"], f["value"], f["region"]) for f in d.get("fingerprints", [])
        ),
        identifiers=tuple((i["scheme"], i["value"]) for i in d.get("identifiers", [])),
        created_at=_time(d.get("created_at")),
        void=bool(d.get("void", False)),
    )


def grant_from_json(d: dict[str, Any]) -> Grant:
    created = _time(d["created_at"])
    assert created is not None  # noqa: S101 - required field
    cat = d.get("catalogue")
    rev = d.get("revocation")
    terms = d.get("terms") or {}
    revocation = None
    if rev:
        at, effective = _time(rev["at"]), _time(rev["effective"])
        assert at is not None  # noqa: S101 - required field
        assert effective is not None  # noqa: S101 - required field
        revocation = Revocation(rev["by"], at, effective, rev.get("reason", ""))
    return Grant(
        id=d["id"],
        grantor=d["grantor"],
        licensee=d["licensee"],
        purposes=frozenset(Purpose(p) for p in d["purposes"]),
        created_at=created,
        work_ids=frozenset(d.get("works", [])),
        catalogue=CatalogueScope(cat["holder"], bool(cat["include_future"])) if cat else None,
        not_before=_time(d.get("not_before")),
        expires=_time(d.get("expires")),
        terms=Terms(
            terms.get("text", ""),
            PaymentKind(terms.get("payment", "free")),
            _decimal(terms.get("amount")),
            terms.get("currency"),
        ),
        min_verification=parse_verification_level(d.get("min_verification", "unverified")),
        agreements=tuple(
            Agreement(a["party_id"], datetime.fromisoformat(a["at"])) for a in d["agreements"]
        ),
        revocation=revocation,
    )


def reservation_from_json(d: dict[str, Any]) -> Reservation:
    return Reservation(
        id=d["id"],
        by=d["by"],
        purposes=frozenset(Purpose(p) for p in d["purposes"]),
        created_at=datetime.fromisoformat(d["created_at"]),
        work_id=d.get("work_id"),
        lifted_at=_time(d.get("lifted_at")),
    )


def dispute_from_json(d: dict[str, Any]) -> Dispute:
    a, b = d["works"]
    return Dispute(
        id=d["id"],
        work_ids=(a, b),
        opened_at=datetime.fromisoformat(d["opened_at"]),
        reason=d["reason"],
        resolved_at=_time(d.get("resolved_at")),
        resolution=d.get("resolution"),
    )
