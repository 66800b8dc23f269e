"""The ticket pipeline end to end: a real Redis, a real RQ worker (burst mode, in this
process), the built-in portal (in process, or over real HTTP), and Twilio's REST API through
the real `twilio` client against Prism — asserting the requests Twilio would have received.

One path each: created; portal down then back; Redis down when the call ends, then flushed;
a permanent rejection, visible and retried by a supervisor; a double submit and concurrent
runs; follow-ups in the ticket job or their own; the CallSid on every log line; the sweep
and the daily retention purge on RQ's scheduler; the same jobs in-process without Redis.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry, ScheduledJobRegistry
from sqlalchemy import select

from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db.models import Call, SmsMessage, TicketRequest
from callcenter.errors import QueueUnavailable
from callcenter.jobs import runners, tasks
from callcenter.jobs.worker import PipelineWorker
from callcenter.logs import decorate_handler
from callcenter.services import Services
from callcenter.telephony.client import TwilioExchange, TwilioTelephony, build_telephony
from callcenter.tickets import outbox
from tests.conftest import TEST_ACCOUNT_SID, TEST_PUBLIC_BASE, MutableClock
from tests.ticket_pipeline import (
    CALLER,
    LANDLINE,
    PORTAL_TOKEN,
    LivePortal,
    add_contact,
    closed_port_url,
    make_call,
    new_call_sid,
    open_request,
    request_row,
    ticket_count,
    tickets,
    work_burst,
)

MESSAGES_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Messages.json"


@pytest.fixture
def pipeline(
    make_services: Callable[..., Services],
    redis_url: str,
    queue_name: str,
    prism_url: str,
    exchanges: list[TwilioExchange],
) -> Iterator[Callable[..., Services]]:
    """Services wired like a worker: Redis and our queue, Twilio at Prism (every request
    it makes lands in `exchanges`)."""
    adapters: list[TwilioTelephony] = []

    def make(**changes: object) -> Services:
        changes.setdefault("redis_url", redis_url)
        changes.setdefault("queue_name", queue_name)
        services = make_services(twilio_api_base_url=prism_url, **changes)
        telephony = build_telephony(services.settings, on_exchange=exchanges.append)
        assert isinstance(telephony, TwilioTelephony)
        adapters.append(telephony)
        services.telephony = telephony  # type: ignore[misc]  # the wiring's adapter slot
        return services

    yield make
    for telephony in adapters:
        telephony.close()
    redis = Redis.from_url(redis_url)
    for name in (queue_name, queue_name + runners.FOLLOWUPS_SUFFIX):
        queue = Queue(name, connection=redis)
        for job_id in ScheduledJobRegistry(queue=queue).get_job_ids():
            redis.delete(f"rq:job:{job_id}")
        queue.delete(delete_jobs=True)
    # Finished jobs, registries, results: everything named after this test's queue.
    for key in redis.scan_iter(f"rq:*{queue_name}*"):
        redis.delete(key)
    redis.close()


def sms_sent(exchanges: list[TwilioExchange]) -> list[dict[str, str]]:
    """The SMS Twilio received (Prism answered 201: valid against Twilio's own spec)."""
    # status None: the request never reached Twilio (refused, timed out).
    sent = [e for e in exchanges if e.path == MESSAGES_PATH and e.status is not None]
    assert all(e.method == "POST" and e.status == 201 for e in sent), sent
    return [e.form for e in sent]


def finished(services: Services, queue_name: str) -> list[str]:
    """Ids of the jobs that ran to the end on this queue: what an operator's RQ dashboard
    lists. Read without RQ's clean-up, which drops an entry RESULT_TTL (60 s) after its
    job ended by the wall clock: on a loaded machine that is no test of ours."""
    queue = Queue(queue_name, connection=Redis.from_url(services.settings.redis_url or ""))
    return sorted(FinishedJobRegistry(queue=queue).get_job_ids(cleanup=False))


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


CONFIRMATION = (
    "Заявка №1001 зарегистрирована. Тема: Построение системных отчётов. "
    "Первый ответ: до 11:00 28.11.2025. Срок решения: до 11:00 01.12.2025."
)


def test_a_finished_call_gets_its_ticket_through_a_worker_and_the_caller_an_sms(
    pipeline: Callable[..., Services], exchanges: list[TwilioExchange]
) -> None:
    services = pipeline()
    with services.sessions() as session, session.begin():
        add_contact(session, now=services.clock())
    request_id = open_request(services)

    assert services.jobs.submit_ticket_request(request_id) is True
    assert work_burst(services)

    row = request_row(services, request_id)
    assert (row.status, row.ticket_number, row.attempts, row.last_error) == (
        "done",
        "1001",
        1,
        None,
    )
    assert row.done_at == services.clock()
    [ticket] = tickets(services)
    assert (ticket.number, ticket.topic, ticket.organisation_name) == (
        1001,
        "system_reports",
        "ООО «Ромашка»",
    )
    assert sms_sent(exchanges) == [
        {
            "To": CALLER,
            "StatusCallback": f"{TEST_PUBLIC_BASE}/webhooks/sms/status?m=1",
            "From": services.settings.sms_from,
            "Body": CONFIRMATION,
        }
    ]
    with services.sessions() as session:
        [sms] = session.scalars(select(SmsMessage))
        assert (sms.key, sms.status, sms.to) == (
            f"ticket-request:{request_id}:caller",
            "sent",
            CALLER,
        )
        assert sms.twilio_sid is not None and sms.twilio_sid.startswith("SM")
    assert row.next_attempt_at is None  # nothing left to do


def test_portal_down_then_back_makes_exactly_one_ticket(
    pipeline: Callable[..., Services],
    make_services: Callable[..., Services],
    clock: MutableClock,
    exchanges: list[TwilioExchange],
) -> None:
    down = pipeline(portal_url=closed_port_url() + "/portal/api/v1", portal_token=PORTAL_TOKEN)
    request_id = open_request(down)
    assert down.jobs.submit_ticket_request(request_id)
    work_burst(down)
    row = request_row(down, request_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None and "Connection refused" in row.last_error
    assert row.next_attempt_at == clock.now + outbox.retry_delay(1)

    portal = LivePortal(make_services(builtin_portal_token=PORTAL_TOKEN))
    try:
        up = pipeline(portal_url=portal.api_url, portal_token=PORTAL_TOKEN)
        work_burst(up)  # not due yet: nothing happens
        assert request_row(up, request_id).status == "pending"
        clock.now += outbox.retry_delay(1)
        work_burst(up)  # the worker's sweep submits the due retry
        # A replayed job (e.g. a second worker that had picked the first try) changes nothing.
        assert up.jobs.submit_ticket_request(request_id)
        work_burst(up)
    finally:
        portal.close()

    row = request_row(up, request_id)
    assert (row.status, row.attempts, row.ticket_number) == ("done", 2, "1001")
    assert ticket_count(up) == 1
    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER]


def test_redis_down_when_the_call_ends_then_flushed_makes_exactly_one_ticket(
    pipeline: Callable[..., Services], queue_name: str
) -> None:
    no_redis = pipeline(redis_url=closed_port_url().replace("http", "redis") + "/0")
    request_id = open_request(no_redis)

    started = time.monotonic()
    assert no_redis.jobs.submit_ticket_request(request_id) is False  # and nothing raised
    assert time.monotonic() - started < 2  # a webhook is not held up
    assert request_row(no_redis, request_id).status == "pending"

    services = pipeline()
    result = CliRunner().invoke(main, ["outbox", "flush"], obj=CliContext(services))
    assert (result.exit_code, result.stdout) == (0, "1 ticket request(s) submitted\n")
    assert Queue(queue_name, connection=Redis.from_url(services.settings.redis_url)).count == 1
    work_burst(services)

    assert request_row(services, request_id).status == "done"
    assert ticket_count(services) == 1


def test_a_rejected_request_is_failed_visible_alerted_and_retried_by_a_supervisor(
    pipeline: Callable[..., Services],
    make_services: Callable[..., Services],
    exchanges: list[TwilioExchange],
) -> None:
    portal = LivePortal(make_services(builtin_portal_token=PORTAL_TOKEN))
    try:
        wrong = pipeline(portal_url=portal.api_url, portal_token="not-the-token")
        request_id = open_request(wrong)
        wrong.jobs.submit_ticket_request(request_id)
        work_burst(wrong)

        row = request_row(wrong, request_id)
        assert (row.status, row.attempts) == ("failed", 1)  # no retries for a refusal
        assert row.last_error is not None and row.last_error.startswith(
            "portal rejected the ticket:"
        )
        listed = CliRunner().invoke(
            main, ["outbox", "list", "--status", "failed"], obj=CliContext(wrong)
        )
        assert "failed" in listed.output and "portal rejected the ticket" in listed.output
        # Nobody is on the roster: the alert goes to the duty phone.
        [alert] = sms_sent(exchanges)
        assert alert["To"] == wrong.settings.duty_phone
        assert alert["Body"].startswith(
            "Заявка по звонку 27.11.2025 11:00 с +7 916 123-45-67 (Построение системных "
            "отчётов) не создана: portal rejected the ticket:"
        )
        assert alert["Body"].endswith(
            f"Повторить: callcenter outbox retry {request_id} или в консоли."
        )

        right = pipeline(portal_url=portal.api_url, portal_token=PORTAL_TOKEN)
        result = CliRunner().invoke(
            main, ["outbox", "retry", str(request_id)], obj=CliContext(right)
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == f"ticket request {request_id} is pending again and submitted\n"
        work_burst(right)
    finally:
        portal.close()

    row = request_row(right, request_id)
    assert (row.status, row.ticket_number) == ("done", "1001")
    assert ticket_count(right) == 1
    assert [m["To"] for m in sms_sent(exchanges)] == [right.settings.duty_phone, CALLER]


@pytest.mark.both_databases  # ON CONFLICT per dialect
def test_a_double_submit_is_one_job_and_a_replay_makes_no_second_ticket_or_sms(
    pipeline: Callable[..., Services], queue_name: str, exchanges: list[TwilioExchange]
) -> None:
    services = pipeline()
    request_id = open_request(services)
    queue = Queue(queue_name, connection=Redis.from_url(services.settings.redis_url))

    assert services.jobs.submit_ticket_request(request_id)
    assert services.jobs.submit_ticket_request(request_id)
    assert queue.count == 1
    work_burst(services)

    # Replayed later (a webhook retried by Twilio, a supervisor's stray flush).
    assert services.jobs.submit_ticket_request(request_id)
    assert services.jobs.submit_followups(request_id)
    work_burst(services)

    assert ticket_count(services) == 1
    assert request_row(services, request_id).attempts == 1
    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER]


@pytest.mark.both_databases  # concurrent runs: row locks
def test_concurrent_runs_of_one_request_make_one_ticket(
    pipeline: Callable[..., Services], exchanges: list[TwilioExchange]
) -> None:
    services = pipeline()
    request_id = open_request(services)
    barrier = threading.Barrier(4)
    numbers: list[str | None] = []
    errors: list[BaseException] = []

    def worker() -> None:  # what four RQ workers holding the same job would do
        try:
            barrier.wait(timeout=10)
            numbers.append(tasks.create_ticket(services, request_id))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert numbers == ["1001"] * 4
    assert ticket_count(services) == 1
    assert request_row(services, request_id).attempts == 1

    work_burst(services)  # the follow-ups they queued: one job, one SMS
    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER]


