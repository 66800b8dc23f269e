"""The database goes away during calls: callers still get the fallback path (apology, the
duty phone, a voicemail) and nothing they did is silently dropped.

Real processes: the Procfile's `web` and `worker` reach PostgreSQL through a TCP gate the
test cuts (open connections reset, new ones refused — the database server died) and then
restores. Where the events go meanwhile: `DATA_DIR/spool/fallback-events.jsonl` on the web
host (`callcenter.ivr.spool`), one JSON line each, and into the call log by the worker's
outbox sweep (it replays its host's spool) once the database is back.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from redis import Redis
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from callcenter.calllog.query import get_call
from callcenter.calllog.serialize import call_json
from callcenter.db.models import Ticket
from callcenter.ivr import prompts
from callcenter.ivr.spool import spool_files
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import CUSTOMER_PORTAL_TOKEN, TEST_ACCOUNT_SID
from tests.processes import FlakyPortal, HttpClient, ServiceStack, TcpGate, wait_until
from tests.ticket_pipeline import open_request, request_row
from tests.twilio_requests import TwilioCall, fixture, new_call_sid, parse_twiml, signed_post

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.prism]

DUTY_PHONE = "+79110000002"
TWILIO_API = "https://api.twilio.com/2010-04-01"
# Twilio waits this long for a webhook's answer, then tries the fallback URL.
TWILIO_TIMEOUT_SECONDS = 15
# The worker's sweep runs every 10 s and replays the spool of its host.
SWEEP_WAIT_SECONDS = 30


def through(gate: TcpGate, url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{gate.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
def stack(
    gate: TcpGate, start_stack: Callable[..., ServiceStack], pg_database_url: str
) -> ServiceStack:
    return start_stack(database_url=through(gate, pg_database_url), DUTY_PHONE=DUTY_PHONE)


@pytest.fixture
def db(pg_database_url: str, stack: ServiceStack) -> Iterator[Services]:
    """The test's own way in (not through the gate), with the web host's data dir, where
    the spool is."""
    svc = Services.from_settings(
        Settings(
            database_url=pg_database_url,
            data_dir=stack.data_dir,
            redis_url=stack.redis.url if stack.redis else None,
            queue_name=stack.queue_name,
        )
    )
    yield svc
    svc.close()


def tags(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def assert_apology_then_duty_phone(root: ET.Element) -> None:
    assert tags(root) == ["Say", "Dial"]
    assert root[0].text == prompts.APOLOGY
    dial = root[1]
    assert (dial.text or "").strip() == DUTY_PHONE
    assert dial.attrib["action"].endswith("/webhooks/voice/fallback/dial-result")


def spooled(stack: ServiceStack) -> list[dict[str, Any]]:
    """The events in the spool, including those a replay is working through."""
    lines: list[dict[str, Any]] = []
    for part in spool_files(stack.data_dir):
        try:
            text = part.read_text("utf-8")
        except FileNotFoundError:
            continue
        lines.extend(json.loads(line) for line in text.splitlines() if line)
    return lines


def call_of(db: Services, call_sid: str) -> dict[str, Any] | None:
    with db.sessions() as session:
        call = get_call(session, call_sid)
        return call_json(call) if call is not None else None


def test_with_the_database_gone_callers_reach_the_duty_phone_and_nothing_is_dropped(
    stack: ServiceStack, gate: TcpGate, db: Services
) -> None:
    http = HttpClient(stack.web.url)
    # A caller is in the topic menu of a new problem when the database dies.
    caller = TwilioCall(http, caller="+79161110021")
    caller.start()
    caller.press("2")
    gate.cut()

    # Their next key press: no 500, the apology and the duty phone; nobody answers there,
    # so Twilio posts the dial result and the caller leaves a voicemail.
    assert_apology_then_duty_phone(caller.press("1"))
    dial_result = caller.params("dial_action", DialCallStatus="no-answer")
    voicemail = parse_twiml(signed_post(http, "/webhooks/voice/fallback/dial-result", dial_result))
    assert tags(voicemail) == ["Say", "Record", "Say", "Hangup"]
    record = voicemail.find("Record")
    assert record is not None
    recording_sid = "RE" + "1" * 32
    recording = caller.params(
        "record_action",
        RecordingSid=recording_sid,
        RecordingUrl=f"{TWILIO_API}/Accounts/{TEST_ACCOUNT_SID}/Recordings/{recording_sid}",
        RecordingDuration="17",
    )
    thanks = parse_twiml(signed_post(http, urlsplit(record.attrib["action"]).path, recording))
    assert tags(thanks) == ["Say", "Hangup"] and thanks[0].text == prompts.FALLBACK_THANKS
    assert caller.hang_up().status_code == 204

    # A new call now: the Voice URL itself answers with the fallback path...
    newcomer = TwilioCall(http, caller="+79161110022")
    assert_apology_then_duty_phone(newcomer.start())
    # ... and so does Twilio's fallback URL, which Twilio calls when the Voice URL fails.
    third_sid = new_call_sid()
    fallback_params = fixture("fallback", CallSid=third_sid, From="+79161110023")
    assert_apology_then_duty_phone(
        parse_twiml(signed_post(http, "/webhooks/voice/fallback", fallback_params))
    )

    # The platform is told; the process itself is alive.
    assert requests.get(stack.web.url + "/healthz", timeout=5).status_code == 200
    ready = requests.get(stack.web.url + "/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")

    # Nothing was dropped: every event is in the web host's spool.
    expected = {
        (caller.call_sid, "step_error"),
        (caller.call_sid, "dial_result"),
        (caller.call_sid, "voicemail"),
        (caller.call_sid, "status"),
        (newcomer.call_sid, "step_error"),
        (third_sid, "fallback"),
    }

    def all_spooled() -> list[dict[str, Any]] | None:
        # (A sweep may be working through the spool meanwhile: an event can be seen twice.)
        lines = spooled(stack)
        seen = {(e["params"].get("CallSid"), e["kind"]) for e in lines}
        return lines if seen == expected else None

    kept = wait_until(all_spooled, timeout=15, what="the spooled events", on_timeout=stack.logs)
    voicemail_event = next(e for e in kept if e["kind"] == "voicemail")
    assert voicemail_event["params"]["RecordingUrl"] == recording["RecordingUrl"]

    # The database comes back. A new call goes through normally again...
    gate.restore()
    wait_until(
        lambda: (
            requests.get(stack.web.url + "/readyz", timeout=10).json()["checks"]["database"] == "ok"
        ),
        timeout=20,
        what="/readyz to see the database again",
    )
    later = TwilioCall(http, caller="+79161110024")
    assert tags(later.start())[-1] == "Redirect"  # the greeting and main menu again

    # ... and the worker's sweep (on this host, so it sees the web's spool) puts every
    # spooled event into the call log: nobody has to run anything.
    wait_until(
        lambda: (
            (call_of(db, caller.call_sid) or {}).get("outcome") != "in_progress"
            and not spooled(stack)
        ),
        timeout=SWEEP_WAIT_SECONDS,
        what="the sweep to replay the spool",
        on_timeout=stack.logs,
    )
    first = call_of(db, caller.call_sid)
    assert first is not None
    assert first["category"] == "incident" and first["outcome"] != "in_progress"
    event_kinds = [e["kind"] for e in first["events"]]
    assert {"fallback_step_error", "fallback_dial_result", "fallback_voicemail"} <= set(event_kinds)
    assert first["recording"] is not None and first["recording"]["sid"] == recording["RecordingSid"]
    # The voicemail of a caller who had chosen a new problem becomes their ticket.
    wait_until(
        lambda: (call_of(db, caller.call_sid) or {}).get("ticket_state") == "done",
        timeout=20,
        what="the voicemail's ticket",
        on_timeout=stack.logs,
    )
    assert call_of(db, newcomer.call_sid) is not None
    third = call_of(db, third_sid)
    assert third is not None and "fallback_fallback" in [e["kind"] for e in third["events"]]

    http.close()


def test_a_database_that_hangs_still_lets_callers_reach_the_duty_phone_in_time(
    stack: ServiceStack, gate: TcpGate, db: Services
) -> None:
    """A database that stops answering (a frozen server, a path that drops packets) is
    worse than one that is down: nothing fails, everything waits. Twilio waits 15 s for a
    webhook; the caller must hear the fallback before that."""
    http = HttpClient(stack.web.url, timeout=TWILIO_TIMEOUT_SECONDS + 5)
    caller = TwilioCall(http, caller="+79161110031")
    caller.start()  # the web processes now hold pooled connections to the database
    gate.stall()
    try:
        started = time.monotonic()
        try:
            answer = caller.press("2")
        except requests.Timeout:
            answer = None
        elapsed = time.monotonic() - started
    finally:
        gate.restore()
    assert answer is not None and elapsed < TWILIO_TIMEOUT_SECONDS, (
        f"the step answered after {elapsed:.1f} s (Twilio gives up at 15 s): a pooled "
        "connection to a database that stopped answering must be cut by the request's "
        "database deadline (callcenter.db.deadline)"
    )
    assert_apology_then_duty_phone(answer)

    # The step's event was not dropped: the store hung too, so it went to the spool, and
    # once the database answers again the worker's sweep puts it into the call log.
    wait_until(
        lambda: (
            (caller.call_sid, "step_error")
            in {(e["params"].get("CallSid"), e["kind"]) for e in spooled(stack)}
            or "fallback_step_error" in kinds_of(db, caller.call_sid)
        ),
        timeout=20,
        what="the step's event in the spool",
        on_timeout=stack.logs,
    )
    # The web process is not stuck behind the cut connections: the next call is served.
    later = TwilioCall(http, caller="+79161110032")
    assert tags(later.start())[-1] == "Redirect"
    wait_until(
        lambda: "fallback_step_error" in kinds_of(db, caller.call_sid),
        timeout=SWEEP_WAIT_SECONDS,
        what="the sweep to replay the spooled event",
        on_timeout=stack.logs,
    )
    http.close()


def kinds_of(db: Services, call_sid: str) -> list[str]:
    call = call_of(db, call_sid)
    return [e["kind"] for e in call["events"]] if call else []


def test_the_worker_lives_through_a_database_outage_and_the_ticket_waits_in_the_outbox(
    stack: ServiceStack, gate: TcpGate, db: Services
) -> None:
    """PostgreSQL dies while a ticket job is due: the job fails at once (RQ's failed
    registry has it), the worker process stays, the request stays pending, and once the
    database is back the sweep makes the ticket — nobody touches anything."""
    assert stack.redis is not None
    worker_pid = stack.worker.pid
    request_id = open_request(db)  # committed through the test's own way in, not the gate
    redis = Redis.from_url(stack.redis.url)
    failed = FailedJobRegistry(stack.queue_name, connection=redis)
    gate.cut()
    try:
        assert db.jobs.submit_ticket_request(request_id)
        wait_until(
            lambda: f"{stack.queue_name}__ticket-request-{request_id}" in failed.get_job_ids(),
            timeout=30,
            what="the ticket job to fail against the dead database",
            on_timeout=stack.logs,
        )
        assert stack.worker.alive, stack.worker.log_tail()
        assert request_row(db, request_id).status == "pending"
    finally:
        gate.restore()
    wait_until(
        lambda: request_row(db, request_id).status == "done",
        timeout=SWEEP_WAIT_SECONDS,
        what="the sweep to make the ticket once the database is back",
        on_timeout=stack.logs,
    )
    assert request_row(db, request_id).ticket_number
    assert stack.worker.alive and stack.worker.pid == worker_pid, stack.worker.log_tail()
    redis.close()


# A job's database calls each wait at most this long (Settings.job_db_deadline, the default).
JOB_DB_DEADLINE = Settings.job_db_deadline


@pytest.fixture
def portal_stack(
    gate: TcpGate,
    tmp_path: Path,
    start_stack: Callable[..., ServiceStack],
    pg_database_url: str,
    customer_portal: tuple[FlakyPortal, Services],
) -> ServiceStack:
    return start_stack(
        directory=tmp_path / "service",
        database_url=through(gate, pg_database_url),
        DUTY_PHONE=DUTY_PHONE,
        PORTAL_URL=customer_portal[0].api_url,
        PORTAL_TOKEN=CUSTOMER_PORTAL_TOKEN,
    )


def test_a_ticket_job_against_a_database_that_hangs_fails_fast_and_the_worker_goes_on(
    portal_stack: ServiceStack,
    gate: TcpGate,
    customer_portal: tuple[FlakyPortal, Services],
    pg_database_url: str,
) -> None:
    """PostgreSQL stops answering while a ticket job runs (between the portal's answer and
    the number being recorded): the job fails as `DatabaseTimeout` within the job's
    database deadline, not RQ's 120 s job timeout, in one log line; the worker lives, the
    request stays pending, and once the database answers again the sweep records the
    number — one ticket on the portal, nobody touching anything."""
    stack = portal_stack
    flaky, portal_db = customer_portal
    assert stack.redis is not None
    db = Services.from_settings(
        Settings(
            database_url=pg_database_url,
            data_dir=stack.data_dir,
            redis_url=stack.redis.url,
            queue_name=stack.queue_name,
        )
    )
    redis = Redis.from_url(stack.redis.url)
    worker_pid = stack.worker.pid
    failed = FailedJobRegistry(stack.queue_name, connection=redis)
    request_id = open_request(db)  # through the test's own way in, not the gate
    job_id = f"{stack.queue_name}__ticket-request-{request_id}"
    call_sid = request_row(db, request_id).idempotency_key
    flaky.script = ["slow"]  # the job's portal call waits for the test
    try:
        assert db.jobs.submit_ticket_request(request_id)
        # The job runs: the portal has made the ticket and holds its answer, while the
        # job holds its database connection.
        wait_until(
            lambda: flaky.creates_by_key()[call_sid] == 1,
            timeout=30,
            what="the ticket job to ask the portal",
            on_timeout=stack.logs,
        )
        gate.stall()
        try:
            flaky.release()  # the number arrives; recording it hangs
            stalled = time.monotonic()
            wait_until(
                lambda: job_id in failed.get_job_ids(),
                timeout=JOB_DB_DEADLINE + 15,
                what="the ticket job to fail against the hanging database",
                on_timeout=stack.logs,
            )
            failed_after = time.monotonic() - stalled
            assert JOB_DB_DEADLINE - 1 < failed_after < JOB_DB_DEADLINE + 10, failed_after
            print(f"the ticket job failed {failed_after:.1f} s after the database hung")
            assert stack.worker.alive and stack.worker.pid == worker_pid, stack.worker.log_tail()
            assert request_row(db, request_id).status == "pending"
        finally:
            gate.restore()

        # The worker goes on: the sweep submits the request again, and the number the
        # portal gave the first time is recorded.
        wait_until(
            lambda: request_row(db, request_id).status == "done",
            timeout=SWEEP_WAIT_SECONDS,
            what="the sweep to record the ticket once the database answers",
            on_timeout=stack.logs,
        )
        with portal_db.sessions() as session:
            on_portal = session.scalars(
                select(Ticket).where(Ticket.idempotency_key == call_sid)
            ).all()
        assert len(on_portal) == 1
        assert request_row(db, request_id).ticket_number == str(on_portal[0].number)
        assert stack.worker.alive and stack.worker.pid == worker_pid, stack.worker.log_tail()

        # One line says what happened to the job; RQ's traceback of it is not logged.
        lines = [r for r in stack.worker.json_lines(strict=False) if job_id in r["msg"]]
        failures = [r for r in lines if r["level"] == "ERROR"]
        assert len(failures) == 1, failures
        assert failures[0]["logger"] == "callcenter.jobs.worker"
        assert failures[0]["msg"] == (
            f"job {job_id} (callcenter.jobs.tasks.create_ticket({request_id})) failed: "
            f"PostgreSQL did not answer a database call within {JOB_DB_DEADLINE:g} s: the "
            "connection was cut (does it hang?); the job failed, what it was to do stays "
            "due in the database"
        )
        assert "exc" not in failures[0]
    finally:
        redis.close()
        db.close()
