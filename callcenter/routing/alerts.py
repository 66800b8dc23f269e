"""The chain alerts: when nobody in the urgent chain took a call, everyone it rang gets one
SMS saying so (topic, ticket, client, the caller's number), once each; someone the roster
gives no SMS number is recorded as not texted, with that reason, so the call page says who
was not told rather than leaving them out.

Sent by a job after the routing transaction committed (`callcenter.jobs.tasks`), through the
SMS ledger of `callcenter.tickets.notifications` (one keyed message per call and number, so
a re-run never sends one twice). A job that finds Twilio out of reach fails loudly; the
outbox sweep finds the call again (`calls_with_alerts_due`) and queues it anew.

The missed urgent call SMS is kept the same way: an urgent call hung up at its path's first
question, before a word, from a number we can call back, tells one person — the head of the
urgent chain on duty, else the duty phone (`send_missed_urgent_sms`; the sweep finds the
ones still due with `calls_with_missed_urgent_due`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.db.models import Call, SmsMessage
from callcenter.errors import TelephonyUnavailable
from callcenter.ivr import prompts
from callcenter.roster.on_duty import WorkCalendar, on_duty
from callcenter.routing.chain import (
    OUTCOME_CALLER_HUNG_UP,
    OUTCOME_NOBODY_ACCEPTED,
    client_name,
    routing_state,
)
from callcenter.telephony.client import Telephony
from callcenter.tickets.notifications import RETRY, SENT, SmsOutcome, record_skip, send_once
from callcenter.vocabulary import URGENT_CATEGORIES, Category, Outcome

CHAIN_ALERT_KEY = "chain-alert:{call_sid}:{number}"
# A person of the chain with no SMS number: the skip is keyed by their roster key.
CHAIN_SKIP_KEY = "chain-alert:{call_sid}:staff:{staff}"
# Why an SMS went to nobody (`calllog.alerts` says it in Russian).
NO_SMS_NUMBER = "no SMS number in the roster"
NOBODY_TO_TEXT = "nobody on duty to text"
MISSED_URGENT_KEY = "missed-urgent:{call_sid}"
# How far back the sweep looks for chain alerts still to send: an alert a day late still
# tells the head of support what happened; older calls are the console's flag alone.
ALERT_SWEEP_HOURS = 24


@dataclass(frozen=True)
class ChainMember:
    """One person the chain rang for a call: their roster key and name (None for the
    settings' duty phone) and the number they are texted at (None: they have none)."""

    key: str | None
    name: str | None
    sms: str | None


def chain_members(call: Call) -> list[ChainMember]:
    """Everyone the chain rang for this call, once each, in the order rung; a leg that
    was the settings' duty phone is texted at that number."""
    routing = routing_state(call)
    members: list[ChainMember] = []
    for step in routing.steps if routing is not None else ():
        for leg in step:
            number = leg.sms or (leg.number if leg.key is None else None)
            member = ChainMember(leg.key, leg.name, number)
            if not any(_same(member, seen) for seen in members):
                members.append(member)
    return members


def _same(a: ChainMember, b: ChainMember) -> bool:
    if a.sms is not None or b.sms is not None:
        return a.sms == b.sms
    return a.key == b.key


def chain_alert_recipients(call: Call) -> list[str]:
    """Every SMS number of the chain as routing rang it for this call (once each)."""
    return [member.sms for member in chain_members(call) if member.sms]


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
    sessions: sessionmaker[Session],
    telephony: Telephony,
    call_id: int,
    *,
    now: datetime,
    status_callback: str | None,
) -> list[SmsOutcome]:
    """Send the "nobody accepted" SMS to every member of the call's chain, once each; a
    member without an SMS number is recorded as not texted (`NO_SMS_NUMBER`).

    Run by a job after the routing transaction committed, so the text carries what is
    known by then (the ticket number, usually). Each message is keyed per call and number
    (`SmsMessage.key`), so a re-run never sends one twice; an outcome of `retry` (Twilio
    unreachable) is for the job to try again.
    """
    with sessions() as session:
        call = session.get(Call, call_id)
        if call is None:
            return []
        members = chain_members(call)
        body = chain_alert_text(call)
        call_sid = call.call_sid
    outcomes: list[SmsOutcome] = []
    for member in members:
        if member.sms is None:
            key = CHAIN_SKIP_KEY.format(call_sid=call_sid, staff=member.key)
            with sessions() as session, session.begin():
                skipped = record_skip(
                    session,
                    key=key,
                    to=None,
                    body=body,
                    reason=NO_SMS_NUMBER,
                    now=now,
                    call_id=call_id,
                    recipient=member.name,
                )
            outcomes.append(skipped)
            continue
        outcomes.append(
            send_once(
                sessions,
                telephony,
                key=CHAIN_ALERT_KEY.format(call_sid=call_sid, number=member.sms),
                to=member.sms,
                body=body,
                now=now,
                status_callback=status_callback,
                call_id=call_id,
                recipient=member.name,
            )
        )
    return outcomes


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
    sessions: sessionmaker[Session],
    telephony: Telephony,
    call_id: int,
    *,
    now: datetime,
    status_callback: str | None,
) -> int:
    """Send what is still unsent of call `call_id`'s chain alerts; returns how many went
    out. Raises `TelephonyUnavailable` when Twilio was out of reach for any of them: the
    job fails visibly and the sweep queues it again (no sleeping inside the job)."""
    outcomes = send_chain_alerts(
        sessions, telephony, call_id, now=now, status_callback=status_callback
    )
    unsent = [o.key for o in outcomes if o.status == RETRY]
    if unsent:
        raise TelephonyUnavailable(f"chain alerts not sent: {', '.join(unsent)}")
    return sum(1 for o in outcomes if o.status == SENT)


