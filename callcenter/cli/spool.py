"""`callcenter spool replay`: fallback events spooled while the database was down."""

from __future__ import annotations

import click

from callcenter.cli.context import CliContext, pass_cli
from callcenter.ivr.spool import replay_spool, spool_path


@click.group()
def spool() -> None:
    """Events the fallback URL could not store (database down), kept on this host's disk."""


@spool.command("replay")
@pass_cli
def replay(cli: CliContext) -> None:
    """Store the spooled events in the call log now (the sweep also does it every few
    seconds on the host whose CALLCENTER_DATA_DIR holds the spool)."""
    stored, left = replay_spool(cli.services)
    where = spool_path(cli.services.settings.data_dir)
    click.echo(f"{stored} events stored, {left} still waiting in {where}")
    if left:
        raise SystemExit(1)


commands: list[click.Command] = [spool]
