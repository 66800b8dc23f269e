"""On-duty routing: the dial plans and the escalation chain, as a state machine on the call.

Once the IVR decides a caller needs a person it redirects the call here; from then on
every Twilio request of the call (dial results, the whisper on each staff phone, its key
press, each leg's status callbacks, the voicemail) goes through one of the functions
below, which read and write the call row only. All per-call state lives in
`Call.routing_state` (a `RoutingState`; routing is its only writer), so any web process can
serve any step:

    kind      "consultation" or "urgent"
    steps     the frozen plan: steps[i] is one <Dial> of `PlannedLeg`s (leg, key, name,
              number, sms). `leg` is the DialLeg position, unique within the call.
    step      the step being dialled (1-based)
    phase     dialing → done (a leg accepted) | voicemail → done
    accepted  the accepted leg's position, once someone pressed 1

Consultations: during working hours one step rings every consultation specialist on
duty at once (the first to accept takes the call); after hours the duty specialist.
Urgent calls (critical server failure, stolen vehicle): one leg per step, each ringing
`settings.dial_leg_timeout` seconds, in chain order, then the head of support.
Nobody in the roster: the duty phone from the settings; with none set either, nobody is
dialled and the caller leaves a voicemail at once (ticket, flag), never a dead end.

Acceptance: every leg first hears a whisper (`<Number url>`: topic, ticket, client,
"press 1") and the call is bridged only after the key press. A mobile's voicemail
"answers" a call too, and after the whisper ends in `<Hangup>` Twilio reports the Dial
with `DialCallStatus=completed` (the leg was answered, then ended) or, for a leg that
never answered, `no-answer`/`busy`/`failed`. None of these tells a person from a
voicemail, so the chain never trusts `DialCallStatus` for acceptance: only the whisper's
own key press, stored on the leg (`DialLeg.result = "accepted"`), counts.

Idempotency: a dial result names its step in the URL (`?step=N`); a duplicated or
replayed one, or one for a step that is no longer current, changes nothing and gets the
current state's TwiML again. Leg status callbacks only log (they never advance the chain)
and are applied so that a duplicate or late one changes nothing.

Nobody accepted (urgent): the call is flagged for the supervisor, every person in the
chain gets one SMS alert (keyed per call and number in `SmsMessage`), and the caller is
told so and may leave a voicemail, attached to the ticket. An unanswered consultation
becomes a callback ticket (topic consultation) at once; a voicemail, if left, is attached.
During working hours the caller is first offered the call-back queue («нажмите 1 — вы
третий в очереди», `callback_answer`): 1 makes the call's queue item and ends the call
(a withheld caller types the number instead, when the IVR got none); no key is the
voicemail as before. The offered place is kept in the state, so a replayed request hears
the same words and a duplicated answer finds the one item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Connection, Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from callcenter.callbacks.queue import number_to_call, queue_position, request_callback
from callcenter.calls.store import TERMINAL_STATUSES, CallColumns, record_event, update_call
from callcenter.db.models import Call, Contact, DialLeg, Organisation, TicketRequest
from callcenter.phones import callback_number
from callcenter.roster.on_duty import OnDuty, Person, on_duty
from callcenter.tickets.intake import (
    add_recording_to_row,
    open_ticket_request_on_row,
    remember_callback_number,
)
from callcenter.vocabulary import CONSULTATION_TOPIC, Route

if TYPE_CHECKING:
    from callcenter.regulation.calendar import BusinessCalendar
    from callcenter.settings import Settings

log = logging.getLogger(__name__)

CONSULTATION = Route.CONSULTATION
URGENT = Route.URGENT
KINDS = (CONSULTATION, URGENT)

DIALING = "dialing"
VOICEMAIL = "voicemail"
DONE = "done"
# How a routing ends when the caller took the call-back offer (RoutingState.end).
CALLBACK_BOOKED = "callback"
# A withheld caller may mistype the number once; the second mistake is the voicemail.
CALLBACK_NUMBER_TRIES = 2

# Twilio rings at most ten <Number>s of one <Dial> at once.
MAX_SIMULTANEOUS = 10
VOICEMAIL_MAX_SECONDS = 180

# DialLeg.result values.
RINGING = "ringing"
ACCEPTED = "accepted"
DECLINED = "declined"
NOT_ACCEPTED = "not-accepted"  # answered (a person or a voicemail) but 1 was never pressed
NO_ANSWER = "no-answer"
BUSY = "busy"
FAILED = "failed"
CANCELED = "canceled"

# Call.routing_outcome values.
OUTCOME_CONNECTED = "connected"
OUTCOME_NOBODY_ACCEPTED = "nobody_accepted"
OUTCOME_NO_ANSWER = "no_answer"
OUTCOME_VOICEMAIL = "voicemail"
OUTCOME_CALLER_HUNG_UP = "caller_hung_up"

# Seconds to wait before each try at sending the chain alerts.

# What a leg's own final status says, when the leg was neither accepted nor declined.
_LEG_RESULT = {
    "completed": NOT_ACCEPTED,
    "answered": NOT_ACCEPTED,
    "in-progress": NOT_ACCEPTED,
    "no-answer": NO_ANSWER,
    "busy": BUSY,
    "failed": FAILED,
    "canceled": CANCELED,
}
_FINAL_RESULTS = frozenset({ACCEPTED, DECLINED, NOT_ACCEPTED, NO_ANSWER, BUSY, FAILED, CANCELED})


# ---------------------------------------------------------------- plans


@dataclass(frozen=True)
class Target:
    """One number to ring, and whose it is (None for the settings' duty phone)."""

    staff_key: str | None
    staff_name: str | None
    number: str
    sms: str | None = None


def _targets(person: Person) -> list[Target]:
    return [Target(person.key, person.name, phone, person.sms) for phone in person.phones]


def _duty_phone(settings: Settings) -> list[Target]:
    """The settings' duty phone, when one is set."""
    return [Target(None, None, settings.duty_phone, None)] if settings.duty_phone else []


def consultation_plan(duty: OnDuty, settings: Settings) -> list[list[Target]]:
    """One step: everyone on consultation duty at once (working hours), or the duty
    specialist (after hours); the duty phone when the roster has nobody; no step at all
    when there is no duty phone either."""
    if duty.working_time and duty.consultation:
        people: Sequence[Person] = duty.consultation
    else:
        specialist = duty.duty_specialist
        people = (specialist,) if specialist is not None else ()
    targets = [t for person in people for t in _targets(person)][:MAX_SIMULTANEOUS]
    targets = targets or _duty_phone(settings)
    return [targets] if targets else []


def urgent_plan(duty: OnDuty, settings: Settings) -> list[list[Target]]:
    """One step per phone: the urgent chain in order, then the head of support; the duty
    phone when the roster has nobody; no step at all when there is no duty phone either."""
    steps = [[t] for person in duty.escalation for t in _targets(person)]
    return steps or [[t] for t in _duty_phone(settings)]


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class LegTarget:
    position: int
    number: str


@dataclass(frozen=True)
class DialLegs:
    """Ring these legs (one <Dial>); the dial result comes back for `step`."""

    step: int
    legs: tuple[LegTarget, ...]
    timeout: int
    # True from the second step on: the caller is told the call moves on.
    moving_on: bool = False


@dataclass(frozen=True)
class CallbackOffer:
    """A consultation nobody answered, during working hours: the call-back queue is offered
    before the voicemail. `position`: the caller's place if the item were made now;
    `number`: the number we would call (None: withheld and none typed — the caller is asked
    to type one); `invalid_number`: the last one typed was not a Russian number."""

    position: int
    number: str | None
    invalid_number: bool = False


@dataclass(frozen=True)
class OfferVoicemail:
    """Nobody took the call: say so and record a message. `nobody_on_duty`: nobody was
    dialled at all (an empty roster and no duty phone). `callback`: the call-back queue is
    offered first; `announced`: the caller has already heard that nobody is free (they
    declined the offer), only the message is asked for."""

    kind: str
    ticket_number: str | None
    nobody_on_duty: bool = False
    callback: CallbackOffer | None = None
    announced: bool = False
    # SMS alerts can go out (a Twilio account is set): only then is the caller told that
    # the people on duty will get a message.
    sms_alerts: bool = False


@dataclass(frozen=True)
class CallbackBooked:
    """The caller is in the call-back queue: we call `number`. `offer_kb` as `Goodbye`'s."""

    number: str
    position: int
    offer_kb: bool = False


@dataclass(frozen=True)
class Goodbye:
    """The routing is over: `reason` is connected, voicemail, no_message or caller_gone.
    `offer_kb`: the caller is offered the knowledge base's link by SMS first."""

    reason: str
    offer_kb: bool = False


Decision = DialLegs | OfferVoicemail | CallbackBooked | Goodbye


@dataclass(frozen=True)
class Outcome:
    """A decision plus the work to start once the transaction has committed."""

    decision: Decision
    submit_requests: tuple[int, ...] = ()
    send_alerts: bool = False


@dataclass(frozen=True)
class LegStatus:
    """One status callback of a dialled leg (`<Number statusCallback>`)."""

    status: str
    child_call_sid: str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True)
