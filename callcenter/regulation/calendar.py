"""The Russian business calendar in Moscow time: working days, working hours, and
"N business days later".

Days off come from the `holidays` package's Russia calendar, which models the statutory
holidays and the government's transfers. It has no shortened pre-holiday days, and it can
lag behind a new decree, so data files are layered over it, date by date:
`data/production_calendar.yaml` (shipped: the 2024–2026 decrees and short days), then the
operator's file named by `Settings.calendar_overrides_file`. Both are validated when the
calendar is built; a bad file is a `ConfigurationError` that names the file and the entry.

Working hours are 09:30–18:00 on a working day and 09:30–17:00 on a short day. The
calendar takes no clock: callers pass the moments they care about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import holidays
import yaml

from callcenter.clock import MOSCOW
from callcenter.errors import ConfigurationError

if TYPE_CHECKING:
    from callcenter.settings import Settings

OPENING = time(9, 30)
CLOSING = time(18, 0)
SHORT_CLOSING = time(17, 0)
# The official calendars count hours for a 40-hour week: 8 a day, one less on a short day.
NORM_HOURS_PER_DAY = 8

SHIPPED_CALENDAR = Path(__file__).resolve().parent / "data" / "production_calendar.yaml"

_YEAR_KEYS = ("decree", "days_off", "working_days", "short_days")
_DATE_LISTS = ("days_off", "working_days", "short_days")


# ---------------------------------------------------------------- data files


@dataclass(frozen=True)
class DecreeYear:
    """One year's entries in one data file."""

    year: int
    decree: str | None
    days_off: frozenset[date]
    working_days: frozenset[date]
    # None: the file says nothing about short days this year (not the same as "none").
    short_days: frozenset[date] | None


@dataclass(frozen=True)
class CalendarData:
    """One data file: where it came from and what it says, per year."""

    source: str
    years: Mapping[int, DecreeYear]


class _StringDatesLoader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text, so a bad date is reported with its place
    rather than as a bare ValueError from deep inside the YAML parser."""


_StringDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_calendar_data(path: Path) -> CalendarData:
    """Read and validate one calendar data file (YAML; JSON is YAML too).

    Every problem in the file is collected and reported together.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"calendar file {source}: cannot read it: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_StringDatesLoader)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"calendar file {source}: not valid YAML: {exc}") from None
    return parse_calendar_data(raw, source)


def parse_calendar_data(raw: Any, source: str) -> CalendarData:
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"calendar file {source}: expected a mapping with 'years'")
    unknown = sorted(str(k) for k in raw if k != "years")
    if unknown:
        problems.append(f"unknown top-level key(s) {', '.join(unknown)} (expected 'years')")
    years_raw = raw.get("years") or {}
    if not isinstance(years_raw, dict):
        problems.append("'years' must map a year (e.g. 2027) to its entries")
        years_raw = {}
    years: dict[int, DecreeYear] = {}
    for key, entry in years_raw.items():
        parsed = _parse_year(key, entry, problems)
        if parsed is not None:
            years[parsed.year] = parsed
    if problems:
        raise ConfigurationError(f"calendar file {source}: " + "; ".join(problems))
    return CalendarData(source=source, years=years)


def _parse_year(key: object, entry: object, problems: list[str]) -> DecreeYear | None:
    if isinstance(key, int) and not isinstance(key, bool):
        year = key
    elif isinstance(key, str) and key.strip().isascii() and key.strip().isdigit():
        year = int(key)
    else:
        problems.append(f"years: {key!r} is not a year")
        return None
    if not 1991 <= year <= 9998:
        problems.append(f"years: {year} is out of range")
        return None
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        problems.append(f"years.{year}: expected a mapping of {', '.join(_YEAR_KEYS)}")
        return None
    for unknown in sorted(str(k) for k in entry if k not in _YEAR_KEYS):
        problems.append(f"years.{year}: unknown key {unknown!r} (expected {', '.join(_YEAR_KEYS)})")
    decree = entry.get("decree")
    if decree is not None and not isinstance(decree, str):
        problems.append(f"years.{year}.decree: expected text")
        decree = None
    lists = {name: _parse_dates(year, name, entry.get(name), problems) for name in _DATE_LISTS}
    off = lists["days_off"]
    for other in ("working_days", "short_days"):
        for d in sorted(off & lists[other]):
            problems.append(f"years.{year}: {d.isoformat()} is in both days_off and {other}")
    return DecreeYear(
        year=year,
        decree=decree,
        days_off=frozenset(off),
        working_days=frozenset(lists["working_days"]),
        short_days=frozenset(lists["short_days"]) if "short_days" in entry else None,
    )


