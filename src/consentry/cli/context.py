"""What every command shares: the settings and the registry database, opened lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from consentry.config import Settings
from consentry.errors import StoreError

if TYPE_CHECKING:  # imported on use: SQLAlchemy and Alembic cost ~0.2 s to import
    from consentry.store.database import Database

__all__ = ["AppContext", "pass_app"]


@dataclass
class AppContext:
    home: str | None
    _settings: Settings | None = field(default=None, init=False)
    _db: Database | None = field(default=None, init=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load(home=self.home)
        return self._settings

    def database(self, *, check: bool = True) -> Database:
        """The registry database; refuses an uninitialised or foreign-version schema."""
        if self._db is None:
            from consentry.store.database import Database

            path = self.settings.sqlite_path
            if check and path is not None and not path.exists():
                raise StoreError(f"no registry at {self.settings.home}; run `consentry init` first")
            self._db = Database(self.settings)
        if check:
            self._db.check_schema()
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


pass_app = click.make_pass_decorator(AppContext)
