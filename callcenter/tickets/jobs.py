"""The ticket pipeline's jobs, and the two runners that execute them.

    webhook transaction: call row + outbox row ──commit──▶ jobs.submit_ticket_request(id)
                                                              │ (Redis down: row stays
                                                              │  pending; the sweep finds it)
    create_ticket(id) ── portal ──▶ row: done + number ──▶ follow-ups*
          │ unavailable: row.next_attempt_at = backoff
          └ rejected / last try: failed ──▶ follow-ups*: on-duty alert
    sweep_outbox(), every SWEEP_SECONDS ──▶ re-submits every row whose next_attempt_at came
    retention_purge(), daily ──▶ `callcenter.calls.retention.purge_personal_data`

    * recordings, caller SMS, alerts: in the same job when they stay in the database,
      else the run_followups(id) job on the follow-ups queue

Jobs are module-level functions of primitive ids, safe to run twice and concurrently: the
outbox row carries the state and the retry schedule, the portal the idempotency key. Every
log line of a ticket's job carries its CallSid (`callcenter.logs.call_context`).

Follow-ups that leave the database (an SMS through Twilio, a recording to attach) run as
their own job on the follow-ups queue, so a caller waiting for a number is never queued
behind them; the ones that do not (SMS recorded as skipped: a landline, a withheld number,
no Twilio account) are done by the ticket job right after the number, in one transaction
(`followups.run_local_followups`) — a queued job costs more than the work — unless other
tickets are waiting: then they too go to the follow-ups queue, after the numbers. RQ's
own `Retry` is not used on purpose: a retry kept in Redis is lost with Redis's data and
would fight the row's schedule; the row's `attempts` / `next_attempt_at` survive both a
worker restart and an empty Redis, and the sweep turns them into jobs.

Runners (`services.jobs`, built by `build_runner`):
- `RqJobRunner` (REDIS_URL set): RQ queues `QUEUE_NAME` (tickets, sweeps) and
  `QUEUE_NAME-followups`; a worker serves the first before the second, so a caller waiting
  for a number is never queued behind SMS and recording downloads. Job ids derive from the
  request id, so a double submit is one job. The sweep is a scheduled RQ job that schedules
  its successor (RQ's scheduler: `callcenter worker`, or `rq worker --with-scheduler`);
  ids per time slot make several workers converge on one chain, and every worker's start,
  its maintenance and the web side's submits re-seed the chain should Redis lose it. The
  retention purge is a daily chain of the same kind on the follow-ups queue (slots start
  at 00:00 UTC, 03:00 in Moscow), seeded by every worker's start and maintenance.
- `InlineJobRunner` (no REDIS_URL, the embedded default): the same job functions on a small
  thread pool in the web process, plus a sweep thread (which also starts the retention
  purge once a day). Same code path, no Redis.

Why a per-process context instead of passing `Services` to jobs: RQ stores a job as a
function name and its arguments, and a worker process builds the wiring once; the job
finds it with `current_services()` — the runner's own `Services` in the in-process
runner's threads (`using`), the one `configure`d by `run_worker`, or one built from the
environment by a plain `rq worker`.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import now as rq_now
from rq.utils import utcformat
from sqlalchemy.orm import Session, sessionmaker

from callcenter.calls import recordings, retention
from callcenter.db import transaction
from callcenter.errors import ConfigurationError, QueueUnavailable
from callcenter.logs import call_context
from callcenter.tickets import followups, outbox

if TYPE_CHECKING:
    from callcenter.services import Services

log = logging.getLogger(__name__)

# How often due rows are looked for; also the first retry's 10 s comes around this fast.
SWEEP_SECONDS = 10
# Seconds a job may run before RQ stops it (the portal and Twilio time out well before).
TICKET_JOB_TIMEOUT = 120
FOLLOWUP_JOB_TIMEOUT = 300
# How long RQ keeps a finished job. The outbox row is the record; a short while is enough
# for RQ's tools (and cheaper for RQ than deleting the job at once). A submit of the same id
# meanwhile replaces the finished job.
RESULT_TTL = 60
FAILURE_TTL = 7 * 24 * 3600
FOLLOWUPS_SUFFIX = "-followups"
# The retention purge runs once a slot: a day from 00:00 UTC (03:00 Moscow, a quiet hour).
PURGE_SECONDS = 24 * 3600
PURGE_JOB_TIMEOUT = 3600
# RQ worker timing (`run_worker`). A worker blocks on Redis for WORKER_TTL - 15 s between
# maintenance checks; maintenance restarts RQ's scheduler (it dies with a Redis that
# crashed) and re-seeds the sweep and purge chains. RQ's defaults (420 s, 10 min) left
# the scheduler down for ~7 minutes after a Redis restart; these bring it back within
# MAINTENANCE_SECONDS of the worker reconnecting — at once when the worker sees Redis lost
# its data (`PipelineWorker.heartbeat`).
WORKER_TTL = 45
MAINTENANCE_SECONDS = 30
# The longest pause between the worker's tries to reach a Redis that is down (RQ: 60 s).
RECONNECT_SECONDS = 10.0

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TERMINAL = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}

# ---------------------------------------------------------------- the per-process context

_current: contextvars.ContextVar[Services | None] = contextvars.ContextVar(
    "callcenter_services", default=None
)
_process_services: Services | None = None
_process_lock = threading.Lock()


def configure(services: Services | None) -> None:
    """Make `services` what jobs in this process use (a worker calls this at start);
    None forgets it."""
    global _process_services
    with _process_lock:
        _process_services = services


def current_services() -> Services:
    """The wiring a job runs with; built from the environment on first use in a process
    nobody `configure`d (a plain `rq worker`)."""
    global _process_services
    services = _current.get()
    if services is not None:
        return services
    with _process_lock:
        if _process_services is None:
            from callcenter.services import Services
            from callcenter.settings import Settings

            _process_services = Services.from_settings(Settings.from_env())
        return _process_services


@contextmanager
def using(services: Services) -> Iterator[None]:
    """Run jobs in this thread/context with `services` (the in-process runner's threads)."""
    token = _current.set(services)
    try:
        yield
    finally:
        _current.reset(token)


# ---------------------------------------------------------------- the jobs


def create_ticket(request_id: int) -> str | None:
    """Turn ticket request `request_id` into a portal ticket; returns its number if done.
    Then the follow-ups: done here when they stay in the database, else queued."""
    services = current_services()
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
    return delivery.ticket_number


def _tickets_waiting(services: Services) -> bool:
    """Are other ticket jobs queued (a burst of calls ending)? Then even follow-ups that
    stay in the database go to their own queue, served once the tickets are: the next
    caller's number comes first."""
    runner = services.jobs
    if not isinstance(runner, RqJobRunner):
        return False
    try:
        return bool(runner.tickets.count)
    except RedisError:
        return False  # cannot queue the follow-ups either: do them here


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


def run_followups(request_id: int) -> None:
    """Attach recordings, SMS the caller, alert on-duty staff — whatever is left."""
    services = current_services()
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


def retention_purge() -> int:
    """The daily retention purge; returns how many calls it anonymised. On RQ it schedules
    the next day's run first, so a purge that fails (visible in RQ's failed jobs and the
    log) does not end the chain."""
    services = current_services()
    runner = services.jobs
    if isinstance(runner, RqJobRunner):
        runner.schedule_purge()
    return purge_personal_data(services).calls_anonymised


def replay_fallback_spool(services: Services) -> None:
    """Fallback events spooled while the database was down go into the call log now.

    The spool is a file under this host's CALLCENTER_DATA_DIR: the sweep of a process on
    the same host (the in-process runner, or a worker beside the web processes) finds it.
    """
    from callcenter.ivr.spool import replay_spool

    try:
        stored, left = replay_spool(services)
    except Exception:
        log.exception("replaying the fallback spool failed; it stays on disk")
        return
    if stored or left:
        log.info("fallback spool: %d events stored, %d still waiting", stored, left)


def sweep_outbox() -> int:
    """Re-submit every request whose next job is due; returns how many were submitted."""
    services = current_services()
    runner = services.jobs
    replay_fallback_spool(services)
    try:
        return runner.flush()
    finally:
        if isinstance(runner, RqJobRunner):
            runner.schedule_sweep()


def retry_ticket_request(services: Services, request_id: int, *, by: str | None = None) -> bool:
    """A supervisor's retry of a failed request (console, CLI): pending again, committed,
    then submitted. Returns whether it was queued (False: Redis is down, the sweep will).
    Raises `UnknownTicketRequest` / `TicketRequestNotRetryable`."""
    with transaction(services.sessions) as session:
        outbox.retry_request(session, request_id, now=services.clock(), by=by)
    log.info("ticket request %s retried by %s", request_id, by or "someone")
    return services.jobs.submit_ticket_request(request_id)


def queue_due_chain_alerts(services: Services) -> int:
    """Queue the chain alerts still due (see `notifications.calls_with_alerts_due`); how
    many. Raises `QueueUnavailable` like any submit."""
    from callcenter.routing.chain import chain_alerts_job
    from callcenter.tickets.notifications import calls_with_alerts_due

    with services.sessions() as session:
        due = calls_with_alerts_due(session, now=services.clock())
    for call_id in due:
        services.jobs.enqueue(chain_alerts_job, call_id, job_id=f"chain-alerts:{call_id}")
    return len(due)


def queue_due_missed_urgent_sms(services: Services) -> int:
    """Queue the missed urgent call SMS still due (`notifications.calls_with_missed_urgent_due`);
    how many. Raises `QueueUnavailable` like any submit."""
    from callcenter.tickets.notifications import calls_with_missed_urgent_due

    with services.sessions() as session:
        due = calls_with_missed_urgent_due(session, now=services.clock())
    for call_id in due:
        queue_missed_urgent_sms(services.jobs, call_id)
    return len(due)


def queue_missed_urgent_sms(jobs: JobRunner, call_id: int) -> None:
    """Queue the SMS about urgent call `call_id` hung up before a word (one job per call)."""
    from callcenter.routing.chain import missed_urgent_sms_job

    jobs.enqueue(missed_urgent_sms_job, call_id, job_id=f"missed-urgent:{call_id}")


def due_request_ids(services: Services) -> tuple[list[int], list[int]]:
    """(requests whose ticket is due, requests whose follow-ups are due), as of now."""
    now = services.clock()
    with services.sessions() as session:
        return outbox.due_ticket_ids(session, now), outbox.due_followup_ids(session, now)


# ---------------------------------------------------------------- runners


class JobRunner(Protocol):
    def submit_ticket_request(self, request_id: int) -> bool:
        """Queue the ticket job after the row was committed. Never raises for a queue that
        is down (returns False; the row stays pending and the sweep finds it)."""
        ...

    def submit_followups(self, request_id: int) -> bool:
        """Queue the follow-ups job; never raises for a queue that is down."""
        ...

    def enqueue(self, func: Callable[..., object], *args: Any, job_id: str | None = None) -> None:
        """Run `func(*args)` (a module-level function of primitive values) as a job; a
        repeated `job_id` is one job. Raises `QueueUnavailable` when it cannot be queued."""
        ...

    def flush(self) -> int:
        """Submit everything due now; returns how many. Raises `QueueUnavailable`."""
        ...

    def close(self) -> None: ...


def build_runner(services: Services) -> JobRunner:
    if services.settings.redis_url:
        return RqJobRunner(services, services.settings.redis_url, services.settings.queue_name)
    return InlineJobRunner(services)


class RqJobRunner:
    """Jobs on RQ queues in Redis."""

    def __init__(self, services: Services, redis_url: str, queue_name: str) -> None:
        if not _QUEUE_NAME.fullmatch(queue_name):
            # It goes into RQ job ids, which allow only these characters.
            raise ConfigurationError(
                f"QUEUE_NAME may hold only letters, digits, '_' and '-', got {queue_name!r}"
            )
        self.services = services
        self.queue_name = queue_name
        # Fail fast: a webhook waits on this while a caller listens. A Redis that is down
        # costs one refused connection, not redis-py's default retries with backoff.
        self.connection = Redis.from_url(
            redis_url,
            socket_connect_timeout=1,
            socket_timeout=3,
            retry=Retry(NoBackoff(), 1),
        )
        self.tickets = Queue(queue_name, connection=self.connection)
        self.followups = Queue(queue_name + FOLLOWUPS_SUFFIX, connection=self.connection)
        self._last_seed = 0.0

    # Job ids carry the queue name: they are global in Redis, and two deployments (or two
    # test runs) sharing a Redis must not take each other's jobs for their own.
    def ticket_job_id(self, request_id: int) -> str:
        return f"{self.queue_name}__ticket-request-{request_id}"

    def followups_job_id(self, request_id: int) -> str:
        return f"{self.queue_name}__ticket-followups-{request_id}"

    def submit_ticket_request(self, request_id: int) -> bool:
        try:
            self._enqueue_once(
                self.tickets,
                create_ticket,
                request_id,
                job_id=self.ticket_job_id(request_id),
                timeout=TICKET_JOB_TIMEOUT,
            )
            self._seed_sweep_now_and_then()
        except QueueUnavailable as exc:
            log.warning(
                "ticket request %s stays pending, Redis is unavailable (%s); the sweep will "
                "submit it",
                request_id,
                exc,
                extra={"ticket_request_id": request_id},
            )
            return False
        return True

    def submit_followups(self, request_id: int) -> bool:
        try:
            self._enqueue_once(
                self.followups,
                run_followups,
                request_id,
                job_id=self.followups_job_id(request_id),
                timeout=FOLLOWUP_JOB_TIMEOUT,
            )
        except QueueUnavailable as exc:
            log.warning(
                "follow-ups of ticket request %s wait for the sweep, Redis is unavailable (%s)",
                request_id,
                exc,
                extra={"ticket_request_id": request_id},
            )
            return False
        return True

    def enqueue(self, func: Callable[..., object], *args: Any, job_id: str | None = None) -> None:
        self._enqueue_once(
            self.followups,
            func,
            *args,
            # RQ allows only letters, digits, '_' and '-' in ids ("chain-alerts:7" works too).
            job_id=f"{self.queue_name}__{_JOB_ID_UNSAFE.sub('-', job_id or uuid.uuid4().hex)}",
            timeout=FOLLOWUP_JOB_TIMEOUT,
        )

    def flush(self) -> int:
        tickets, followup_ids = due_request_ids(self.services)
        for request_id in tickets:
            self._enqueue_once(
                self.tickets,
                create_ticket,
                request_id,
                job_id=self.ticket_job_id(request_id),
                timeout=TICKET_JOB_TIMEOUT,
            )
        for request_id in followup_ids:
            self._enqueue_once(
                self.followups,
                run_followups,
                request_id,
                job_id=self.followups_job_id(request_id),
                timeout=FOLLOWUP_JOB_TIMEOUT,
            )
        return (
            len(tickets)
            + len(followup_ids)
            + queue_due_chain_alerts(self.services)
            + queue_due_missed_urgent_sms(self.services)
        )

    def _enqueue_once(
        self,
        queue: Queue,
        func: Callable[..., object],
        *args: Any,
        job_id: str,
        timeout: int,
    ) -> None:
        """Queue the job unless the same id is already queued or running.

        RQ's `unique=True` refuses an id that exists; a finished or failed job of that id
        is history, so it is deleted and the job queued afresh. Three rounds settle two
        submitters racing each other.
        """
        try:
            for _round in range(3):
                try:
                    queue.enqueue_call(
                        func,
                        args=args,
                        job_id=job_id,
                        unique=True,
                        timeout=timeout,
                        result_ttl=RESULT_TTL,
                        failure_ttl=FAILURE_TTL,
                    )
                    return
                except DuplicateJobError:
                    try:
                        job = Job.fetch(job_id, connection=self.connection)
                    except NoSuchJobError:
                        continue  # it just expired: try again
                    if job.get_status(refresh=False) not in _TERMINAL:
                        return  # queued, scheduled or running: that one job will do it
                    job.delete()
        except RedisError as exc:
            raise QueueUnavailable(f"Redis: {exc}") from exc

    # ------------------------------------------------------------- the sweep chain

    def schedule_sweep(self, *, now: bool = False) -> None:
        """Schedule the sweep for the next slot (or the current one, `now`). Slots are
        SWEEP_SECONDS wide and the job id names the slot, so every scheduler of a slot
        schedules the same one job."""
        self._schedule_slot(
            "outbox sweep",
            self.tickets,
            sweep_outbox,
            SWEEP_SECONDS,
            now=now,
            job_timeout=TICKET_JOB_TIMEOUT,
            result_ttl=SWEEP_SECONDS * 6,
            failure_ttl=SWEEP_SECONDS * 60,
        )

    def schedule_purge(self, *, now: bool = False) -> None:
        """Schedule the retention purge for the next day slot (or the current one, `now`:
        at once, unless that slot's purge ran already). Like the sweep, the job id names
        the slot, so any number of workers schedule one purge a day; a finished purge is
        kept for two slots, so a worker restarting the same day does not run it again."""
        # On the follow-ups queue: a long purge must never hold up a ticket.
        self._schedule_slot(
            "retention purge",
            self.followups,
            retention_purge,
            PURGE_SECONDS,
            now=now,
            job_timeout=PURGE_JOB_TIMEOUT,
            result_ttl=PURGE_SECONDS * 2,
            failure_ttl=FAILURE_TTL,
        )

    def _schedule_slot(
        self,
        what: str,
        queue: Queue,
        func: Callable[[], object],
        seconds: int,
        *,
        now: bool,
        job_timeout: int,
        result_ttl: int,
        failure_ttl: int,
    ) -> None:
        """One job of a chain at the start of the next `seconds`-wide slot (or the current
        one, `now`); its id names the slot, so schedulers of one slot make one job."""
        slot = int(time.time() // seconds) + (0 if now else 1)
        try:
            queue.enqueue_at(
                datetime.fromtimestamp(slot * seconds, UTC),
                func,
                job_id=f"{self.queue_name}__{what.replace(' ', '-')}-{slot}",
                unique=True,
                job_timeout=job_timeout,
                result_ttl=result_ttl,
                failure_ttl=failure_ttl,
            )
        except DuplicateJobError:
            pass
        except RedisError as exc:
            log.warning("could not schedule the %s: %s", what, exc)

    def seed_chains(self) -> None:
        """Make sure the sweep and the purge each have their next run scheduled."""
        self.schedule_sweep()
        self.schedule_purge()

    def _seed_sweep_now_and_then(self) -> None:
        # Cheap insurance for a Redis that lost its data while every worker kept running.
        if time.monotonic() - self._last_seed > SWEEP_SECONDS * 6:
            self._last_seed = time.monotonic()
            self.schedule_sweep()

    def close(self) -> None:
        self.connection.close()


class InlineJobRunner:
    """The same jobs in this process: a small thread pool and a sweep thread.

    `submit_*` is called after the submitting transaction committed, so a job always sees
    the row. A job already waiting or running under the same key is not queued twice.
    """

    def __init__(
        self, services: Services, *, workers: int = 4, sweep_seconds: float = SWEEP_SECONDS
    ) -> None:
        self.services = services
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="callcenter-job")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight: set[str] = set()
        self._closed = False
        self._stop = threading.Event()
        self._sweep_seconds = sweep_seconds
        # The day slot (PURGE_SECONDS, by the services' clock) the last purge was started in.
        self._purged_slot: int | None = None
        # Started at once: rows left pending by a previous process are picked up at start.
        self._sweeper = threading.Thread(
            target=self._sweep_loop, name="callcenter-outbox-sweep", daemon=True
        )
        self._sweeper.start()

    def submit_ticket_request(self, request_id: int) -> bool:
        return self._submit(f"ticket-request:{request_id}", create_ticket, request_id)

    def submit_followups(self, request_id: int) -> bool:
        return self._submit(f"ticket-followups:{request_id}", run_followups, request_id)

    def enqueue(self, func: Callable[..., object], *args: Any, job_id: str | None = None) -> None:
        if not self._submit(job_id or uuid.uuid4().hex, func, *args):
            raise QueueUnavailable("the in-process job runner is closed")

    def flush(self) -> int:
        tickets, followup_ids = due_request_ids(self.services)
        for request_id in tickets:
            self.submit_ticket_request(request_id)
        for request_id in followup_ids:
            self.submit_followups(request_id)
        return (
            len(tickets)
            + len(followup_ids)
            + queue_due_chain_alerts(self.services)
            + queue_due_missed_urgent_sms(self.services)
        )

    def _submit(self, key: str, func: Callable[..., object], *args: Any) -> bool:
        with self._lock:
            if self._closed:
                return False
            if key in self._in_flight:
                return True
            self._in_flight.add(key)
        self._pool.submit(self._run, key, func, args)
        return True

    def _run(self, key: str, func: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            with using(self.services):
                func(*args)
        except Exception:
            # The row keeps its state; the sweep re-submits whatever is still due.
            log.exception("in-process job %s failed", key)
        finally:
            with self._lock:
                self._in_flight.discard(key)
                self._idle.notify_all()

    def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            try:
                replay_fallback_spool(self.services)
                self.flush()
            except Exception:
                log.exception("outbox sweep failed; trying again in %s s", self._sweep_seconds)
            self._purge_once_a_day()
            self._stop.wait(self._sweep_seconds)

    def _purge_once_a_day(self) -> None:
        """The retention purge at start, then whenever a new day slot begins (00:00 UTC),
        on the pool: a long purge holds up neither the sweep nor the jobs' queue keys."""
        slot = int(self.services.clock().timestamp() // PURGE_SECONDS)
        if slot != self._purged_slot and self._submit(
            "retention-purge", purge_personal_data, self.services
        ):
            self._purged_slot = slot

    def close(self) -> None:
        """Stop the sweep, let running jobs finish (and what they submit), refuse new ones."""
        self._stop.set()
        if self._sweeper is not threading.current_thread():
            self._sweeper.join()
        with self._idle:
            # A ticket job submits its follow-ups before it ends, so "nothing in flight"
            # means the whole chain is done.
            while self._in_flight:
                self._idle.wait()
            self._closed = True
        self._pool.shutdown(wait=True)


# ---------------------------------------------------------------- the worker


class PipelineWorker(SimpleWorker):
    """RQ's in-process worker, re-seeding the sweep and purge chains at each maintenance
    round, with fewer Redis round trips per job.

    No fork per job: the jobs are short and I/O-bound, and a forked job would open new
    database connections every time; the worker's pool is reused instead.
    """

    chain_seeder: Callable[[], None] | None = None
    # RQ's "result is kept for N seconds" line after every job: nobody reads the results.
    log_result_lifespan = False
    max_connection_wait_time = RECONNECT_SECONDS
    # RQ refreshes the worker's key three times a job, three commands each; one refresh a
    # second keeps it as alive (its TTL is WORKER_TTL + 60 s) for a fraction of the trips.
    heartbeat_seconds = 1.0
    _redis_was_down = False
    _suspension_checked = float("-inf")

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        if self.chain_seeder is not None:
            self.chain_seeder()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; its plain form (no TTL, no pipeline, the one RQ repeats around
        every job) at most once a `heartbeat_seconds`, in one round trip, and noticing a
        Redis that lost its data: maintenance runs at once then (RQ's scheduler back, the
        chains re-seeded) rather than up to MAINTENANCE_SECONDS later."""
        if timeout is not None or pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        at = rq_now()
        last = self.last_heartbeat
        if last is not None and (at - last).total_seconds() < self.heartbeat_seconds:
            return
        self.last_heartbeat = at
        ttl = self.worker_ttl + 60
        try:
            with self.connection.pipeline(transaction=False) as batch:
                batch.hset(self.key, "last_heartbeat", utcformat(at))
                batch.expire(self.key, ttl)
                batch.expire(self.executions_key, ttl)
                added, *_ = batch.execute()
        except RedisError:
            self._redis_was_down = True
            raise
        # `added`: the field was new, so the worker's key had gone with Redis's data.
        if (added or self._redis_was_down) and self.last_cleaned_at is not None:
            log.warning("Redis is back; running the worker's maintenance now")
            self.last_cleaned_at = at - timedelta(seconds=self.maintenance_interval + 1)
        self._redis_was_down = False

    def check_for_suspension(self, burst: bool) -> None:
        # RQ asks Redis before every job whether `rq suspend` was run; once a second is
        # as good an answer for a person typing it, for a fraction of the round trips.
        at = time.monotonic()
        if at - self._suspension_checked < self.heartbeat_seconds:
            return
        self._suspension_checked = at
        super().check_for_suspension(burst)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        # RQ sets "idle" twice between two jobs; the second write changes nothing.
        if pipeline is None and state == self.get_state():
            return
        super().set_state(state, pipeline)


def run_worker(services: Services, *, burst: bool = False) -> bool:
    """Serve the pipeline's queues with RQ's scheduler (the sweep and purge chains run on
    it).

    `burst`: submit whatever is due, work until the queues are empty, stop. Returns True
    when any job was run.
    """
    # Check the setting first: building `services.jobs` without Redis would start the
    # in-process runner's sweep thread in a process that is about to refuse.
    runner = services.jobs if services.settings.redis_url else None
    if not isinstance(runner, RqJobRunner):
        raise ConfigurationError(
            "`callcenter worker` needs REDIS_URL; without it the jobs run inside "
            "`callcenter serve` (in-process)"
        )
    configure(services)
    # The worker's own connection: blocking reads need RQ's timeouts, not the web side's.
    connection = Redis.from_url(services.settings.redis_url or "")
    queues = [
        Queue(runner.tickets.name, connection=connection),
        Queue(runner.followups.name, connection=connection),
    ]
    try:
        if burst:
            runner.flush()
        else:
            runner.schedule_sweep(now=True)
            runner.schedule_purge(now=True)
        worker = PipelineWorker(
            queues,
            connection=connection,
            worker_ttl=WORKER_TTL,
            maintenance_interval=MAINTENANCE_SECONDS,
        )
        worker.chain_seeder = runner.seed_chains
        return bool(worker.work(burst=burst, with_scheduler=not burst, logging_level="INFO"))
    except RedisError as exc:
        raise QueueUnavailable(f"Redis: {exc}") from exc
    finally:
        connection.close()
