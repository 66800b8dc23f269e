"""The call-back queue: oldest first, taken («Беру»), dialled («Перезвонить»), finished
with a result and a note. Specialists work it; every action is an event on the call with
who did it. Thin views over `callcenter.callbacks`.

    GET  /console/callbacks                    the queue (`?all=1`: finished items too)
    POST /console/callbacks/<id>/take          «Беру»
    POST /console/callbacks/<id>/release       back to the queue
    POST /console/callbacks/<id>/dial          «Перезвонить»: Twilio rings the user's phone
    POST /console/callbacks/<id>/result        дозвонились / не дозвонились / номер неверен
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import RadioField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length

from callcenter.callbacks import queue
from callcenter.callbacks.dialing import start_callback
from callcenter.calllog import words
from callcenter.console import bp
from callcenter.console.auth import require_user
from callcenter.console.common import roster_warnings
from callcenter.db import transaction
from callcenter.db.models import Call, CallbackItem
from callcenter.errors import InvalidInput, QueueUnavailable, TelephonyError
from callcenter.jobs.tasks import note_to_ticket
from callcenter.web import services

log = logging.getLogger(__name__)

REASON_TITLES = {
    queue.URGENT_MISSED: "Срочный: никто не принял",
    queue.URGENT_NOT_RUNG: "Срочный: прерван до обзвона",
    queue.TICKET_FAILED: "Ошибка создания заявки",
    queue.VOICEMAIL: "Голосовое сообщение",
    queue.ABANDONED: "Прерванный звонок",
    queue.NOT_SERVED: "Консультация без ответа",
    queue.REQUESTED: "Просил перезвонить",
}
STATUS_TITLES = {
    queue.OPEN: "Ждёт",
    queue.TAKEN: "Взят",
    queue.DIALING: "Идёт звонок",
    queue.DONE: "Завершён",
}
RESULT_TITLES = {
    queue.REACHED: "Дозвонились",
    queue.NOT_REACHED: "Не дозвонились",
    queue.WRONG_NUMBER: "Номер неверен",
}
BRIDGE_TITLES = {
    "completed": "разговор состоялся",
    "answered": "разговор состоялся",
    "no-answer": "клиент не ответил",
    "busy": "занято",
    "failed": "ошибка вызова",
    "canceled": "вызов отменён",
}


class ResultForm(FlaskForm):  # type: ignore[misc]  # flask-wtf ships no types
    # CSRF is checked for every console POST by the console's guard, before any view.
    class Meta:
        csrf = False

    result = RadioField(
        "Результат",
        choices=[SelectChoice(value, label) for value, label in RESULT_TITLES.items()],
        validators=[InputRequired(message="Выберите результат звонка.")],
    )
    note = TextAreaField(
        "Заметка",
        validators=[
            Length(
                max=queue.MAX_NOTE_LENGTH,
                message=f"Заметка длиннее {queue.MAX_NOTE_LENGTH} символов: сократите её.",
            )
        ],
    )


def refresh(now: datetime) -> None:
    """Turn new calls that need a call back into items (cheap: one query)."""
    svc = services()
    with transaction(svc.sessions) as db:
        queue.refresh_queue(
            db, now=now, calendar=svc.calendar, sla_minutes=svc.settings.callback_sla_minutes
        )


def _row(item: CallbackItem, now: datetime, user: str) -> dict[str, object]:
    call = item.call
    request_row = call.ticket_request
    return {
        "id": item.id,
        "sid": call.call_sid,
        "waiting_since": words.moscow_short(item.waiting_since),
        "due": words.moscow_short(item.due_at),
        "overdue": queue.is_overdue(item, now),
        "caller": _caller(call),
        "who": call.contact.name if call.contact else call.caller_said_name,
        "organisation": call.organisation.name if call.organisation else None,
        "category": words.category_title(call.category),
        "reason": REASON_TITLES.get(item.reason, item.reason),
        "status": item.status,
        "status_title": STATUS_TITLES.get(item.status, item.status),
        "taken_by": item.taken_by,
        "mine": item.taken_by == user,
        "attempts": item.attempts,
        "result": RESULT_TITLES.get(item.result or "", None),
        "note": item.note,
        "bridge": BRIDGE_TITLES.get(item.bridge_status or "", item.bridge_status),
        "ticket": request_row.ticket_number if request_row is not None else None,
    }


def _caller(call: Call) -> str:
    """Who to call: the caller's number, or the one a withheld caller typed for it."""
    number = queue.number_to_call(call)
    if call.caller_e164 is None and number is not None:
        return f"{words.phone_display(number)} (набран абонентом, номер скрыт)"
    return words.phone_display(call.caller_e164, call.caller_raw)


