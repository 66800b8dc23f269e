"""The IVR's steps of a call, served by the step cycle (`callcenter.calls.step_cycle`).

`answer` runs one IVR step: on the locked call row (created on the first webhook), the
step engine decides → the actions are applied (collected answers, recording, ticket
request) → the state and one event are saved → the cycle commits and queues the ticket
job → the reply. `record_status` and `record_recording` do the same for status and
recording callbacks; a call that ends without reaching its ticket gets one here, marked
interrupted.

Flask-free: the views in `webhooks.voice` parse the form, build the cycle and call these
with what each uses (the calendar, the settings, the portal).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.orm import Session, joinedload

from callcenter.calls import store as calls
from callcenter.calls.step_cycle import StepCycle, StepTransaction
from callcenter.calls.store import CallColumns, StatusCallback
from callcenter.db.deadline import bounded, guard_of
from callcenter.db.models import Call, TicketRequest
from callcenter.errors import InvalidInput, TicketNotFound
from callcenter.incidents import detection
from callcenter.incidents import store as incidents
from callcenter.incidents.texts import product_spoken
from callcenter.ivr import prompts
from callcenter.ivr.engine import (
    AddToTicket,
    CallFacts,
    CallState,
    IncidentNotice,
    IvrEvent,
    JoinIncident,
    KeepRecording,
    MarkPhoneDuplicate,
    OpenTicket,
    RecordingRef,
    RecordObjection,
    Remember,
    RequestedTicket,
    StepContext,
    StepResult,
    TicketLookup,
    advance,
)
from callcenter.ivr.reply import Reply
from callcenter.ivr.twiml import absolute
from callcenter.ivr.webhook_params import RecordingStatus, VoiceWebhook
from callcenter.portal.protocol import Portal, TicketView
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.regulation.speech import say_deadline, say_digits
from callcenter.settings import Settings
from callcenter.tickets import intake
from callcenter.vocabulary import (
    ABANDONED_AFTER_CHOICE,
    TICKETED_CATEGORIES,
    URGENT_CATEGORIES,
    Category,
    Outcome,
    Step,
)

log = logging.getLogger(__name__)

# How long a step may wait for the portal (ticket lookups) before saying it is unavailable.
PORTAL_LOOKUP_SECONDS = 2.0
# Who the portal shows as the author of what a caller asked for by phone.
OBJECTION_AUTHOR = "Горячая линия (IVR)"
# The repeat-caller lookup runs before the greeting: shorter, as every identified caller waits.
OPEN_TICKETS_SECONDS = 1.0

T = TypeVar("T")


# ------------------------------------------------------------------ IVR steps


@dataclass(frozen=True)
class IvrSetting:
    """What the IVR's steps use besides the database: the business calendar, the settings
    (support name, waits, SMS), and the portal for ticket lookups (asked for only when a
    caller asks about a ticket)."""

    calendar: BusinessCalendar
    settings: Settings
    portal: Callable[[], Portal]


def answer(cycle: StepCycle, webhook: VoiceWebhook, ivr: IvrSetting) -> Reply:
    """Run one IVR step of the call and return what the caller hears next.

    Every step writes the locked row's columns, its actions (a recording kept, a ticket
    request opened or refreshed) and its event with Core statements on the lock's columns;
    only joining an incident, and a critical call that completes a surge, open the ORM.
    """
    return cycle.run(webhook.call_sid, lambda tx: _ivr_step(tx, webhook, ivr, cycle.engine))


def _ivr_step(tx: StepTransaction, webhook: VoiceWebhook, ivr: IvrSetting, engine: Engine) -> Reply:
    now = tx.now
    locked = tx.call
    created = False
    if locked is None:
        # The first webhook: the row is inserted (the caller identified) with Core, and the
        # step goes on from its columns as any later step does from the lock's.
        locked, created = calls.insert_call(
            tx.connection,
            webhook.call_sid,
            now=now,
            caller_raw=webhook.caller,
            line_raw=webhook.line,
        )
    state = CallState.from_json(locked.state)
    result = advance(
        state, webhook.event, _context(ivr, engine, tx, locked, now, _incident(tx, state))
    )
    _record_objections(tx, ivr, engine, result)
    if _only_remembers(result):
        _save_remembered(tx, locked.id, result, now)
        _log_step(tx, locked.id, webhook, result, now, created)
        return result.reply
    tx.submit_ticket_requests(_apply(ivr, tx, locked, result, now))
    if _category_after(locked, result) == Category.CRITICAL and any(
        isinstance(action, OpenTicket) for action in result.actions
    ):
        _detect_incident(tx, ivr, locked.call_sid)
    _log_step(tx, locked.id, webhook, result, now, created)
    return result.reply


def _category_after(call: CallColumns, result: StepResult) -> str | None:
    """The call's category once the step's answers are written."""
    category = call.category
    for action in result.actions:
        if isinstance(action, Remember) and action.field == "category":
            category = action.value
    return category


def _detect_incident(tx: StepTransaction, ivr: IvrSetting, call_sid: str) -> None:
    """A critical call's own ticket request was just written: open the incident here, in
    this transaction, when it completes a surge (`incidents.detection`), so every caller
    after it hears the incident whether or not the ticket jobs have run; its alerts are
    queued after commit. The ticket job checks again (idempotent). A failure is logged and
    left to that check: the caller's step goes on."""
    settings = ivr.settings
    if settings.incident_threshold <= 0:
        return  # detection off (INCIDENT_THRESHOLD=0)
    try:
        with tx.connection.begin_nested():
            # Core reads first: no ORM session unless this call completes a surge.
            if not detection.surging(
                tx.connection,
                call_sid,
                now=tx.now,
                threshold=settings.incident_threshold,
                window_minutes=settings.incident_window_minutes,
            ):
                return
        session = tx.session
        with session.begin_nested():
            incident_id = detection.detect(
                session,
                call_sid,
                now=tx.now,
                calendar=ivr.calendar,
                threshold=settings.incident_threshold,
                window_minutes=settings.incident_window_minutes,
            )
    except Exception:
        log.exception(
            "incident detection failed in the step; the ticket job checks again",
            extra={"call_sid": call_sid},
        )
        return
    if incident_id is not None:
        # Not lost if it cannot be queued: the sweep finds its alerts due.
        tx.after_commit(lambda: tx.jobs().submit_incident(incident_id))


