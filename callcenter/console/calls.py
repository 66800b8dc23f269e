"""The call log, its CSV export, a call's page and the supervisor's actions on a call.

Thin views: filters and pages come from `calllog_query` (the same `CallFilter` as
`/api/calls`), problem rows from `calllog_review`, the replayed path from
`calllog_timeline`, the export from `csv_export`; actions call `jobs.retry_ticket_request`,
`intake.open_ticket_request` and `calls.record_event`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlencode

from flask import (
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.calllog import words
from callcenter.calllog.alerts import call_result, who_was_alerted
from callcenter.calllog.csv_export import EXPORT_OPTIONS, csv_chunks, export_filename
from callcenter.calllog.query import (
    CATEGORIES,
    OUTCOMES,
    CallFilter,
    PageRequest,
    get_call,
    search_calls,
)
from callcenter.calllog.review import (
    NO_TICKET,
    NOT_CALLED_BACK,
    PROBLEMS,
    URGENT_NOT_RUNG,
    URGENT_UNANSWERED,
    call_problems,
)
from callcenter.calllog.serialize import related_ticket
from callcenter.calllog.timeline import category_sentence, timeline
from callcenter.calls.recordings import Recording, call_recordings
from callcenter.calls.store import record_event
from callcenter.console import bp
from callcenter.console.auth import require_user
from callcenter.console.common import portal_link, roster_warnings
from callcenter.console.forms import NoteForm
from callcenter.db import transaction
from callcenter.db.models import Call, CallNote, DialLeg, TicketRequest
from callcenter.errors import (
    InvalidFilter,
    InvalidInput,
    QueueUnavailable,
    Reason,
    TicketRequestNotRetryable,
)
from callcenter.jobs.tasks import note_to_ticket, retry_ticket_request
from callcenter.portal.protocol import TicketView
from callcenter.regulation.topics import TOPICS
from callcenter.tickets.intake import open_ticket_request
from callcenter.vocabulary import URGENT_CATEGORIES
from callcenter.web import services

log = logging.getLogger(__name__)

# The form's select options; several categories in one value read as "any of them".
CATEGORY_OPTIONS = (
    *((c, words.category_title(c)) for c in CATEGORIES),
    ("critical,stolen", "Срочные: сбой или угон"),
)
OUTCOME_OPTIONS = tuple((o, words.outcome_title(o)) for o in OUTCOMES)


def _filter_params() -> dict[str, str]:
    return {key: value for key, value in request.args.items() if value.strip()}


def _read_filter() -> tuple[CallFilter, PageRequest]:
    params = _filter_params()
    return (
        CallFilter.from_params(params, known_topics=set(TOPICS)),
        PageRequest.from_params(params),
    )


@bp.get("/")
def calls() -> ResponseReturnValue:
    """The log: newest first, filtered, paginated; problem rows labelled."""
    settings = services().settings
    params = _filter_params()
    try:
        call_filter, page = _read_filter()
    except InvalidFilter as exc:
        return _log_page(CallFilter(), None, params, error=_filter_error(exc)), 400
    now = services().clock()
    with services().sessions() as db:
        found = search_calls(db, call_filter, page, options=EXPORT_OPTIONS, now=now)
        rows = [_row(call, settings.lines, now) for call in found.calls]
    query = call_filter.to_params()

    def page_url(number: int) -> str:
        return url_for("console.calls") + "?" + urlencode({**query, "page": str(number)})

    pager = {
        "total": found.total,
        "page": found.page,
        "pages": found.pages,
        "first": found.per_page * (found.page - 1) + 1 if found.total else 0,
        "last": min(found.total, found.per_page * found.page),
        "prev": page_url(found.page - 1) if found.has_prev else None,
        "next": page_url(found.page + 1) if found.has_next else None,
    }
    return _log_page(call_filter, rows, params, pager=pager)


def _filter_error(exc: InvalidFilter) -> Reason:
    labels = {
        "from": "Дата «с»",
        "to": "Дата «по»",
        "line": "Линия",
        "category": "Категория",
        "topic": "Тема",
        "outcome": "Исход",
        "q": "Поиск",
        "page": "Страница",
        "per_page": "Строк на странице",
    }
    words = exc.words or "неверное значение"
    return Reason(f"{labels.get(exc.field, exc.field)}: {words}.", exc.message)


def _log_page(
    call_filter: CallFilter,
    rows: list[dict[str, object]] | None,
    params: dict[str, str],
    *,
    pager: Mapping[str, object] | None = None,
    error: str | None = None,
) -> str:
    settings = services().settings
    export_query = urlencode(call_filter.to_params())
    return render_template(
        "console/calls.html",
        rows=rows,
        pager=pager,
        error=error,
        form=params,
        lines=settings.lines,
        categories=CATEGORY_OPTIONS,
        outcomes=OUTCOME_OPTIONS,
        topics=[(slug, topic.title) for slug, topic in TOPICS.items()],
        export_url=url_for("console.export_calls") + (f"?{export_query}" if export_query else ""),
        warnings=roster_warnings(),
        today=words.moscow(services().clock(), "y-MM-dd"),
        problem_kinds=PROBLEMS,
    )


def _row(call: Call, lines: Mapping[str, str], now: datetime) -> dict[str, object]:
    request_row = call.ticket_request
    number = request_row.ticket_number if request_row is not None else None
    accepted = next((leg for leg in call.legs if leg.result == "accepted"), None)
    draft = request_row.draft if request_row is not None else None
    first_stage, resolution = words.requested_deadlines(draft)
    return {
        "sid": call.call_sid,
        "time": words.moscow_short(call.started_at),
        "time_full": words.moscow(call.started_at, "EEEE, d MMMM y, HH:mm:ss"),
        "line": words.line_title(call.line, lines),
        "caller": words.phone_display(call.caller_e164, call.caller_raw),
        "contact": call.contact.name if call.contact else call.caller_said_name,
        "organisation": call.organisation.name if call.organisation else None,
        "category": words.category_title(call.category),
        "topic": words.topic_title(call.topic) if call.topic else None,
        "ticket": number,
        "ticket_url": portal_link(number) if number else None,
        "ticket_state": request_row.status if request_row is not None else None,
        "ticket_state_title": words.ticket_state_title(request_row.status)
        if request_row is not None
        else None,
        "first_stage_due": words.moscow_short(first_stage) if first_stage else None,
        "resolution_due": words.moscow_short(resolution)
        if resolution
        else ("по согласованию" if draft else None),
        "outcome": words.outcome_title(call.outcome),
        "routing": words.routing_title(call.routing_outcome) if call.routing_outcome else None,
        "accepted_by": (accepted.staff_name or accepted.number) if accepted else None,
        "duration": words.duration(call.duration_seconds),
        "problems": call_problems(call, now=now),
        "called_back": call.called_back_at is not None,
    }


@bp.get("/calls.csv")
def export_calls() -> ResponseReturnValue:
    """The filtered log as CSV, streamed (see `csv_export`)."""
    try:
        call_filter, _ = _read_filter()
    except InvalidFilter as exc:
        return _log_page(CallFilter(), None, _filter_params(), error=_filter_error(exc)), 400
    svc = services()
    user = require_user()
    log.info("call log exported by %s: %s", user.name, call_filter.to_params() or "everything")
    body = csv_chunks(svc.sessions, call_filter, lines=svc.settings.lines)
    response = Response(stream_with_context(body), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    filename = export_filename(call_filter, svc.clock())
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# ---------------------------------------------------------------- one call


def _load_call(db: Session, call_sid: str) -> Call:
    call = get_call(db, call_sid)
    if call is None:
        abort(404)
    return call


@bp.get("/calls/<call_sid>")
def call_page(call_sid: str) -> ResponseReturnValue:
    return _render_call(call_sid)


def _render_call(call_sid: str, *, note_text: str = "", note_error: str | None = None) -> str:
    svc = services()
    settings = svc.settings
    with svc.sessions() as db:
        call = _load_call(db, call_sid)
        request_row = call.ticket_request
        number = request_row.ticket_number if request_row is not None else None
        ticket = _ticket_view(number)
        draft = dict(request_row.draft or {}) if request_row is not None else {}
        problems = call_problems(call, now=svc.clock())
        alerted = who_was_alerted(db, call, duty_phone=settings.duty_phone)
        return render_template(
            "console/call.html",
            warnings=roster_warnings(),
            call=call,
            heading=category_sentence(call),
            time=words.moscow(call.started_at, "EEEE, d MMMM y, HH:mm:ss"),
            line=words.line_title(call.line, settings.lines),
            caller=words.phone_display(call.caller_e164, call.caller_raw),
            problems=problems,
            can_open_ticket=NO_TICKET in problems,
            can_mark_called_back=any(
                p in problems for p in (URGENT_UNANSWERED, URGENT_NOT_RUNG, NOT_CALLED_BACK)
            ),
            events=timeline(call, alerted.sms),
            legs=[_leg_row(leg) for leg in call.legs],
            alerted=alerted,
            urgent=call.category in URGENT_CATEGORIES,
            recordings=_recordings(call),
            ticket_request=request_row,
            related_ticket=related_ticket(call),
            ticket_number=number,
            ticket_url=portal_link(number) if number else None,
            ticket=ticket,
            first_stage_due=_due(
                ticket.first_stage_due if ticket else None, draft.get("first_stage_due")
            ),
            resolution_due=_due(
                ticket.resolution_due if ticket else None, draft.get("resolution_due")
            ),
            by_agreement=bool(draft) and not draft.get("resolution_due"),
            notes=list(call.notes),
            note_text=note_text,
            note_error=note_error,
            w=words,
        )


def _ticket_view(number: str | None) -> TicketView | None:
    """The portal's view of the ticket, or None (no ticket, or the portal is down: the
    page still shows what the log knows)."""
    if number is None:
        return None
    try:
        return services().portal.get_ticket(number)
    except Exception as exc:  # noqa: BLE001 - any portal trouble leaves the page usable
        log.warning("portal lookup of ticket %s for the console failed: %r", number, exc)
        return None


def _due(from_portal: datetime | None, from_draft: object) -> str | None:
    """A deadline in Moscow time: the portal's if it answered, else the one requested."""
    at = from_portal
    if at is None and isinstance(from_draft, str) and from_draft:
        try:
            at = datetime.fromisoformat(from_draft)
        except ValueError:
            at = None
    return words.moscow(at, "HH:mm, EEEE d MMMM y") if at is not None else None


