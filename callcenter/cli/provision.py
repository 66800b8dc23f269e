"""`callcenter provision [--dry-run]`: point the lines' Twilio numbers at our webhooks.

Exit status: 0 all lines done (or would be), 1 a line needs attention (not on the account,
refused by Twilio, overridden by a TwiML App or SIP trunk), 2 the settings are incomplete.
"""

from __future__ import annotations

import click

from callcenter.cli.context import CliContext, pass_cli
from callcenter.errors import ConfigurationError, TelephonyNotConfigured
from callcenter.telephony.provisioning import provision_from_settings

EXIT_ATTENTION = 1
EXIT_CONFIGURATION = 2


@click.command()
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@pass_cli
@click.pass_context
def provision(ctx: click.Context, cli: CliContext, dry_run: bool) -> None:
    """Set the Voice URL, fallback URL and status callback of the lines' Twilio numbers
    from PUBLIC_BASE_URL (all POST)."""
    try:
        services = cli.services
        report = provision_from_settings(services.settings, services.telephony, dry_run=dry_run)
    except (ConfigurationError, TelephonyNotConfigured) as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_CONFIGURATION)
    click.echo(report.render())
    if not report.ok:
        ctx.exit(EXIT_ATTENTION)


commands: list[click.Command] = [provision]
