"""On-duty routing's steps of a call, served by the step cycle (`callcenter.calls.step_cycle`).

The twin of `callcenter.ivr.conversation`: each function takes the cycle, one typed event
(`callcenter.routing.webhook_params`) and what it uses, runs one decision of the dial
state machine (`callcenter.routing.chain`) on the locked call, and returns what Twilio
plays (`callcenter.routing.replies`). The cycle commits, then queues what the decision
asked for: ticket jobs, the chain alerts.

A caller never meets a dead end: a call routing does not know is put through to the duty
phone with the emergency reply (`callcenter.ivr.fallback.apology_reply`), which ends in a
voicemail when nobody answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from callcenter.calls.step_cycle import StepCycle, StepTransaction
from callcenter.calls.store import CallColumns, caller_facts, record_event
from callcenter.errors import QueueUnavailable
from callcenter.ivr.fallback import apology_reply
from callcenter.ivr.reply import Reply
from callcenter.routing import chain, replies
from callcenter.routing.webhook_params import (
    CallbackAnswer,
    CallerRedirect,
    DialEnded,
    KbAnswer,
    LegRequest,
    LegStatusReport,
    VoicemailLeft,
)

if TYPE_CHECKING:
    from callcenter.db.models import Call
    from callcenter.ports import JobRunner
    from callcenter.regulation.calendar import BusinessCalendar
    from callcenter.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingSetting:
    """What routing's caller steps use besides the database."""

    calendar: BusinessCalendar
    settings: Settings


# A caller step's decision on the locked call (its columns: a decision that needs the ORM
# object loads it with `tx.call_object`).
Decide = Callable[[StepTransaction, CallColumns], chain.Outcome]


def _orm_call(tx: StepTransaction) -> Call:
    call = tx.call_object()
    if call is None:  # pragma: no cover - the step cycle found the row locked
        raise LookupError(f"call {tx.call_sid} has no row")
    return call


def _loader(tx: StepTransaction) -> chain.LoadCall:
    return lambda: (tx.session, _orm_call(tx))


def connect_caller(
    cycle: StepCycle, event: CallerRedirect, kind: str, routing: RoutingSetting
) -> Reply:
    """The IVR handed the call over: find who is on duty and ring the first step."""

    def decide(tx: StepTransaction, call: CallColumns) -> chain.Outcome:
        return chain.begin_routing(
            tx.connection,
            call,
            kind,
            now=tx.now,
            calendar=routing.calendar,
            settings=routing.settings,
            load=_loader(tx),
        )

    return _caller_step(cycle, event.call_sid, routing.settings, decide)


def take_dial_result(cycle: StepCycle, event: DialEnded, routing: RoutingSetting) -> Reply:
    """A `<Dial>` ended: connected, the next step, or nobody accepted."""

    def decide(tx: StepTransaction, call: CallColumns) -> chain.Outcome:
        return chain.dial_finished(
            tx.connection,
            call,
            event.step if event.step is not None else -1,
            dial_status=event.dial_status,
            dial_call_sid=event.dial_call_sid,
            call_status=event.call_status,
            bridged=event.bridged,
            now=tx.now,
            calendar=routing.calendar,
            settings=routing.settings,
            load=_loader(tx),
        )

    return _caller_step(cycle, event.call_sid, routing.settings, decide)


def take_voicemail(cycle: StepCycle, event: VoicemailLeft, routing: RoutingSetting) -> Reply:
    """The caller's message after nobody took the call (or their silence)."""

    def decide(tx: StepTransaction, call: CallColumns) -> chain.Outcome:
        return chain.voicemail(
            tx.connection,
            call,
            recording_sid=event.recording_sid,
            recording_url=event.recording_url,
            duration=event.duration,
            now=tx.now,
            settings=routing.settings,
            load=_loader(tx),
        )

    return _caller_step(cycle, event.call_sid, routing.settings, decide)


def take_callback_answer(cycle: StepCycle, event: CallbackAnswer, routing: RoutingSetting) -> Reply:
    """The caller's answer to the call-back offer: in the queue, or the voicemail."""

    def decide(tx: StepTransaction, _: CallColumns) -> chain.Outcome:
        return chain.callback_answer(
            tx.session,
            _orm_call(tx),
            event.digits,
            now=tx.now,
            calendar=routing.calendar,
            settings=routing.settings,
        )

    return _caller_step(cycle, event.call_sid, routing.settings, decide)