def _leg_row(leg: DialLeg) -> dict[str, object]:
    seconds = (
        round((leg.answered_at - leg.started_at).total_seconds())
        if leg.answered_at is not None
        else None
    )
    return {
        "position": leg.position,
        "name": leg.staff_name or "Дежурный телефон",
        "number": words.phone_display(leg.number),
        "started": words.moscow_seconds(leg.started_at),
        "answered": words.moscow_seconds(leg.answered_at) if leg.answered_at else "—",
        "seconds": f"{seconds} с" if seconds is not None else "—",
        "result": call_result(leg.result)[0],
        "tone": call_result(leg.result)[1],
        "accepted": leg.result == "accepted",
    }


def _recordings(call: Call) -> list[dict[str, object]]:
    found: list[Recording] = call_recordings(call)
    items: list[dict[str, object]] = [
        {
            "label": rec.label,
            "url": url_for("console.call_recording_by_sid", call_sid=call.call_sid, sid=rec.sid),
            "at": words.moscow_seconds(rec.at),
        }
        for rec in found
    ]
    if not items and (call.recording_sid or call.recording_url):
        # A call logged before recordings had events: its main recording.
        items.append(
            {
                "label": "Запись звонка",
                "url": url_for("console.call_recording", call_sid=call.call_sid),
                "at": "",
            }
        )
    return items


