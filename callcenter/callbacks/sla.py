"""The call-back SLA: an item still waiting at its `due_at` is overdue — a problem row of
the log — and the head of support gets one SMS about it (keyed per item: never twice)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.callbacks.queue import overdue_at
from callcenter.clock import to_moscow
from callcenter.db.models import Call, CallbackItem
from callcenter.phones import classify
from callcenter.roster.on_duty import Roster
from callcenter.telephony.client import Telephony
from callcenter.tickets.notifications import SENT, SmsOutcome, record_skip, send_once

log = logging.getLogger(__name__)

SMS_KEY = "callback-sla:{item_id}"
SMS_TEXT = (
    "Перезвон просрочен: клиент {caller} ждёт с {since} (срок был {due}). "
    "Очередь перезвонов в консоли."
)


class Head(NamedTuple):
    name: str
    sms: str


def head_to_text(session: Session) -> Head | None:
    """The head of support to text, from the roster (the first head with an SMS number)."""
    return next((Head(p.name, p.sms) for p in Roster.load(session).heads if p.sms), None)


def overdue_text(call: Call, item: CallbackItem) -> str:
    return SMS_TEXT.format(
        caller=classify(call.caller_e164).display if call.caller_e164 else "без номера",
        since=to_moscow(item.waiting_since).strftime("%d.%m %H:%M"),
        due=to_moscow(item.due_at).strftime("%H:%M"),
    )


# Why the SMS went to nobody (`calllog.alerts` says it in Russian).
NO_HEAD_TO_TEXT = "no head with an SMS number"


def alert_overdue(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    *,
    now: datetime,
    status_callback: str | None,
) -> list[SmsOutcome]:
    """One SMS to the head for every overdue item not alerted yet; the outcomes. With no
    head to text, the skip is recorded (and the item counts as alerted: nothing to retry)."""
    with sessions() as session:
        due = (
            session.execute(
                select(CallbackItem.id).where(
                    overdue_at(now), CallbackItem.sla_alerted_at.is_(None)
                )
            )
            .scalars()
            .all()
        )
    outcomes: list[SmsOutcome] = []
    for item_id in due:
        with sessions() as session, session.begin():
            item = session.get(CallbackItem, item_id)
            if item is None:
                continue
            call = session.get(Call, item.call_id)
            assert call is not None
            call_id = call.id
            key, body, head = (
                SMS_KEY.format(item_id=item_id),
                overdue_text(call, item),
                head_to_text(session),
            )
            if head is None:
                outcomes.append(
                    record_skip(
                        session,
                        key=key,
                        to=None,
                        body=body,
                        reason=NO_HEAD_TO_TEXT,
                        now=now,
                        call_id=call_id,
                    )
                )
                item.sla_alerted_at = now
                continue
        outcome = send_once(
            sessions,
            telephony,
            key=key,
            to=head.sms,
            body=body,
            now=now,
            status_callback=status_callback,
            call_id=call_id,
            recipient=head.name,
        )
        outcomes.append(outcome)
        if outcome.settled:
            with sessions() as session, session.begin():
                item = session.get(CallbackItem, item_id)
                if item is not None:
                    item.sla_alerted_at = now
        if outcome.status != SENT:
            log.warning(
                "call-back SLA SMS for item %s: %s (%s)", item_id, outcome.status, outcome.reason
            )
    return outcomes
