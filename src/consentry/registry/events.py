"""Appending to the registry's event journal, in the caller's transaction.

Each change to the registry writes exactly one event in the same transaction as the change, so
the journal and the tables cannot disagree after a crash. Payloads are RFC 8785 canonical JSON
(the tamper-evident log hashes these bytes) and hold identifiers, purposes, times and terms,
never names or e-mail addresses, so erasing a person's data never rewrites history.

Every event is also a leaf of the tamper-evident log (:mod:`consentry.ledger.log`), appended in
the same transaction: leaf ``i`` is event ``seq = i + 1``. The log hands out the index under the
registry's single-writer lock and the event takes ``seq = index + 1`` explicitly, so the two
stay dense and aligned on every backend (PostgreSQL sequences would leave gaps on rollback).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, make_transient_to_detached

from consentry.ledger.canonical import canonical_json
from consentry.ledger.log import append_event_leaf
from consentry.store.tables import EventRow

__all__ = ["record_event"]

_EVENTS: Table = EventRow.__table__  # type: ignore[assignment]  # a declarative class's Table
_INSERT = insert(_EVENTS)


def record_event(
    session: Session, kind: str, subject: str, at: datetime, payload: dict[str, Any]
) -> EventRow:
    """Write the event and its log leaf; return the event as a persistent row.

    Pending changes of the caller are flushed first (autoflush), so they precede the event.
    The row is inserted with a prepared Core statement, not an ORM flush (the journal is the
    hot path of every change), and then attached to the session as already persistent.
    """
    body = {"kind": kind, "subject": subject, "at": at.isoformat(), **payload}
    data: bytes = canonical_json(body)
    session.flush()
    index = append_event_leaf(session, data)
    values = {
        "seq": index + 1,
        "at": at,
        "kind": kind,
        "subject": subject,
        "payload": data.decode("utf-8"),
    }
    session.connection().execute(_INSERT, values)
    row = EventRow(**values)
    make_transient_to_detached(row)
    session.add(row)
    return row
