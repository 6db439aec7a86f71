"""Settings as data: every knob is declared once here, read from ``CONSENTRY_*`` variables.

The CLI's global options override the environment. :data:`SETTINGS` is the table the docs
test reads, so a setting cannot exist without being documented.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from consentry.errors import ConfigurationError

__all__ = ["SETTINGS", "Setting", "Settings"]


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("CONSENTRY_HOME", "./.consentry", "Registry home: database, keys, indexes."),
    Setting(
        "CONSENTRY_DATABASE_URL",
        "sqlite:///<home>/registry.db",
        "SQLAlchemy URL of the registry database (sqlite:/// or postgresql+psycopg://).",
    ),
    Setting(
        "CONSENTRY_BUSY_TIMEOUT",
        "10",
        "Seconds a writer waits for another writer's lock before giving up.",
    ),
    Setting(
        "CONSENTRY_MAX_FILE_BYTES",
        str(1 << 30),
        "Largest file registered or checked; larger files are refused, not truncated.",
    ),
    Setting(
        "CONSENTRY_LOG_ORIGIN",
        "consentry.local/<8 random hex>",
        "Origin (name) of the tamper-evident log, fixed at `consentry init`; names the key.",
    ),
)


def _int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    busy_timeout: int = 10
    max_file_bytes: int = 1 << 30

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or ``None`` for PostgreSQL / in-memory databases."""
        if not self.is_sqlite:
            return None
        raw = self.database_url.split(":///", 1)[-1]
        return Path(raw) if raw and raw != ":memory:" else None

    @classmethod
    def load(
        cls, *, home: str | Path | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from explicit options first, then the environment, then defaults."""
        env = os.environ if env is None else env
        home_path = Path(home or env.get("CONSENTRY_HOME") or "./.consentry").expanduser()
        url = env.get("CONSENTRY_DATABASE_URL") or f"sqlite:///{home_path / 'registry.db'}"
        if not (url.startswith("sqlite") or url.startswith("postgresql")):
            raise ConfigurationError(
                f"CONSENTRY_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, "
                f"got {url.split(':', 1)[0]}:…"
            )
        return cls(
            home=home_path,
            database_url=url,
            busy_timeout=_int_setting(env, "CONSENTRY_BUSY_TIMEOUT", 10),
            max_file_bytes=_int_setting(env, "CONSENTRY_MAX_FILE_BYTES", 1 << 30),
        )
