"""The directory's CSV import and export.

Import: `import_csv(session, path, now)` reads the operator's spreadsheet, all or nothing.
Every row is checked, against the file and against the database, before anything is
written; any problem raises `ImportRejected` with a (line, reason) pair per problem and the
session is left untouched. The caller commits.

The CSV format (UTF-8 with or without BOM, or Windows-1251 as Russian Excel saves "CSV";
`,`, `;` or tab delimited, guessed from the header line), one row per contact:

    organisation   the client's name; may be blank when `inn` names a known organisation
    inn            optional; 10 or 12 digits with a valid checksum
    contact        the person's name (blank, with `phones` and `email` blank too, makes a
                   row that only states the organisation and its overrides)
    phones         one or more numbers in any spelling, separated by `|`, `,` or `;`
    email          optional
    stage_one_days optional contract override: business days for stage one
    <topic>_days   optional contract override per topic, e.g. `consultation_days`

Russian headers (организация, инн, контакт/фио, телефоны, почта) are accepted too.

Matching, so that importing the same file again changes nothing:

* An organisation is the one with the row's INN; else (no INN in the row) the one with the
  same name, compared without regard to case and spacing. A name-only row of an
  organisation whose INN appears on another row of the file is that organisation. An INN
  row may also claim an organisation of the same name that has no INN yet.
* A contact is the one of the same name in that organisation; else the contact of the same
  name elsewhere that owns one of the row's phones (moved to this organisation); else the
  one in this organisation all of whose phones are on the row (renamed); else a new one.
  A phone of any other contact not in the file is a conflict, not a silent reassignment.
* The file is the truth for what it mentions: a contact's phones become exactly the row's
  phones (a number may move from one contact in the file to another); an override column
  that is present sets the override for every organisation in the file (a blank cell on
  all of an organisation's rows removes it); a present `email` column sets the e-mail.
  Columns that are absent leave the stored values alone, and contacts and organisations
  the file does not mention are never touched or deleted.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from callcenter.db.models import Contact, ContactPhone, Organisation
from callcenter.directory.contacts import (
    MAX_OVERRIDE_DAYS,
    TOPIC_SLUGS,
    collapse_spaces,
    email_problem,
    inn_problem,
    list_directory,
    name_key,
    phone_problem,
)
from callcenter.errors import ImportRejected, Reason
from callcenter.phones import classify
from callcenter.spreadsheet import read_cell


@dataclass(frozen=True)
class ImportReport:
    organisations_created: int = 0
    organisations_updated: int = 0
    organisations_unchanged: int = 0
    contacts_created: int = 0
    contacts_updated: int = 0
    contacts_unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(
            self.organisations_created
            or self.organisations_updated
            or self.contacts_created
            or self.contacts_updated
        )

    def summary(self) -> str:
        return (
            f"organisations: {self.organisations_created} created, "
            f"{self.organisations_updated} updated, {self.organisations_unchanged} unchanged; "
            f"contacts: {self.contacts_created} created, {self.contacts_updated} updated, "
            f"{self.contacts_unchanged} unchanged"
        )


def import_csv(
    session: Session,
    path: str | Path,
    now: datetime,
    topic_slugs: Collection[str] = TOPIC_SLUGS,
) -> ImportReport:
    """Import a directory CSV into `session`, all or nothing (see the module docstring).

    Raises `ImportRejected` (and writes nothing) when any row is unusable.
    """
    return import_directory(session, Path(path).read_bytes(), now, topic_slugs)


def import_directory(
    session: Session,
    data: bytes,
    now: datetime,
    topic_slugs: Collection[str] = TOPIC_SLUGS,
) -> ImportReport:
    sheet = _read_sheet(data, topic_slugs)
    plan = _plan(session, sheet)
    # One report, by line, each problem once, in the order found within a line.
    problems = sorted(dict.fromkeys(sheet.problems + plan.problems), key=lambda p: p[0])
    if problems:
        raise ImportRejected(problems)
    return _apply(session, sheet, plan, now)


def export_rows(session: Session, topic_slugs: Collection[str] = TOPIC_SLUGS) -> list[list[str]]:
    """The directory as rows of the import format, header first: import them back unchanged."""
    topics = list(topic_slugs)
    header = ["organisation", "inn", "contact", "phones", "email", "stage_one_days"]
    header += [f"{slug}_days" for slug in topics]
    rows = [header]
    for org in list_directory(session):
        overrides = [_cell(org.stage_one_days)] + [
            _cell((org.topic_days or {}).get(slug)) for slug in topics
        ]
        contacts = sorted(org.contacts, key=lambda c: (name_key(c.name), c.id))
        if not contacts:
            rows.append([org.name, org.inn or "", "", "", "", *overrides])
        for contact in contacts:
            phones = " | ".join(p.e164 for p in sorted(contact.phones, key=lambda p: p.id))
            rows.append(
                [org.name, org.inn or "", contact.name, phones, contact.email or "", *overrides]
            )
    return rows


def _cell(value: int | None) -> str:
    return "" if value is None else str(value)


# The columns and the names a spreadsheet may give them (compared case-insensitively, with
# spaces and hyphens read as underscores).
_COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "organisation": ("organisation", "organization", "company", "организация", "компания"),
    "inn": ("inn", "инн"),
    "contact": ("contact", "name", "контакт", "фио", "имя"),
    "phones": ("phones", "phone", "телефоны", "телефон"),
    "email": ("email", "e_mail", "почта", "электронная_почта"),
    "stage_one_days": ("stage_one_days",),
}
# How a missing column is named to a person (the Russian header a spreadsheet would use).
_NOT_TEXT = "файл не в кодировке UTF-8 или Windows-1251: сохраните его как «CSV UTF-8»"
_COLUMN_TITLES = {"contact": "контакт", "phones": "телефоны"}
_ALIAS_TO_COLUMN = {alias: col for col, aliases in _COLUMN_ALIASES.items() for alias in aliases}
_PHONE_SEPARATORS = re.compile(r"[|,;\n]+")
# Excel shows a long number as 7,91612E+10 and saves it so: the digits are gone.
_SCIENTIFIC = re.compile(r"\d[.,]\d+e\+?\d+", re.IGNORECASE)
# Excel's way of keeping leading zeros: ="0274062111".
_EXCEL_TEXT = re.compile(r'="(.*)"', re.DOTALL)


@dataclass
class _OrgEntry:
    """One organisation as the file describes it (possibly over several rows)."""

    key: tuple[str, str]
    lines: list[int] = field(default_factory=list)
    name: str | None = None
    name_line: int = 0
    inn: str | None = None
    stage_one_days: int | None = None
    topic_days: dict[str, int] = field(default_factory=dict)
    # field → (value, line) of the first row that stated it, to report conflicts.
    stated: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or f"ИНН {self.inn}"


@dataclass
class _ContactEntry:
    line: int
    org: _OrgEntry
    name: str
    phones: list[str]
    email: str | None


@dataclass
class _Row:
    line: int
    org_name: str | None
    inn: str | None
    inn_bad: bool
    contact: _ContactEntry | None
    overrides: dict[str, int]


@dataclass
class _Sheet:
    problems: list[tuple[int, str]] = field(default_factory=list)
    organisations: list[_OrgEntry] = field(default_factory=list)
    contacts: list[_ContactEntry] = field(default_factory=list)
    # The override columns present in the file ("stage_one_days", topic slugs).
    override_columns: set[str] = field(default_factory=set)
    has_email: bool = False


def _read_sheet(data: bytes, topic_slugs: Collection[str]) -> _Sheet:
    sheet = _Sheet()
    text = _decode(data)
    if text is None:
        raise ImportRejected([(1, _NOT_TEXT)])
    if "\x00" in text:
        # No spreadsheet writes NUL, and PostgreSQL cannot store it in text.
        line = text[: text.index("\x00")].count("\n") + 1
        raise ImportRejected([(line, "в файле нулевой символ: это не текстовый файл")])
    records = _records(text)
    try:
        header_line, header = next(records)
    except StopIteration:
        raise ImportRejected([(1, "файл пуст")]) from None
    except csv.Error as exc:
        raise ImportRejected([(1, Reason("файл не читается как CSV", str(exc)))]) from None
    columns = _columns(header, header_line, topic_slugs)
    sheet.has_email = "email" in columns
    sheet.override_columns = {
        col if col == "stage_one_days" else col.removesuffix("_days")
        for col in columns
        if col.endswith("_days")
    }

    rows: list[_Row] = []
    line = header_line
    try:
        for line, record in records:
            if not any(cell.strip() for cell in record):
                continue
            if len(record) > len(columns):
                sheet.problems.append(
                    (
                        line,
                        f"ячеек {len(record)}, а в заголовке столбцов {len(columns)} "
                        "(ячейку с разделителем внутри нужно взять в кавычки)",
                    )
                )
                continue
            cells = {col: _clean(value) for col, value in zip(columns, record, strict=False)}
            rows.append(_read_row(line, cells, sheet.problems))
    except csv.Error as exc:
        sheet.problems.append((line + 1, Reason("строка не читается как CSV", str(exc))))
    if not rows and not sheet.problems:
        raise ImportRejected([(header_line, "под заголовком нет строк: загружать нечего")])
    _group(rows, sheet)
    return sheet


def _decode(data: bytes) -> str | None:
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """CSV records with the physical line each starts on (quoted cells may span lines)."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    previous_end = 0
    for record in reader:
        start = previous_end + 1
        previous_end = reader.line_num
        if not record:
            continue
        # A cell our export guarded against formulas ('=..., '+7...) reads back as it was.
        yield start, [read_cell(cell) for cell in record]


