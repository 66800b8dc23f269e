"""`callcenter worker`: RQ's worker for the pipeline's queues, outliving its dependencies.

    run_worker(services)
      └ loop: wait for Redis (capped backoff; logs lost / still away / back)
              → re-seed the sweep and purge chains → PipelineWorker.work(with_scheduler)
              → Redis lost inside RQ's loop: RedisLost ends it quietly → loop

- Jobs get their `Services` from the worker that runs them: `ServicesJob` calls the job
  function with the worker's `Services` first, then the ids RQ stored. A plain `rq worker`
  is therefore not supported (it would call the jobs without them): `callcenter worker` is
  the way to serve the queues.
- Redis away, for any length of time: the process stays up. RQ's own loop retries a lost
  connection with a log line a try, and its work loop quits on some errors; instead, the
  first failed round trip ends RQ's loop (`RedisLost`), and `run_worker` waits for Redis
  itself, logging once per change. When Redis answers again — with its data or empty — a
  fresh RQ worker starts: its scheduler comes back and the chains are re-seeded at once.
- A worker killed with its scheduler (`kill -9`, the OOM killer): the worker started in
  its place frees the dead scheduler's lock and takes it at once, rather than when its
  TTL runs out (`release_dead_schedulers`).
- PostgreSQL away or hanging: a job fails (RQ records it, the log shows it), the outbox
  row stays pending with its retry schedule, and the sweep submits it again; the worker
  itself never talks to the database. A hanging one costs a job at most JOB_DB_DEADLINE
  seconds a database call (`runners.run_job`), not RQ's job timeout, and is logged in one
  line (`DatabaseTimeout`).

`PipelineWorker` overrides a few of RQ's methods (see `RQ_INTERNALS`); pyproject pins rq to
the range they were written against, and `tests/test_jobs_worker.py` fails loudly
if rq changes them.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, NamedTuple

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.scripts import release_lock
from rq.utils import as_text, utcformat
from rq.utils import now as rq_now

from callcenter.errors import ConfigurationError, DatabaseTimeout, QueueUnavailable
from callcenter.jobs.runners import RqJobRunner, gone_from_this_host, run_job
from callcenter.ports import Services

log = logging.getLogger(__name__)

# RQ worker timing. A worker blocks on Redis for WORKER_TTL - 15 s between maintenance
# checks; maintenance restarts RQ's scheduler (it dies with a Redis that crashed) and
# re-seeds the sweep and purge chains. RQ's defaults (420 s, 10 min) left the scheduler
# down for ~7 minutes after a Redis restart; these bring it back within MAINTENANCE_SECONDS
# of the worker reconnecting — at once when the worker sees Redis lost its data
# (`PipelineWorker.heartbeat`).
WORKER_TTL = 45
MAINTENANCE_SECONDS = 30
# The longest pause between the worker's tries to reach a Redis that is down.
RECONNECT_SECONDS = 10.0
# While Redis stays away, one log line this often says so.
STILL_AWAY_SECONDS = 60.0
# How long the worker's command listener (RQ's pubsub thread) waits for a message before
# looking whether it should stop. RQ waits 60 s, and redis-py (8.x) joins the thread when
# it is stopped: every worker stop (a burst's end, SIGTERM, a fresh worker after an
# outage) stalled up to a minute. The wait is a select() on an idle socket: no traffic.
LISTENER_POLL_SECONDS = 1.0

# RQ's methods and attributes this module relies on, by class: what the rq pin covers.
RQ_INTERNALS: dict[str, tuple[str, ...]] = {
    "rq.job.Job": ("_execute(self)", "func", "args", "kwargs"),
    "rq.worker.SimpleWorker": (
        "perform_job(self, job, queue, execution)",
        "handle_exception(self, job, exc_info)",
        "run_maintenance_tasks(self)",
        "heartbeat(self, timeout=None, pipeline=None)",
        "check_for_suspension(self, burst)",
        "set_state(self, state, pipeline=None)",
        "get_state(self)",
        "request_stop(self, signum, frame)",
        "teardown(self)",
        "subscribe(self)",
        "_pubsub_exception_handler(self, exc, pubsub, pubsub_thread)",
        "last_heartbeat",
        "last_cleaned_at",
        "maintenance_interval",
        "queues",
        "worker_ttl",
        "key",
        "executions_key",
        "pubsub",
        "pubsub_thread",
        "pubsub_channel_name",
        "handle_payload",
        "log_result_lifespan",
    ),
}


# RQ's other parts relied on (covered by the rq pin too): by `release_dead_schedulers`,
# and by the runner's `_dropped`.
RQ_OTHER_PARTS = (
    "rq.scheduler.RQScheduler.get_locking_key(name)",
    "rq.scheduler.SCHEDULER_KEY_TEMPLATE",
    "rq.scripts.release_lock(connection, lock_key, owner_token)",
    "rq.queue.Queue.intermediate_queue",
    "rq.intermediate_queue.IntermediateQueue.get_first_seen_key(self, job_id)",
    "rq.queue.Queue.lpop(queue_keys, timeout, connection=None)",
)


def release_dead_schedulers(connection: Redis, queue_names: Iterable[str]) -> list[str]:
    """Free the scheduler locks of queues whose scheduler died on this host; the names
    of the queues freed.

    One RQ scheduler holds a queue's lock and moves its scheduled jobs (the sweep and purge
    chains) onto it; the lock outlives a scheduler killed with its worker (`kill -9`, the
    OOM killer) by its TTL, 61 s, and the other workers try again only at their next
    maintenance — up to two minutes without a sweep: no retries, no chain alerts, no SMS
    settled. Freed when the holder's own record names this host and a process that is not
    there (RQ's token-checked release: a lock taken over meanwhile is left alone), so the
    worker that restarts takes it at once. A holder on another host is left to the TTL."""
    freed = []
    for name in queue_names:
        key = RQScheduler.get_locking_key(name)
        holder = connection.get(key)
        if holder is None:
            continue
        token = as_text(holder)
        # No record yet (it registers once forked) or any more: left alone.
        hostname, pid = connection.hmget(SCHEDULER_KEY_TEMPLATE % token, ["hostname", "pid"])
        if gone_from_this_host(hostname, pid) and release_lock(connection, key, token):
            log.warning("RQ's scheduler for %s (pid %s) is gone: its lock is freed", name, pid)
            freed.append(name)
    return freed


class RedisLost(StopRequested):
    """Redis stopped answering inside RQ's work loop. A `StopRequested` on purpose: RQ's
    loop ends quietly on one (any other error is logged as a crash), and `run_worker`
    takes over the waiting."""


class ServicesJob(Job):
    """An RQ job whose function is called with the worker's `Services` first."""

    services: Services | None = None

    def _execute(self) -> Any:
        if self.services is None:
            raise ConfigurationError(
                f"job {self.id} has no services: the pipeline's jobs run in `callcenter worker`"
            )
        return run_job(self.services, self.func, *self.args, **self.kwargs)


class PipelineWorker(SimpleWorker):
    """RQ's in-process worker that hands jobs its `Services`, re-seeds the sweep and purge
    chains at each maintenance round, makes fewer Redis round trips per job, and leaves
    RQ's loop when Redis is lost.

    No fork per job: the jobs are short and I/O-bound, and a forked job would open new
    database connections every time; the worker's pool is reused instead.
    """

    # RQ's "result is kept for N seconds" line after every job: nobody reads the results.
    log_result_lifespan = False
    # RQ refreshes the worker's key three times a job, three commands each; one refresh a
    # second keeps it as alive (its TTL is WORKER_TTL + 60 s) for a fraction of the trips.
    heartbeat_seconds = 1.0

    def __init__(
        self,
        queues: list[Queue],
        *,
        services: Services,
        chain_seeder: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(queues, job_class=ServicesJob, **kwargs)
        self.services = services
        self.chain_seeder = chain_seeder
        # A person (SIGTERM, SIGINT) asked this worker to stop: `run_worker` ends too.
        self.stop_requested = False
        # Why RQ's loop ended when Redis stopped answering (`RedisLost`), for the log, and
        # when the worker first found it gone (time.monotonic()).
        self.redis_lost: str | None = None
        self.redis_lost_at: float | None = None
        # When the command listener (a thread) found Redis gone, while a job ran: the
        # loss dates from then if the work loop meets it too (`_lost`).
        self._listener_lost_at: float | None = None
        self._redis_was_down = False
        self._suspension_checked = float("-inf")

    def _lost(self, exc: RedisError) -> RedisLost:
        if self.redis_lost is None:
            self.redis_lost = str(exc) or exc.__class__.__name__
            self.redis_lost_at = self._listener_lost_at or time.monotonic()
        return RedisLost(self.redis_lost)

    def perform_job(self, job: Job, queue: Queue, execution: Any) -> bool:
        """RQ's, handing the job its `Services`. Redis gone by the time the job ends (it
        died mid-job): RQ cannot record the end, and its loop would log "found an
        unhandled exception, quitting..." and the job's own outcome as an exception of
        the job. The outcome is in the database (the outbox row); what the log says is
        that Redis was lost (`RedisLost`)."""
        if isinstance(job, ServicesJob):
            job.services = self.services
        try:
            return bool(super().perform_job(job, queue, execution))
        except RedisError as exc:
            raise self._lost(exc) from exc

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """RQ logs a failed job with its traceback; a job cut off by the database deadline
        gets one line that says what happened (the traceback stays in RQ's failed job),
        and a Redis error is no failure of the job but Redis lost (`RedisLost`). The
        worker pushes no exception handlers of its own: there are none to call."""
        error = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(error, RedisError):
            # RQ recording the end of a job against a Redis that is gone (the jobs turn
            # their own Redis errors into QueueUnavailable): not the job's exception.
            raise self._lost(error) from error
        if not isinstance(error, DatabaseTimeout):
            super().handle_exception(job, *exc_info)
            return
        log.error(
            "job %s (%s) failed: %s",
            job.id,
            job.get_call_string(),
            error,
            extra={"job_id": job.id, "queue": job.origin},
        )

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def run_maintenance_tasks(self) -> None:
        try:
            # Before RQ's maintenance, which takes the locks that are free.
            release_dead_schedulers(self.connection, [queue.name for queue in self.queues])
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except RedisError as exc:
            raise self._lost(exc) from exc
        if self.chain_seeder is not None:
            self.chain_seeder()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; its plain form (no TTL, no pipeline, the one RQ repeats around
        every job) at most once a `heartbeat_seconds`, in one round trip, and noticing a
        Redis that lost its data: maintenance runs at once then (RQ's scheduler back, the
        chains re-seeded) rather than up to MAINTENANCE_SECONDS later. A Redis that does
        not answer ends RQ's loop (`RedisLost`)."""
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
        except RedisError as exc:
            self._redis_was_down = True
            raise self._lost(exc) from exc
        self._listener_lost_at = None  # Redis answers: whatever the listener saw is over
        # `added`: the field was new, so the worker's key had gone with Redis's data.
        if (added or self._redis_was_down) and self.last_cleaned_at is not None:
            log.warning("the worker's key had gone from Redis; running its maintenance now")
            self.last_cleaned_at = at - timedelta(seconds=self.maintenance_interval + 1)
        self._redis_was_down = False

    def check_for_suspension(self, burst: bool) -> None:
        # RQ asks Redis before every job whether `rq suspend` was run; once a second is
        # as good an answer for a person typing it, for a fraction of the round trips.
        at = time.monotonic()
        if at - self._suspension_checked < self.heartbeat_seconds:
            return
        self._suspension_checked = at
        try:
            super().check_for_suspension(burst)
        except RedisError as exc:
            raise self._lost(exc) from exc

    def set_state(self, state: str, pipeline: Any = None) -> None:
        # RQ sets "idle" twice between two jobs; the second write changes nothing.
        if pipeline is None and state == self.get_state():
            return
        try:
            super().set_state(state, pipeline)
        except RedisError as exc:
            raise self._lost(exc) from exc

    def subscribe(self) -> None:
        """RQ's command listener, polling every LISTENER_POLL_SECONDS instead of 60 s, so
        stopping the worker is not held up by it."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ declares the slot as None (its __init__ sets it so).
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=LISTENER_POLL_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """The command listener lost its connection. RQ logs an error and retries every
        2 s, for as long as the job at hand runs: a line every 2 s. Here the first failure
        is only noted; the work loop meets the loss when the job ends (`RedisLost`), and
        the worker's log says "Redis lost" once, dating the outage from this moment."""
        if not isinstance(exc, RedisConnectionError):
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)
            return
        if self._listener_lost_at is None:
            self._listener_lost_at = time.monotonic()
            log.debug("the worker's command listener lost Redis (%s); retrying", exc)
        time.sleep(LISTENER_POLL_SECONDS)

    def teardown(self) -> None:
        try:
            super().teardown()  # type: ignore[no-untyped-call]
        except RedisError:
            # Redis is away: nobody to report this worker's end to. RQ stopped its
            # scheduler first; its command listener (a thread on Redis) is stopped here.
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()
                self.pubsub_thread.join(timeout=1)
            if self.pubsub is not None:
                self.pubsub.close()


class RedisWatch:
    """Whether the worker's Redis answers, logged once per change: lost, still away (once
    a `still_away_seconds`), back. `wait_until_up` retries with a backoff capped at
    `max_pause`."""

    def __init__(
        self,
        connection: Redis,
        *,
        max_pause: float = RECONNECT_SECONDS,
        still_away_seconds: float = STILL_AWAY_SECONDS,
    ) -> None:
        self.connection = connection
        self.max_pause = max_pause
        self.still_away_seconds = still_away_seconds
        self.away_since: float | None = None
        self._noted_at = 0.0

    def lost(self, reason: object, *, since: float | None = None) -> None:
        """Redis does not answer (`reason`); `since`: when it was first found gone
        (time.monotonic(); default now), which the "still away" and "back" lines count
        from."""
        if self.away_since is None:
            self._noted_at = time.monotonic()
            self.away_since = self._noted_at if since is None else since
            log.error(
                "Redis lost (%s); jobs wait, tickets stay pending in the outbox until it is back",
                reason,
            )

    def wait_until_up(self) -> None:
        pause = min(0.5, self.max_pause)
        while True:
            try:
                self.connection.ping()
            except RedisError as exc:
                self.lost(exc)
                at = time.monotonic()
                if at - self._noted_at >= self.still_away_seconds:
                    self._noted_at = at
                    log.error(
                        "Redis still away after %d s (%s); trying every %g s",
                        at - (self.away_since or at),
                        exc,
                        self.max_pause,
                    )
                time.sleep(pause)
                pause = min(pause * 2, self.max_pause)
                continue
            if self.away_since is not None:
                log.warning(
                    "Redis is back after %d s; restarting the scheduler and re-seeding the "
                    "sweep and purge chains",
                    time.monotonic() - self.away_since,
                )
                self.away_since = None
            return


def run_worker(services: Services, *, burst: bool = False) -> bool:
    """Serve the pipeline's queues with RQ's scheduler (the sweep and purge chains run on
    it), through Redis outages of any length; returns when asked to stop (SIGTERM,
    SIGINT).

    `burst`: submit whatever is due, work until the queues are empty, stop; a Redis that is
    down then raises `QueueUnavailable`. Returns True when any job was run.
    """
    # Check the setting first: building `services.jobs` without Redis would start the
    # in-process runner's sweep thread in a process that is about to refuse.
    runner = services.jobs if services.settings.redis_url else None
    if not isinstance(runner, RqJobRunner):
        raise ConfigurationError(
            "`callcenter worker` needs REDIS_URL; without it the jobs run inside "
            "`callcenter serve` (in-process)"
        )
    # The worker's own connection: blocking reads need RQ's timeouts, not the web side's.
    # A socket timeout above RQ's blocking read (WORKER_TTL - 15 s) notices a Redis that
    # hangs instead of refusing.
    connection = Redis.from_url(
        services.settings.redis_url or "", socket_connect_timeout=5, socket_timeout=WORKER_TTL
    )
    try:
        if burst:
            return _work_once(services, runner, connection, burst=True).worked
        return _work_forever(services, runner, connection)
    finally:
        connection.close()


class _Round(NamedTuple):
    worked: bool  # any job was run
    stop: bool  # a burst ended, or a person asked the worker to stop
    lost: str | None  # why Redis was given up on, if it was
    lost_at: float | None = None  # when it was first found gone (time.monotonic())


def _work_forever(services: Services, runner: RqJobRunner, connection: Redis) -> bool:
    watch = RedisWatch(connection)
    worked = False
    while True:
        watch.wait_until_up()
        try:
            outcome = _work_once(services, runner, connection, burst=False)
        except QueueUnavailable as exc:
            watch.lost(exc)
            continue
        worked = worked or outcome.worked
        if outcome.stop:
            return worked
        # RQ's loop ended without a stop request. Redis stopped answering: wait for it,
        # then a fresh worker and scheduler. RQ quit on an error of its own (it logged
        # it): a fresh worker after a pause, so a repeating error does not spin.
        if outcome.lost is not None:
            watch.lost(outcome.lost, since=outcome.lost_at)
        else:
            log.error("RQ's work loop ended; a fresh worker in %g s", RECONNECT_SECONDS)
            time.sleep(RECONNECT_SECONDS)


def _work_once(
    services: Services, runner: RqJobRunner, connection: Redis, *, burst: bool
) -> _Round:
    queues = [
        Queue(runner.tickets.name, connection=connection),
        Queue(runner.followups.name, connection=connection),
    ]
    try:
        if burst:
            runner.flush()
        else:
            # This slot's sweep and purge at once: rows left pending by an outage (or a
            # previous process) are picked up without waiting for the next slot.
            runner.seed_chains(now=True)
            # A scheduler killed with the worker this process replaces: its lock, freed
            # now, is this worker's at its start instead of in a minute or two.
            release_dead_schedulers(connection, [queue.name for queue in queues])
        worker = PipelineWorker(
            queues,
            services=services,
            chain_seeder=runner.seed_chains,
            connection=connection,
            worker_ttl=WORKER_TTL,
            maintenance_interval=MAINTENANCE_SECONDS,
        )
        try:
            worked = bool(worker.work(burst=burst, with_scheduler=not burst, logging_level="INFO"))
        finally:
            # RQ's signal handlers name this worker; the next round installs its own, and
            # between rounds a signal ends the process as usual.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except (RedisError, RedisLost) as exc:
        # RedisLost outside RQ's loop (its start-up): the same outage.
        raise QueueUnavailable(f"Redis: {exc}") from exc
    return _Round(
        worked,
        stop=burst or worker.stop_requested,
        lost=worker.redis_lost,
        lost_at=worker.redis_lost_at,
    )
