"""Twilio's delivery reports on the SMS ledger: each status callback of a message we sent
moves its `SmsMessage.delivery` forward.

Every SMS goes out with a StatusCallback naming its ledger row (`?m=<id>`, see
`notifications.message_callback`); the row is found by that, else by the MessageSid
(a Messaging Service's own status callback carries no `m`).

Twilio posts a callback for each change of the message's status after it was created
(not for the initial `queued` / `accepted` the create request answered), and the requests
may arrive late, more than once and out of order
(https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks).
So a report is applied only when it is further along the message's life than what is
stored: accepted/scheduled < queued < sending < sent < delivered / undelivered / failed /
canceled (final) < read. A duplicate, a late `sent` after `delivered`, or a second final
status changes nothing. One conditional UPDATE decides it, so two reports racing in two
web processes cannot move a message backwards either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from callcenter.db.models import SmsMessage
from callcenter.errors import MalformedWebhook
from callcenter.tickets.notifications import MESSAGE_PARAM, SKIPPED

log = logging.getLogger(__name__)

# Twilio's MessageStatus values of an outbound message, by how far along its life each is
# (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values).
STAGES: Mapping[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "partially_delivered": 5,
    "delivered": 6,
    "undelivered": 6,
    "failed": 6,
    "canceled": 6,
    "read": 7,
}
FINAL = frozenset(status for status, stage in STAGES.items() if stage >= 6)

_MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
_ERROR_CODE = re.compile(r"[0-9]{1,10}")
# A row id as our StatusCallback writes it (below 2**31: a column PostgreSQL can compare).
_MESSAGE_REF = re.compile(r"[0-9]{1,9}")


class Applied(StrEnum):
    """What a report did: moved the message forward, changed nothing (a duplicate or a
    late report), or named no message of ours."""

    APPLIED = "applied"
    STALE = "stale"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DeliveryReport:
    """One status callback of an SMS: its SID, Twilio's MessageStatus, the ErrorCode of
    an undelivered or failed one, and the ledger row our StatusCallback URL names."""

    message_sid: str
    status: str
    error_code: str | None
    message_id: int | None

    @classmethod
    def from_request(cls, form: Mapping[str, str], query: Mapping[str, str]) -> DeliveryReport:
        """Raises `MalformedWebhook` (naming what was wrong, with the values sent) for a
        request no Twilio status callback looks like."""
        # SmsSid / SmsStatus: the older names Twilio still sends alongside.
        sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
        code = (form.get("ErrorCode") or "").strip() or None
        ref = (query.get(MESSAGE_PARAM) or "").strip() or None
        problems = []
        if not _MESSAGE_SID.fullmatch(sid):
            problems.append(f"MessageSid {sid[:40]!r} is not a Message SID")
        if status not in STAGES:
            problems.append(f"MessageStatus {status[:40]!r} is not an outbound status")
        if code is not None and not _ERROR_CODE.fullmatch(code):
            problems.append(f"ErrorCode {code[:20]!r} is not a number")
        if ref is not None and not _MESSAGE_REF.fullmatch(ref):
            problems.append(f"{MESSAGE_PARAM}={ref[:20]!r} names no message")
        if problems:
            raise MalformedWebhook("; ".join(problems))
        return cls(sid, status, code, int(ref) if ref is not None else None)


def record_delivery(
    sessions: sessionmaker[Session], report: DeliveryReport, *, now: datetime
) -> Applied:
    """Apply one status callback to its message (see the module docstring)."""
    with sessions() as session, session.begin():
        message_id = _message_of(session, report)
        if message_id is None:
            log.warning(
                "SMS status %s for unknown message %s (m=%s): nothing to update",
                report.status,
                report.message_sid,
                report.message_id,
            )
            return Applied.UNKNOWN
        earlier = [status for status, stage in STAGES.items() if stage < STAGES[report.status]]
        moved = session.execute(
            update(SmsMessage)
            .where(
                SmsMessage.id == message_id,
                or_(SmsMessage.delivery.is_(None), SmsMessage.delivery.in_(earlier)),
            )
            .values(
                delivery=report.status,
                error_code=report.error_code,
                # Twilio may report before the sending job wrote the SID down.
                twilio_sid=func.coalesce(SmsMessage.twilio_sid, report.message_sid),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        applied = moved.rowcount == 1  # type: ignore[attr-defined]
    if not applied:
        log.info(
            "SMS %s: status %s came late or twice, not applied", report.message_sid, report.status
        )
        return Applied.STALE
    log.info(
        "SMS %s: %s%s",
        report.message_sid,
        report.status,
        f" (error {report.error_code})" if report.error_code else "",
    )
    return Applied.APPLIED


def _message_of(session: Session, report: DeliveryReport) -> int | None:
    """The ledger row the report is about: the one the URL names (unless it was sent as
    another message: a re-sent retry's first attempt reporting late), else by SID. Never
    a skipped one: it never reached Twilio, and no report makes it look sent."""
    if report.message_id is not None:
        row = session.execute(
            select(SmsMessage.id, SmsMessage.twilio_sid).where(
                SmsMessage.id == report.message_id, SmsMessage.status != SKIPPED
            )
        ).first()
        if row is None or row.twilio_sid not in (None, report.message_sid):
            return None
        return int(row.id)
    found = session.scalar(
        select(SmsMessage.id)
        .where(SmsMessage.twilio_sid == report.message_sid, SmsMessage.status != SKIPPED)
        .order_by(SmsMessage.id.desc())
        .limit(1)
    )
    return int(found) if found is not None else None
