"""The pipeline's jobs: module-level functions of primitive ids, safe to run twice.

    webhook transaction: call row + outbox row ──commit──▶ runner.submit_ticket_request(id)
                                                              │ (Redis down: row stays
                                                              │  pending; the sweep finds it)
    create_ticket(id) ── portal ──▶ row: done + number ──▶ follow-ups*
          │ unavailable: row.next_attempt_at = backoff
          └ rejected / last try: failed ──▶ follow-ups*: on-duty alert
    sweep_outbox(), every SWEEP_SECONDS ──▶ re-submits every row whose next_attempt_at came
    retention_purge(), daily ──▶ `callcenter.calls.retention.purge_personal_data`

    * recordings, caller SMS, alerts: in the same job when they stay in the database,
      else the run_followups(id) job on the follow-ups queue

Every job is called as `job(services, *ids)`: the runner that runs it passes its own
`Services` first (`callcenter.jobs.runners` in-process, `callcenter.jobs.worker` on RQ);
RQ stores only the function's name and the ids. Jobs are safe to run twice and
concurrently: the outbox row carries the state and the retry schedule, the portal the
idempotency key. Every log line of a ticket's job carries its CallSid
(`callcenter.logs.call_context`).

Follow-ups that leave the database (an SMS through Twilio, a recording to attach) run as
their own job on the follow-ups queue, so a caller waiting for a number is never queued
behind them; the ones that do not (SMS recorded as skipped: a landline, a withheld number,
no Twilio account) are done by the ticket job right after the number, in one transaction
(`followups.run_local_followups`) — a queued job costs more than the work — unless other
tickets are waiting: then they too go to the follow-ups queue, after the numbers. RQ's
own `Retry` is not used on purpose: a retry kept in Redis is lost with Redis's data and
would fight the row's schedule; the row's `attempts` / `next_attempt_at` survive both a
worker restart and an empty Redis, and the sweep turns them into jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from callcenter.callbacks import queue as callback_queue
from callcenter.callbacks.sla import alert_overdue
from callcenter.calls import recordings, retention
from callcenter.db import transaction
from callcenter.db.models import TicketRequest
from callcenter.errors import QueueUnavailable, TelephonyUnavailable
from callcenter.incidents import detection
from callcenter.incidents.followups import incidents_due, run_incident_followups
from callcenter.ivr.spool import replay_spool
from callcenter.logs import call_context
from callcenter.ports import Services
from callcenter.routing.alerts import (
    calls_with_alerts_due,
    calls_with_missed_urgent_due,
    send_due_chain_alerts,
    send_due_missed_urgent_sms,
)
from callcenter.tickets import followups, outbox
from callcenter.tickets.notifications import RETRY, SENT, send_kb_link_sms
from callcenter.tickets.unsettled_sms import reconcile_unsettled
from callcenter.vocabulary import CRITICAL_TOPIC, sms_status_callback

log = logging.getLogger(__name__)


def create_ticket(services: Services, request_id: int) -> str | None:
    """Turn ticket request `request_id` into a portal ticket; returns its number if done.
    Then the follow-ups: done here when they stay in the database, else queued."""
    with _one_connection(services) as sessions:
        state = outbox.read_request(sessions, request_id)
        with call_context(state.call_sid):
            delivery = outbox.deliver(
                sessions,
                services.portal,
                request_id,
                clock=services.clock,
                recording_link=partial(recordings.ticket_link, services.settings),
                state=state,
            )
            if delivery.status in (outbox.DONE, outbox.FAILED):
                # Also when another run recorded the outcome: a request re-submitted after
                # its ticket exists (a recording came in) has follow-ups due; they check.
                if followups.leaves_database(
                    delivery.status,
                    state.draft,
                    settings=services.settings,
                    telephony=services.telephony,
                ) or _tickets_waiting(services):
                    services.jobs.submit_followups(request_id)
                else:
                    _follow_up(services, sessions, request_id)
            if delivery.status in (outbox.DONE, outbox.FAILED) and _reports_a_failure(state):
                # The ticket an incident is tracked on is a critical one of its own.
                _release_duplicates(services, request_id)
            if delivery.status == outbox.DONE and _reports_a_failure(state):
                _detect_incident(services, state.call_sid)
    return delivery.ticket_number


def _reports_a_failure(state: outbox.RequestState) -> bool:
    """A critical call's own ticket (not a phone duplicate): it may be part of a surge."""
    draft = state.draft
    return (
        draft.get("topic") == CRITICAL_TOPIC
        and not draft.get(outbox.DUPLICATE_OF)
        and not draft.get(outbox.DUPLICATE_OF_REQUEST)
    )


