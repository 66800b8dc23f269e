"""The stored roster written back as roster YAML, for editing in the console (Flask-free).

The roster is replaced as a whole by `roster_import.import_roster`; to edit it in the browser the
supervisor gets the current roster in the same format (`scripts/examples/roster.yaml`),
changes it and sends it back through that import. Dated rows the import expanded day by
day (duties, absences) are folded back into `first..last` ranges.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from babel.dates import format_date
from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.db.models import Shift, Staff
from callcenter.regulation.calendar import CLOSING, OPENING
from callcenter.roster.on_duty import (
    AWAY,
    DATE,
    DAYS_OFF,
    HEAD,
    WEEKDAYS,
    WORKING_DAYS,
    ShiftRule,
)

HEADER = (
    "# График дежурств: сохраните, чтобы заменить график целиком.\n"
    "# Формат: scripts/examples/roster.yaml (staff, shifts, duties).\n"
)


EMPTY_EXAMPLE = """
# График пуст. Пример (уберите «# » в начале строк и впишите своих сотрудников):
# staff:
#   - key: ivanov
#     name: Иванов Иван
#     phones: ["+7 912 345-67-01"]
#   - key: smirnova
#     name: Смирнова Елена
#     role: head
#     phones: ["+7 912 345-67-09"]
# shifts:
#   - staff: ivanov
#     days: working_days
#     hours: business
#     duty: both
"""


def _q(text: str) -> str:
    """A YAML scalar that reads back as exactly `text` (JSON strings are YAML)."""
    return json.dumps(text, ensure_ascii=False)


def date_ranges(days: Iterable[date]) -> list[str]:
    """`["2026-01-02..2026-01-04", "2026-01-08"]`: consecutive days folded."""
    ordered = sorted(set(days))
    out: list[str] = []
    start = prev = None
    for day in ordered:
        if start is None or prev is None:
            start = prev = day
        elif day == prev + timedelta(days=1):
            prev = day
        else:
            out.append(_range(start, prev))
            start = prev = day
    if start is not None and prev is not None:
        out.append(_range(start, prev))
    return out


def _range(first: date, last: date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"


def _days(pattern: str) -> str:
    if pattern in (WORKING_DAYS, DAYS_OFF):
        return pattern
    if pattern == ",".join(WEEKDAYS):
        return "daily"
    return "[" + ", ".join(pattern.split(",")) + "]"


def _hours(start: str, end: str) -> str:
    if (start, end) == ("open", "close"):
        return "business"
    return _q(f"{start}-{end}")


def roster_yaml(session: Session) -> str:
    """The active roster as YAML that `import_roster` reads back to the same rows."""
    staff = list(session.scalars(select(Staff).where(Staff.active.is_(True)).order_by(Staff.id)))
    if not staff:
        return HEADER + EMPTY_EXAMPLE
    keys = {s.id: s.key for s in staff}
    shifts = [sh for sh in session.scalars(select(Shift).order_by(Shift.id)) if sh.staff_id in keys]
    away: dict[int, list[date]] = defaultdict(list)
    weekly: list[Shift] = []
    dated: dict[tuple[int, str, str, str, int], list[date]] = defaultdict(list)
    for sh in shifts:
        if sh.duty == AWAY and sh.on_date is not None:
            away[sh.staff_id].append(sh.on_date)
        elif sh.pattern == DATE and sh.on_date is not None:
            dated[(sh.staff_id, sh.duty, sh.start_local, sh.end_local, sh.chain_order)].append(
                sh.on_date
            )
        else:
            weekly.append(sh)

    lines = [HEADER, "staff:"]
    for person in staff:
        lines.append(f"  - key: {_q(person.key)}")
        lines.append(f"    name: {_q(person.name)}")
        lines.append(f"    role: {HEAD if person.role == HEAD else 'specialist'}")
        lines.append("    phones: [" + ", ".join(_q(p) for p in person.phones or []) + "]")
        if person.sms:
            lines.append(f"    sms: {_q(person.sms)}")
        if away[person.id]:
            lines.append(
                "    away: [" + ", ".join(_q(r) for r in date_ranges(away[person.id])) + "]"
            )
    if weekly:
        lines += ["", "shifts:"]
        for sh in weekly:
            lines.append(f"  - staff: {_q(keys[sh.staff_id])}")
            lines.append(f"    days: {_days(sh.pattern)}")
            lines.append(f"    hours: {_hours(sh.start_local, sh.end_local)}")
            lines.append(f"    duty: {sh.duty}")
            lines.append(f"    order: {sh.chain_order}")
    if dated:
        lines += ["", "duties:"]
        for (staff_id, duty, start, end, order), days in dated.items():
            lines.append(f"  - staff: {_q(keys[staff_id])}")
            lines.append("    dates: [" + ", ".join(_q(r) for r in date_ranges(days)) + "]")
            lines.append(f"    hours: {_hours(start, end)}")
            lines.append(f"    duty: {duty}")
            lines.append(f"    order: {order}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the roster in words

WEEKDAY_SHORT = {
    "mon": "пн",
    "tue": "вт",
    "wed": "ср",
    "thu": "чт",
    "fri": "пт",
    "sat": "сб",
    "sun": "вс",
}


@dataclass(frozen=True)
class ShiftLine:
    """One line of a person's shifts as the roster page shows it."""

    duty: str  # the stored duty: consultation / urgent / both / away
    when: str  # «рабочие дни, 09:30–18:00»
    order: int | None


def shift_lines(rules: Iterable[ShiftRule]) -> list[ShiftLine]:
    """A person's rules in Russian: weekly shifts one by one, dated rows (duties, absences)
    folded into date ranges when the rest of the row is the same."""
    out: list[ShiftLine] = []
    dated: dict[tuple[str, str, str, int], list[date]] = defaultdict(list)
    for rule in rules:
        if rule.pattern == DATE and rule.on_date is not None:
            dated[(rule.duty, rule.start, rule.end, rule.order)].append(rule.on_date)
            continue
        out.append(
            ShiftLine(
                rule.duty,
                f"{_days_words(rule.pattern)}, {_hours_words(rule.start, rule.end)}",
                rule.order,
            )
        )
    for (duty, start, end, order), days in dated.items():
        spans = ", ".join(_span_words(first, last) for first, last in _spans(days))
        if duty == AWAY:
            out.append(ShiftLine(duty, spans, None))
        else:
            out.append(ShiftLine(duty, f"{spans}, {_hours_words(start, end)}", order))
    return out


def _days_words(pattern: str) -> str:
    if pattern == WORKING_DAYS:
        return "рабочие дни"
    if pattern == DAYS_OFF:
        return "выходные"
    if pattern == ",".join(WEEKDAYS):
        return "ежедневно"
    return ", ".join(WEEKDAY_SHORT.get(day, day) for day in pattern.split(","))


def _moment(value: str) -> str:
    if value == "open":
        return OPENING.strftime("%H:%M")
    if value == "close":
        return CLOSING.strftime("%H:%M")
    return value


def _hours_words(start: str, end: str) -> str:
    if start == end == "00:00":
        return "круглосуточно"
    if start == end:
        return f"круглосуточно (сутки с {_moment(start)})"
    return f"{_moment(start)}–{_moment(end)}"


def _spans(days: Iterable[date]) -> list[tuple[date, date]]:
    spans: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if spans and day == spans[-1][1] + timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def _span_words(first: date, last: date) -> str:
    def day(d: date) -> str:
        return format_date(d, "d MMMM y", locale="ru")

    return day(first) if first == last else f"с {day(first)} по {day(last)}"
