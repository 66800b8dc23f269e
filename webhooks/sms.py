"""Twilio's SMS status callbacks: verify the signature → a typed `DeliveryReport` → one
ledger update (`callcenter.tickets.delivery`) → an empty answer.

    POST /webhooks/sms/status?m=<message>   the StatusCallback every SMS is sent with

Machine-facing, so the answers are plain: 204 once the report is applied or found stale
(a duplicate, or late); 200 with an empty `<Response/>` for a MessageSid that is none of
ours (logged; Twilio need not retry); 400 naming what is wrong with a malformed one
(logged with the values sent); 503 when the database is out of reach (logged with the
whole report: nothing is lost).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from callcenter.errors import MalformedWebhook
from callcenter.routing.replies import NOTHING
from callcenter.tickets import delivery
from callcenter.vocabulary import SMS_PREFIX
from callcenter.web import services
from webhooks.serving import bad_request, twiml
from webhooks.signature import twilio_signed

log = logging.getLogger(__name__)

bp = Blueprint("sms", __name__, url_prefix=SMS_PREFIX)


@bp.post("/status")
@twilio_signed
def status() -> Response:
    try:
        report = delivery.DeliveryReport.from_request(request.form, request.args)
    except MalformedWebhook as exc:
        return bad_request(exc)
    svc = services()
    try:
        applied = delivery.record_delivery(svc.sessions, report, now=svc.clock())
    except Exception:
        log.exception(
            "SMS status not stored: %s %s error %s (m=%s)",
            report.message_sid,
            report.status,
            report.error_code,
            report.message_id,
        )
        return Response("Service Unavailable: status not stored\n", 503, mimetype="text/plain")
    if applied is delivery.Applied.UNKNOWN:
        return twiml(NOTHING)  # 200, an empty <Response/>: nothing for Twilio to retry
    return Response(status=204)