class Whisper:
    """What the person answering a leg hears, or None: hang the leg up at once."""

    topic: str
    ticket_number: str | None
    client: str | None
    vehicles: tuple[str, ...] = ()


# ---------------------------------------------------------------- state helpers


@dataclass(frozen=True)
class PlannedLeg:
    """One phone of the frozen plan. `leg` is the DialLeg position, unique within the call;
    `key` and `name` are None for the settings' duty phone."""

    leg: int
    key: str | None
    name: str | None
    number: str
    sms: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "key": self.key,
            "name": self.name,
            "number": self.number,
            "sms": self.sms,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PlannedLeg:
        return cls(
            leg=int(raw["leg"]),
            key=raw.get("key"),
            name=raw.get("name"),
            number=str(raw["number"]),
            sms=raw.get("sms"),
        )


@dataclass(frozen=True)
class RoutingState:
    """Routing's per-call state, stored as JSON on `Call.routing_state`."""

    kind: str
    steps: tuple[tuple[PlannedLeg, ...], ...]
    step: int
    phase: str
    started_at: str
    working_time: bool
    accepted: int | None = None
    # How a finished routing ended (phase done): connected, voicemail, no_message, caller_gone.
    end: str | None = None
    voicemail: str | None = None
    # The call-back offer (phase voicemail): the place said, None when not offered; the
    # numbers mistyped so far; declined (another key: the voicemail). The number booked is
    # the call's (`number_to_call`): no copy here for the retention purge to miss.
    callback_offer: int | None = None
    callback_tries: int = 0
    callback_declined: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "kind": self.kind,
            "steps": [[leg.to_json() for leg in legs] for legs in self.steps],
            "step": self.step,
            "phase": self.phase,
            "accepted": self.accepted,
            "started_at": self.started_at,
            "working_time": self.working_time,
            "end": self.end,
            "voicemail": self.voicemail,
            "callback_offer": self.callback_offer,
            "callback_tries": self.callback_tries,
            "callback_declined": self.callback_declined,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RoutingState:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        accepted = raw.get("accepted")
        offer = raw.get("callback_offer")
        return cls(
            kind=str(raw["kind"]),
            steps=tuple(tuple(PlannedLeg.from_json(leg) for leg in legs) for legs in raw["steps"]),
            step=int(raw["step"]),
            phase=str(raw["phase"]),
            started_at=str(raw.get("started_at", "")),
            working_time=bool(raw.get("working_time", False)),
            accepted=int(accepted) if accepted is not None else None,
            end=raw.get("end"),
            voicemail=raw.get("voicemail"),
            callback_offer=int(offer) if offer is not None else None,
            callback_tries=int(raw.get("callback_tries") or 0),
            callback_declined=bool(raw.get("callback_declined", False)),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def legs_of(self, step: int) -> tuple[PlannedLeg, ...]:
        """The legs of step `step` (none for a step that is not in the plan)."""
        return self.steps[step - 1] if 1 <= step <= len(self.steps) else ()

    def positions(self, step: int) -> list[int]:
        return [leg.leg for leg in self.legs_of(step)]


def routing_state(call: Call | CallColumns) -> RoutingState | None:
    raw = call.routing_state
    return RoutingState.from_json(raw) if isinstance(raw, Mapping) else None


def _save(call: Call, routing: RoutingState) -> None:
    call.routing_state = routing.to_json()


# Built once: building and keying a statement costs as much as running it on SQLite.
_LEGS_OF_CALL = (
    select(DialLeg).where(DialLeg.call_id == bindparam("call_id")).order_by(DialLeg.position)
)


def _legs(session: Session, call: Call) -> dict[int, DialLeg]:
    rows = session.scalars(_LEGS_OF_CALL, {"call_id": call.id})
    return {leg.position: leg for leg in rows}


# Most routing steps only move a leg's and the call's columns and record an event: they do
# it with these Core statements on the step's connection (the call's columns come with its
# lock, `calls.store.CallColumns`), without loading ORM objects and flushing them, which
# cost most of such a step's CPU. The ORM stays for the turns that need the object graph.
_dial_legs = cast(Table, DialLeg.__table__)
_calls = cast(Table, Call.__table__)
_LEG_BY_POSITION = select(
    _dial_legs.c.id,
    _dial_legs.c.staff_key,
    _dial_legs.c.child_call_sid,
    _dial_legs.c.started_at,
    _dial_legs.c.answered_at,
    _dial_legs.c.ended_at,
    _dial_legs.c.result,
).where(
    _dial_legs.c.call_id == bindparam("call_id"), _dial_legs.c.position == bindparam("position")
)
_LEG_ROWS_OF_CALL = (
    select(
        _dial_legs.c.id,
        _dial_legs.c.position,
        _dial_legs.c.child_call_sid,
        _dial_legs.c.answered_at,
        _dial_legs.c.ended_at,
        _dial_legs.c.result,
    )
    .where(_dial_legs.c.call_id == bindparam("call_id"))
    .order_by(_dial_legs.c.position)
)
_INSERT_LEG = insert(_dial_legs)
# No VALUES: the SET clause comes from the parameters' keys (as `store.update_call`'s).
_UPDATE_LEG = update(_dial_legs).where(_dial_legs.c.id == bindparam("leg_id_"))
_LEG_ANSWERED = (
    update(_dial_legs)
    .where(
        _dial_legs.c.call_id == bindparam("call_id_"),
        _dial_legs.c.position == bindparam("position_"),
        _dial_legs.c.answered_at.is_(None),
    )
    .values(answered_at=bindparam("now", type_=_dial_legs.c.answered_at.type))
)
_organisations = cast(Table, Organisation.__table__)
_contacts = cast(Table, Contact.__table__)
_ticket_requests = cast(Table, TicketRequest.__table__)
# What the whisper names: the call's ticket and who it is from (`client_name`'s order).
_WHISPER_FACTS = (
    select(
        _ticket_requests.c.ticket_number,
        _organisations.c.id.label("organisation_id"),
        _organisations.c.name.label("organisation"),
        _contacts.c.id.label("contact_id"),
        _contacts.c.name.label("contact"),
        _calls.c.caller_said_name,
    )
    .select_from(
        _calls.outerjoin(_ticket_requests, _ticket_requests.c.call_id == _calls.c.id)
        .outerjoin(_organisations, _organisations.c.id == _calls.c.organisation_id)
        .outerjoin(_contacts, _contacts.c.id == _calls.c.contact_id)
    )
    .where(_calls.c.id == bindparam("call_id"))
)


def _core(db: Session | Connection) -> Connection:
    """The connection a routing step writes on with Core: a session's, with its pending
    changes flushed first (as the ORM would before a query)."""
    if isinstance(db, Session):
        db.flush()
        return db.connection()
    return db


def _written(db: Session | Connection) -> None:
    """After a routing step's Core writes: a session's objects are read again when next
    used, so they show what was written (a step cycle hands a bare connection)."""
    if isinstance(db, Session):
        db.expire_all()


# The step's session and the locked call as an ORM object, for the rare turns of a step
# that need the object graph (a ticket to open, the queue, the stored decision's ticket).
LoadCall = Callable[[], tuple[Session, Call]]


def _loader(db: Session | Connection, call: Call | CallColumns) -> LoadCall:
    """Handed a session and the ORM call (the domain tests), the loader returns them; a
    step cycle hands its own (`StepTransaction.call_object`)."""

    def load() -> tuple[Session, Call]:
        if not isinstance(db, Session) or not isinstance(call, Call):
            raise TypeError("a routing step on a bare connection needs its call's loader")
        return db, call

    return load


def _leg_row(connection: Connection, call_id: int, position: int) -> Row[*tuple[Any, ...]] | None:
    return connection.execute(_LEG_BY_POSITION, {"call_id": call_id, "position": position}).first()


def _update_leg(connection: Connection, leg_id: int, changes: dict[str, Any]) -> None:
    if changes:
        connection.execute(_UPDATE_LEG, {**changes, "leg_id_": leg_id})


def _dial(routing: RoutingState, settings: Settings) -> DialLegs:
    legs = tuple(LegTarget(leg.leg, leg.number) for leg in routing.legs_of(routing.step))
    return DialLegs(routing.step, legs, settings.dial_leg_timeout, moving_on=routing.step > 1)


def _ticket_number(call: Call) -> str | None:
    request = call.ticket_request
    return request.ticket_number if request is not None else None


def _stored(
    call: Call | CallColumns, routing: RoutingState, settings: Settings, load: LoadCall
) -> Decision:
    """`stored_decision`, the ORM call loaded only when the decision names its ticket or
    its number (past the dialling)."""
    if routing.phase == DIALING:
        return _dial(routing, settings)
    return stored_decision(load()[1], settings)


def stored_decision(call: Call, settings: Settings) -> Decision:
    """The TwiML decision for the call's stored state (a replayed or stray request)."""
    routing = routing_state(call)
    if routing is None:
        return Goodbye("caller_gone")
    if routing.phase == DIALING:
        return _dial(routing, settings)
    if routing.phase == VOICEMAIL:
        return _voicemail_offer(call, routing)
    booked = number_to_call(call) if routing.end == CALLBACK_BOOKED else None
    if booked is not None and routing.callback_offer is not None:
        return CallbackBooked(booked, routing.callback_offer)
    return Goodbye(routing.end or "connected")


def _voicemail_offer(call: Call, routing: RoutingState) -> OfferVoicemail:
    """What a caller in the voicemail phase hears: the call-back offer while it stands."""
    callback = None
    if routing.callback_offer is not None and not routing.callback_declined:
        callback = CallbackOffer(
            routing.callback_offer, number_to_call(call), invalid_number=routing.callback_tries > 0
        )
    return OfferVoicemail(
        routing.kind,
        _ticket_number(call),
        nobody_on_duty=not routing.steps,
        callback=callback,
        announced=routing.callback_declined,
    )


def _callback_offered_now(routing: RoutingState, calendar: BusinessCalendar, now: datetime) -> bool:
    return routing.kind == CONSULTATION and calendar.is_working_time(now)


def _offer_callback(
    session: Session,
    call: Call,
    routing: RoutingState,
    *,
    now: datetime,
    calendar: BusinessCalendar,
) -> RoutingState:
    """During working hours (the regulation's, by the production calendar) a consultation
    nobody answered is offered the call-back queue, with the place it would take now."""
    if not _callback_offered_now(routing, calendar, now):
        return routing
    position = queue_position(session, call.started_at)
    record_event(
        session,
        call,
        "callback_offered",
        now,
        step=CONSULTATION,
        position=position,
        # No number in the path's details: the purge clears the call's numbers, not these.
        asks_number=number_to_call(call) is None,
    )
    return replace(routing, callback_offer=position)


# ---------------------------------------------------------------- starting


def begin_routing(
    db: Session | Connection,
    call: Call | CallColumns,
    kind: str,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    settings: Settings,
    load: LoadCall | None = None,
) -> Outcome:
    """Begin routing a (locked) call: resolve who is on duty now and dial the first step.

    A second start (Twilio retried the redirect) returns the current state's decision.
    Written with Core on the step's connection; only nobody on duty at all (a flag, a
    ticket) and a replay past the dialling load the ORM call (`load`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown routing kind {kind!r}")
    load = load or _loader(db, call)
    existing = routing_state(call)
    if existing is not None:
        return Outcome(_stored(call, existing, settings, load))
    connection = _core(db)
    duty = on_duty(connection, now, calendar)
    plan = (
        consultation_plan(duty, settings) if kind == CONSULTATION else urgent_plan(duty, settings)
    )
    position = 0
    steps: list[tuple[PlannedLeg, ...]] = []
    for step_targets in plan:
        legs = []
        for target in step_targets:
            position += 1
            legs.append(
                PlannedLeg(position, target.staff_key, target.staff_name, target.number, target.sms)
            )
        steps.append(tuple(legs))
    routing = RoutingState(
        kind=kind,
        steps=tuple(steps),
        step=1,
        phase=DIALING,
        started_at=now.isoformat(),
        working_time=duty.working_time,
    )
    update_call(connection, call.id, {"routing_state": routing.to_json()})
    record_event(
        connection,
        call.id,
        "routing_start",
        now,
        step=kind,
        legs=position,
        steps=len(steps),
        duty_phone=(bool(steps) and all(leg.key is None for s in steps for leg in s)) or None,
    )
    if not steps:
        _written(db)
        session, loaded = load()
        return _nobody_on_duty(session, loaded, routing, now=now, calendar=calendar)
    # No legs to read first: a call's routing legs are written in the transaction that
    # writes its routing state, found empty above (a call-back's legs come after routing).
    _open_step(connection, call.id, routing, now, existing=())
    _written(db)
    return Outcome(_dial(routing, settings))


def _nobody_on_duty(
    session: Session,
    call: Call,
    routing: RoutingState,
    *,
    now: datetime,
    calendar: BusinessCalendar,
) -> Outcome:
    """Nobody to dial (an empty roster, no duty phone): a voicemail at once, the call
    flagged, and a ticket (the urgent one the IVR opened, or a consultation's callback)."""
    _save(call, replace(routing, phase=VOICEMAIL))
    call.flagged = True
    call.flag_reason = (
        "Некому звонить: в графике никого нет и DUTY_PHONE не задан. "
        "Звонивший оставляет сообщение; перезвоните."
    )
    record_event(session, call, "nobody_on_duty", now, step=routing.kind)
    if routing.kind == URGENT:
        call.routing_outcome = OUTCOME_NOBODY_ACCEPTED
        return Outcome(OfferVoicemail(URGENT, _ticket_number(call), nobody_on_duty=True))
    call.routing_outcome = OUTCOME_NO_ANSWER
    return _consultation_left_a_message(session, call, routing, now=now, calendar=calendar)


def _consultation_left_a_message(
    session: Session,
    call: Call,
    routing: RoutingState,
    *,
    now: datetime,
    calendar: BusinessCalendar,
) -> Outcome:
    """A consultation nobody takes: the voicemail phase, with the call-back queue offered
    in working hours, and the call's ticket request (its call back) opened."""
    routing = _offer_callback(
        session, call, replace(routing, phase=VOICEMAIL), now=now, calendar=calendar
    )
    _save(call, routing)
    request_id = _open_callback(session, call, now=now, calendar=calendar)
    return Outcome(_voicemail_offer(call, routing), submit_requests=(request_id,))


def _open_step(
    connection: Connection,
    call_id: int,
    routing: RoutingState,
    now: datetime,
    existing: Sequence[int] | None = None,
) -> None:
    """Log the legs of the current step as rung now (once, however often it is asked);
    `existing`: the positions the call's legs already hold, when the caller has read them."""
    step = routing.step
    if existing is None:
        existing = [
            row.position for row in connection.execute(_LEG_ROWS_OF_CALL, {"call_id": call_id})
        ]
    new = [
        {
            "call_id": call_id,
            "position": leg.leg,
            "staff_key": leg.key,
            "staff_name": leg.name,
            "number": leg.number,
            "started_at": now,
            "result": RINGING,
        }
        for leg in routing.legs_of(step)
        if leg.leg not in existing
    ]
    if new:
        connection.execute(_INSERT_LEG, new)
    record_event(
        connection,
        call_id,
        "dial",
        now,
        step=f"step {step}",
        legs=routing.positions(step),
        numbers=[leg.number for leg in routing.legs_of(step)],
    )


# ---------------------------------------------------------------- the whisper


def whisper(
    db: Session | Connection, call: Call | CallColumns, position: int, *, now: datetime
) -> Whisper | None:
    """The announcement for leg `position`, or None when that leg must not be connected
    (not the current step any more, someone else accepted, the routing is over)."""
    routing = routing_state(call)
    connection = _core(db)
    if (
        routing is None
        or routing.phase != DIALING
        or routing.accepted is not None
        or position not in routing.positions(routing.step)
    ):
        record_event(connection, call.id, "whisper_refused", now, step=f"leg {position}")
        _written(db)
        return None
    connection.execute(_LEG_ANSWERED, {"call_id_": call.id, "position_": position, "now": now})
    record_event(connection, call.id, "whisper", now, step=f"leg {position}")
    facts = connection.execute(_WHISPER_FACTS, {"call_id": call.id}).one()
    _written(db)
    if facts.organisation_id is not None:
        client: str | None = facts.organisation
    elif facts.contact_id is not None:
        client = facts.contact
    else:
        client = facts.caller_said_name or None
    return Whisper(
        topic=call.category or routing.kind,
        ticket_number=facts.ticket_number,
        client=client,
        vehicles=tuple(call.vehicles or ()),
    )


def client_name(call: Call) -> str | None:
    """Who the call is from, as the staff know them: the organisation, the contact, or
    the name the caller gave."""
    if call.organisation is not None:
        return call.organisation.name
    if call.contact is not None:
        return call.contact.name
    return call.caller_said_name or None


def whisper_answer(
    db: Session | Connection,
    call: Call | CallColumns,
    position: int,
    digits: str,
    *,
    now: datetime,
) -> bool:
    """The key pressed on leg `position` after the whisper: True to bridge the call.

    "1" accepts (only while this leg's step is current and nobody else accepted); any
    other key declines.
    """
    routing = routing_state(call)
    connection = _core(db)
    leg = _leg_row(connection, call.id, position)
    live = (
        routing is not None
        and routing.phase == DIALING
        and position in routing.positions(routing.step)
    )
    step = f"leg {position}"
    if routing is None or leg is None or not live:
        record_event(connection, call.id, "leg_refused", now, step=step, digits=digits)
    elif routing.accepted not in (None, position):
        record_event(connection, call.id, "leg_too_late", now, step=step, digits=digits)
        if leg.result == RINGING:
            _update_leg(connection, leg.id, {"result": CANCELED})
    elif digits.strip() != "1":
        if leg.result == RINGING:
            _update_leg(connection, leg.id, {"result": DECLINED})
        record_event(connection, call.id, "leg_declined", now, step=step, digits=digits)
    else:
        answered_at = leg.answered_at if leg.answered_at is not None else now
        _update_leg(connection, leg.id, {"result": ACCEPTED, "answered_at": answered_at})
        update_call(
            connection,
            call.id,
            {
                "routing_state": replace(routing, accepted=position).to_json(),
                "routing_outcome": OUTCOME_CONNECTED,
            },
        )
        record_event(
            connection,
            call.id,
            "leg_accepted",
            now,
            step=step,
            digits=digits,
            staff=leg.staff_key,
            seconds=_seconds_to_answer(leg.started_at, answered_at),
        )
        _written(db)
        return True
    _written(db)
    return False


class _AnsweredLeg(Protocol):
    @property
    def started_at(self) -> datetime: ...
    @property
    def answered_at(self) -> datetime | None: ...


def time_to_answer(leg: _AnsweredLeg) -> int | None:
    """Seconds from ringing to answering a leg, when it was answered."""
    if leg.answered_at is None:
        return None
    return _seconds_to_answer(leg.started_at, leg.answered_at)


def _seconds_to_answer(started_at: datetime, answered_at: datetime) -> int:
    return max(0, int((answered_at - started_at).total_seconds()))


# ---------------------------------------------------------------- leg status callbacks


def leg_status(
    db: Session | Connection,
    call: Call | CallColumns,
    position: int,
    status: LegStatus,
    *,
    now: datetime,
) -> None:
    """Log one status callback of a leg. Never advances the chain; duplicates and late
    callbacks change nothing (a final result is never overwritten, except that a
    result guessed from the dial result is refined by the leg's own busy/failed)."""
    connection = _core(db)
    leg = _leg_row(connection, call.id, position)
    if leg is None:
        record_event(connection, call.id, "leg_status_unknown", now, step=f"leg {position}")
        _written(db)
        return
    at = status.timestamp or now
    changes: dict[str, Any] = {}
    if status.child_call_sid and not leg.child_call_sid:
        changes["child_call_sid"] = status.child_call_sid
    if status.status in ("in-progress", "answered") and (
        leg.answered_at is None or at < leg.answered_at
    ):
        # Twilio's own timestamp beats the moment the whisper was fetched.
        changes["answered_at"] = at
    if status.status in TERMINAL_STATUSES:
        if leg.ended_at is None:
            changes["ended_at"] = at
        if leg.result == RINGING:
            changes["result"] = _LEG_RESULT[status.status]
        elif leg.result in (NO_ANSWER, CANCELED) and status.status in (BUSY, FAILED):
            changes["result"] = status.status
    _update_leg(connection, leg.id, changes)
    record_event(
        connection, call.id, "leg_status", at, step=f"leg {position}", status=status.status
    )
    _written(db)


# ---------------------------------------------------------------- dial results


def dial_finished(
    db: Session | Connection,
    call: Call | CallColumns,
    step: int,
    *,
    dial_status: str,
    dial_call_sid: str | None,
    call_status: str | None,
    bridged: bool | None = None,
    now: datetime,
    calendar: BusinessCalendar,
    settings: Settings,
    load: LoadCall | None = None,
) -> Outcome:
    """A <Dial> of step `step` ended: connected, next step, or nobody accepted.

    `call_status` is the caller's own CallStatus (a final one: the caller hung up).
    `bridged` is Twilio's DialBridged when sent: a leg that pressed 1 but was never
    bridged (it hung up straight after) does not count as connected.

    The legs are settled and the next step opened with Core on the step's connection;
    only the ends that open a ticket or flag the call (`load`: the ORM call) and a stray
    dial result (the stored decision) use the ORM.
    """
    load = load or _loader(db, call)
    routing = routing_state(call)
    connection = _core(db)
    if routing is None or routing.phase != DIALING or step != routing.step:
        record_event(
            connection, call.id, "dial_result_ignored", now, step=f"step {step}", status=dial_status
        )
        _written(db)
        if routing is None:
            return Outcome(Goodbye("caller_gone"))
        return Outcome(_stored(call, routing, settings, load))
    legs = {
        row.position: row for row in connection.execute(_LEG_ROWS_OF_CALL, {"call_id": call.id})
    }
    positions = routing.positions(step)
    results: dict[str, str] = {}
    for position in positions:
        leg = legs.get(position)
        if leg is not None:
            changes = _settled(leg, dial_status, dial_call_sid, single=len(positions) == 1, now=now)
            _update_leg(connection, leg.id, changes)
            results[str(position)] = changes.get("result", leg.result)
    record_event(
        connection,
        call.id,
        "dial_result",
        now,
        step=f"step {step}",
        status=dial_status,
        bridged=bridged,
        results=results,
    )
    accepted = routing.accepted
    if accepted is not None and accepted in positions:
        if bridged is not False:
            connected = replace(routing, phase=DONE, end="connected")
            update_call(
                connection,
                call.id,
                {"routing_state": connected.to_json(), "routing_outcome": OUTCOME_CONNECTED},
            )
            _written(db)
            return Outcome(Goodbye("connected"))
        record_event(connection, call.id, "accepted_not_bridged", now, step=f"leg {accepted}")
        dropped = legs.get(accepted)
        if dropped is not None:
            _update_leg(connection, dropped.id, {"result": NOT_ACCEPTED})
        routing = replace(routing, accepted=None)
        update_call(
            connection, call.id, {"routing_state": routing.to_json(), "routing_outcome": None}
        )
    if call_status in TERMINAL_STATUSES:
        _written(db)
        session, loaded = load()
        return _caller_gone(session, loaded, routing, now=now, calendar=calendar)
    if step < len(routing.steps):
        routing = replace(routing, step=step + 1)
        update_call(connection, call.id, {"routing_state": routing.to_json()})
        _open_step(connection, call.id, routing, now, existing=list(legs))
        _written(db)
        return Outcome(_dial(routing, settings))
    _written(db)
    session, loaded = load()
    return _nobody_accepted(
        session, loaded, routing, now=now, calendar=calendar, sms_alerts=settings.sms_configured
    )


def _settled(
    leg: Row[*tuple[Any, ...]],
    dial_status: str,
    dial_call_sid: str | None,
    *,
    single: bool,
    now: datetime,
) -> dict[str, Any]:
    """The changes that give a still-ringing leg its result from the dial result."""
    if leg.result != RINGING:
        if leg.ended_at is None and leg.result in _FINAL_RESULTS and leg.result != ACCEPTED:
            return {"ended_at": now}
        return {}
    if single or (dial_call_sid and leg.child_call_sid == dial_call_sid):
        status = dial_status
    elif dial_status in ("completed", "answered"):
        # Another phone of the same <Dial> answered; Twilio hung this one up.
        status = "canceled"
    else:
        status = dial_status
    result = _LEG_RESULT.get(status, FAILED)
    if result == NO_ANSWER and leg.answered_at is not None:
        result = NOT_ACCEPTED
    changes: dict[str, Any] = {"result": result}
    if leg.ended_at is None:
        changes["ended_at"] = now
    return changes


def _chain_names(session: Session, call: Call) -> str:
    names: list[str] = []
    for leg in _legs(session, call).values():
        name = leg.staff_name or leg.number
        if name not in names:
            names.append(name)
    return ", ".join(names)


def _nobody_accepted(
    session: Session,
    call: Call,
    routing: RoutingState,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    sms_alerts: bool,
) -> Outcome:
    _save(call, replace(routing, phase=VOICEMAIL))
    if routing.kind == URGENT:
        call.routing_outcome = OUTCOME_NOBODY_ACCEPTED
        call.flagged = True
        # Only what happened by now: the SMS alerts are a job's, after this commits, and
        # the call page shows what became of each (`calllog.alerts`).
        call.flag_reason = (
            "Никто из дежурных не принял срочный звонок. Обзвонены: "
            + _chain_names(session, call)
            + "."
        )
        record_event(session, call, "nobody_accepted", now, step=URGENT)
        return Outcome(
            OfferVoicemail(URGENT, _ticket_number(call), sms_alerts=sms_alerts), send_alerts=True
        )
    call.routing_outcome = OUTCOME_NO_ANSWER
    # The call log says what the caller is offered next: the call-back queue (its own
    # event follows) or the voicemail alone.
    offered = "callback" if _callback_offered_now(routing, calendar, now) else "voicemail"
    record_event(session, call, "nobody_answered", now, step=CONSULTATION, offered=offered)
    return _consultation_left_a_message(session, call, routing, now=now, calendar=calendar)


def _caller_gone(
    session: Session,
    call: Call,
    routing: RoutingState,
    *,
    now: datetime,
    calendar: BusinessCalendar,
) -> Outcome:
    """The caller hung up while the chain was ringing: nobody must forget them."""
    _save(call, replace(routing, phase=DONE, end="caller_gone"))
    call.routing_outcome = OUTCOME_CALLER_HUNG_UP
    call.flagged = True
    record_event(session, call, "caller_hung_up", now, step=routing.kind)
    if routing.kind == URGENT:
        call.flag_reason = (
            "Звонивший положил трубку, пока звонок искал дежурного. Обзвонены: "
            + _chain_names(session, call)
            + ". Перезвоните клиенту."
        )
        return Outcome(Goodbye("caller_gone"), send_alerts=True)
    call.flag_reason = "Консультация: звонивший не дождался ответа специалиста. Перезвоните."
    request_id = _open_callback(session, call, now=now, calendar=calendar)
    return Outcome(Goodbye("caller_gone"), submit_requests=(request_id,))


def _open_callback(
    session: Session, call: Call, *, now: datetime, calendar: BusinessCalendar
) -> int:
    """An unanswered consultation becomes a callback ticket (topic consultation)."""
    if not call.topic:
        call.topic = CONSULTATION_TOPIC
    session.flush()  # the call's changes written before the Core statements read its row
    return open_ticket_request_on_row(session.connection(), call.id, now=now, calendar=calendar)


# ---------------------------------------------------------------- voicemail


def voicemail(
    db: Session | Connection,
    call: Call | CallColumns,
    *,
    recording_sid: str | None,
    recording_url: str | None,
    duration: int | None = None,
    now: datetime,
    settings: Settings,
    load: LoadCall | None = None,
) -> Outcome:
    """The caller's message after nobody took the call (none: the caller kept silent).

    Attached to the call's ticket (the urgent ticket, or the consultation's callback
    ticket); the returned outcome submits that ticket request so the pipeline attaches it.
    A repeated request changes nothing. Written with Core on the step's connection; only
    a replay past the voicemail loads the ORM call (`load`) for the stored decision.
    """
    load = load or _loader(db, call)
    routing = routing_state(call)
    if routing is None:
        return Outcome(Goodbye("caller_gone"))
    if routing.phase != VOICEMAIL:
        return Outcome(_stored(call, routing, settings, load))
    connection = _core(db)
    submit: tuple[int, ...] = ()
    changes: dict[str, Any] = {}
    recorded = bool(recording_url and recording_sid)
    if recording_url and recording_sid:
        request_id = add_recording_to_row(
            connection,
            call.id,
            recording_sid=recording_sid,
            recording_url=recording_url,
            kind="voicemail",
            duration=duration,
            now=now,
        )
        if request_id is not None:
            submit = (request_id,)
        if routing.kind == CONSULTATION:
            changes["routing_outcome"] = OUTCOME_VOICEMAIL
    end = "voicemail" if recorded else "no_message"
    voicemail_sid = recording_sid if recorded else None
    done = replace(routing, phase=DONE, end=end, voicemail=voicemail_sid)
    update_call(connection, call.id, {**changes, "routing_state": done.to_json()})
    record_event(
        connection,
        call.id,
        "voicemail",
        now,
        step=routing.kind,
        recording=recording_sid,
        left=recorded,
    )
    _written(db)
    return Outcome(Goodbye(end), submit_requests=submit)


# ---------------------------------------------------------------- the call-back offer


def callback_answer(
    session: Session,
    call: Call,
    digits: str,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    settings: Settings,
) -> Outcome:
    """The caller's answer to the call-back offer (`digits`: what Twilio delivered).

    1 — or, for a withheld caller without a number, a valid Russian number typed — makes
    the call's queue item and ends the routing; another key, or a second mistyped number,
    goes on to the voicemail; a first mistyped number is asked again. A duplicated or
    replayed answer changes nothing and hears the stored state again: one item per call.
    """
    routing = routing_state(call)
    if routing is None:
        return Outcome(Goodbye("caller_gone"))
    if routing.phase != VOICEMAIL or routing.callback_offer is None or routing.callback_declined:
        if routing.end != CALLBACK_BOOKED:
            record_event(session, call, "callback_answer_ignored", now, digits=digits)
        return Outcome(stored_decision(call, settings))
    position = routing.callback_offer
    keyed = digits.strip()
    number = number_to_call(call)
    typed = None
    if number is None:
        typed = callback_number(keyed)
        if typed is None and keyed and routing.callback_tries + 1 < CALLBACK_NUMBER_TRIES:
            routing = replace(routing, callback_tries=routing.callback_tries + 1)
            _save(call, routing)
            record_event(
                session, call, "callback_number_invalid", now, step=CONSULTATION, digits=keyed
            )
            return Outcome(_voicemail_offer(call, routing))
        number = typed
    elif keyed != "1":
        number = None
    if number is None:
        routing = replace(routing, callback_declined=True)
        _save(call, routing)
        record_event(session, call, "callback_declined", now, step=CONSULTATION, digits=keyed)
        return Outcome(_voicemail_offer(call, routing))
    if typed is not None:
        remember_callback_number(call, typed)
    item = request_callback(
        session, call, now=now, calendar=calendar, sla_minutes=settings.callback_sla_minutes
    )
    _save(call, replace(routing, phase=DONE, end=CALLBACK_BOOKED))
    record_event(
        session,
        call,
        "callback_requested",
        now,
        step=CONSULTATION,
        digits=keyed,
        item=item.id,
        position=position,
        typed=typed is not None,
    )
    return Outcome(CallbackBooked(number, position))
