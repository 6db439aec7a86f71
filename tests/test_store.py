"""The registry database: schema creation and checks, the append-only journal, identifiers that
are never reused, UTC times, and one writer at a time. Runs on every configured backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import StatementError

from consentry.config import Settings
from consentry.domain import PartyKind
from consentry.errors import DatabaseLockedError, SchemaVersionError, StoreError
from consentry.registry.service import RegistryService
from consentry.store.database import Database
from consentry.store.tables import Base, EventRow, PartyRow, UTCDateTime

TABLES = {
    "agreements",
    "alembic_version",
    "disputes",
    "events",
    "fingerprints",
    "grant_works",
    "grants",
    "identifiers",
    "parties",
    "reservations",
    "revocations",
    "work_holders",
    "works",
}


def _add_party(db: Database, name: str = "Ann Author") -> str:
    with db.write() as session:
        return RegistryService(session).add_party(name, None, PartyKind.PERSON).id


# -- schema --------------------------------------------------------------------------------


def test_migrate_creates_every_table_and_stamps_head(settings: Settings) -> None:
    with Database(settings) as db:
        assert not db.initialised()
        head = db.migrate()
        assert db.initialised()
        with db.engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert names >= TABLES
        assert set(Base.metadata.tables) <= names
        assert version == head
        db.check_schema()  # does not raise


def test_migrate_twice_is_a_no_op(db: Database) -> None:
    pid = _add_party(db)
    assert db.migrate() == db.migrate()
    db.check_schema()
    with db.read() as session:
        assert session.scalar(select(PartyRow.id)) == int(pid[1:])


def test_check_schema_refuses_an_uninitialised_database(settings: Settings) -> None:
    with Database(settings) as db, pytest.raises(StoreError, match="consentry init") as info:
        db.check_schema()
    assert not isinstance(info.value, SchemaVersionError)


def test_a_database_from_a_newer_consentry_is_refused(db: Database, settings: Settings) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with Database(settings) as other:
        with pytest.raises(SchemaVersionError, match="newer") as info:
            other.check_schema()
        assert "9999_from_the_future" in str(info.value)
        with pytest.raises(SchemaVersionError, match="newer"):
            other.migrate()
    # migrate() refused before touching anything: the stamp is still the foreign one.
    with db.engine.connect() as conn:
        stamp = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert stamp == "9999_from_the_future"


# -- the append-only journal ---------------------------------------------------------------


def test_events_cannot_be_updated_through_the_orm(db: Database) -> None:
    _add_party(db)
    with pytest.raises(StoreError, match="append-only"):  # noqa: PT012 - the transaction is the unit
        with db.write() as session:
            row = session.scalars(select(EventRow)).one()
            row.kind = "party.forged"
    with db.read() as session:
        assert session.scalars(select(EventRow.kind)).all() == ["party.add"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}'",
        "UPDATE events SET kind = 'x' WHERE seq = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE seq = 1",
    ],
)
def test_events_refuse_raw_update_and_delete(db: Database, statement: str) -> None:
    _add_party(db)
    with pytest.raises(StoreError, match="append-only"), db.write() as session:
        session.execute(text(statement))
    with db.read() as session:
        rows = session.execute(select(EventRow.seq, EventRow.kind, EventRow.payload)).all()
    assert [(seq, kind) for seq, kind, _ in rows] == [(1, "party.add")]
    assert rows[0].payload != "{}"


def test_events_accept_inserts(db: Database) -> None:
    _add_party(db, "Ann")
    _add_party(db, "Bo")
    with db.read() as session:
        seqs = session.scalars(select(EventRow.seq).order_by(EventRow.seq)).all()
    assert seqs == [1, 2]


# -- identifiers ---------------------------------------------------------------------------


def test_ids_are_never_reused_after_the_last_row_is_deleted(db: Database) -> None:
    first = _add_party(db, "Ann")
    last = _add_party(db, "Bo")
    # Parties are referenced by nothing yet (events name them by text), so the row can go.
    with db.write() as session:
        session.execute(text("DELETE FROM parties WHERE id = :n"), {"n": int(last[1:])})
    again = _add_party(db, "Cy")
    assert int(again[1:]) > int(last[1:]) > int(first[1:])


# -- times ---------------------------------------------------------------------------------


def test_utc_datetime_refuses_naive_values() -> None:
    column = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2030, 1, 1), None)  # type: ignore[arg-type]


def test_utc_datetime_stores_utc_and_returns_aware_utc() -> None:
    column = UTCDateTime()
    plus_two = datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    stored = column.process_bind_param(plus_two, None)  # type: ignore[arg-type]
    assert stored == datetime(2030, 1, 1, 10, 0)
    assert stored is not None
    assert stored.tzinfo is None
    back = column.process_result_value(stored, None)  # type: ignore[arg-type]
    assert back == plus_two
    assert back is not None
    assert back.tzinfo is UTC


def test_naive_datetimes_never_reach_the_database(db: Database) -> None:
    naive = datetime.now()
    row = PartyRow(kind="person", name="Ann", verification=0, created_at=naive)
    with pytest.raises(StatementError, match="naive"):
        with db.write() as session:
            session.add(row)
    with db.read() as session:
        assert session.scalar(select(PartyRow.id)) is None


def test_times_round_trip_through_the_database_as_aware_utc(db: Database) -> None:
    when = datetime(2031, 6, 30, 23, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    with db.write() as session:
        RegistryService(session, clock=lambda: when).add_party("Ann", None, PartyKind.PERSON)
    with db.read() as session:
        created = session.scalars(select(PartyRow.created_at)).one()
        event_at = session.scalars(select(EventRow.at)).one()
    for value in (created, event_at):
        assert value == when
        assert value.tzinfo is UTC
        assert value.hour == 4  # 23:30 at UTC-5 is 04:30 UTC the next day


# -- one writer at a time ------------------------------------------------------------------


def _second_writer(settings: Settings, outcome: dict[str, object], done: threading.Event) -> None:
    try:
        with Database(settings) as other, other.write() as session:
            RegistryService(session).add_party("Second", None, PartyKind.PERSON)
        outcome["result"] = "committed"
    except Exception as exc:  # handed back to the test thread
        outcome["result"] = exc
    finally:
        done.set()


def _quick(settings: Settings, timeout: int) -> Settings:
    env = {"CONSENTRY_HOME": str(settings.home), "CONSENTRY_BUSY_TIMEOUT": str(timeout)}
    if not settings.is_sqlite:
        env["CONSENTRY_DATABASE_URL"] = settings.database_url
    loaded = Settings.load(env=env)
    assert loaded.busy_timeout == timeout
    return loaded


def test_writers_queue_behind_a_transaction_that_has_only_read(settings: Settings) -> None:
    """BEGIN IMMEDIATE on SQLite / the advisory lock on PostgreSQL: a write transaction keeps
    the next writer out from its first statement, and the next writer then sees its result."""
    patient = _quick(settings, 30)
    with Database(patient) as db:
        db.migrate()
        outcome: dict[str, object] = {}
        done = threading.Event()
        with db.write() as session:
            assert session.execute(select(PartyRow.id)).all() == []  # only a read so far
            worker = threading.Thread(target=_second_writer, args=(patient, outcome, done))
            worker.start()
            # Not a timing assertion: a second writer that got in would be done by now.
            assert not done.wait(1.5), f"the second writer was not kept out: {outcome}"
            RegistryService(session).add_party("First", None, PartyKind.PERSON)
        assert done.wait(60), "the second writer never got the lock"
        worker.join()
        assert outcome["result"] == "committed"
        with db.read() as session:
            rows = session.execute(select(PartyRow.id, PartyRow.name).order_by(PartyRow.id))
            assert [name for _, name in rows] == ["First", "Second"]


def test_a_second_writer_gives_up_with_database_locked(settings: Settings) -> None:
    """CONSENTRY_BUSY_TIMEOUT is documented for every backend: a writer stuck behind another
    gives up with DatabaseLockedError (one line, exit 1 in the CLI) instead of waiting forever."""
    quick = _quick(settings, 1)
    with Database(quick) as db:
        db.migrate()
        outcome: dict[str, object] = {}
        done = threading.Event()
        with db.write() as session:
            RegistryService(session).add_party("First", None, PartyKind.PERSON)
            worker = threading.Thread(target=_second_writer, args=(quick, outcome, done))
            worker.start()
            # A generous bound, not a timing assertion: the timeout is 1 s.
            gave_up = done.wait(10)
        worker.join(60)
        assert gave_up, "the second writer was still waiting 10 s into a 1 s busy timeout"
        error = outcome["result"]
        assert isinstance(error, DatabaseLockedError), error
        assert "CONSENTRY_BUSY_TIMEOUT" in str(error)
        with db.read() as session:
            assert session.scalars(select(PartyRow.name)).all() == ["First"]
