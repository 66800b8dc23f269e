"""Webhooks replayed, duplicated, reordered and fired concurrently for one call: the call
log and the tickets end up as for a clean run of the same call.

Real processes: the Procfile's `web` (gunicorn, 2 workers × 8 threads, so requests of one
call really run at once) against the test run's PostgreSQL and a private Redis. A clean
call is played first and every request it made is kept; the same call is then played
again under a new CallSid the way a misbehaving network would deliver it: the first
webhook fired by eight threads at once, every request sent twice, one mid-call step fired
by eight threads at once, the recording callback before the record action and again after
it, the status callbacks out of order and repeated, and an old step replayed after the
call ended. The ticket jobs then run (`callcenter worker --burst`).

"The same log" is checked at two levels. The call's record (`call_json` without its
events: category, topic, product, vehicles, recording, outcome, ticket, ...) must be
equal, times aside. The events keep every request as evidence, so the chaotic call has
more of them; what a supervisor replays — the path, without the events marked as
duplicates (`result: stale` / `repeated`) or as ignored status callbacks — must be
equal, in order, and every extra event must be so marked.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from callcenter.calllog.query import get_call
from callcenter.calllog.serialize import call_json
from callcenter.db.models import Ticket
from callcenter.services import Services
from tests.conftest import TEST_ACCOUNT_SID
from tests.processes import HttpClient, ServiceStack
from tests.twilio_requests import (
    TwilioCall,
    fixture,
    new_call_sid,
    parse_twiml,
    signed_post,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.prism]

CALLER = "+79161110031"
ANSWERS = ["2", "1", "1", "say:А123ВС77", "say:Иван Петров, Ромашка"]
THREADS = 8
CLEAN_RECORDING, CHAOTIC_RECORDING = "RE" + "7" * 32, "RE" + "8" * 32
# Event kinds a callback adds wherever it lands in the call; compared by count, not place.
CALLBACK_KINDS = {"status", "status_ignored", "recording_status"}
DUPLICATE_RESULTS = {"stale", "repeated"}

Sent = tuple[str, dict[str, str]]


class RecordingClient(HttpClient):
    """An HttpClient that keeps every request it posts (path, form)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.sent: list[Sent] = []

    def post(self, path: str, data: Any = None, headers: Any = None) -> Any:
        self.sent.append((path, dict(data or {})))
        return super().post(path, data=data, headers=headers)


@pytest.fixture
def stack(start_stack: Callable[..., ServiceStack]) -> ServiceStack:
    # No worker while the calls run: the tickets come after, from a burst worker. Polls
    # bounded by count (4), not by the wall clock, so both calls poll alike.
    return start_stack(worker=False, TICKET_WAIT_SECONDS="8")


def status_params(call: TwilioCall, status: str, sequence: int) -> dict[str, str]:
    name = {"ringing": "status_ringing", "in-progress": "status_in_progress"}.get(
        status, "status_completed"
    )
    extra = {"CallDuration": "95"} if status == "completed" else {}
    return call.params(name, CallStatus=status, SequenceNumber=str(sequence), **extra)


def play_clean_call(client: RecordingClient) -> str:
    """A new-problem call from start to hang-up, as Twilio would deliver it."""
    call = TwilioCall(client, caller=CALLER)
    call.start()
    signed_post(client, "/webhooks/voice/status", status_params(call, "ringing", 0))
    signed_post(client, "/webhooks/voice/status", status_params(call, "in-progress", 1))
    answers = list(ANSWERS)
    for _ in range(40):
        root = call.twiml
        assert root is not None
        tags = [child.tag for child in root]
        if "Gather" in tags and answers:
            answer = answers.pop(0)
            call.say(answer[4:]) if answer.startswith("say:") else call.press(answer)
        elif "Record" in tags:
            record = root.find("Record")
            assert record is not None
            call.record(sid=CLEAN_RECORDING)
            recording = fixture(
                "recording_status",
                CallSid=call.call_sid,
                RecordingSid=CLEAN_RECORDING,
                RecordingUrl=f"https://api.twilio.com/2010-04-01/Accounts/{TEST_ACCOUNT_SID}"
                f"/Recordings/{CLEAN_RECORDING}",
            )
            signed_post(client, _path(record.attrib["recordingStatusCallback"]), recording)
        elif tags and tags[-1] == "Redirect":
            call.follow_redirect()
        else:
            break
    assert [child.tag for child in call.twiml or []][-1] == "Hangup", call.heard
    signed_post(client, "/webhooks/voice/status", status_params(call, "completed", 2))
    return call.call_sid


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def retarget(sent: list[Sent], old_sid: str, new_sid: str) -> list[Sent]:
    """The same requests for another call (and another recording)."""
    return [
        (
            path,
            {
                k: v.replace(old_sid, new_sid).replace(CLEAN_RECORDING, CHAOTIC_RECORDING)
                for k, v in p.items()
            },
        )
        for path, p in sent
    ]


def post(base_url: str, request: Sent) -> Any:
    client = HttpClient(base_url)
    try:
        return signed_post(client, request[0], request[1])
    finally:
        client.close()


