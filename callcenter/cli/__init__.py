"""The `callcenter` command. Each subcommand lives in its own module of this package and
is a thin wrapper over a domain function."""

from __future__ import annotations

import importlib

import click

from callcenter.cli.context import CliContext
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
)


@click.group()
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
