"""`callcenter outbox list | flush | retry ID`: the ticket requests waiting for, holding or
missing their portal ticket."""

from __future__ import annotations

import click

from callcenter.cli.context import CliContext, pass_cli
from callcenter.clock import to_moscow
from callcenter.errors import InvalidInput, QueueUnavailable
from callcenter.jobs.runners import InlineJobRunner
from callcenter.jobs.tasks import retry_ticket_request
from callcenter.tickets import outbox as outbox_rows

_ERROR_WIDTH = 60


@click.group()
def outbox() -> None:
    """The ticket outbox: one request per call, turned into a portal ticket by a job."""


@outbox.command("list")
@click.option("--status", type=click.Choice(outbox_rows.STATUSES), help="Only this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@pass_cli
def outbox_list(cli: CliContext, status: str | None, limit: int) -> None:
    """Newest first: id, call, status, tries, ticket, last error, next try (Moscow time)."""
    with cli.services.sessions() as session:
        rows = outbox_rows.list_requests(session, status=status, limit=limit)
        table = [
            (
                str(row.id),
                row.call.call_sid if row.call is not None else row.idempotency_key,
                row.status,
                str(row.attempts),
                row.ticket_number or "—",
                _short(row.last_error),
                to_moscow(row.next_attempt_at).strftime("%d.%m.%Y %H:%M:%S")
                if row.next_attempt_at is not None
                else "—",
            )
            for row in rows
        ]
    if not table:
        click.echo("no ticket requests" + (f" with status {status}" if status else ""))
        return
    header = ("ID", "CALL", "STATUS", "TRIES", "TICKET", "LAST ERROR", "NEXT TRY (MSK)")
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]
    for line in (header, *table):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


@outbox.command("flush")
@pass_cli
def outbox_flush(cli: CliContext) -> None:
    """Submit every request whose next try (or follow-up) is due now."""
    services = cli.services
    try:
        count = services.jobs.flush()
    except QueueUnavailable as exc:
        raise click.ClickException(f"cannot queue the jobs: {exc}") from None
    click.echo(f"{count} ticket request(s) submitted")
    _finish_inline(cli)


@outbox.command("retry")
@click.argument("request_id", type=int)
@pass_cli
def outbox_retry(cli: CliContext, request_id: int) -> None:
    """Try a failed request again (pending, tries from zero) and submit it now."""
    try:
        queued = retry_ticket_request(cli.services, request_id, by="cli")
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    if queued:
        click.echo(f"ticket request {request_id} is pending again and submitted")
    else:
        click.echo(
            f"ticket request {request_id} is pending again; the queue is unavailable, "
            "the sweep will submit it"
        )
    _finish_inline(cli)


def _finish_inline(cli: CliContext) -> None:
    """Without Redis the jobs run in this process: let them finish before exiting."""
    runner = cli.services.jobs
    if isinstance(runner, InlineJobRunner):
        runner.close()
        click.echo("(processed in this process: REDIS_URL is not set)", err=True)


def _short(text: str | None) -> str:
    if not text:
        return "—"
    line = " ".join(text.split())
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 1] + "…"


commands: list[click.Command] = [outbox]
