"""Appending to the registry's event journal, in the caller's transaction.

Each change to the registry writes exactly one event in the same transaction as the change, so
the journal and the tables cannot disagree after a crash. Payloads are RFC 8785 canonical JSON
(the tamper-evident log hashes these bytes) and hold identifiers, purposes, times and terms,
never names or e-mail addresses, so erasing a person's data never rewrites history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy.orm import Session

from consentry.store.tables import EventRow

__all__ = ["record_event"]


def record_event(
    session: Session, kind: str, subject: str, at: datetime, payload: dict[str, Any]
) -> EventRow:
    body = {"kind": kind, "subject": subject, "at": at.isoformat(), **payload}
    row = EventRow(at=at, kind=kind, subject=subject, payload=rfc8785.dumps(body).decode("utf-8"))
    session.add(row)
    session.flush()
    return row
