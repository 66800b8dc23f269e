"""The clock is injected everywhere so tests can stand on any moment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

MOSCOW = ZoneInfo("Europe/Moscow")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Clock:
    """A clock that always says `at` (must be timezone-aware)."""
    if at.tzinfo is None:
        raise ValueError("fixed_clock needs a timezone-aware datetime")
    frozen = at.astimezone(UTC)
    return lambda: frozen


def to_moscow(at: datetime) -> datetime:
    if at.tzinfo is None:
        # Naive values come back from SQLite; we only ever store UTC.
        at = at.replace(tzinfo=UTC)
    return at.astimezone(MOSCOW)


def as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)
