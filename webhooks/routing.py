"""Twilio webhooks of on-duty routing: connect a caller to whoever is on duty.

The IVR `<Redirect>`s a call to `/consultation` or `/urgent` (CallSid in the form) once it
is time to reach a person; every later request of the routing comes back here through the
URLs in the TwiML below:

    POST /dial?step=N               the <Dial> of step N ended (DialCallStatus, ...)
    POST /whisper?call=SID&leg=P    a dialled person answered leg P: what they hear first
    POST /whisper/answer?call&leg   their key press (1 accepts)
    POST /leg-status?call&leg       leg P's status callbacks (initiated ... completed)
    POST /voicemail                 the caller's message after nobody took the call

Each view checks the signature, parses the form, calls one function of
`callcenter.routing.chain` on the locked call row, commits, starts the follow-up work and returns
TwiML. A caller never hears an error: if anything fails, they are apologised to and put
through to the duty phone from the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import Blueprint, Response, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from twilio.twiml.voice_response import VoiceResponse

from callcenter.calls.store import lock_call, parse_twilio_timestamp
from callcenter.db.models import Call
from callcenter.errors import QueueUnavailable
from callcenter.ivr import prompts
from callcenter.ivr.twiml import CONTENT_TYPE, LANGUAGE, absolute
from callcenter.routing import chain as routing
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.tickets.notifications import chain_topic_title
from callcenter.vocabulary import ROUTE_PREFIX, recording_status_path, routing_path
from callcenter.web import db_session, services
from webhooks.signature import twilio_signed

log = logging.getLogger(__name__)

bp = Blueprint("routing", __name__, url_prefix=ROUTE_PREFIX)

LEG_EVENTS = "initiated ringing answered completed"
WHISPER_KEY_TIMEOUT = 6

# Deadlock detected, serialization failure: PostgreSQL aborted us; the step can run again.
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})
DB_ATTEMPTS = 3

T = TypeVar("T")
Action = Callable[[Session, Call, Services, datetime], routing.Outcome]


# ---------------------------------------------------------------- views


@bp.post("/consultation")
@twilio_signed
def consultation() -> Response:
    return _caller_step(
        lambda session, call, svc, now: routing.start(
            session,
            call,
            routing.CONSULTATION,
            now=now,
            calendar=svc.calendar,
            settings=svc.settings,
        )
    )


@bp.post("/urgent")
@twilio_signed
def urgent() -> Response:
    return _caller_step(
        lambda session, call, svc, now: routing.start(
            session, call, routing.URGENT, now=now, calendar=svc.calendar, settings=svc.settings
        )
    )


@bp.post("/dial")
@twilio_signed
def dial_result() -> Response:
    step = _int_arg("step")
    form = request.form
    return _caller_step(
        lambda session, call, svc, now: routing.dial_finished(
            session,
            call,
            step if step is not None else -1,
            dial_status=form.get("DialCallStatus", ""),
            dial_call_sid=form.get("DialCallSid") or None,
            call_status=form.get("CallStatus") or None,
            bridged=_bool_or_none(form.get("DialBridged")),
            now=now,
            calendar=svc.calendar,
            settings=svc.settings,
        )
    )


@bp.post("/voicemail")
@twilio_signed
def voicemail() -> Response:
    form = request.form
    return _caller_step(
        lambda session, call, svc, now: routing.voicemail(
            session,
            call,
            recording_sid=form.get("RecordingSid") or None,
            recording_url=form.get("RecordingUrl") or None,
            duration=_int_or_none(form.get("RecordingDuration")),
            now=now,
            settings=svc.settings,
        )
    )


@bp.post("/whisper")
@twilio_signed
def whisper() -> Response:
    call_sid, position = _leg_args()

    def work(session: Session, call: Call | None, now: datetime) -> routing.Whisper | None:
        return routing.whisper(session, call, position, now=now) if call and position else None

    try:
        said = _with_call(call_sid, work)
    except Exception:
        log.exception("whisper for %s leg %s failed; the leg is hung up", call_sid, position)
        said = None
    return _twiml(render_whisper(said, services().settings, call_sid, position or 0))


@bp.post("/whisper/answer")
@twilio_signed
def whisper_answer() -> Response:
    call_sid, position = _leg_args()
    digits = request.form.get("Digits", "")

    def work(session: Session, call: Call | None, now: datetime) -> bool:
        if call is None or position is None:
            return False
        return routing.whisper_answer(session, call, position, digits, now=now)

    try:
        accepted = _with_call(call_sid, work)
    except Exception:
        log.exception("whisper answer for %s leg %s failed", call_sid, position)
        accepted = False
    response = VoiceResponse()
    if accepted:
        # The document ends here, and Twilio bridges the two parties.
        _say(response, prompts.ROUTING_WHISPER_CONNECTING, services().settings)
    else:
        response.hangup()
    return _twiml(response)


@bp.post("/leg-status")
@twilio_signed
def leg_status() -> Response:
    call_sid, position = _leg_args()
    form = request.form
    if position is None or not form.get("CallStatus"):
        return Response("leg and CallStatus are required\n", status=400, mimetype="text/plain")
    status = routing.LegStatus(
        status=form["CallStatus"],
        child_call_sid=form.get("CallSid") or None,
        timestamp=parse_twilio_timestamp(form.get("Timestamp")),
    )

    def work(session: Session, call: Call | None, now: datetime) -> None:
        if call is None:
            log.warning("leg status for unknown call %s", call_sid)
        else:
            routing.leg_status(session, call, position, status, now=now)

    try:
        _with_call(call_sid, work)
    except Exception:
        # A lost status callback only loses a log detail; Twilio need not retry.
        log.exception("leg status for %s leg %s failed", call_sid, position)
    return _twiml(VoiceResponse())


# ---------------------------------------------------------------- plumbing


def _with_call(call_sid: str, work: Callable[[Session, Call | None, datetime], T]) -> T:
    """Run `work` on the call's locked row in one committed transaction.

    A transaction the database aborts to break a deadlock or a serialization conflict
    (the ticket pipeline's jobs lock the same rows in their own order) is run again from
    the start: nothing of it was kept, and the call's stored state decides anew.
    """
    session = db_session()
    for attempt in range(1, DB_ATTEMPTS + 1):
        now = services().clock()
        try:
            call = lock_call(session, call_sid, now=now) if call_sid else None
            result = work(session, call, now)
            session.commit()
            return result
        except DBAPIError as exc:
            session.rollback()
            if attempt == DB_ATTEMPTS or _sqlstate(exc) not in RETRIED_SQLSTATES:
                raise
            log.warning("call %s: %s, running the step again", call_sid, _sqlstate(exc))
        except BaseException:
            session.rollback()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _caller_step(action: Action) -> Response:
    """Run one routing step for the caller's call; never let the caller hear an error."""
    svc = services()
    call_sid = request.form.get("CallSid", "")

    def work(
        session: Session, call: Call | None, now: datetime
    ) -> tuple[int, routing.Outcome] | None:
        return (call.id, action(session, call, svc, now)) if call is not None else None

    try:
        done = _with_call(call_sid, work)
    except Exception:
        log.exception("routing step for %s failed: connecting the duty phone", call_sid)
        return _twiml(emergency(svc.settings))
    if done is None:
        log.error("routing request for unknown call %r: connecting the duty phone", call_sid)
        return _twiml(emergency(svc.settings))
    call_id, outcome = done
    _after_commit(svc, outcome, call_id)
    return _twiml(render(outcome.decision, svc.settings, call_sid))


def _after_commit(svc: Services, outcome: routing.Outcome, call_id: int) -> None:
    """Start the work that must not run before the call's transaction is committed."""
    for request_id in outcome.submit_requests:
        svc.jobs.submit_ticket_request(request_id)
    if outcome.send_alerts:
        try:
            svc.jobs.enqueue(routing.chain_alerts_job, call_id, job_id=f"chain-alerts:{call_id}")
        except QueueUnavailable:
            # Not lost: the outbox sweep finds urgent calls whose alerts are not all sent.
            log.error(
                "could not queue the chain alerts of call %s (Redis is down); the sweep will",
                call_id,
            )


def _leg_args() -> tuple[str, int | None]:
    """(the caller's CallSid, the leg position) of a request on a dialled leg."""
    call_sid = request.args.get("call") or request.form.get("ParentCallSid", "")
    return call_sid, _int_arg("leg")


def _int_arg(name: str) -> int | None:
    return _int_or_none(request.args.get(name))


def _int_or_none(raw: str | None) -> int | None:
    # ASCII digits only: str.isdigit() also admits "²" and other digits int() refuses.
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 10 else None


def _bool_or_none(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    return raw.strip().lower() == "true"


def _url(settings: Settings, path: str, **params: Any) -> str:
    return absolute(routing_path(path, **params), settings.public_base_url)


def _say(parent: Any, text: str, settings: Settings) -> None:
    parent.say(text, voice=settings.tts_voice, language=LANGUAGE)


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response.to_xml()), content_type=CONTENT_TYPE)


