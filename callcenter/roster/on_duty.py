"""The roster: who is on duty at a given moment.

Staff are specialists and one head of support. Their availability is described by shift
rules in Moscow time:

- weekly patterns: on the production calendar's working days (off on a holiday, on on a
  transferred working Saturday), on its days off, daily, or on named weekdays;
- dated duties: night and holiday duty on given dates;
- absences ("away"): dated rules that take a person out for whole days.

A rule's hours are `HH:MM-HH:MM`; an end not later than the start crosses midnight (the
rule belongs to the day it starts on; `09:30-09:30` is a full day). The words `open` and
`close` stand for that day's business window from the calendar, so `business`
(= `open-close`) ends at 17:00 on a short pre-holiday day and the evening duty
`close-09:30` starts at 17:00 then, leaving no gap. A rule with `open`/`close` does not
apply on a day without a window (a day off). Explicit times never move: `09:30-18:00`
stays 09:30-18:00 on a short day.

Rules add up: whoever any rule puts on duty is on duty. The urgent chain is ordered by
each rule's `order` (the smallest order a person gets at that moment), then by key. The
head of support is always the chain's last step, unless already in it.

The roster is replaced as a whole by `callcenter.roster.importer.import_roster`
(all-or-nothing, errors by line; the YAML format is documented in
`scripts/examples/roster.yaml`). `roster_health` lists what a
supervisor must fix; with nobody on duty calls go to `settings.duty_phone`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Protocol

from babel.dates import format_datetime
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from callcenter.clock import MOSCOW, to_moscow
from callcenter.db.models import Shift, Staff

if TYPE_CHECKING:
    from callcenter.settings import Settings

SPECIALIST = "specialist"
HEAD = "head"
ROLES = (SPECIALIST, HEAD)

CONSULTATION = "consultation"
URGENT = "urgent"
BOTH = "both"
AWAY = "away"
DUTIES = (CONSULTATION, URGENT, BOTH)

WORKING_DAYS = "working_days"
DAYS_OFF = "days_off"
DATE = "date"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

HEALTH_HORIZON = timedelta(days=7)
HEALTH_STEP = timedelta(minutes=30)


class WorkCalendar(Protocol):
    """What the roster needs of `callcenter.regulation.calendar.BusinessCalendar`."""

    def is_working_day(self, d: date) -> bool: ...

    def window(self, d: date) -> tuple[datetime, datetime] | None: ...

    def is_working_time(self, at: datetime) -> bool: ...


# ---------------------------------------------------------------- the roster in memory


@dataclass(frozen=True)
class Person:
    key: str
    name: str
    role: str
    phones: tuple[str, ...]
    sms: str | None

    @property
    def is_head(self) -> bool:
        return self.role == HEAD


@dataclass(frozen=True)
class ShiftRule:
    """One stored shift, evaluated against the calendar."""

    staff_key: str
    duty: str
    pattern: str
    on_date: date | None
    start: str
    end: str
    order: int

    def matches_day(self, day: date, calendar: WorkCalendar) -> bool:
        if self.pattern == DATE:
            return self.on_date == day
        if self.pattern == WORKING_DAYS:
            return calendar.is_working_day(day)
        if self.pattern == DAYS_OFF:
            return not calendar.is_working_day(day)
        return WEEKDAYS[day.weekday()] in self.pattern.split(",")

    def interval(self, day: date, calendar: WorkCalendar) -> tuple[datetime, datetime] | None:
        """The Moscow-time interval this rule covers when started on `day`, if it applies."""
        if not self.matches_day(day, calendar):
            return None
        window = None
        if self.start in ("open", "close") or self.end in ("open", "close"):
            window = calendar.window(day)
            if window is None:
                return None
        start = _resolve_moment(self.start, day, window)
        end = _resolve_moment(self.end, day, window)
        if end <= start:
            end = datetime.combine(day + timedelta(days=1), end.timetz())
        return start, end

    def covers(self, at: datetime, calendar: WorkCalendar) -> bool:
        local = to_moscow(at)
        for day in (local.date(), local.date() - timedelta(days=1)):
            span = self.interval(day, calendar)
            if span is not None and span[0] <= local < span[1]:
                return True
        return False


def _resolve_moment(value: str, day: date, window: tuple[datetime, datetime] | None) -> datetime:
    if value == "open" and window is not None:
        return to_moscow(window[0])
    if value == "close" and window is not None:
        return to_moscow(window[1])
    return datetime.combine(day, time.fromisoformat(value), tzinfo=MOSCOW)


@dataclass(frozen=True)
class OnDuty:
    """Who answers at one moment."""

    at: datetime
    working_time: bool
    consultation: tuple[Person, ...]
    # Specialists on urgent duty, in the order they are rung (the head is not in it
    # unless the roster puts the head on urgent duty).
    urgent_chain: tuple[Person, ...]
    head: Person | None

    @property
    def escalation(self) -> tuple[Person, ...]:
        """The urgent chain followed by the head of support (once)."""
        if self.head is None or self.head in self.urgent_chain:
            return self.urgent_chain
        return (*self.urgent_chain, self.head)

    @property
    def duty_specialist(self) -> Person | None:
        """The person who takes consultations after hours."""
        if self.consultation:
            return self.consultation[0]
        if self.urgent_chain:
            return self.urgent_chain[0]
        return None


_ACTIVE_STAFF = select(Staff.id, Staff.key, Staff.name, Staff.role, Staff.phones, Staff.sms).where(
    Staff.active.is_(True)
)
_SHIFTS = select(
    Shift.staff_id,
    Shift.duty,
    Shift.pattern,
    Shift.on_date,
    Shift.start_local,
    Shift.end_local,
    Shift.chain_order,
).order_by(Shift.id)


@dataclass(frozen=True)
class Roster:
    people: Mapping[str, Person]
    rules: tuple[ShiftRule, ...]

    @classmethod
    def load(cls, db: Session | Connection) -> Roster:
        # Column rows, not ORM objects: every routing step loads the roster, and the
        # identity map and instance state of ~20 shifts cost more than the query.
        staff = db.execute(_ACTIVE_STAFF).all()
        people = {s.key: Person(s.key, s.name, s.role, tuple(s.phones or ()), s.sms) for s in staff}
        by_id = {s.id: s.key for s in staff}
        rules = tuple(
            ShiftRule(
                by_id[sh.staff_id],
                sh.duty,
                sh.pattern,
                sh.on_date,
                sh.start_local,
                sh.end_local,
                sh.chain_order,
            )
            for sh in db.execute(_SHIFTS)
            if sh.staff_id in by_id
        )
        return cls(people, rules)

    @property
    def heads(self) -> list[Person]:
        return [p for p in self.people.values() if p.is_head]

    def on_duty(self, at: datetime, calendar: WorkCalendar) -> OnDuty:
        away = {r.staff_key for r in self.rules if r.duty == AWAY and r.covers(at, calendar)}
        consultation: dict[str, int] = {}
        urgent: dict[str, int] = {}
        for rule in self.rules:
            if rule.duty == AWAY or rule.staff_key in away:
                continue
            if not rule.covers(at, calendar):
                continue
            if rule.duty in (CONSULTATION, BOTH):
                consultation[rule.staff_key] = min(
                    rule.order, consultation.get(rule.staff_key, rule.order)
                )
            if rule.duty in (URGENT, BOTH):
                urgent[rule.staff_key] = min(rule.order, urgent.get(rule.staff_key, rule.order))
        heads = [p for p in self.heads if p.key not in away]
        return OnDuty(
            at=at,
            working_time=calendar.is_working_time(at),
            consultation=self._ordered(consultation),
            urgent_chain=self._ordered(urgent),
            head=heads[0] if heads else None,
        )

    def _ordered(self, orders: Mapping[str, int]) -> tuple[Person, ...]:
        keys = sorted(orders, key=lambda k: (orders[k], k))
        return tuple(self.people[k] for k in keys)


def on_duty(db: Session | Connection, at: datetime, calendar: WorkCalendar) -> OnDuty:
    """Who is on duty at `at` (any time zone; evaluated in Moscow time)."""
    return Roster.load(db).on_duty(at, calendar)


def alert_numbers(
    session: Session, at: datetime, calendar: WorkCalendar, settings: Settings
) -> list[str]:
    """SMS numbers of the people on duty now (urgent chain, then the head).

    Falls back to `[settings.duty_phone]` when one is set (none: nobody to text).
    """
    numbers: list[str] = []
    for person in on_duty(session, at, calendar).escalation:
        if person.sms and person.sms not in numbers:
            numbers.append(person.sms)
    return numbers or ([settings.duty_phone] if settings.duty_phone else [])


# ---------------------------------------------------------------- health


def roster_health(session: Session, at: datetime, calendar: WorkCalendar) -> list[str]:
    """What a supervisor must fix, in Russian (shown at start-up and on the console).

    Empty when the roster is sound. Checks: staff present, one head of support, someone on
    urgent duty now, no gap in urgent cover over the next seven days, SMS numbers.
    """
    roster = Roster.load(session)
    if not roster.people:
        return [
            "График дежурств пуст: все звонки уходят на дежурный телефон из настроек "
            "(DUTY_PHONE), а если он не задан — на автоответчик. "
            "Загрузите график: callcenter roster import roster.yaml"
        ]
    warnings: list[str] = []
    if not roster.heads:
        warnings.append("В графике нет руководителя поддержки (role: head).")
    now = roster.on_duty(at, calendar)
    if not now.urgent_chain:
        warnings.append(
            "Сейчас нет дежурного специалиста для срочных звонков: "
            + (
                "звонят только руководителю поддержки."
                if now.head
                else "звонки уходят на дежурный телефон из настроек."
            )
        )
    gaps = _urgent_gaps(roster, at, calendar)
    if gaps:
        shown = "; ".join(f"{_say_moment(a)} – {_say_moment(b)}" for a, b in gaps[:3])
        more = f" и ещё {len(gaps) - 3}" if len(gaps) > 3 else ""
        warnings.append(f"Нет дежурного для срочных звонков в ближайшие 7 дней: {shown}{more}.")
    without_sms = sorted(p.name for p in roster.people.values() if not p.sms)
    if without_sms:
        warnings.append(
            "Нет номера для SMS-оповещений (нет мобильного): " + ", ".join(without_sms) + "."
        )
    return warnings


def _urgent_gaps(
    roster: Roster, at: datetime, calendar: WorkCalendar
) -> list[tuple[datetime, datetime]]:
    """Half-hour-resolution intervals of the next week with nobody on urgent duty."""
    local = to_moscow(at)
    moment = local.replace(minute=0 if local.minute < 30 else 30, second=0, microsecond=0)
    end = moment + HEALTH_HORIZON
    gaps: list[tuple[datetime, datetime]] = []
    gap_start: datetime | None = None
    while moment < end:
        covered = bool(roster.on_duty(moment, calendar).urgent_chain)
        if not covered and gap_start is None:
            gap_start = moment
        elif covered and gap_start is not None:
            gaps.append((gap_start, moment))
            gap_start = None
        moment += HEALTH_STEP
    if gap_start is not None:
        gaps.append((gap_start, end))
    return gaps


def _say_moment(at: datetime) -> str:
    return str(format_datetime(to_moscow(at), "EEE d MMMM HH:mm", locale="ru"))


# ---------------------------------------------------------------- describing a roster


def describe_rule(rule: ShiftRule) -> str:
    """`working_days 09:30-18:00` in the roster file's own words."""
    if rule.pattern == DATE and rule.on_date is not None:
        days = rule.on_date.isoformat()
    elif rule.pattern == ",".join(WEEKDAYS):
        days = "daily"
    else:
        days = rule.pattern
    hours = f"{rule.start}-{rule.end}"
    if hours == "open-close":
        hours = "business"
    elif hours == "00:00-00:00":
        hours = "all-day"
    return f"{days} {hours}"
