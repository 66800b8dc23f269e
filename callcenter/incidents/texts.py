"""What incidents write: SMS to callers and staff, portal comments, the ticket's
description. Russian; what the IVR says is in `callcenter.ivr.prompts`."""

from __future__ import annotations

import re
from collections.abc import Iterable

from callcenter.db.models import Call, Incident
from callcenter.phones import classify
from callcenter.regulation.speech import agree_with_number
from callcenter.regulation.topics import PRODUCTS
from callcenter.tickets import outbox

# A merged incident's closing message: what the console shows, and where `merged_target`
# reads the incident it went into (written only by `store.merge_incident`).
_MERGED = "Объединён с №{id}"
_MERGED_TARGET = re.compile(r"^Объединён с №(\d+)")
# How long a closing message may be in the resolution SMS (the rest is on the ticket).
_SMS_MESSAGE_CHARS = 200


def product_title(slug: str) -> str:
    """ "SKAI-Online"; "все продукты SKAI" for an incident of every product."""
    product = PRODUCTS.get(slug)
    return product.title if product is not None else "все продукты SKAI"


def product_spoken(slug: str) -> str:
    """What the IVR says after «о сбое»: "СКАЙ Онлайн"; "серверов СКАЙ" for every product."""
    product = PRODUCTS.get(slug)
    return product.spoken if product is not None else "серверов СКАЙ"


def ticket_description(incident: Incident) -> str:
    lines = [
        f"Известный сбой №{incident.id}: {product_title(incident.product)}.",
        "Заявка открыта при объявлении сбоя; звонящие по нему клиенты присоединяются "
        "к ней как дубли по телефону.",
    ]
    if incident.message:
        lines.append(f"Сообщение: {incident.message}")
    return "\n".join(lines)


def _who(call: Call) -> str:
    organisation = call.organisation.name if call.organisation is not None else None
    contact = call.contact.name if call.contact is not None else call.caller_said_name
    number = classify(call.caller_e164 or call.caller_raw).display
    parts = [p for p in (organisation or "организация не определена", contact, number) if p]
    return ", ".join(parts)


def joined_comment(incident: Incident, call: Call) -> str:
    """The comment naming a caller who joined (its history line on the ticket)."""
    return (
        f"Клиент сообщил о сбое №{incident.id} по телефону и присоединился к заявке: "
        f"{_who(call)}. Звонок {call.call_sid}."
    )


def joined_sms(incident: Incident, number: str | None) -> str:
    """The SMS a joined caller gets. No number yet: the follow-ups put the ticket's in
    (`outbox.NUMBER_SLOT`), as it is sent only once the duplicate is recorded."""
    return (
        f"SKAI ТП: ваш звонок по сбою {product_title(incident.product)} зарегистрирован "
        f"в заявке №{number or outbox.NUMBER_SLOT}. Пришлём SMS, когда сбой будет устранён."
    )


def resolved_sms(incident: Incident, number: str | None) -> str:
    ticket = f" (заявка №{number})" if number else ""
    text = f"SKAI ТП: сбой {product_title(incident.product)} устранён{ticket}."
    message = " ".join((incident.closing_message or "").split())
    if message:
        if len(message) > _SMS_MESSAGE_CHARS:
            message = message[: _SMS_MESSAGE_CHARS - 1] + "…"
        text += f" {message}"
    return text


def closing_comment(incident: Incident, organisations: Iterable[str]) -> str:
    names = sorted(set(organisations))
    lines = [f"Сбой №{incident.id} устранён: {incident.closing_message or 'без комментария'}"]
    if names:
        lines.append("Пострадавшие организации: " + ", ".join(names) + ".")
    return "\n".join(lines)


def detected_sms(incident: Incident, calls: int, window_minutes: int, number: str | None) -> str:
    ticket = f"заявка №{number}" if number else "номер заявки уточняется"
    return (
        f"SKAI ТП: массовый сбой {product_title(incident.product)}, сбой №{incident.id}: "
        f"{calls} {agree_with_number('звонок', calls)} о критическом сбое за {window_minutes} "
        f"мин, {ticket}. Звонящие слышат объявление и присоединяются к заявке."
    )


def digest_sms(incident: Incident, more: int, number: str | None) -> str:
    verb = "присоединился" if more % 10 == 1 and more % 100 != 11 else "присоединились"
    ticket = f" (заявка №{number})" if number else ""
    return (
        f"SKAI ТП: к сбою №{incident.id}{ticket} {verb} ещё {more} "
        f"{agree_with_number('клиент', more)}."
    )


def merged_note(into: int) -> str:
    """A merged incident's closing message: «Объединён с №3»."""
    return _MERGED.format(id=into)


def merged_target(closing_message: str) -> int | None:
    """The incident a merged one went into, read back from `merged_note`'s text."""
    found = _MERGED_TARGET.match(closing_message)
    return int(found.group(1)) if found else None


def merged_comment(merged: Incident, merged_number: str | None) -> str:
    """The entry on the surviving incident's ticket naming the incident merged into it."""
    ticket = f", заявка №{merged_number}" if merged_number else ""
    return (
        f"Сбой №{merged.id} ({product_title(merged.product)}{ticket}) объединён с этим: "
        "присоединившиеся к нему клиенты получат СМС об устранении, когда закроется этот."
    )


def merge_link_label(into: Incident, number: str | None) -> str:
    """The label of the incident link on the merged incident's ticket."""
    ticket = f", заявка №{number}" if number else ""
    return f"сбой №{into.id} ({product_title(into.product)}{ticket})"