def _columns(header: list[str], line: int, topic_slugs: Collection[str]) -> list[str]:
    problems: list[tuple[int, str]] = []
    columns: list[str] = []
    topic_columns = {f"{slug}_days" for slug in topic_slugs}
    for raw in header:
        name = re.sub(r"[\s\-]+", "_", raw.strip().casefold())
        column = _ALIAS_TO_COLUMN.get(name, name if name in topic_columns else None)
        if column is None:
            if name.endswith("_days"):
                problems.append(
                    (
                        line,
                        f"неизвестный столбец «{raw.strip()}»: такой темы нет "
                        f"(столбцы сроков: stage_one_days, "
                        f"{', '.join(sorted(topic_columns))})",
                    )
                )
            elif name:
                problems.append(
                    (
                        line,
                        f"неизвестный столбец «{raw.strip()}» (столбцы: организация, ИНН, "
                        "контакт, телефоны, почта, stage_one_days, <тема>_days)",
                    )
                )
            else:
                problems.append((line, "столбец без названия"))
            column = f"?{len(columns)}"
        elif column in columns:
            problems.append((line, f"столбец «{column}» встречается дважды"))
        columns.append(column)
    for required in ("contact", "phones"):
        if required not in columns:
            problems.append((line, f"нет столбца «{_COLUMN_TITLES[required]}»"))
    if "organisation" not in columns and "inn" not in columns:
        problems.append((line, "нет столбца «организация» (или «ИНН»)"))
    if problems:
        raise ImportRejected(problems)
    return columns


