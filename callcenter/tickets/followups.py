"""Follow-ups of a ticket request, run by a job once the portal has answered.

For a ticket that exists:
- every recording of the call is attached to it (`RECORDING_MODE` link or download, see
  `callcenter.calls.recordings`), in the order they were made;
- the caller gets an SMS with the number, topic and deadlines — only a phone that can take
  one (`callcenter.vocabulary.sms_reach`, the rule the IVR promises by); otherwise the skip and
  its reason are logged;
- for a critical failure or a stolen vehicle, the staff on duty get an alert SMS.
For a request that failed: the staff on duty get an alert with the reason.

Two ways to run them: `run_followups`, the follow-ups job (each SMS claimed before Twilio
is asked; no lock held while Twilio or the portal answers), and `run_local_followups` —
only when nothing has to leave the database (skips: a landline, a withheld number, no
Twilio account), in one transaction under the row's lock; otherwise it defers to the
former. The ticket job tries the local way right after the number, and so does the
follow-ups job when the draft says nothing will leave (`leaves_database`).

Each step is idempotent on its own (portal entries by dedup key, SMS by `SmsMessage.key`)
and its outcome is noted in `TicketRequest.followups`, so a re-run does only what is left.
Transient trouble (portal or Twilio unreachable, a recording Twilio is still processing)
makes the follow-ups due again after the outbox's backoff (seconds at first, see
`outbox.RETRY_DELAYS`); the first run that gets through after trouble makes the others
waiting due at once (`outbox.resume_waiting`). Permanent refusals are noted and not
retried. An SMS Twilio took is written down at once, outliving a database outage of up to
`SMS_SETTLE_SECONDS` (`notifications.send_unsettled`), so a run that dies before `record`
never leaves it `sending`.

`TicketRequest.followups` keys written here: `recordings` (sid → "attached" or
"rejected: …"), `caller_sms` (the SMS outcome), `alert_to` / `alerts` (the on-duty alert's
recipients and outcomes), `failure_alert` (`failure` number, `to`, `sent`), `runs` /
`error` / `gave_up_at` (transient trouble). The outbox writes `failures` and `retries`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, joinedload, sessionmaker

from callcenter.calls import recordings
from callcenter.calls.recordings import Recording
from callcenter.clock import Clock
from callcenter.db.models import Call, TicketRequest
from callcenter.errors import (
    PortalRejected,
    PortalUnavailable,
    TelephonyNotConfigured,
    TelephonyRejected,
    TelephonyUnavailable,
    TicketNotFound,
    UnknownTicketRequest,
)
from callcenter.phones import classify
from callcenter.portal.protocol import AffectedOrganisation, Portal, TicketDraft
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.settings import Settings
from callcenter.telephony.client import OfflineTelephony, Telephony
from callcenter.tickets import outbox
from callcenter.tickets.notifications import (
    RETRY,
    SKIPPED,
    SmsOutcome,
    caller_confirmation,
    failure_alert,
    on_duty_alert_recipients,
    record_skip,
    send_unsettled,
    settle,
    urgent_alert,
)
from callcenter.vocabulary import URGENT_PRIORITIES, sms_reach, sms_status_callback

log = logging.getLogger(__name__)

# How portal entries made by this service are signed.
AUTHOR = outbox.AUTHOR
# Follow-ups give up after this many runs with transient trouble (hours, by the backoff).
MAX_RUNS = outbox.MAX_ATTEMPTS

ATTACHED = "attached"
# Written by the outbox itself, never overwritten from a follow-up run's snapshot.
_OUTBOX_KEYS = frozenset({"failures", "retries"})


@dataclass
class FollowupReport:
    request_id: int
    # What this run did or found, one line each (for logs and tests).
    notes: list[str] = field(default_factory=list)
    # Something is left: when it is due (None: nothing left, or given up).
    next_attempt_at: datetime | None = None
    # Due at once (a recording arrived while this run worked): submit again.
    again_now: bool = False
    # `run_local_followups` only: something has to leave this database, nothing was done;
    # the follow-ups job is to run.
    deferred: bool = False


@dataclass(frozen=True)
class _Snapshot:
    """The request as read at the start of a run (no lock held while Twilio is asked)."""

    status: str
    number: str | None
    draft: TicketDraft
    stored: dict[str, Any]
    state: dict[str, Any]
    call_id: int | None
    recordings: list[Recording]
    received: datetime | None
    last_error: str | None

    @property
    def urgent(self) -> bool:
        return self.draft.priority in URGENT_PRIORITIES

    @property
    def incident(self) -> dict[str, Any] | None:
        """The caller joined a known incident (`outbox.INCIDENT`)."""
        marker = self.stored.get(outbox.INCIDENT)
        return marker if isinstance(marker, dict) else None

    @property
    def phone_duplicate(self) -> bool:
        """The call duplicated an existing ticket (the caller already has its number)."""
        return bool(self.number) and self.stored.get(outbox.DUPLICATE_OF) == self.number

    @property
    def addition(self) -> bool:
        """A repeat caller added to their open ticket: no new ticket to tell anyone about."""
        return bool(self.number) and self.stored.get(outbox.ADDITION_TO) == self.number


def run_followups(
    *,
    sessions: sessionmaker[Session],
    portal: Portal,
    telephony: Telephony,
    settings: Settings,
    calendar: BusinessCalendar,
    clock: Clock,
    request_id: int,
) -> FollowupReport:
    """Do what is left of the request's follow-ups. Safe to run twice and concurrently."""
    now = clock()
    with sessions() as session:
        row = session.get(TicketRequest, request_id, options=[joinedload(TicketRequest.call)])
        started = _start(session, row, request_id, now, calendar, settings)
        if started is None:
            return FollowupReport(request_id, ["nothing due"])
        snap, state = started
    run = _Run(sessions, portal, telephony, settings, snap, state, request_id, now, clock)
    run.run_steps()
    with sessions() as session, session.begin():
        run.record(session, clock())
    if run.recovered:
        # This request's trouble is over (the portal or Twilio answers again): the others
        # waiting out a backoff go now, not minutes after the dependency came back.
        outbox.resume_waiting(
            sessions,
            clock(),
            (outbox.DONE, outbox.FAILED),
            why=f"follow-ups of ticket request {request_id} got through",
        )
    return run.report