def _incident(tx: StepTransaction, state: CallState) -> IncidentNotice | None:
    """The known incident the step needs: the one to announce at the start (and to a
    critical caller greeted before it was known), the one offered at the offer (while it
    is open); no query at any other step."""
    if state.step in (Step.START, Step.CRITICAL):
        found = incidents.announced(tx.reading_connection())
    elif state.step == Step.INCIDENT_OFFER and state.incident_id is not None:
        found = incidents.still_open(tx.reading_connection(), state.incident_id)
    else:
        return None
    if found is None:
        return None
    return IncidentNotice(found.incident_id, product_spoken(found.product), found.ticket_number)


def _only_remembers(result: StepResult) -> bool:
    return all(isinstance(action, (Remember, RecordObjection)) for action in result.actions)


def objection_entry(call_sid: str) -> str:
    """The portal entry a caller's objection to a solution leaves on the ticket."""
    return prompts.STATUS_OBJECTION_ENTRY.format(call=call_sid)


def _record_objections(
    tx: StepTransaction, ivr: IvrSetting, engine: Engine, result: StepResult
) -> None:
    """After commit (the built-in portal writes the same database): the objections the
    step asked for, each once (keyed by the call), within the portal's short deadline. The
    next step reads the ticket back and says only what the portal kept."""
    call_sid = tx.call_sid
    for action in result.actions:
        if not isinstance(action, RecordObjection):
            continue
        number = action.ticket_number

        def record(number: str = number) -> None:
            portal = ivr.portal()
            try:
                # A write, on a lookup thread whichever the portal: on SQLite it may wait
                # for another writer up to the busy timeout, which the caller must not.
                _on_a_lookup_thread(
                    engine,
                    PORTAL_LOOKUP_SECONDS,
                    lambda: portal.add_entry(
                        number,
                        text=objection_entry(call_sid),
                        author=OBJECTION_AUTHOR,
                        dedup_key=f"{call_sid}:objection:{number}",
                    ),
                )
            except Exception as exc:
                log.warning(
                    "portal did not record the objection on ticket %s: %r",
                    number,
                    exc,
                    extra={"call_sid": call_sid},
                )

        tx.after_commit(record)


