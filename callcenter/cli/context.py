"""What every subcommand gets: the service's wiring, built on first use from the env."""

from __future__ import annotations

import click

from callcenter.services import Services
from callcenter.settings import Settings


class CliContext:
    def __init__(self, services: Services | None = None) -> None:
        self._services = services
        # Services passed in belong to the caller (tests); ones we build, we close.
        self._owned = services is None

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services.from_settings(Settings.from_env())
        return self._services

    def close(self) -> None:
        if self._owned and self._services is not None:
            self._services.close()
            self._services = None


pass_cli = click.make_pass_decorator(CliContext, ensure=True)
