"""The dashboard's figures (Flask-free), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from callcenter.calllog.dashboard import Period, figures
from callcenter.db import transaction
from callcenter.errors import InvalidFilter
from callcenter.services import Services
from tests.console_helpers import LINE_800, LINE_812, add_call, at, sample_log

# Moscow-day periods compare stored times, which each dialect stores its own way.
pytestmark = pytest.mark.both_databases

LINES = {LINE_800: "8 (800) 250-60-77", LINE_812: "8 (812) 607-77-41"}
TODAY = date(2025, 11, 27)


def test_figures_of_an_ordinary_morning(services: Services) -> None:
    names = sample_log(services)
    with services.sessions() as session:
        f = figures(session, Period(TODAY, TODAY), lines=LINES)
    assert f.calls == 7
    assert [(c.title, c.count) for c in f.by_line] == [
        ("8 (800) 250-60-77", 6),
        ("8 (812) 607-77-41", 1),
    ]
    assert {c.title: c.count for c in f.by_category} == {
        "Новая проблема": 3,
        "Критический сбой сервера": 1,
        "Угон ТС": 1,
        "Сброшен до выбора": 1,
        "Консультация": 1,
    }
    assert {c.key: c.count for c in f.by_topic} == {
        "data_update": 1,
        "system_reports": 1,
        "critical_server_failure": 1,
        "stolen_vehicle": 1,
        "accounts_access": 1,
    }
    # Tickets: 1001, 9001, 9002; the failed and the never-asked ones are not tickets.
    assert f.tickets_opened == 3
    assert (f.ticketed, f.ticketable) == (3, 5)
    assert f.ticket_share == pytest.approx(0.6)
    assert f.tickets_failed == 1
    assert (f.urgent, f.urgent_answered) == (2, 1)
    # The stolen-car call: first leg rang at +40 s, the second (at +60 s) pressed 1 12 s later.
    assert f.urgent_median_answer_seconds == pytest.approx(32.0)
    assert (f.abandoned, f.abandoned_waiting) == (1, 1)
    assert f.attention == 4
    # Calls at 09:00, 09:30 and five between 10:00 and 10:55 Moscow time.
    assert f.by_hour[9] == 2 and f.by_hour[10] == 5 and sum(f.by_hour) == 7
    assert f.busiest_hours == [10, 9]
    assert f.by_day == [(TODAY, 7)]
    assert names.ticket_number == "1001"


def test_a_period_counts_only_its_own_moscow_days(services: Services) -> None:
    with transaction(services.sessions) as session:
        # 23:59 Moscow on the 26th and 00:00 Moscow on the 27th (20:59 / 21:00 UTC).
        add_call(session, "CA-late", at(-11 * 60 - 1), ticket="1")
        add_call(session, "CA-midnight", at(-11 * 60), ticket="2")
        add_call(
            session, "CA-week-ago", at(-7 * 24 * 60), category="abandoned", outcome="abandoned"
        )
    with services.sessions() as session:
        today = figures(session, Period(TODAY, TODAY), lines=LINES)
        yesterday = figures(
            session, Period(TODAY - timedelta(days=1), TODAY - timedelta(days=1)), lines=LINES
        )
        week = figures(session, Period.ending(TODAY, 8), lines=LINES)
    assert (today.calls, today.by_hour[0]) == (1, 1)
    assert (yesterday.calls, yesterday.by_hour[23]) == (1, 1)
    assert week.calls == 3
    assert week.by_day[0] == (date(2025, 11, 20), 1)
    assert [n for _, n in week.by_day] == [1, 0, 0, 0, 0, 0, 1, 1]


def test_an_empty_period_has_no_share_and_no_median(services: Services) -> None:
    with services.sessions() as session:
        f = figures(session, Period(TODAY, TODAY), lines=LINES)
    assert f.calls == 0
    assert f.ticket_share is None
    assert f.urgent_median_answer_seconds is None
    assert f.busiest_hours == []
    assert f.by_hour == [0] * 24


def test_period_parsing_defaults_and_errors() -> None:
    assert Period.parse(None, None, today=TODAY) == Period(date(2025, 10, 29), TODAY)
    assert Period.parse("2025-11-01", "", today=TODAY) == Period(date(2025, 11, 1), TODAY)
    assert Period.parse("", "2025-11-10", today=TODAY) == Period(
        date(2025, 10, 12), date(2025, 11, 10)
    )
    with pytest.raises(InvalidFilter, match="not a date"):
        Period.parse("27.11.2025", None, today=TODAY)
    with pytest.raises(InvalidFilter, match="before"):
        Period.parse("2025-11-27", "2025-11-01", today=TODAY)
    with pytest.raises(InvalidFilter, match="at most 366 days"):
        Period.parse("2023-01-01", "2025-11-01", today=TODAY)
    # Moscow midnight to Moscow midnight, in UTC.
    p = Period(TODAY, TODAY)
    assert p.start.isoformat() == "2025-11-26T21:00:00+00:00"
    assert p.end.isoformat() == "2025-11-27T21:00:00+00:00"
