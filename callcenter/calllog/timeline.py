"""A call's path replayed in Russian: one line per logged event, as the call page shows it.

The IVR logs one `CallEvent` per webhook (kind `incoming`, `gather`, `silence`, `record`,
`poll`; `step` the menu it answered, `digits`/`speech` what the caller did, `detail.result`
what the step made of it), and routing, intake and status callbacks log their own kinds.
`timeline(call)` turns them into sentences. Unknown kinds still appear, under their code,
so nothing a later release logs is hidden from a supervisor. The SMS about the call
(`calllog.alerts`) join them: what was done when it was tried (queued at Twilio, or not
sent and why) and, once Twilio reports it, whether it was delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callcenter.calllog.alerts import SmsSent, sms_state
from callcenter.calllog.words import (
    category_title,
    leg_result_title,
    product_title,
    topic_title,
)
from callcenter.db.models import Call, CallEvent, DialLeg
from callcenter.regulation.speech import say_ordinal
from callcenter.vocabulary import ABANDONED_AFTER_CHOICE, URGENT_CATEGORIES, Step

# Kinds of the quiet plumbing a supervisor rarely needs (shown dimmed).
MINOR = "minor"
NORMAL = "normal"
WARNING = "warning"
GOOD = "good"

MAIN_MENU_CHOICES: Mapping[str, str] = {
    "consultation": "консультация",
    "new_problem": "новая проблема",
    "critical": "критический сбой сервера",
    "stolen": "угон транспортного средства",
    "status": "статус заявки",
    "specialist": "соединить со специалистом",
}
STEP_TITLES: Mapping[str, str] = {
    Step.START: "Приветствие",
    Step.INCIDENT_OFFER: "Объявление об известном сбое",
    Step.MAIN_MENU: "Главное меню",
    Step.TOPIC: "Выбор темы",
    Step.PRODUCT: "Выбор продукта",
    Step.VEHICLES: "Госномер ТС",
    Step.CALLER_NAME: "Имя и организация",
    Step.DESCRIPTION: "Описание проблемы",
    Step.TICKET_WAIT: "Ожидание номера заявки",
    Step.TICKET_DONE: "Номер заявки назван",
    Step.CRITICAL: "Номер заявки о сбое",
    Step.STOLEN_VEHICLES: "Госномер угнанного ТС",
    Step.STATUS_NUMBER: "Номер заявки для статуса",
    Step.STATUS_DONE: "Статус заявки",
    Step.STATUS_UNAVAILABLE: "Статус недоступен",
    Step.STATUS_UNKNOWN_CALLER: "Статус: абонент не опознан",
    Step.STATUS_OBJECTION: "Несогласие с решением",
    Step.CALLBACK_NUMBER: "Номер для обратного звонка",
    Step.REPEAT_OFFER: "Открытые заявки абонента",
    Step.ADDITION: "Дополнение к заявке",
    Step.ADDITION_DONE: "Статус и срок заявки",
    Step.ROUTED: "Соединение",
}
STATUS_TITLES: Mapping[str, str] = {
    "queued": "в очереди",
    "initiated": "начат",
    "ringing": "звонит",
    "in-progress": "идёт разговор",
    "answered": "отвечен",
    "completed": "завершён",
    "busy": "занято",
    "failed": "ошибка",
    "no-answer": "без ответа",
    "canceled": "отменён",
}


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    text: str
    tone: str = NORMAL  # minor / normal / warning / good
    kind: str = ""
    detail: str = ""  # technical words (English, codes), folded away on the page


def timeline(call: Call, sms: Sequence[SmsSent] = ()) -> list[TimelineEntry]:
    """The call's events in order, in Russian, with its SMS (`sms`: `calllog.alerts`).
    Reads `call.events` and `call.legs`."""
    legs = {leg.position: leg for leg in call.legs}
    entries: list[TimelineEntry] = []
    for event in sorted(call.events, key=lambda e: (e.at, e.id or 0)):
        describe = _DESCRIBERS.get(event.kind) or (
            _fallback
            if event.kind.startswith("fallback_")
            else _callback
            if event.kind.startswith("callback_")
            else _generic
        )
        text, tone = describe(event, legs)
        if text:
            detail = str(_detail(event).get("reason") or "") if event.kind in _TECHNICAL else ""
            entries.append(TimelineEntry(event.at, text, tone, event.kind, detail))
    entries.extend(entry for message in sms for entry in _sms_entries(message))
    # Stable: events keep their order among themselves and come before an SMS of the
    # same moment.
    return sorted(entries, key=lambda entry: entry.at)


# Twilio's reports that end a message's story: shown as a line of their own.
_DELIVERY_LINES = frozenset({"delivered", "read", "undelivered", "failed", "canceled"})


def _sms_entries(message: SmsSent) -> list[TimelineEntry]:
    """What was done with the SMS when it was tried, and what Twilio said became of it."""
    what = f"SMS «{message.kind}» — {message.who}"
    if message.was_sent:
        entries = [
            TimelineEntry(message.created_at, f"{what}: поставлено в очередь", NORMAL, "sms")
        ]
    else:
        state, _tone = sms_state(message.status, None, None, message.reason)
        entries = [
            TimelineEntry(
                message.created_at, f"{what}: {state}", WARNING, "sms", message.reason or ""
            )
        ]
    if message.delivery in _DELIVERY_LINES and message.updated_at is not None:
        state, tone = sms_state(message.status, message.delivery, message.error_code, None)
        entries.append(TimelineEntry(message.updated_at, f"{what}: {state}", tone, "sms"))
    return entries


# ---------------------------------------------------------------- what the caller did

Described = tuple[str, str]


def _answer(event: CallEvent) -> str:
    if event.digits and event.digits not in ("hangup",):
        return f"клавиша «{event.digits}»"
    if event.speech:
        return f"голосом «{event.speech}»"
    return "ответ"


def _step(event: CallEvent) -> str:
    return STEP_TITLES.get(event.step or "", event.step or "IVR")


def _detail(event: CallEvent) -> dict[str, Any]:
    return dict(event.detail or {})


def _incoming(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    detail = _detail(event)
    text = "Звонок поступил, приветствие"
    if detail.get("after_hours"):
        text += " (нерабочее время: предупреждение о сроках)"
    if detail.get("result") == "repeat_offer":
        numbers = ", ".join(f"№{n}" for n in detail.get("tickets") or [])
        text += f"; открытые заявки абонента: {numbers} — предложено дополнить"
    return text, NORMAL


def _gather(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    detail = _detail(event)
    result = detail.get("result")
    step = _step(event)
    said = _answer(event)
    exhausted = detail.get("exhausted")
    if exhausted:
        return f"{step}: {_silence_or_invalid(exhausted, event)} третий раз — дальше", WARNING
    if result == "chose":
        if "choice" in detail:
            choice = str(detail["choice"])
            return f"{step}: {said} — {MAIN_MENU_CHOICES.get(choice, choice)}", NORMAL
        if "topic" in detail:
            return f"{step}: {said} — {topic_title(str(detail['topic']))}", NORMAL
        if "product" in detail:
            return f"{step}: {said} — {product_title(str(detail['product']))}", NORMAL
    simple: Mapping[str, tuple[str, str]] = {
        "to_specialist": ("просит специалиста", NORMAL),
        "repeat": ("просит повторить", MINOR),
        "repeated": ("повтор меню", MINOR),
        "topic_unchosen": ("тема не выбрана", NORMAL),
        "product_unknown": ("продукт не знает", NORMAL),
        "unparsed": ("госномер не распознан", WARNING),
        "name_skipped": ("имя не названо", NORMAL),
        "no_description": ("описание не записано", WARNING),
        "ticket_pending": ("номер не успел прийти — придёт в SMS", WARNING),
        "waiting": ("ждём номер заявки", MINOR),
        "goodbye": ("абонент завершил разговор", MINOR),
        "other": ("другой вопрос — главное меню", NORMAL),
        "no_addition": ("дополнение не записано — главное меню", WARNING),
        "another": ("другая заявка", NORMAL),
        "unavailable": ("портал недоступен", WARNING),
        "new_ticket": ("номера заявки нет — открывается новая", NORMAL),
        "no_input_expected": ("ответ не ожидался", MINOR),
        "joined_incident": ("присоединился к известному сбою — без вызова дежурных", NORMAL),
        "not_joined": ("не присоединился к сбою", NORMAL),
        "incident_offered": ("предложено присоединиться к известному сбою", NORMAL),
    }
    if result in ("silence", "invalid"):
        retry = detail.get("retry")
        again = f", повтор {retry}" if retry else ""
        return f"{step}: {_silence_or_invalid(str(result), event)}{again}", WARNING
    if result == "vehicles":
        plates = ", ".join(str(p) for p in detail.get("plates") or []) or "—"
        return f"{step}: {said} — госномер {plates}", NORMAL
    if result == "recorded":
        hung = " (абонент положил трубку)" if detail.get("hangup") else ""
        return f"{step}: записано описание{hung}", NORMAL
    if result == "ticket_number":
        return f"Абоненту назван номер заявки №{detail.get('number')}", GOOD
    if result == "duplicate":
        return (
            f"{step}: {said} — заявка №{detail.get('number')}, отмечается дублирование звонком",
            NORMAL,
        )
    if result == "add_to":
        return f"{step}: {said} — дополнит заявку №{detail.get('number')}", NORMAL
    if result == "addition":
        status = detail.get("status")
        told = f", назван статус «{status}» и срок" if status else ", статус не получен"
        return f"{step}: записано дополнение к заявке №{detail.get('number')}{told}", GOOD
    if result == "status":
        return (
            f"{step}: {said} — заявка №{detail.get('number')}, статус «{detail.get('status')}»",
            NORMAL,
        )
    if result == "refused":
        number = detail.get("number")
        if detail.get("found"):
            why = f"заявка №{number} другой организации"
        else:
            why = f"заявки №{number} нет"
        return f"{step}: {said} — {why}, статус не назван", WARNING
    if isinstance(result, str) and result in simple:
        words, tone = simple[result]
        if event.digits or event.speech:
            return f"{step}: {said} — {words}", tone
        return f"{step}: {words}", tone
    if event.step == "caller_name" and event.speech:
        return f"{step}: «{event.speech}»", NORMAL
    return f"{step}: {said}", NORMAL


def _silence_or_invalid(result: str, event: CallEvent) -> str:
    if result == "silence":
        return "тишина"
    return f"непонятный ответ ({_answer(event)})"


def _record(event: CallEvent, legs: Mapping[int, DialLeg]) -> Described:
    return _gather(event, legs)


def _poll(event: CallEvent, legs: Mapping[int, DialLeg]) -> Described:
    text, tone = _gather(event, legs)
    return text, tone


# ---------------------------------------------------------------- the pipeline


def _ticket_requested(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    if _detail(event).get("interrupted"):
        return "Звонок прерван — заявка создаётся по собранным данным", WARNING
    return "Запрошено создание заявки на портале", NORMAL


def _phone_duplicate(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    number = _detail(event).get("ticket_number")
    return f"Заявка №{number}: отмечено дублирование звонком, приоритет повышен", NORMAL


def _incident_joined(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    incident = _detail(event).get("incident_id")
    return f"Присоединился к сбою №{incident}: дубль по телефону на заявке сбоя", NORMAL


def _addition(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    number = _detail(event).get("ticket_number")
    return f"Заявка №{number}: дополнение с записью передаётся на портал, новая не открыта", GOOD


def _recording(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    detail = _detail(event)
    kind = detail.get("recording_kind")
    what = {"voicemail": "голосовое сообщение", "addition": "дополнение к заявке"}.get(
        str(kind), "описание проблемы"
    )
    seconds = detail.get("duration")
    length = f" ({int(seconds) // 60}:{int(seconds) % 60:02d})" if isinstance(seconds, int) else ""
    return f"Сохранена запись: {what}{length}", NORMAL


def _recording_refused(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    return "Запись не принята: Twilio прислал неверные сведения о ней", WARNING


def _abandoned(_event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    return "Абонент положил трубку до выбора в меню", WARNING


def _abandoned_after_choice(_event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    # No ticket was opened on purpose: the supervisor must see why, and that a callback is due.
    return "Абонент положил трубку после выбора, ничего не сказав: заявка не открыта", WARNING


def _status(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    detail = _detail(event)
    status = str(detail.get("status", ""))
    words = STATUS_TITLES.get(status, status)
    if event.kind == "status_ignored":
        return f"Статус звонка «{words}» пришёл повторно или с опозданием — не применён", MINOR
    seconds = detail.get("duration")
    length = f", длительность {seconds} с" if seconds is not None else ""
    return f"Статус звонка: {words}{length}", MINOR


def _called_back(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    by = _detail(event).get("by")
    return f"Отмечено: абоненту перезвонили{f' ({by})' if by else ''}", GOOD


CALLBACK_RESULTS = {
    "reached": "дозвонились",
    "not_reached": "не дозвонились — снова в очереди",
    "wrong_number": "номер неверен",
}


def _callback(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    """The call-back queue's audit lines (`callcenter.callbacks`): who did what."""
    detail = _detail(event)
    by = detail.get("by") or "—"
    kind = event.kind
    if kind == "callback_taken":
        return f"Перезвон взят: {by}", NORMAL
    if kind == "callback_released":
        return f"Перезвон возвращён в очередь: {by}", NORMAL
    if kind == "callback_dialing":
        return f"Перезвон: звоним специалисту {by} на {detail.get('to', '—')}", NORMAL
    if kind == "callback_dial_failed":
        return f"Перезвон: Twilio не принял звонок ({detail.get('error', '—')})", WARNING
    if kind == "callback_key":
        if event.digits == "1":
            return f"Перезвон ({by}): нажата 1 — соединяем с клиентом", NORMAL
        return f"Перезвон ({by}): 1 не нажата — соединение отменено", WARNING
    if kind == "callback_bridge":
        status = detail.get("status")
        words = STATUS_TITLES.get(str(status), str(status))
        return f"Перезвон: звонок клиенту — {words}", GOOD if status == "completed" else WARNING
    # The caller's side: the offer of a consultation nobody answered (`routing.chain`).
    if kind == "callback_offered":
        place = _place(detail.get("position"))
        if not detail.get("asks_number"):
            return f"Предложен перезвон в порядке очереди ({place} в очереди) или сообщение", NORMAL
        return (
            f"Номер скрыт: предложено набрать номер для перезвона ({place} в очереди) "
            "или оставить сообщение",
            NORMAL,
        )
    if kind == "callback_requested":
        typed = ", на номер, который набрал" if detail.get("typed") else ""
        place = _place(detail.get("position"))
        return f"Абонент просил перезвонить: {place} в очереди перезвонов{typed}", GOOD
    if kind == "callback_declined":
        return f"Перезвон не выбран ({_answer(event)}) — голосовое сообщение", NORMAL
    if kind == "callback_number_invalid":
        return f"Набранный номер для перезвона не распознан ({_answer(event)})", WARNING
    if kind == "callback_answer_ignored":
        return "Ответ на предложение перезвона пришёл повторно или поздно — не применён", MINOR
    if kind == "callback_result":
        result = CALLBACK_RESULTS.get(str(detail.get("result")), str(detail.get("result")))
        note = detail.get("note")
        text = f"Результат перезвона (попытка {detail.get('attempt', '—')}, {by}): {result}"
        tone = GOOD if detail.get("result") == "reached" else WARNING
        return text + (f". Заметка: {note}" if note else ""), tone
    return "", MINOR  # leg statuses: the legs table shows them