def test_the_sweep_runs_on_rqs_scheduler_and_schedules_its_successor(
    pipeline: Callable[..., Services], queue_name: str
) -> None:
    no_redis = pipeline(redis_url=closed_port_url().replace("http", "redis") + "/0")
    request_id = open_request(no_redis)
    assert not no_redis.jobs.submit_ticket_request(request_id)

    services = pipeline()
    runner = services.jobs
    assert isinstance(runner, runners.RqJobRunner)
    runner.schedule_sweep(now=True)
    runner.schedule_sweep(now=True)  # a second worker starting: the same slot, one job
    scheduled = ScheduledJobRegistry(queue=runner.tickets)
    [seed] = scheduled.get_job_ids()
    assert seed.startswith(f"{queue_name}__outbox-sweep-")

    worker = PipelineWorker(
        [runner.tickets, runner.followups], services=services, connection=runner.connection
    )
    worker.work(burst=True, with_scheduler=True)  # the scheduler moves the due sweep

    assert request_row(services, request_id).status == "done"
    [successor] = scheduled.get_job_ids()
    assert successor.startswith(f"{queue_name}__outbox-sweep-")
    # The slot after the one the sweep ran in: the seed's next, or a later one should a
    # slot boundary pass before the sweep ran.
    slot, ran_by = int(seed.rsplit("-", 1)[1]), int(time.time() // runners.SWEEP_SECONDS)
    assert slot + 1 <= int(successor.rsplit("-", 1)[1]) <= ran_by + 1


def test_a_sweep_no_scheduler_moves_is_queued_by_any_worker_and_makes_the_ticket(
    pipeline: Callable[..., Services], queue_name: str
) -> None:
    """RQ's scheduler lock outlives a scheduler that was kill -9ed by a minute; meanwhile
    nothing moves the sweep scheduled for now, and every retry waits. A worker starting
    (or at its maintenance, once the sweep is a slot overdue) queues it itself: a worker
    with no scheduler of its own makes the pending ticket."""
    no_redis = pipeline(redis_url=closed_port_url().replace("http", "redis") + "/0")
    request_id = open_request(no_redis)
    assert not no_redis.jobs.submit_ticket_request(request_id)

    services = pipeline()
    runner = services.jobs
    assert isinstance(runner, runners.RqJobRunner)
    scheduled = ScheduledJobRegistry(queue=runner.tickets)
    runner.schedule_sweep(now=True)  # the slot under way: its time has come
    [sweep] = scheduled.get_job_ids()
    # At maintenance, one slot of grace: a live scheduler moves it within a second.
    assert runner.release_overdue_sweep(grace=runners.SWEEP_SECONDS * 2) == 0
    assert runner.tickets.job_ids == []

    runner.seed_chains(now=True)  # what a worker does as it starts
    assert sweep in runner.tickets.job_ids and sweep not in scheduled.get_job_ids()
    worker = PipelineWorker(
        [runner.tickets, runner.followups], services=services, connection=runner.connection
    )
    worker.work(burst=True, with_scheduler=False)  # no scheduler anywhere
    assert request_row(services, request_id).status == "done"


def request_without_its_job(
    pipeline: Callable[..., Services],
) -> tuple[Services, runners.RqJobRunner, int, str]:
    """A pending ticket request opened while Redis was away (no job queued for it), the
    services and runner of a worker, and the id its ticket job takes."""
    no_redis = pipeline(redis_url=closed_port_url().replace("http", "redis") + "/0")
    request_id = open_request(no_redis)
    services = pipeline()
    runner = services.jobs
    assert isinstance(runner, runners.RqJobRunner)
    return services, runner, request_id, runner.ticket_job_id(request_id)


def test_a_ticket_job_whose_worker_was_kill_9ed_is_queued_again_at_once(
    pipeline: Callable[..., Services], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker killed (kill -9) in the middle of a ticket job leaves it `started` in
    Redis: RQ notices only when the job's heartbeat TTL runs out and a maintenance round
    cleans the started registry (a minute and a half or more), and till then every submit
    of that request found the job "running" and did nothing. Now a submit (the sweep's,
    every few seconds) sees the worker's process is gone and queues the job again."""
    services, runner, request_id, job_id = request_without_its_job(pipeline)
    # A job of that id, started by a real RQ worker process that never comes back from it.
    runner.tickets.enqueue_call("time.sleep", args=(3600,), job_id=job_id, timeout=7200)
    rq = Path(sys.executable).parent / "rq"
    worker = subprocess.Popen(
        [
            str(rq),
            "worker",
            "--burst",
            "--url",
            redis_url,
            "--worker-class",
            "rq.worker.SimpleWorker",
            runner.tickets.name,
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: Job.fetch(job_id, connection=runner.connection).get_status() == "started")
    finally:
        worker.kill()  # SIGKILL: no cleanup of its own
        worker.wait(timeout=10)
    assert Job.fetch(job_id, connection=runner.connection).get_status() == "started"

    with caplog.at_level(logging.WARNING, logger="callcenter.jobs.runners"):
        assert runner.submit_ticket_request(request_id)
    job = Job.fetch(job_id, connection=runner.connection)
    assert (job.func_name, job.get_status()) == ("callcenter.jobs.tasks.create_ticket", "queued")
    assert "which is gone: queued again" in caplog.text
    PipelineWorker(
        [runner.tickets, runner.followups], services=services, connection=runner.connection
    ).work(burst=True, with_scheduler=False)
    assert request_row(services, request_id).status == "done"


def test_a_ticket_job_taken_off_the_queue_by_a_worker_killed_before_it_started_is_queued_again(
    pipeline: Callable[..., Services], caplog: pytest.LogCaptureFixture
) -> None:
    """RQ's worker takes a job off its queues (LPOP, serving two), then marks it started.
    Killed in between, it leaves the job `queued` on no queue, for good, and every submit
    found it "queued" and did nothing (a chaos run's request stayed pending 120 s after a
    worker's `kill -9`). Now a submit that finds it so `dropped_seconds` after the first
    to find it so queues it again."""
    services, runner, request_id, job_id = request_without_its_job(pipeline)
    assert runner.submit_ticket_request(request_id)
    runner.dropped_seconds = 0.0  # instead of waiting out the 5 s between two sweeps
    # Waiting its turn: submits leave it alone, however long it waits.
    assert runner.submit_ticket_request(request_id)
    assert runner.submit_ticket_request(request_id)
    assert runner.connection.lrange(runner.tickets.key, 0, -1) == [job_id.encode()]
    # RQ's own dequeue step for a worker of two queues, by one that dies right after it.
    queues = [runner.tickets.key, runner.followups.key]
    taken = Queue.lpop(queues, None, connection=runner.connection)
    assert taken is not None and taken[1] == job_id.encode()
    assert Job.fetch(job_id, connection=runner.connection).get_status() == "queued"

    assert runner.submit_ticket_request(request_id)  # first seen so: a worker may be starting it
    assert runner.connection.llen(runner.tickets.key) == 0
    with caplog.at_level(logging.WARNING, logger="callcenter.jobs.runners"):
        assert runner.submit_ticket_request(request_id)
    assert "died before starting it: queued again" in caplog.text
    assert runner.connection.lrange(runner.tickets.key, 0, -1) == [job_id.encode()]
    PipelineWorker(
        [runner.tickets, runner.followups], services=services, connection=runner.connection
    ).work(burst=True, with_scheduler=False)
    assert request_row(services, request_id).status == "done"


def test_a_running_job_of_a_live_worker_is_not_queued_twice(
    pipeline: Callable[..., Services],
) -> None:
    """The other side: a started job whose worker is alive (this process) is left alone."""
    services, runner, request_id, job_id = request_without_its_job(pipeline)
    job = runner.tickets.enqueue_call("time.sleep", args=(3600,), job_id=job_id)
    worker = PipelineWorker([runner.tickets], services=services, connection=runner.connection)
    worker.register_birth()
    try:
        with runner.connection.pipeline() as batch:
            job.prepare_for_execution(worker.name, batch)
            batch.execute()
        assert runner.submit_ticket_request(request_id)
        job = Job.fetch(job_id, connection=runner.connection)
        assert (job.func_name, job.get_status()) == ("time.sleep", "started")
    finally:
        worker.register_death()


def test_without_redis_the_same_jobs_run_in_process(
    make_services: Callable[..., Services],
    prism_url: str,
    clock: MutableClock,
    exchanges: list[TwilioExchange],
) -> None:
    def inline(**changes: object) -> Services:
        services = make_services(twilio_api_base_url=prism_url, **changes)
        services.telephony = build_telephony(  # type: ignore[misc]
            services.settings, on_exchange=exchanges.append
        )
        return services

    # The portal is down: the in-process job tries once and schedules the retry.
    down = inline(portal_url=closed_port_url() + "/api/v1", portal_token="t")
    assert isinstance(down.jobs, runners.InlineJobRunner)
    request_id = open_request(down)
    assert down.jobs.submit_ticket_request(request_id)
    wait_for(lambda: request_row(down, request_id).attempts == 1)
    down.close()  # the process stops; its sweep thread with it
    assert not any(t.name == "callcenter-outbox-sweep" for t in threading.enumerate())

    # The next process starts with the built-in portal; its sweep finds the due retry.
    clock.now += outbox.retry_delay(1)
    up = inline()
    assert isinstance(up.jobs, runners.InlineJobRunner)  # built as the process starts
    wait_for(lambda: request_row(up, request_id).status == "done")
    wait_for(lambda: len(sms_sent(exchanges)) == 1)
    up.close()
    row = request_row(up, request_id)
    assert (row.attempts, row.ticket_number, row.next_attempt_at) == (2, "1001", None)
    assert sms_sent(exchanges) == [
        {
            "To": CALLER,
            "StatusCallback": f"{TEST_PUBLIC_BASE}/webhooks/sms/status?m=1",
            "From": up.settings.sms_from,
            "Body": CONFIRMATION,
        }
    ]
    assert ticket_count(up) == 1
    assert not any(t.name.startswith("callcenter-") for t in threading.enumerate())


def test_any_job_can_be_queued_once_by_id_and_a_dead_redis_says_so(
    pipeline: Callable[..., Services], queue_name: str, exchanges: list[TwilioExchange]
) -> None:
    services = pipeline()
    request_id = open_request(services)
    services.jobs.submit_ticket_request(request_id)
    work_burst(services)
    exchanges.clear()
    with services.sessions() as session, session.begin():
        row = session.get(TicketRequest, request_id)
        assert row is not None
        row.next_attempt_at = services.clock()  # as if a recording had come in

    # Other modules queue their own jobs (e.g. routing's chain alerts), ids of any spelling.
    for _ in range(2):
        services.jobs.enqueue(tasks.run_followups, request_id, job_id=f"again:{request_id}")
    followups = Queue(queue_name + runners.FOLLOWUPS_SUFFIX, connection=services.jobs.connection)
    assert followups.job_ids == [f"{queue_name}__again-{request_id}"]
    work_burst(services)
    assert request_row(services, request_id).next_attempt_at is None

    no_redis = pipeline(redis_url=closed_port_url().replace("http", "redis") + "/0")
    with pytest.raises(QueueUnavailable, match="Redis"):
        no_redis.jobs.enqueue(tasks.run_followups, request_id)


def test_follow_ups_that_stay_in_the_database_run_in_the_ticket_job_unless_tickets_wait(
    pipeline: Callable[..., Services], queue_name: str, exchanges: list[TwilioExchange]
) -> None:
    services = pipeline()
    followups_queue = queue_name + runners.FOLLOWUPS_SUFFIX

    # A landline's skipped SMS is recorded by its ticket job: no follow-ups job at all.
    alone = open_request(services, caller=LANDLINE)
    services.jobs.submit_ticket_request(alone)
    work_burst(services)
    assert request_row(services, alone).next_attempt_at is None  # nothing left to do
    assert finished(services, queue_name) == [f"{queue_name}__ticket-request-{alone}"]
    assert finished(services, followups_queue) == []

    # Calls ending together: while tickets wait, follow-ups go to their own queue, served
    # after the numbers; the last ticket, with nobody waiting, does its own. A mobile's SMS
    # through Twilio is always the follow-ups job's.
    first, last = open_request(services, caller=LANDLINE), open_request(services, caller=LANDLINE)
    mobile = open_request(services)
    for request_id in (first, mobile, last):
        services.jobs.submit_ticket_request(request_id)
    work_burst(services)
    assert finished(services, followups_queue) == sorted(
        [f"{queue_name}__ticket-followups-{first}", f"{queue_name}__ticket-followups-{mobile}"]
    )
    with services.sessions() as session:
        sms = {m.key: (m.status, m.to) for m in session.scalars(select(SmsMessage))}
    assert sms == {
        f"ticket-request:{request_id}:caller": ("skipped", LANDLINE)
        for request_id in (alone, first, last)
    } | {f"ticket-request:{mobile}:caller": ("sent", CALLER)}
    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER]
    for request_id in (first, mobile, last):
        row = request_row(services, request_id)
        assert (row.status, row.next_attempt_at) == ("done", None)


def test_a_burst_worker_stops_as_soon_as_its_queues_are_empty(
    pipeline: Callable[..., Services],
) -> None:
    """`callcenter worker --burst` (and the worker's stop after an outage) returns once the
    work is done. RQ's command listener waited 60 s for a message and redis-py waits for
    it when it is stopped: a burst ended up to a minute after its last job."""
    services = pipeline()
    request_id = open_request(services, caller=LANDLINE)
    services.jobs.submit_ticket_request(request_id)
    started = time.monotonic()
    assert work_burst(services)
    took = time.monotonic() - started
    assert request_row(services, request_id).status == "done"
    # Seconds of real work at most, even on a loaded machine; the stall was a minute.
    assert took < 20, f"the burst took {took:.1f} s"


def test_every_log_line_of_a_tickets_jobs_names_its_call(
    pipeline: Callable[..., Services],
) -> None:
    stream = io.StringIO()
    handler = decorate_handler(logging.StreamHandler(stream), json_lines=True)
    logger = logging.getLogger("callcenter")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        services = pipeline()
        sids = {new_call_sid(): caller for caller in (LANDLINE, CALLER)}
        requests = {
            sid: open_request(services, sid=sid, caller=caller) for sid, caller in sids.items()
        }
        for request_id in requests.values():
            services.jobs.submit_ticket_request(request_id)
        work_burst(services)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all(line.get("call_sid") in requests for line in lines), lines
    for sid, request_id in requests.items():
        of_call = [line["msg"] for line in lines if line["call_sid"] == sid]
        # The ticket, the SMS outcome, the follow-ups' summary (ticket job or its own).
        assert any(msg.startswith(f"ticket request {request_id}: ticket №") for msg in of_call)
        assert any(msg.startswith(f"SMS ticket-request:{request_id}:caller") for msg in of_call)
        assert any(msg.startswith(f"ticket request {request_id} follow-ups:") for msg in of_call)


def test_the_retention_purge_runs_daily_on_rqs_scheduler_one_chain_for_all_workers(
    pipeline: Callable[..., Services],
    queue_name: str,
    clock: MutableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = pipeline()
    old, recent = new_call_sid(), new_call_sid()
    with services.sessions() as session, session.begin():
        make_call(session, now=clock.now - timedelta(days=400), sid=old)
        make_call(session, now=clock.now - timedelta(days=10), sid=recent)
    runner = services.jobs
    assert isinstance(runner, runners.RqJobRunner)
    runner.schedule_purge(now=True)  # a worker starting
    runner.schedule_purge(now=True)  # and a second one: still one purge today
    scheduled = ScheduledJobRegistry(queue=runner.followups)
    today = int(time.time() // runners.PURGE_SECONDS)
    assert scheduled.get_job_ids() == [f"{queue_name}__retention-purge-{today}"]

    caplog.set_level(logging.INFO, logger="callcenter.calls.retention")
    worker = PipelineWorker(
        [runner.tickets, runner.followups], services=services, connection=runner.connection
    )
    worker.work(burst=True, with_scheduler=True)  # the scheduler moves the due purge

    with services.sessions() as session:
        calls = {c.call_sid: c for c in session.scalars(select(Call))}
    assert (calls[old].caller_e164, calls[old].anonymised_at) == (None, clock.now)
    assert (calls[recent].caller_e164, calls[recent].anonymised_at) == (CALLER, None)
    [logged] = [r.getMessage() for r in caplog.records if r.name == "callcenter.calls.retention"]
    cutoff = (services.clock() - timedelta(days=365)).isoformat()
    assert logged.startswith(f"retention purge: cutoff {cutoff}, 1 calls anonymised")
    # The run scheduled tomorrow's; a worker restarting today does not purge again.
    runner.schedule_purge(now=True)
    runner.schedule_purge()
    assert scheduled.get_job_ids() == [f"{queue_name}__retention-purge-{today + 1}"]
    assert runner.followups.count == 0


def test_without_redis_the_purge_runs_at_start_and_then_once_a_day(
    make_services: Callable[..., Services],
    clock: MutableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = make_services()
    first, second = new_call_sid(), new_call_sid()
    start = clock.now
    with services.sessions() as session, session.begin():
        make_call(session, now=start - timedelta(days=400), sid=first)
        # Exactly at the retention period today: its data goes tomorrow.
        make_call(session, now=start - timedelta(days=365), sid=second)

    def anonymised(sid: str) -> bool:
        with services.sessions() as session:
            call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
            return call.anonymised_at is not None

    caplog.set_level(logging.INFO, logger="callcenter.calls.retention")
    runner = runners.InlineJobRunner(services, sweep_seconds=0.02)
    try:
        wait_for(lambda: anonymised(first))
        clock.now = start + timedelta(days=1)
        wait_for(lambda: anonymised(second))
    finally:
        runner.close()
    purges = [r.getMessage() for r in caplog.records if r.name == "callcenter.calls.retention"]
    # Once when the process started, once on the new day: not on every sweep.
    assert [p.split(",")[1] for p in purges] == [" 1 calls anonymised"] * 2