def _parse_dates(year: int, name: str, value: object, problems: list[str]) -> set[date]:
    where = f"years.{year}.{name}"
    if value is None:
        return set()
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list of dates (YYYY-MM-DD)")
        return set()
    seen: set[date] = set()
    for item in value:
        text = str(item).strip()
        try:
            d = date.fromisoformat(text)
        except ValueError as exc:
            problems.append(f"{where}: bad date {text!r} ({exc})")
            continue
        if len(text) != 10:
            # fromisoformat also takes 20241231 and week dates; a decree date is YYYY-MM-DD.
            problems.append(f"{where}: bad date {text!r} (write YYYY-MM-DD)")
            continue
        if d.year != year:
            problems.append(f"{where}: {text} is not in {year}")
        elif d in seen:
            problems.append(f"{where}: {text} is listed twice")
        seen.add(d)
    return {d for d in seen if d.year == year}


@cache
def _shipped_data() -> CalendarData:
    return load_calendar_data(SHIPPED_CALENDAR)


# ---------------------------------------------------------------- one year


@dataclass(frozen=True)
class ProductionYear:
    """One year of the production calendar, as the official tables present it."""

    year: int
    # Non-working days that fall on Monday–Friday (statutory holidays and transfers).
    holidays: tuple[date, ...]
    # Saturdays and Sundays that are working days.
    working_weekends: tuple[date, ...]
    short_days: tuple[date, ...]
    working_day_count: int
    # Hours for a 40-hour week, the figure the official tables print.
    norm_hours: int
    # False when no data file lists this year's short days (they are then unknown, not none).
    has_short_day_data: bool
    decrees: tuple[str, ...]


@dataclass(frozen=True)
class _Year:
    days_off: frozenset[date]
    short_days: frozenset[date]
    has_short_day_data: bool
    decrees: tuple[str, ...]


def _days_of(year: int) -> Iterable[date]:
    d = date(year, 1, 1)
    while d.year == year:
        yield d
        d += timedelta(days=1)


# ---------------------------------------------------------------- the calendar


