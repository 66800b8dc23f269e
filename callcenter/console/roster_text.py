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
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.db.models import Shift, Staff
from callcenter.roster.on_duty import AWAY, DATE, DAYS_OFF, HEAD, WEEKDAYS, WORKING_DAYS

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
