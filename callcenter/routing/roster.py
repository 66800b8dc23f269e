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

The roster is replaced as a whole by `import_roster` (all-or-nothing, errors by line; the
YAML format is documented in `scripts/examples/roster.yaml`). `roster_health` lists what a
supervisor must fix; with nobody on duty calls go to `settings.duty_phone`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Protocol

import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callcenter.clock import MOSCOW, to_moscow
from callcenter.db.models import Shift, Staff
from callcenter.errors import ImportRejected

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

# A dated range longer than this is a typo (a year written wrong), not a duty.
MAX_DATED_RANGE_DAYS = 400
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


@dataclass(frozen=True)
class Roster:
    people: Mapping[str, Person]
    rules: tuple[ShiftRule, ...]

    @classmethod
    def load(cls, session: Session) -> Roster:
        staff = session.scalars(select(Staff).where(Staff.active.is_(True))).all()
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
            for sh in session.scalars(select(Shift).order_by(Shift.id))
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


def on_duty(session: Session, at: datetime, calendar: WorkCalendar) -> OnDuty:
    """Who is on duty at `at` (any time zone; evaluated in Moscow time)."""
    return Roster.load(session).on_duty(at, calendar)


def alert_numbers(
    session: Session, at: datetime, calendar: WorkCalendar, settings: Settings
) -> list[str]:
    """SMS numbers of the people on duty now (urgent chain, then the head).

    Falls back to `[settings.duty_phone]` so an alert always has somewhere to go.
    """
    numbers: list[str] = []
    for person in on_duty(session, at, calendar).escalation:
        if person.sms and person.sms not in numbers:
            numbers.append(person.sms)
    return numbers or [settings.duty_phone]


# ---------------------------------------------------------------- health


def roster_health(session: Session, at: datetime, calendar: WorkCalendar) -> list[str]:
    """What a supervisor must fix, in Russian (shown at start-up and on the console).

    Empty when the roster is sound. Checks: staff present, one head of support, someone on
    urgent duty now, no gap in urgent cover over the next seven days, SMS numbers.
    """
    roster = Roster.load(session)
    if not roster.people:
        return [
            "График дежурств пуст: все звонки уходят на дежурный телефон из настроек. "
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
    from babel.dates import format_datetime

    return str(format_datetime(to_moscow(at), "EEE d MMMM HH:mm", locale="ru"))


# ---------------------------------------------------------------- YAML import


@dataclass
class RosterImport:
    """What an import wrote."""

    staff: int = 0
    shifts: int = 0
    duties: int = 0
    absences: int = 0
    deactivated: list[str] = field(default_factory=list)


@dataclass
class _StaffSpec:
    line: int
    key: str
    name: str
    role: str
    phones: list[str]
    sms: str | None
    away: list[date]


@dataclass
class _RuleSpec:
    line: int
    staff: str
    duty: str
    pattern: str
    dates: list[date]
    start: str
    end: str
    order: int


@dataclass
class RosterSpec:
    staff: list[_StaffSpec]
    shifts: list[_RuleSpec]
    duties: list[_RuleSpec]


_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,59}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_STAFF_FIELDS = {"key", "name", "role", "phones", "phone", "sms", "away"}
_SHIFT_FIELDS = {"staff", "days", "hours", "duty", "order"}
_DUTY_FIELDS = {"staff", "dates", "date", "hours", "duty", "order"}


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def add(self, node: yaml.Node | int, why: str) -> None:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        self.items.append((line, why))