def _clean(value: str) -> str:
    value = value.strip()
    excel = _EXCEL_TEXT.fullmatch(value)
    return excel.group(1).strip() if excel else value


def _read_row(line: int, cells: dict[str, str], problems: list[tuple[int, str]]) -> _Row:
    org_name = collapse_spaces(cells.get("organisation", "")) or None
    inn_text = re.sub(r"\s+", "", cells.get("inn", "")) or None
    inn_bad = False
    if inn_text is not None and (why := inn_problem(inn_text)) is not None:
        problems.append((line, f"неверный ИНН «{inn_text}»: {why}"))
        inn_bad = True
    if org_name is not None and len(org_name) > 300:
        problems.append((line, "название организации длиннее 300 символов"))
    if org_name is None and inn_text is None:
        problems.append((line, "не указана организация: нужно название или ИНН"))

    overrides: dict[str, int] = {}
    for column, value in cells.items():
        if not column.endswith("_days") or not value:
            continue
        key = column if column == "stage_one_days" else column.removesuffix("_days")
        if value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_OVERRIDE_DAYS:
            overrides[key] = int(value)
        else:
            problems.append(
                (
                    line,
                    f"неверный срок {column}: «{value}» — нужно целое число рабочих дней "
                    f"от 1 до {MAX_OVERRIDE_DAYS}",
                )
            )

    name = collapse_spaces(cells.get("contact", ""))
    phones_text = cells.get("phones", "")
    email = cells.get("email", "") or None
    contact: _ContactEntry | None = None
    if name or phones_text or email:
        if not name:
            problems.append((line, "не указано ФИО контакта"))
        elif len(name) > 300:
            problems.append((line, "ФИО контакта длиннее 300 символов"))
        phones = _read_phones(line, phones_text, problems)
        if email is not None and (why := email_problem(email)) is not None:
            problems.append((line, f"неверная почта «{email}»: {why}"))
        placeholder = _OrgEntry(key=("", ""))  # replaced when the row is grouped
        contact = _ContactEntry(line, placeholder, name, phones, email)
    return _Row(line, org_name, None if inn_bad else inn_text, inn_bad, contact, overrides)