@bp.get("/calls/<call_sid>/ticket.json")
def ticket_state(call_sid: str) -> ResponseReturnValue:
    """The ticket request's state, for the call page's script while a ticket is created."""
    with services().sessions() as db:
        row = db.scalar(
            select(TicketRequest)
            .join(Call, Call.id == TicketRequest.call_id)
            .where(Call.call_sid == call_sid)
        )
        if row is None:
            return jsonify(state=None, number=None)
        return jsonify(state=row.status, number=row.ticket_number, error=row.last_error)


# ---------------------------------------------------------------- actions (supervisor)


def _back(call_sid: str) -> ResponseReturnValue:
    return redirect(url_for("console.call_page", call_sid=call_sid))


@bp.post("/calls/<call_sid>/retry")
def retry_ticket(call_sid: str) -> ResponseReturnValue:
    """Ask the portal again for a failed ticket (the outbox's retry, then the job)."""
    svc = services()
    user = require_user()
    with svc.sessions() as db:
        call = _load_call(db, call_sid)
        request_id = call.ticket_request.id if call.ticket_request is not None else None
    if request_id is None:
        flash("У звонка нет запроса заявки — повторять нечего.", "error")
        return _back(call_sid)
    try:
        queued = retry_ticket_request(svc, request_id, by=user.name)
    except TicketRequestNotRetryable as exc:
        log.info("retry of ticket request %s refused: %s", request_id, exc)
        flash(
            "Повтор невозможен: повторить можно только заявку с ошибкой создания, "
            "а эта уже создана или создаётся.",
            "error",
        )
        return _back(call_sid)
    except InvalidInput as exc:
        log.warning("retry of ticket request %s refused: %s", request_id, exc)
        flash("Повтор невозможен: запрос заявки не найден.", "error")
        return _back(call_sid)
    if queued:
        flash("Заявка отправлена на портал повторно.", "ok")
    else:
        flash("Очередь недоступна: заявка будет отправлена при следующем обходе.", "warning")
    return _back(call_sid)


