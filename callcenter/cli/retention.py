"""`callcenter purge`: apply the data-retention period now."""

from __future__ import annotations

import click

from callcenter.calls.retention import purge_personal_data
from callcenter.cli.context import CliContext, pass_cli


@click.command()
@click.option("--days", type=int, default=None, help="Override RETENTION_DAYS for this run.")
@pass_cli
def purge(cli: CliContext, days: int | None) -> None:
    """Anonymise calls older than the retention period (numbers, names, recordings)."""
    svc = cli.services
    retention = days if days is not None else svc.settings.retention_days
    if retention < 1:
        raise click.UsageError("--days must be at least 1")
    with svc.sessions.begin() as session:
        report = purge_personal_data(
            session, now=svc.clock(), retention_days=retention, data_dir=svc.settings.data_dir
        )
    click.echo(
        f"cutoff {report.cutoff.isoformat()}: {report.calls_anonymised} calls anonymised, "
        f"{report.recording_files_deleted} recording files deleted, "
        f"{report.tickets_anonymised} tickets and {report.sms_anonymised} SMS anonymised"
    )


commands: list[click.Command] = [purge]