def _read_phones(line: int, text: str, problems: list[tuple[int, str]]) -> list[str]:
    if _SCIENTIFIC.fullmatch(text.strip()):
        problems.append(
            (
                line,
                f"неверный телефон «{text}»: таблица превратила номер в число "
                "(задайте столбцу текстовый формат)",
            )
        )
        return []
    phones: list[str] = []
    bad = False
    for raw in _PHONE_SEPARATORS.split(text):
        raw = raw.strip()
        if not raw:
            continue
        caller = classify(raw)
        why = phone_problem(caller)
        if why is not None:
            problems.append((line, f"неверный телефон «{raw}»: {why}"))
            bad = True
        elif caller.e164 is not None and caller.e164 not in phones:
            phones.append(caller.e164)
    if not phones and not bad:
        problems.append((line, "нет номера телефона"))
    return phones


def _group(rows: list[_Row], sheet: _Sheet) -> None:
    """Gather rows into organisations and check the file against itself."""
    problems = sheet.problems
    # A name-only row belongs to the organisation another row gives the INN of.
    inns_by_name: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.inn and row.org_name:
            inns_by_name[name_key(row.org_name)].add(row.inn)

    entries: dict[tuple[str, str], _OrgEntry] = {}
    phone_lines: dict[str, int] = {}
    contact_lines: dict[tuple[tuple[str, str], str], int] = {}
    for row in rows:
        if row.inn:
            key = ("inn", row.inn)
        elif row.inn_bad or row.org_name is None:
            continue  # already reported
        else:
            inns = inns_by_name.get(name_key(row.org_name), set())
            if len(inns) > 1:
                problems.append(
                    (
                        row.line,
                        f"у организации «{row.org_name}» в файле несколько ИНН "
                        f"({', '.join(sorted(inns))}): укажите ИНН",
                    )
                )
                continue
            key = ("inn", next(iter(inns))) if inns else ("name", name_key(row.org_name))
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _OrgEntry(key=key, inn=key[1] if key[0] == "inn" else None)
            sheet.organisations.append(entry)
        entry.lines.append(row.line)
        if row.org_name is not None:
            if entry.name is None:
                entry.name, entry.name_line = row.org_name, row.line
            elif name_key(entry.name) != name_key(row.org_name):
                problems.append(
                    (
                        row.line,
                        f"ИНН {entry.inn} в строке {entry.name_line} назван «{entry.name}», "
                        f"а здесь — «{row.org_name}»",
                    )
                )
        for column, value in row.overrides.items():
            first = entry.stated.setdefault(column, (value, row.line))
            if first[0] != value:
                label = column if column == "stage_one_days" else f"{column}_days"
                problems.append(
                    (
                        row.line,
                        f"разные сроки {label} у {entry.label}: "
                        f"{first[0]} в строке {first[1]}, {value} здесь",
                    )
                )
            elif column == "stage_one_days":
                entry.stage_one_days = value
            else:
                entry.topic_days[column] = value

        contact = row.contact
        if contact is None or not contact.name:
            continue
        contact.org = entry
        contact_key = (key, name_key(contact.name))
        if contact_key in contact_lines:
            problems.append(
                (
                    row.line,
                    f"контакт «{contact.name}» ({entry.label}) повторяется: "
                    f"он уже есть в строке {contact_lines[contact_key]}",
                )
            )
            continue
        contact_lines[contact_key] = row.line
        for e164 in contact.phones:
            if e164 in phone_lines:
                problems.append(
                    (
                        row.line,
                        f"телефон {e164} повторяется: он уже есть в строке {phone_lines[e164]}",
                    )
                )
            else:
                phone_lines[e164] = row.line
        sheet.contacts.append(contact)


