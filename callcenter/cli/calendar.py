"""`callcenter calendar YEAR [--json]` and `callcenter deadline TOPIC --received ISO8601`."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import click
from babel.dates import get_month_names

from callcenter.cli.context import CliContext, pass_cli
from callcenter.clock import MOSCOW
from callcenter.db.models import Organisation
from callcenter.errors import ConfigurationError, UnknownTopic
from callcenter.regulation.calendar import NORM_HOURS_PER_DAY, BusinessCalendar, ProductionYear
from callcenter.regulation.topics import TOPICS, deadlines, get_topic


def _calendar(cli: CliContext) -> BusinessCalendar:
    try:
        return cli.services.calendar
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def _iso(at: datetime) -> str:
    """ISO 8601 in Moscow time; whole minutes as 2025-12-02T11:00+03:00."""
    local = at.astimezone(MOSCOW)
    whole_minute = local.second == 0 and local.microsecond == 0
    return local.isoformat(timespec="minutes" if whole_minute else "auto")


@click.command("calendar")
@click.argument("year", type=click.IntRange(1992, 9998))
@click.option("--json", "as_json", is_flag=True, help="Print the year as JSON.")
@pass_cli
def calendar_command(cli: CliContext, year: int, as_json: bool) -> None:
    """The production calendar for YEAR: days off on weekdays, working weekends, short days."""
    calendar = _calendar(cli)
    summary = calendar.production_year(year)
    if not summary.has_short_day_data:
        click.echo(
            f"warning: no data on {year}'s shortened pre-holiday days; add them to the file "
            "named by CALENDAR_OVERRIDES_FILE (see callcenter/regulation/data/"
            "calendar_overrides.example.yaml)",
            err=True,
        )
    if as_json:
        payload = {
            "year": year,
            "holidays": [d.isoformat() for d in summary.holidays],
            "working_weekends": [d.isoformat() for d in summary.working_weekends],
            "short_days": [d.isoformat() for d in summary.short_days],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(_table(calendar, summary))


def _table(calendar: BusinessCalendar, summary: ProductionYear) -> str:
    months = get_month_names("wide", locale="en")

    def days(ds: tuple[date, ...], month: int) -> str:
        return ", ".join(str(d.day) for d in ds if d.month == month)

    header = (
        "Month",
        "Working days",
        "Hours",
        "Days off Mon–Fri",
        "Working weekends",
        "Short days",
    )
    rows: list[tuple[str, ...]] = []
    for month in range(1, 13):
        first = date(summary.year, month, 1)
        month_days = (date(summary.year + month // 12, month % 12 + 1, 1) - first).days
        working = sum(
            1 for n in range(month_days) if calendar.is_working_day(first + timedelta(days=n))
        )
        short = sum(1 for d in summary.short_days if d.month == month)
        rows.append(
            (
                str(months[month]),
                str(working),
                str(NORM_HOURS_PER_DAY * working - short),
                days(summary.holidays, month),
                days(summary.working_weekends, month),
                days(summary.short_days, month),
            )
        )
    rows.append(
        (
            "Year",
            str(summary.working_day_count),
            str(summary.norm_hours),
            str(len(summary.holidays)),
            str(len(summary.working_weekends)),
            str(len(summary.short_days)) if summary.has_short_day_data else "unknown",
        )
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {1, 2}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [
        f"Production calendar {summary.year} (Russia, five-day week)",
        "Working hours 09:30–18:00 Moscow time, 09:30–17:00 on a short day; "
        "hours below are for a 40-hour week.",
        *(f"Source: {d}" for d in summary.decrees),
        "",
        line(header),
        line(tuple("-" * w for w in widths)),
        *(line(r) for r in rows),
    ]
    return "\n".join(lines)


def _parse_received(text: str) -> datetime:
    """An ISO 8601 moment; without an offset it is Moscow time."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date and time "
            "(e.g. 2025-12-01T11:00 or 2025-12-01T11:00+03:00)",
            param_hint="--received",
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=MOSCOW)


@click.command(
    "deadline",
    help="Stage-one and resolution deadlines for a request on TOPIC, as JSON (Moscow time). "
    f"TOPIC is one of: {', '.join(TOPICS)}.",
)
@click.argument("topic")
@click.option(
    "--received",
    "received_text",
    required=True,
    metavar="ISO8601",
    help="When the request came; without an offset, Moscow time.",
)
@click.option("--org", "org_id", type=int, help="Organisation id: use its contract's days.")
@click.option(
    "--vehicles", type=click.IntRange(min=0), default=0, help="Vehicles concerned (0: not said)."
)
@pass_cli
def deadline_command(
    cli: CliContext, topic: str, received_text: str, org_id: int | None, vehicles: int
) -> None:
    try:
        chosen = get_topic(topic)
    except UnknownTopic as exc:
        raise click.BadParameter(str(exc), param_hint="TOPIC") from None
    received = _parse_received(received_text)
    organisation = None
    if org_id is not None:
        services = cli.services
        # A command is the last thing its process does with the database: let go of it.
        click.get_current_context().call_on_close(services.engine.dispose)
        with services.sessions() as session:
            organisation = session.get(Organisation, org_id)
            if organisation is None:
                raise click.BadParameter(f"no organisation with id {org_id}", param_hint="--org")
            session.expunge(organisation)
    due = deadlines(chosen, received, _calendar(cli), organisation=organisation, vehicles=vehicles)
    payload = {
        "topic": chosen.slug,
        "received": _iso(due.received),
        "first_stage_due": _iso(due.first_stage_due),
        "resolution_due": _iso(due.resolution_due) if due.resolution_due else None,
    }
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2))


commands: list[click.Command] = [calendar_command, deadline_command]
