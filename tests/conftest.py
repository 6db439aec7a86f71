"""Shared fixtures: real registries on SQLite files and, when available, real PostgreSQL.

PostgreSQL tests run when ``CONSENTRY_TEST_POSTGRES_URL`` names a server URL whose user may
create databases (``.ci/run`` starts one and sets it). Each test gets a database of its own,
dropped afterwards. Under CI (``CI=true``) a missing PostgreSQL is an error, not a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from consentry.config import Settings
from consentry.store.database import Database

PG_URL = os.environ.get("CONSENTRY_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if PG_URL else ["sqlite"]
REPO = Path(__file__).resolve().parents[1]


def pytest_report_header() -> str:
    where = PG_URL.rsplit("@", 1)[-1] if PG_URL else "not configured (SQLite only)"
    return f"consentry backends: {', '.join(BACKENDS)}; PostgreSQL: {where}"


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") and not PG_URL:
        raise pytest.UsageError("CI=true but CONSENTRY_TEST_POSTGRES_URL is not set")


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    path = Path(os.environ.get("CONSENTRY_VECTORS", REPO.parent / "shared" / "vectors"))
    if not path.is_dir():
        pytest.fail(f"test vectors not found at {path}; set CONSENTRY_VECTORS")
    return path


def _pg_database() -> Iterator[str]:
    name = f"consentry_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment variables for a fresh, empty registry on each backend."""
    env = {"CONSENTRY_HOME": str(tmp_path / "home")}
    if request.param == "postgres":
        for url in _pg_database():
            env["CONSENTRY_DATABASE_URL"] = url
            yield env
    else:
        yield env


@pytest.fixture
def settings(backend_env: dict[str, str]) -> Settings:
    return Settings.load(env=backend_env)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """An initialised registry database (migrated to head) on each backend."""
    database = Database(settings)
    database.migrate()
    yield database
    database.close()


@pytest.fixture
def cli_env(backend_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the in-process CLI at a fresh registry (not initialised yet)."""
    for key, value in backend_env.items():
        monkeypatch.setenv(key, value)
    if "CONSENTRY_DATABASE_URL" not in backend_env:
        monkeypatch.delenv("CONSENTRY_DATABASE_URL", raising=False)
    return backend_env
