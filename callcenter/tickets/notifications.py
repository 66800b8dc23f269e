"""SMS the pipeline sends: the caller's confirmation, on-duty alerts — each at most once.

Every message has a key (`ticket-request:{id}:caller`, `…:alert:{number}`, …) and a row in
`SmsMessage`. The row is claimed (inserted as `sending`, committed) *before* Twilio is
asked, so two jobs racing for the same message cannot both send it: the second insert hits
the unique key and backs off. Outcomes:

    sent      Twilio took it (its Message SID is kept)
    skipped   never sent, with the reason (a landline, a withheld number, no Twilio account)
    retry     Twilio was unreachable; the next follow-up run claims it again
    failed    Twilio refused it for good (e.g. not a mobile number); shown with the reason
    sending   claimed, outcome not written yet (a job is asking Twilio, or died doing so;
              past `SMS_UNSETTLED_MINUTES` the sweep settles it by asking Twilio,
              `callcenter.tickets.unsettled_sms`: found there — sent; not there — sent again)
    unknown   left `sending` and Twilio could not be asked for good (no account any more,
              the lookup refused): nobody knows whether it went out, so it is never sent
              again — a duplicate SMS is worse than a missing one we can see; never called
              sent without Twilio's SID

Once Twilio has taken a message its outcome is written at once, in its own transaction,
and again and again while the database is away (`SMS_SETTLE_SECONDS`, see `write_sent`):
a database outage between Twilio's answer and the write must not leave it `sending`.

What became of a sent one is Twilio's to say: its status callbacks (to the StatusCallback
each SMS is sent with) set `delivery` (`callcenter.tickets.delivery`). Each row names the
call it is about (`call_id`), so the call page shows who was told what.

Texts are Russian and use `callcenter.regulation.speech` for dates ("до 18:00 01.12.2025").

Who gets an alert:
- `on_duty_alert_recipients`: the staff on duty at a moment (urgent chain, then the head),
  for an urgent ticket or a ticket request that failed;
- `chain_alert_recipients`: everyone in the chain routing rang for one urgent call nobody
  accepted (`send_chain_alerts`; the outbox sweep finds the ones still due with
  `calls_with_alerts_due`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import cast
from urllib.parse import urlencode

from sqlalchemy import Executable, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from callcenter.clock import to_moscow
from callcenter.db.models import Call, SmsMessage
from callcenter.errors import (
    DatabaseTimeout,
    TelephonyError,
    TelephonyNotConfigured,
    TelephonyRejected,
    TelephonyUnavailable,
)
from callcenter.phones import classify
from callcenter.portal.protocol import TicketDraft
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.regulation.speech import format_deadline_short
from callcenter.regulation.topics import TOPICS
from callcenter.roster.on_duty import alert_numbers
from callcenter.settings import Settings
from callcenter.telephony.client import Telephony
from callcenter.vocabulary import sms_reach

log = logging.getLogger(__name__)

SENT = "sent"
SKIPPED = "skipped"
RETRY = "retry"
FAILED = "failed"
SENDING = "sending"
UNKNOWN = "unknown"
# Outcomes that end a message's story (nothing more will be tried).
SETTLED = frozenset({SENT, SKIPPED, FAILED, SENDING, UNKNOWN})
# The status callback's query parameter naming the ledger row (`message_callback`).
MESSAGE_PARAM = "m"

_MAX_REASON = 300
# `write_sent`: the first pause after the database was found away, doubling up to the cap
# (the write is one short UPDATE: trying every few seconds spares a database coming up).
_SETTLE_FIRST_DELAY = 0.5
_SETTLE_MAX_DELAY = 5.0


@dataclass(frozen=True)
class SmsOutcome:
    key: str
    status: str
    reason: str | None = None
    sid: str | None = None
    # This run produced the outcome (it still has to be written down, see `settle`);
    # False: found as another run left it, or written down already.
    fresh: bool = False
    # The claim the outcome belongs to (the row's `created_at` when this run claimed it):
    # `settle` writes it only while the row is still that claim.
    claimed_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.fresh and self.claimed_at is None:
            raise ValueError(f"SMS {self.key}: a fresh outcome names the claim it belongs to")

    @property
    def settled(self) -> bool:
        return self.status in SETTLED


def send_once(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    *,
    key: str,
    to: str,
    body: str,
    now: datetime,
    status_callback: str | None,
    call_id: int | None = None,
    recipient: str | None = None,
    settle_seconds: float = Settings.sms_settle_seconds,
) -> SmsOutcome:
    """Send `body` to `to` unless the message `key` was already sent, skipped or refused.

    A `retry` outcome (Twilio unreachable) is for the caller to schedule again.
    `status_callback`: where Twilio reports delivery (`vocabulary.sms_status_callback`;
    required, so no sender forgets it); `call_id`: the call the message is about;
    `recipient`: who it is for, by name.
    """
    outcome = send_unsettled(
        sessions,
        telephony,
        key=key,
        to=to,
        body=body,
        now=now,
        status_callback=status_callback,
        call_id=call_id,
        recipient=recipient,
        settle_seconds=settle_seconds,
    )
    if outcome.fresh:
        with sessions() as session, session.begin():
            settle(session, outcome)
    return outcome


def send_unsettled(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    *,
    key: str,
    to: str,
    body: str,
    now: datetime,
    status_callback: str | None,
    call_id: int | None = None,
    recipient: str | None = None,
    settle_seconds: float = Settings.sms_settle_seconds,
) -> SmsOutcome:
    """`send_once` without writing the outcome: the caller `settle`s a fresh one in its own
    transaction (one commit for a job's whole bookkeeping). The claim is committed here,
    before Twilio is asked — that is what keeps two runs from both sending. A message
    Twilio took is the exception: `sent` and its SID are written here at once, retried
    for up to `settle_seconds` while the database is away (`write_sent`)."""
    claimed = _claim(
        sessions, key=key, to=to, body=body, now=now, call_id=call_id, recipient=recipient
    )
    if isinstance(claimed, SmsOutcome):
        return claimed
    callback = message_callback(status_callback, claimed)

    def fresh(status: str, *, reason: str | None = None, sid: str | None = None) -> SmsOutcome:
        return _fresh(key, status, reason=reason, sid=sid, claimed_at=now)

    try:
        sid = telephony.send_sms(to, body, status_callback=callback)
    except TelephonyNotConfigured as exc:
        return fresh(SKIPPED, reason=str(exc))
    except TelephonyUnavailable as exc:
        return fresh(RETRY, reason=str(exc))
    except TelephonyRejected as exc:
        return fresh(FAILED, reason=str(exc))
    except TelephonyError as exc:
        # Twilio may have taken it (e.g. it answered without a SID): do not send again.
        return fresh(FAILED, reason=str(exc))
    except Exception as exc:
        with sessions() as session, session.begin():
            settle(session, fresh(FAILED, reason=f"{exc.__class__.__name__}: {exc}"))
        raise
    log.info("SMS %s sent to %s", key, mask_number(to))
    return write_sent(sessions, fresh(SENT, sid=sid), patience=settle_seconds)


def settle(session: Session, outcome: SmsOutcome) -> bool:
    """Write a fresh outcome of `send_unsettled` (in the caller's transaction); whether it
    was written. Only while the row is still this run's claim (`sending`, claimed at
    `outcome.claimed_at`): a run that outlived `SMS_UNSETTLED_MINUTES` may find the sweep
    has settled or claimed the message meanwhile (`unsettled_sms`), and its late outcome
    would undo what the sweep found out at Twilio."""
    if outcome.claimed_at is None:
        raise ValueError(f"SMS {outcome.key}: an outcome of no claim is not to be settled")
    moved = session.execute(
        update(SmsMessage)
        .where(
            SmsMessage.key == outcome.key,
            SmsMessage.status == SENDING,
            SmsMessage.created_at == outcome.claimed_at,
        )
        .values(
            status=outcome.status,
            reason=outcome.reason[:_MAX_REASON] if outcome.reason else None,
            twilio_sid=outcome.sid,
        )
        .execution_options(synchronize_session=False)
    )
    written: bool = moved.rowcount == 1  # type: ignore[attr-defined]
    if not written:
        log.warning(
            "SMS %s: not written, the row is no longer this run's claim (the sweep settled "
            "or claimed it meanwhile); this run's outcome: %s, %s",
            outcome.key,
            outcome.status,
            outcome.sid,
        )
    return written


def write_sent(
    sessions: sessionmaker[Session], outcome: SmsOutcome, *, patience: float
) -> SmsOutcome:
    """Write down that Twilio took the message (`sent`, its SID) now, in a transaction of
    its own: this answer must not be lost with a database that went away while Twilio
    answered (the row would stay `sending` until the sweep finds it in Twilio's message
    list, minutes later). Tried again with a short, capped backoff while the database is
    unreachable, for at most `patience` seconds; logged once when it goes away, once when
    it is back, once on giving up (then the error propagates: the job fails, and
    `unsettled_sms.reconcile_unsettled` settles the row later). Returns the outcome as
    written (not `fresh` any more: nothing is left for the caller to `settle`)."""
    deadline = time.monotonic() + patience
    delay = _SETTLE_FIRST_DELAY
    lost_at: float | None = None
    while True:
        try:
            with sessions() as session, session.begin():
                settle(session, outcome)
        except (OperationalError, InterfaceError, DatabaseTimeout) as exc:
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
                log.warning(
                    "SMS %s: Twilio took it (%s) but the database is away (%s); writing "
                    "it down again for up to %g s",
                    outcome.key,
                    outcome.sid,
                    _first_line(exc),
                    patience,
                )
            if now >= deadline:
                log.error(
                    "SMS %s: Twilio took it (%s); the database stayed away for %.0f s, "
                    "so the message stays `sending` until the sweep looks it up at Twilio",
                    outcome.key,
                    outcome.sid,
                    now - lost_at,
                )
                raise
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, _SETTLE_MAX_DELAY)
            continue
        if lost_at is not None:
            log.info(
                "SMS %s: the database is back after %.1f s; recorded sent (%s)",
                outcome.key,
                time.monotonic() - lost_at,
                outcome.sid,
            )
        return replace(outcome, fresh=False)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]


def record_skip(
    session: Session,
    *,
    key: str,
    to: str | None,
    body: str,
    reason: str,
    now: datetime,
    call_id: int | None = None,
    recipient: str | None = None,
) -> SmsOutcome:
    """Record that message `key` is not sent, and why (logged); idempotent. In the
    caller's transaction, which must serialise runs of the same message (e.g. by holding
    the ticket request's lock). `call_id`, `recipient`: as for `send_once`."""
    # Insert first (one statement when the message is new, the usual case); a key that is
    # there already is left as it is.
    inserted = session.execute(
        _skip_statement(session.get_bind().dialect.name),
        {
            "key": key,
            "to": to,
            "body": body,
            "reason": reason[:_MAX_REASON],
            "now": now,
            "call_id": call_id,
            "recipient": recipient,
        },
    ).first()
    if inserted is None:
        existing = _get(session, key)
        assert existing is not None
        if existing.status != RETRY:
            return _outcome(existing)
        # Left for another try, which finds it cannot send (no Twilio account any more):
        # that try's outcome is the skip, as a claimed retry would have settled it.
        existing.status = SKIPPED
        existing.reason = reason[:_MAX_REASON]
        session.flush()
    log.info("SMS %s not sent to %s: %s", key, mask_number(to), reason)
    return SmsOutcome(key, SKIPPED, reason)


@cache
def _skip_statement(dialect: str) -> Executable:
    """INSERT … ON CONFLICT (key) DO NOTHING RETURNING id for a skipped message, built once
    per dialect (its values are bound at each execution)."""
    table = cast(Table, SmsMessage.__table__)
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return (
        insert.values(
            key=bindparam("key"),
            to=bindparam("to"),
            body=bindparam("body"),
            status=SKIPPED,
            reason=bindparam("reason"),
            call_id=bindparam("call_id", type_=table.c.call_id.type),
            recipient=bindparam("recipient", type_=table.c.recipient.type),
            created_at=bindparam("now", type_=table.c.created_at.type),
            updated_at=bindparam("now", type_=table.c.updated_at.type),
        )
        .on_conflict_do_nothing(index_elements=[table.c.key])
        .returning(table.c.id)
    )


def _fresh(
    key: str,
    status: str,
    *,
    reason: str | None = None,
    sid: str | None = None,
    claimed_at: datetime,
) -> SmsOutcome:
    if status == SKIPPED:
        log.info("SMS %s not sent: %s", key, reason)
    elif status != SENT:
        log.warning("SMS %s: %s (%s)", key, status, reason)
    return SmsOutcome(key, status, reason, sid, fresh=True, claimed_at=claimed_at)


def _claim(
    sessions: sessionmaker[Session],
    *,
    key: str,
    to: str,
    body: str,
    now: datetime,
    call_id: int | None,
    recipient: str | None,
) -> SmsOutcome | int:
    """The message's row id when this run owns the message now; else what became of it."""
    with sessions() as session:
        try:
            with session.begin():
                row = SmsMessage(
                    key=key,
                    to=to,
                    body=body,
                    status=SENDING,
                    call_id=call_id,
                    recipient=recipient,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
                message_id = row.id
            return message_id
        except IntegrityError:
            pass
        with session.begin():
            # A message left for retry is taken over by exactly one run; claimed now, as
            # far as `unsettled_sms.reconcile_unsettled` is concerned.
            taken = session.execute(
                update(SmsMessage)
                .where(SmsMessage.key == key, SmsMessage.status == RETRY)
                .values(status=SENDING, to=to, body=body, created_at=now)
                .returning(SmsMessage.id)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if taken is not None:
                return taken
            existing = _get(session, key)
            assert existing is not None
            return _outcome(existing)


def message_callback(status_callback: str | None, message_id: int) -> str | None:
    """`status_callback` naming the message's row (`?m=<id>`): Twilio may report a status
    before this run has written the Message SID down, and the signed URL says which
    message it is even then (`callcenter.tickets.delivery`)."""
    if not status_callback:
        return None
    return f"{status_callback}?{urlencode({MESSAGE_PARAM: message_id})}"


def _get(session: Session, key: str) -> SmsMessage | None:
    return session.scalars(select(SmsMessage).where(SmsMessage.key == key)).one_or_none()


def _outcome(row: SmsMessage) -> SmsOutcome:
    return SmsOutcome(row.key, row.status, row.reason, row.twilio_sid)


def mask_number(number: str | None) -> str:
    """Numbers in logs keep their last two digits only (personal data)."""
    if not number:
        return "-"
    return "*" * max(len(number) - 2, 0) + number[-2:]


# ---------------------------------------------------------------- who and what


def on_duty_alert_recipients(
    session: Session, at: datetime, calendar: BusinessCalendar, settings: Settings
) -> list[str]:
    """SMS numbers of the staff on duty at `at` (urgent chain, then the head of support);
    the duty phone from the settings (if set) when the roster has nobody with an SMS number."""
    numbers: list[str] = []
    for number in alert_numbers(session, at, calendar, settings):
        if number and number not in numbers:
            numbers.append(number)
    return numbers or ([settings.duty_phone] if settings.duty_phone else [])


KB_LINK_KEY = "kb-link:{call_sid}"
# The knowledge base of the regulation's section VII.
KB_LINK_SMS = (
    "SKAI ТП: база знаний — инструкции и ответы на частые вопросы: https://kb.skai.online/"
)


def send_kb_link_sms(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    call_id: int,
    *,
    now: datetime,
    sms_foreign: bool,
    status_callback: str | None,
) -> SmsOutcome | None:
    """The knowledge base's link to call `call_id`'s caller, keyed per call (never twice);
    None when the caller is not one an SMS reaches (`vocabulary.sms_reach`)."""
    with sessions() as session:
        call = session.get(Call, call_id)
        if call is None or call.caller_e164 is None:
            return None
        if not sms_reach(call.caller_kind, call.caller_e164, sms_foreign=sms_foreign).ok:
            return None
        key, to = KB_LINK_KEY.format(call_sid=call.call_sid), call.caller_e164
    return send_once(
        sessions,
        telephony,
        key=key,
        to=to,
        body=KB_LINK_SMS,
        now=now,
        status_callback=status_callback,
        call_id=call_id,
    )


def caller_confirmation(number: str, draft: TicketDraft) -> str:
    """ "Заявка №1042 зарегистрирована. Тема: …. Срок решения: до 18:00 01.12.2025." """
    parts = [f"Заявка №{number} зарегистрирована.", f"Тема: {_topic_title(draft.topic)}."]
    if draft.first_stage_due is not None and draft.first_stage_due != draft.resolution_due:
        parts.append(f"Первый ответ: {format_deadline_short(draft.first_stage_due)}.")
    if draft.resolution_due is not None:
        parts.append(f"Срок решения: {format_deadline_short(draft.resolution_due)}.")
    else:
        parts.append("Срок решения: по согласованию с вами.")
    return " ".join(parts)


def urgent_alert(number: str, draft: TicketDraft, *, duplicate: bool = False) -> str:
    """The on-duty alert for a critical failure or a stolen vehicle."""
    head = f"Заявка №{number} продублирована звонком" if duplicate else f"Срочная заявка №{number}"
    parts = [f"{head}: {_topic_title(draft.topic)}."]
    who = ", ".join(p for p in (draft.organisation_name, draft.contact_name) if p)
    caller = classify(draft.caller).display if draft.caller else None
    if who or caller:
        parts.append(", ".join(p for p in (who, caller) if p) + ".")
    if draft.vehicles:
        parts.append("ТС: " + ", ".join(draft.vehicles) + ".")
    if draft.resolution_due is not None:
        parts.append(f"Решить {format_deadline_short(draft.resolution_due)}.")
    return " ".join(parts)


def failure_alert(
    request_id: int, draft: TicketDraft, received: datetime | None, error: str
) -> str:
    """The on-duty alert for a ticket request the portal did not take."""
    caller = classify(draft.caller)
    if caller.e164 is not None:
        source = f"с {caller.display}"
    elif caller.kind == "withheld":
        source = "со скрытого номера"
    else:
        source = "с неизвестного номера"
    when = f" {to_moscow(received):%d.%m.%Y %H:%M}" if received else ""
    reason = error if len(error) <= 160 else error[:159] + "…"
    return (
        f"Заявка по звонку{when} {source} ({_topic_title(draft.topic)}) не создана: {reason}. "
        f"Повторить: callcenter outbox retry {request_id} или в консоли."
    )


def _topic_title(slug: str) -> str:
    topic = TOPICS.get(slug)
    return topic.title if topic else slug
