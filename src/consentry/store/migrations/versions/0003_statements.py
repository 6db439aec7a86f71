"""Public statements: statements, signatures, link tokens, e-mail outbox, operators, audit.

Signatures hold personal data and so live outside the events journal (nothing here is
logged); ``operator_actions`` audits what operators do. The partial unique index
``uq_signatures_live_email`` (pending or validated signatures) makes a duplicate signature
impossible even with several concurrent writers; it is a partial index on SQLite and
PostgreSQL alike.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blocklist",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocklist")),
        sa.UniqueConstraint("kind", "value", name="uq_blocklist_kind_value"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("username", name=op.f("uq_operators_username")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "statements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("languages", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opens_at", sa.DateTime(), nullable=True),
        sa.Column("closes_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("goal", sa.Integer(), nullable=True),
        sa.Column("required_fields", sa.String(length=200), nullable=False),
        sa.Column("rate_limits", sa.Text(), nullable=True),
        sa.Column("signature_count", sa.Integer(), nullable=False),
        sa.Column("count_updated_at", sa.DateTime(), nullable=True),
        sa.Column("last_ordinal", sa.Integer(), nullable=False),
        sa.Column("anonymised_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statements")),
        sa.UniqueConstraint("slug", name=op.f("uq_statements_slug")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("operator", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["statements.id"],
            name=op.f("fk_operator_actions_statement_id_statements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("operator_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_actions_statement_id"), ["statement_id"], unique=False
        )

    op.create_table(
        "operator_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_sessions_operator_id_operators"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_operator_sessions")),
    )
    with op.batch_alter_table("operator_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_sessions_operator_id"), ["operator_id"], unique=False
        )

    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_canonical", sa.String(length=320), nullable=True),
        sa.Column("email_domain", sa.String(length=255), nullable=False),
        sa.Column("show_name", sa.Boolean(), nullable=False),
        sa.Column("occupation", sa.String(length=200), nullable=True),
        sa.Column("country", sa.String(length=100), nullable=True),
        sa.Column("organisation", sa.String(length=200), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("ip_key", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
        sa.Column("invalidated_reason", sa.String(length=200), nullable=True),
        sa.Column("fraud_reason", sa.String(length=64), nullable=True),
        sa.Column("ordinal", sa.Integer(), nullable=True),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("vetted_by", sa.String(length=100), nullable=True),
        sa.Column("vetted_at", sa.DateTime(), nullable=True),
        sa.Column("vet_method", sa.String(length=200), nullable=True),
        sa.Column("vet_note", sa.Text(), nullable=True),
        sa.Column("notice_at", sa.DateTime(), nullable=True),
        sa.Column("erased_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["statement_id"], ["statements.id"], name=op.f("fk_signatures_statement_id_statements")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signatures")),
        sa.UniqueConstraint("statement_id", "ordinal", name="uq_signatures_statement_ordinal"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.create_index("ix_signatures_counting", ["state", "counted"], unique=False)
        batch_op.create_index("ix_signatures_email", ["email_canonical"], unique=False)
        batch_op.create_index(
            "ix_signatures_public", ["statement_id", "state", "kind", "ordinal"], unique=False
        )
        batch_op.create_index(
            "ix_signatures_rate_domain",
            ["statement_id", "email_domain", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_signatures_rate_ip", ["statement_id", "ip_key", "created_at"], unique=False
        )
        batch_op.create_index(
            "uq_signatures_live_email",
            ["statement_id", "email_canonical"],
            unique=True,
            sqlite_where=sa.text(
                "state IN ('pending', 'validated') AND email_canonical IS NOT NULL"
            ),
            postgresql_where=sa.text(
                "state IN ('pending', 'validated') AND email_canonical IS NOT NULL"
            ),
        )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("signature_id", sa.Integer(), nullable=False),
        sa.Column("confirm_nonce", sa.String(length=64), nullable=True),
        sa.Column("withdraw_nonce", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["signature_id"], ["signatures.id"], name=op.f("fk_outbox_signature_id_signatures")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_signature_id"), ["signature_id"], unique=False)

    op.create_table(
        "signature_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("signature_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signatures.id"],
            name=op.f("fk_signature_tokens_signature_id_signatures"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_signature_tokens_token_hash")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("signature_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signature_tokens_signature_id"), ["signature_id"], unique=False
        )


def downgrade() -> None:
    for table in (
        "signature_tokens",
        "outbox",
        "signatures",
        "operator_sessions",
        "operator_actions",
        "statements",
        "operators",
        "blocklist",
    ):
        op.drop_table(table)
