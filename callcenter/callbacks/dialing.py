"""«Перезвонить»: ring the specialist's own phone, bridge the client once they press 1.

    start_callback        the console's button: Twilio's Calls API rings the specialist
                          (`Telephony.place_call`); their leg is logged on the call
    specialist_answered   their phone is answered: "press 1 to be connected" (`<Gather>`)
    specialist_pressed    1 → `<Dial>` the client from the line they called, recorded;
                          anything else → goodbye, the item stays theirs
    bridge_ended          the `<Dial>`'s action: how the client leg ended
    leg_status            status callbacks of either leg: the leg's state, never backwards

Twilio's requests name the item in the path (`/webhooks/callbacks/<item>/…`) and are
believed only with the CallSid of the specialist's leg Twilio gave us for that item.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.callbacks.queue import DIALING, TAKEN, get_item, number_to_call
from callcenter.calls.store import record_event
from callcenter.db import transaction
from callcenter.db.models import Call, CallbackItem, DialLeg, Staff
from callcenter.errors import InvalidInput, MalformedWebhook, TelephonyError
from callcenter.ivr.reply import Dial, Gather, Hangup, Number, Reply, Say
from callcenter.ivr.twiml import absolute
from callcenter.ivr.webhook_params import require
from callcenter.telephony.client import Telephony
from callcenter.tickets.intake import add_recording

log = logging.getLogger(__name__)

CALLBACK_PREFIX = "/webhooks/callbacks"
SPECIALIST = "callback_specialist"
CLIENT = "callback_client"
# Seconds the specialist's phone and then the client's rings.
SPECIALIST_RING_SECONDS = 30
CLIENT_RING_SECONDS = 30
LEG_STATUS_EVENTS = "initiated ringing answered completed"

# A leg's life, in order: a status callback never moves a leg back (Twilio: "status
# callback requests are HTTP requests and are therefore subject to differences in
# latency ... your application should be prepared to receive them out of order").
_LEG_RANK = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3, "answered": 3}
LEG_TERMINAL = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

PROMPT = "Перезвон клиенту из очереди. {who}Нажмите 1, чтобы соединиться с клиентом."
NO_KEY = "Соединение отменено. Перезвон остаётся за вами в консоли."
CLIENT_ENDED = "Разговор завершён. Отметьте результат в консоли."
CLIENT_MISSED = "Клиент не ответил. Отметьте результат в консоли."
GONE = "Этот перезвон уже не ждёт соединения."


def callback_path(item_id: int, action: str) -> str:
    return f"{CALLBACK_PREFIX}/{item_id}/{action}"


def specialist_phone(session: Session, user_name: str) -> str | None:
    """The console user's own phone: the roster's person whose key or name is the user's
    name (the first of their phones)."""
    wanted = user_name.strip().casefold()
    for person in session.scalars(select(Staff).where(Staff.active.is_(True))):
        if wanted in (person.key.casefold(), person.name.casefold()) and person.phones:
            return str(person.phones[0])
    return None


def _next_position(session: Session, call_id: int) -> int:
    top = session.scalar(select(func.max(DialLeg.position)).where(DialLeg.call_id == call_id))
    return int(top or 0) + 1


@dataclass(frozen=True)
class Started:
    call_sid: str
    to: str


def start_callback(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    item_id: int,
    *,
    by: str,
    now: datetime,
    default_line: str,
    public_base_url: str | None,
) -> Started:
    """Ring `by`'s own phone for item `item_id` (theirs: taken first). The item is
    `dialing` from before Twilio is asked; a refusal puts it back (`TelephonyError`)."""
    if not public_base_url:
        # Twilio fetches the specialist's TwiML from an absolute URL of ours.
        raise InvalidInput("не задан PUBLIC_BASE_URL: Twilio не сможет соединить звонок")
    with transaction(sessions) as session:
        item = get_item(session, item_id, for_update=True)
        if item.taken_by != by or item.status not in (TAKEN, DIALING):
            raise InvalidInput("сначала возьмите перезвон себе («Беру»)")
        phone = specialist_phone(session, by)
        if phone is None:
            raise InvalidInput(
                f"в графике дежурств нет телефона сотрудника «{by}»: добавьте его в график "
                "(ключ или имя как у пользователя консоли)"
            )
        call = session.get(Call, item.call_id)
        assert call is not None
        line = call.line or default_line
        item.status = DIALING
        item.bridge_status = None
        item.updated_at = now
    try:
        sid = telephony.place_call(
            to=phone,
            from_=line,
            url=absolute(callback_path(item_id, "specialist"), public_base_url),
            status_callback=absolute(callback_path(item_id, "status"), public_base_url),
            timeout=SPECIALIST_RING_SECONDS,
        )
    except TelephonyError as exc:
        with transaction(sessions) as session:
            item = get_item(session, item_id, for_update=True)
            item.status = TAKEN
            item.updated_at = now
            record_event(session, item.call_id, "callback_dial_failed", now, by=by, error=str(exc))
        raise
    with transaction(sessions) as session:
        item = get_item(session, item_id, for_update=True)
        item.specialist_call_sid = sid
        session.add(
            DialLeg(
                call_id=item.call_id,
                position=_next_position(session, item.call_id),
                staff_name=by,
                number=phone,
                child_call_sid=sid,
                started_at=now,
                result="queued",
                purpose=SPECIALIST,
            )
        )
        record_event(session, item.call_id, "callback_dialing", now, by=by, to=phone, sid=sid)
    return Started(sid, phone)


# ---------------------------------------------------------------- Twilio's side


@dataclass(frozen=True)
class CallbackWebhook:
    """One of Twilio's requests about a call-back leg, read at the boundary."""

    call_sid: str
    item_id: int
    parent_call_sid: str | None = None
    digits: str | None = None
    call_status: str | None = None
    dial_call_status: str | None = None
    dial_call_sid: str | None = None
    recording_sid: str | None = None
    recording_url: str | None = None
    recording_duration: int | None = None

    @classmethod
    def from_form(cls, form: Mapping[str, str], *, item: str) -> CallbackWebhook:
        require(form, "CallSid")
        if not (item.isascii() and item.isdigit() and len(item) < 10):
            raise MalformedWebhook(f"not a call-back item: {item[:20]!r}")

        def text(name: str) -> str | None:
            value = (form.get(name) or "").strip()
            return value[:64] or None

        duration = text("RecordingDuration")
        return cls(
            call_sid=form["CallSid"].strip(),
            item_id=int(item),
            parent_call_sid=text("ParentCallSid"),
            digits=text("Digits"),
            call_status=text("CallStatus"),
            dial_call_status=text("DialCallStatus"),
            dial_call_sid=text("DialCallSid"),
            recording_sid=text("RecordingSid"),
            recording_url=(form.get("RecordingUrl") or "").strip() or None,
            recording_duration=int(duration) if duration and duration.isdigit() else None,
        )