class BusinessCalendar:
    """Working days and hours of the Russian production calendar, Moscow time."""

    def __init__(self, layers: Sequence[CalendarData] = ()) -> None:
        self._layers = tuple(layers)
        self._years: dict[int, _Year] = {}
        # Build every year a file mentions now, so a bad file fails at start-up, not in
        # the middle of a call.
        for year in sorted({y for layer in self._layers for y in layer.years}):
            self._year(year)

    @classmethod
    def from_settings(cls, settings: Settings) -> BusinessCalendar:
        layers = [_shipped_data()]
        if settings.calendar_overrides_file is not None:
            layers.append(load_calendar_data(settings.calendar_overrides_file))
        return cls(layers)

    @classmethod
    def shipped(cls) -> BusinessCalendar:
        """The library plus the shipped data, without any operator overrides."""
        return cls([_shipped_data()])

    # -- days

    def _year(self, year: int) -> _Year:
        cached = self._years.get(year)
        if cached is not None:
            return cached
        library = holidays.country_holidays("RU", years=year)
        weekend_workdays = {d for d in library.weekend_workdays if d.year == year}
        off = {
            d
            for d in _days_of(year)
            if d in library or (d.weekday() >= 5 and d not in weekend_workdays)
        }
        short: set[date] = set()
        has_short_data = False
        decrees: list[str] = []
        for layer in self._layers:
            entry = layer.years.get(year)
            if entry is None:
                continue
            if entry.decree:
                decrees.append(entry.decree)
            off |= entry.days_off
            short -= entry.days_off
            off -= entry.working_days
            if entry.short_days is not None:
                has_short_data = True
                short |= entry.short_days
        not_working = sorted(short & off)
        if not_working:
            listed = ", ".join(d.isoformat() for d in not_working)
            sources = ", ".join(layer.source for layer in self._layers if year in layer.years)
            raise ConfigurationError(
                f"calendar {year}: short day(s) {listed} are not working days "
                f"(list a working weekend in working_days too); files: {sources}"
            )
        built = _Year(frozenset(off), frozenset(short), has_short_data, tuple(decrees))
        self._years[year] = built
        return built

    def is_working_day(self, d: date) -> bool:
        return _day(d) not in self._year(d.year).days_off

    def is_short_day(self, d: date) -> bool:
        return _day(d) in self._year(d.year).short_days

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after `d`."""
        return self.working_days_after(d, 1)

    def previous_working_day(self, d: date) -> date:
        """The last working day strictly before `d`."""
        d -= timedelta(days=1)
        while not self.is_working_day(d):
            d -= timedelta(days=1)
        return d

    def working_days_after(self, d: date, n: int) -> date:
        """The n-th working day strictly after `d` (n >= 1); `d` itself for n == 0."""
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        while n > 0:
            d += timedelta(days=1)
            if self.is_working_day(d):
                n -= 1
        return d

    def production_year(self, year: int) -> ProductionYear:
        data = self._year(year)
        days = list(_days_of(year))
        working = [d for d in days if d not in data.days_off]
        return ProductionYear(
            year=year,
            holidays=tuple(d for d in days if d.weekday() < 5 and d in data.days_off),
            working_weekends=tuple(d for d in working if d.weekday() >= 5),
            short_days=tuple(sorted(data.short_days)),
            working_day_count=len(working),
            norm_hours=NORM_HOURS_PER_DAY * len(working) - len(data.short_days),
            has_short_day_data=data.has_short_day_data,
            decrees=data.decrees,
        )

    # -- hours

    def window(self, d: date) -> tuple[datetime, datetime] | None:
        """Opening and closing of day `d` (Moscow-aware), or None on a day off."""
        if not self.is_working_day(d):
            return None
        closing = SHORT_CLOSING if self.is_short_day(d) else CLOSING
        return (
            datetime.combine(d, OPENING, tzinfo=MOSCOW),
            datetime.combine(d, closing, tzinfo=MOSCOW),
        )

    def is_working_time(self, at: datetime) -> bool:
        """Inside a working window: from the opening, up to but not including the close."""
        local = _moscow(at)
        window = self.window(local.date())
        return window is not None and window[0] <= local < window[1]

    def next_window_start(self, at: datetime) -> datetime:
        """The first opening at or after `at`, in Moscow time."""
        local = _moscow(at)
        d = local.date()
        window = self.window(d)
        if window is not None and local <= window[0]:
            return window[0]
        opening = self.window(self.next_working_day(d))
        assert opening is not None
        return opening[0]

    def counting_start(self, at: datetime) -> datetime:
        """Where a business-day count starts: `at` itself inside a working window, else the
        next opening."""
        local = _moscow(at)
        return local if self.is_working_time(local) else self.next_window_start(local)

    def business_days_later(self, received: datetime, days: int) -> datetime:
        """The regulation's "N business days" from `received`, in Moscow time.

        Counted from `received` inside a working window, else from the next opening. The
        result is the same clock time on the N-th following working day, or that day's close
        if it closes earlier (a short day). A result exactly at an opening is written as the
        previous working day's close: "by 09:30 Tuesday" and "by 18:00 Monday" are the same
        moment for the people working on it, and the latter is what they expect to read.
        """
        if days < 1:
            raise ValueError(f"a deadline needs at least one business day, got {days}")
        start = self.counting_start(received)
        target = self.working_days_after(start.date(), days)
        window = self.window(target)
        assert window is not None
        opening, closing = window
        due = min(datetime.combine(target, start.timetz()), closing)
        if due == opening:
            previous = self.window(self.previous_working_day(target))
            assert previous is not None
            return previous[1]
        return due


def _day(d: date) -> date:
    # A datetime is a date to Python, but never equal to one: it would never be found in
    # the calendar's sets and every moment would look like a working day.
    if isinstance(d, datetime):
        raise TypeError(f"a date is needed, got the moment {d.isoformat()}; use its .date()")
    return d


def _moscow(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is needed, got naive {at.isoformat()}")
    return at.astimezone(MOSCOW)
