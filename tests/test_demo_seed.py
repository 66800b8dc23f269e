"""`callcenter demo seed`: past calls through the real IVR steps on a moved clock."""

from __future__ import annotations

import random
from datetime import date, datetime

from click.testing import CliRunner, Result
from sqlalchemy import func, select

from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.clock import MOSCOW, to_moscow
from callcenter.db.models import Call, DialLeg, Ticket, TicketRequest
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.services import Services
from callcenter.simulator.seed import CITY_LINE, HOTLINE, MIN_GAP, PATHS, plan_calls


def seed(services: Services, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["demo", "seed", *args], obj=CliContext(services), catch_exceptions=False
    )


def test_a_short_seed_fills_an_empty_database_through_the_real_pipeline(
    services: Services,
) -> None:
    # Tue 25 and Wed 26 November 2025, before the tests' "now" (Thu 27th, 11:00).
    result = seed(services, "--days", "2", "--until", "2025-11-26", "--seed", "4")

    assert result.exit_code == 0, result.output
    assert "График дежурств загружен" in result.output
    assert "Справочник клиентов загружен" in result.output
    assert "Звонков: " in result.output and "с 25.11.2025 по 26.11.2025" in result.output
    assert "Заняло " in result.output
    with services.sessions() as session:
        calls = list(session.scalars(select(Call)))
        days = {to_moscow(c.started_at).date() for c in calls}
        assert days == {date(2025, 11, 25), date(2025, 11, 26)}
        assert {c.line for c in calls} == {HOTLINE, CITY_LINE}
        assert len({c.category for c in calls}) >= 4
        # Every call ended: the final status callback came, at the call's own moment.
        assert all(c.outcome != "in_progress" and c.ended_at is not None for c in calls)
        assert all(c.ended_at is not None and c.ended_at > c.started_at for c in calls)
        # Tickets through the outbox and the built-in portal, made within minutes of their
        # call; the one that met the portal's outage later, by the outbox's retry; the one
        # the portal refused is a failed request.
        requests = list(session.scalars(select(TicketRequest)))
        assert {r.status for r in requests} == {"done", "failed"}
        tickets = {t.number: t for t in session.scalars(select(Ticket))}
        delays = []
        for request in requests:
            if request.status == "done":
                assert request.call is not None
                ticket = tickets[int(request.ticket_number or 0)]
                delays.append((ticket.created_at - request.call.started_at).total_seconds())
        assert sum(delay > 3600 for delay in delays) == 1
        assert all(0 < delay < 600 for delay in delays if delay <= 3600)
        # People were rung and some answered, a few seconds after their phone rang.
        answered = list(session.scalars(select(DialLeg).where(DialLeg.answered_at.is_not(None))))
        assert answered
        assert all(
            leg.answered_at is not None and 0 < (leg.answered_at - leg.started_at).seconds < 20
            for leg in answered
        )


def test_a_second_seed_is_refused_and_force_adds_the_calls(services: Services) -> None:
    first = seed(services, "--days", "1", "--until", "2025-11-26")
    assert first.exit_code == 0, first.output
    with services.sessions() as session:
        count = session.scalar(select(func.count()).select_from(Call))
    assert count

    again = seed(services, "--days", "1", "--until", "2025-11-26")

    assert again.exit_code == 1
    assert f"в базе уже есть звонки ({count})" in again.output
    assert "повторите команду с --force" in again.output
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == count

    forced = seed(services, "--days", "1", "--until", "2025-11-24", "--force")

    assert forced.exit_code == 0, forced.output
    # The roster and the directory were there already: not imported again.
    assert "График дежурств загружен" not in forced.output
    with services.sessions() as session:
        assert (session.scalar(select(func.count()).select_from(Call)) or 0) > count


def test_a_day_after_today_is_refused(services: Services) -> None:
    result = seed(services, "--days", "1", "--until", "2025-11-28")
    assert result.exit_code == 1
    assert "только в прошлом (сегодня 27.11.2025)" in result.output


def plan(seed_value: int, last_day: date, days: int) -> list[tuple[datetime, str, str, str]]:
    calls = plan_calls(
        BusinessCalendar.shipped(),
        last_day=last_day,
        days=days,
        rng=random.Random(seed_value),
        known_callers=["+79161234567", "+78126070011"],
        not_after=datetime(2030, 1, 1, tzinfo=MOSCOW),
    )
    return [(c.at, c.path, c.line, c.portal) for c in calls]


def test_the_plan_is_the_same_for_the_same_seed_and_follows_the_calendar() -> None:
    # 2026: Tue 3 November is a short pre-holiday day, Wed 4 November a holiday.
    month = plan(7, date(2026, 11, 30), 30)
    assert month == plan(7, date(2026, 11, 30), 30)
    assert month != plan(8, date(2026, 11, 30), 30)
    assert {path for _, path, _, _ in month} == set(PATHS)
    assert {portal for *_, portal in month} == {"up", "down", "rejects"}
    by_day: dict[date, list[datetime]] = {}
    for at, *_ in month:
        by_day.setdefault(at.astimezone(MOSCOW).date(), []).append(at.astimezone(MOSCOW))
    # A working day is busier than the holiday; evenings and nights of working days have
    # calls too; calls never overlap.
    assert len(by_day[date(2026, 11, 4)]) <= 3 < len(by_day[date(2026, 11, 5)])
    calendar = BusinessCalendar.shipped()
    assert any(
        calendar.is_working_day(at.astimezone(MOSCOW).date()) and not calendar.is_working_time(at)
        for at, *_ in month
    )
    assert all(b[0] - a[0] >= MIN_GAP for a, b in zip(month, month[1:], strict=False))
