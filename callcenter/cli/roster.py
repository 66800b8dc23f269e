"""`callcenter roster import FILE.yaml | now [--at ISO8601] | show`: the on-duty roster."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from callcenter.cli.context import CliContext, pass_cli
from callcenter.clock import MOSCOW, to_moscow
from callcenter.db import transaction
from callcenter.errors import ImportRejected, with_detail
from callcenter.roster.importer import import_roster
from callcenter.roster.on_duty import (
    OnDuty,
    Person,
    Roster,
    describe_rule,
    roster_health,
)


@click.group()
def roster() -> None:
    """The on-duty roster: who answers consultations and urgent calls, and when."""


@roster.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_cli
def import_command(cli: CliContext, path: Path) -> None:
    """Replace the roster with FILE.yaml (all-or-nothing; problems are listed by line)."""
    services = cli.services
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read it: {exc}") from None
    try:
        with transaction(services.sessions) as session:
            report = import_roster(session, text)
    except ImportRejected as exc:
        for line, why in exc.problems:
            click.echo(f"{path}:{line}: {with_detail(why)}", err=True)
        raise click.ClickException(
            f"roster not imported: {len(exc.problems)} problem(s); nothing was changed"
        ) from None
    click.echo(
        f"roster imported: {report.staff} staff, {report.shifts} weekly shifts, "
        f"{report.duties} dated duties, {report.absences} days away"
    )
    if report.deactivated:
        click.echo("no longer in the roster: " + ", ".join(report.deactivated))
    with services.sessions() as session:
        for warning in roster_health(session, services.clock(), services.calendar):
            click.echo(f"warning: {warning}", err=True)


@roster.command("now")
@click.option(
    "--at",
    "at_text",
    metavar="ISO8601",
    help="The moment to ask about (default: now); without an offset it is Moscow time.",
)
@pass_cli
def now_command(cli: CliContext, at_text: str | None) -> None:
    """Who answers consultations, who is first, second ... in the urgent chain, the head."""
    services = cli.services
    at = _parse_at(at_text) if at_text else services.clock()
    with services.sessions() as session:
        duty = Roster.load(session).on_duty(at, services.calendar)
    for line in describe_on_duty(duty, services.settings.duty_phone):
        click.echo(line)


@roster.command("show")
@pass_cli
def show_command(cli: CliContext) -> None:
    """The stored roster: staff, their phones and their shifts."""
    services = cli.services
    with services.sessions() as session:
        stored = Roster.load(session)
        warnings = roster_health(session, services.clock(), services.calendar)
    if not stored.people:
        click.echo("the roster is empty")
    for person in sorted(stored.people.values(), key=lambda p: (p.role != "head", p.key)):
        click.echo(f"{person.key}: {person.name} ({person.role})")
        click.echo(f"  phones: {', '.join(person.phones)}; sms: {person.sms or '-'}")
        for rule in stored.rules:
            if rule.staff_key == person.key:
                order = f", order {rule.order}" if rule.duty != "away" else ""
                click.echo(f"  {rule.duty}: {describe_rule(rule)}{order}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def _parse_at(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date-time", param_hint="--at"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=MOSCOW)


def _who(person: Person) -> str:
    return f"{person.name} [{person.key}] {', '.join(person.phones)}"


def describe_on_duty(duty: OnDuty, duty_phone: str | None) -> list[str]:
    """The answer of `roster now`, line by line."""
    local = to_moscow(duty.at)
    hours = "working hours" if duty.working_time else "after hours"
    lines = [f"at {local:%Y-%m-%d %H:%M} Moscow time ({hours}):"]
    fallback = f"duty phone {duty_phone}" if duty_phone else "voicemail (DUTY_PHONE unset)"
    if duty.working_time and duty.consultation:
        lines.append("consultations (rung at once):")
        lines += [f"  {_who(p)}" for p in duty.consultation]
    else:
        specialist = duty.duty_specialist
        lines.append("consultations: " + (_who(specialist) if specialist else fallback))
    lines.append("urgent chain (one at a time):")
    for n, person in enumerate(duty.escalation, start=1):
        head = " (head of support)" if person.is_head else ""
        lines.append(f"  {n}. {_who(person)}{head}")
    if not duty.escalation:
        lines.append(f"  1. {fallback} (nobody in the roster)")
    lines.append("head of support: " + (_who(duty.head) if duty.head else "none"))
    return lines


commands: list[click.Command] = [roster]
