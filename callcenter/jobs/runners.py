"""The two runners of the pipeline's jobs (`callcenter.jobs.tasks`), both `JobRunner`s.

- `RqJobRunner` (REDIS_URL set): RQ queues `QUEUE_NAME` (tickets, sweeps) and
  `QUEUE_NAME-followups`; a worker (`callcenter worker`, `callcenter.jobs.worker`) serves
  the first before the second, so a caller waiting for a number is never queued behind SMS
  and recording downloads, and calls each job with its own `Services` first. Job ids
  derive from the request id, so a double submit is one job. The sweep is a scheduled RQ
  job that asks for its successor (RQ's scheduler, which `callcenter worker` runs); ids per
  time slot make several workers converge on one chain, and every worker's start, its
  maintenance and the web side's submits re-seed the chain should Redis lose it. The
  retention purge is a daily chain of the same kind on the follow-ups queue (slots start
  at 00:00 UTC, 03:00 in Moscow), seeded by every worker's start and maintenance.
- `InlineJobRunner` (no REDIS_URL, the embedded default): the same job functions on a small
  thread pool in the web process, each called with the runner's own `Services`, plus a
  sweep thread (which also starts the retention purge once a day). Same code path, no
  Redis.

Both call every job through `run_job`: on PostgreSQL each of a job's database calls waits
at most JOB_DB_DEADLINE seconds (`callcenter.db.deadline`), so a database that hangs fails
the job as `DatabaseTimeout` in seconds instead of holding the worker until RQ's job
timeout; what the job was to do stays due in the database.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue, Worker
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from callcenter.db import PG_CONNECT_TIMEOUT
from callcenter.db.deadline import connect_timed_out, guard_of
from callcenter.errors import ConfigurationError, DatabaseTimeout, QueueUnavailable
from callcenter.jobs.tasks import (
    chain_alerts_job,
    create_ticket,
    due_request_ids,
    incident_job,
    kb_link_sms_job,
    missed_urgent_sms_job,
    purge_personal_data,
    queue_due_chain_alerts,
    queue_due_incidents,
    queue_due_missed_urgent_sms,
    replay_fallback_spool,
    retention_purge,
    run_followups,
    sweep_outbox,
)
from callcenter.ports import Chain, JobRunner, Services

log = logging.getLogger(__name__)

T = TypeVar("T")

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

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TERMINAL = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
# A queued job found off its queue this long after a submit first found it queued: the
# worker that took it died before starting it (a live one starts it within milliseconds).
DROPPED_SECONDS = 5.0
_SEEN_TTL = 600


def run_job(services: Services, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`func(services, *args, **kwargs)`, each of its database calls bounded by the
    settings' `job_db_deadline` (PostgreSQL; nothing to bound on SQLite). Raises
    `DatabaseTimeout` when the job failed because one of them was cut, or a new connection
    timed out (`db.PG_CONNECT_TIMEOUT`)."""
    keeper = guard_of(services.engine)
    if keeper is None:
        return func(services, *args, **kwargs)
    seconds = services.settings.job_db_deadline
    with keeper.each_call_within(seconds) as bound:
        try:
            return func(services, *args, **kwargs)
        except Exception as exc:
            if bound.cuts:
                what = f"answer a database call within {seconds:g} s: the connection was cut"
            elif connect_timed_out(exc):
                what = f"accept a connection within {PG_CONNECT_TIMEOUT} s"
            else:
                raise
            raise DatabaseTimeout(
                f"PostgreSQL did not {what} (does it hang?); the job failed, what it was to "
                "do stays due in the database"
            ) from exc


def build_runner(services: Services) -> JobRunner:
    if services.settings.redis_url:
        return RqJobRunner(services, services.settings.redis_url, services.settings.queue_name)
    return InlineJobRunner(services)