def run_local_followups(
    *,
    sessions: sessionmaker[Session],
    portal: Portal,
    telephony: Telephony,
    settings: Settings,
    calendar: BusinessCalendar,
    clock: Clock,
    request_id: int,
) -> FollowupReport:
    """The follow-ups at once, when none of them leaves this database: no recording to
    attach, and no SMS to hand to Twilio (the number cannot take one, or Twilio is not
    configured, so each is recorded as skipped). Then the whole run is one transaction
    under the row's lock — what the ticket job does right after the number instead of
    queueing the follow-ups job.

    Otherwise nothing is written and the report is `deferred`: the follow-ups job does
    it all, where an SMS is claimed before Twilio is asked (never sent twice) and a slow
    Twilio or recording download holds up no ticket.
    """
    now = clock()
    with sessions() as session:
        # The call's main recording comes with the row: a call without one has none.
        row = outbox.lock_request(
            session,
            request_id,
            options=[joinedload(TicketRequest.call).load_only(Call.recording_sid)],
        )
        started = _start(session, row, request_id, now, calendar, settings)
        if started is None:
            return FollowupReport(request_id, ["nothing due"])
        snap, state = started
        run = _Run(sessions, portal, telephony, settings, snap, state, request_id, now, clock)
        run.local = True
        try:
            run.run_steps()
        except _LeavesDatabase as exc:
            # Leaving the block without a commit rolls back (and lets go of the row).
            return FollowupReport(request_id, [f"for the follow-ups job: {exc}"], deferred=True)
        run.record(session, clock(), row=row)
        session.commit()
    return run.report


def leaves_database(
    status: str, draft: Mapping[str, Any], *, settings: Settings, telephony: Telephony
) -> bool:
    """Will the follow-ups of a request with this status and stored draft reach Twilio or
    the portal over the network? Judged from the draft alone, before any lock: True lets
    the ticket job queue the follow-ups job at once, without a local attempt that would
    only roll back; False leaves it to `run_local_followups`, which may still defer.
    Either answer is safe — it only picks the cheaper way."""
    if status == outbox.DONE and draft.get("recording_url"):
        return True  # the call's recording, to attach to the ticket
    if isinstance(telephony, OfflineTelephony):
        return False
    if status == outbox.FAILED or draft.get("priority") in URGENT_PRIORITIES:
        return True  # an alert to the staff on duty
    caller = classify(draft.get("caller"))
    return sms_reach(caller.kind, caller.e164, sms_foreign=settings.sms_foreign).ok


class _LeavesDatabase(Exception):
    """A local run met a step that needs Twilio or the portal over the network."""


def _due(row: TicketRequest, now: datetime) -> bool:
    """Is any of the request's follow-ups due (a replayed job must not run ahead of the
    backoff)?"""
    due = row.next_attempt_at
    return row.status != outbox.PENDING and due is not None and due <= now