def fire_at_once(base_url: str, request: Sent, threads: int = THREADS) -> list[int]:
    """`threads` copies of one signed request, released together; their status codes."""
    barrier = threading.Barrier(threads)
    codes: list[int] = []
    lock = threading.Lock()

    def fire() -> None:
        client = HttpClient(base_url)
        try:
            barrier.wait(timeout=10)
            response = signed_post(client, request[0], request[1])
            body = response.get_data()
            if response.status_code == 200:
                ET.fromstring(body)  # well-formed TwiML, whoever won the race
            with lock:
                codes.append(response.status_code)
        finally:
            client.close()

    workers = [threading.Thread(target=fire) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return codes


def play_chaotic_call(base_url: str, clean: list[Sent], clean_sid: str) -> tuple[str, int]:
    """The clean call's requests, delivered badly. Returns (CallSid, status callbacks sent)."""
    sid = new_call_sid()
    requests = retarget(clean, clean_sid, sid)
    statuses = [r for r in requests if r[0] == "/webhooks/voice/status"]
    recording_status = [r for r in requests if r[0].startswith("/webhooks/voice/recording-status")]
    steps = [r for r in requests if r not in statuses and r not in recording_status]
    assert steps[0][0] == "/webhooks/voice/incoming"

    assert fire_at_once(base_url, steps[0]) == [200] * THREADS
    for index, step in enumerate(steps[1:], start=1):
        if step[1].get("RecordingUrl"):
            # Twilio's recording callback may come before the record action.
            assert post(base_url, recording_status[0]).status_code == 204
        if index == 4:  # the vehicle number, said by eight impatient retries at once
            assert fire_at_once(base_url, step) == [200] * THREADS
        else:
            first, again = post(base_url, step), post(base_url, step)
            parse_twiml(first)
            parse_twiml(again)
    assert post(base_url, recording_status[0]).status_code == 204
    # Status callbacks out of order and repeated: the end first, then the rest, then again.
    ringing, in_progress, completed = statuses
    sent_statuses = [completed, ringing, in_progress, completed, in_progress]
    for status in sent_statuses:
        assert post(base_url, status).status_code == 204
    # A stale step replayed after the call ended.
    parse_twiml(post(base_url, steps[1]))
    return sid, len(sent_statuses)


def as_clean(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chaotic call's events with its recording SID written as the clean call's."""
    dumped = json.dumps(events, ensure_ascii=False).replace(CHAOTIC_RECORDING, CLEAN_RECORDING)
    loaded: list[dict[str, Any]] = json.loads(dumped)
    return loaded


def record_of(db: Services, call_sid: str) -> dict[str, Any]:
    with db.sessions() as session:
        call = get_call(session, call_sid)
        assert call is not None, f"no call {call_sid} in the log"
        data = call_json(call)
    data["ticket_number"] = bool(data["ticket_number"])
    for key in ("call_sid", "started_at", "ended_at", "called_back_at"):
        data.pop(key)
    return data


def path_of(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a supervisor replays: the events, without duplicates and callbacks."""
    path = []
    for event in events:
        detail = dict(event["detail"])
        if event["kind"] in CALLBACK_KINDS or detail.get("result") in DUPLICATE_RESULTS:
            continue
        detail.pop("request_id", None)  # the outbox row's id: one per call
        path.append((event["kind"], event["step"], event["digits"], event["speech"], detail))
    return path


def test_a_call_delivered_badly_ends_up_logged_and_ticketed_as_a_clean_one(
    stack: ServiceStack, db: Services
) -> None:
    client = RecordingClient(stack.web.url)
    clean_sid = play_clean_call(client)
    chaotic_sid, statuses_sent = play_chaotic_call(stack.web.url, client.sent, clean_sid)
    client.close()

    burst = stack.cli("worker", "--burst", timeout=120)
    assert burst.returncode == 0, burst.stdout + burst.stderr

    clean, chaotic = record_of(db, clean_sid), record_of(db, chaotic_sid)
    clean_events, chaotic_events = clean.pop("events"), chaotic.pop("events")
    for record in (clean, chaotic):
        record["recording"] = record["recording"] and record["recording"]["duration"]
    assert chaotic == clean
    assert clean["ticket_state"] == "done" and clean["outcome"] == "completed"

    assert path_of(as_clean(chaotic_events)) == path_of(clean_events)
    # Every request is in the log; the extra ones are marked as what they are.
    marked = [
        e
        for e in chaotic_events
        if e["kind"] == "status_ignored" or e["detail"].get("result") in DUPLICATE_RESULTS
    ]
    kinds = [e["kind"] for e in chaotic_events]
    assert kinds.count("status") + kinds.count("status_ignored") == statuses_sent
    assert kinds.count("recording_status") == 2
    assert len(chaotic_events) == len(path_of(chaotic_events)) + len(marked) + 2 + kinds.count(
        "status"
    )

    # One ticket per call on the portal, whatever was replayed.
    with db.sessions() as session:
        keys = list(session.scalars(select(Ticket.idempotency_key)))
        assert session.scalar(select(func.count()).select_from(Ticket)) == 2
    assert sorted(k or "" for k in keys) == sorted([clean_sid, chaotic_sid])
