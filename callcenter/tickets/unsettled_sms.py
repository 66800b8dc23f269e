"""SMS left `sending`: their process died between claiming them and writing Twilio's answer.

A message is claimed (`sending`, committed) before Twilio is asked, and Twilio's answer is
written at once (`notifications.send_unsettled`, patient with a database that is away for
up to `SMS_SETTLE_SECONDS`). A row still `sending` after `SMS_UNSETTLED_MINUTES` therefore
belongs to a process that is gone — killed, or its machine lost — and nobody wrote down
whether Twilio took the message. The outbox sweep (`jobs.tasks.reconcile_sms`) settles
each such row by asking Twilio, never by guessing:

1. A status callback named it already (`delivery` stores the Message SID Twilio reported,
   even on a `sending` row): Twilio took it. `sent`, with that SID.
2. Twilio's Message list has it: an outbound message to the same number with exactly the
   same body, created since the claim (less `CLOCK_MARGIN`, for the two clocks) and not
   already another row's SID (`TwilioTelephony.find_sms`; the oldest such). Up to the
   sweep's own time, not the claim's plus a request's timeout: a job may claim a message
   with the time it started and send it later in its run. Twilio creates the Message
   resource when it answers the create request, so by now it is listed if Twilio ever
   took it. `sent`, with that SID.
3. It is not there: Twilio never took it (the process died before its request reached
   Twilio). The row is claimed again (its claim time is now) and sent, exactly as the
   first try would have; a process that dies this time leaves it for the next round.
4. Twilio cannot be asked: unreachable or answering 5xx — the row stays `sending` and the
   next sweep asks again; no Twilio account, Twilio refusing the lookup, too many messages
   to that number to read through, a listed one with this text but no creation time, or
   the service on a set clock (`CALLCENTER_CLOCK`, whose times Twilio's cannot be
   compared with) — `unknown`, with the reason (never sent again: nobody can tell whether
   it went out, and a duplicate is worse than a gap a supervisor can see).

Every step changes a row only while it is still `sending`, stale and without a SID a
status callback wrote meanwhile, so two sweeps cannot both act on it; and the first
process, should it still be alive, writes its outcome only while the row is still its
claim (`notifications.settle`), so it cannot undo what the sweep found out. The sweep
trusts the claim's time: senders claim with their job's time, at most a loop over a few
recipients before the send — seconds against `SMS_UNSETTLED_MINUTES`.

One case is not told apart: two rows with the same text to the same number (the same
link, sent for two calls), one stale and one whose job is still sending it. The stale one
may be recorded with the other's SID, and that number then gets the text once where two
were meant — the same text, so nothing is lost to its reader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from callcenter.db.models import SmsMessage
from callcenter.errors import (
    TelephonyError,
    TelephonyUnavailable,
)
from callcenter.settings import Settings
from callcenter.telephony.client import Telephony
from callcenter.tickets.notifications import (
    FAILED,
    SENDING,
    SENT,
    UNKNOWN,
    SmsOutcome,
    mask_number,
    message_callback,
    write_sent,
)

log = logging.getLogger(__name__)

# Our clock and Twilio's may disagree a little, and Twilio's `date_created` has whole
# seconds: a message Twilio created just after our claim may carry a slightly earlier time.
CLOCK_MARGIN = timedelta(seconds=60)
SET_CLOCK_REASON = (
    "the service runs on a set clock (CALLCENTER_CLOCK): Twilio's times cannot be compared with it"
)

FOUND_REASON = "found in Twilio's message list after its sending process stopped"
RESENT_REASON = (
    "sent again: its first sending process stopped before Twilio took it "
    "(not in Twilio's message list)"
)
_MAX_REASON = 300


@dataclass
class Reconciled:
    """What one round did, by row key."""

    reported: list[str] = field(default_factory=list)  # a status callback had named it
    found: list[str] = field(default_factory=list)  # in Twilio's message list
    resent: list[str] = field(default_factory=list)  # not there: sent again
    unknown: list[str] = field(default_factory=list)  # Twilio could not be asked for good
    waiting: list[str] = field(default_factory=list)  # Twilio away: asked again next round


@dataclass(frozen=True)
class _Stale:
    id: int
    key: str
    to: str | None
    body: str
    created_at: datetime
    twilio_sid: str | None


def reconcile_unsettled(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    *,
    now: datetime,
    older_than: timedelta,
    status_callback: str | None,
    settle_seconds: float = Settings.sms_settle_seconds,
    real_clock: bool = True,
) -> Reconciled:
    """Settle every message claimed before `now - older_than` and still `sending` (see
    the module docstring). `status_callback`: as for `notifications.send_once`;
    `settle_seconds`: the patience of the write after a send again; `real_clock`: False
    when the service runs on a set clock (nothing is looked up then)."""
    cutoff = now - older_than
    done = Reconciled()
    for row in _stale(sessions, cutoff):
        try:
            if not _reconcile(
                sessions, telephony, row, cutoff, now, status_callback, settle_seconds,
                real_clock, done,
            ):  # fmt: skip
                break
        except (OperationalError, InterfaceError):
            raise  # the database is away: the sweep fails, and the next one starts over
        except Exception:
            # One row's surprise must not keep the rows after it `sending` for good.
            log.exception("SMS %s: not reconciled; the next sweep tries again", row.key)
    return done


def _reconcile(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    row: _Stale,
    cutoff: datetime,
    now: datetime,
    status_callback: str | None,
    settle_seconds: float,
    real_clock: bool,
    done: Reconciled,
) -> bool:
    """Settle one row; False when Twilio is away (the rest are left for the next sweep)."""
    if row.twilio_sid is not None:
        if _settle(sessions, row.id, cutoff, status=SENT, sid=row.twilio_sid):
            log.info("SMS %s: Twilio had reported it (%s); recorded sent", row.key, row.twilio_sid)
            done.reported.append(row.key)
        return True
    if not row.to:
        _give_up(sessions, row, cutoff, "it names no number to look it up by", done)
        return True
    if not real_clock:
        _give_up(sessions, row, cutoff, SET_CLOCK_REASON, done)
        return True
    try:
        sids = telephony.find_sms(
            row.to,
            row.body,
            created_since=row.created_at - CLOCK_MARGIN,
            created_before=now + CLOCK_MARGIN,
        )
    except TelephonyUnavailable as exc:
        log.warning("unsettled SMS %s not looked up (%s); the next sweep asks again", row.key, exc)
        done.waiting.append(row.key)
        return False
    except TelephonyError as exc:  # not configured, refused, too many to read through
        _give_up(sessions, row, cutoff, f"Twilio could not be asked: {exc}", done)
        return True
    sid = _first_unrecorded(sessions, sids, row.id)
    if sid is not None:
        if _settle(sessions, row.id, cutoff, status=SENT, sid=sid, reason=FOUND_REASON):
            log.warning("SMS %s to %s: %s (%s)", row.key, mask_number(row.to), FOUND_REASON, sid)
            done.found.append(row.key)
        return True
    if _send_again(sessions, telephony, row, cutoff, now, status_callback, settle_seconds):
        done.resent.append(row.key)
    else:
        done.waiting.append(row.key)
    return True


def _stale(sessions: sessionmaker[Session], cutoff: datetime) -> list[_Stale]:
    with sessions() as session:
        rows = session.execute(
            select(
                SmsMessage.id,
                SmsMessage.key,
                SmsMessage.to,
                SmsMessage.body,
                SmsMessage.created_at,
                SmsMessage.twilio_sid,
            )
            .where(SmsMessage.status == SENDING, SmsMessage.created_at < cutoff)
            .order_by(SmsMessage.id)
        ).all()
    return [_Stale(*row) for row in rows]


def _still_unsettled(cutoff: datetime, sid: str | None = None) -> ColumnElement[bool]:
    """Still `sending`, claimed before `cutoff`, and with no SID but `sid` (a status
    callback may have written Twilio's SID since the row was read)."""
    return and_(
        SmsMessage.status == SENDING,
        SmsMessage.created_at < cutoff,
        or_(SmsMessage.twilio_sid.is_(None), SmsMessage.twilio_sid == sid)
        if sid is not None
        else SmsMessage.twilio_sid.is_(None),
    )


def _first_unrecorded(sessions: sessionmaker[Session], sids: list[str], own: int) -> str | None:
    """The oldest SID no other row holds (an identical text sent for another message, e.g.
    the same link to the same caller, is that message's, not this one's)."""
    if not sids:
        return None
    with sessions() as session:
        taken = set(
            session.scalars(
                select(SmsMessage.twilio_sid).where(
                    SmsMessage.twilio_sid.in_(sids), SmsMessage.id != own
                )
            )
        )
    return next((sid for sid in sids if sid not in taken), None)


def _settle(
    sessions: sessionmaker[Session],
    message_id: int,
    cutoff: datetime,
    *,
    status: str,
    sid: str | None = None,
    reason: str | None = None,
) -> bool:
    """Write an outcome on the row if it is still `sending` and stale; whether it was."""
    with sessions() as session, session.begin():
        moved = session.execute(
            update(SmsMessage)
            .where(SmsMessage.id == message_id, _still_unsettled(cutoff, sid))
            .values(status=status, twilio_sid=sid, reason=reason[:_MAX_REASON] if reason else None)
            .execution_options(synchronize_session=False)
        )
        settled: bool = moved.rowcount == 1  # type: ignore[attr-defined]
    return settled


def _give_up(
    sessions: sessionmaker[Session], row: _Stale, cutoff: datetime, why: str, done: Reconciled
) -> None:
    reason = f"outcome not recorded: the sending process stopped after claiming it; {why}"
    reason += "; whether Twilio took it is not known, so it is not sent again"
    if _settle(sessions, row.id, cutoff, status=UNKNOWN, reason=reason):
        log.error("SMS %s to %s: %s", row.key, mask_number(row.to), reason)
        done.unknown.append(row.key)


def _send_again(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    row: _Stale,
    cutoff: datetime,
    now: datetime,
    status_callback: str | None,
    settle_seconds: float,
) -> bool:
    """Claim the row again (claim time: now) and send it; whether Twilio took it. A run
    that loses the claim to another sweep does nothing."""
    assert row.to is not None
    with sessions() as session, session.begin():
        claimed = session.execute(
            update(SmsMessage)
            .where(SmsMessage.id == row.id, _still_unsettled(cutoff))
            .values(created_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False
    try:
        sid = telephony.send_sms(
            row.to, row.body, status_callback=message_callback(status_callback, row.id)
        )
    except TelephonyUnavailable as exc:
        # Claimed anew: looked up (and sent, if still not there) after SMS_UNSETTLED_MINUTES.
        log.warning("SMS %s: sending again failed (%s); tried again later", row.key, exc)
        return False
    except TelephonyError as exc:
        # Refused, or answered without a SID (Twilio may have taken it): not a third time.
        _write(sessions, row.id, now, status=FAILED, reason=f"sending again: {exc}")
        log.warning("SMS %s: sending again failed for good (%s)", row.key, exc)
        return False
    log.warning("SMS %s to %s: %s (%s)", row.key, mask_number(row.to), RESENT_REASON, sid)
    write_sent(
        sessions,
        SmsOutcome(row.key, SENT, RESENT_REASON, sid, fresh=True, claimed_at=now),
        patience=settle_seconds,
    )
    return True


def _write(
    sessions: sessionmaker[Session],
    message_id: int,
    claimed_at: datetime,
    *,
    status: str,
    reason: str,
) -> None:
    with sessions() as session, session.begin():
        session.execute(
            update(SmsMessage)
            .where(
                SmsMessage.id == message_id,
                SmsMessage.status == SENDING,
                SmsMessage.created_at == claimed_at,
            )
            .values(status=status, reason=reason[:_MAX_REASON])
            .execution_options(synchronize_session=False)
        )