@dataclass
class _Plan:
    """What the file means for the database: which stored rows each entry is."""

    problems: list[tuple[int, str]] = field(default_factory=list)
    organisations: dict[int, Organisation | None] = field(default_factory=dict)  # id(entry)
    contacts: dict[int, Contact | None] = field(default_factory=dict)  # id(entry)


def _plan(session: Session, sheet: _Sheet) -> _Plan:
    plan = _Plan()
    # A client directory is hundreds of organisations: reading them all is cheaper and
    # simpler than case-insensitive Cyrillic matching in SQL, which SQLite cannot do.
    stored = session.scalars(select(Organisation)).all()
    by_inn = {o.inn: o for o in stored if o.inn}
    by_name: dict[str, list[Organisation]] = defaultdict(list)
    for o in stored:
        by_name[name_key(o.name)].append(o)

    claimed_orgs: dict[int, _OrgEntry] = {}
    for org_entry in sheet.organisations:
        org, why = _resolve_organisation(org_entry, by_inn, by_name)
        if why is not None:
            plan.problems.extend((line, why) for line in org_entry.lines)
            continue
        if org is not None:
            other = claimed_orgs.setdefault(org.id, org_entry)
            if other is not org_entry:
                plan.problems.append(
                    (
                        org_entry.lines[0],
                        f"«{org_entry.label}» и «{other.label}» (строка {other.lines[0]}) — "
                        f"одна и та же организация справочника («{org.name}»)",
                    )
                )
                continue
        plan.organisations[id(org_entry)] = org

    contacts = [c for c in sheet.contacts if id(c.org) in plan.organisations]
    org_ids = [o.id for o in plan.organisations.values() if o is not None]
    stored_contacts: dict[int, list[Contact]] = defaultdict(list)
    for chunk in _chunks(org_ids):
        for contact in session.scalars(
            select(Contact)
            .where(Contact.organisation_id.in_(chunk))
            .options(selectinload(Contact.phones))
        ):
            stored_contacts[contact.organisation_id].append(contact)
    owners: dict[str, Contact] = {}
    for chunk in _chunks(sorted({e for c in contacts for e in c.phones})):
        for phone in session.scalars(
            select(ContactPhone)
            .where(ContactPhone.e164.in_(chunk))
            .options(joinedload(ContactPhone.contact).joinedload(Contact.organisation))
        ):
            owners[phone.e164] = phone.contact

    # A contact is the stored one of the same name first, then the one owning its phones.
    claimed: dict[int, _ContactEntry] = {}
    unmatched: list[_ContactEntry] = []
    for entry in contacts:
        org = plan.organisations[id(entry.org)]
        same_name = [
            c
            for c in (stored_contacts[org.id] if org else [])
            if name_key(c.name) == name_key(entry.name)
        ]
        if len(same_name) > 1:
            plan.problems.append(
                (
                    entry.line,
                    f"в справочнике несколько контактов с ФИО «{entry.name}» в "
                    f"«{same_name[0].organisation.name}»: сначала переименуйте один из них",
                )
            )
            continue
        if same_name:
            claimed[same_name[0].id] = entry
            plan.contacts[id(entry)] = same_name[0]
        else:
            unmatched.append(entry)
    # Then the contact owning the row's numbers: moved to another organisation under the same
    # name, or renamed within its organisation when the row keeps all of its numbers (a
    # colleague taking over one of them is not a rename). Anything else is a conflict below.
    for entry in unmatched:
        org = plan.organisations[id(entry.org)]
        candidates = {
            owner.id: owner
            for owner in (owners[e] for e in entry.phones if e in owners)
            if owner.id not in claimed
            and (
                name_key(owner.name) == name_key(entry.name)
                or (
                    org is not None
                    and owner.organisation_id == org.id
                    and {p.e164 for p in owner.phones} <= set(entry.phones)
                )
            )
        }
        match = next(iter(candidates.values())) if len(candidates) == 1 else None
        if match is not None:
            claimed[match.id] = entry
        plan.contacts[id(entry)] = match

    for entry in contacts:
        if id(entry) not in plan.contacts:
            continue
        mine = plan.contacts[id(entry)]
        for e164 in entry.phones:
            owner = owners.get(e164)
            if owner is None or owner is mine or owner.id in claimed:
                continue
            plan.problems.append(
                (
                    entry.line,
                    f"телефон {e164} уже принадлежит контакту {owner.name} "
                    f"({owner.organisation.name}), которого нет в этом файле",
                )
            )
    return plan