def _release_duplicates(services: Services, request_id: int) -> None:
    """Callers who joined an incident before its ticket had a number wait on this request
    (`outbox.DUPLICATE_OF_REQUEST`): their jobs go now, not after their backoff. A failure
    here costs only that head start (the sweep submits them when due)."""
    try:
        waiting = outbox.duplicates_waiting_for(services.sessions, request_id, services.clock())
    except Exception:
        log.exception("ticket request %s: duplicates waiting for it left to the sweep", request_id)
        return
    for waiting_id in waiting:
        services.jobs.submit_ticket_request(waiting_id)


def _detect_incident(services: Services, call_sid: str) -> None:
    """Open an incident when this call completes a surge (`incidents.detection`), then
    queue its alerts. A failure here is logged; the ticket is made all the same."""
    settings = services.settings
    if settings.incident_threshold <= 0:
        return  # detection off (INCIDENT_THRESHOLD=0)
    try:
        with transaction(services.sessions) as session:
            incident_id = detection.detect(
                session,
                call_sid,
                now=services.clock(),
                calendar=services.calendar,
                threshold=settings.incident_threshold,
                window_minutes=settings.incident_window_minutes,
            )
    except Exception:
        log.exception("incident detection failed for call %s", call_sid)
        return
    if incident_id is not None:
        submit_incident_job(services, incident_id)


def submit_incident_job(services: Services, incident_id: int) -> bool:
    """Queue `incident_job` (one per incident at a time); False when the queue is down
    (the sweep queues it: `queue_due_incidents`)."""
    try:
        services.jobs.submit_incident(incident_id)
    except QueueUnavailable as exc:
        log.warning("incident %s: job left for the sweep (%s)", incident_id, exc)
        return False
    return True


def incident_job(services: Services, incident_id: int) -> int:
    """What incident `incident_id` has to send (`incidents.followups`): detected alerts,
    the digest, the closing entry and the resolution SMS; how many SMS went out. Twilio
    or the portal out of reach fails the job; the sweep queues it again."""
    return run_incident_followups(
        services.sessions,
        services.portal,
        services.telephony,
        settings=services.settings,
        calendar=services.calendar,
        now=services.clock(),
        incident_id=incident_id,
    )


def queue_due_incidents(services: Services) -> int:
    """Queue `incident_job` for every incident with something due; how many. Raises
    `QueueUnavailable` like any submit."""
    with services.sessions() as session:
        due = incidents_due(session, now=services.clock())
    for incident_id in due:
        services.jobs.enqueue(incident_job, incident_id, job_id=f"incident:{incident_id}")
    return len(due)


def _tickets_waiting(services: Services) -> bool:
    """Are other ticket jobs queued (a burst of calls ending)? Then even follow-ups that
    stay in the database go to their own queue, served once the tickets are: the next
    caller's number comes first. A runner that cannot tell (or whose queue is down: the
    follow-ups could not be queued either) says no, and they are done here."""
    return services.jobs.tickets_waiting()


@contextmanager
def _one_connection(services: Services) -> Iterator[sessionmaker[Session]]:
    """Sessions on one pooled connection for the whole job: its reads and writes take one
    checkout (and its liveness check) instead of one each. The transactions stay short and
    separate, each committed as before; the connection is idle between them (across the
    portal's and Twilio's answers too), holding no lock. One session at a time: a second
    one opened inside the first would share its transaction."""
    with services.engine.connect() as connection:
        yield sessionmaker(connection, expire_on_commit=False)


def _follow_up(services: Services, sessions: sessionmaker[Session], request_id: int) -> None:
    """The request's follow-ups at once if they stay in the database, else their job."""
    try:
        report = _local_followups(services, sessions, request_id)
    except Exception:
        # The number is recorded: this job has done its part. The follow-ups job tries
        # again (with its backoff) and fails visibly if it must.
        log.exception(
            "ticket request %s: follow-ups failed here; queued as their own job",
            request_id,
            extra={"ticket_request_id": request_id},
        )
        services.jobs.submit_followups(request_id)
        return
    if report.deferred:
        services.jobs.submit_followups(request_id)
    _log_followups(report)


def _local_followups(
    services: Services, sessions: sessionmaker[Session], request_id: int
) -> followups.FollowupReport:
    return followups.run_local_followups(
        sessions=sessions,
        portal=services.portal,
        telephony=services.telephony,
        settings=services.settings,
        calendar=services.calendar,
        clock=services.clock,
        request_id=request_id,
    )


