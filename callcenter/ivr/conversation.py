"""Serving one Twilio voice webhook of a call, in one transaction.

`answer` runs one IVR step: lock (or create) the call's row → read its state → the step
engine → apply the actions (collected answers, recording, ticket request) → save the state
and one event → commit → queue the ticket job → TwiML. `record_status` and
`record_recording` do the same for status and recording callbacks; a call that ends
without reaching its ticket gets one here, marked interrupted.

Flask-free: the views in `webhooks.voice` parse the form and call these.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from callcenter.calls import store as calls
from callcenter.calls.store import StatusCallback
from callcenter.db import transaction
from callcenter.db.deadline import bounded
from callcenter.db.models import Call, TicketRequest
from callcenter.errors import InvalidInput, TicketNotFound
from callcenter.ivr.engine import (
    Action,
    CallFacts,
    CallState,
    IvrEvent,
    KeepRecording,
    MarkPhoneDuplicate,
    OpenTicket,
    RecordingRef,
    Remember,
    RequestedTicket,
    StepContext,
    StepResult,
    TicketLookup,
    advance,
)
from callcenter.ivr.twiml import render
from callcenter.ivr.webhook_params import RecordingStatus, VoiceWebhook
from callcenter.portal.protocol import TicketView
from callcenter.services import Services
from callcenter.vocabulary import TICKETED_CATEGORIES, Category, Outcome

log = logging.getLogger(__name__)

# How long a step may wait for the portal (ticket lookups) before saying it is unavailable.
PORTAL_LOOKUP_SECONDS = 2.0

T = TypeVar("T")


# ------------------------------------------------------------------ IVR steps

_writer_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_writer_locks_guard = threading.Lock()


@contextmanager
def one_writer(engine: Engine) -> Iterator[None]:
    """On SQLite, let this process's webhook transactions write one at a time.

    SQLite admits one writer; a second one polls the file lock with growing sleeps (tens of
    milliseconds each), which puts long tails on webhook latency under concurrent calls.
    Queueing on a lock hands over as soon as the writer commits. Other processes (a CLI,
    the RQ worker) still meet at the file lock. PostgreSQL locks rows: nothing to do.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    with _writer_locks_guard:
        lock = _writer_locks.setdefault(engine, threading.Lock())
    with lock:
        yield


def answer(services: Services, webhook: VoiceWebhook) -> str:
    """Run one IVR step of the call and return the TwiML for the caller.

    Most steps (a menu answer, a repeat, a poll for the ticket number) only move the call's
    state and remember an answer: those run on the hot path, Core statements on the locked
    row's columns. The first webhook of a call (caller identification) and the steps that
    open a ticket or keep a recording go through the ORM.
    """
    now = services.clock()
    submit: list[int] = []
    with one_writer(services.engine), _StepTransaction.begin(services) as tx:
        locked = calls.lock_call_for_step(tx.connection, webhook.call_sid, now=now)
        if locked is None:
            session = tx.session
            call, created = calls.get_or_create_call(
                session, webhook.call_sid, now=now, caller_raw=webhook.caller, line_raw=webhook.line
            )
            state = CallState.from_json(call.state)
            result = advance(state, webhook.event, _context(services, tx, call, now))
            submit = _apply_to_orm(services, session, call, result, now)
            _log_step(tx, call, webhook, result, now, created)
        else:
            state = CallState.from_json(locked.state)
            result = advance(state, webhook.event, _context(services, tx, locked, now))
            remembered = [action for action in result.actions if isinstance(action, Remember)]
            if len(remembered) == len(result.actions):
                changes: dict[str, Any] = {
                    action.field: _remembered(action) for action in remembered
                }
                changes["state"] = _merged_state(locked.state, result)
                changes["updated_at"] = now
                calls.update_call(tx.connection, locked.id, changes)
                _log_step(tx, locked.id, webhook, result, now, False)
            else:
                call = tx.session.get_one(Call, locked.id)
                submit = _apply_to_orm(services, tx.session, call, result, now)
                _log_step(tx, call, webhook, result, now, False)
    queue_ticket_jobs(services, submit, webhook.call_sid)
    settings = services.settings
    return render(result.reply, voice=settings.tts_voice, public_base_url=settings.public_base_url)