def _save_remembered(tx: StepTransaction, call_id: int, result: StepResult, now: datetime) -> None:
    """The step's answers and state written to the locked row with one Core UPDATE."""
    changes: dict[str, Any] = {
        action.field: _remembered(action)
        for action in result.actions
        if isinstance(action, Remember)
    }
    changes["state"] = result.state.to_json()
    changes["updated_at"] = now
    calls.update_call(tx.connection, call_id, changes)


# Joining an incident names the caller's contact and organisation: loaded with the call in
# one query rather than by two lazy loads.
_WITH_WHO = (joinedload(Call.contact), joinedload(Call.organisation))


def _remembered(action: Remember) -> Any:
    return list(action.value) if action.field == "vehicles" else action.value


def _context(
    ivr: IvrSetting,
    engine: Engine,
    tx: StepTransaction,
    call: Call | CallColumns,
    now: datetime,
    incident: IncidentNotice | None = None,
) -> StepContext:
    settings = ivr.settings
    facts = calls.caller_facts(call, sms_foreign=settings.sms_foreign)
    return StepContext(
        now=now,
        calendar=ivr.calendar,
        support_name=settings.support_name,
        ticket_wait_seconds=settings.ticket_wait_seconds,
        call=CallFacts(
            category=call.category,
            topic=call.topic,
            vehicles=tuple(call.vehicles or ()),
            known_caller=facts.known,
            organisation_id=facts.organisation_id,
            # Promise an SMS only when one can be sent: a mobile, and a Twilio account.
            sms_reachable=facts.sms_reachable and settings.sms_configured,
            has_number=facts.has_number,
        ),
        lookups=_CallLookups(
            ivr.portal,
            engine,
            tx,
            call.id,
            call.call_sid,
            contact_id=call.contact_id,
            caller_e164=call.caller_e164,
        ),
        say_digits=say_digits,
        say_deadline=lambda due: say_deadline(due, now),
        incident=incident,
    )


