"""The clock is injected everywhere so tests can stand on any moment."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MOSCOW = ZoneInfo("Europe/Moscow")

Clock = Callable[[], datetime]

# The days a filter, a period or a moment asked for may name: the service's calls all lie
# well inside. Outside, a date is an input error (0001-01-01 or 9999-12-31 would overflow
# when turned into a Moscow midnight in UTC, or a day after it).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)


def day_in_range(day: date) -> bool:
    return EARLIEST_DAY <= day <= LATEST_DAY


def system_clock() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Clock:
    """A clock that always says `at` (must be timezone-aware)."""
    if at.tzinfo is None:
        raise ValueError("fixed_clock needs a timezone-aware datetime")
    frozen = at.astimezone(UTC)
    return lambda: frozen


def running_clock(start: datetime, monotonic: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that says `start` now and then runs: a night or a holiday to play through
    (the `CALLCENTER_CLOCK` setting)."""
    if start.tzinfo is None:
        raise ValueError("running_clock needs a timezone-aware datetime")
    origin, base = monotonic(), start.astimezone(UTC)
    return lambda: base + timedelta(seconds=monotonic() - origin)


def to_moscow(at: datetime) -> datetime:
    if at.tzinfo is None:
        # Naive values come back from SQLite; we only ever store UTC.
        at = at.replace(tzinfo=UTC)
    return at.astimezone(MOSCOW)


def as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)
