"""The business calendar: the official production calendars, working hours, the deadline
rule (examples and properties), and the operator's overrides file."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.clock import MOSCOW
from callcenter.errors import ConfigurationError
from callcenter.regulation.calendar import (
    SHIPPED_CALENDAR,
    BusinessCalendar,
    load_calendar_data,
)
from callcenter.settings import Settings

# The official production calendars (five-day week), typed out from the government decrees
# and the consultant.ru tables: 2024 — decree No. 1314 of 10.08.2023; 2025 — decree
# No. 1335 of 04.10.2024; 2026 — decree of 24.09.2025.
OFFICIAL_CALENDARS: dict[int, dict[str, list[str]]] = {
    2024: {
        "holidays": [
            "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05",
            "2024-01-08", "2024-02-23", "2024-03-08", "2024-04-29", "2024-04-30",
            "2024-05-01", "2024-05-09", "2024-05-10", "2024-06-12", "2024-11-04",
            "2024-12-30", "2024-12-31",
        ],
        "working_weekends": ["2024-04-27", "2024-11-02", "2024-12-28"],
        "short_days": ["2024-02-22", "2024-03-07", "2024-05-08", "2024-06-11", "2024-11-02"],
    },
    2025: {
        "holidays": [
            "2025-01-01", "2025-01-02", "2025-01-03", "2025-01-06", "2025-01-07",
            "2025-01-08", "2025-05-01", "2025-05-02", "2025-05-08", "2025-05-09",
            "2025-06-12", "2025-06-13", "2025-11-03", "2025-11-04", "2025-12-31",
        ],
        "working_weekends": ["2025-11-01"],
        "short_days": ["2025-03-07", "2025-04-30", "2025-06-11", "2025-11-01"],
    },
    2026: {
        "holidays": [
            "2026-01-01", "2026-01-02", "2026-01-05", "2026-01-06", "2026-01-07",
            "2026-01-08", "2026-01-09", "2026-02-23", "2026-03-09", "2026-05-01",
            "2026-05-11", "2026-06-12", "2026-11-04", "2026-12-31",
        ],
        "working_weekends": [],
        "short_days": ["2026-04-30", "2026-05-08", "2026-06-11", "2026-11-03"],
    },
}  # fmt: skip

# Working days and hours of a 40-hour week, as the official tables print them.
OFFICIAL_TOTALS = {2024: (248, 1979), 2025: (247, 1972), 2026: (247, 1972)}

CAL = BusinessCalendar.shipped()


def msk(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MOSCOW)


@pytest.mark.parametrize("year", sorted(OFFICIAL_CALENDARS))
def test_production_year_matches_the_official_calendar(year: int) -> None:
    summary = CAL.production_year(year)
    official = OFFICIAL_CALENDARS[year]
    assert [d.isoformat() for d in summary.holidays] == official["holidays"]
    assert [d.isoformat() for d in summary.working_weekends] == official["working_weekends"]
    assert [d.isoformat() for d in summary.short_days] == official["short_days"]
    assert (summary.working_day_count, summary.norm_hours) == OFFICIAL_TOTALS[year]
    assert summary.has_short_day_data


def test_working_days_and_days_off() -> None:
    assert CAL.is_working_day(date(2025, 12, 1))  # Monday
    assert not CAL.is_working_day(date(2025, 11, 30))  # Sunday
    assert not CAL.is_working_day(date(2025, 11, 4))  # Unity Day, Tuesday
    assert not CAL.is_working_day(date(2025, 11, 3))  # transferred from Sat 1 Nov
    assert CAL.is_working_day(date(2025, 11, 1))  # the working Saturday
    assert not CAL.is_working_day(date(2026, 1, 9))  # transferred from Sat 3 Jan
    assert CAL.is_working_day(date(2026, 1, 12))


def test_a_moment_is_not_a_day() -> None:
    with pytest.raises(TypeError, match="a date is needed"):
        CAL.is_working_day(msk("2025-11-30T12:00"))


def test_window_is_shorter_on_a_short_day_and_absent_on_a_day_off() -> None:
    assert CAL.window(date(2025, 12, 1)) == (msk("2025-12-01T09:30"), msk("2025-12-01T18:00"))
    assert CAL.window(date(2025, 4, 30)) == (msk("2025-04-30T09:30"), msk("2025-04-30T17:00"))
    assert CAL.window(date(2025, 11, 1)) == (msk("2025-11-01T09:30"), msk("2025-11-01T17:00"))
    assert CAL.window(date(2025, 5, 1)) is None
    assert CAL.is_short_day(date(2025, 4, 30)) and not CAL.is_short_day(date(2025, 4, 29))


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        ("2025-12-01T09:29:59", False),
        ("2025-12-01T09:30", True),
        ("2025-12-01T17:59:59", True),
        ("2025-12-01T18:00", False),
        ("2025-04-30T16:59", True),
        ("2025-04-30T17:00", False),  # a short day closes at 17:00
        ("2025-04-30T17:30", False),
        ("2025-11-30T12:00", False),  # Sunday
        ("2025-11-01T12:00", True),  # working Saturday
    ],
)
def test_is_working_time(at: str, inside: bool) -> None:
    assert CAL.is_working_time(msk(at)) is inside


def test_is_working_time_takes_any_offset() -> None:
    # 06:30 UTC is 09:30 in Moscow.
    assert CAL.is_working_time(datetime(2025, 12, 1, 6, 30, tzinfo=UTC))
    assert not CAL.is_working_time(datetime(2025, 12, 1, 6, 29, tzinfo=UTC))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.is_working_time(datetime(2025, 12, 1, 11, 0))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2025-12-01T07:00", "2025-12-01T09:30"),  # before the opening: that day's
        ("2025-12-01T09:30", "2025-12-01T09:30"),  # at the opening: itself
        ("2025-12-01T11:00", "2025-12-02T09:30"),  # inside: the next day's
        ("2025-12-01T18:00", "2025-12-02T09:30"),
        ("2025-12-05T19:00", "2025-12-08T09:30"),  # Friday evening → Monday
        ("2025-12-30T18:30", "2026-01-12T09:30"),  # the New Year days off
        ("2025-10-31T20:00", "2025-11-01T09:30"),  # → the working Saturday
    ],
)
def test_next_window_start(at: str, expected: str) -> None:
    assert CAL.next_window_start(msk(at)) == msk(expected)


def test_working_day_arithmetic() -> None:
    assert CAL.working_days_after(date(2025, 12, 30), 1) == date(2026, 1, 12)
    assert CAL.working_days_after(date(2025, 12, 5), 2) == date(2025, 12, 9)
    assert CAL.working_days_after(date(2025, 12, 5), 0) == date(2025, 12, 5)
    assert CAL.next_working_day(date(2025, 10, 31)) == date(2025, 11, 1)
    assert CAL.previous_working_day(date(2026, 1, 12)) == date(2025, 12, 30)
    with pytest.raises(ValueError):
        CAL.working_days_after(date(2025, 12, 5), -1)


@pytest.mark.parametrize(
    ("received", "days", "due"),
    [
        # The examples.
        ("2025-12-01T11:00", 1, "2025-12-02T11:00"),
        ("2025-11-30T10:00", 1, "2025-12-01T18:00"),
        ("2025-12-30T10:00", 1, "2026-01-12T10:00"),
        # Counting across a weekend and over several days.
        ("2025-12-05T15:00", 1, "2025-12-08T15:00"),
        ("2025-12-05T15:00", 2, "2025-12-09T15:00"),
        ("2025-12-01T11:00", 5, "2025-12-08T11:00"),
        # Received at 17:30, the next day is short: that day's close.
        ("2025-04-29T17:30", 1, "2025-04-30T17:00"),
        # Received at exactly 18:00: outside; counts from Tuesday's opening, which lands on
        # Wednesday's opening, written as Tuesday's close.
        ("2025-12-01T18:00", 1, "2025-12-02T18:00"),
        # Received at the opening: the same rule, the day's own close.
        ("2025-12-01T09:30", 1, "2025-12-01T18:00"),
        ("2025-12-01T09:30", 2, "2025-12-02T18:00"),
        # Received on a short day after its 17:00 close: outside; 1 May–4 May are off.
        ("2025-04-30T17:30", 1, "2025-05-05T18:00"),
        # Inside a short day's window.
        ("2025-04-30T16:30", 1, "2025-05-05T16:30"),
        # The previous working day of an opening-rule deadline is short: its 17:00 close.
        ("2025-11-01T09:30", 1, "2025-11-01T17:00"),
        ("2025-10-31T19:00", 1, "2025-11-01T17:00"),
        # The working Saturday counts as a working day.
        ("2025-10-31T12:00", 1, "2025-11-01T12:00"),
        ("2025-10-31T12:00", 2, "2025-11-05T12:00"),
        # Before the opening on a working day: from that opening.
        ("2025-12-02T08:00", 1, "2025-12-02T18:00"),
        # Into a year the data files do not list (no short days known there).
        ("2026-12-30T12:00", 1, "2027-01-11T12:00"),
    ],
)
def test_business_days_later(received: str, days: int, due: str) -> None:
    assert CAL.business_days_later(msk(received), days) == msk(due)


def test_business_days_later_takes_utc_and_answers_in_moscow() -> None:
    due = CAL.business_days_later(datetime(2025, 12, 1, 8, 0, tzinfo=UTC), 1)
    assert due.isoformat() == "2025-12-02T11:00:00+03:00"


def test_business_days_later_needs_a_day() -> None:
    with pytest.raises(ValueError, match="at least one business day"):
        CAL.business_days_later(msk("2025-12-01T11:00"), 0)


# ---------------------------------------------------------------- properties

# Clock times around the edges of a window, mixed with arbitrary ones.
EDGE_TIMES = [
    time(0, 0), time(9, 29, 59), time(9, 30), time(16, 59, 59), time(17, 0),
    time(17, 0, 1), time(17, 30), time(17, 59, 59), time(18, 0), time(23, 59, 59),
]  # fmt: skip
# Days up to a holiday, a working weekend or a short day, where the rules have their edges.
NOTABLE_DAYS = sorted(
    {
        date.fromisoformat(day) + timedelta(days=shift)
        for official in OFFICIAL_CALENDARS.values()
        for days in official.values()
        for day in days
        for shift in (-2, -1, 0)
    }
)
ANY_DAY = st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31))
NOTABLE_DAY = st.sampled_from(NOTABLE_DAYS)


def _at(d: date, seconds: int) -> datetime:
    return datetime.combine(d, time(), tzinfo=MOSCOW) + timedelta(seconds=seconds)


SECONDS = st.integers(min_value=0, max_value=86399)
RECEIVED = st.one_of(
    st.builds(_at, ANY_DAY, SECONDS),
    st.builds(_at, NOTABLE_DAY, SECONDS),
    st.builds(
        lambda d, t: datetime.combine(d, t, tzinfo=MOSCOW), NOTABLE_DAY, st.sampled_from(EDGE_TIMES)
    ),
)
# One or two days (the regulation's usual) more often than longer counts.
DAYS = st.one_of(st.integers(min_value=1, max_value=2), st.integers(min_value=1, max_value=10))
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


@PROPERTY_SETTINGS
@given(received=RECEIVED, days=DAYS)
def test_deadline_is_inside_a_working_window_or_at_its_close(received: datetime, days: int) -> None:
    due = CAL.business_days_later(received, days)
    window = CAL.window(due.date())
    assert window is not None, f"{due} is on a day off"
    opening, closing = window
    # Never at an opening (the rule writes that as the previous close), never after a close.
    assert opening < due <= closing


@PROPERTY_SETTINGS
@given(received=RECEIVED, days=DAYS)
def test_deadline_is_never_earlier_than_receipt(received: datetime, days: int) -> None:
    assert CAL.business_days_later(received, days) > received


@PROPERTY_SETTINGS
@given(received=RECEIVED, days=DAYS)
def test_deadline_lies_on_the_nth_working_day_after_the_start(
    received: datetime, days: int
) -> None:
    due = CAL.business_days_later(received, days)
    start = CAL.counting_start(received)
    # Count the working days after the start's day up to the deadline's day, one by one.
    counted = 0
    d = start.date()
    while d < due.date():
        d += timedelta(days=1)
        counted += CAL.is_working_day(d)
    window = CAL.window(due.date())
    assert window is not None
    if counted == days:
        # The same clock time, or that day's earlier close.
        assert due.timetz() == start.timetz() or (
            due == window[1] and start.timetz() > due.timetz()
        )
    else:
        # The opening rule: a count that lands on an opening is the previous working day's close.
        assert counted == days - 1
        assert start.time() == time(9, 30)
        assert due == window[1]


@PROPERTY_SETTINGS
@given(first=RECEIVED, later_by=st.integers(min_value=0, max_value=5 * 86400), days=DAYS)
def test_a_later_request_never_gets_an_earlier_deadline(
    first: datetime, later_by: int, days: int
) -> None:
    second = first + timedelta(seconds=later_by)
    assert CAL.business_days_later(first, days) <= CAL.business_days_later(second, days)


# ---------------------------------------------------------------- data files


def write(tmp_path: Path, text: str, name: str = "overrides.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_an_operator_adds_a_new_years_decree_without_a_code_change(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
years:
  2027:
    decree: "an example decree"
    days_off: [2027-05-03, 2027-05-10]
    working_days: [2027-05-15]
    short_days: [2027-04-30, 2027-05-15]
""",
    )
    cal = BusinessCalendar.from_settings(Settings(calendar_overrides_file=path))
    summary = cal.production_year(2027)
    assert date(2027, 5, 3) in summary.holidays and date(2027, 5, 10) in summary.holidays
    assert date(2027, 5, 15) in summary.working_weekends
    assert summary.short_days == (date(2027, 4, 30), date(2027, 5, 15))
    assert summary.has_short_day_data and summary.decrees == ("an example decree",)
    assert cal.window(date(2027, 5, 15)) == (msk("2027-05-15T09:30"), msk("2027-05-15T17:00"))
    # The shipped years are untouched.
    assert [d.isoformat() for d in cal.production_year(2025).short_days] == (
        OFFICIAL_CALENDARS[2025]["short_days"]
    )
    # Without the file, 2027 has no short-day data and 15 May is a Saturday off.
    plain = BusinessCalendar.shipped()
    assert not plain.production_year(2027).has_short_day_data
    assert not plain.is_working_day(date(2027, 5, 15))


