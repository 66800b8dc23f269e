"""`callcenter directory import FILE.csv | find NUMBER | list [--csv]`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from callcenter.cli.context import CliContext, pass_cli
from callcenter.db import transaction
from callcenter.directory.contacts import identify_caller, list_directory
from callcenter.directory.importer import export_rows, import_csv
from callcenter.errors import ImportRejected, with_detail
from callcenter.logs import MaskedStream
from callcenter.phones import classify
from callcenter.spreadsheet import csv_bytes

# Exit codes: 0 done, 1 not found (`find`), 2 bad input (click's own usage errors use 2 too).
NOT_FOUND = 1
REJECTED = 2


@click.group()
def directory() -> None:
    """The caller directory: organisations, contacts and their phones."""


@directory.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@pass_cli
def import_command(cli: CliContext, path: Path) -> None:
    """Import contacts from a CSV file, all or nothing.

    One row per contact: organisation, inn, contact, phones (several separated by | or ,),
    email, and optional contract overrides stage_one_days and <topic>_days. On any bad row
    nothing is written and every problem is listed by line.
    """
    services = cli.services
    try:
        with transaction(services.sessions) as session:
            report = import_csv(session, path, services.clock())
    except ImportRejected as rejected:
        for line, reason in rejected.problems:
            click.echo(f"{path.name}:{line}: {with_detail(reason)}", err=True)
        click.echo(
            f"{path.name}: rejected, {len(rejected.problems)} problem(s); nothing was imported",
            err=True,
        )
        raise SystemExit(REJECTED) from None
    click.echo(f"{path.name}: imported. {report.summary()}")


@directory.command("find")
@click.argument("number")
@pass_cli
def find_command(cli: CliContext, number: str) -> None:
    """Who owns NUMBER (any spelling: 8 916 123-45-67, +79161234567, ...)."""
    caller = classify(number)
    if caller.e164 is None:
        click.echo(f"{number!r} is not a phone number ({caller.kind}): it matches no contact")
        raise SystemExit(NOT_FOUND)
    with transaction(cli.services.sessions) as session:
        identity = identify_caller(session, number)
        if identity.contact is None or identity.organisation is None:
            click.echo(f"{caller.display} ({caller.kind}): not in the directory")
            raise SystemExit(NOT_FOUND)
        contact, org = identity.contact, identity.organisation
        click.echo(f"{caller.display} ({caller.kind})")
        click.echo(f"contact:      {contact.name}")
        click.echo(f"organisation: {org.name}" + (f" (INN {org.inn})" if org.inn else ""))
        if contact.email:
            click.echo(f"e-mail:       {contact.email}")
        others = [classify(p.e164).display for p in contact.phones if p.e164 != caller.e164]
        if others:
            click.echo(f"other phones: {', '.join(others)}")


@directory.command("list")
@click.option("--csv", "as_csv", is_flag=True, help="Print in the import format instead.")
@pass_cli
def list_command(cli: CliContext, as_csv: bool) -> None:
    """Every organisation with its contract overrides, contacts and phones."""
    with transaction(cli.services.sessions) as session:
        if as_csv:
            table = export_rows(session)
            text = csv_bytes(table, delimiter=",", lineterminator="\n", bom=False).decode()
            click.echo(text, nl=False)
            if isinstance(sys.stdout, MaskedStream):
                # Masked numbers do not import back (the importer refuses them, all or
                # nothing): say how to get the file that does.
                click.echo(
                    "numbers are masked, so this does not import back; for a file that does: "
                    "callcenter --unmasked directory list --csv > directory.csv",
                    err=True,
                )
            return
        organisations = list_directory(session)
        if not organisations:
            click.echo("the directory is empty")
            return
        for org in organisations:
            terms = []
            if org.stage_one_days is not None:
                terms.append(f"stage one {org.stage_one_days}")
            terms += [f"{slug} {days}" for slug, days in sorted((org.topic_days or {}).items())]
            click.echo(
                org.name
                + (f" (INN {org.inn})" if org.inn else "")
                + (f" — contract days: {', '.join(terms)}" if terms else "")
            )
            for contact in sorted(org.contacts, key=lambda c: (c.name.casefold(), c.id)):
                phones = ", ".join(classify(p.e164).display for p in contact.phones)
                email = f"  <{contact.email}>" if contact.email else ""
                click.echo(f"  {contact.name}: {phones}{email}")


commands: list[click.Command] = [directory]