def _item_of(
    session: Session, event: CallbackWebhook, *, child: bool = False
) -> CallbackItem | None:
    """The item, if this request comes from its specialist leg — or, `child`, from the
    client leg that leg dialled (its ParentCallSid) — anything else is refused."""
    item = session.get(CallbackItem, event.item_id, with_for_update=True)
    leg_sid = event.parent_call_sid if child else event.call_sid
    if item is None or item.specialist_call_sid is None or item.specialist_call_sid != leg_sid:
        log.warning(
            "call-back request for item %s from unknown leg %s", event.item_id, event.call_sid
        )
        return None
    return item


def _leg(session: Session, call_id: int, purpose: str, sid: str | None = None) -> DialLeg | None:
    query = select(DialLeg).where(DialLeg.call_id == call_id, DialLeg.purpose == purpose)
    if sid is not None:
        query = query.where(DialLeg.child_call_sid == sid)
    return session.scalars(query.order_by(DialLeg.id.desc()).limit(1)).first()


def move_leg(leg: DialLeg, status: str, at: datetime) -> bool:
    """Set the leg's state from a status callback unless that would move it back; True
    when it moved."""
    if leg.result in LEG_TERMINAL:
        return False
    if status not in LEG_TERMINAL and _LEG_RANK.get(status, 0) <= _LEG_RANK.get(leg.result, 0):
        return False
    leg.result = "in-progress" if status == "answered" else status
    if status in ("in-progress", "answered") and leg.answered_at is None:
        leg.answered_at = at
    if status in LEG_TERMINAL:
        leg.ended_at = at
    return True


def specialist_answered(
    sessions: sessionmaker[Session], event: CallbackWebhook, *, now: datetime
) -> Reply:
    with transaction(sessions) as session:
        item = _item_of(session, event)
        if item is None or item.status != DIALING:
            return (Say(GONE), Hangup())
        call = session.get(Call, item.call_id)
        assert call is not None
        who = call.contact.name if call.contact else call.caller_said_name
        # Twilio asks for this TwiML once the specialist's phone is answered.
        leg = _leg(session, item.call_id, SPECIALIST, item.specialist_call_sid)
        if leg is not None:
            move_leg(leg, "in-progress", now)
    prompt = PROMPT.format(who=f"{who}. " if who else "")
    return (
        Gather(
            action=callback_path(event.item_id, "answer"),
            prompt=(Say(prompt),),
            speech=False,
            num_digits=1,
            timeout=8,
        ),
        Say(NO_KEY),
        Hangup(),
    )