def test_overrides_correct_a_shipped_date(tmp_path: Path) -> None:
    # Say a new decree made 2026-12-30 a day off and 2026-12-29 short.
    path = write(
        tmp_path,
        "years:\n  2026:\n    days_off: ['2026-12-30']\n    short_days: ['2026-12-29']\n",
    )
    cal = BusinessCalendar.from_settings(Settings(calendar_overrides_file=path))
    assert not cal.is_working_day(date(2026, 12, 30))
    assert cal.is_short_day(date(2026, 12, 29))
    assert cal.is_short_day(date(2026, 11, 3))  # the shipped short days stay
    # A day off in a later file takes a shipped short day away with it.
    path2 = write(tmp_path, "years:\n  2026:\n    days_off: [2026-11-03]\n", "again.yaml")
    cal2 = BusinessCalendar.from_settings(Settings(calendar_overrides_file=path2))
    assert not cal2.is_working_day(date(2026, 11, 3)) and not cal2.is_short_day(date(2026, 11, 3))


def test_json_overrides_work_too(tmp_path: Path) -> None:
    path = write(tmp_path, '{"years": {"2027": {"short_days": ["2027-02-21"]}}}', "o.json")
    with pytest.raises(ConfigurationError, match="2027-02-21 are not working days"):
        BusinessCalendar.from_settings(Settings(calendar_overrides_file=path))
    path.write_text('{"years": {"2027": {"short_days": ["2027-04-30"]}}}', encoding="utf-8")
    cal = BusinessCalendar.from_settings(Settings(calendar_overrides_file=path))
    assert cal.is_short_day(date(2027, 4, 30))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("years:\n  2027:\n    days_off: [2027-02-30]\n", "bad date '2027-02-30'"),
        ("years:\n  2027:\n    days_off: [tomorrow]\n", "bad date 'tomorrow'"),
        ("years:\n  2027:\n    days_off: [20270105]\n", "bad date '20270105'"),
        (
            "years:\n  2027:\n    days_off: [2027-05-03]\n    working_days: [2027-05-03]\n",
            "2027-05-03 is in both days_off and working_days",
        ),
        (
            "years:\n  2027:\n    days_off: [2027-05-03]\n    short_days: [2027-05-03]\n",
            "2027-05-03 is in both days_off and short_days",
        ),
        ("years:\n  2027:\n    days_off: [2026-05-04]\n", "2026-05-04 is not in 2027"),
        ("years:\n  2027:\n    days_off: [2027-05-03, 2027-05-03]\n", "listed twice"),
        ("years:\n  2027:\n    holidays: [2027-05-03]\n", "unknown key 'holidays'"),
        ("years:\n  2027:\n    days_off: 2027-05-03\n", "expected a list of dates"),
        ("years:\n  next:\n    days_off: []\n", "'next' is not a year"),
        ("yeras: {}\n", "unknown top-level key(s) yeras"),
        ("- 2027-05-03\n", "expected a mapping with 'years'"),
        ("years: [2027\n", "not valid YAML"),
        ("years:\n  2027:\n    short_days: [2027-05-01]\n", "2027-05-01 are not working days"),
    ],
)
def test_a_bad_overrides_file_is_a_clear_configuration_error(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as err:
        BusinessCalendar.from_settings(Settings(calendar_overrides_file=path))
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "years:\n  2027:\n    days_off: [2027-13-01, 2026-01-05]\n")
    with pytest.raises(ConfigurationError) as err:
        load_calendar_data(path)
    assert "bad date '2027-13-01'" in str(err.value)
    assert "2026-01-05 is not in 2027" in str(err.value)


def test_a_missing_overrides_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigurationError, match="cannot read it"):
        BusinessCalendar.from_settings(Settings(calendar_overrides_file=missing))


def test_the_shipped_example_overrides_file_loads_and_changes_nothing() -> None:
    example = SHIPPED_CALENDAR.with_name("calendar_overrides.example.yaml")
    cal = BusinessCalendar.from_settings(Settings(calendar_overrides_file=example))
    for year, official in OFFICIAL_CALENDARS.items():
        assert [d.isoformat() for d in cal.production_year(year).holidays] == official["holidays"]


def test_the_shipped_file_names_each_years_decree() -> None:
    data = load_calendar_data(SHIPPED_CALENDAR)
    assert sorted(data.years) == [2024, 2025, 2026]
    assert "№ 1314" in (data.years[2024].decree or "")
    assert "№ 1335" in (data.years[2025].decree or "")
    assert "2026" in (data.years[2026].decree or "")