class _StepTransaction:
    """A step's transaction: a Core connection, and an ORM session on it only for the
    steps that need one (building a session costs as much as the hot path's statements).

    The session joins the connection's transaction (rollback_only: its commit is a flush,
    its rollback the whole step's), so the call, its event and any ticket request commit
    or roll back as one, with the connection.
    """

    def __init__(self, services: Services, connection: Connection) -> None:
        self._services = services
        self.connection = connection
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self._services.sessions(
                bind=self.connection, join_transaction_mode="rollback_only"
            )
        return self._session

    @classmethod
    @contextmanager
    def begin(cls, services: Services) -> Iterator[_StepTransaction]:
        with services.engine.begin() as connection:
            tx = cls(services, connection)
            try:
                yield tx
                if tx._session is not None:
                    tx._session.commit()  # a flush: the connection commits on the way out
            finally:
                if tx._session is not None:
                    tx._session.close()


def _apply_to_orm(
    services: Services, session: Session, call: Call, result: StepResult, now: datetime
) -> list[int]:
    submit = _apply(services, session, call, result.actions, now)
    calls.save_state(session, call, _merged_state(call.state, result), now=now)
    return submit


def _merged_state(stored: dict[str, Any] | None, result: StepResult) -> dict[str, Any]:
    """The IVR's state over the stored JSON: other owners keep their keys in it (routing,
    recording SIDs)."""
    return {**(stored or {}), **result.state.to_json()}


def _remembered(action: Remember) -> Any:
    return list(action.value) if action.field == "vehicles" else action.value


def _context(
    services: Services, tx: _StepTransaction, call: Call | calls.LockedCall, now: datetime
) -> StepContext:
    from callcenter.regulation.speech import say_deadline, say_digits

    facts = calls.caller_facts(call, sms_foreign=services.settings.sms_foreign)
    return StepContext(
        now=now,
        calendar=services.calendar,
        support_name=services.settings.support_name,
        ticket_wait_seconds=services.settings.ticket_wait_seconds,
        call=CallFacts(
            category=call.category,
            topic=call.topic,
            vehicles=tuple(call.vehicles or ()),
            known_caller=facts.known,
            organisation_id=facts.organisation_id,
            # Promise an SMS only when one can be sent: a mobile, and a Twilio account.
            sms_reachable=facts.sms_reachable and services.settings.sms_configured,
        ),
        lookups=_CallLookups(services, tx, call.id, call.call_sid),
        say_digits=say_digits,
        say_deadline=lambda due: say_deadline(due, now),
    )


def _apply(
    services: Services, session: Session, call: Call, actions: tuple[Action, ...], now: datetime
) -> list[int]:
    """Apply the engine's actions to the call in this transaction; ticket request ids to
    queue after commit."""
    from callcenter.tickets import intake

    submit: list[int] = []
    for action in actions:
        if isinstance(action, Remember):
            setattr(call, action.field, _remembered(action))
        elif isinstance(action, KeepRecording):
            request_id = _keep_recording(session, call, action.recording, action.kind, now)
            if request_id is not None:
                submit.append(request_id)
        elif isinstance(action, OpenTicket):
            session.flush()
            request = intake.open_ticket_request(session, call, now=now, calendar=services.calendar)
            session.flush()
            submit.append(request.id)
            calls.record_event(session, call, "ticket_requested", now, request_id=request.id)
        elif isinstance(action, MarkPhoneDuplicate):
            session.flush()
            request = intake.mark_phone_duplicate(
                session, call, action.ticket_number, now=now, calendar=services.calendar
            )
            session.flush()
            submit.append(request.id)
            calls.record_event(
                session,
                call,
                "phone_duplicate",
                now,
                ticket_number=action.ticket_number,
                request_id=request.id,
            )
    return submit


def _keep_recording(
    session: Session, call: Call, recording: RecordingRef, kind: str, now: datetime
) -> int | None:
    """Keep a recording on the call (idempotent by SID); the request id to re-queue when the
    ticket already exists (the job attaches it), else None."""
    from callcenter.tickets import intake

    try:
        request = intake.add_recording(
            session,
            call,
            recording_sid=recording.sid or "",
            recording_url=recording.url,
            kind=kind,
            duration=recording.duration,
            now=now,
        )
    except InvalidInput as exc:
        # Not what Twilio sends; the caller goes on, the log says what was refused.
        log.warning("recording refused: %s", exc, extra={"call_sid": call.call_sid})
        calls.record_event(session, call, "recording_refused", now, reason=str(exc))
        return None
    return request.id if request is not None else None


def queue_ticket_jobs(services: Services, request_ids: list[int], call_sid: str) -> None:
    """Queue the ticket jobs after commit. Never fails the webhook: a request that could not
    be queued stays pending in the outbox and the sweep picks it up."""
    for request_id in request_ids:
        try:
            services.jobs.submit_ticket_request(request_id)
        except Exception:
            log.exception(
                "could not queue ticket request %s; the outbox sweep will",
                request_id,
                extra={"call_sid": call_sid, "ticket_request_id": request_id},
            )


