"""The call-back SLA: an item still waiting at its `due_at` is overdue — a problem row of
the log — and the head of support gets one SMS about it (keyed per item: never twice)."""

from __future__ import annotations

import logging
from datetime import datetime

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


def head_sms(session: Session) -> str | None:
    """The head of support's SMS number from the roster (the first head with one)."""
    return next((p.sms for p in Roster.load(session).heads if p.sms), None)


def overdue_text(call: Call, item: CallbackItem) -> str:
    return SMS_TEXT.format(
        caller=classify(call.caller_e164).display if call.caller_e164 else "без номера",
        since=to_moscow(item.waiting_since).strftime("%d.%m %H:%M"),
        due=to_moscow(item.due_at).strftime("%H:%M"),
    )


def alert_overdue(
    sessions: sessionmaker[Session], telephony: Telephony, *, now: datetime
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
            key, body, to = (
                SMS_KEY.format(item_id=item_id),
                overdue_text(call, item),
                head_sms(session),
            )
            if to is None:
                outcomes.append(
                    record_skip(
                        session,
                        key=key,
                        to=None,
                        body=body,
                        reason="no head with an SMS number",
                        now=now,
                    )
                )
                item.sla_alerted_at = now
                continue
        outcome = send_once(sessions, telephony, key=key, to=to, body=body, now=now)
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
