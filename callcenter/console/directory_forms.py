"""Editing one contact or one organisation from the console's forms (Flask-free).

The directory's own rules decide what is valid (`directory.phone_problem`,
`inn_problem`, `email_problem`, `MAX_OVERRIDE_DAYS`); this module applies them to one
form and answers in Russian, field by field (`InvalidForm`), before anything is written.
Bulk changes go through the directory's all-or-nothing CSV import instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callcenter.db.models import Call, Contact, ContactPhone, Organisation
from callcenter.directory.contacts import (
    MAX_OVERRIDE_DAYS,
    TOPIC_SLUGS,
    email_problem,
    inn_problem,
    phone_problem,
)
from callcenter.errors import InvalidForm
from callcenter.phones import classify

_PHONE_SEPARATORS = re.compile(r"[\n,;|]+")


@dataclass(frozen=True)
class ContactForm:
    name: str
    phones: str  # one or more numbers, any spelling, separated by new lines , ; or |
    email: str
    organisation_id: int | None  # None: a new organisation named `new_organisation`
    new_organisation: str = ""


@dataclass(frozen=True)
class OrganisationForm:
    name: str
    inn: str
    stage_one_days: str
    topic_days: Mapping[str, str]  # topic slug → days ("" for the regulation's)


def save_contact(
    session: Session, contact_id: int | None, form: ContactForm, *, now: datetime
) -> Contact:
    """Create (`contact_id` None) or update a contact; raises `InvalidForm`."""
    problems: dict[str, str] = {}
    contact = session.get(Contact, contact_id) if contact_id is not None else None
    if contact_id is not None and contact is None:
        raise InvalidForm({"contact": "контакт не найден (удалён?)"})
    name = " ".join(form.name.split())
    if not name:
        problems["name"] = "укажите имя контакта"
    elif len(name) > 300:
        problems["name"] = "имя длиннее 300 символов"
    phones = _phones(session, form.phones, contact, problems)
    email = form.email.strip() or None
    if email is not None and email_problem(email) is not None:
        problems["email"] = f"«{email}» не похоже на адрес электронной почты"
    organisation = _organisation_for(session, form, problems, now)
    if problems:
        raise InvalidForm(problems)
    assert organisation is not None
    if contact is None:
        contact = Contact(name=name, organisation=organisation, created_at=now, email=email)
        session.add(contact)
    else:
        contact.name = name
        contact.organisation = organisation
        contact.email = email
    keep = set(phones)
    for phone in [p for p in contact.phones if p.e164 not in keep]:
        contact.phones.remove(phone)
    session.flush()
    have = {p.e164 for p in contact.phones}
    for e164 in phones:
        if e164 not in have:
            contact.phones.append(ContactPhone(e164=e164))
    session.flush()
    return contact


def _phones(
    session: Session, text: str, contact: Contact | None, problems: dict[str, str]
) -> list[str]:
    found: list[str] = []
    bad: list[str] = []
    for raw in _PHONE_SEPARATORS.split(text):
        raw = raw.strip()
        if not raw:
            continue
        caller = classify(raw)
        if phone_problem(caller) is not None or caller.e164 is None:
            bad.append(raw)
        elif caller.e164 not in found:
            found.append(caller.e164)
    if bad:
        problems["phones"] = "не телефонные номера: " + ", ".join(f"«{b}»" for b in bad)
        return found
    if not found:
        problems["phones"] = "укажите хотя бы один номер телефона"
        return found
    for owner in session.scalars(select(ContactPhone).where(ContactPhone.e164.in_(found))):
        if contact is None or owner.contact_id != contact.id:
            other = owner.contact
            problems["phones"] = (
                f"номер {classify(owner.e164).display} уже принадлежит контакту "
                f"{other.name} ({other.organisation.name})"
            )
            break
    return found


def _organisation_for(
    session: Session, form: ContactForm, problems: dict[str, str], now: datetime
) -> Organisation | None:
    if form.organisation_id is not None:
        organisation = session.get(Organisation, form.organisation_id)
        if organisation is None:
            problems["organisation"] = "организация не найдена"
        return organisation
    name = " ".join(form.new_organisation.split())
    if not name:
        problems["organisation"] = "выберите организацию или введите название новой"
        return None
    # Compared in Python: SQLite's lower() leaves Cyrillic alone, and a directory is
    # hundreds of organisations.
    key = name.casefold()
    same = next(
        (
            o
            for o in session.scalars(select(Organisation))
            if " ".join(o.name.split()).casefold() == key
        ),
        None,
    )
    if same is not None:
        return same
    if len(name) > 300:
        problems["organisation"] = "название длиннее 300 символов"
        return None
    return Organisation(name=name, created_at=now, topic_days={})


def save_organisation(
    session: Session, organisation_id: int | None, form: OrganisationForm, *, now: datetime
) -> Organisation:
    """Create or update an organisation and its contract overrides; raises `InvalidForm`."""
    problems: dict[str, str] = {}
    organisation = (
        session.get(Organisation, organisation_id) if organisation_id is not None else None
    )
    if organisation_id is not None and organisation is None:
        raise InvalidForm({"organisation": "организация не найдена (удалена?)"})
    name = " ".join(form.name.split())
    if not name:
        problems["name"] = "укажите название"
    elif len(name) > 300:
        problems["name"] = "название длиннее 300 символов"
    inn = re.sub(r"\s+", "", form.inn) or None
    if inn is not None:
        if inn_problem(inn) is not None:
            problems["inn"] = f"ИНН «{inn}» неверен: 10 или 12 цифр с верной контрольной цифрой"
        else:
            owner = session.scalar(select(Organisation).where(Organisation.inn == inn))
            if owner is not None and owner is not organisation:
                problems["inn"] = f"этот ИНН уже у организации «{owner.name}»"
    stage_one = _days("stage_one_days", form.stage_one_days, problems)
    topic_days: dict[str, int] = {}
    for slug in TOPIC_SLUGS:
        value = _days(f"{slug}_days", form.topic_days.get(slug, ""), problems)
        if value is not None:
            topic_days[slug] = value
    if problems:
        raise InvalidForm(problems)
    if organisation is None:
        organisation = Organisation(name=name, created_at=now, topic_days={})
        session.add(organisation)
    organisation.name = name
    organisation.inn = inn
    organisation.stage_one_days = stage_one
    # A new dict, not an in-place change: the JSON column only notices assignment.
    organisation.topic_days = dict(sorted(topic_days.items()))
    session.flush()
    return organisation


def _days(field: str, raw: str, problems: dict[str, str]) -> int | None:
    value = raw.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_OVERRIDE_DAYS:
        return int(value)
    problems[field] = f"целое число рабочих дней от 1 до {MAX_OVERRIDE_DAYS}"
    return None


def delete_contact(session: Session, contact_id: int) -> str:
    """Remove a contact with no calls in the log; returns its name. A contact with calls
    stays (the log names it); take its phones away instead."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise InvalidForm({"contact": "контакт не найден (уже удалён?)"})
    calls = session.scalar(select(func.count(Call.id)).where(Call.contact_id == contact_id)) or 0
    if calls:
        raise InvalidForm(
            {
                "contact": f"у контакта {calls} звонк(ов) в журнале: удалить нельзя, "
                "измените его телефоны"
            }
        )
    name = contact.name
    session.delete(contact)
    session.flush()
    return name
