"""Twilio webhooks of a call back (see `callcenter.callbacks.dialing`): verify the
signature → typed event → one domain call → TwiML, as `webhooks.routing` serves routing.

    POST /webhooks/callbacks/<item>/specialist     the specialist answered (Calls API Url)
    POST /webhooks/callbacks/<item>/answer         their key (<Gather> action)
    POST /webhooks/callbacks/<item>/bridge         the client leg ended (<Dial> action)
    POST /webhooks/callbacks/<item>/status         the specialist leg's status callback
    POST /webhooks/callbacks/<item>/client-status  the client leg's status callback
    POST /webhooks/callbacks/<item>/recording      the bridged conversation's recording

A malformed request is a 400; a failing step hangs the specialist's leg up (the client is
not on the line yet, or the conversation is over) and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Response, request

from callcenter.callbacks import dialing
from callcenter.callbacks.dialing import CALLBACK_PREFIX, CallbackWebhook
from callcenter.errors import MalformedWebhook
from callcenter.ivr.reply import Hangup, Reply
from callcenter.ports import Services
from callcenter.routing.replies import NOTHING
from callcenter.web import services
from webhooks.serving import bad_request, twiml
from webhooks.signature import twilio_signed

log = logging.getLogger(__name__)

bp = Blueprint("callbacks", __name__, url_prefix=CALLBACK_PREFIX)


def _event(item: str) -> CallbackWebhook:
    return CallbackWebhook.from_form(request.form, item=item)


def _default_line() -> str:
    return next(iter(services().settings.lines), "")


def _step(item: str, decide: Callable[[Services, CallbackWebhook], Reply], failed: str) -> Response:
    """One leg's step: the typed event, one domain call, its TwiML; a malformed request is
    a 400, and a failure hangs the leg up (logged) rather than playing Twilio's error."""
    try:
        event = _event(item)
    except MalformedWebhook as exc:
        return bad_request(exc)
    try:
        return twiml(decide(services(), event))
    except Exception:
        log.exception("call back %s: %s", item, failed)
        return twiml((Hangup(),))


@bp.post("/<item>/specialist")
@twilio_signed
def specialist_answered(item: str) -> Response:
    return _step(
        item,
        lambda svc, event: dialing.specialist_answered(svc.sessions, event, now=svc.clock()),
        "the specialist's prompt failed",
    )


@bp.post("/<item>/answer")
@twilio_signed
def specialist_pressed(item: str) -> Response:
    return _step(
        item,
        lambda svc, event: dialing.specialist_pressed(
            svc.sessions, event, now=svc.clock(), default_line=_default_line()
        ),
        "bridging the client failed",
    )


@bp.post("/<item>/bridge")
@twilio_signed
def bridge_ended(item: str) -> Response:
    return _step(
        item,
        lambda svc, event: dialing.bridge_ended(svc.sessions, event, now=svc.clock()),
        "the bridge's result was not stored",
    )


@bp.post("/<item>/status")
@twilio_signed
def specialist_status(item: str) -> Response:
    return _leg_status(item, dialing.SPECIALIST)


@bp.post("/<item>/client-status")
@twilio_signed
def client_status(item: str) -> Response:
    return _leg_status(item, dialing.CLIENT)


def _leg_status(item: str, purpose: str) -> Response:
    try:
        event = _event(item)
    except MalformedWebhook as exc:
        return bad_request(exc)
    svc = services()
    try:
        dialing.leg_status(svc.sessions, event, purpose=purpose, now=svc.clock())
    except Exception:
        # A lost status callback only loses a log detail; Twilio need not retry.
        log.exception("call back %s: %s leg status not stored", item, purpose)
    return twiml(NOTHING)


@bp.post("/<item>/recording")
@twilio_signed
def recording(item: str) -> Response:
    try:
        event = _event(item)
        svc = services()
        request_id = dialing.recording_ready(svc.sessions, event, now=svc.clock())
    except MalformedWebhook as exc:
        return bad_request(exc)
    if request_id is not None:
        svc.jobs.submit_followups(request_id)
    return Response(status=204)