def parse_roster(text: str) -> RosterSpec:
    """Parse and check a roster YAML; raises `ImportRejected` with every problem by line."""
    problems = _Problems()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ImportRejected([(line, f"not valid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ImportRejected([(1, f"not valid YAML: {exc}")]) from None
    if root is None:
        raise ImportRejected([(1, "the roster is empty")])
    if not isinstance(root, yaml.MappingNode):
        raise ImportRejected([(root.start_mark.line + 1, "expected sections staff/shifts")])
    sections = _mapping(root, problems, {"staff", "shifts", "duties"})
    staff_node = sections.get("staff")
    if staff_node is None:
        problems.add(root, "no staff section")
        raise ImportRejected(problems.items)
    staff = _parse_staff(staff_node, problems)
    keys = {s.key for s in staff}
    heads = [s for s in staff if s.role == HEAD]
    if not heads:
        staff_line = next(k.start_mark.line + 1 for k, _ in root.value if k.value == "staff")
        problems.add(staff_line, "no head of support (a staff entry with role: head)")
    for extra in heads[1:]:
        problems.add(extra.line, f"a second head of support ({extra.key}); only one is allowed")
    shifts = _parse_rules(sections.get("shifts"), problems, keys, dated=False)
    duties = _parse_rules(sections.get("duties"), problems, keys, dated=True)
    if problems.items:
        raise ImportRejected(sorted(problems.items))
    return RosterSpec(staff, shifts, duties)


def _mapping(node: yaml.Node, problems: _Problems, allowed: set[str]) -> dict[str, yaml.Node]:
    out: dict[str, yaml.Node] = {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, "expected a mapping of fields")
        return out
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in out:
            problems.add(key_node, f"duplicate field {key!r}")
            continue
        if key not in allowed:
            problems.add(key_node, f"unknown field {key!r} (expected {', '.join(sorted(allowed))})")
            continue
        out[key] = value_node
    return out


def _sequence(node: yaml.Node | None, problems: _Problems, what: str) -> list[yaml.Node]:
    if node is None:
        return []
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, f"{what}: expected a list")
        return []
    return list(node.value)


def _scalar(node: yaml.Node | None, problems: _Problems, what: str) -> str | None:
    if node is None:
        return None
    if not isinstance(node, yaml.ScalarNode):
        problems.add(node, f"{what}: expected a single value")
        return None
    return str(node.value).strip()


def _scalars(node: yaml.Node | None, problems: _Problems, what: str) -> list[tuple[yaml.Node, str]]:
    """A value that may be one scalar or a list of scalars."""
    if node is None:
        return []
    items = list(node.value) if isinstance(node, yaml.SequenceNode) else [node]
    out = []
    for item in items:
        value = _scalar(item, problems, what)
        if value is not None:
            out.append((item, value))
    return out


def _parse_staff(node: yaml.Node, problems: _Problems) -> list[_StaffSpec]:
    from callcenter.directory.phones import classify, normalise

    staff: list[_StaffSpec] = []
    seen: dict[str, int] = {}
    for entry in _sequence(node, problems, "staff"):
        fields = _mapping(entry, problems, _STAFF_FIELDS)
        line = entry.start_mark.line + 1
        key = _scalar(fields.get("key"), problems, "key")
        if not key:
            problems.add(entry, "staff entry without a key")
            continue
        if not _KEY_RE.match(key):
            problems.add(fields["key"], f"bad key {key!r}: use lower-case letters, digits, _ . -")
        if key in seen:
            problems.add(fields["key"], f"duplicate staff key {key!r} (first on line {seen[key]})")
            continue
        seen[key] = line
        name = _scalar(fields.get("name"), problems, "name")
        if not name:
            problems.add(entry, f"{key}: no name")
        role = _scalar(fields.get("role"), problems, "role") or SPECIALIST
        if role not in ROLES:
            problems.add(fields["role"], f"{key}: unknown role {role!r} (specialist or head)")
        phones: list[str] = []
        raw_phones = _scalars(fields.get("phones"), problems, "phones") + _scalars(
            fields.get("phone"), problems, "phone"
        )
        for phone_node, raw in raw_phones:
            e164 = normalise(raw)
            if e164 is None:
                problems.add(phone_node, f"{key}: bad phone number {raw!r}")
            elif e164 not in phones:
                phones.append(e164)
        if not raw_phones:
            problems.add(entry, f"{key}: no phone number")
        sms: str | None = None
        raw_sms = _scalar(fields.get("sms"), problems, "sms")
        if raw_sms:
            sms = normalise(raw_sms)
            if sms is None or not classify(raw_sms).is_russian_mobile:
                problems.add(fields["sms"], f"{key}: SMS number {raw_sms!r} is not a mobile number")
                sms = None
        else:
            # Alerts go to the first mobile among the phones when no SMS number is given.
            sms = next((p for p in phones if classify(p).is_russian_mobile), None)
        away: list[date] = []
        for away_node, raw in _scalars(fields.get("away"), problems, "away"):
            away.extend(_parse_dates(away_node, raw, problems))
        staff.append(_StaffSpec(line, key, name or key, role, phones, sms, sorted(set(away))))
    if not staff and not problems.items:
        problems.add(node, "no staff")
    return staff


def _parse_rules(
    node: yaml.Node | None, problems: _Problems, keys: set[str], *, dated: bool
) -> list[_RuleSpec]:
    section = "duties" if dated else "shifts"
    rules: list[_RuleSpec] = []
    for entry in _sequence(node, problems, section):
        fields = _mapping(entry, problems, _DUTY_FIELDS if dated else _SHIFT_FIELDS)
        line = entry.start_mark.line + 1
        staff = _scalar(fields.get("staff"), problems, "staff")
        if not staff:
            problems.add(entry, f"{section}: entry without staff")
        elif staff not in keys:
            problems.add(fields["staff"], f"unknown staff key {staff!r}")
        duty = _scalar(fields.get("duty"), problems, "duty") or BOTH
        if duty not in DUTIES:
            problems.add(fields["duty"], f"unknown duty {duty!r} (consultation, urgent or both)")
        order = 1
        raw_order = _scalar(fields.get("order"), problems, "order")
        if raw_order is not None:
            if raw_order.isascii() and raw_order.isdigit() and 1 <= int(raw_order) <= 99:
                order = int(raw_order)
            else:
                problems.add(fields["order"], f"bad order {raw_order!r}: a number 1-99")
        hours = _parse_hours(fields.get("hours"), problems, entry)
        pattern = DATE
        dates: list[date] = []
        if dated:
            raw_dates = _scalars(fields.get("dates"), problems, "dates") + _scalars(
                fields.get("date"), problems, "date"
            )
            if not raw_dates:
                problems.add(entry, "a duty needs date or dates")
            for date_node, raw in raw_dates:
                dates.extend(_parse_dates(date_node, raw, problems))
        else:
            parsed = _parse_days(fields.get("days"), problems, entry)
            if parsed is None:
                continue
            pattern = parsed
        if staff and hours:
            rules.append(_RuleSpec(line, staff, duty, pattern, sorted(set(dates)), *hours, order))
    return rules


def _parse_days(node: yaml.Node | None, problems: _Problems, entry: yaml.Node) -> str | None:
    if node is None:
        problems.add(entry, "a shift needs days (working_days, days_off, daily or weekdays)")
        return None
    items: list[tuple[yaml.Node, str]]
    if isinstance(node, yaml.ScalarNode):
        value = str(node.value).strip().lower()
        if value in (WORKING_DAYS, DAYS_OFF):
            return value
        if value == "daily":
            return ",".join(WEEKDAYS)
        items = [(node, v.strip().lower()) for v in value.split(",")]
    else:
        items = [(n, v.lower()) for n, v in _scalars(node, problems, "days")]
    days: list[str] = []
    ok = True
    for item_node, value in items:
        if value not in WEEKDAYS:
            problems.add(
                item_node,
                f"unknown weekday {value!r} (mon, tue, wed, thu, fri, sat, sun, "
                "or working_days, days_off, daily)",
            )
            ok = False
        elif value not in days:
            days.append(value)
    if not ok:
        return None
    if not days:
        problems.add(node, "no days given")
        return None
    return ",".join(d for d in WEEKDAYS if d in days)


def _parse_hours(
    node: yaml.Node | None, problems: _Problems, entry: yaml.Node
) -> tuple[str, str] | None:
    raw = _scalar(node, problems, "hours")
    if node is None or raw is None:
        problems.add(entry, "no hours (business, or HH:MM-HH:MM)")
        return None
    value = raw.lower().replace(" ", "").replace("–", "-")
    if value == "business":
        return "open", "close"
    if value in ("all-day", "24h"):
        return "00:00", "00:00"
    start, sep, end = value.partition("-")
    if not sep:
        problems.add(node, f"bad hours {raw!r}: expected business or HH:MM-HH:MM")
        return None
    ok = True
    for part in (start, end):
        if part not in ("open", "close") and not _TIME_RE.match(part):
            problems.add(node, f"bad time {part!r} in hours {raw!r} (HH:MM, open or close)")
            ok = False
    return (start, end) if ok else None


def _parse_dates(node: yaml.Node, raw: str, problems: _Problems) -> list[date]:
    """`2025-12-31` or an inclusive range `2025-12-30..2026-01-08`."""
    first, sep, last = raw.partition("..")
    try:
        start = date.fromisoformat(first.strip())
        stop = date.fromisoformat(last.strip()) if sep else start
    except ValueError:
        problems.add(node, f"bad date {raw!r} (YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD)")
        return []
    if stop < start:
        problems.add(node, f"date range {raw!r} ends before it starts")
        return []
    if (stop - start).days > MAX_DATED_RANGE_DAYS:
        problems.add(node, f"date range {raw!r} is longer than {MAX_DATED_RANGE_DAYS} days")
        return []
    return [start + timedelta(days=i) for i in range((stop - start).days + 1)]


def import_roster(session: Session, text: str) -> RosterImport:
    """Replace the roster with the one in `text` (YAML), in the caller's transaction.

    All-or-nothing: any problem raises `ImportRejected` before anything is written. Staff
    missing from the new file are deactivated (their call history keeps their names).
    """
    spec = parse_roster(text)
    report = RosterImport()
    existing = {s.key: s for s in session.scalars(select(Staff))}
    ids: dict[str, Staff] = {}
    for person in spec.staff:
        row = existing.get(person.key)
        if row is None:
            row = Staff(key=person.key)
            session.add(row)
        row.name = person.name
        row.role = person.role
        row.phones = list(person.phones)
        row.sms = person.sms
        row.active = True
        ids[person.key] = row
        report.staff += 1
    for key, row in existing.items():
        if key not in ids and row.active:
            row.active = False
            report.deactivated.append(key)
    session.execute(delete(Shift))
    session.flush()
    for rule in spec.shifts:
        session.add(_shift_row(ids[rule.staff], rule, None))
        report.shifts += 1
    for rule in spec.duties:
        for day in rule.dates:
            session.add(_shift_row(ids[rule.staff], rule, day))
        report.duties += 1
    for person in spec.staff:
        for day in person.away:
            session.add(
                Shift(
                    staff_id=ids[person.key].id,
                    duty=AWAY,
                    pattern=DATE,
                    on_date=day,
                    start_local="00:00",
                    end_local="00:00",
                    chain_order=1,
                )
            )
            report.absences += 1
    session.flush()
    return report


def _shift_row(staff: Staff, rule: _RuleSpec, day: date | None) -> Shift:
    return Shift(
        staff_id=staff.id,
        duty=rule.duty,
        pattern=rule.pattern,
        on_date=day,
        start_local=rule.start,
        end_local=rule.end,
        chain_order=rule.order,
    )


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
