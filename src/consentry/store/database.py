"""Opening the registry database: engines, the single-writer rule, migrations, schema checks.

SQLite (the embedded default) runs in WAL mode with foreign keys on. Writers take the database
lock when their transaction *starts* (``BEGIN IMMEDIATE``), so two writers queue instead of one
failing halfway with "database is locked" after it already did work; readers never block.
On PostgreSQL, a transaction-scoped advisory lock serialises writers the same way, which the
append-only log relies on to hand out consecutive sequence numbers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.errors import DatabaseLockedError, SchemaVersionError, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["Database"]

# Arbitrary but fixed: the key of the PostgreSQL advisory lock that serialises writers.
_PG_WRITER_LOCK = 0x436F6E73656E7472  # "Consentr"
_WRITE_OPTION = "consentry_write"


def _alembic_config() -> Config:
    # Alembic is imported only where the schema is checked or migrated: modules that merely
    # name the tables (the gate reading a snapshot, the web workers) need not pay ~0.1 s for it.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "consentry.store:migrations")
    return cfg


def _make_engine(settings: Settings) -> Engine:
    if not settings.is_sqlite:
        return create_engine(settings.database_url, pool_pre_ping=True)
    engine = create_engine(
        settings.database_url,
        connect_args={"timeout": settings.busy_timeout, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to issue (see module doc).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across app crashes
        cur.execute(f"PRAGMA busy_timeout={settings.busy_timeout * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _translate(exc: DBAPIError, settings: Settings) -> StoreError:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    if "locked" in text or "busy" in text or "lock timeout" in text:
        return DatabaseLockedError(
            f"the registry database is locked by another writer (waited "
            f"{settings.busy_timeout}s; raise CONSENTRY_BUSY_TIMEOUT or retry)"
        )
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return StoreError(f"database error: {first_line}")


class Database:
    """The registry database of one home (or one PostgreSQL URL)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.sqlite_path is not None:
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = _make_engine(settings)
        self._writer = self.engine.execution_options(**{_WRITE_OPTION: True})

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------

    def _revisions(self) -> tuple[str | None, str, set[str]]:
        """(current revision in the database, head revision of this code, known revisions)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(_alembic_config())
        known = {rev.revision for rev in script.walk_revisions()}
        head = script.get_current_head()
        assert head is not None  # noqa: S101 - the package always ships migrations
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
        return current, head, known

    def initialised(self) -> bool:
        try:
            with self.engine.connect() as conn:
                has = inspect(conn).has_table("alembic_version")
                conn.rollback()
                return has
        except OperationalError as exc:
            raise _translate(exc, self.settings) from exc

    def migrate(self) -> str:
        """Create or upgrade the schema to this code's head; returns the revision."""
        current, head, known = self._revisions()
        if current is not None and current not in known:
            raise self._newer(current, head)
        with self._writer.begin() as conn:
            if not self.settings.is_sqlite:
                conn.exec_driver_sql(
                    f"SET LOCAL lock_timeout = {self.settings.busy_timeout * 1000}"
                )
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITER_LOCK})")
            from alembic import command

            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return head

    def check_schema(self) -> None:
        """Refuse to work on a database that is not initialised or from another version."""
        if not self.initialised():
            where = self.settings.home if self.settings.is_sqlite else "the database"
            raise StoreError(f"no registry at {where}; run `consentry init` first")
        current, head, known = self._revisions()
        if current not in known:
            raise self._newer(current, head)
        if current != head:
            raise SchemaVersionError(
                f"the registry schema ({current}) is older than this Consentry ({head}); "
                "run `consentry init` to upgrade it"
            )

    @staticmethod
    def _newer(current: str | None, head: str) -> SchemaVersionError:
        return SchemaVersionError(
            f"the registry was written by a newer Consentry (schema {current}; this version "
            f"knows up to {head}); upgrade Consentry"
        )

    # -- sessions ----------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (rolled back at the end)."""
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                try:
                    yield session
                finally:
                    session.rollback()
        except DBAPIError as exc:
            raise _translate(exc, self.settings) from exc

    @contextmanager
    def write(self, *, log: bool = True) -> Iterator[Session]:
        """One write transaction: committed if the block finishes, rolled back otherwise.

        Writers are serialised (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL),
        so each sees the state left by the previous one and the event log has no gaps.
        ``log=False`` is for writes that never touch the event log (statements, signatures,
        the outbox): on PostgreSQL they skip the writers' advisory lock and rely on row locks
        and unique indexes instead, so signing does not queue behind registry writes.
        """
        try:
            with Session(self._writer, expire_on_commit=False) as session, session.begin():
                if not self.settings.is_sqlite:
                    conn = session.connection()
                    # Wait for another writer as long as SQLite would, then give up cleanly.
                    timeout_ms = self.settings.busy_timeout * 1000
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
                    if log:
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITER_LOCK})")
                yield session
        except DBAPIError as exc:
            raise _translate(exc, self.settings) from exc

    @property
    def location(self) -> str:
        if self.settings.is_sqlite:
            return str(Path(self.settings.database_url.removeprefix("sqlite:///")))
        return self.engine.url.render_as_string(hide_password=True)
