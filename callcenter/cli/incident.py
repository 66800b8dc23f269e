"""`callcenter incident open | close | merge | list`: known incidents, declared, closed and
merged by a supervisor (`callcenter.incidents`)."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from callcenter.cli.context import CliContext, pass_cli
from callcenter.clock import to_moscow
from callcenter.db import transaction
from callcenter.db.models import Incident, SmsMessage
from callcenter.errors import InvalidInput, PortalRejected, PortalUnavailable, TicketNotFound
from callcenter.incidents import store
from callcenter.jobs.runners import InlineJobRunner
from callcenter.jobs.tasks import submit_incident_job


@click.group()
def incident() -> None:
    """Known incidents: callers hear of them first and may join them."""


@incident.command("open")
@click.option(
    "--product",
    required=True,
    type=click.Choice(["online", "studio", "silver", "all"]),
    help="The product that failed (all: every product).",
)
@click.option("--ticket", help="The portal ticket the work is tracked in (default: a new one).")
@click.option("--message", required=True, help="What is known, for the console and the ticket.")
@pass_cli
def incident_open(cli: CliContext, product: str, ticket: str | None, message: str) -> None:
    """Declare an incident; without --ticket a critical_server_failure ticket is opened."""
    services = cli.services
    try:
        with transaction(services.sessions) as session:
            row = store.open_incident(
                session,
                product=product,
                message=message,
                now=services.clock(),
                calendar=services.calendar,
                ticket=ticket,
                by="cli",
            )
            incident_id, request_id = row.id, row.ticket_request_id
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    if request_id is not None:
        services.jobs.submit_ticket_request(request_id)
        _finish_inline(cli)
    with services.sessions() as session:
        number = store.ticket_number(store.get_incident(session, incident_id))
    click.echo(
        f"incident {incident_id} open for {product}, ticket №{number}"
        if number
        else f"incident {incident_id} open for {product}; its ticket is being opened "
        "(callers hear of it once it has a number)"
    )


@incident.command("close")
@click.argument("incident_id", type=int)
@click.option("--message", required=True, help="How it was resolved (SMS and ticket).")
@pass_cli
def incident_close(cli: CliContext, incident_id: int, message: str) -> None:
    """Close an incident: the resolution SMS to every joined caller, the ticket noted."""
    services = cli.services
    try:
        with transaction(services.sessions) as session:
            store.close_incident(
                session, incident_id, message=message, now=services.clock(), by="cli"
            )
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    queued = submit_incident_job(services, incident_id)
    _finish_inline(cli)
    click.echo(
        f"incident {incident_id} closed; resolution SMS "
        + ("queued" if queued else "left for the sweep (the queue is unavailable)")
    )
    # What became of them so far (all of them when the jobs ran in this process).
    with services.sessions() as session:
        for sms in session.scalars(
            select(SmsMessage)
            .where(SmsMessage.key.like(f"incident:{incident_id}:resolved:%"))
            .order_by(SmsMessage.id)
        ):
            reason = f" ({sms.reason})" if sms.reason else ""
            click.echo(f"  resolution SMS to {sms.to or '—'}: {sms.status}{reason}")


@incident.command("merge")
@click.argument("incident_id", type=int)
@click.option("--into", "into", type=int, required=True, help="The open incident it goes into.")
@pass_cli
def incident_merge(cli: CliContext, incident_id: int, into: int) -> None:
    """Merge an incident into another (one failure found twice): its calls move there,
    the resolution SMS goes to them when that one closes; none is sent now."""
    services = cli.services
    try:
        with transaction(services.sessions) as session:
            done = store.merge_incident(
                session, incident_id, into=into, now=services.clock(), by="cli"
            )
            moved = done.moved_calls
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    queued = submit_incident_job(services, incident_id)
    _finish_inline(cli)
    with services.sessions() as session:
        merged = store.get_incident(session, incident_id)
        own = store.ticket_number(merged)
        target = store.ticket_number(store.get_incident(session, into))
        noted = merged.followups_done_at is not None
    click.echo(
        f"incident {incident_id} merged into {into}: {moved} call(s) moved to it, "
        f"no SMS sent for {incident_id}"
    )
    if not noted:
        click.echo(
            "  portal: the link and the affected organisations "
            + ("are queued" if queued else "are left for the sweep (the queue is unavailable)")
        )
        return
    if own is not None:
        click.echo(f"  portal: ticket №{own} linked to incident {into}")
    if target is not None:
        click.echo(f"  portal: ticket №{target} notes the merge; {_affected_on(cli, target)}")


@incident.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of incidents.")
@pass_cli
def incident_list(cli: CliContext, as_json: bool) -> None:
    """Open incidents first, then recent ones."""
    with cli.services.sessions() as session:
        rows = store.list_incidents(session)
        joined = store.joined_counts(session, [row.id for row in rows])
        items = [store.as_json(row, joined.get(row.id, 0)) for row in rows]
        table = [
            (
                str(row.id),
                _status(row),
                row.product,
                store.ticket_number(row) or "—",
                str(joined.get(row.id, 0)),
                to_moscow(row.opened_at).strftime("%d.%m.%Y %H:%M"),
                to_moscow(row.closed_at).strftime("%d.%m.%Y %H:%M") if row.closed_at else "—",
            )
            for row in rows
        ]
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not table:
        click.echo("no incidents")
        return
    header = ("ID", "STATUS", "PRODUCT", "TICKET", "JOINED", "OPENED (MSK)", "CLOSED (MSK)")
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]
    for line in (header, *table):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _affected_on(cli: CliContext, number: str) -> str:
    """The ticket's affected organisations as the portal has them now."""
    try:
        names = [o.name for o in cli.services.portal.get_ticket(number).affected_organisations]
    except (PortalUnavailable, PortalRejected, TicketNotFound) as exc:
        return f"its affected organisations could not be read ({exc})"
    return "affected organisations: " + (", ".join(names) if names else "none")


def _status(row: Incident) -> str:
    into = store.merged_into(row)
    return f"merged into {into}" if into is not None else row.status


def _finish_inline(cli: CliContext) -> None:
    """Without Redis the jobs run in this process: let them finish before exiting."""
    runner = cli.services.jobs
    if isinstance(runner, InlineJobRunner):
        runner.close()


commands: list[click.Command] = [incident]
