"""The caller directory: organisations (clients), their contacts and the contacts' phones.

Lookup: `find_contact(session, number)` finds the contact for any spelling of a number
(`callcenter.phones` reads it); withheld callers, SIP names and `client:`
identities have no number and never match. `identify_caller` adds the caller ID itself, for the IVR.
`contact_ref(session, e164)` answers the same for a number already in E.164, as the ids the
call's row keeps (the first webhook of every call asks it).

The CSV import and export (`callcenter.directory.importer`) and the console's forms check
fields with the rules here (`inn_problem`, `email_problem`, `phone_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.orm import Session, joinedload, selectinload

from callcenter.db.models import Contact, ContactPhone, Organisation
from callcenter.phones import TWILIO_WITHHELD_NUMBERS, CallerId, classify
from callcenter.regulation.topics import TOPICS

# The topics a contract may override, in the regulation's order.
TOPIC_SLUGS: tuple[str, ...] = tuple(TOPICS)

# A contract may stretch a deadline, but not past a working year.
MAX_OVERRIDE_DAYS = 250

# ---------------------------------------------------------------- lookup


@dataclass(frozen=True)
class CallerIdentity:
    """The caller ID and, when the number is in the directory, whose it is."""

    caller: CallerId
    contact: Contact | None = None
    organisation: Organisation | None = None

    @property
    def known(self) -> bool:
        return self.contact is not None


@dataclass(frozen=True, slots=True)
class ContactRef:
    """Whose a number is, as the call's row keeps it: the contact and its organisation."""

    contact_id: int
    organisation_id: int


# Built once: a webhook that identifies a caller runs it, and building it costs as much as
# running it.
_CONTACT_BY_PHONE = (
    select(Contact)
    .join(ContactPhone, ContactPhone.contact_id == Contact.id)
    .where(ContactPhone.e164 == bindparam("e164"))
    .options(joinedload(Contact.organisation))
)
_contacts = cast(Table, Contact.__table__)
_phones = cast(Table, ContactPhone.__table__)
# The first webhook of every call asks only this: two integers, no ORM objects to build.
_CONTACT_REF_BY_PHONE = (
    select(_contacts.c.id, _contacts.c.organisation_id)
    .select_from(_phones.join(_contacts, _phones.c.contact_id == _contacts.c.id))
    .where(_phones.c.e164 == bindparam("e164"))
)


def find_contact(session: Session, number: str | None) -> Contact | None:
    """The contact owning `number` (any spelling), or None — always None without a number."""
    e164 = classify(number).e164
    if e164 is None:
        return None
    return _contact_by_e164(session, e164)


def _contact_by_e164(session: Session, e164: str) -> Contact | None:
    # A number belongs to one contact at most (contact_phones.e164 is unique).
    return session.scalars(_CONTACT_BY_PHONE, {"e164": e164}).first()


def contact_ref(session: Session | Connection, e164: str) -> ContactRef | None:
    """Whose the E.164 number `e164` is (contact and organisation ids), or None: what
    `find_contact` answers, read as two columns with one Core statement (through a
    connection: the first webhook of a call opens no ORM session)."""
    row = session.execute(_CONTACT_REF_BY_PHONE, {"e164": e164}).first()
    return None if row is None else ContactRef(row.id, row.organisation_id)


def identify_caller(session: Session, raw: str | None) -> CallerIdentity:
    caller = classify(raw)
    contact = _contact_by_e164(session, caller.e164) if caller.e164 else None
    if contact is None:
        return CallerIdentity(caller)
    return CallerIdentity(caller, contact, contact.organisation)


def list_directory(session: Session) -> list[Organisation]:
    """Every organisation with its contacts and phones loaded, by name."""
    organisations = session.scalars(
        select(Organisation).options(
            selectinload(Organisation.contacts).selectinload(Contact.phones)
        )
    ).all()
    return sorted(organisations, key=lambda o: (name_key(o.name), o.id))


# ---------------------------------------------------------------- field rules


def inn_problem(inn: str) -> str | None:
    """Why `inn` is not a Russian taxpayer number (ИНН), or None when it is one.

    10 digits for an organisation, 12 for an individual entrepreneur; the last digit(s) are
    check digits: weighted sums modulo 11, modulo 10 (Federal Tax Service order).
    """
    if not inn.isascii() or not inn.isdigit():
        return "только цифры"
    if len(inn) not in (10, 12):
        hint = ""
        if len(inn) in (9, 11):
            hint = " (таблица могла отбросить ведущий ноль: задайте столбцу текстовый формат)"
        return f"нужно 10 или 12 цифр, а не {len(inn)}{hint}"
    digits = [int(d) for d in inn]
    if len(inn) == 10:
        checks = [(_inn_check(digits, (2, 4, 10, 3, 5, 9, 4, 6, 8)), 9)]
    else:
        checks = [
            (_inn_check(digits, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)), 10),
            (_inn_check(digits, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)), 11),
        ]
    if any(digits[position] != check for check, position in checks):
        return "не сходится контрольная цифра (опечатка?)"
    return None


def _inn_check(digits: Sequence[int], weights: Sequence[int]) -> int:
    return sum(d * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]{2,}")


def email_problem(email: str) -> str | None:
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        return "это не адрес электронной почты"
    return None


def phone_problem(caller: CallerId) -> str | None:
    """Why a number typed into the directory cannot be a contact's phone."""
    if caller.kind == "withheld" and caller.raw and caller.raw.strip():
        digits = re.sub(r"[^0-9]", "", caller.raw)
        if digits in TWILIO_WITHHELD_NUMBERS:
            return f"это заглушка Twilio для скрытого номера ({TWILIO_WITHHELD_NUMBERS[digits]})"
        return "скрытый номер, а не телефон"
    if caller.kind == "sip" or caller.kind == "client":
        return f"адрес {caller.kind}:, а не номер телефона"
    if caller.e164 is None:
        return "это не номер телефона"
    return None


def collapse_spaces(value: str) -> str:
    """`value` with every run of whitespace as one space, trimmed."""
    return " ".join(value.split())


def name_key(name: str) -> str:
    """What two spellings of one name have in common (case and spacing aside)."""
    return collapse_spaces(name).casefold()