def announce_to_leg(cycle: StepCycle, event: LegRequest) -> Reply:
    """What the person answering a leg hears (hung up when the leg must not connect)."""

    def decide(tx: StepTransaction) -> chain.Whisper | None:
        if tx.call is None or not event.position:
            return None
        return chain.whisper(tx.connection, tx.call, event.position, now=tx.now)

    said = cycle.run(event.call_sid, decide)
    return replies.whisper_reply(said, event.call_sid, event.position or 0)


def take_leg_answer(cycle: StepCycle, event: LegRequest) -> Reply:
    """The key pressed after the whisper: "1" bridges the call, anything else hangs up."""

    def decide(tx: StepTransaction) -> bool:
        if tx.call is None or event.position is None:
            return False
        return chain.whisper_answer(
            tx.connection, tx.call, event.position, event.digits, now=tx.now
        )

    # The document ends after "connecting", and Twilio bridges the two parties.
    return replies.CONNECTING if cycle.run(event.call_sid, decide) else replies.HANG_UP


def record_leg_status(cycle: StepCycle, event: LegStatusReport) -> None:
    """Log one status callback of a dialled leg (it never advances the chain)."""

    def decide(tx: StepTransaction) -> None:
        if tx.call is None:
            log.warning("leg status for unknown call %s", event.call_sid)
            return
        chain.leg_status(tx.connection, tx.call, event.position, event.status, now=tx.now)

    cycle.run(event.call_sid, decide)


def send_kb_link(cycle: StepCycle, event: KbAnswer) -> Reply:
    """The caller's answer to the knowledge base offer: the SMS is queued (said only when
    it was), or a plain goodbye."""

    def step(tx: StepTransaction) -> bool | None:
        call = tx.call
        if call is None or not event.wants:
            return None
        record_event(tx.connection, call.id, "kb_link_requested", tx.now)
        try:
            tx.jobs().submit_kb_link_sms(call.id)
        except QueueUnavailable:
            log.error("could not queue the knowledge base SMS of call %s", event.call_sid)
            return False
        return True

    return replies.kb_reply(cycle.run(event.call_sid, step))


# A consultation's caller is offered the knowledge base once it ends like this.
_KB_AFTER = frozenset({"connected", "voicemail", "no_message"})


def _offers_kb(
    call: CallColumns, decision: chain.Goodbye | chain.CallbackBooked, settings: Settings
) -> bool:
    """The knowledge base (regulation, section VII) helps a consultation's caller: after a
    specialist answered or when nobody was free — to a number an SMS reaches.

    `call` is the row as locked, before the step: a routing's kind never changes once set
    (a step that ends a routing found it set), and routing never changes the caller."""
    if isinstance(decision, chain.Goodbye) and decision.reason not in _KB_AFTER:
        return False
    routing = chain.routing_state(call)
    if routing is None or routing.kind != chain.CONSULTATION or not settings.sms_configured:
        return False
    return caller_facts(call, sms_foreign=settings.sms_foreign).sms_reachable


def _caller_step(cycle: StepCycle, call_sid: str, settings: Settings, decide: Decide) -> Reply:
    def step(tx: StepTransaction) -> chain.Decision | None:
        call = tx.call
        if call is None:
            return None
        outcome = decide(tx, call)
        tx.submit_ticket_requests(outcome.submit_requests)
        if outcome.send_alerts:
            call_id = call.id
            tx.after_commit(lambda: queue_chain_alerts(tx.jobs(), call_id))
        decision = outcome.decision
        if isinstance(decision, chain.Goodbye | chain.CallbackBooked) and _offers_kb(
            call, decision, settings
        ):
            return replace(decision, offer_kb=True)
        return decision

    decision = cycle.run(call_sid, step)
    if decision is None:
        log.error("routing request for unknown call %r: connecting the duty phone", call_sid)
        return apology_reply(settings.duty_phone)
    return replies.decision_reply(decision, call_sid)


def queue_chain_alerts(jobs: JobRunner, call_id: int) -> None:
    try:
        jobs.submit_chain_alerts(call_id)
    except QueueUnavailable:
        # Not lost: the outbox sweep finds urgent calls whose alerts are not all sent.
        log.error(
            "could not queue the chain alerts of call %s (Redis is down); the sweep will",
            call_id,
        )
