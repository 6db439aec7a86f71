"""SQLAlchemy 2 tables of the tamper-evident log and of the salts behind its commitments.

* ``log_nodes`` holds every *perfect subtree* hash of the RFC 9162 Merkle tree over the
  events journal, keyed by ``(level, index)``: level 0 are the leaf hashes (leaf ``i`` is event
  ``seq = i + 1``), node ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) *
  2**level)``. Appending stores the nodes the new leaf completes, so appending and proving read
  O(log n) rows (:mod:`consentry.ledger.merkle`).
* ``log_checkpoints`` keeps every signed checkpoint (C2SP signed note) the operator issued.
* ``log_meta`` holds the log's origin and the operator's verifier key.
* ``party_secrets`` holds the per-party salt of the commitments that ``party.add`` events carry
  instead of names and e-mail addresses; erasing a person deletes the salt row, after which the
  commitments in the (immutable) log no longer link to anyone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.store.tables import Base, UTCDateTime

__all__ = ["LogCheckpointRow", "LogMetaRow", "LogNodeRow", "PartySecretRow"]


# WITHOUT ROWID: on SQLite the primary key *is* the table, no separate index to maintain.
_WITHOUT_ROWID = {"sqlite_with_rowid": False}


class LogNodeRow(Base):
    """One perfect-subtree hash of the log (level 0: the leaf hashes)."""

    __tablename__ = "log_nodes"
    __table_args__ = _WITHOUT_ROWID
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogCheckpointRow(Base):
    """A signed checkpoint: the tree size, its root and the signed note, as issued."""

    __tablename__ = "log_checkpoints"
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LogMetaRow(Base):
    """Settings of the log fixed at ``consentry init``: ``origin``, ``operator_vkey``."""

    __tablename__ = "log_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class PartySecretRow(Base):
    """The salt of a party's commitments: ``SHA-256(salt || value)`` in hex, per value."""

    __tablename__ = "party_secrets"
    party_id: Mapped[int] = mapped_column(
        ForeignKey("parties.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    """Deleting the party (erasure) deletes its salt with it (ON DELETE CASCADE)."""
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    name_commitment: Mapped[str] = mapped_column(String(64))
    email_commitment: Mapped[str | None] = mapped_column(String(64))
