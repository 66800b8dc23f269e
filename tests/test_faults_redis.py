"""Redis crashes mid-call and comes back: every caller still hears the IVR to its end, and
every ticket is created exactly once after Redis returns.

Real processes: the Procfile's `web` (gunicorn) and `worker` (`callcenter worker`), a
private redis-server that is SIGKILLed (its data set lost, as without persistence) and
started again on the same port, and `callcenter outbox flush` as an operator would run it.
The test run's PostgreSQL database holds the calls; the built-in portal the tickets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue
from sqlalchemy import func, select

from callcenter.db.models import Ticket, TicketRequest
from callcenter.ivr import prompts
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.simulator.script import Answer, CallScript
from callcenter.simulator.twilio import Simulator
from tests.conftest import CUSTOMER_PORTAL_TOKEN, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE
from tests.processes import FlakyPortal, HttpClient, ServiceStack, follow_twiml, wait_until
from tests.ticket_pipeline import open_request, request_row
from tests.twilio_requests import TwilioCall

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.prism]

# RQ's own loop gave up ~18 s into an outage and the worker process died; this one lasts
# more than twice that, with the worker's real timing.
LONG_OUTAGE_SECONDS = 40

NEW_PROBLEM = ("keys:2", "keys:1", "keys:1", "say:А123ВС77", "say:Иван Петров, Ромашка")


@pytest.fixture
def stack(start_stack: Callable[..., ServiceStack]) -> ServiceStack:
    return start_stack()


def requests_by_status(db: Services) -> dict[str, int]:
    with db.sessions() as session:
        rows = session.execute(
            select(TicketRequest.status, func.count()).group_by(TicketRequest.status)
        ).all()
    return {status: count for status, count in rows}


def ticket_keys(db: Services) -> list[str | None]:
    with db.sessions() as session:
        return list(session.scalars(select(Ticket.idempotency_key)))


def queues_idle(stack: ServiceStack) -> bool:
    """Nothing queued or running on the pipeline's queues (scheduled sweeps aside)."""
    assert stack.redis is not None
    conn = Redis.from_url(stack.redis.url)
    try:
        for name in (stack.queue_name, stack.queue_name + "-followups"):
            queue = Queue(name, connection=conn)
            if queue.count or queue.started_job_registry.get_job_ids():
                return False
        return True
    finally:
        conn.close()


