"""Who was alerted about a call, and how: each person rung (the call's `DialLeg` rows) and
each SMS about it (`SmsMessage` rows with its `call_id`), in a supervisor's words.

An SMS's state says only what is known: Twilio's own word when a status callback brought
one (`delivery`: «доставлено», «не доставлено (код 30003)»), else our side of it — taken by
Twilio («в очереди»: a new message's status there is `queued`), or not sent and why
(«не отправлено: нет мобильного номера»). A skipped SMS is never shown as sent.

Flask-free: the console's call page and `/api/calls/<sid>` read the same `Alerted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.callbacks.sla import NO_HEAD_TO_TEXT
from callcenter.calllog.serialize import iso_moscow
from callcenter.calllog.words import phone_display
from callcenter.db.models import Call, DialLeg, SmsMessage, Staff
from callcenter.routing.alerts import NO_SMS_NUMBER, NOBODY_TO_TEXT
from callcenter.telephony.client import NOT_CONFIGURED
from callcenter.tickets.notifications import FAILED, RETRY, SENDING, SENT, SKIPPED, UNKNOWN

# The timeline's tones (`calllog.timeline`), as the page colours them.
GOOD = "good"
NORMAL = "normal"
WARNING = "warning"

# What came of ringing a person, as the call page says it (no verb guesses their gender).
CALL_RESULTS: Mapping[str, tuple[str, str]] = {
    "ringing": ("звонит", NORMAL),
    "initiated": ("набирается", NORMAL),
    "queued": ("в очереди на набор", NORMAL),
    "accepted": ("звонок принят (нажата 1)", GOOD),
    "in-progress": ("разговор", GOOD),
    "completed": ("разговор завершён", GOOD),
    "not-accepted": ("ответ без нажатия 1", WARNING),
    "declined": ("звонок отклонён", WARNING),
    "no-answer": ("нет ответа", WARNING),
    "busy": ("занято", WARNING),
    "failed": ("не дозвонились", WARNING),
    "canceled": ("вызов отменён", NORMAL),
}
CALL_PURPOSES: Mapping[str, str] = {
    "chain": "звонок дежурному",
    "callback_specialist": "перезвон: телефон специалиста",
    "callback_client": "перезвон: клиент",
}

# What an SMS was (its ledger key's prefix).
SMS_KINDS: Sequence[tuple[str, str]] = (
    ("chain-alert:", "никто не принял срочный звонок"),
    ("missed-urgent:", "пропущен срочный звонок"),
    ("kb-link:", "ссылка на базу знаний"),
    ("callback-sla:", "перезвон просрочен"),
    ("incident:", "сбой устранён"),
)
_TICKET_SMS_KINDS: Mapping[str, str] = {
    "caller": "номер и сроки заявки",
    "alert": "срочная заявка — дежурным",
    "failed": "заявка не создана — дежурным",
}

# Twilio's MessageStatus as reported by its status callbacks.
DELIVERY_STATES: Mapping[str, tuple[str, str]] = {
    "accepted": ("в очереди", NORMAL),
    "scheduled": ("запланировано", NORMAL),
    "queued": ("в очереди", NORMAL),
    "sending": ("отправляется", NORMAL),
    "sent": ("отправлено", NORMAL),
    "partially_delivered": ("доставлено частично", WARNING),
    "delivered": ("доставлено", GOOD),
    "read": ("прочитано", GOOD),
    "undelivered": ("не доставлено", WARNING),
    "failed": ("не отправлено оператором", WARNING),
    "canceled": ("отменено", WARNING),
}

# Why an SMS was not sent (the ledger keeps the reason in English, for the logs), by the
# reason's beginning.
SKIP_REASONS: Sequence[tuple[str, str]] = (
    (NOT_CONFIGURED, "не настроена учётная запись Twilio"),
    (NO_SMS_NUMBER, "нет мобильного номера"),
    (NOBODY_TO_TEXT, "нет дежурного с мобильным номером"),
    (NO_HEAD_TO_TEXT, "нет руководителя с мобильным номером"),
    ("caller ID withheld", "номер скрыт"),
    ("landline number", "городской номер"),
    ("toll-free number", "бесплатный номер 8-800"),
    ("not a valid phone number", "номер не распознан"),
    ("number outside Russia", "зарубежный номер (SMS за рубеж выключены)"),
    ("sip caller without", "звонок без номера телефона"),
    ("client caller without", "звонок без номера телефона"),
    ("a foreign", "зарубежный номер не мобильный"),
)


@dataclass(frozen=True)
class PersonRung:
    position: int
    who: str
    to: str  # as dialled
    number: str  # as a supervisor reads it
    purpose: str
    result: str
    tone: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    code: str  # DialLeg.result


@dataclass(frozen=True)
class SmsSent:
    who: str
    to: str | None  # E.164
    number: str | None  # as a supervisor reads it
    kind: str
    state: str
    tone: str
    created_at: datetime
    updated_at: datetime | None
    # The ledger's and Twilio's own words (the API's fields, the page's details).
    status: str
    delivery: str | None
    error_code: str | None
    reason: str | None
    message_sid: str | None

    @property
    def was_sent(self) -> bool:
        """Twilio took it (whatever became of it later)."""
        return self.status == SENT or self.delivery is not None


@dataclass(frozen=True)
class Alerted:
    calls: list[PersonRung]
    sms: list[SmsSent]


def who_was_alerted(session: Session, call: Call, *, duty_phone: str | None) -> Alerted:
    """Everyone rung and texted about `call` (its legs in order, its SMS oldest first).
    SMS rows without a recipient's name are named from the roster by their number, the
    caller's number as the caller, the duty phone as such."""
    messages = list(call.sms_messages)
    unnamed = {m.to for m in messages if m.recipient is None and m.to}
    staff = _staff_by_sms(session, unnamed) if unnamed else {}
    return Alerted(
        calls=[_person_rung(leg) for leg in call.legs],
        sms=[_sms_sent(m, call, staff, duty_phone) for m in messages],
    )