def _apply(
    ivr: IvrSetting, tx: StepTransaction, call: CallColumns, result: StepResult, now: datetime
) -> list[int]:
    """Apply the engine's actions to the locked row in this transaction with Core
    statements (the answers written before an action that reads the row), then save the
    step's state; ticket request ids to queue after commit."""
    connection = tx.connection
    submit: list[int] = []
    remembered: dict[str, Any] = {}
    for action in result.actions:
        if isinstance(action, Remember):
            remembered[action.field] = _remembered(action)
            continue
        if isinstance(action, RecordObjection):
            continue  # after commit (`_record_objections`)
        if remembered:
            calls.update_call(connection, call.id, remembered)
            remembered = {}
        if isinstance(action, KeepRecording):
            request_id = _keep_recording_on_row(
                connection, call, action.recording, action.kind, now
            )
            if request_id is not None:
                submit.append(request_id)
        elif isinstance(action, OpenTicket):
            request_id = intake.open_ticket_request_on_row(
                connection,
                call.id,
                now=now,
                calendar=ivr.calendar,
                typed_number=action.typed_number,
            )
            submit.append(request_id)
            calls.record_event(connection, call.id, "ticket_requested", now, request_id=request_id)
        elif isinstance(action, MarkPhoneDuplicate):
            request_id = intake.mark_phone_duplicate_on_row(
                connection, call.id, action.ticket_number, now=now, calendar=ivr.calendar
            )
            submit.append(request_id)
            calls.record_event(
                connection,
                call.id,
                "phone_duplicate",
                now,
                ticket_number=action.ticket_number,
                request_id=request_id,
            )
        elif isinstance(action, JoinIncident):
            joined_id = _join_incident(ivr, tx, call, action.incident_id, now)
            if joined_id is not None:
                submit.append(joined_id)
            calls.record_event(
                connection,
                call.id,
                "incident_joined",
                now,
                incident_id=action.incident_id,
                request_id=joined_id,
            )
        elif isinstance(action, AddToTicket):
            request_id = intake.add_to_ticket_on_row(
                connection,
                call.id,
                action.ticket_number,
                now=now,
                calendar=ivr.calendar,
                call_url=absolute(f"/console/calls/{call.call_sid}", ivr.settings.public_base_url),
                topic=action.topic,
            )
            submit.append(request_id)
            calls.record_event(
                connection,
                call.id,
                "addition",
                now,
                ticket_number=action.ticket_number,
                request_id=request_id,
            )
    remembered.update(state=result.state.to_json(), updated_at=now)
    calls.update_call(connection, call.id, remembered)
    return submit


def _join_incident(
    ivr: IvrSetting, tx: StepTransaction, call: CallColumns, incident_id: int, now: datetime
) -> int | None:
    """The caller joins a known incident (`incidents.store.join_call`, through the ORM):
    the request's id, or None when the incident is closed."""
    session = tx.session
    orm_call = session.get_one(Call, call.id, populate_existing=True, options=_WITH_WHO)
    facts = calls.caller_facts(orm_call, sms_foreign=ivr.settings.sms_foreign)
    joined = incidents.join_call(
        session,
        orm_call,
        incident_id,
        now=now,
        calendar=ivr.calendar,
        sms_reachable=facts.sms_reachable and ivr.settings.sms_configured,
    )
    session.flush()  # the incident's link written before the step's next Core statements
    return joined.id if joined is not None else None


def _keep_recording_on_row(
    connection: Connection, call: CallColumns, recording: RecordingRef, kind: str, now: datetime
) -> int | None:
    """Keep a recording on the call (idempotent by SID) with Core
    (`intake.add_recording_to_row`); the request id to re-queue when the ticket already
    exists (the job attaches it), else None."""
    try:
        return intake.add_recording_to_row(
            connection,
            call.id,
            recording_sid=recording.sid or "",
            recording_url=recording.url,
            kind=kind,
            duration=recording.duration,
            now=now,
        )
    except InvalidInput as exc:
        # Not what Twilio sends; the caller goes on, the log says what was refused.
        log.warning("recording refused: %s", exc, extra={"call_sid": call.call_sid})
        calls.record_event(connection, call.id, "recording_refused", now, reason=str(exc))
        return None


def _log_step(
    tx: StepTransaction,
    call: Call | int,
    webhook: VoiceWebhook,
    result: StepResult,
    now: datetime,
    created: bool,
) -> None:
    """The step's event: after the call's pending ORM changes when the ORM holds the call,
    else (the hot path) with one INSERT by the call's id."""
    event = webhook.event
    recording = event.recording
    fields: dict[str, Any] = {
        "step": event.step or "start",
        "digits": event.digits,
        "speech": event.speech,
        "turn": event.turn,
        "confidence": event.confidence,
        "recording_sid": recording.sid if recording else None,
        "recording_url": recording.url if recording else None,
        "new_call": created or None,
        "next_step": result.state.step,
        **result.note,
        **webhook.extra,
    }
    if isinstance(call, Call):
        calls.record_event(tx.session, call, _event_kind(event), now, **fields)
    else:
        calls.record_event(tx.connection, call, _event_kind(event), now, **fields)


