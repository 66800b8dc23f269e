"""What every subcommand gets: the service's wiring, built on first use from the env."""

from __future__ import annotations

import click
from sqlalchemy import inspect

from callcenter.db.migrate import upgrade
from callcenter.services import Services
from callcenter.settings import Settings


class CliContext:
    def __init__(self, services: Services | None = None) -> None:
        self._services = services
        self._settings = services.settings if services is not None else None
        # Services passed in belong to the caller (tests); ones we build, we close.
        self._owned = services is None

    @property
    def settings(self) -> Settings:
        """The settings alone: no database touched."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def services(self) -> Services:
        return self.open_services()

    def open_services(self, *, migrate: bool = True) -> Services:
        """The wiring; the first call with `migrate` (the default) also migrates an
        embedded database. `db upgrade` opens them with `migrate=False`."""
        if self._services is None:
            settings = self.settings
            # First: it makes the SQLite file's folder.
            self._services = Services.from_settings(settings)
            if migrate and migrated_here(self._services):
                # The embedded SQLite file is this checkout's own: bring it to the current
                # schema on first use (a fresh clone's first command, or one after a
                # pull), as `serve` does. A server database is migrated by the release
                # step, never behind an operator's back.
                upgrade(settings.database_url)
        return self._services

    def close(self) -> None:
        if self._owned and self._services is not None:
            self._services.close()
            self._services = None


def migrated_here(services: Services) -> bool:
    """An embedded database that is new or under Alembic: one made without it (the
    tables created directly, as tests do) is left as it is."""
    if not embedded_database(services.settings.database_url):
        return False
    tables = set(inspect(services.engine).get_table_names())
    return not tables or "alembic_version" in tables


def embedded_database(database_url: str) -> bool:
    """A SQLite file (not an in-memory database, which every connection sees empty)."""
    path = database_url.removeprefix("sqlite:///")
    return path != database_url and path not in ("", ":memory:")


pass_cli = click.make_pass_decorator(CliContext, ensure=True)
