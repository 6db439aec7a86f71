"""The registry's storage: tables, the log's tables, the database (engines, migrations).

Importing the package registers every table on :data:`consentry.store.tables.Base.metadata`,
so Alembic and the schema checks see the whole schema.
"""

from consentry.store import log_tables, statement_tables, tables

__all__ = ["log_tables", "statement_tables", "tables"]