def _staff_by_sms(session: Session, numbers: Iterable[str]) -> dict[str, str]:
    rows = session.execute(select(Staff.sms, Staff.name).where(Staff.sms.in_(list(numbers))))
    return {str(sms): str(name) for sms, name in rows}


def call_result(code: str) -> tuple[str, str]:
    """A leg's result (`DialLeg.result`) in Russian, and its tone."""
    return CALL_RESULTS.get(code, (code, NORMAL))


def _person_rung(leg: DialLeg) -> PersonRung:
    result, tone = call_result(leg.result)
    return PersonRung(
        position=leg.position,
        who=leg.staff_name or "Дежурный телефон",
        to=leg.number,
        number=phone_display(leg.number),
        purpose=CALL_PURPOSES.get(leg.purpose, leg.purpose),
        result=result,
        tone=tone,
        started_at=leg.started_at,
        answered_at=leg.answered_at,
        ended_at=leg.ended_at,
        code=leg.result,
    )


def _sms_sent(
    message: SmsMessage, call: Call, staff: Mapping[str, str], duty_phone: str | None
) -> SmsSent:
    state, tone = sms_state(message.status, message.delivery, message.error_code, message.reason)
    return SmsSent(
        who=_recipient(message, call, staff, duty_phone),
        to=message.to,
        number=phone_display(message.to) if message.to else None,
        kind=sms_kind(message.key),
        state=state,
        tone=tone,
        created_at=message.created_at,
        updated_at=message.updated_at,
        status=message.status,
        delivery=message.delivery,
        error_code=message.error_code,
        reason=message.reason,
        message_sid=message.twilio_sid,
    )


def _recipient(
    message: SmsMessage, call: Call, staff: Mapping[str, str], duty_phone: str | None
) -> str:
    if message.recipient:
        return message.recipient
    if message.to and message.to == call.caller_e164:
        return "Абонент"
    if message.to and message.to in staff:
        return staff[message.to]
    if message.to and message.to == duty_phone:
        return "Дежурный телефон"
    if message.key.startswith("ticket-request:") and message.key.endswith(":caller"):
        return "Абонент"
    return "—"


def sms_kind(key: str) -> str:
    """What the SMS was, from its ledger key."""
    if key.startswith("ticket-request:"):
        parts = key.split(":")
        return _TICKET_SMS_KINDS.get(parts[2] if len(parts) > 2 else "", "по заявке")
    return next((title for prefix, title in SMS_KINDS if key.startswith(prefix)), "SMS")


def sms_state(
    status: str, delivery: str | None, error_code: str | None, reason: str | None
) -> tuple[str, str]:
    """An SMS's state in Russian, and its tone: Twilio's last report when there is one,
    else what our side did (see the module docstring)."""
    if delivery is not None:
        words, tone = DELIVERY_STATES.get(delivery, (delivery, NORMAL))
        return (f"{words} (код {error_code})" if error_code else words), tone
    if status == SENT:
        return "в очереди", NORMAL
    if status == SKIPPED:
        return f"не отправлено: {skip_reason(reason)}", WARNING
    if status == FAILED:
        return "не отправлено: Twilio отклонил сообщение", WARNING
    if status == RETRY:
        return "не отправлено: Twilio недоступен, будет повтор", WARNING
    if status == SENDING:
        return "отправка не подтверждена", WARNING
    if status == UNKNOWN:
        # The sending process stopped between asking Twilio and writing the answer.
        return "неизвестно, ушло ли: отправка прервалась, повтора не будет", WARNING
    return status, NORMAL


def skip_reason(reason: str | None) -> str:
    if not reason:
        return "причина не записана"
    return next(
        (words for prefix, words in SKIP_REASONS if reason.startswith(prefix)),
        "см. подробности",
    )


def alerted_json(alerted: Alerted) -> dict[str, Any]:
    """`Alerted` as the API shows it: the Russian words beside the stored codes."""
    return {
        "calls": [
            {
                "position": p.position,
                "who": p.who,
                "number": p.to,
                "purpose": p.purpose,
                "result": p.code,
                "result_title": p.result,
                "started_at": iso_moscow(p.started_at),
                "answered_at": iso_moscow(p.answered_at),
                "ended_at": iso_moscow(p.ended_at),
            }
            for p in alerted.calls
        ],
        "sms": [
            {
                "who": s.who,
                "to": s.to,
                "kind": s.kind,
                "status": s.status,
                "delivery": s.delivery,
                "error_code": s.error_code,
                "reason": s.reason,
                "state_title": s.state,
                "sent": s.was_sent,
                "message_sid": s.message_sid,
                "created_at": iso_moscow(s.created_at),
                "updated_at": iso_moscow(s.updated_at),
            }
            for s in alerted.sms
        ],
    }
