"""The supervisor's figures for a period: calls, tickets, urgent calls, callbacks, hours.

Flask-free: `figures(session, period, lines=...)` reads the log and returns plain values;
the console draws them. A period is a range of Moscow calendar days, inclusive.

The figures, and why they are counted so:
- calls by line, category and topic; calls per day; calls per hour of the day (Moscow);
- tickets opened: calls of the period that have a portal ticket number;
- the ticket share: of the finished calls on a ticketed path (new problem, critical
  failure, stolen vehicle), how many have a ticket — the regulation says all of them;
- urgent calls answered: an urgent call counts as answered when a person in the chain
  pressed 1; the time to answer runs from the first leg starting to ring to that press
  (`DialLeg`), the median over the period's answered urgent calls;
- abandoned calls (hung up before choosing) and how many of them still wait for a callback;
- calls needing attention: the log's problem rows (`calllog_review`).

Cost: one narrow row per call of the period (no ORM objects), the legs of its urgent
calls, and one count; all by the `calls.started_at` index.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callcenter.calllog.query import not_a_date_words, out_of_range_words
from callcenter.calllog.review import needs_attention
from callcenter.calllog.words import CATEGORY_TITLES, line_title, topic_title
from callcenter.clock import EARLIEST_DAY, LATEST_DAY, MOSCOW, day_in_range, to_moscow
from callcenter.db.models import Call, DialLeg, TicketRequest
from callcenter.errors import InvalidFilter
from callcenter.vocabulary import TICKETED_CATEGORIES, URGENT_CATEGORIES, Category, Outcome

MAX_PERIOD_DAYS = 366
DEFAULT_PERIOD_DAYS = 30


@dataclass(frozen=True)
class Period:
    """Moscow calendar days `first` … `last`, both included."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise InvalidFilter(
                "to",
                f"{self.last} is before from={self.first}",
                f"дата «по» ({self.last:%d.%m.%Y}) раньше даты «с» ({self.first:%d.%m.%Y})",
            )
        if (self.last - self.first).days >= MAX_PERIOD_DAYS:
            raise InvalidFilter(
                "to",
                f"a period is at most {MAX_PERIOD_DAYS} days",
                f"период длиннее {MAX_PERIOD_DAYS} дней",
            )

    @classmethod
    def ending(cls, last: date, days: int = DEFAULT_PERIOD_DAYS) -> Period:
        return cls(last - timedelta(days=days - 1), last)

    @classmethod
    def parse(cls, first: str | None, last: str | None, *, today: date) -> Period:
        """From a form's `from`/`to` (YYYY-MM-DD; blank: the last 30 days to today)."""
        end = _day("to", last) or today
        start = _day("from", first) or end - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
        return cls(start, end)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0, 0), MOSCOW).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the period."""
        return datetime.combine(self.last + timedelta(days=1), time(0, 0), MOSCOW).astimezone(UTC)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def _day(field: str, raw: str | None) -> date | None:
    if raw is None or not raw.strip():
        return None
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidFilter(
            field, f"{raw!r} is not a date (YYYY-MM-DD)", not_a_date_words(raw)
        ) from None
    if not day_in_range(day):
        raise InvalidFilter(
            field,
            f"{raw!r} is out of range ({EARLIEST_DAY.year}–{LATEST_DAY.year})",
            out_of_range_words(raw),
        )
    return day


@dataclass(frozen=True)
class Count:
    key: str
    title: str
    count: int


@dataclass(frozen=True)
class Figures:
    period: Period
    calls: int
    by_line: list[Count]
    by_category: list[Count]
    by_topic: list[Count]
    by_day: list[tuple[date, int]]
    by_hour: list[int]  # 24 values, Moscow hours 0…23
    tickets_opened: int
    ticketable: int
    ticketed: int
    tickets_failed: int
    urgent: int
    urgent_answered: int
    urgent_median_answer_seconds: float | None
    abandoned: int
    abandoned_waiting: int
    attention: int

    @property
    def ticket_share(self) -> float | None:
        """Share of finished ticketed-path calls with a ticket (None: there were none)."""
        return self.ticketed / self.ticketable if self.ticketable else None

    @property
    def busiest_hours(self) -> list[int]:
        """Up to three hours of the day with the most calls, busiest first."""
        ranked = sorted((h for h in range(24) if self.by_hour[h]), key=lambda h: -self.by_hour[h])
        return ranked[:3]


def figures(
    session: Session,
    period: Period,
    *,
    lines: Mapping[str, str],
    now: datetime | None = None,
) -> Figures:
    """The period's figures; `now` judges overdue call backs for the attention count."""
    in_period = (Call.started_at >= period.start, Call.started_at < period.end)
    rows = session.execute(
        select(
            Call.started_at,
            Call.line,
            Call.category,
            Call.topic,
            Call.outcome,
            Call.called_back_at,
            Call.caller_e164,
            TicketRequest.status,
            TicketRequest.ticket_number,
        )
        .outerjoin(TicketRequest, TicketRequest.call_id == Call.id)
        .where(*in_period)
    ).all()

    by_line: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    by_topic: Counter[str] = Counter()
    by_day: Counter[date] = Counter()
    by_hour = [0] * 24
    tickets_opened = ticketable = ticketed = tickets_failed = 0
    urgent = abandoned = abandoned_waiting = 0
    opened_numbers: set[str] = set()
    for started, line, category, topic, outcome, called_back, caller, status, number in rows:
        local = to_moscow(started)
        by_day[local.date()] += 1
        by_hour[local.hour] += 1
        by_line[line or ""] += 1
        by_category[category or ""] += 1
        if topic:
            by_topic[topic] += 1
        has_ticket = number is not None and status != "failed"
        # Counted once per ticket: calls that joined an existing ticket (a critical
        # failure duplicated by phone) open nothing new.
        if number is not None and has_ticket and number not in opened_numbers:
            opened_numbers.add(number)
            tickets_opened += 1
        tickets_failed += status == "failed"
        finished = outcome != Outcome.IN_PROGRESS
        if category in TICKETED_CATEGORIES and finished:
            ticketable += 1
            ticketed += has_ticket
        if category in URGENT_CATEGORIES:
            urgent += 1
        if category == Category.ABANDONED:
            abandoned += 1
            abandoned_waiting += called_back is None and caller is not None

    answered = _urgent_answer_times(session, period)
    attention = (
        session.scalar(select(func.count(Call.id)).where(*in_period, needs_attention(now=now))) or 0
    )
    return Figures(
        period=period,
        calls=len(rows),
        by_line=[Count(key, line_title(key or None, lines), n) for key, n in by_line.most_common()],
        by_category=[
            Count(key, CATEGORY_TITLES.get(key, key or "Не определена"), n)
            for key, n in by_category.most_common()
        ],
        by_topic=[Count(key, topic_title(key), n) for key, n in by_topic.most_common()],
        by_day=[(day, by_day[day]) for day in period.days],
        by_hour=by_hour,
        tickets_opened=tickets_opened,
        ticketable=ticketable,
        ticketed=ticketed,
        tickets_failed=tickets_failed,
        urgent=urgent,
        urgent_answered=len(answered),
        urgent_median_answer_seconds=statistics.median(answered) if answered else None,
        abandoned=abandoned,
        abandoned_waiting=abandoned_waiting,
        attention=attention,
    )


def _urgent_answer_times(session: Session, period: Period) -> list[float]:
    """Seconds from the first ring to the press of 1, per answered urgent call."""
    legs = session.execute(
        select(DialLeg.call_id, DialLeg.started_at, DialLeg.answered_at, DialLeg.result)
        .join(Call, Call.id == DialLeg.call_id)
        .where(
            Call.started_at >= period.start,
            Call.started_at < period.end,
            Call.category.in_(URGENT_CATEGORIES),
        )
    ).all()
    first_ring: dict[int, datetime] = {}
    accepted: dict[int, datetime] = {}
    for call_id, started, answered, result in legs:
        if call_id not in first_ring or started < first_ring[call_id]:
            first_ring[call_id] = started
        if result == "accepted" and answered is not None:
            accepted[call_id] = answered
    return [
        max(0.0, (at - first_ring[call_id]).total_seconds()) for call_id, at in accepted.items()
    ]
