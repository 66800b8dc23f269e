"""The roster's YAML import: `import_roster(session, text)` replaces the stored roster with
the file's, all or nothing.

`parse_roster` reads and checks the whole file first — staff, weekly shifts, dated duties,
absences (the format is documented in `scripts/examples/roster.yaml`); any problem raises
`ImportRejected` with a (line, reason) pair per problem and nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callcenter.db.models import Shift, Staff
from callcenter.errors import ImportRejected, Reason
from callcenter.phones import classify, normalise
from callcenter.roster.on_duty import (
    AWAY,
    BOTH,
    DATE,
    DAYS_OFF,
    DUTIES,
    HEAD,
    ROLES,
    SPECIALIST,
    WEEKDAYS,
    WORKING_DAYS,
)

# A dated range longer than this is a typo (a year written wrong), not a duty.
MAX_DATED_RANGE_DAYS = 400
_NOT_YAML = "текст не читается как YAML (проверьте отступы и двоеточия)"


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
        raise ImportRejected([(line, Reason(_NOT_YAML, str(exc.problem or exc)))]) from None
    except yaml.YAMLError as exc:
        raise ImportRejected([(1, Reason(_NOT_YAML, str(exc)))]) from None
    if root is None:
        raise ImportRejected([(1, "график пуст")])
    if not isinstance(root, yaml.MappingNode):
        raise ImportRejected(
            [(root.start_mark.line + 1, "ожидаются разделы staff (сотрудники) и shifts (смены)")]
        )
    sections = _mapping(root, problems, {"staff", "shifts", "duties"})
    staff_node = sections.get("staff")
    if staff_node is None:
        problems.add(root, "нет раздела staff (сотрудники)")
        raise ImportRejected(problems.items)
    staff = _parse_staff(staff_node, problems)
    keys = {s.key for s in staff}
    heads = [s for s in staff if s.role == HEAD]
    if not heads:
        staff_line = next(k.start_mark.line + 1 for k, _ in root.value if k.value == "staff")
        problems.add(staff_line, "нет руководителя поддержки (сотрудника с role: head)")
    for extra in heads[1:]:
        problems.add(
            extra.line,
            f"второй руководитель поддержки ({extra.key}): руководитель может быть только один",
        )
    shifts = _parse_rules(sections.get("shifts"), problems, keys, dated=False)
    duties = _parse_rules(sections.get("duties"), problems, keys, dated=True)
    if problems.items:
        raise ImportRejected(sorted(problems.items))
    return RosterSpec(staff, shifts, duties)


def _mapping(node: yaml.Node, problems: _Problems, allowed: set[str]) -> dict[str, yaml.Node]:
    out: dict[str, yaml.Node] = {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, "ожидаются поля вида «имя: значение»")
        return out
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in out:
            problems.add(key_node, f"поле «{key}» повторяется")
            continue
        if key not in allowed:
            problems.add(
                key_node, f"неизвестное поле «{key}» (допустимы: {', '.join(sorted(allowed))})"
            )
            continue
        out[key] = value_node
    return out


def _sequence(node: yaml.Node | None, problems: _Problems, what: str) -> list[yaml.Node]:
    if node is None:
        return []
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, f"{what}: ожидается список")
        return []
    return list(node.value)


def _scalar(node: yaml.Node | None, problems: _Problems, what: str) -> str | None:
    if node is None:
        return None
    if not isinstance(node, yaml.ScalarNode):
        problems.add(node, f"{what}: ожидается одно значение")
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
    staff: list[_StaffSpec] = []
    seen: dict[str, int] = {}
    for entry in _sequence(node, problems, "staff"):
        fields = _mapping(entry, problems, _STAFF_FIELDS)
        line = entry.start_mark.line + 1
        key = _scalar(fields.get("key"), problems, "key")
        if not key:
            problems.add(entry, "у сотрудника нет ключа (key)")
            continue
        if not _KEY_RE.match(key):
            problems.add(
                fields["key"],
                f"неверный ключ «{key}»: только строчные латинские буквы, цифры, _ . -",
            )
        if key in seen:
            problems.add(fields["key"], f"ключ «{key}» повторяется (впервые в строке {seen[key]})")
            continue
        seen[key] = line
        name = _scalar(fields.get("name"), problems, "name")
        if not name:
            problems.add(entry, f"{key}: не указано имя (name)")
        role = _scalar(fields.get("role"), problems, "role") or SPECIALIST
        if role not in ROLES:
            problems.add(fields["role"], f"{key}: неизвестная роль «{role}» (specialist или head)")
        phones: list[str] = []
        raw_phones = _scalars(fields.get("phones"), problems, "phones") + _scalars(
            fields.get("phone"), problems, "phone"
        )
        for phone_node, raw in raw_phones:
            e164 = normalise(raw)
            if e164 is None:
                problems.add(phone_node, f"{key}: неверный номер телефона «{raw}»")
            elif e164 not in phones:
                phones.append(e164)
        if not raw_phones:
            problems.add(entry, f"{key}: нет номера телефона")
        sms: str | None = None
        raw_sms = _scalar(fields.get("sms"), problems, "sms")
        if raw_sms:
            sms = normalise(raw_sms)
            if sms is None or not classify(raw_sms).is_russian_mobile:
                problems.add(fields["sms"], f"{key}: номер для SMS «{raw_sms}» не мобильный")
                sms = None
        else:
            # Alerts go to the first mobile among the phones when no SMS number is given.
            sms = next((p for p in phones if classify(p).is_russian_mobile), None)
        away: list[date] = []
        for away_node, raw in _scalars(fields.get("away"), problems, "away"):
            away.extend(_parse_dates(away_node, raw, problems))
        staff.append(_StaffSpec(line, key, name or key, role, phones, sms, sorted(set(away))))
    if not staff and not problems.items:
        problems.add(node, "нет ни одного сотрудника")
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
            problems.add(entry, f"{section}: не указан сотрудник (staff)")
        elif staff not in keys:
            problems.add(fields["staff"], f"нет сотрудника с ключом «{staff}»")
        duty = _scalar(fields.get("duty"), problems, "duty") or BOTH
        if duty not in DUTIES:
            problems.add(
                fields["duty"], f"неизвестное дежурство «{duty}» (consultation, urgent или both)"
            )
        order = 1
        raw_order = _scalar(fields.get("order"), problems, "order")
        if raw_order is not None:
            if raw_order.isascii() and raw_order.isdigit() and 1 <= int(raw_order) <= 99:
                order = int(raw_order)
            else:
                problems.add(fields["order"], f"неверная очередь «{raw_order}»: число от 1 до 99")
        hours = _parse_hours(fields.get("hours"), problems, entry)
        pattern = DATE
        dates: list[date] = []
        if dated:
            raw_dates = _scalars(fields.get("dates"), problems, "dates") + _scalars(
                fields.get("date"), problems, "date"
            )
            if not raw_dates:
                problems.add(entry, "у дежурства нужна дата (date или dates)")
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
        problems.add(
            entry, "у смены нужны дни (days: working_days, days_off, daily или дни недели)"
        )
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
                f"неизвестный день «{value}» (mon, tue, wed, thu, fri, sat, sun "
                "или working_days, days_off, daily)",
            )
            ok = False
        elif value not in days:
            days.append(value)
    if not ok:
        return None
    if not days:
        problems.add(node, "не указано ни одного дня")
        return None
    return ",".join(d for d in WEEKDAYS if d in days)


def _parse_hours(
    node: yaml.Node | None, problems: _Problems, entry: yaml.Node
) -> tuple[str, str] | None:
    raw = _scalar(node, problems, "hours")
    if node is None or raw is None:
        problems.add(entry, "не указаны часы (hours: business или ЧЧ:ММ-ЧЧ:ММ)")
        return None
    value = raw.lower().replace(" ", "").replace("–", "-")
    if value == "business":
        return "open", "close"
    if value in ("all-day", "24h"):
        return "00:00", "00:00"
    start, sep, end = value.partition("-")
    if not sep:
        problems.add(node, f"неверные часы «{raw}»: ожидается business или ЧЧ:ММ-ЧЧ:ММ")
        return None
    ok = True
    for part in (start, end):
        if part not in ("open", "close") and not _TIME_RE.match(part):
            problems.add(node, f"неверное время «{part}» в часах «{raw}» (ЧЧ:ММ, open или close)")
            ok = False
    return (start, end) if ok else None


def _parse_dates(node: yaml.Node, raw: str, problems: _Problems) -> list[date]:
    """`2025-12-31` or an inclusive range `2025-12-30..2026-01-08`."""
    first, sep, last = raw.partition("..")
    try:
        start = date.fromisoformat(first.strip())
        stop = date.fromisoformat(last.strip()) if sep else start
    except ValueError:
        problems.add(node, f"неверная дата «{raw}» (ГГГГ-ММ-ДД или ГГГГ-ММ-ДД..ГГГГ-ММ-ДД)")
        return []
    if stop < start:
        problems.add(node, f"период «{raw}» кончается раньше, чем начинается")
        return []
    if (stop - start).days > MAX_DATED_RANGE_DAYS:
        problems.add(node, f"период «{raw}» длиннее {MAX_DATED_RANGE_DAYS} дней")
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
