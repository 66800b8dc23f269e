"""Twilio Voice webhooks: verify the signature → parse the form → one IVR step → TwiML.

The URLs an operator configures on both numbers:

- `POST /webhooks/voice/incoming`  Voice URL (the call arrives)
- `POST /webhooks/voice/status`    call status callback
- `POST /webhooks/voice/fallback`  Voice fallback URL (Twilio calls it when the Voice URL
  fails): apology, the duty phone, a voicemail — with no database and no Redis

Every later request comes from our own TwiML: `/step/<step>?t=<turn>` (Gather, Record and
Redirect actions), `/recording-status`, and the fallback's `/fallback/dial-result` and
`/fallback/voicemail`. A caller mid-IVR never hears a 500: a step that fails answers with
the fallback's apology and the duty phone, and the error is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, request

from callcenter.db.deadline import WEBHOOK_DATABASE_SECONDS, bounded
from callcenter.errors import MalformedWebhook
from callcenter.ivr import conversation
from callcenter.ivr.fallback import apology_reply, dial_result_reply, voicemail_reply
from callcenter.ivr.reply import Reply
from callcenter.ivr.spool import fallback_record, keep_fallback_event
from callcenter.ivr.webhook_params import (
    RecordingStatus,
    VoiceWebhook,
    status_callback_from_form,
)
from callcenter.services import Services
from callcenter.vocabulary import RECORDING_KINDS, VOICE_PREFIX
from callcenter.web import services
from webhooks.serving import bad_request, step_cycle, twiml
from webhooks.signature import twilio_signed

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix=VOICE_PREFIX)


@bp.post("/incoming")
@twilio_signed
def incoming() -> Response:
    return _ivr_step(None, None)


@bp.post("/step/<step>")
@twilio_signed
def step(step: str) -> Response:
    return _ivr_step(step[:60], request.args.get("t"))


def _ivr_step(step: str | None, turn: str | None) -> Response:
    try:
        webhook = VoiceWebhook.from_form(request.form, step=step, turn=turn)
    except MalformedWebhook as exc:
        return bad_request(exc)
    svc = services()
    setting = conversation.IvrSetting(svc.calendar, svc.settings, lambda: svc.portal)
    try:
        return twiml(conversation.answer(step_cycle(svc), webhook, setting))
    except Exception:
        log.exception(
            "IVR step %s failed", step or "incoming", extra={"call_sid": webhook.call_sid}
        )
        return _fallback("step_error", apology_reply(services().settings.duty_phone))


@bp.post("/status")
@twilio_signed
def status() -> Response:
    try:
        callback = status_callback_from_form(request.form)
    except MalformedWebhook as exc:
        return bad_request(exc)
    try:
        svc = services()
        conversation.record_status(step_cycle(svc), callback, calendar=svc.calendar)
    except Exception:
        log.exception("status callback not stored", extra={"call_sid": callback.call_sid})
        _keep_later("status")
    return Response(status=204)


@bp.post("/recording-status")
@twilio_signed
def recording_status() -> Response:
    kind = request.args.get("kind", "description")
    try:
        recording = RecordingStatus.from_form(request.form)
        if kind not in RECORDING_KINDS:
            raise MalformedWebhook(f"unknown recording kind {kind!r}")
    except MalformedWebhook as exc:
        return bad_request(exc)
    try:
        conversation.record_recording(step_cycle(services()), recording, kind)
    except Exception:
        log.exception("recording callback not stored", extra={"call_sid": recording.call_sid})
        _keep_later("recording_status", recording_kind=kind)
    return Response(status=204)


@bp.post("/fallback")
@twilio_signed
def fallback() -> Response:
    """Twilio's Voice fallback URL. Answers from the settings alone, touching neither the
    database nor Redis before the TwiML is out; the event is stored after the response
    is sent, best-effort, and spooled to `DATA_DIR/spool/` when the database is down."""
    return _fallback("fallback", apology_reply(services().settings.duty_phone))


@bp.post("/fallback/dial-result")
@twilio_signed
def fallback_dial_result() -> Response:
    """The duty phone's result: answered → done; otherwise a voicemail. No database."""
    return _fallback("dial_result", dial_result_reply(request.form.get("DialCallStatus")))


@bp.post("/fallback/voicemail")
@twilio_signed
def fallback_voicemail() -> Response:
    """The voicemail is recorded: thank the caller, then keep it (a callback ticket)."""
    return _fallback("voicemail", voicemail_reply())


def _fallback(kind: str, reply: Reply) -> Response:
    response = twiml(reply)
    _keep_later(kind, response)
    return response


def _keep_later(kind: str, response: Response | None = None, **extra: str) -> None:
    """Keep the event once the response has gone out (or now, without a response)."""
    svc = services()
    record = fallback_record(kind, request.form, svc.clock(), **extra)
    if response is None:
        keep_fallback_event(svc, record)
    else:
        response.call_on_close(lambda: _keep_bounded(svc, record))


def _keep_bounded(svc: Services, record: dict[str, Any]) -> None:
    """After the response: the request's database deadline is over, but a hung database
    must not hold the thread either (the event is spooled when the store fails)."""
    with bounded(svc.engine, WEBHOOK_DATABASE_SECONDS):
        keep_fallback_event(svc, record)
