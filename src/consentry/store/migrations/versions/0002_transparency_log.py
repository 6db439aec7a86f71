"""Transparency log: Merkle nodes, signed checkpoints, log settings, party salts.

Creates ``log_nodes`` (perfect-subtree hashes keyed by level and index; level 0 holds the leaf
hashes of the events journal, leaf ``i`` being event ``seq = i + 1``), ``log_checkpoints``,
``log_meta`` and ``party_secrets``, then builds the log over the events already in the journal
so that every event, old or new, is a leaf. The origin and the operator key are chosen by
``consentry init`` after the migration (they live partly outside the database).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from consentry.errors import StoreError
from consentry.ledger.merkle import CompactRange, leaf_hash

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_log_nodes")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_log_checkpoints")),
    )
    op.create_table(
        "log_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_log_meta")),
    )
    op.create_table(
        "party_secrets",
        sa.Column("party_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("name_commitment", sa.String(length=64), nullable=False),
        sa.Column("email_commitment", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["party_id"],
            ["parties.id"],
            name=op.f("fk_party_secrets_party_id_parties"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("party_id", name=op.f("pk_party_secrets")),
    )
    _build_log_over_existing_events()


def _build_log_over_existing_events() -> None:
    """Make every event already in the journal a leaf, in ``seq`` order (leaf = seq - 1).

    Streams the journal with a compact range (O(log n) memory) and inserts in batches. The
    log's index is ``seq - 1``, so a journal with gaps in ``seq`` cannot be logged faithfully:
    the migration refuses it rather than inventing a numbering.
    """
    conn = op.get_bind()
    events = sa.table("events", sa.column("seq", sa.Integer), sa.column("payload", sa.Text))
    nodes = sa.table(
        "log_nodes",
        sa.column("level", sa.Integer),
        sa.column("index", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    frontier = CompactRange()
    pending: list[dict[str, object]] = []
    last_seq = 0
    while True:
        rows = conn.execute(
            sa.select(events.c.seq, events.c.payload)
            .where(events.c.seq > last_seq)
            .order_by(events.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for seq, payload in rows:
            if seq != frontier.size + 1:
                raise StoreError(
                    f"the events journal has a gap before seq {seq} (expected"
                    f" {frontier.size + 1}); the log cannot number it as seq - 1"
                )
            for level, index, hash_ in frontier.append(leaf_hash(payload.encode("utf-8"))):
                pending.append({"level": level, "index": index, "hash": hash_})
            last_seq = seq
        conn.execute(sa.insert(nodes), pending)
        pending.clear()


def downgrade() -> None:
    op.drop_table("party_secrets")
    op.drop_table("log_meta")
    op.drop_table("log_checkpoints")
    op.drop_table("log_nodes")
