"""What every Twilio-facing view shares: the step cycle on its app's services, a `Reply`
rendered as TwiML, and the 400 for a malformed request."""

from __future__ import annotations

import logging

from flask import Response, request

from callcenter.calls.step_cycle import StepCycle
from callcenter.errors import MalformedWebhook
from callcenter.ivr.reply import Reply
from callcenter.ivr.twiml import CONTENT_TYPE, render
from callcenter.services import Services
from callcenter.web import services

log = logging.getLogger(__name__)


def step_cycle(svc: Services) -> StepCycle:
    """The step cycle on this app's database, clock and job runner."""
    return StepCycle(svc.engine, svc.sessions, svc.clock, lambda: svc.jobs)


def twiml(reply: Reply) -> Response:
    """`reply` as TwiML, in this app's voice and under its public URL."""
    settings = services().settings
    xml = render(reply, voice=settings.tts_voice, public_base_url=settings.public_base_url)
    return Response(xml, 200, content_type=CONTENT_TYPE)


def bad_request(exc: MalformedWebhook, body: str | None = None) -> Response:
    """400 for a request that lacks what every Twilio request of this kind carries."""
    log.warning("malformed webhook %s: %s", request.path, exc)
    return Response(body or f"Bad Request: {exc}\n", 400, mimetype="text/plain")