def _place(position: object) -> str:
    return say_ordinal(position) if isinstance(position, int) and position > 0 else "место —"


# ---------------------------------------------------------------- routing


def _who(position: Any, legs: Mapping[int, DialLeg]) -> str:
    try:
        leg = legs.get(int(position))
    except (TypeError, ValueError):
        leg = None
    if leg is None:
        return f"участник {position}"
    return leg.staff_name or leg.number


def _leg_position(event: CallEvent) -> str:
    step = event.step or ""
    return step.removeprefix("leg ").strip() if step.startswith("leg ") else step


def _routing_start(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    detail = _detail(event)
    kind = "срочный звонок, цепочка дежурных" if event.step == "urgent" else "консультация"
    tail = " (график пуст — дежурный телефон)" if detail.get("duty_phone") else ""
    return f"Соединение: {kind}{tail}", NORMAL


def _dial(event: CallEvent, legs: Mapping[int, DialLeg]) -> Described:
    positions = _detail(event).get("legs") or []
    names = ", ".join(_who(p, legs) for p in positions) or "—"
    return f"Вызываем: {names}", NORMAL


def _whisper(event: CallEvent, legs: Mapping[int, DialLeg]) -> Described:
    who = _who(_leg_position(event), legs)
    if event.kind == "whisper_refused":
        return f"{who}: подсказка не проиграна (вызов уже не нужен)", MINOR
    return f"Ответ: {who} — подсказка о звонке", MINOR


def _leg_answer(event: CallEvent, legs: Mapping[int, DialLeg]) -> Described:
    who = _who(_leg_position(event), legs)
    detail = _detail(event)
    if event.kind == "leg_accepted":
        seconds = detail.get("seconds")
        after = f" через {seconds} с" if seconds is not None else ""
        return f"Звонок принят: {who} (клавиша 1){after}", GOOD
    if event.kind == "leg_declined":
        return f"Звонок отклонён: {who}", WARNING
    if event.kind == "leg_too_late":
        return f"{who}: клавиша 1 после того, как звонок принят другим", MINOR
    return f"{who}: неверная клавиша ({event.digits or '—'})", WARNING


def _leg_status(event: CallEvent, legs: Mapping[int, DialLeg]) -> Described:
    who = _who(_leg_position(event), legs)
    status = str(_detail(event).get("status", ""))
    return f"{who}: {STATUS_TITLES.get(status, status)}", MINOR


def _dial_result(event: CallEvent, legs: Mapping[int, DialLeg]) -> Described:
    detail = _detail(event)
    if event.kind == "dial_result_ignored":
        return "Повторный результат вызова — не применён", MINOR
    results = detail.get("results") or {}
    parts = [f"{_who(p, legs)} — {leg_result_title(str(r)).lower()}" for p, r in results.items()]
    return "Итог вызова: " + ("; ".join(parts) or str(detail.get("status", "—"))), NORMAL


def _nobody(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    if event.kind == "nobody_accepted":
        return "Никто из цепочки не принял звонок: звонок отмечен", WARNING
    if event.kind == "nobody_answered":
        if _detail(event).get("offered") == "callback":
            return "Специалисты не ответили", WARNING  # the offer is the next line
        return "Специалисты не ответили: предложено голосовое сообщение", WARNING
    if event.kind == "nobody_on_duty":
        return "Некому звонить (график пуст, DUTY_PHONE не задан): голосовое сообщение", WARNING
    if event.kind == "accepted_not_bridged":
        return "Специалист принял, но соединение не состоялось", WARNING
    return "Абонент положил трубку, не дождавшись специалиста", WARNING


def _voicemail(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    if _detail(event).get("left"):
        return "Абонент оставил голосовое сообщение", NORMAL
    return "Голосовое сообщение не оставлено", WARNING


def _fallback(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    what = event.kind.removeprefix("fallback_")
    return f"Резервный сценарий (сбой сервиса): {what}", WARNING


def _generic(event: CallEvent, _legs: Mapping[int, DialLeg]) -> Described:
    parts = [event.kind]
    if event.step:
        parts.append(event.step)
    if event.digits:
        parts.append(f"клавиши «{event.digits}»")
    if event.speech:
        parts.append(f"речь «{event.speech}»")
    return " · ".join(parts), MINOR


# Kinds whose `detail.reason` is a technical message (shown folded, under the sentence).
_TECHNICAL = {"recording_refused"}

_DESCRIBERS: dict[str, Callable[[CallEvent, Mapping[int, DialLeg]], Described]] = {
    "incoming": _incoming,
    "gather": _gather,
    "silence": _gather,
    "record": _record,
    "poll": _poll,
    "ticket_requested": _ticket_requested,
    "phone_duplicate": _phone_duplicate,
    "incident_joined": _incident_joined,
    "addition": _addition,
    "recording_added": _recording,
    "recording_refused": _recording_refused,
    "recording_status": lambda _e, _l: ("", MINOR),  # recording_added says it better
    "abandoned": _abandoned,
    ABANDONED_AFTER_CHOICE: _abandoned_after_choice,
    "status": _status,
    "status_ignored": _status,
    "called_back": _called_back,
    "routing_start": _routing_start,
    "dial": _dial,
    "whisper": _whisper,
    "whisper_refused": _whisper,
    "leg_accepted": _leg_answer,
    "leg_declined": _leg_answer,
    "leg_refused": _leg_answer,
    "leg_too_late": _leg_answer,
    "leg_status": _leg_status,
    "leg_status_unknown": _leg_status,
    "dial_result": _dial_result,
    "dial_result_ignored": _dial_result,
    "nobody_accepted": _nobody,
    "nobody_answered": _nobody,
    "nobody_on_duty": _nobody,
    "accepted_not_bridged": _nobody,
    "caller_hung_up": _nobody,
    "voicemail": _voicemail,
}


def category_sentence(call: Call) -> str:
    """`Новая проблема · Актуализация данных в системе` — the call's choice, for headings."""
    parts = [category_title(call.category)]
    if call.topic and call.category not in URGENT_CATEGORIES:
        parts.append(topic_title(call.topic))
    return " · ".join(parts)
