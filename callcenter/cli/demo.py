"""`callcenter demo seed`: a month of past calls for a new installation to look back on.

    callcenter demo seed --days 30 [--seed 7] [--until 2026-01-12] [--force]

The calls are planned from the production calendar (`callcenter.simulator.seed`) and
played by the Twilio simulator through the service's real webhooks, in this process, on a
clock moved to each call's moment; tickets come from the built-in portal through the
outbox and the in-process jobs, as they would. An empty roster or directory is filled
from the examples first, so calls reach people and some callers are known.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path

import click
from sqlalchemy import func, select

import callcenter
from callcenter.app import create_app
from callcenter.cli.context import CliContext, pass_cli
from callcenter.clock import MOSCOW
from callcenter.db import transaction
from callcenter.db.models import Call, ContactPhone, Staff, TicketRequest
from callcenter.directory.importer import import_csv
from callcenter.errors import ImportRejected, SimulationError
from callcenter.jobs.runners import InlineJobRunner
from callcenter.logs import SERVICE_LOGGERS
from callcenter.portal.protocol import Portal
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.simulator.seed import (
    DemoPortal,
    MovedClock,
    PlannedCall,
    moscow_today,
    plan_calls,
    play_calls,
)
from callcenter.simulator.twilio import Simulator
from callcenter.simulator.wsgi import WsgiHttp

EXAMPLES = Path(callcenter.__file__).resolve().parent.parent / "scripts" / "examples"
# The host the in-process requests name (signed over; nothing listens there).
LOCAL_URL = "http://127.0.0.1:8000"

PATH_LABELS = {
    "consultation": "консультация со специалистом",
    "consultation_voicemail": "консультация, никто не ответил (голосовое сообщение)",
    "new_problem": "новая проблема",
    "critical": "критический сбой, дежурный принял",
    "critical_unanswered": "критический сбой, никто не принял (голосовое сообщение)",
    "stolen": "угон",
    "status": "статус заявки",
    "specialist": "специалист",
    "abandoned": "положили трубку в меню",
    "abandoned_after_choice": "положили трубку после выбора",
}


class _DemoServices(Services):
    """The service's wiring with the demo portal: the built-in one, which can fail."""

    @cached_property
    def portal(self) -> Portal:
        return self.demo_portal

    @cached_property
    def demo_portal(self) -> DemoPortal:
        return DemoPortal(self.sessions, self.clock, base_url=self.settings.public_base_url)


@click.group()
def demo() -> None:
    """Demo data for a new installation."""


@demo.command("seed")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366))
@click.option("--seed", "seed_value", default=1, show_default=True, help="Same seed, same calls.")
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The last day (Moscow time), e.g. 2026-01-12 for the New Year holidays. "
    "Default: today, up to now.",
)
@click.option("--force", is_flag=True, help="Add the calls even when the database has calls.")
@click.option(
    "--roster",
    "roster_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=EXAMPLES / "roster.yaml",
    help="Imported when the roster is empty.  [default: the example roster]",
)
@click.option(
    "--directory",
    "directory_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=EXAMPLES / "directory.csv",
    help="Imported when the directory is empty.  [default: the example directory]",
)
@pass_cli
def seed(
    cli: CliContext,
    days: int,
    seed_value: int,
    until: datetime | None,
    force: bool,
    roster_file: Path,
    directory_file: Path,
) -> None:
    """Fill an empty database with DAYS days of calls played through the real IVR."""
    if cli.settings.production:
        raise click.ClickException(
            "демонстрационные звонки не записываются в рабочую базу (CALLCENTER_ENV=production)"
        )
    base = cli.services  # the embedded database is made and migrated here
    with base.sessions() as session:
        existing = session.scalar(select(func.count()).select_from(Call)) or 0
    if existing and not force:
        raise click.ClickException(
            f"в базе уже есть звонки ({existing}): демонстрационные звонки добавляются "
            "только в пустую базу. Чтобы всё же добавить их к имеющимся, повторите "
            "команду с --force."
        )
    now = base.clock()
    today = moscow_today(now)
    last_day = until.date() if until is not None else today
    if last_day > today:
        raise click.ClickException(
            f"--until {last_day:%Y-%m-%d}: демонстрационные звонки бывают только в прошлом "
            f"(сегодня {today:%d.%m.%Y})"
        )
    not_after = min(now, _end_of(last_day))
    rng = random.Random(seed_value)

    # No real SMS, no customer portal, no queue: everything stays in this database.
    settings = cli.settings.with_(
        redis_url=None,
        portal_url=None,
        twilio_account_sid=None,
        twilio_auth_token=None,
        recording_mode="link",
    )
    known = _prepare_people(base, roster_file, directory_file)
    plan = plan_calls(
        base.calendar,
        last_day=last_day,
        days=days,
        rng=rng,
        known_callers=known,
        not_after=not_after,
    )
    if not plan:
        raise click.ClickException("за эти дни не пришлось ни одного звонка: увеличьте --days")
    clock = MovedClock(plan[0].at)
    services = _DemoServices.from_settings(settings, clock=clock)
    assert isinstance(services, _DemoServices)
    try:
        app = create_app(services=services)
        with _quiet_service_logs():
            runner = services.jobs
            if not isinstance(runner, InlineJobRunner):  # pragma: no cover - settings above
                raise click.ClickException("the demo needs the in-process job runner")

            def settle() -> None:
                runner.flush()
                runner.wait_idle()

            token = settings.webhook_signing_token
            assert token is not None  # the local token without an account
            simulator = Simulator(
                LOCAL_URL,
                token,
                public_base_url=settings.public_base_url,
                http=WsgiHttp(app, LOCAL_URL, after_response=lambda _: runner.wait_idle()),
                clock=clock,
                on_moment=clock.move_to,
            )
            report = play_calls(
                plan,
                simulator,
                clock,
                services.demo_portal,
                rng,
                known_callers=known,
                ticket_of_call=lambda sid: _ticket_of(services, sid),
                settle=settle,
            )
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        services.close()
    _print_report(cli, plan, report.seconds, settings.lines)
    _print_calendar(base, last_day, days)