def run_followups(services: Services, request_id: int) -> None:
    """Attach recordings, SMS the caller, alert on-duty staff — whatever is left."""
    with _one_connection(services) as sessions:
        state = outbox.read_request(sessions, request_id)
        with call_context(state.call_sid):
            if not followups.leaves_database(
                state.status, state.draft, settings=services.settings, telephony=services.telephony
            ):
                # Queued while tickets waited (or by the sweep): in one transaction if they
                # stay in the database after all.
                report = _local_followups(services, sessions, request_id)
                if not report.deferred:
                    _log_followups(report)
                    return
            _run_followups(services, sessions, request_id)


def _run_followups(services: Services, sessions: sessionmaker[Session], request_id: int) -> None:
    # A recording that came in while a run worked is due at once: run again here (this
    # job's id is still taken, so re-submitting would be a no-op). Bounded; the sweep picks
    # up anything left.
    for _round in range(3):
        report = followups.run_followups(
            sessions=sessions,
            portal=services.portal,
            telephony=services.telephony,
            settings=services.settings,
            calendar=services.calendar,
            clock=services.clock,
            request_id=request_id,
        )
        _log_followups(report)
        if not report.again_now:
            return


def _log_followups(report: followups.FollowupReport) -> None:
    log.info(
        "ticket request %s follow-ups: %s",
        report.request_id,
        "; ".join(report.notes) or "nothing to do",
        extra={"ticket_request_id": report.request_id},
    )


def purge_personal_data(services: Services) -> retention.PurgeReport:
    """The retention purge as of now, committed (it logs what it did)."""
    with transaction(services.sessions) as session:
        return retention.purge_personal_data(
            session,
            now=services.clock(),
            retention_days=services.settings.retention_days,
            data_dir=services.settings.data_dir,
        )


def retention_purge(services: Services) -> int:
    """The daily retention purge; returns how many calls it anonymised. It asks for the
    next day's run first, so a purge that fails (visible in RQ's failed jobs and the log)
    does not end the chain."""
    services.jobs.schedule_next("purge")
    return purge_personal_data(services).calls_anonymised


def replay_fallback_spool(services: Services) -> None:
    """Fallback events spooled while the database was down go into the call log now.

    The spool is a file under this host's CALLCENTER_DATA_DIR: the sweep of a process on
    the same host (the in-process runner, or a worker beside the web processes) finds it.
    """
    try:
        stored, left = replay_spool(services)
    except Exception:
        log.exception("replaying the fallback spool failed; it stays on disk")
        return
    if stored or left:
        log.info("fallback spool: %d events stored, %d still waiting", stored, left)


def sweep_outbox(services: Services) -> int:
    """Re-submit every request whose next job is due; returns how many were submitted.
    That comes first: after an outage the spool replay can take half a minute, and the
    tickets and SMS callers wait for must not wait behind it (a replayed event that makes
    a ticket request submits it itself). Then the housekeeping, whose parts each log
    their own failure. The next sweep is asked for whatever happens here, so a failing
    sweep does not end the chain."""
    try:
        try:
            return services.jobs.flush()
        finally:
            replay_fallback_spool(services)
            callback_sweep(services)
            reconcile_sms(services)
    finally:
        services.jobs.schedule_next("sweep")


def reconcile_sms(services: Services) -> None:
    """SMS left `sending` past `SMS_UNSETTLED_MINUTES` are settled by asking Twilio
    (`unsettled_sms.reconcile_unsettled`). A failure is logged and left to the next sweep."""
    try:
        reconcile_unsettled(
            services.sessions,
            services.telephony,
            now=services.clock(),
            older_than=timedelta(minutes=services.settings.sms_unsettled_minutes),
            status_callback=_sms_status_callback(services),
            settle_seconds=services.settings.sms_settle_seconds,
            real_clock=services.settings.clock_start is None,
        )
    except SQLAlchemyError as exc:
        # The database away: the spool replay and the flush say so at length already.
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        log.warning("unsettled SMS not reconciled (%s); the next sweep tries again", first)
    except Exception:
        log.exception("reconciling unsettled SMS failed; the next sweep tries again")


