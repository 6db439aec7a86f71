"""Alembic environment: migrations run on a connection the caller passes in.

Consentry runs migrations from code (``consentry init``), never from an ``alembic.ini`` with a
URL in it, so the same settings object decides where the database is.
"""

from __future__ import annotations

from alembic import context

from consentry.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when someone runs `alembic` by hand
    raise RuntimeError("run migrations through `consentry init`, which supplies a connection")

# render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables when needed.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
