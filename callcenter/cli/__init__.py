"""The `callcenter` command. Each subcommand lives in its own module of this package and
is a thin wrapper over a domain function."""

from __future__ import annotations

import importlib
from typing import Any

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from callcenter.cli.context import CliContext
from callcenter.errors import ConfigurationError
from callcenter.logs import masked_output

# Modules that each export `commands: list[click.Command]`.
_COMMAND_MODULES = (
    "callcenter.cli.server",
    "callcenter.cli.calendar",
    "callcenter.cli.directory",
    "callcenter.cli.outbox",
    "callcenter.cli.tokens",
    "callcenter.cli.simulate",
    "callcenter.cli.roster",
    "callcenter.cli.provision",
    "callcenter.cli.users",
    "callcenter.cli.retention",
    "callcenter.cli.spool",
    "callcenter.cli.incident",
    "callcenter.cli.demo",
)


class _Command(click.Group):
    """The group, with settings that cannot run and a database that is not ready said in
    one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            # E.g. production's required settings: the release step's log under a
            # supervisor repeats this line until the environment is fixed.
            raise click.ClickException(str(exc)) from None
        except (OperationalError, ProgrammingError) as exc:
            message = database_problem(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


def database_problem(exc: Exception) -> str | None:
    """What to do about a database error that stopped a command, in one line; None for a
    programming error of ours (its traceback is the report)."""
    orig = getattr(exc, "orig", exc)
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if "no such table" in detail or getattr(orig, "sqlstate", None) == "42P01":
        return f"the database has no tables yet ({detail}): run `callcenter db upgrade` first"
    unreachable = ("connection" in detail.lower() or "unable to open" in detail) and isinstance(
        exc, OperationalError
    )
    if unreachable:
        return f"the database is not reachable: {detail} (check DATABASE_URL and the server)"
    return None


@click.group(cls=_Command)
@click.option(
    "--unmasked",
    is_flag=True,
    help="Show callers' phone numbers in full (masked by default: +7916***4567).",
)
@click.pass_context
def main(ctx: click.Context, unmasked: bool) -> None:
    """SKAI hotline call intake service."""
    if ctx.obj is None:
        # Tests pass their own CliContext(services) in; the real command builds one.
        ctx.obj = CliContext()
    ctx.call_on_close(ctx.obj.close)
    if not unmasked:
        # Terminal output is copied into tickets, chats and shell logs: numbers are
        # masked there as in the service's logs, unless asked for in full.
        ctx.with_resource(masked_output())


for _name in _COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        main.add_command(_command)
