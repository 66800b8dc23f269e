"""The call log in a supervisor's words: Russian titles of the log's codes, and times,
numbers and durations as the console and the CSV export show them.

Flask-free. Codes without a title are shown as they are, so a new code appears (in
English) rather than disappearing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

import phonenumbers
from babel.dates import format_datetime

from callcenter.clock import to_moscow
from callcenter.phones import classify
from callcenter.regulation.topics import PRODUCTS, TOPICS
from callcenter.vocabulary import Category, Outcome

CATEGORY_TITLES: Mapping[str, str] = {
    Category.CONSULTATION: "Консультация",
    Category.INCIDENT: "Новая проблема",
    Category.CRITICAL: "Критический сбой сервера",
    Category.STOLEN: "Угон ТС",
    Category.STATUS: "Статус заявки",
    Category.ADDITION: "Дополнение к заявке",
    Category.ABANDONED: "Сброшен до выбора",
}
OUTCOME_TITLES: Mapping[str, str] = {
    Outcome.IN_PROGRESS: "Идёт",
    Outcome.COMPLETED: "Завершён",
    Outcome.INTERRUPTED: "Прерван",
    Outcome.ABANDONED: "Сброшен",
    Outcome.FAILED: "Не состоялся",
}
ROUTING_TITLES: Mapping[str, str] = {
    "connected": "Соединён со специалистом",
    "nobody_accepted": "Никто не принял",
    "no_answer": "Специалисты не ответили",
    "voicemail": "Оставлено голосовое сообщение",
    "caller_hung_up": "Абонент не дождался",
    "not_routed": "Без соединения",
}
LEG_RESULT_TITLES: Mapping[str, str] = {
    "ringing": "Звонит",
    "accepted": "Принят (нажата 1)",
    "declined": "Отклонён",
    "not-accepted": "Ответ без нажатия 1",
    "no-answer": "Нет ответа",
    "busy": "Занято",
    "failed": "Ошибка вызова",
    "canceled": "Вызов отменён",
    "initiated": "Набирается",
    "queued": "В очереди на набор",
    "in-progress": "Разговор",
    "completed": "Разговор завершён",
}
TICKET_STATE_TITLES: Mapping[str, str] = {
    "pending": "Создаётся",
    "done": "Создана",
    "failed": "Ошибка создания",
}
PRIORITY_TITLES: Mapping[str, str] = {
    "normal": "Обычный",
    "high": "Высокий",
    "critical": "Критический",
}


def ticket_error_title(error: str | None) -> str:
    """A ticket request's last error (stored in English for the logs, see `tickets.outbox`)
    in a supervisor's words; the stored text itself is the technical detail."""
    if not error:
        return "—"
    if error.startswith("portal rejected"):
        return "Портал отклонил заявку"
    if error.startswith("portal unavailable"):
        if "no answer within" in error:
            return "Портал заявок не ответил вовремя"
        return "Портал заявок был недоступен"
    return "Непредвиденная ошибка при создании заявки"


def category_title(category: str | None) -> str:
    if category is None:
        return "—"
    return CATEGORY_TITLES.get(category, category)


def topic_title(topic: str | None) -> str:
    if topic is None:
        return "—"
    found = TOPICS.get(topic)
    return found.title if found is not None else topic


def product_title(product: str | None) -> str:
    if product is None:
        return "—"
    found = PRODUCTS.get(product)
    return found.title if found is not None else product


def outcome_title(outcome: str | None) -> str:
    return OUTCOME_TITLES.get(outcome or "", outcome or "—")


def routing_title(routing_outcome: str | None) -> str:
    return ROUTING_TITLES.get(routing_outcome or "", routing_outcome or "—")


def leg_result_title(result: str) -> str:
    return LEG_RESULT_TITLES.get(result, result)


def ticket_state_title(state: str | None) -> str:
    return TICKET_STATE_TITLES.get(state or "", state or "—")


def line_title(line: str | None, lines: Mapping[str, str]) -> str:
    """`8 (800) 250-60-77` for a configured line, else the number itself."""
    if line is None:
        return "—"
    return lines.get(line) or classify(line).display


def phone_display(e164: str | None, raw: str | None = None) -> str:
    """A caller as a supervisor reads it: "+7 916 123-45-67", "Номер скрыт", a SIP name."""
    if e164 is not None:
        return classify(e164).display
    return classify(raw).display


def phone_national(e164: str | None, raw: str | None = None) -> str:
    """Russian numbers as "8 (916) 123-45-67": how they are dialled here, and a form a
    spreadsheet keeps as text (a leading "+" would make it a formula or a number)."""
    if e164 is not None and e164.startswith("+7"):
        return _russian_national(e164)
    return phone_display(e164, raw)


@lru_cache(maxsize=8192)
def _russian_national(e164: str) -> str:
    # libphonenumber's formatting is the slow part of an export row. Mobiles (+7 9xx,
    # most callers) all have the one national pattern libphonenumber gives them; other
    # numbers (area codes of three to five digits) are left to the library.
    if len(e164) == 12 and e164.startswith("+79") and e164[1:].isdigit():
        d = e164[2:]
        return f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))


def moscow(at: datetime | None, pattern: str = "d MMMM y, HH:mm") -> str:
    """A time in Moscow, in Russian (Babel's CLDR data: month names, order)."""
    if at is None:
        return "—"
    return str(format_datetime(to_moscow(at), pattern, locale="ru"))


def moscow_short(at: datetime | None) -> str:
    """`27.11.2025 11:00` — the log's column (digits only: no locale data needed)."""
    return "—" if at is None else to_moscow(at).strftime("%d.%m.%Y %H:%M")


def requested_deadlines(
    draft: Mapping[str, object] | None,
) -> tuple[datetime | None, datetime | None]:
    """The stage-one and resolution deadlines a ticket request asked the portal for (stored
    in its draft as ISO strings); None where there is none or it cannot be read."""

    def read(key: str) -> datetime | None:
        raw = (draft or {}).get(key)
        if not isinstance(raw, str) or not raw:
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return None

    return read("first_stage_due"), read("resolution_due")


def moscow_numeric(at: datetime | None) -> str:
    """`27.11.2025 11:00:05` — the export's column, which Excel reads as a date."""
    return "" if at is None else to_moscow(at).strftime("%d.%m.%Y %H:%M:%S")


def moscow_seconds(at: datetime | None) -> str:
    """`11:00:05` — a timeline's column."""
    return moscow(at, "HH:mm:ss")


def duration(seconds: int | float | None) -> str:
    """`3:05`, `1:02:03`; a dash for an unknown duration."""
    if seconds is None:
        return "—"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"