def test_a_redis_crash_mid_call_loses_no_caller_and_no_ticket(
    stack: ServiceStack, db: Services
) -> None:
    assert stack.redis is not None
    http = HttpClient(stack.web.url)
    simulator = Simulator(stack.web.url, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE)

    # A caller is in the topic menu when Redis dies.
    first = TwilioCall(http, caller="+79161110001")
    first.start()
    first.press("2")
    stack.redis.kill()

    # ... and finishes the new-problem path while Redis is down; two more callers come in,
    # one with a critical server failure (ticket at once, then urgent routing).
    heard = follow_twiml(first, NEW_PROBLEM[1:])
    # No worker can make the ticket now: the caller is promised the number by SMS.
    assert any(prompts.NUMBER_BY_SMS in line for line in heard), heard
    first.hang_up()
    second = simulator.run(
        CallScript(from_number="+79161110002", answers=tuple(map(Answer.press, "211")))
    )
    critical = simulator.run(
        CallScript(from_number="+79161110003", answers=(Answer.press("3"), Answer.press("#")))
    )
    for transcript in (second, critical):
        assert transcript.errors == [], transcript.text()
        assert all(r.status in (200, 204) for r in transcript.requests), transcript.requests
    assert critical.requests_of("dial-action"), critical.text()  # put through to a person

    # The platform sees the outage; the rows wait in the outbox, nothing reached the portal.
    ready = requests.get(stack.web.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("error")
    assert requests_by_status(db) == {"pending": 3}
    assert ticket_keys(db) == []

    # Redis comes back empty; the operator flushes the outbox. The worker is held meanwhile:
    # back on Redis it sweeps by itself, and a short outage (the calls above take seconds)
    # would let it submit the rows before the operator does.
    stack.worker.pause()
    try:
        stack.redis.start_and_wait()
        flushed = stack.cli("outbox", "flush")
    finally:
        stack.worker.resume()
    assert flushed.returncode == 0, flushed.stderr
    assert "3 ticket request(s) submitted" in flushed.stdout

    wait_until(
        lambda: requests_by_status(db) == {"done": 3},
        timeout=30,
        what="three tickets",
        on_timeout=stack.logs,
    )
    call_sids = {first.call_sid, second.call_sid, critical.call_sid}
    assert sorted(k or "" for k in ticket_keys(db)) == sorted(call_sids)

    # Flushing again (a nervous operator, a sweep racing it) makes no second ticket.
    again = stack.cli("outbox", "flush")
    assert again.returncode == 0, again.stderr
    wait_until(lambda: queues_idle(stack), timeout=20, what="the queues to drain")
    assert sorted(k or "" for k in ticket_keys(db)) == sorted(call_sids)
    assert stack.worker.alive, stack.worker.log_tail()
    ready = requests.get(stack.web.url + "/readyz", timeout=5)
    assert ready.json()["checks"]["redis"] == "ok"
    http.close()

    # Through it all the processes logged JSON lines; each webhook of a call names the
    # call, and no caller's number is readable in any log.
    web_lines = stack.web.json_lines()
    # (RQ's scheduler process dies with Redis; multiprocessing prints its traceback past
    # logging, and the worker restarts it at its next maintenance round.)
    worker_lines = stack.worker.json_lines(strict=False)
    for sid in call_sids:
        requests_of_call = [
            r for r in web_lines if r["logger"] == "callcenter.http" and r.get("call_sid") == sid
        ]
        assert len(requests_of_call) >= 4, sid
    webhook_lines = [r for r in web_lines if r["msg"].startswith("POST /webhooks/")]
    assert all(r.get("call_sid") in call_sids for r in webhook_lines)
    assert any("Redis" in r["msg"] and r["level"] in ("WARNING", "ERROR") for r in web_lines)
    everything = stack.web.log_text() + stack.worker.log_text()
    for caller in ("79161110001", "79161110002", "79161110003"):
        assert caller not in everything
    assert any(r["logger"].startswith("rq.") for r in worker_lines)


def test_after_a_redis_crash_the_worker_makes_the_waiting_tickets_by_itself(
    stack: ServiceStack, db: Services
) -> None:
    """Nobody runs `outbox flush`: the worker notices Redis came back empty, restarts RQ's
    scheduler and re-seeds the sweep, which finds the ticket request the crash left."""
    assert stack.redis is not None
    simulator = Simulator(stack.web.url, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE)
    stack.redis.kill()
    caller = simulator.run(
        CallScript(from_number="+79161110004", answers=tuple(map(Answer.press, "211")))
    )
    assert caller.errors == [], caller.text()
    assert requests_by_status(db) == {"pending": 1}

    stack.redis.start_and_wait()
    # Well under a minute (RQ's defaults left the scheduler down for ~7 minutes).
    wait_until(
        lambda: requests_by_status(db) == {"done": 1},
        timeout=45,
        what="the ticket, with no flush",
        on_timeout=stack.logs,
    )
    assert ticket_keys(db) == [caller.call_sid]
    assert stack.worker.alive, stack.worker.log_tail()


def worker_states(stack: ServiceStack) -> list[str]:
    """The worker's log lines about Redis's state (lost / still away / back)."""
    return [
        r["msg"]
        for r in stack.worker.json_lines(strict=False)
        if r["logger"] == "callcenter.jobs.worker"
        and r["msg"].startswith(("Redis lost", "Redis still away", "Redis is back"))
    ]


def test_the_worker_outlives_a_long_redis_outage_and_catches_up_by_itself(
    stack: ServiceStack, db: Services
) -> None:
    """Redis is away longer than RQ's own reconnect window and comes back empty: the worker
    process is still there, said so once per change, and the ticket a caller asked for
    during the outage gets its number with nobody running `outbox flush`."""
    assert stack.redis is not None
    simulator = Simulator(stack.web.url, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE)
    worker_pid = stack.worker.pid
    stack.redis.kill()
    down_since = time.monotonic()
    caller = simulator.run(
        CallScript(from_number="+79161110005", answers=tuple(map(Answer.press, "211")))
    )
    assert caller.errors == [], caller.text()
    assert requests_by_status(db) == {"pending": 1}
    wait_until(
        lambda: any(m.startswith("Redis lost") for m in worker_states(stack)),
        timeout=30,
        what="the worker to notice Redis is gone",
        on_timeout=stack.logs,
    )
    # The outage goes on; the worker process stays, checked all along.
    while time.monotonic() - down_since < LONG_OUTAGE_SECONDS:
        assert stack.worker.alive, stack.worker.log_tail()
        time.sleep(0.5)

    stack.redis.start_and_wait()  # no persistence: an empty Redis
    wait_until(
        lambda: requests_by_status(db) == {"done": 1},
        timeout=60,
        what="the ticket, with no flush",
        on_timeout=stack.logs,
    )
    assert ticket_keys(db) == [caller.call_sid]
    assert stack.worker.alive and stack.worker.pid == worker_pid, stack.worker.log_tail()
    states = worker_states(stack)
    assert [m.split(" (")[0].split(" after ")[0] for m in states] == [
        "Redis lost",
        "Redis is back",
    ], states
    assert "worker process exited" not in stack.worker.log_text()


def test_redis_lost_mid_job_is_logged_as_what_happened(
    tmp_path: Path,
    start_stack: Callable[..., ServiceStack],
    customer_portal: tuple[FlakyPortal, Services],
    pg_database_url: str,
) -> None:
    """Redis dies while a ticket job runs; the job itself succeeds (the number is
    recorded). The worker's log says what happened — Redis lost, then back, the outage
    counted from when the worker first found Redis gone — and not that the job raised,
    that the worker is quitting, or that RQ's loop ended on an error of its own."""
    flaky, _portal_db = customer_portal
    stack = start_stack(
        directory=tmp_path / "service",
        PORTAL_URL=flaky.api_url,
        PORTAL_TOKEN=CUSTOMER_PORTAL_TOKEN,
    )
    assert stack.redis is not None
    db = Services.from_settings(
        Settings(
            database_url=pg_database_url,
            data_dir=tmp_path,
            redis_url=stack.redis.url,
            queue_name=stack.queue_name,
        )
    )
    worker_pid = stack.worker.pid
    try:
        request_id = open_request(db)
        call_sid = request_row(db, request_id).idempotency_key
        flaky.script = ["slow"]  # the job waits on the portal until released
        assert db.jobs.submit_ticket_request(request_id)
        wait_until(
            lambda: flaky.creates_by_key()[call_sid] == 1,
            timeout=30,
            what="the ticket job to ask the portal",
            on_timeout=stack.logs,
        )
        stack.redis.kill()
        down_since = time.monotonic()
        flaky.release()
        wait_until(
            lambda: request_row(db, request_id).status == "done",
            timeout=20,
            what="the job to record the number",
            on_timeout=stack.logs,
        )
        wait_until(
            lambda: worker_states(stack),
            timeout=30,
            what="the worker to say Redis is lost",
            on_timeout=stack.logs,
        )
        stack.redis.start_and_wait()
        outage = time.monotonic() - down_since
        wait_until(
            lambda: len(worker_states(stack)) == 2,
            timeout=30,
            what="the worker to say Redis is back",
            on_timeout=stack.logs,
        )
        # Back on Redis, the sweep sends the follow-ups the job could not queue.
        wait_until(
            lambda: request_row(db, request_id).next_attempt_at is None,
            timeout=30,
            what="the follow-ups, once Redis is back",
            on_timeout=stack.logs,
        )
    finally:
        db.close()
    assert stack.worker.alive and stack.worker.pid == worker_pid, stack.worker.log_tail()
    lost, back = worker_states(stack)
    assert lost.startswith("Redis lost (") and "Connection refused" in lost, lost
    away = int(back.removeprefix("Redis is back after ").split(" s")[0])
    # The outage as the test made it, less the moment the worker takes to notice.
    assert outage - 2 <= away <= outage + 12, (away, outage)
    text = stack.worker.log_text()
    for misleading in (
        "exception raised while executing",  # the job did not raise
        "found an unhandled exception, quitting",  # the worker does not quit
        "RQ's work loop ended",  # Redis was lost, RQ had no error of its own
        "could not connect to Redis instance",  # RQ's listener, every 2 s
    ):
        assert misleading not in text, misleading