def _start(
    session: Session,
    row: TicketRequest | None,
    request_id: int,
    now: datetime,
    calendar: BusinessCalendar,
    settings: Settings,
) -> tuple[_Snapshot, dict[str, Any]] | None:
    """The run's snapshot and starting state (the row read with its call); None when
    nothing is due."""
    if row is None:
        raise UnknownTicketRequest(f"no ticket request with id {request_id}")
    if not _due(row, now):
        return None
    snap = _snapshot(row)
    return snap, _state(session, snap, now, calendar, settings)


def _snapshot(row: TicketRequest) -> _Snapshot:
    received = row.draft.get(outbox.RECEIVED_AT)
    return _Snapshot(
        status=row.status,
        number=row.ticket_number,
        draft=outbox.draft_from_json(row.draft),
        stored=dict(row.draft),
        state=dict(row.followups or {}),
        call_id=row.call_id,
        recordings=_recordings_of(row.call),
        received=datetime.fromisoformat(received) if received else None,
        last_error=row.last_error,
    )


def _state(
    session: Session,
    snap: _Snapshot,
    now: datetime,
    calendar: BusinessCalendar,
    settings: Settings,
) -> dict[str, Any]:
    """The follow-ups state this run starts from, with the alerts' recipients fixed."""
    state = dict(snap.state)
    if snap.status == outbox.DONE and snap.urgent and "alert_to" not in state:
        # Fixed at the first run, so a roster change never alerts a second set of people.
        state["alert_to"] = on_duty_alert_recipients(session, now, calendar, settings)
    failures = int(state.get("failures", 0))
    if snap.status == outbox.FAILED and state.get("failure_alert", {}).get("failure") != failures:
        # One alert per failure: a retried request that fails again alerts again.
        state["failure_alert"] = {
            "failure": failures,
            "to": on_duty_alert_recipients(session, now, calendar, settings),
            "sent": {},
        }
    return state


def _recordings_of(call: Call | None) -> list[Recording]:
    # Every recording sets the call's main one, so a call without it has none (and the
    # events need not be read).
    if call is None or call.recording_sid is None:
        return []
    return recordings.call_recordings(call)