@bp.post("/calls/<call_sid>/open-ticket")
def open_ticket(call_sid: str) -> ResponseReturnValue:
    """Open the ticket a ticketed call never got (the pipeline's own function)."""
    svc = services()
    user = require_user()
    at = svc.clock()
    try:
        with transaction(svc.sessions) as db:
            call = _load_call(db, call_sid)
            if call.ticket_request is not None:
                flash("У звонка уже есть запрос заявки.", "warning")
                return _back(call_sid)
            row = open_ticket_request(db, call, now=at, calendar=svc.calendar)
            db.flush()
            request_id = row.id
            record_event(db, call, "ticket_requested", at, request_id=request_id, by=user.name)
    except InvalidInput as exc:
        log.info("ticket for call %s refused: %s", call_sid, exc)
        flash(
            "Заявку открыть нельзя: абонент не выбрал, о чём звонок "
            "(звонок записан в журнал для обратного звонка).",
            "error",
        )
        return _back(call_sid)
    svc.jobs.submit_ticket_request(request_id)
    flash("Запрос заявки создан и отправлен на портал.", "ok")
    return _back(call_sid)


@bp.post("/calls/<call_sid>/called-back")
def mark_called_back(call_sid: str) -> ResponseReturnValue:
    svc = services()
    user = require_user()
    at = svc.clock()
    with transaction(svc.sessions) as db:
        call = _load_call(db, call_sid)
        if call.called_back_at is not None:
            flash("Уже отмечено, что абоненту перезвонили.", "warning")
            return _back(call_sid)
        call.called_back_at = at
        call.called_back_by = user.name
        call.updated_at = at
        record_event(db, call, "called_back", at, by=user.name)
    flash("Отмечено: абоненту перезвонили.", "ok")
    return _back(call_sid)


@bp.post("/calls/<call_sid>/notes")
def add_note(call_sid: str) -> ResponseReturnValue:
    svc = services()
    user = require_user()
    form = NoteForm()
    if not form.validate():
        # The text stays in the form: nothing the supervisor typed is lost.
        why = form.text.errors[0]
        return _render_call(call_sid, note_text=form.text.data or "", note_error=why), 400
    text = form.text.data
    at = svc.clock()
    with transaction(svc.sessions) as db:
        call = _load_call(db, call_sid)
        note = CallNote(call_id=call.id, at=at, author=user.name, text=text)
        db.add(note)
        db.flush()
        call_id, note_id = call.id, note.id
    # The ticket's history gets the note too (no ticket: the call log keeps it alone).
    try:
        svc.jobs.enqueue(
            note_to_ticket,
            call_id,
            f"console-note-{note_id}",
            f"Заметка из консоли: {text}",
            user.name,
            job_id=f"ticket-note-{note_id}",
        )
    except QueueUnavailable:
        log.warning("note %s of %s not queued for the ticket: the queue is down", note_id, call_sid)
    flash("Заметка сохранена.", "ok")
    return _back(call_sid)