def specialist_pressed(
    sessions: sessionmaker[Session], event: CallbackWebhook, *, now: datetime, default_line: str
) -> Reply:
    with transaction(sessions) as session:
        item = _item_of(session, event)
        if item is None or item.status != DIALING:
            return (Say(GONE), Hangup())
        call = session.get(Call, item.call_id)
        assert call is not None
        # A withheld caller's item is in the queue only with the number they typed.
        client = number_to_call(call)
        assert client is not None
        record_event(
            session, call, "callback_key", now, digits=event.digits, by=item.taken_by, item=item.id
        )
        if event.digits != "1":
            return (Say(NO_KEY), Hangup())
        session.add(
            DialLeg(
                call_id=call.id,
                position=_next_position(session, call.id),
                staff_name=call.contact.name if call.contact else None,
                number=client,
                started_at=now,
                result="queued",
                purpose=CLIENT,
            )
        )
        line = call.line or default_line
    return (
        Dial(
            (
                Number(
                    client,
                    status_callback=callback_path(event.item_id, "client-status"),
                    status_events=LEG_STATUS_EVENTS,
                ),
            ),
            action=callback_path(event.item_id, "bridge"),
            timeout=CLIENT_RING_SECONDS,
            caller_id=line,
            recording_status_callback=callback_path(event.item_id, "recording"),
        ),
    )


def bridge_ended(
    sessions: sessionmaker[Session], event: CallbackWebhook, *, now: datetime
) -> Reply:
    status = event.dial_call_status or "failed"
    with transaction(sessions) as session:
        item = _item_of(session, event)
        if item is None:
            return (Hangup(),)
        item.bridge_status = status
        item.updated_at = now
        leg = _leg(session, item.call_id, CLIENT)
        if leg is not None:
            if leg.child_call_sid is None and event.dial_call_sid:
                leg.child_call_sid = event.dial_call_sid
            move_leg(leg, status, now)
        record_event(session, item.call_id, "callback_bridge", now, status=status, item=item.id)
    return (Say(CLIENT_ENDED if status == "completed" else CLIENT_MISSED), Hangup())


def leg_status(
    sessions: sessionmaker[Session], event: CallbackWebhook, *, purpose: str, now: datetime
) -> bool:
    """A status callback of the specialist's leg (`purpose` SPECIALIST, CallSid = theirs)
    or of the client's (`CLIENT`: the child call's CallSid, the specialist's leg as
    ParentCallSid). True when the leg moved. When the specialist's leg ends, a `dialing`
    item is theirs again, for a result or a new try."""
    status = event.call_status
    if status is None:
        return False
    with transaction(sessions) as session:
        item = _item_of(session, event, child=purpose == CLIENT)
        if item is None:
            return False
        leg = _leg(session, item.call_id, purpose)
        if leg is None:
            return False
        if purpose == CLIENT and leg.child_call_sid is None:
            leg.child_call_sid = event.call_sid
        moved = move_leg(leg, status, now)
        record_event(
            session,
            item.call_id,
            "callback_leg_status" if moved else "callback_leg_status_ignored",
            now,
            step=purpose,
            status=status,
        )
        if purpose == SPECIALIST and status in LEG_TERMINAL and item.status == DIALING:
            item.status = TAKEN
            item.updated_at = now
        return moved


def recording_ready(
    sessions: sessionmaker[Session], event: CallbackWebhook, *, now: datetime
) -> int | None:
    """The bridged conversation's recording: one of the call's recordings. Returns the
    ticket request whose follow-ups (attaching it) are due, to submit after the commit."""
    if event.recording_sid is None or event.recording_url is None:
        raise MalformedWebhook("a recording callback without RecordingSid / RecordingUrl")
    with transaction(sessions) as session:
        item = _item_of(session, event)
        if item is None:
            return None
        call = session.get(Call, item.call_id)
        assert call is not None
        request = add_recording(
            session,
            call,
            recording_sid=event.recording_sid,
            recording_url=event.recording_url,
            kind="callback",
            duration=event.recording_duration,
            now=now,
        )
        return request.id if request is not None and request.ticket_number else None