def _event_kind(event: IvrEvent) -> str:
    if event.kind == "start":
        return "incoming"
    if event.recording is not None:
        return "record"
    if event.step == "ticket_wait":
        return "poll"
    if event.silent:
        return "silence"
    return "gather"


# Built once: building and keying a statement costs as much as running it on SQLite.
_TICKET_REQUEST_OF_CALL = (
    select(TicketRequest)
    .where(TicketRequest.call_id == bindparam("call_id"))
    .execution_options(populate_existing=True)
)


_REQUESTED_TICKET_OF_CALL = select(
    TicketRequest.ticket_number, TicketRequest.status, TicketRequest.draft
).where(TicketRequest.call_id == bindparam("call_id"))


def _ticket_request(session: Session, call_id: int | None) -> TicketRequest | None:
    if call_id is None:
        return None
    return session.scalars(_TICKET_REQUEST_OF_CALL, {"call_id": call_id}).one_or_none()


class _CallLookups:
    """The engine's view of tickets: the portal (bounded in time) and the call's own
    ticket request (read fresh: the job writes its number from another connection)."""

    def __init__(
        self,
        portal: Callable[[], Portal],
        engine: Engine,
        tx: StepTransaction,
        call_id: int | None,
        call_sid: str,
        *,
        contact_id: int | None = None,
        caller_e164: str | None = None,
    ) -> None:
        self._portal = portal
        self._engine = engine
        self._tx = tx
        self._call_id = call_id
        self._call_sid = call_sid
        self._contact_id = contact_id
        self._caller_e164 = caller_e164

    def ticket(self, number: str, *, history: bool = False) -> TicketLookup:
        # The engine says a ticket's status and deadline, never its history: only
        # `objection_recorded` reads it.
        try:
            view = _ask_portal(
                self._portal(),
                self._engine,
                PORTAL_LOOKUP_SECONDS,
                lambda portal: portal.get_ticket(number, history=history),
            )
        except TicketNotFound:
            return TicketLookup("not_found")
        except Exception as exc:
            log.warning(
                "portal lookup of ticket %s failed: %r",
                number,
                exc,
                extra={"call_sid": self._call_sid},
            )
            return TicketLookup("unavailable")
        return TicketLookup("found", view)

    def objection_recorded(self, number: str) -> bool:
        lookup = self.ticket(number, history=True)
        expected = objection_entry(self._call_sid)
        return lookup.view is not None and any(
            entry.text == expected for entry in lookup.view.history
        )

    def open_tickets(self) -> tuple[TicketView, ...]:
        if self._contact_id is None and self._caller_e164 is None:
            return ()
        contact_id, caller = self._contact_id, self._caller_e164
        try:
            return _ask_portal(
                self._portal(),
                self._engine,
                OPEN_TICKETS_SECONDS,
                # The offer says each ticket's number and status: no history.
                lambda portal: portal.open_tickets(
                    contact_id=contact_id, caller=caller, limit=3, history=False
                ),
            )
        except Exception as exc:
            # The caller is greeted as anyone else: the main menu has the status path.
            log.warning(
                "portal lookup of open tickets failed: %r", exc, extra={"call_sid": self._call_sid}
            )
            return ()

    def requested_ticket(self) -> RequestedTicket | None:
        if self._call_id is None:
            return None
        # Three columns read fresh with Core: a step polling for its ticket number opens no
        # ORM session for it.
        request = (
            self._tx.reading_connection()
            .execute(_REQUESTED_TICKET_OF_CALL, {"call_id": self._call_id})
            .one_or_none()
        )
        if request is None:
            return None
        draft = request.draft or {}
        return RequestedTicket(
            number=request.ticket_number,
            failed=request.status == "failed",
            first_stage_due=_iso(draft.get("first_stage_due")),
            resolution_due=_iso(draft.get("resolution_due")),
        )


