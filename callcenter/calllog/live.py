"""The live panel: calls in progress and the calls of the last minutes.

Flask-free: `live_snapshot(session, now, lines=...)` reads the log and returns plain,
JSON-ready values in a supervisor's words; the console's `/console/live` page polls
`/console/live.json` for it every few seconds.

- In progress: calls whose outcome is still "in progress", started within the last
  `STALE_AFTER` (a call whose final status callback never came is left to the log, where
  it stays visible), newest first, with where the call is now: the IVR step, the person
  whose phone rings, the person talking.
- Recent: calls that started within the last `minutes` and have ended, newest first,
  with their category, outcome, ticket and problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from callcenter.calllog import words
from callcenter.calllog.review import call_problems
from callcenter.clock import as_utc
from callcenter.db.models import Call
from callcenter.vocabulary import Outcome, Step

RECENT_MINUTES = 30
STALE_AFTER = timedelta(hours=2)
MAX_ROWS = 100

STEP_TITLES: Mapping[str, str] = {
    Step.START: "Приветствие",
    Step.MAIN_MENU: "Главное меню",
    Step.CONFIRM_URGENT: "Подтверждает срочный вызов",
    Step.TOPIC: "Выбирает тему",
    Step.PRODUCT: "Выбирает продукт",
    Step.VEHICLES: "Называет госномер",
    Step.CALLER_NAME: "Называет имя и компанию",
    Step.DESCRIPTION: "Описывает проблему",
    Step.TICKET_WAIT: "Ждёт номер заявки",
    Step.TICKET_DONE: "Слушает номер заявки",
    Step.CRITICAL: "Критический сбой: номер заявки",
    Step.STOLEN_VEHICLES: "Угон: называет госномер",
    Step.STATUS_NUMBER: "Называет номер заявки",
    Step.STATUS_DONE: "Слушает статус заявки",
    Step.STATUS_UNAVAILABLE: "Статус заявки недоступен",
    Step.ROUTED: "Соединение со специалистом",
    Step.ENDED: "Завершается",
}


def live_snapshot(
    session: Session,
    now: datetime,
    *,
    lines: Mapping[str, str],
    minutes: int = RECENT_MINUTES,
) -> dict[str, Any]:
    now = as_utc(now)
    since = min(now - timedelta(minutes=minutes), now - STALE_AFTER)
    calls = session.scalars(
        select(Call)
        .where(Call.started_at >= since)
        .order_by(Call.started_at.desc(), Call.id.desc())
        .options(
            selectinload(Call.legs),
            selectinload(Call.ticket_request),
            selectinload(Call.contact),
            selectinload(Call.organisation),
        )
        .limit(MAX_ROWS * 2)
    ).all()
    recent_since = now - timedelta(minutes=minutes)
    in_progress = [c for c in calls if c.outcome == Outcome.IN_PROGRESS]
    recent = [
        c
        for c in calls
        if c.outcome != Outcome.IN_PROGRESS and as_utc(c.started_at) >= recent_since
    ]
    return {
        "at": words.moscow_seconds(now),
        "minutes": minutes,
        "in_progress": [_live_row(c, now, lines) for c in in_progress[:MAX_ROWS]],
        "recent": [_recent_row(c, lines) for c in recent[:MAX_ROWS]],
    }


def _common(call: Call, lines: Mapping[str, str]) -> dict[str, Any]:
    return {
        "sid": call.call_sid,
        "time": words.moscow_seconds(call.started_at),
        "line": words.line_title(call.line, lines),
        "caller": words.phone_display(call.caller_e164, call.caller_raw),
        "who": call.contact.name
        if call.contact
        else (call.organisation.name if call.organisation else call.caller_said_name),
        "category": words.category_title(call.category) if call.category else "Ещё не выбрал",
    }


def _live_row(call: Call, now: datetime, lines: Mapping[str, str]) -> dict[str, Any]:
    row = _common(call, lines)
    row["seconds"] = max(0, int((now - as_utc(call.started_at)).total_seconds()))
    row["duration"] = words.duration(row["seconds"])
    row["where"] = where_now(call)
    return row


def where_now(call: Call) -> str:
    """Where a call in progress is: the person talking or being rung, else the IVR step."""
    talking = [leg for leg in call.legs if leg.result == "accepted" and leg.ended_at is None]
    if talking:
        return "Разговор: " + ", ".join(_person(leg.staff_name, leg.number) for leg in talking)
    ringing = [leg for leg in call.legs if leg.result == "ringing"]
    if ringing:
        names = dict.fromkeys(_person(leg.staff_name, leg.number) for leg in ringing)
        return "Вызов: " + ", ".join(names)
    step = str((call.state or {}).get("step") or "")
    return STEP_TITLES.get(step, "В автоответчике")


def _person(name: str | None, number: str) -> str:
    return name or words.phone_display(number)


def _recent_row(call: Call, lines: Mapping[str, str]) -> dict[str, Any]:
    row = _common(call, lines)
    request = call.ticket_request
    row["outcome"] = words.outcome_title(call.outcome)
    row["routing"] = words.routing_title(call.routing_outcome) if call.routing_outcome else None
    row["ticket"] = request.ticket_number if request is not None else None
    row["ticket_state"] = words.ticket_state_title(request.status) if request is not None else None
    row["duration"] = words.duration(call.duration_seconds)
    row["problems"] = [p.label for p in call_problems(call)]
    return row