def callback_sweep(services: Services) -> None:
    """New calls that need a call back become queue items; overdue items get the head's
    SMS (once each). A failure is logged and left to the next sweep."""
    try:
        with transaction(services.sessions) as session:
            callback_queue.refresh_queue(
                session,
                now=services.clock(),
                calendar=services.calendar,
                sla_minutes=services.settings.callback_sla_minutes,
            )
        alert_overdue(
            services.sessions,
            services.telephony,
            now=services.clock(),
            status_callback=_sms_status_callback(services),
        )
    except Exception:
        log.exception("the call-back sweep failed; the next sweep tries again")


def note_to_ticket(
    services: Services, call_id: int, dedup_key: str, text: str, author: str
) -> bool:
    """Put a console note or a call-back result into the call's ticket history (the
    portal's dedup key makes a re-run harmless); False when the call has no ticket."""
    with services.sessions() as session:
        number = session.scalar(
            select(TicketRequest.ticket_number).where(TicketRequest.call_id == call_id)
        )
    if number is None:
        log.info("note %s: call %s has no ticket, kept in the call log only", dedup_key, call_id)
        return False
    services.portal.add_entry(number, text=text, author=author, dedup_key=dedup_key)
    return True


def retry_ticket_request(services: Services, request_id: int, *, by: str | None = None) -> bool:
    """A supervisor's retry of a failed request (console, CLI): pending again, committed,
    then submitted. Returns whether it was queued (False: Redis is down, the sweep will).
    Raises `UnknownTicketRequest` / `TicketRequestNotRetryable`."""
    with transaction(services.sessions) as session:
        outbox.retry_request(session, request_id, now=services.clock(), by=by)
    log.info("ticket request %s retried by %s", request_id, by or "someone")
    return services.jobs.submit_ticket_request(request_id)


def queue_due_chain_alerts(services: Services) -> int:
    """Queue the chain alerts still due (see `routing.alerts.calls_with_alerts_due`); how many.
    Raises `QueueUnavailable` like any submit."""
    with services.sessions() as session:
        due = calls_with_alerts_due(session, now=services.clock())
    for call_id in due:
        services.jobs.submit_chain_alerts(call_id)
    return len(due)


def due_request_ids(services: Services) -> tuple[list[int], list[int]]:
    """(requests whose ticket is due, requests whose follow-ups are due), as of now."""
    now = services.clock()
    with services.sessions() as session:
        return outbox.due_ticket_ids(session, now), outbox.due_followup_ids(session, now)


def chain_alerts_job(services: Services, call_id: int) -> int:
    """Send call `call_id`'s chain alerts still unsent; returns how many went out. Twilio out
    of reach fails the job loudly (the log, RQ's failed registry); the outbox sweep queues
    it again while any alert is due (`routing.alerts.calls_with_alerts_due`)."""
    return send_due_chain_alerts(
        services.sessions,
        services.telephony,
        call_id,
        now=services.clock(),
        status_callback=_sms_status_callback(services),
    )


def queue_due_missed_urgent_sms(services: Services) -> int:
    """Queue the missed urgent call SMS still due (see
    `routing.alerts.calls_with_missed_urgent_due`); how many. Raises `QueueUnavailable`
    like any submit."""
    with services.sessions() as session:
        due = calls_with_missed_urgent_due(session, now=services.clock())
    for call_id in due:
        services.jobs.submit_missed_urgent_sms(call_id)
    return len(due)


def kb_link_sms_job(services: Services, call_id: int) -> bool:
    """Send call `call_id`'s caller the knowledge base's link, unless sent; True when it
    went out. Twilio out of reach fails the job visibly."""
    outcome = send_kb_link_sms(
        services.sessions,
        services.telephony,
        call_id,
        now=services.clock(),
        sms_foreign=services.settings.sms_foreign,
        status_callback=_sms_status_callback(services),
    )
    if outcome is not None and outcome.status == RETRY:
        raise TelephonyUnavailable(f"knowledge base SMS of call {call_id}: {outcome.reason}")
    return outcome is not None and outcome.status == SENT


def missed_urgent_sms_job(services: Services, call_id: int) -> bool:
    """Send the SMS about urgent call `call_id` hung up before a word, unless sent; True
    when it went out. Twilio out of reach fails the job; the sweep queues it again."""
    return send_due_missed_urgent_sms(
        services.sessions,
        services.telephony,
        call_id,
        now=services.clock(),
        calendar=services.calendar,
        duty_phone=services.settings.duty_phone,
        status_callback=_sms_status_callback(services),
    )


def _sms_status_callback(services: Services) -> str | None:
    """Where Twilio reports the delivery of the SMS a job sends."""
    return sms_status_callback(services.settings.public_base_url)