# ---------------------------------------------------------------- TwiML


def render(decision: routing.Decision, settings: Settings, call_sid: str) -> VoiceResponse:
    """The TwiML for one routing decision."""
    response = VoiceResponse()
    if isinstance(decision, routing.DialLegs):
        if decision.moving_on:
            _say(response, prompts.ROUTING_NEXT_LEG, settings)
        dial = response.dial(
            action=_url(settings, "/dial", step=decision.step),
            method="POST",
            timeout=decision.timeout,
            ring_tone="ru",
        )
        for leg in decision.legs:
            dial.number(
                leg.number,
                url=_url(settings, "/whisper", call=call_sid, leg=leg.position),
                method="POST",
                status_callback=_url(settings, "/leg-status", call=call_sid, leg=leg.position),
                status_callback_event=LEG_EVENTS,
                status_callback_method="POST",
            )
    elif isinstance(decision, routing.OfferVoicemail):
        if decision.kind == routing.URGENT:
            text = prompts.ROUTING_NOBODY_ACCEPTED
            if decision.ticket_number:
                text += " " + prompts.ROUTING_TICKET_NUMBER.format(
                    number=_say_digits(decision.ticket_number)
                )
        else:
            text = prompts.ROUTING_NO_ANSWER
        _say(response, text + " " + prompts.ROUTING_LEAVE_MESSAGE, settings)
        response.record(
            action=_url(settings, "/voicemail"),
            method="POST",
            max_length=routing.VOICEMAIL_MAX_SECONDS,
            finish_on_key="#",
            timeout=10,
            play_beep=True,
            # The IVR's recording callback keeps it even if this action is never reached.
            recording_status_callback=absolute(
                recording_status_path("voicemail"), settings.public_base_url
            ),
            recording_status_callback_method="POST",
        )
        # An empty recording is not posted; Twilio goes on to here.
        response.redirect(_url(settings, "/voicemail"), method="POST")
    else:
        goodbye = {
            "connected": prompts.GOODBYE,
            "voicemail": prompts.ROUTING_MESSAGE_THANKS,
            "no_message": prompts.ROUTING_NO_MESSAGE,
        }.get(decision.reason)
        if goodbye:
            _say(response, goodbye, settings)
        response.hangup()
    return response