def _print_calendar(services: Services, last_day: date, days: int) -> None:
    calendar = services.calendar
    period = [last_day - timedelta(days=n) for n in range(days - 1, -1, -1)]
    days_off = sum(not calendar.is_working_day(d) for d in period)
    holidays = [d for d in period if not calendar.is_working_day(d) and d.weekday() < 5]
    short = [d for d in period if calendar.is_short_day(d)]
    text = f"По производственному календарю: выходных дней {days_off}"
    if holidays:
        text += ", из них праздничных будних: " + ", ".join(f"{d:%d.%m}" for d in holidays)
    if short:
        text += "; сокращённых предпраздничных: " + ", ".join(f"{d:%d.%m}" for d in short)
    click.echo(text + ".")


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=MOSCOW)


def _prepare_people(services: Services, roster_file: Path, directory_file: Path) -> list[str]:
    """Import the roster and the directory where they are empty; the directory's numbers."""
    with transaction(services.sessions) as session:
        if not session.scalar(select(func.count()).select_from(Staff)):
            try:
                report = import_roster(session, roster_file.read_text(encoding="utf-8"))
            except (OSError, ImportRejected) as exc:
                raise click.ClickException(f"{roster_file}: график не загружен: {exc}") from None
            click.echo(f"График дежурств загружен из {roster_file}: сотрудников {report.staff}.")
        if not session.scalar(select(func.count()).select_from(ContactPhone)):
            try:
                import_csv(session, directory_file, services.clock())
            except (OSError, ImportRejected) as exc:
                raise click.ClickException(
                    f"{directory_file}: справочник не загружен: {exc}"
                ) from None
            click.echo(f"Справочник клиентов загружен из {directory_file}.")
        return sorted(session.scalars(select(ContactPhone.e164)))


def _ticket_of(services: Services, call_sid: str) -> str | None:
    with services.sessions() as session:
        return session.scalar(
            select(TicketRequest.ticket_number)
            .join(Call, Call.id == TicketRequest.call_id)
            .where(Call.call_sid == call_sid)
        )


@contextmanager
def _quiet_service_logs() -> Iterator[None]:
    """Hundreds of calls: the service's INFO lines (SMS skipped without an account, ...)
    would bury the summary; warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in SERVICE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _print_report(
    cli: CliContext, plan: list[PlannedCall], seconds: float, lines: Mapping[str, str]
) -> None:
    services = cli.services
    sids_from = plan[0].at
    with services.sessions() as session:
        calls = list(session.scalars(select(Call).where(Call.started_at >= sids_from)))
        requests = list(
            session.scalars(
                select(TicketRequest)
                .join(Call, Call.id == TicketRequest.call_id)
                .where(Call.started_at >= sids_from)
            )
        )
    first, last = (plan[0].at.astimezone(MOSCOW).date(), plan[-1].at.astimezone(MOSCOW).date())
    click.echo(
        f"Звонков: {len(plan)}, с {first:%d.%m.%Y} по {last:%d.%m.%Y} "
        f"(дней со звонками: {len({c.at.astimezone(MOSCOW).date() for c in plan})})."
    )
    for line in sorted({c.line for c in plan}):
        click.echo(f"  линия {lines.get(line, line)}: {sum(c.line == line for c in plan)}")
    for path, label in PATH_LABELS.items():
        count = sum(c.path == path for c in plan)
        if count:
            click.echo(f"  {label}: {count}")
    done = sum(r.status == "done" for r in requests)
    failed = sum(r.status == "failed" for r in requests)
    click.echo(f"Заявок создано: {done}; не создано (ошибка портала): {failed}.")
    click.echo(f"В журнале звонков: {len(calls)}. Заняло {seconds:.0f} с.")


commands: list[click.Command] = [demo]
