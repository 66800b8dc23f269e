"""The call-back queue: which calls need one, their items, taking and results.

`refresh_queue` turns every finished call that needs a call back into an item (one per
call, safe to run at any time and from any process: the unique `call_id` settles races).
The queue is read oldest first. Every action writes one event on the call's path with who
did it (the audit line the call page shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from callcenter.calls.store import record_event
from callcenter.db.models import Call, CallbackItem, DialLeg, TicketRequest
from callcenter.errors import InvalidInput
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.tickets.intake import typed_callback_number
from callcenter.vocabulary import URGENT_CATEGORIES, Category, Outcome

# Item statuses.
OPEN = "open"
TAKEN = "taken"
DIALING = "dialing"
DONE = "done"
WAITING = (OPEN, TAKEN, DIALING)

# Why a call needs a call back, most pressing first.
URGENT_MISSED = "urgent_missed"
URGENT_NOT_RUNG = "urgent_not_rung"
TICKET_FAILED = "ticket_failed"
VOICEMAIL = "voicemail"
ABANDONED = "abandoned"
NOT_SERVED = "not_served"
# The caller asked for it: a consultation nobody answered, 1 pressed at the offer
# («нажмите 1 — мы перезвоним в порядке очереди»). Made during the call, not by the rules.
REQUESTED = "requested"

# Results a specialist records.
REACHED = "reached"
NOT_REACHED = "not_reached"
WRONG_NUMBER = "wrong_number"
RESULTS = (REACHED, NOT_REACHED, WRONG_NUMBER)

# Consultations that reached nobody and left no message (routing's words).
NOT_SERVED_ROUTING = ("no_answer", "caller_hung_up", "nobody_accepted")

# Calls older than this are not turned into items (a new installation's history).
LOOKBACK = timedelta(days=14)

MAX_NOTE_LENGTH = 2000


def _chain_leg(*conds: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(
        select(DialLeg.id).where(DialLeg.call_id == Call.id, DialLeg.purpose == "chain", *conds)
    )


def _urgent_missed() -> ColumnElement[bool]:
    """Urgent; people were rung and nobody accepted."""
    return and_(
        Call.category.in_(URGENT_CATEGORIES),
        _chain_leg(),
        not_(_chain_leg(DialLeg.result == "accepted")),
    )


def _urgent_not_rung() -> ColumnElement[bool]:
    """Urgent, over before anybody was rung (hung up in the IVR)."""
    return and_(Call.category.in_(URGENT_CATEGORIES), not_(_chain_leg()))


def _ticket_failed() -> ColumnElement[bool]:
    return exists(
        select(TicketRequest.id).where(
            TicketRequest.call_id == Call.id, TicketRequest.status == "failed"
        )
    )


def _voicemail() -> ColumnElement[bool]:
    return Call.routing_outcome == "voicemail"


def _abandoned() -> ColumnElement[bool]:
    return or_(Call.category == Category.ABANDONED, Call.outcome == Outcome.ABANDONED)


def _not_served() -> ColumnElement[bool]:
    return and_(
        Call.category == Category.CONSULTATION, Call.routing_outcome.in_(NOT_SERVED_ROUTING)
    )


REASON_RULES = (
    (URGENT_MISSED, _urgent_missed),
    (URGENT_NOT_RUNG, _urgent_not_rung),
    (TICKET_FAILED, _ticket_failed),
    (VOICEMAIL, _voicemail),
    (ABANDONED, _abandoned),
    (NOT_SERVED, _not_served),
)


def needs_callback() -> ColumnElement[bool]:
    """A finished call with a number to call that left the client waiting for us, and
    nobody has called back yet: the condition that makes a call a queue item."""
    return and_(
        Call.outcome != Outcome.IN_PROGRESS,
        Call.caller_e164.is_not(None),
        Call.called_back_at.is_(None),
        or_(*(rule() for _, rule in REASON_RULES)),
    )


def callback_due(calendar: BusinessCalendar, since: datetime, minutes: int) -> datetime:
    """`minutes` working minutes after `since`: counted inside the working windows (a call
    at night or on a holiday is due that long after the next opening)."""
    left = timedelta(minutes=minutes)
    at = calendar.counting_start(since)
    for _ in range(800):
        window = calendar.window(at.date())
        if window is None or at >= window[1]:
            at = calendar.next_window_start(at + timedelta(seconds=1))
            continue
        at = max(at, window[0])
        if at + left <= window[1]:
            return at + left
        left -= window[1] - at
        at = window[1]
    raise ValueError("no working window found within two years")


def refresh_queue(
    session: Session, *, now: datetime, calendar: BusinessCalendar, sla_minutes: int
) -> int:
    """Add an item for every call that needs a call back and has none; how many were
    added. The caller commits."""
    has_item = exists(select(CallbackItem.id).where(CallbackItem.call_id == Call.id))
    reasons = [(name, rule()) for name, rule in REASON_RULES]
    rows = session.execute(
        select(Call.id, Call.started_at, *(cond for _, cond in reasons)).where(
            needs_callback(), not_(has_item), Call.started_at >= now - LOOKBACK
        )
    ).all()
    added = 0
    for row in rows:
        call_id, started_at, *flags = row
        reason = next(name for (name, _), flag in zip(reasons, flags, strict=True) if flag)
        try:
            with session.begin_nested():
                session.add(
                    CallbackItem(
                        call_id=call_id,
                        reason=reason,
                        status=OPEN,
                        waiting_since=started_at,
                        due_at=callback_due(calendar, started_at, sla_minutes),
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
            added += 1
        except IntegrityError:
            continue  # another process added it first
    return added


@dataclass(frozen=True)
class QueueFilter:
    """Which items a list shows: waiting ones (default) or the finished ones too."""

    include_done: bool = False
    mine: str | None = None


def list_items(session: Session, which: QueueFilter = QueueFilter()) -> Sequence[CallbackItem]:
    """Items oldest first, with their calls (and the calls' contacts) loaded."""
    query = (
        select(CallbackItem)
        .options(
            selectinload(CallbackItem.call).selectinload(Call.contact),
            selectinload(CallbackItem.call).selectinload(Call.organisation),
            selectinload(CallbackItem.call).selectinload(Call.ticket_request),
        )
        .order_by(CallbackItem.waiting_since, CallbackItem.id)
    )
    if not which.include_done:
        query = query.where(CallbackItem.status.in_(WAITING))
    if which.mine is not None:
        query = query.where(CallbackItem.taken_by == which.mine)
    return session.scalars(query).all()


def queue_position(session: Session, waiting_since: datetime) -> int:
    """Where a client waiting since `waiting_since` stands: 1 + the waiting items older."""
    older = session.scalar(
        select(func.count(CallbackItem.id)).where(
            CallbackItem.status.in_(WAITING), CallbackItem.waiting_since < waiting_since
        )
    )
    return int(older or 0) + 1


def number_to_call(call: Call) -> str | None:
    """The number a call back dials (E.164): the caller's own, or the one a withheld
    caller typed for it."""
    return call.caller_e164 or typed_callback_number(call)


def request_callback(
    session: Session, call: Call, *, now: datetime, calendar: BusinessCalendar, sla_minutes: int
) -> CallbackItem:
    """The caller asked to be called back in turn: the call's item (reason `REQUESTED`),
    waiting since the call began, as every item does. Idempotent: a call that has its item
    keeps it. The caller holds the call's row lock (the step cycle), so a duplicated
    webhook of the same call waits and then finds the item; `refresh_queue` never makes
    items of calls still in progress."""
    existing = session.scalar(select(CallbackItem).where(CallbackItem.call_id == call.id))
    if existing is not None:
        return existing
    item = CallbackItem(
        call_id=call.id,
        reason=REQUESTED,
        status=OPEN,
        waiting_since=call.started_at,
        due_at=callback_due(calendar, call.started_at, sla_minutes),
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(item)
    session.flush()
    return item


def is_overdue(item: CallbackItem, now: datetime) -> bool:
    return item.status in WAITING and item.due_at <= now


def overdue_at(now: datetime) -> ColumnElement[bool]:
    """`is_overdue` as a condition on `callback_items`."""
    return and_(CallbackItem.status.in_(WAITING), CallbackItem.due_at <= now)


def get_item(session: Session, item_id: int, *, for_update: bool = False) -> CallbackItem:
    query = select(CallbackItem).where(CallbackItem.id == item_id)
    if for_update:
        query = query.with_for_update()
    item = session.scalar(query)
    if item is None:
        raise InvalidInput(f"нет такого перезвона: {item_id}")
    return item


def take(session: Session, item_id: int, *, by: str, now: datetime) -> CallbackItem:
    """`by` owns the item from now on («беру»). Refused when someone else has it or it is
    finished."""
    item = get_item(session, item_id, for_update=True)
    if item.status == DONE:
        raise InvalidInput("перезвон уже завершён")
    if item.taken_by is not None and item.taken_by != by:
        raise InvalidInput(f"перезвон уже взял {item.taken_by}")
    if item.taken_by == by:
        return item
    item.status = TAKEN
    item.taken_by = by
    item.taken_at = now
    item.updated_at = now
    record_event(session, item.call_id, "callback_taken", now, by=by, item=item.id)
    return item


def release(session: Session, item_id: int, *, by: str, now: datetime) -> CallbackItem:
    """The owner gives the item back to the queue (nothing attempted)."""
    item = get_item(session, item_id, for_update=True)
    _check_owner(item, by)
    item.status = OPEN
    item.taken_by = None
    item.taken_at = None
    item.updated_at = now
    record_event(session, item.call_id, "callback_released", now, by=by, item=item.id)
    return item


def _check_owner(item: CallbackItem, by: str) -> None:
    if item.status == DONE:
        raise InvalidInput("перезвон уже завершён")
    if item.taken_by != by:
        raise InvalidInput("сначала возьмите перезвон себе («Беру»)")


def record_result(
    session: Session, item_id: int, *, result: str, note: str, by: str, now: datetime
) -> CallbackItem:
    """The owner's result of an attempt. Reached or a wrong number: the item is done (the
    call is marked called back when reached). Not reached: back to the queue, the attempt
    counted, the note kept."""
    if result not in RESULTS:
        raise InvalidInput(f"неизвестный результат: {result}")
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(f"заметка длиннее {MAX_NOTE_LENGTH} символов")
    item = get_item(session, item_id, for_update=True)
    _check_owner(item, by)
    item.attempts += 1
    item.result = result
    item.note = note or None
    item.updated_at = now
    item.specialist_call_sid = None
    if result == NOT_REACHED:
        item.status = OPEN
        item.taken_by = None
        item.taken_at = None
    else:
        item.status = DONE
        item.done_at = now
        item.done_by = by
        if result == REACHED:
            call = session.get(Call, item.call_id)
            assert call is not None
            if call.called_back_at is None:
                call.called_back_at = now
                call.called_back_by = by
                call.updated_at = now
    record_event(
        session,
        item.call_id,
        "callback_result",
        now,
        by=by,
        item=item.id,
        result=result,
        attempt=item.attempts,
        note=note or None,
    )
    return item


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def item_json(item: CallbackItem, *, now: datetime) -> dict[str, object]:
    """One item as `/api/callbacks` gives it (times in UTC, ISO 8601)."""
    call = item.call
    request = call.ticket_request
    return {
        "id": item.id,
        "call_sid": call.call_sid,
        "caller": call.caller_e164,
        "contact": call.contact.name if call.contact is not None else call.caller_said_name,
        "category": call.category,
        "reason": item.reason,
        "status": item.status,
        "waiting_since": _iso(item.waiting_since),
        "due_at": _iso(item.due_at),
        "overdue": is_overdue(item, now),
        "taken_by": item.taken_by,
        "taken_at": _iso(item.taken_at),
        "attempts": item.attempts,
        "result": item.result,
        "note": item.note,
        "bridge_status": item.bridge_status,
        "done_at": _iso(item.done_at),
        "done_by": item.done_by,
        "ticket_number": request.ticket_number if request is not None else None,
    }
