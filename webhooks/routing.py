"""Twilio webhooks of on-duty routing: verify the signature → typed event → one routing
step → TwiML, as `webhooks.voice` serves the IVR.

The IVR `<Redirect>`s a call to `/consultation` or `/urgent` (CallSid in the form) once it
is time to reach a person; every later request comes back through the paths of our own
TwiML (see `callcenter.routing.replies`). A malformed request is a 400. A caller never
hears an error: if a step fails, they hear the emergency reply (an apology, the duty phone,
then a voicemail); a failing step of a dialled leg hangs that leg up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from flask import Blueprint, Response, request

from callcenter.calls.step_cycle import StepCycle
from callcenter.errors import MalformedWebhook
from callcenter.ivr.fallback import apology_reply
from callcenter.ivr.reply import Reply
from callcenter.routing import chain, replies, steps
from callcenter.routing.webhook_params import (
    CallbackAnswer,
    CallerRedirect,
    DialEnded,
    KbAnswer,
    LegRequest,
    LegStatusReport,
    VoicemailLeft,
)
from callcenter.vocabulary import ROUTE_PREFIX
from callcenter.web import services
from webhooks.serving import bad_request, step_cycle, twiml
from webhooks.signature import twilio_signed

log = logging.getLogger(__name__)

bp = Blueprint("routing", __name__, url_prefix=ROUTE_PREFIX)


@bp.post("/consultation")
@twilio_signed
def route_consultation() -> Response:
    return _connect_caller(chain.CONSULTATION)


@bp.post("/urgent")
@twilio_signed
def route_urgent() -> Response:
    return _connect_caller(chain.URGENT)


def _connect_caller(kind: str) -> Response:
    return _caller_step(
        lambda: CallerRedirect.from_form(request.form),
        lambda cycle, event, routing: steps.connect_caller(cycle, event, kind, routing),
    )


class _CallerEvent(Protocol):
    @property
    def call_sid(self) -> str: ...


_Event = TypeVar("_Event", bound=_CallerEvent)


def _caller_step(
    parse: Callable[[], _Event],
    take: Callable[[StepCycle, _Event, steps.RoutingSetting], Reply],
) -> Response:
    """A step of the caller's own call: the typed event (a malformed one is a 400), the
    routing step, its TwiML — or, if the step fails, the emergency reply."""
    try:
        event = parse()
    except MalformedWebhook as exc:
        return bad_request(exc)
    svc = services()
    routing = steps.RoutingSetting(svc.calendar, svc.settings)
    try:
        return twiml(take(step_cycle(svc), event, routing))
    except Exception:
        return _emergency(event.call_sid)


@bp.post("/dial")
@twilio_signed
def dial_ended() -> Response:
    return _caller_step(
        lambda: DialEnded.from_form(request.form, step=request.args.get("step")),
        steps.take_dial_result,
    )


@bp.post("/voicemail")
@twilio_signed
def voicemail_left() -> Response:
    return _caller_step(lambda: VoicemailLeft.from_form(request.form), steps.take_voicemail)


@bp.post("/callback")
@twilio_signed
def callback_answered() -> Response:
    return _caller_step(lambda: CallbackAnswer.from_form(request.form), steps.take_callback_answer)


@bp.post("/kb")
@twilio_signed
def kb_answered() -> Response:
    try:
        event = KbAnswer.from_form(request.form)
    except MalformedWebhook as exc:
        return bad_request(exc)
    try:
        return twiml(steps.send_kb_link(step_cycle(services()), event))
    except Exception:
        log.exception("knowledge base answer of %s failed", event.call_sid)
        return twiml(replies.kb_reply(None))


@bp.post("/whisper")
@twilio_signed
def leg_answered() -> Response:
    try:
        event = _leg_request()
    except MalformedWebhook as exc:
        return bad_request(exc)
    try:
        return twiml(steps.announce_to_leg(step_cycle(services()), event))
    except Exception:
        log.exception("whisper for %s leg %s failed; the leg is hung up", *_leg(event))
        return twiml(replies.HANG_UP)


@bp.post("/whisper/answer")
@twilio_signed
def leg_key_pressed() -> Response:
    try:
        event = _leg_request()
    except MalformedWebhook as exc:
        return bad_request(exc)
    try:
        return twiml(steps.take_leg_answer(step_cycle(services()), event))
    except Exception:
        log.exception("whisper answer for %s leg %s failed", *_leg(event))
        return twiml(replies.HANG_UP)


@bp.post("/leg-status")
@twilio_signed
def leg_status_callback() -> Response:
    args = request.args
    try:
        event = LegStatusReport.from_form(request.form, call=args.get("call"), leg=args.get("leg"))
    except MalformedWebhook as exc:
        return bad_request(exc, f"{exc}\n")
    try:
        steps.record_leg_status(step_cycle(services()), event)
    except Exception:
        # A lost status callback only loses a log detail; Twilio need not retry.
        log.exception("leg status for %s leg %s failed", event.call_sid, event.position)
    return twiml(replies.NOTHING)


def _leg_request() -> LegRequest:
    return LegRequest.from_form(
        request.form, call=request.args.get("call"), leg=request.args.get("leg")
    )


def _leg(event: LegRequest) -> tuple[str, int | None]:
    return event.call_sid, event.position


def _emergency(call_sid: str) -> Response:
    log.exception("routing step for %s failed: connecting the duty phone", call_sid)
    return twiml(apology_reply(services().settings.duty_phone))