def _log_step(
    tx: _StepTransaction,
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
        calls.append_event(tx.session, call, _event_kind(event), now, **fields)
    else:
        calls.insert_event(tx.connection, call, _event_kind(event), now, **fields)


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


def _ticket_request(session: Session, call_id: int | None) -> TicketRequest | None:
    if call_id is None:
        return None
    return session.scalars(
        select(TicketRequest)
        .where(TicketRequest.call_id == call_id)
        .execution_options(populate_existing=True)
    ).one_or_none()


class _CallLookups:
    """The engine's view of tickets: the portal (bounded in time) and the call's own
    ticket request (read fresh: the job writes its number from another connection)."""

    def __init__(
        self, services: Services, tx: _StepTransaction, call_id: int | None, call_sid: str
    ) -> None:
        self._services = services
        self._tx = tx
        self._call_id = call_id
        self._call_sid = call_sid

    def ticket(self, number: str) -> TicketLookup:
        portal = self._services.portal
        engine = self._services.engine

        def lookup() -> TicketView:
            # Its own thread: the request's database deadline does not reach it, and the
            # built-in portal reads the database.
            with bounded(engine, PORTAL_LOOKUP_SECONDS):
                return portal.get_ticket(number)

        try:
            view = _within(PORTAL_LOOKUP_SECONDS, lookup)
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

    def requested_ticket(self) -> RequestedTicket | None:
        request = _ticket_request(self._tx.session, self._call_id)
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


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """`fn()`, or TimeoutError after `seconds` (the call goes on in the background and its
    result is dropped): a caller waits for the portal no longer than that."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="ivr-portal-lookup", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"no answer within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


# ------------------------------------------------------------------ callbacks


@dataclass(frozen=True)
class CallEnd:
    """How a finished call was closed in the log."""

    outcome: str
    ticket_request_id: int | None = None


def record_status(services: Services, callback: StatusCallback) -> CallEnd | None:
    """Apply a call status callback; when it ends the call, close the call's log.

    Returns how the call was closed (None when this callback did not end it).
    """
    now = services.clock()
    with one_writer(services.engine), transaction(services.sessions) as session:
        call, _ = calls.get_or_create_call(
            session,
            callback.call_sid,
            now=callback.timestamp or now,
            caller_raw=callback.caller_raw,
            line_raw=callback.line_raw,
        )
        change = calls.apply_status_callback(session, call, callback, now=now)
        end = _close(services, session, call, callback.status, now) if change.ended else None
    if end is not None and end.ticket_request_id is not None:
        queue_ticket_jobs(services, [end.ticket_request_id], callback.call_sid)
    return end


def _close(services: Services, session: Session, call: Call, status: str, now: datetime) -> CallEnd:
    """Decide a finished call's outcome. Nothing the caller said is lost: a call that chose
    a ticketed path but hung up before its ticket still gets one, marked interrupted."""
    from callcenter.tickets import intake

    if call.outcome != Outcome.IN_PROGRESS:
        return CallEnd(call.outcome)
    state = CallState.from_json(call.state)
    if call.category is None:
        call.category = Category.ABANDONED
        call.outcome = Outcome.FAILED if status == "failed" else Outcome.ABANDONED
        calls.record_event(session, call, "abandoned", now, step=state.step)
        return CallEnd(call.outcome)
    if (
        call.category in TICKETED_CATEGORIES
        and not state.resolved
        and _ticket_request(session, call.id) is None
    ):
        call.interrupted = True
        call.outcome = Outcome.INTERRUPTED
        session.flush()
        request = intake.open_ticket_request(
            session, call, now=now, calendar=services.calendar, interrupted=True
        )
        session.flush()
        calls.record_event(
            session, call, "ticket_requested", now, request_id=request.id, interrupted=True
        )
        return CallEnd(call.outcome, request.id)
    call.outcome = Outcome.COMPLETED
    return CallEnd(call.outcome)


def record_recording(services: Services, status: RecordingStatus, kind: str) -> None:
    """A recording status callback: keep the recording on the call (and its ticket)."""
    now = services.clock()
    request_id: int | None = None
    with one_writer(services.engine), transaction(services.sessions) as session:
        call, _ = calls.get_or_create_call(
            session, status.call_sid, now=now, caller_raw=None, line_raw=None
        )
        calls.record_event(
            session,
            call,
            "recording_status",
            now,
            status=status.status,
            recording_sid=status.recording.sid,
            duration=status.recording.duration,
            recording_kind=kind,
        )
        if status.status == "completed":
            request_id = _keep_recording(session, call, status.recording, kind, now)
    if request_id is not None:
        queue_ticket_jobs(services, [request_id], status.call_sid)