# ---------------------------------------------------------------- a missed urgent call


def missed_urgent_recipient(
    session: Session, at: datetime, calendar: WorkCalendar, duty_phone: str | None
) -> ChainMember | None:
    """Who is told of an urgent call hung up before a word: the first of the urgent chain
    on duty with an SMS number, else the duty phone. One person, not the whole chain:
    nobody was rung, there is only a number to call back."""
    chain = on_duty(session, at, calendar).urgent_chain
    person = next((person for person in chain if person.sms), None)
    if person is not None:
        return ChainMember(person.key, person.name, person.sms)
    return ChainMember(None, None, duty_phone) if duty_phone else None


def missed_urgent_text(call: Call) -> str:
    return prompts.MISSED_URGENT_SMS.format(
        topic=chain_topic_title(call.category), caller=call.caller_e164
    )


def send_missed_urgent_sms(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    call_id: int,
    *,
    now: datetime,
    calendar: WorkCalendar,
    duty_phone: str | None,
    status_callback: str | None,
) -> SmsOutcome | None:
    """The SMS about urgent call `call_id` hung up at its path's first question, from a
    number we can call back (`callcenter.ivr.conversation` decides that). Keyed per call,
    so a re-run never sends it twice; None for a call that is not one. With nobody to
    send it to, the skip is recorded, so the sweep does not try again."""
    with sessions() as session, session.begin():
        call = session.get(Call, call_id)
        if call is None or call.caller_e164 is None:
            return None
        key = MISSED_URGENT_KEY.format(call_sid=call.call_sid)
        body = missed_urgent_text(call)
        to = missed_urgent_recipient(session, now, calendar, duty_phone)
        if to is None or to.sms is None:
            return record_skip(
                session,
                key=key,
                to=None,
                body=body,
                reason=NOBODY_TO_TEXT,
                now=now,
                call_id=call_id,
            )
    return send_once(
        sessions,
        telephony,
        key=key,
        to=to.sms,
        body=body,
        now=now,
        status_callback=status_callback,
        call_id=call_id,
        recipient=to.name,
    )


def send_due_missed_urgent_sms(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    call_id: int,
    *,
    now: datetime,
    calendar: WorkCalendar,
    duty_phone: str | None,
    status_callback: str | None,
) -> bool:
    """`send_missed_urgent_sms`; True when it went out. Raises `TelephonyUnavailable` when
    Twilio was out of reach: the job fails visibly and the sweep queues it again."""
    outcome = send_missed_urgent_sms(
        sessions,
        telephony,
        call_id,
        now=now,
        calendar=calendar,
        duty_phone=duty_phone,
        status_callback=status_callback,
    )
    if outcome is not None and outcome.status == RETRY:
        raise TelephonyUnavailable(f"missed urgent call SMS not sent: {outcome.reason}")
    return outcome is not None and outcome.status == SENT


def calls_with_missed_urgent_due(session: Session, *, now: datetime) -> list[int]:
    """Urgent calls hung up before a word, from a number we can call back, whose SMS is
    not settled: Redis was down when the call ended, or Twilio stayed out of reach. The
    outbox sweep queues the job for each (the SMS is keyed: never twice)."""
    candidates = session.execute(
        select(Call.id, Call.call_sid).where(
            Call.outcome == Outcome.ABANDONED,
            Call.category.in_(URGENT_CATEGORIES),
            Call.caller_e164.is_not(None),
            Call.started_at >= now - timedelta(hours=ALERT_SWEEP_HOURS),
        )
    ).all()
    keys = {
        call_id: MISSED_URGENT_KEY.format(call_sid=call_sid) for call_id, call_sid in candidates
    }
    settled = set(
        session.scalars(
            select(SmsMessage.key).where(
                SmsMessage.key.in_(keys.values()), SmsMessage.status != RETRY
            )
        )
    )
    return [call_id for call_id, key in keys.items() if key not in settled]