@bp.get("/callbacks")
def callbacks() -> ResponseReturnValue:
    svc = services()
    user = require_user()
    now = svc.clock()
    refresh(now)
    show_all = request.args.get("all") == "1"
    with svc.sessions() as db:
        items = queue.list_items(db, queue.QueueFilter(include_done=show_all))
        rows = [_row(item, now, user.name) for item in items]
    return render_template(
        "console/callbacks.html",
        rows=rows,
        show_all=show_all,
        waiting=sum(1 for row in rows if row["status"] != queue.DONE),
        overdue=sum(1 for row in rows if row["overdue"]),
        sla_minutes=svc.settings.callback_sla_minutes,
        results=list(RESULT_TITLES.items()),
        warnings=roster_warnings(),
    )


def _back() -> ResponseReturnValue:
    return redirect(url_for("console.callbacks"))


@bp.post("/callbacks/<int:item_id>/take")
def take_callback(item_id: int) -> ResponseReturnValue:
    return _change_owner(
        queue.take,
        item_id,
        "Взять нельзя",
        "Перезвон ваш: нажмите «Перезвонить», когда будете готовы.",
    )


@bp.post("/callbacks/<int:item_id>/release")
def release_callback(item_id: int) -> ResponseReturnValue:
    return _change_owner(queue.release, item_id, "Вернуть нельзя", "Перезвон возвращён в очередь.")


def _change_owner(
    change: Callable[..., object], item_id: int, refused: str, done: str
) -> ResponseReturnValue:
    """Take or give back an item as the signed-in user: `done` flashed, or `refused` with
    the queue's reason."""
    svc = services()
    user = require_user()
    try:
        with transaction(svc.sessions) as db:
            change(db, item_id, by=user.name, now=svc.clock())
    except InvalidInput as exc:
        flash(f"{refused}: {exc}.", "error")
        return _back()
    flash(done, "ok")
    return _back()


@bp.post("/callbacks/<int:item_id>/dial")
def dial_callback(item_id: int) -> ResponseReturnValue:
    svc = services()
    user = require_user()
    try:
        started = start_callback(
            svc.sessions,
            svc.telephony,
            item_id,
            by=user.name,
            now=svc.clock(),
            default_line=next(iter(svc.settings.lines), ""),
            public_base_url=svc.settings.public_base_url,
        )
    except InvalidInput as exc:
        flash(f"Позвонить нельзя: {exc}.", "error")
        return _back()
    except TelephonyError as exc:
        log.warning("call back %s: Twilio refused the call: %s", item_id, exc)
        flash(
            "Twilio не принял звонок — перезвон остаётся за вами, попробуйте ещё раз. "
            f"Подробности: {exc}",
            "error",
        )
        return _back()
    flash(
        f"Звоним вам на {words.phone_display(started.to)}: снимите трубку и нажмите 1 — "
        "соединим с клиентом.",
        "ok",
    )
    return _back()


@bp.post("/callbacks/<int:item_id>/result")
def callback_result(item_id: int) -> ResponseReturnValue:
    svc = services()
    user = require_user()
    form = ResultForm(request.form)
    if not form.validate():
        problems = [message for messages in form.errors.values() for message in messages]
        flash("Результат не записан: " + " ".join(problems), "error")
        return _back()
    now = svc.clock()
    result, note = form.result.data, (form.note.data or "").strip()
    try:
        with transaction(svc.sessions) as db:
            item = queue.record_result(db, item_id, result=result, note=note, by=user.name, now=now)
            call_id, attempt = item.call_id, item.attempts
    except InvalidInput as exc:
        flash(f"Результат не записан: {exc}.", "error")
        return _back()
    text = f"Перезвон клиенту (попытка {attempt}): {RESULT_TITLES[result].lower()}."
    if note:
        text += f" Заметка: {note}"
    try:
        svc.jobs.enqueue(
            note_to_ticket,
            call_id,
            f"callback-{item_id}-{attempt}",
            text,
            user.name,
            job_id=f"ticket-note-callback-{item_id}-{attempt}",
        )
    except QueueUnavailable:
        log.warning("call back %s: result not queued for the ticket, the queue is down", item_id)
    if result == queue.NOT_REACHED:
        flash("Записано: не дозвонились. Перезвон вернулся в очередь.", "ok")
    else:
        flash(f"Записано: {RESULT_TITLES[result].lower()}.", "ok")
    return _back()