def _iso(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _ask_portal(portal: Portal, engine: Engine, seconds: float, ask: Callable[[Portal], T]) -> T:
    """The read `ask(portal)`, or TimeoutError once the caller has waited `seconds` for it.

    Asked on a lookup thread (`_on_a_lookup_thread`): on PostgreSQL the watchdog cuts every
    connection an overdue thread holds, so the lookup must not share the thread of the
    step, whose own connection it would take down with it. The one exception is the
    built-in portal on SQLite, asked on the request's thread: no watchdog there, and a
    read in WAL mode waits for no writer, so a thread would bound nothing and cost every
    identified caller's first webhook a hand-off between threads (~0.3 ms of CPU, measured
    with `scripts/profile_ivr_step.py`)."""
    if portal.reads_own_database and guard_of(engine) is None:
        return ask(portal)
    return _on_a_lookup_thread(engine, seconds, lambda: ask(portal))


def _on_a_lookup_thread(engine: Engine, seconds: float, fn: Callable[[], T]) -> T:
    """`fn()` on a lookup thread with the database deadline armed there (the request's is
    its own thread's), or TimeoutError once the caller has waited `seconds`."""

    def bounded_fn() -> T:
        with bounded(engine, seconds):
            return fn()

    return _within(seconds, bounded_fn)


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """`fn()`, or TimeoutError after `seconds` (the call goes on in the background and its
    result is dropped): a caller waits for the portal no longer than that."""
    outcome: dict[str, Any] = {}
    done = threading.Event()
    abandoned = threading.Event()

    def run() -> None:
        if abandoned.is_set():
            return  # waited for in the queue past its deadline: nobody wants it now
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc
        finally:
            done.set()

    _LOOKUP_THREADS.run(run)
    if not done.wait(seconds):
        abandoned.set()
        raise TimeoutError(f"no answer within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


class _LookupThreads:
    """Daemon threads for `_within`, started as needed (at most `limit`) and reused: a
    first webhook would otherwise start a thread for its portal lookup every time, which
    costs CPU and, on a busy machine, waits for the new thread to be scheduled. Daemon, as
    the one-thread-per-lookup version was: a lookup stuck on a hung portal never holds up
    the process's exit. Work waits in a queue when all are busy (its own deadline still
    runs). A forked child starts its own."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._guard = threading.Lock()
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._pid = 0
        self._threads = 0
        # Threads waiting for work nobody has handed them yet; work queued with no thread
        # to take it (all busy, at the limit). At most one of the two is above zero.
        self._idle = 0
        self._waiting = 0

    def run(self, work: Callable[[], None]) -> None:
        with self._guard:
            if self._pid != os.getpid():  # none yet, or inherited from a parent: none here
                self._pid, self._threads, self._idle, self._waiting = os.getpid(), 0, 0, 0
                self._queue = queue.SimpleQueue()
            self._queue.put(work)
            if self._idle:
                self._idle -= 1
            elif self._threads < self._limit:
                self._threads += 1
                threading.Thread(
                    target=self._serve, args=(self._queue,), name="ivr-portal-lookup", daemon=True
                ).start()
            else:
                self._waiting += 1

    def _serve(self, work_queue: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            work = work_queue.get()
            try:
                work()
            except BaseException:  # noqa: BLE001 - `_within`'s work keeps its own errors
                log.exception("portal lookup thread: unexpected error")
            with self._guard:
                if self._waiting:
                    self._waiting -= 1  # the next get() takes queued work
                else:
                    self._idle += 1


# As many as a web process serves requests at once (gunicorn's threads), and a few more.
_LOOKUP_THREADS = _LookupThreads(limit=16)


# ------------------------------------------------------------------ callbacks


@dataclass(frozen=True)
class CallEnd:
    """How a finished call was closed in the log."""

    outcome: str
    ticket_request_id: int | None = None
    # An urgent call hung up before a word, from a number we can call back: the on-duty
    # specialist gets one SMS (queued after commit).
    missed_urgent_call_id: int | None = None


def record_status(
    cycle: StepCycle, callback: StatusCallback, *, calendar: BusinessCalendar
) -> CallEnd | None:
    """Apply a call status callback; when it ends the call, close the call's log.

    Returns how the call was closed (None when this callback did not end it). A call with
    a row is served from the lock's columns with Core statements; only a call that must
    get its interrupted ticket (or has no row yet) is loaded into the ORM.
    """

    def decide(tx: StepTransaction) -> CallEnd | None:
        locked = tx.call
        if locked is None:
            end = _status_of_new_row(tx, callback, calendar)
        else:
            end = _status_of_row(tx, locked, callback, calendar)
        if end is None:
            return None
        if end.ticket_request_id is not None:
            tx.submit_ticket_requests([end.ticket_request_id])
        if end.missed_urgent_call_id is not None:
            call_id = end.missed_urgent_call_id
            # Not lost if it cannot be queued: the outbox sweep finds it
            # (`routing.alerts.calls_with_missed_urgent_due`).
            tx.after_commit(lambda: tx.jobs().submit_missed_urgent_sms(call_id))
        return end

    return cycle.run(callback.call_sid, decide)


def _status_of_row(
    tx: StepTransaction, locked: CallColumns, callback: StatusCallback, calendar: BusinessCalendar
) -> CallEnd | None:
    connection = tx.connection
    change, _ = calls.apply_status_to_row(connection, locked, callback, now=tx.now)
    if not change.ended:
        return None
    closing = _closing(
        locked,
        callback.status,
        lambda: (
            connection.execute(_REQUESTED_TICKET_OF_CALL, {"call_id": locked.id}).first()
            is not None
        ),
    )
    if closing.changes:
        calls.update_call(connection, locked.id, closing.changes)
    if closing.event is not None:
        kind, step = closing.event
        calls.record_event(connection, locked.id, kind, tx.now, step=step)
    if not closing.interrupted_ticket:
        return closing.end
    call = tx.call_object()
    if call is None:  # pragma: no cover - the row is locked
        raise AssertionError(f"call {locked.call_sid} vanished under its lock")
    return _open_interrupted_ticket(calendar, tx.session, call, tx.now)


def _status_of_new_row(
    tx: StepTransaction, callback: StatusCallback, calendar: BusinessCalendar
) -> CallEnd | None:
    """A status callback for a call with no row yet (its first webhook never came): the
    row is made, through the ORM."""
    session = tx.session
    call, _ = calls.create_call(
        session,
        callback.call_sid,
        now=callback.timestamp or tx.now,
        caller_raw=callback.caller_raw,
        line_raw=callback.line_raw,
    )
    change = calls.apply_status_callback(session, call, callback, now=tx.now)
    if not change.ended:
        return None
    return _close(calendar, session, call, callback.status, tx.now)


def _close(
    calendar: BusinessCalendar, session: Session, call: Call, status: str, now: datetime
) -> CallEnd:
    """Close a finished call's log through the ORM (see `_closing`)."""
    closing = _closing(call, status, lambda: _ticket_request(session, call.id) is not None)
    for key, value in closing.changes.items():
        setattr(call, key, value)
    if closing.event is not None:
        kind, step = closing.event
        calls.record_event(session, call, kind, now, step=step)
    if closing.interrupted_ticket:
        return _open_interrupted_ticket(calendar, session, call, now)
    return closing.end


@dataclass(frozen=True)
class _Closing:
    """How a finished call is closed: its end, the columns to write, the event to add
    (kind, step), and whether it gets its interrupted ticket."""

    end: CallEnd
    changes: dict[str, Any]
    event: tuple[str, str] | None = None
    interrupted_ticket: bool = False


def _closing(
    call: Call | CallColumns, status: str, has_ticket_request: Callable[[], bool]
) -> _Closing:
    """Decide a finished call's outcome. Nothing the caller said is lost: a call that chose
    a ticketed path but hung up before its ticket still gets one, marked interrupted."""
    if call.outcome != Outcome.IN_PROGRESS:
        return _Closing(CallEnd(call.outcome), {})
    state = CallState.from_json(call.state)
    if call.category is None:
        outcome = Outcome.FAILED if status == "failed" else Outcome.ABANDONED
        return _Closing(
            CallEnd(outcome),
            {"category": Category.ABANDONED, "outcome": outcome},
            ("abandoned", state.step),
        )
    if not state.resolved and _nothing_said_after_choice(call, state):
        # Chose a path, then hung up before saying anything it needs: no ticket, no SMS to
        # the caller; logged for a callback. An urgent one from a number we can call back
        # also tells the on-duty specialist.
        urgent = call.category in URGENT_CATEGORIES and call.caller_e164 is not None
        return _Closing(
            CallEnd(Outcome.ABANDONED, missed_urgent_call_id=call.id if urgent else None),
            {"outcome": Outcome.ABANDONED},
            (ABANDONED_AFTER_CHOICE, state.step),
        )
    if call.category in TICKETED_CATEGORIES and not state.resolved and not has_ticket_request():
        return _Closing(
            CallEnd(Outcome.INTERRUPTED),
            {"interrupted": True, "outcome": Outcome.INTERRUPTED},
            interrupted_ticket=True,
        )
    return _Closing(CallEnd(Outcome.COMPLETED), {"outcome": Outcome.COMPLETED})


def _open_interrupted_ticket(
    calendar: BusinessCalendar, session: Session, call: Call, now: datetime
) -> CallEnd:
    session.flush()
    request = intake.open_ticket_request(
        session, call, now=now, calendar=calendar, interrupted=True
    )
    session.flush()
    calls.record_event(
        session, call, "ticket_requested", now, request_id=request.id, interrupted=True
    )
    return CallEnd(Outcome.INTERRUPTED, request.id)


# The first step of each path where nothing has been said yet, per category.
_FIRST_QUESTION: dict[str, str] = {
    Category.INCIDENT: Step.TOPIC,
    Category.CRITICAL: Step.CRITICAL,
    Category.STOLEN: Step.STOLEN_VEHICLES,
}


def _nothing_said_after_choice(call: Call | CallColumns, state: CallState) -> bool:
    """Hung up at the path's first question: a new problem before its topic, a critical
    failure or a stolen vehicle before any answer."""
    if call.category == Category.INCIDENT:
        return call.topic is None and state.step == Step.TOPIC
    return _FIRST_QUESTION.get(call.category or "") == state.step


def record_recording(cycle: StepCycle, status: RecordingStatus, kind: str) -> None:
    """A recording status callback: keep the recording on the call (and its ticket)."""

    def decide(tx: StepTransaction) -> None:
        # On the lock's columns and Core statements: a recording callback only logs and
        # keeps the recording, nothing that needs the ORM call.
        call = tx.call
        if call is None:
            call, _ = calls.insert_call(
                tx.connection, status.call_sid, now=tx.now, caller_raw=None, line_raw=None
            )
        calls.record_event(
            tx.connection,
            call.id,
            "recording_status",
            tx.now,
            status=status.status,
            recording_sid=status.recording.sid,
            duration=status.recording.duration,
            recording_kind=kind,
        )
        if status.status == "completed":
            request_id = _keep_recording_on_row(tx.connection, call, status.recording, kind, tx.now)
            if request_id is not None:
                tx.submit_ticket_requests([request_id])

    cycle.run(status.call_sid, decide)