@dataclass
class _Run:
    sessions: sessionmaker[Session]
    portal: Portal
    telephony: Telephony
    settings: Settings
    snap: _Snapshot
    state: dict[str, Any]
    request_id: int
    now: datetime
    # Read again for each SMS claim: a claim says when it was made (`unsettled_sms` goes
    # by it), and a run may spend minutes on recordings and the portal before its SMS.
    clock: Clock
    report: FollowupReport = field(init=False)
    # Transient trouble met by this run: the follow-ups are due again after a backoff.
    transient: list[str] = field(default_factory=list)
    # SMS bookkeeping written with the outcome, in one transaction (`record`).
    settlements: list[SmsOutcome] = field(default_factory=list)
    skips: list[dict[str, Any]] = field(default_factory=list)
    # `run_local_followups`: nothing may leave the database (see `_LeavesDatabase`).
    local: bool = False
    # Set by `record`: earlier runs met transient trouble, this one none.
    recovered: bool = False

    def __post_init__(self) -> None:
        self.report = FollowupReport(self.request_id)

    def run_steps(self) -> None:
        snap = self.snap
        if snap.status == outbox.DONE and snap.number:
            self.attach_recordings()
            if snap.addition:
                return
            if snap.incident is not None:
                # Joined a known incident: the ticket names the caller, the caller gets
                # one SMS, and the staff on duty get the digest, not one alert each.
                self.note_incident(snap.incident)
                self.tell_caller()
            elif not snap.phone_duplicate:
                self.tell_caller()
            if snap.urgent and snap.incident is None:
                self.alert_on_duty()
        elif snap.status == outbox.FAILED:
            self.alert_failure()

    # ---------------------------------------------------------- recordings

    def attach_recordings(self) -> None:
        number = self.snap.number
        assert number is not None
        done: dict[str, str] = dict(self.state.get("recordings") or {})
        for rec in self.snap.recordings:
            if rec.sid in done:
                continue
            if self.local:
                raise _LeavesDatabase(f"recording {rec.sid} to attach")
            try:
                self.portal.add_entry(
                    number,
                    text=rec.label,
                    attachment_url=self._recording_url(rec),
                    attachment_name=rec.file_name,
                    author=AUTHOR,
                    dedup_key=f"recording:{rec.sid}",
                )
            except (PortalUnavailable, TelephonyUnavailable, OSError) as exc:
                self.transient.append(f"recording {rec.sid}: {exc}")
                continue
            except (PortalRejected, TicketNotFound, TelephonyRejected) as exc:
                done[rec.sid] = f"rejected: {exc}"[:300]
                log.error("recording %s not attached to №%s: %s", rec.sid, number, exc)
                self.report.notes.append(f"recording {rec.sid} rejected")
                continue
            done[rec.sid] = ATTACHED
            self.report.notes.append(f"recording {rec.sid} attached")
        self.state["recordings"] = done

    def _recording_url(self, rec: Recording) -> str:
        settings = self.settings
        if settings.recording_mode == "download" and not recordings.local_file(settings, rec.sid):
            try:
                data, content_type = self.telephony.fetch_recording(rec.url)
            except TelephonyNotConfigured as exc:
                log.warning("recording %s not downloaded (%s): linking Twilio's URL", rec.sid, exc)
                return recordings.twilio_media_url(rec.url)
            recordings.store(settings, rec.sid, data, content_type)
        return recordings.ticket_link(settings, rec.sid, rec.url)

    def note_incident(self, incident: dict[str, Any]) -> None:
        if self.state.get("incident_note") is not None or not incident.get("comment"):
            return
        number = self.snap.number
        assert number is not None
        if self.local:
            raise _LeavesDatabase("a comment for the incident's ticket")
        try:
            self.portal.add_entry(
                number,
                text=str(incident["comment"]),
                author=AUTHOR,
                dedup_key=f"incident-join:{self.request_id}",
            )
        except (PortalUnavailable, OSError) as exc:
            self.transient.append(f"incident comment: {exc}")
            return
        except (PortalRejected, TicketNotFound) as exc:
            self.state["incident_note"] = f"rejected: {exc}"[:300]
            return
        organisation = incident.get("organisation")
        if organisation:
            affected = AffectedOrganisation(str(organisation["name"]), organisation.get("id"))
            try:
                self.portal.add_affected_organisations(number, [affected], author=AUTHOR)
            except (PortalUnavailable, OSError) as exc:
                # The comment is kept (its dedup key); the next run adds the organisation.
                self.transient.append(f"affected organisation: {exc}")
                return
            except (PortalRejected, TicketNotFound) as exc:
                self.state["incident_note"] = f"rejected: {exc}"[:300]
                return
        self.state["incident_note"] = ATTACHED
        self.report.notes.append("incident comment added")

    # ---------------------------------------------------------- SMS

    def tell_caller(self) -> None:
        if self.state.get("caller_sms") not in (None, RETRY):
            return
        number = self.snap.number
        assert number is not None
        key = f"ticket-request:{self.request_id}:caller"
        incident = self.snap.incident
        if incident is not None and incident.get("sms"):
            # Written before the ticket had a number, when the caller joined at once.
            body = str(incident["sms"]).replace(outbox.NUMBER_SLOT, number)
        else:
            body = caller_confirmation(number, self.snap.draft)
        caller = classify(self.snap.draft.caller)
        eligible = sms_reach(caller.kind, caller.e164, sms_foreign=self.settings.sms_foreign)
        if eligible.ok and caller.e164 is not None:
            outcome = self._send(key=key, to=caller.e164, body=body)
        else:
            self.skips.append(
                {
                    "key": key,
                    "to": caller.e164,
                    "body": body,
                    "reason": eligible.reason,
                    "call_id": self.snap.call_id,
                }
            )
            outcome = SmsOutcome(key, SKIPPED, eligible.reason)
        self._note(outcome, "caller SMS")
        self.state["caller_sms"] = outcome.status

    def alert_on_duty(self) -> None:
        number = self.snap.number
        assert number is not None
        body = urgent_alert(number, self.snap.draft, duplicate=self.snap.phone_duplicate)
        sent = self._send_each(
            self.state.get("alert_to") or [],
            dict(self.state.get("alerts") or {}),
            key=f"ticket-request:{self.request_id}:alert",
            body=body,
            what="alert",
        )
        self.state["alerts"] = sent

    def alert_failure(self) -> None:
        alert = dict(self.state.get("failure_alert") or {})
        body = failure_alert(
            self.request_id,
            self.snap.draft,
            self.snap.received,
            self.snap.last_error or "причина не указана",
        )
        sent = self._send_each(
            alert.get("to") or [],
            dict(alert.get("sent") or {}),
            key=f"ticket-request:{self.request_id}:failed:{alert.get('failure', 0)}",
            body=body,
            what="failure alert",
        )
        self.state["failure_alert"] = {**alert, "sent": sent}

    def _send_each(
        self, recipients: list[str], sent: dict[str, str], *, key: str, body: str, what: str
    ) -> dict[str, str]:
        for to in recipients:
            if sent.get(to) not in (None, RETRY):
                continue
            outcome = self._send(key=f"{key}:{to}", to=to, body=body)
            self._note(outcome, f"{what} to {to}")
            sent[to] = outcome.status
        return sent

    def _send(self, *, key: str, to: str, body: str) -> SmsOutcome:
        if self.local:
            return self._skip_unsendable(key=key, to=to, body=body)
        outcome = send_unsettled(
            self.sessions,
            self.telephony,
            key=key,
            to=to,
            body=body,
            now=self.clock(),
            status_callback=sms_status_callback(self.settings.public_base_url),
            call_id=self.snap.call_id,
            settle_seconds=self.settings.sms_settle_seconds,
        )
        if outcome.fresh:
            self.settlements.append(outcome)
        return outcome

    def _skip_unsendable(self, *, key: str, to: str, body: str) -> SmsOutcome:
        """A local run's SMS: recorded as skipped when Twilio is not configured (nothing
        can be sent, so nothing needs claiming first); anything else is for the job."""
        if not isinstance(self.telephony, OfflineTelephony):
            raise _LeavesDatabase(f"SMS {key} to send")
        try:
            self.telephony.send_sms(to, body)
        except TelephonyNotConfigured as exc:  # always: it is the offline stand-in
            reason = str(exc)
        else:  # pragma: no cover - OfflineTelephony never sends
            raise _LeavesDatabase(f"SMS {key} was sent by the offline telephony")
        self.skips.append(
            {"key": key, "to": to, "body": body, "reason": reason, "call_id": self.snap.call_id}
        )
        return SmsOutcome(key, SKIPPED, reason)

    def _note(self, outcome: SmsOutcome, what: str) -> None:
        reason = f" ({outcome.reason})" if outcome.reason else ""
        self.report.notes.append(f"{what}: {outcome.status}{reason}")
        if outcome.status == RETRY:
            self.transient.append(f"{what}: {outcome.reason}")

    # ---------------------------------------------------------- the outcome

    def record(self, session: Session, now: datetime, row: TicketRequest | None = None) -> None:
        """Note what was done and when the rest is due, under the row's lock (`row`: the
        row this session locked already)."""
        if row is None:
            row = outbox.lock_request(session, self.request_id)
        if row is None:  # pragma: no cover - rows are never deleted
            return
        # Under the row's lock, so two runs never both record a skip.
        for outcome in self.settlements:
            settle(session, outcome)
        for skip in self.skips:
            record_skip(session, now=self.now, **skip)
        # Keep what the outbox wrote meanwhile (a supervisor's retry, a new failure count).
        merged = {
            **(row.followups or {}),
            **{k: v for k, v in self.state.items() if k not in _OUTBOX_KEYS},
        }
        if row.status != self.snap.status:
            row.followups = merged
            row.updated_at = now
            return  # a supervisor retried it meanwhile: the outbox owns the schedule now
        if self.transient:
            runs = int(merged.get("runs", 0)) + 1
            merged["runs"] = runs
            merged["error"] = "; ".join(self.transient)[:1000]
            if runs >= MAX_RUNS:
                merged["gave_up_at"] = now.isoformat()
                row.next_attempt_at = None
                log.error("ticket request %s: follow-ups given up: %s", row.id, merged["error"])
            else:
                row.next_attempt_at = now + outbox.retry_delay(runs)
        elif self._recording_arrived(session):
            row.next_attempt_at = now
            self.report.again_now = True
        else:
            self.recovered = "runs" in merged
            merged.pop("runs", None)
            merged.pop("error", None)
            row.next_attempt_at = None
        # Assigned once, as a new dict: the JSON column sees the change (a dict assigned
        # earlier and mutated in place after an autoflush would look unchanged).
        row.followups = merged
        row.updated_at = now
        self.report.next_attempt_at = row.next_attempt_at

    def _recording_arrived(self, session: Session) -> bool:
        """A recording added while this run worked (read under the row's lock, which
        `intake.add_recording` takes too, so none slips between). A local run held the
        lock from its start: it saw every recording there is."""
        if self.local or self.snap.status != outbox.DONE or self.snap.call_id is None:
            return False
        attached = self.state.get("recordings") or {}
        sids = recordings.recording_sids(session, self.snap.call_id)
        return any(sid not in attached for sid in sids)