class RqJobRunner:
    """Jobs on RQ queues in Redis."""

    dropped_seconds = DROPPED_SECONDS  # see `_dropped`

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

    def submit_chain_alerts(self, call_id: int) -> None:
        self.enqueue(chain_alerts_job, call_id, job_id=f"chain-alerts:{call_id}")

    def submit_missed_urgent_sms(self, call_id: int) -> None:
        self.enqueue(missed_urgent_sms_job, call_id, job_id=f"missed-urgent:{call_id}")

    def submit_kb_link_sms(self, call_id: int) -> None:
        self.enqueue(kb_link_sms_job, call_id, job_id=f"kb-link:{call_id}")

    def submit_incident(self, incident_id: int) -> None:
        self.enqueue(incident_job, incident_id, job_id=f"incident:{incident_id}")

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
            + queue_due_incidents(self.services)
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
                    status = job.get_status(refresh=False)
                    if status not in _TERMINAL and not self._stranded(queue, job, status):
                        return  # queued, scheduled or running: that one job will do it
                    job.delete()
        except RedisError as exc:
            raise QueueUnavailable(f"Redis: {exc}") from exc

    def _stranded(self, queue: Queue, job: Job, status: JobStatus | None) -> bool:
        """A job that is not finished, but that no worker will ever run (logged)."""
        if self._abandoned(job, status):
            log.warning(
                "job %s was started by worker %s, which is gone: queued again",
                job.id,
                job.worker_name,
            )
            return True
        if self._dropped(queue, job, status):
            log.warning(
                "job %s was taken off its queue by a worker that died before starting it: "
                "queued again",
                job.id,
            )
            return True
        return False

    def _dropped(self, queue: Queue, job: Job, status: JobStatus | None) -> bool:
        """A queued job no worker will run. A worker takes a job off its queue (LPOP; LMOVE
        into RQ's intermediate list when it serves one queue only), then marks it started;
        killed in between, it leaves the job `queued` and on no queue. Served from two
        queues, as here, it is in no list RQ looks at again, so it stays so for good (from
        an intermediate list RQ fails it a minute or more after first noticing it), and
        every submit took "queued" for waiting its turn. A live worker marks it started
        within milliseconds: this enqueued instance, found queued and on no queue twice,
        `dropped_seconds` apart, is queued again. (Each submit of a job waiting its turn
        costs an LPOS, a scan of the queue's list: Redis 6.0.6 or newer.)"""
        if status != JobStatus.QUEUED or self.connection.lpos(queue.key, job.id) is not None:
            return False  # waiting its turn
        enqueued = job.enqueued_at.timestamp() if job.enqueued_at else ""
        seen = f"{queue.key}:off-queue:{job.id}:{enqueued}"
        at = time.time()
        if self.connection.set(seen, at, nx=True, ex=_SEEN_TTL):
            return False  # first seen so: a worker may be starting it this moment
        first = float(_text(self.connection.get(seen)) or at)
        if at - first < self.dropped_seconds:
            return False
        intermediate = queue.intermediate_queue
        self.connection.lrem(intermediate.key, 1, job.id)
        self.connection.delete(seen, intermediate.get_first_seen_key(job.id))
        return True

    def _abandoned(self, job: Job, status: JobStatus | None) -> bool:
        """A started job whose worker is gone (kill -9, a lost host). RQ notices only when
        the job's heartbeat TTL has run out and a worker's maintenance cleans the started
        registry — a minute and a half or more, while the request waits. The jobs are safe
        to run twice, so one whose worker is known dead is queued again at once: known dead
        when the worker's key has expired, or when it ran on this host and its process is
        not there any more."""
        if status != JobStatus.STARTED or not job.worker_name:
            return False
        hostname, pid = self.connection.hmget(
            Worker.redis_worker_namespace_prefix + job.worker_name, ["hostname", "pid"]
        )
        if hostname is None and pid is None:
            return True  # nobody keeps the worker's key alive any more
        return gone_from_this_host(hostname, pid)  # else its key's expiry will tell

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
        func: Callable[[Services], object],
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

    def tickets_waiting(self) -> bool:
        try:
            return bool(self.tickets.count)
        except RedisError:
            return False  # cannot queue the follow-ups either: they are done in the job

    def schedule_next(self, chain: Chain) -> None:
        if chain == "sweep":
            self.schedule_sweep()
        else:
            self.schedule_purge()

    def seed_chains(self, *, now: bool = False) -> None:
        """Make sure the sweep and the purge each have their next run scheduled (`now`:
        this slot's, at once — a worker starting or finding Redis back), and that a sweep
        whose time has come is not left waiting for a scheduler (`release_overdue_sweep`;
        at a worker's start at once, at its maintenance once a slot overdue)."""
        self.schedule_sweep(now=now)
        self.schedule_purge(now=now)
        self.release_overdue_sweep(grace=0 if now else SWEEP_SECONDS)

    def release_overdue_sweep(self, *, grace: float) -> int:
        """Queue the sweep jobs still in the scheduled registry `grace` seconds after their
        time; how many. Only RQ's scheduler moves scheduled jobs, and only the one holding
        its lock — which outlives a scheduler that was `kill -9`ed by a minute (RQ's lock
        TTL): the sweep, and every retry and follow-up it submits, would stand still that
        long. Any worker does it instead: the one whose removal from the registry counts
        (one atomic ZREM) queues it, so workers doing this at once queue it once; should
        a scheduler move the same job meanwhile, the sweep runs twice, which it may."""
        registry = ScheduledJobRegistry(queue=self.tickets)  # type: ignore[no-untyped-call]
        prefix = f"{self.queue_name}__outbox-sweep-"
        released: list[str] = []
        try:
            for job_id in registry.get_jobs_to_schedule(int(time.time() - grace)):
                if not job_id.startswith(prefix) or not registry.remove(job_id):
                    continue  # not a sweep, or another worker took it
                try:
                    job = Job.fetch(job_id, connection=self.connection)
                except NoSuchJobError:
                    continue
                self.tickets.enqueue_job(job)
                released.append(job_id)
        except RedisError as exc:
            log.warning("could not release an overdue outbox sweep: %s", exc)
        if released:
            log.info("outbox sweep overdue with no scheduler moving it: queued %s", released)
        return len(released)

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

    def submit_chain_alerts(self, call_id: int) -> None:
        self.enqueue(chain_alerts_job, call_id, job_id=f"chain-alerts:{call_id}")

    def submit_missed_urgent_sms(self, call_id: int) -> None:
        self.enqueue(missed_urgent_sms_job, call_id, job_id=f"missed-urgent:{call_id}")

    def submit_kb_link_sms(self, call_id: int) -> None:
        self.enqueue(kb_link_sms_job, call_id, job_id=f"kb-link:{call_id}")

    def submit_incident(self, incident_id: int) -> None:
        self.enqueue(incident_job, incident_id, job_id=f"incident:{incident_id}")

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
            + queue_due_incidents(self.services)
        )

    def wait_idle(self) -> None:
        """Until no job waits or runs (and none it submitted): `callcenter demo seed` moves
        its clock on only then, so every job of a call runs at that call's moment."""
        with self._idle:
            while self._in_flight:
                self._idle.wait()

    def tickets_waiting(self) -> bool:
        # The pool serves tickets and follow-ups alike: nothing to gain by deferring.
        return False

    def schedule_next(self, chain: Chain) -> None:
        # The sweep thread is this runner's timer: the next sweep and purge come by it.
        return None

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
            run_job(self.services, func, *args)
        except DatabaseTimeout as exc:
            log.error("in-process job %s failed: %s", key, exc)
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
        if slot != self._purged_slot and self._submit("retention-purge", purge_personal_data):
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


def gone_from_this_host(hostname: bytes | str | None, pid: bytes | str | None) -> bool:
    """Whether a process RQ registered (a worker, a scheduler) ran on this host and is not
    there any more. Another host's process, or one that cannot be looked at: False."""
    if pid is None or _text(hostname) != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