def _resolve_organisation(
    entry: _OrgEntry,
    by_inn: dict[str, Organisation],
    by_name: dict[str, list[Organisation]],
) -> tuple[Organisation | None, str | None]:
    """The stored organisation the entry is (None: a new one), or why it cannot be known."""
    named = by_name.get(name_key(entry.name), []) if entry.name else []
    if entry.inn is not None:
        if entry.inn in by_inn:
            return by_inn[entry.inn], None
        without_inn = [org for org in named if org.inn is None]
        if len(without_inn) == 1:
            return without_inn[0], None
        if entry.name is None:
            return None, (
                f"неизвестная организация: в справочнике нет ИНН {entry.inn} "
                "(укажите название, чтобы добавить её)"
            )
        return None, None
    if len(named) > 1:
        return None, (
            f"в справочнике несколько организаций с названием «{entry.name}»: укажите ИНН"
        )
    return (named[0] if named else None), None


def _chunks(values: Sequence[int] | Sequence[str], size: int = 500) -> Iterable[list[object]]:
    # Bounded IN lists: SQLite limits bound parameters per statement.
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _apply(session: Session, sheet: _Sheet, plan: _Plan, now: datetime) -> ImportReport:
    counts: dict[str, int] = defaultdict(int)
    organisations: dict[int, Organisation] = {}
    for org_entry in sheet.organisations:
        org = plan.organisations[id(org_entry)]
        if org is None:
            org = Organisation(name=org_entry.name or "", created_at=now, topic_days={})
            session.add(org)
            _update_organisation(org, org_entry, sheet)
            counts["organisations_created"] += 1
        elif _update_organisation(org, org_entry, sheet):
            counts["organisations_updated"] += 1
        else:
            counts["organisations_unchanged"] += 1
        organisations[id(org_entry)] = org

    # Numbers leave their old contacts first: one number, one contact, at every flush.
    phones_before: dict[int, set[str]] = {}
    for entry in sheet.contacts:
        contact = plan.contacts[id(entry)]
        if contact is None:
            continue
        phones_before[id(entry)] = {p.e164 for p in contact.phones}
        for phone in [p for p in contact.phones if p.e164 not in entry.phones]:
            contact.phones.remove(phone)
    session.flush()

    for entry in sheet.contacts:
        contact = plan.contacts[id(entry)]
        org = organisations[id(entry.org)]
        if contact is None:
            contact = Contact(name=entry.name, organisation=org, created_at=now)
            contact.email = entry.email
            session.add(contact)
            counts["contacts_created"] += 1
            changed = True
        else:
            changed = phones_before[id(entry)] != set(entry.phones)
            if contact.name != entry.name or contact.organisation is not org:
                contact.name, contact.organisation = entry.name, org
                changed = True
            if sheet.has_email and contact.email != entry.email:
                contact.email = entry.email
                changed = True
            counts["contacts_updated" if changed else "contacts_unchanged"] += 1
        have = {p.e164 for p in contact.phones}
        for e164 in entry.phones:
            if e164 not in have:
                contact.phones.append(ContactPhone(e164=e164))
    session.flush()
    return ImportReport(**counts)


def _update_organisation(org: Organisation, entry: _OrgEntry, sheet: _Sheet) -> bool:
    """Bring a stored organisation in line with the file; True when anything changed."""
    before = (org.name, org.inn, org.stage_one_days, dict(org.topic_days or {}))
    if entry.name is not None:
        org.name = entry.name
    if entry.inn is not None:
        org.inn = entry.inn
    if "stage_one_days" in sheet.override_columns:
        org.stage_one_days = entry.stage_one_days
    topic_days = {
        slug: days
        for slug, days in (org.topic_days or {}).items()
        if slug not in sheet.override_columns
    }
    topic_days.update(entry.topic_days)
    # A new dict, not an in-place change: the JSON column only notices assignment.
    org.topic_days = dict(sorted(topic_days.items()))
    return before != (org.name, org.inn, org.stage_one_days, org.topic_days)