def render_whisper(
    said: routing.Whisper | None, settings: Settings, call_sid: str, position: int
) -> VoiceResponse:
    """What the person answering a leg hears: the announcement and "press 1", said twice;
    then the leg is hung up, as silence (a voicemail, a pocket) is not an answer."""
    response = VoiceResponse()
    if said is None:
        response.hangup()
        return response
    text = whisper_text(said)
    action = _url(settings, "/whisper/answer", call=call_sid, leg=position)
    for _ in range(2):
        gather = response.gather(
            input="dtmf", num_digits=1, timeout=WHISPER_KEY_TIMEOUT, action=action, method="POST"
        )
        _say(gather, text, settings)
    response.hangup()
    return response


def emergency(settings: Settings) -> VoiceResponse:
    """When routing itself fails: apologise and put the caller through to the duty phone."""
    response = VoiceResponse()
    _say(response, prompts.APOLOGY, settings)
    response.dial(settings.duty_phone, timeout=settings.dial_leg_timeout * 2)
    return response


def whisper_text(said: routing.Whisper) -> str:
    ticket = (
        prompts.ROUTING_TICKET.format(number=said.ticket_number)
        if said.ticket_number
        else prompts.ROUTING_TICKET_PENDING
    )
    text = prompts.ROUTING_WHISPER.format(
        topic=chain_topic_title(said.topic),
        ticket=ticket,
        client=said.client or prompts.ROUTING_CLIENT_UNKNOWN,
    )
    if said.vehicles:
        text += " " + prompts.ROUTING_WHISPER_VEHICLES.format(plates=", ".join(said.vehicles))
    return text + " " + prompts.ROUTING_WHISPER_PRESS_1


def _say_digits(number: str) -> str:
    from callcenter.regulation.speech import say_digits

    try:
        return say_digits(number)
    except ValueError:
        return number
