"""Initial registry schema: parties, works, holders, fingerprints, grants, events.

The events table is append-only: triggers refuse UPDATE and DELETE on it, on SQLite and
PostgreSQL alike, so that only a deliberate DDL change (which the log's verification will
expose) can rewrite history.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_subject"), ["subject"], unique=False)

    op.create_table(
        "parties",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("verification", sa.Integer(), nullable=False),
        sa.Column("vouched_by", sa.Integer(), nullable=True),
        sa.Column("is_registrar", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vouched_by"], ["parties.id"], name=op.f("fk_parties_vouched_by_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parties")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_parties_email"), ["email"], unique=False)

    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("grantor", sa.Integer(), nullable=False),
        sa.Column("licensee", sa.Integer(), nullable=False),
        sa.Column("purposes", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("catalogue_holder", sa.Integer(), nullable=True),
        sa.Column("include_future", sa.Boolean(), nullable=False),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("expires", sa.DateTime(), nullable=True),
        sa.Column("terms_text", sa.Text(), nullable=False),
        sa.Column("payment", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("min_verification", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["catalogue_holder"], ["parties.id"], name=op.f("fk_grants_catalogue_holder_parties")
        ),
        sa.ForeignKeyConstraint(
            ["grantor"], ["parties.id"], name=op.f("fk_grants_grantor_parties")
        ),
        sa.ForeignKeyConstraint(
            ["licensee"], ["parties.id"], name=op.f("fk_grants_licensee_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_grants_catalogue_holder"), ["catalogue_holder"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_grants_licensee"), ["licensee"], unique=False)

    op.create_table(
        "works",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("title", sa.String(length=1000), nullable=False),
        sa.Column("media_type", sa.String(length=16), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("registered_by", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("void", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registered_by"], ["parties.id"], name=op.f("fk_works_registered_by_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_works")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "agreements",
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_agreements_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_agreements_party_id_parties")
        ),
        sa.PrimaryKeyConstraint("grant_id", "party_id", name=op.f("pk_agreements")),
    )
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("work_a", sa.Integer(), nullable=False),
        sa.Column("work_b", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["parties.id"], name=op.f("fk_disputes_resolved_by_parties")
        ),
        sa.ForeignKeyConstraint(["work_a"], ["works.id"], name=op.f("fk_disputes_work_a_works")),
        sa.ForeignKeyConstraint(["work_b"], ["works.id"], name=op.f("fk_disputes_work_b_works")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disputes_work_a"), ["work_a"], unique=False)
        batch_op.create_index(batch_op.f("ix_disputes_work_b"), ["work_b"], unique=False)

    op.create_table(
        "fingerprints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("work_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("lookup", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_fingerprints_work_id_works")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fingerprints")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.create_index("ix_fingerprints_kind_lookup", ["kind", "lookup"], unique=False)
        batch_op.create_index(batch_op.f("ix_fingerprints_work_id"), ["work_id"], unique=False)

    op.create_table(
        "grant_works",
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("work_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_grant_works_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_grant_works_work_id_works")
        ),
        sa.PrimaryKeyConstraint("grant_id", "work_id", name=op.f("pk_grant_works")),
    )
    with op.batch_alter_table("grant_works", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grant_works_work_id"), ["work_id"], unique=False)

    op.create_table(
        "identifiers",
        sa.Column("work_id", sa.Integer(), nullable=False),
        sa.Column("scheme", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_identifiers_work_id_works")
        ),
        sa.PrimaryKeyConstraint("work_id", "scheme", "value", name=op.f("pk_identifiers")),
    )
    with op.batch_alter_table("identifiers", schema=None) as batch_op:
        batch_op.create_index("ix_identifiers_scheme_value", ["scheme", "value"], unique=False)

    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("by", sa.Integer(), nullable=False),
        sa.Column("work_id", sa.Integer(), nullable=True),
        sa.Column("purposes", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("lifted_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["by"], ["parties.id"], name=op.f("fk_reservations_by_parties")),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_reservations_work_id_works")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reservations_by"), ["by"], unique=False)
        batch_op.create_index(batch_op.f("ix_reservations_work_id"), ["work_id"], unique=False)

    op.create_table(
        "revocations",
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("by", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("effective", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["by"], ["parties.id"], name=op.f("fk_revocations_by_parties")),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_revocations_grant_id_grants")
        ),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_revocations")),
    )
    op.create_table(
        "work_holders",
        sa.Column("work_id", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("share", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_work_holders_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_work_holders_work_id_works")
        ),
        sa.PrimaryKeyConstraint("work_id", "party_id", name=op.f("pk_work_holders")),
    )
    with op.batch_alter_table("work_holders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_holders_party_id"), ["party_id"], unique=False)

    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                "BEGIN SELECT RAISE(ABORT, 'events is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION consentry_events_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'events is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
            "FOR EACH ROW EXECUTE FUNCTION consentry_events_append_only()"
        )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_no_update")
        op.execute("DROP TRIGGER IF EXISTS events_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
        op.execute("DROP FUNCTION IF EXISTS consentry_events_append_only()")


def downgrade() -> None:
    _drop_append_only_triggers()

    with op.batch_alter_table("work_holders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_holders_party_id"))

    op.drop_table("work_holders")
    op.drop_table("revocations")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reservations_work_id"))
        batch_op.drop_index(batch_op.f("ix_reservations_by"))

    op.drop_table("reservations")
    with op.batch_alter_table("identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_identifiers_scheme_value")

    op.drop_table("identifiers")
    with op.batch_alter_table("grant_works", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grant_works_work_id"))

    op.drop_table("grant_works")
    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fingerprints_work_id"))
        batch_op.drop_index("ix_fingerprints_kind_lookup")

    op.drop_table("fingerprints")
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disputes_work_b"))
        batch_op.drop_index(batch_op.f("ix_disputes_work_a"))

    op.drop_table("disputes")
    op.drop_table("agreements")
    op.drop_table("works")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_licensee"))
        batch_op.drop_index(batch_op.f("ix_grants_catalogue_holder"))

    op.drop_table("grants")
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parties_email"))

    op.drop_table("parties")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_subject"))

    op.drop_table("events")
