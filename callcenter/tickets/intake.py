"""Intake: what a finished (or interrupted) call leaves behind for the ticket pipeline.

Domain actions, no Flask. Each runs inside the caller's transaction (the webhook's, with the
call row locked) and never commits; after the commit the caller hands the returned request
to `services.jobs.submit_ticket_request(request.id)`. Opening a ticket itself never happens
inside a webhook: these functions only write the outbox row (`callcenter.tickets.outbox`).

- `open_ticket_request`: the call's ticket request, built from what the caller chose and
  said (topic, product, vehicles, who they are, the recording), with the regulation's
  deadlines. Idempotent per call: the same row every time; a pending one takes the newer
  draft, a done one never changes.
- `add_recording`: a recording of the call (description or voicemail), stored on the call
  and attached to the ticket once there is one.
- `mark_phone_duplicate`: the critical path with an existing ticket number — the job tells
  the portal the ticket was duplicated by phone (the regulation's requirement) and raises
  its priority.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

import phonenumbers
from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.orm import Session

from callcenter.calls.recordings import (
    RECORDING_EVENT,
    check_recording,
    recording_sids,
)
from callcenter.calls.store import record_event, update_call
from callcenter.clock import system_clock, to_moscow
from callcenter.db.models import Call, Contact, Organisation, TicketRequest
from callcenter.errors import InvalidInput, NotTicketable
from callcenter.phones import classify
from callcenter.portal.protocol import TicketDraft
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.regulation.topics import NON_URGENT_TOPICS, PRODUCTS, TOPICS, deadlines
from callcenter.tickets import outbox
from callcenter.vocabulary import (
    CALLBACK_NUMBER_KEY,
    CATEGORY_TOPICS,
    CONSULTATION_TOPIC,
    CRITICAL_TOPIC,
    TOPIC_PRIORITIES,
    UNTICKETED_CATEGORIES,
    Category,
)

# A caller who chose "new problem" and hung up before the topic menu still gets a ticket
# (nothing they started is lost). It is filed under the non-urgent topic with the strictest
# deadline, so a specialist who reclassifies it can only relax the deadline, never miss it.
UNCHOSEN_TOPIC = min(
    (t for t in NON_URGENT_TOPICS if t.slug != CONSULTATION_TOPIC), key=lambda t: t.max_days
).slug

_TICKET_NUMBER = re.compile(r"[0-9]{1,12}")
# Kept in the request's draft: a ticket number the caller typed that is not theirs.
TYPED_NUMBER = "typed_number"


def ticketable(call: Call) -> bool:
    """Does the regulation want a ticket for this call (as far as it got)?"""
    return call.topic is not None or (
        call.category is not None and call.category not in UNTICKETED_CATEGORIES
    )


def open_ticket_request(
    session: Session,
    call: Call,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    interrupted: bool = False,
    typed_number: str | None = None,
) -> TicketRequest:
    """`open_ticket_request_on_row` for a call the ORM holds: its pending changes flushed
    first, the request returned as an ORM object read fresh."""
    session.flush()
    request_id = open_ticket_request_on_row(
        session.connection(),
        call.id,
        now=now,
        calendar=calendar,
        interrupted=interrupted,
        typed_number=typed_number,
    )
    return _read_back(session, request_id)


def open_ticket_request_on_row(
    connection: Connection,
    call_id: int,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    interrupted: bool = False,
    typed_number: str | None = None,
) -> int:
    """The id of the call's ticket request (the outbox row), created or refreshed with Core
    statements on the locked call's row; not committed.

    Raises `NotTicketable` for a call with nothing to ticket (no path chosen, a status
    query). A request already marked as a phone duplicate stays one. `typed_number`: a
    ticket number the caller typed that is not their organisation's (critical path); it
    goes into the description and stays there on every refresh.
    """
    call = draft_facts(connection, call_id)
    existing = call.request_draft
    extra: dict[str, Any] = {}
    if existing is not None and existing.get(outbox.DUPLICATE_OF):
        extra[outbox.DUPLICATE_OF] = existing[outbox.DUPLICATE_OF]
    if existing is not None and existing.get(outbox.DUPLICATE_OF_REQUEST):
        extra[outbox.DUPLICATE_OF_REQUEST] = existing[outbox.DUPLICATE_OF_REQUEST]
    if existing is not None and existing.get(outbox.INCIDENT):
        extra[outbox.INCIDENT] = existing[outbox.INCIDENT]
    typed = typed_number or (existing.get(TYPED_NUMBER) if existing is not None else None)
    if typed:
        extra[TYPED_NUMBER] = typed
    draft = ticket_draft(
        call, calendar=calendar, interrupted=interrupted or call.interrupted, typed_number=typed
    )
    return outbox.put_request(
        connection,
        call_id=call.id,
        idempotency_key=call.call_sid,
        draft=_stored(call, draft, interrupted=interrupted or call.interrupted, **extra),
        now=now,
    )


def mark_phone_duplicate(
    session: Session,
    call: Call,
    ticket_number: str | None,
    *,
    now: datetime,
    calendar: BusinessCalendar | None = None,
    incident: dict[str, Any] | None = None,
    of_request: int | None = None,
) -> TicketRequest:
    """`mark_phone_duplicate_on_row` for a call the ORM holds: its pending changes flushed
    first, the request returned as an ORM object read fresh."""
    session.flush()
    request_id = mark_phone_duplicate_on_row(
        session.connection(),
        call.id,
        ticket_number,
        now=now,
        calendar=calendar,
        incident=incident,
        of_request=of_request,
    )
    return _read_back(session, request_id)


def mark_phone_duplicate_on_row(
    connection: Connection,
    call_id: int,
    ticket_number: str | None,
    *,
    now: datetime,
    calendar: BusinessCalendar | None = None,
    incident: dict[str, Any] | None = None,
    of_request: int | None = None,
) -> int:
    """Record that the caller duplicated ticket `ticket_number` by phone (critical path),
    with Core statements on the locked call's row; the request's id.

    A job then calls the portal's `record_phone_duplicate` (time, caller, call) and the
    priority goes up. Should the portal not know the number, the job opens a critical
    ticket instead, so the failure is on a ticket either way; the draft for that case is
    built here, with deadlines from `calendar` (the shipped calendar when not given).
    `incident`: the caller joined a known incident (`callcenter.incidents.store.join_call`);
    the follow-ups then comment and text as it says instead of alerting the staff on duty.
    `of_request` instead of a number: the ticket request `of_request` will make the ticket
    (a known incident detected a moment ago); the job waits for its number
    (`outbox.DUPLICATE_OF_REQUEST`).
    """
    extra: dict[str, Any] = {outbox.INCIDENT: incident} if incident else {}
    if ticket_number is None and of_request is not None:
        number = None
        extra = {outbox.DUPLICATE_OF_REQUEST: of_request, **extra}
    else:
        number = _ticket_number(ticket_number)
        extra = {"duplicate_of": number, **extra}
    call = draft_facts(connection, call_id)
    draft = ticket_draft(
        call,
        calendar=calendar or BusinessCalendar.shipped(),
        topic=CRITICAL_TOPIC,
        duplicate_of=number,
    )
    return outbox.put_request(
        connection,
        call_id=call.id,
        idempotency_key=call.call_sid,
        draft=_stored(call, draft, interrupted=call.interrupted, **extra),
        now=now,
    )


def add_to_ticket_on_row(
    connection: Connection,
    call_id: int,
    ticket_number: str,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    call_url: str,
    topic: str | None = None,
) -> int:
    """A repeat caller's recorded addition to their open ticket `ticket_number`, with Core
    statements on the locked call's row; the request's id.

    The call's request names the ticket (`outbox.ADDITION_TO`) and carries the comment: a
    job adds it to that ticket with the recording and `call_url` (the call's page), once
    (the recording's dedup key); no new ticket is opened. `topic`: the ticket's, as the
    portal said it (kept on the request for the outbox list).
    """
    number = _ticket_number(ticket_number)
    slug = topic if topic in TOPICS else UNCHOSEN_TOPIC
    call = draft_facts(connection, call_id)
    draft = replace(
        ticket_draft(
            call,
            calendar=calendar,
            topic=slug,
            description=describe_addition(call, number, call_url),
        ),
        priority="normal",
    )
    return outbox.put_request(
        connection,
        call_id=call.id,
        idempotency_key=call.call_sid,
        draft=_stored(call, draft, interrupted=call.interrupted, **{outbox.ADDITION_TO: number}),
        now=now,
    )


def _ticket_number(typed: str | None) -> str:
    """A ticket number as a caller or the console gave it, without spaces, `#`, `*`, `№`
    or dashes; InvalidInput unless 1 to 12 digits remain."""
    number = re.sub(r"[\s#*№-]", "", typed or "")
    if not _TICKET_NUMBER.fullmatch(number):
        raise InvalidInput(f"a ticket number is 1 to 12 digits, got {typed!r}")
    return number


def _read_back(session: Session, request_id: int) -> TicketRequest:
    """The request a Core statement just wrote, as the session's object read fresh."""
    return session.get_one(TicketRequest, request_id, populate_existing=True)


def describe_addition(call: DraftFacts, ticket_number: str, call_url: str) -> str:
    """The comment a repeat caller's addition leaves on their ticket, in Russian."""
    started = to_moscow(call.started_at)
    caller = classify(call.caller_e164 or call.caller_raw)
    source = f" с номера {caller.display}" if caller.e164 is not None else ""
    lines = [
        f"Дополнение к заявке №{ticket_number} по телефону: звонок {started:%d.%m.%Y} "
        f"в {started:%H:%M} (МСК){source}."
    ]
    if call.contact_name is not None:
        who = call.contact_name
        if call.organisation_name is not None:
            who += f", {call.organisation_name}"
        lines.append(f"Абонент: {who}.")
    lines.append("Дополнение — в приложенной записи.")
    lines.append(f"Звонок: {call_url}")
    return "\n".join(lines)


def add_recording(
    session: Session,
    call: Call,
    *,
    recording_sid: str,
    recording_url: str,
    kind: str,
    duration: int | None = None,
    now: datetime | None = None,
) -> TicketRequest | None:
    """Store a recording of the call; returns the call's ticket request, if any.

    Idempotent by recording SID. The description (or the first recording) becomes the
    call's main recording. When the ticket already exists the request's follow-ups become
    due again, so the attach job picks the new recording up: submit the returned request
    after the commit. `kind` is "description" or "voicemail".
    """
    session.flush()  # the call's row (and anything pending) written before Core reads it
    request_id = add_recording_to_row(
        session.connection(),
        call.id,
        recording_sid=recording_sid,
        recording_url=recording_url,
        kind=kind,
        duration=duration,
        now=now or system_clock(),
    )
    # One write path (`add_recording_to_row`): the session's copies of the two rows it
    # changed are read again when next used.
    session.expire(call, _RECORDING_COLUMNS)
    if request_id is None:
        return None
    return session.get(TicketRequest, request_id, populate_existing=True)


def _call_changes(
    main_sid: str | None,
    sids: list[str] | None,
    *,
    recording_sid: str,
    recording_url: str,
    kind: str,
    duration: int | None,
    at: datetime,
) -> dict[str, Any]:
    """The call's columns a new recording changes: the description (or the first
    recording) becomes the main one; every SID is listed."""
    changes: dict[str, Any] = {}
    if main_sid is None or kind == "description":
        changes.update(recording_sid=recording_sid, recording_url=recording_url)
        if duration is not None:
            changes["recording_duration"] = duration
    listed = list(sids or [])
    if recording_sid not in listed:
        # The retention purge deletes the local copies of every SID listed here.
        changes["recording_sids"] = [*listed, recording_sid]
    changes["updated_at"] = at
    return changes


def _request_changes(
    status: str,
    draft: dict[str, Any],
    *,
    main: bool,
    recording_sid: str,
    recording_url: str,
    at: datetime,
) -> dict[str, Any]:
    """The ticket request's columns a new recording changes: a pending request's draft
    carries the main recording; a sent one's follow-ups become due (the job attaches it)."""
    changes: dict[str, Any] = {}
    if status == outbox.PENDING:
        if main:
            changes["draft"] = {
                **draft,
                "recording_url": recording_url,
                outbox.RECORDING_SID: recording_sid,
            }
    else:
        changes["next_attempt_at"] = at  # follow-ups due: attach it to the ticket
    changes["updated_at"] = at
    return changes


_calls = cast(Table, Call.__table__)
_requests = cast(Table, TicketRequest.__table__)
# What `add_recording_to_row` may change under an ORM call: the columns `_call_changes`
# writes, and the path it appends to.
_RECORDING_COLUMNS = (
    "events",
    "recording_sid",
    "recording_url",
    "recording_duration",
    "recording_sids",
    "updated_at",
)
_CALL_RECORDINGS_READ = select(_calls.c.recording_sid, _calls.c.recording_sids).where(
    _calls.c.id == bindparam("call_id")
)
# The call's recordings read under its row lock (FOR NO KEY UPDATE, as `calls.store`
# locks a step's row; a no-op when the step holds it already): a job keeping a recording
# while a webhook keeps another must not write back a SID list without the other's SID
# (the retention purge deletes only the copies listed). SQLite: the event INSERT just
# before holds the database's write lock.
_CALL_RECORDINGS = {
    "sqlite": _CALL_RECORDINGS_READ,
    "postgresql": _CALL_RECORDINGS_READ.with_for_update(key_share=True),
}
_REQUEST_ID_OF_CALL = select(_requests.c.id).where(_requests.c.call_id == bindparam("call_id"))
_REQUEST_TO_LOCK = select(_requests.c.id, _requests.c.status, _requests.c.draft).where(
    _requests.c.call_id == bindparam("call_id")
)
# PostgreSQL: the request's row locked as `outbox.lock_request` locks it. SQLite: the step
# that calls this holds the database's write lock already (`calls.store.lock_call`).
_LOCK_REQUEST = {
    "sqlite": _REQUEST_TO_LOCK,
    "postgresql": _REQUEST_TO_LOCK.with_for_update(),
}
# No VALUES: the SET clause comes from the parameters' keys.
_UPDATE_REQUEST = update(_requests).where(_requests.c.id == bindparam("request_id_"))


def add_recording_to_row(
    connection: Connection,
    call_id: int,
    *,
    recording_sid: str,
    recording_url: str,
    kind: str,
    duration: int | None = None,
    now: datetime,
) -> int | None:
    """`add_recording` on the locked call's row with Core statements (no ORM call or
    request loaded and flushed): the same checks, event, columns and request changes.
    Returns the id of the call's ticket request (None without one): submit it after the
    commit."""
    check_recording(recording_sid, recording_url, kind)
    if recording_sid in recording_sids(connection, call_id):
        request_id: int | None = connection.scalar(_REQUEST_ID_OF_CALL, {"call_id": call_id})
        return request_id
    record_event(
        connection,
        call_id,
        RECORDING_EVENT,
        now,
        sid=recording_sid,
        url=recording_url,
        recording_kind=kind,
        duration=duration,
    )
    current = connection.execute(
        _CALL_RECORDINGS[connection.dialect.name], {"call_id": call_id}
    ).one()
    changes = _call_changes(
        current.recording_sid,
        current.recording_sids,
        recording_sid=recording_sid,
        recording_url=recording_url,
        kind=kind,
        duration=duration,
        at=now,
    )
    update_call(connection, call_id, changes)
    request = connection.execute(
        _LOCK_REQUEST[connection.dialect.name], {"call_id": call_id}
    ).first()
    if request is None:
        return None
    main = changes.get("recording_sid", current.recording_sid) == recording_sid
    values = _request_changes(
        request.status,
        request.draft,
        main=main,
        recording_sid=recording_sid,
        recording_url=recording_url,
        at=now,
    )
    connection.execute(_UPDATE_REQUEST, {**values, "request_id_": request.id})
    return int(request.id)


# ---------------------------------------------------------------- the draft


@dataclass(frozen=True, slots=True)
class ContractOf:
    """The caller's organisation's contract terms (`regulation.topics.ContractTerms`)."""

    id: int
    stage_one_days: int | None
    topic_days: dict[str, int] | None


@dataclass(frozen=True, slots=True)
class DraftFacts:
    """What a ticket draft says about a call: the call's columns, its contact's and
    organisation's names, the organisation's contract terms, whether the call has a
    recording, and the draft of the call's request so far (None without one) — read with
    one joined Core select (`draft_facts`) instead of the ORM call with its contact and
    organisation."""

    id: int
    call_sid: str
    line: str | None
    caller_raw: str | None
    caller_e164: str | None
    caller_said_name: str | None
    category: str | None
    topic: str | None
    product: str | None
    vehicles: list[str]
    state: dict[str, Any]
    recording_sid: str | None
    recording_url: str | None
    interrupted: bool
    started_at: datetime
    contact_id: int | None
    contact_name: str | None
    organisation_id: int | None
    organisation_name: str | None
    contract: ContractOf | None
    recorded: bool
    request_draft: dict[str, Any] | None


_contacts = cast(Table, Contact.__table__)
_organisations = cast(Table, Organisation.__table__)
_DRAFT_FACTS = (
    select(
        _calls.c.id,
        _calls.c.call_sid,
        _calls.c.line,
        _calls.c.caller_raw,
        _calls.c.caller_e164,
        _calls.c.caller_said_name,
        _calls.c.category,
        _calls.c.topic,
        _calls.c.product,
        _calls.c.vehicles,
        _calls.c.state,
        _calls.c.recording_sid,
        _calls.c.recording_url,
        _calls.c.interrupted,
        _calls.c.started_at,
        _contacts.c.id.label("contact_id"),
        _contacts.c.name.label("contact_name"),
        _organisations.c.id.label("organisation_id"),
        _organisations.c.name.label("organisation_name"),
        _organisations.c.stage_one_days,
        _organisations.c.topic_days,
        _requests.c.draft.label("request_draft"),
        # Every recording kept (`add_recording_to_row` lists each SID with its event).
        _calls.c.recording_sids,
    )
    .select_from(
        _calls.outerjoin(_contacts, _contacts.c.id == _calls.c.contact_id)
        .outerjoin(_organisations, _organisations.c.id == _calls.c.organisation_id)
        .outerjoin(_requests, _requests.c.call_id == _calls.c.id)
    )
    .where(_calls.c.id == bindparam("call_id"))
)


def draft_facts(connection: Connection, call_id: int) -> DraftFacts:
    """The call's `DraftFacts`, read in one query."""
    row = connection.execute(_DRAFT_FACTS, {"call_id": call_id}).one()
    contract = (
        ContractOf(row.organisation_id, row.stage_one_days, row.topic_days)
        if row.organisation_id is not None
        else None
    )
    return DraftFacts(
        id=row.id,
        call_sid=row.call_sid,
        line=row.line,
        caller_raw=row.caller_raw,
        caller_e164=row.caller_e164,
        caller_said_name=row.caller_said_name,
        category=row.category,
        topic=row.topic,
        product=row.product,
        vehicles=list(row.vehicles or ()),
        state=row.state if isinstance(row.state, dict) else {},
        recording_sid=row.recording_sid,
        recording_url=row.recording_url,
        interrupted=bool(row.interrupted),
        started_at=row.started_at,
        contact_id=row.contact_id,
        contact_name=row.contact_name,
        organisation_id=row.organisation_id,
        organisation_name=row.organisation_name,
        contract=contract,
        recorded=bool(row.recording_url) or bool(row.recording_sids),
        request_draft=row.request_draft,
    )


def ticket_draft(
    call: DraftFacts,
    *,
    calendar: BusinessCalendar,
    interrupted: bool = False,
    topic: str | None = None,
    duplicate_of: str | None = None,
    typed_number: str | None = None,
    description: str | None = None,
) -> TicketDraft:
    """What the portal gets for this call; `description` instead of `describe_call`'s
    (an addition's comment)."""
    slug, chosen = _topic_of(call, topic)
    vehicles = tuple(v for v in call.vehicles if v and v.strip())
    due = deadlines(
        slug,
        received=call.started_at,
        calendar=calendar,
        organisation=call.contract,
        vehicles=len(vehicles),
    )
    contact = call.contact_id is not None
    return TicketDraft(
        topic=slug,
        description=description
        if description is not None
        else describe_call(
            call,
            topic=slug,
            chosen=chosen,
            interrupted=interrupted,
            duplicate_of=duplicate_of,
            typed_number=typed_number,
        ),
        idempotency_key=call.call_sid,
        product=_product_title(call.product),
        vehicles=vehicles,
        contact_name=call.contact_name if contact else _blank_to_none(call.caller_said_name),
        contact_id=call.contact_id,
        organisation_name=call.organisation_name,
        organisation_id=call.organisation_id,
        caller=call.caller_e164 or typed_callback_number(call) or _blank_to_none(call.caller_raw),
        call_ref=call.call_sid,
        recording_url=call.recording_url,
        priority=TOPIC_PRIORITIES.get(slug, "normal"),
        first_stage_due=due.first_stage_due,
        resolution_due=due.resolution_due,
    )


def describe_call(
    call: DraftFacts,
    *,
    topic: str,
    chosen: bool = True,
    interrupted: bool = False,
    duplicate_of: str | None = None,
    typed_number: str | None = None,
) -> str:
    """The ticket's description, in Russian, from what the caller chose and said."""
    started = to_moscow(call.started_at)
    caller = classify(call.caller_e164 or call.caller_raw)
    lines: list[str] = []
    if duplicate_of:
        lines.append(
            f"Повторный звонок по заявке №{duplicate_of}: заявка продублирована звонком "
            "в техническую поддержку, как требует регламент для критических сбоев."
        )
    if typed_number:
        lines.append(
            f"Абонент набрал номер заявки №{typed_number}: среди заявок его организации "
            "такой нет, поэтому открыта новая заявка."
        )
    if caller.e164 is not None:
        source = f" с номера {caller.display}"
    elif caller.kind == "withheld":
        source = ", номер абонента скрыт"
    else:
        source = f", номер абонента: {caller.display}"
    lines.append(
        f"Звонок на линию {_line_label(call.line)} {started:%d.%m.%Y} в {started:%H:%M} (МСК)"
        f"{source}."
    )
    callback = typed_callback_number(call)
    if callback is not None:
        lines.append(
            f"Номер для обратного звонка (набран абонентом): {classify(callback).display}."
        )
    if call.contact_name is not None:
        who = call.contact_name
        if call.organisation_name is not None:
            who += f", {call.organisation_name}"
        lines.append(f"Абонент: {who}.")
    elif call.caller_said_name and call.caller_said_name.strip():
        lines.append(
            f"Абонент не найден в справочнике, представился: «{call.caller_said_name.strip()}»."
        )
    else:
        lines.append("Абонент не найден в справочнике.")
    title = TOPICS[topic].title
    if chosen:
        lines.append(f"Тема: {title}.")
    else:
        lines.append(
            f"Тема: абонент не успел её выбрать; заявка заведена как «{title}» — "
            "уточните тему у абонента."
        )
    lines.append(f"Продукт: {_product_title(call.product) or 'не указан'}.")
    vehicles = [v for v in call.vehicles if v and v.strip()]
    if vehicles:
        lines.append("ТС: " + ", ".join(vehicles) + ".")
    recorded = call.recorded
    if topic == CONSULTATION_TOPIC and call.category == "consultation":
        # Only a consultation call becomes a callback ticket; a new problem filed under the
        # consultation topic was described by the caller, not left waiting. The ticket may
        # be opened before the caller chose between a message and the call-back queue: a
        # message is mentioned only once there is one.
        lines.append(
            "Обратный звонок: абонент не дождался специалиста"
            + (" и оставил сообщение." if recorded else "; перезвоните ему.")
        )
    if recorded:
        lines.append("Описание проблемы — в записи звонка, приложенной к заявке.")
    if interrupted:
        lines.append(
            "Звонок прерван до конца меню: заявка открыта с тем, что абонент успел сообщить."
        )
    return "\n".join(lines)


def typed_callback_number(call: Call | DraftFacts) -> str | None:
    """The number a withheld caller typed to be called back on (E.164), if any."""
    state = call.state if isinstance(call.state, dict) else {}
    number = state.get(CALLBACK_NUMBER_KEY)
    return number if isinstance(number, str) and number else None


def remember_callback_number(call: Call, number: str) -> None:
    """Keep `number` (E.164) as the withheld caller's callback number, where
    `typed_callback_number` reads it: typed at routing's call-back offer, after the IVR
    (which asks before a consultation) is done with the call."""
    state = dict(call.state) if isinstance(call.state, dict) else {}
    state[CALLBACK_NUMBER_KEY] = number
    call.state = state  # a new dict: the JSON column sees the change


def _stored(
    call: DraftFacts, draft: TicketDraft, *, interrupted: bool, **extra: Any
) -> dict[str, Any]:
    stored = outbox.draft_to_json(
        draft,
        **{
            outbox.RECEIVED_AT: call.started_at.isoformat(),
            "interrupted": interrupted,
            **extra,
        },
    )
    if call.recording_sid and draft.recording_url:
        stored[outbox.RECORDING_SID] = call.recording_sid
    return stored


def _topic_of(call: DraftFacts, forced: str | None) -> tuple[str, bool]:
    """(topic slug, chosen by the caller?)."""
    if forced is not None:
        return forced, True
    if call.topic:
        if call.topic not in TOPICS:
            raise InvalidInput(f"call {call.call_sid} has an unknown topic {call.topic!r}")
        return call.topic, True
    category = call.category
    if category is not None and category in CATEGORY_TOPICS:
        # A consultation's topic: its callback ticket (routing decides when there is one).
        return CATEGORY_TOPICS[Category(category)], True
    if category is None or category in UNTICKETED_CATEGORIES:
        raise NotTicketable(
            f"call {call.call_sid} has nothing to ticket (category {category!r}, no topic): "
            "it is logged for a callback instead"
        )
    return UNCHOSEN_TOPIC, False


def _product_title(product: str | None) -> str | None:
    if not product:
        return None
    if product in PRODUCTS:
        return PRODUCTS[product].title
    titles = {p.title for p in PRODUCTS.values()}
    return product if product in titles else None


@functools.lru_cache(maxsize=64)
def _line_label(line: str | None) -> str:
    """ "8 (800) 250-60-77": the line as people write it."""
    if not line:
        return "(неизвестна)"
    try:
        number = phonenumbers.parse(line, "RU")
    except phonenumbers.NumberParseException:
        return line
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))


def _blank_to_none(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None
