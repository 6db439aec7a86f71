"""JSON forms of registry values, shared by the CLI, snapshots and reports.

Keys are stable: scripts and other tools parse them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consentry.domain import Dispute, Grant, Party, Reservation, Work

__all__ = ["dispute_json", "grant_json", "party_json", "reservation_json", "time_json", "work_json"]


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
