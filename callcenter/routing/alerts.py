"""The chain alerts: when nobody in the urgent chain took a call, everyone it rang gets one
SMS saying so (topic, ticket, client, the caller's number), once each.

Sent by a job after the routing transaction committed (`callcenter.jobs.tasks`), through the
SMS ledger of `callcenter.tickets.notifications` (one keyed message per call and number, so
a re-run never sends one twice). A job that finds Twilio out of reach fails loudly; the
outbox sweep finds the call again (`calls_with_alerts_due`) and queues it anew.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.db.models import Call, SmsMessage
from callcenter.errors import TelephonyUnavailable
from callcenter.ivr import prompts
from callcenter.routing.chain import (
    OUTCOME_CALLER_HUNG_UP,
    OUTCOME_NOBODY_ACCEPTED,
    client_name,
    routing_state,
)
from callcenter.telephony.client import Telephony
from callcenter.tickets.notifications import RETRY, SENT, SmsOutcome, send_once
from callcenter.vocabulary import URGENT_CATEGORIES, Category

CHAIN_ALERT_KEY = "chain-alert:{call_sid}:{number}"
# How far back the sweep looks for chain alerts still to send: an alert a day late still
# tells the head of support what happened; older calls are the console's flag alone.
ALERT_SWEEP_HOURS = 24


def chain_alert_recipients(call: Call) -> list[str]:
    """Every SMS number of the chain as routing rang it for this call (once each); a leg
    that was the settings' duty phone is texted at that number."""
    routing = routing_state(call)
    numbers: list[str] = []
    for step in routing.steps if routing is not None else ():
        for leg in step:
            number = leg.sms or (leg.number if leg.key is None else None)
            if number and number not in numbers:
                numbers.append(number)
    return numbers


def chain_alert_text(call: Call) -> str:
    """The SMS everyone in the chain gets: the call's topic, ticket, client and number."""
    request = call.ticket_request
    ticket = request.ticket_number if request is not None else None
    return prompts.ROUTING_ALERT_SMS.format(
        topic=chain_topic_title(call.category),
        ticket=(
            prompts.ROUTING_TICKET.format(number=ticket)
            if ticket
            else prompts.ROUTING_TICKET_PENDING
        ),
        client=client_name(call) or prompts.ROUTING_CLIENT_UNKNOWN,
        caller=call.caller_e164 or prompts.ROUTING_CALLER_HIDDEN,
    )


def chain_topic_title(category: str | None) -> str:
    """What the chain is told a call is about (the whisper, the alert): an urgent
    category's own title, else a consultation."""
    return _CHAIN_TOPICS.get(category or "", prompts.ROUTING_TOPIC_CONSULTATION)


_CHAIN_TOPICS: dict[str, str] = {
    Category.CRITICAL: prompts.ROUTING_TOPIC_CRITICAL,
    Category.STOLEN: prompts.ROUTING_TOPIC_STOLEN,
}


def send_chain_alerts(
    sessions: sessionmaker[Session], telephony: Telephony, call_id: int, *, now: datetime
) -> list[SmsOutcome]:
    """Send the "nobody accepted" SMS to every member of the call's chain, once each.

    Run by a job after the routing transaction committed, so the text carries what is
    known by then (the ticket number, usually). Each message is keyed per call and number
    (`SmsMessage.key`), so a re-run never sends one twice; an outcome of `retry` (Twilio
    unreachable) is for the job to try again.
    """
    with sessions() as session:
        call = session.get(Call, call_id)
        if call is None:
            return []
        recipients = chain_alert_recipients(call)
        body = chain_alert_text(call)
        call_sid = call.call_sid
    return [
        send_once(
            sessions,
            telephony,
            key=CHAIN_ALERT_KEY.format(call_sid=call_sid, number=number),
            to=number,
            body=body,
            now=now,
        )
        for number in recipients
    ]


def calls_with_alerts_due(session: Session, *, now: datetime) -> list[int]:
    """Urgent calls nobody accepted whose chain alerts are not all settled: Redis was down
    when routing decided to send them, or Twilio stayed out of reach for the whole job.
    The outbox sweep queues `chain_alerts_job` for each (one job per call id; each SMS is
    keyed, so none goes twice). An SMS being sent (`sending`) counts as settled."""
    candidates = session.scalars(
        select(Call).where(
            Call.routing_outcome.in_((OUTCOME_NOBODY_ACCEPTED, OUTCOME_CALLER_HUNG_UP)),
            Call.category.in_(URGENT_CATEGORIES),
            Call.started_at >= now - timedelta(hours=ALERT_SWEEP_HOURS),
        )
    ).all()
    keys = {
        call.id: {
            CHAIN_ALERT_KEY.format(call_sid=call.call_sid, number=number) for number in numbers
        }
        for call in candidates
        if (numbers := chain_alert_recipients(call))
    }
    wanted = set().union(*keys.values())  # one query for every candidate's alerts
    settled = set(
        session.scalars(
            select(SmsMessage.key).where(SmsMessage.key.in_(wanted), SmsMessage.status != RETRY)
        )
    )
    return [call_id for call_id, mine in keys.items() if mine - settled]


def send_due_chain_alerts(
    sessions: sessionmaker[Session], telephony: Telephony, call_id: int, *, now: datetime
) -> int:
    """Send what is still unsent of call `call_id`'s chain alerts; returns how many went
    out. Raises `TelephonyUnavailable` when Twilio was out of reach for any of them: the
    job fails visibly and the sweep queues it again (no sleeping inside the job)."""
    outcomes = send_chain_alerts(sessions, telephony, call_id, now=now)
    unsent = [o.key for o in outcomes if o.status == RETRY]
    if unsent:
        raise TelephonyUnavailable(f"chain alerts not sent: {', '.join(unsent)}")
    return sum(1 for o in outcomes if o.status == SENT)
