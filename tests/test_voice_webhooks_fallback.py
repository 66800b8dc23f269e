"""The Voice fallback URL: useful TwiML (apology, the duty phone, a voicemail) even when the
database and Redis are both down; what it saw is stored afterwards, or spooled to
`DATA_DIR/spool/` and replayed once the database is back."""

from __future__ import annotations

import json
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from callcenter.app import create_app
from callcenter.db.models import Call, CallEvent, TicketRequest
from callcenter.ivr import prompts
from callcenter.ivr.spool import replay_spool, spool_path
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE, MutableClock
from tests.twilio_requests import fixture, parse_twiml, signed_post

# Replaying spooled events exactly once into the call log: per dialect.
pytestmark = pytest.mark.both_databases

VOICE = "Polly.Tatyana"
DUTY = "+78126077741"
DIAL_RESULT = f"{TEST_PUBLIC_BASE}/webhooks/voice/fallback/dial-result"
VOICEMAIL = f"{TEST_PUBLIC_BASE}/webhooks/voice/fallback/voicemail"
RECORDING_SID = "RE" + "c" * 32
RECORDING_URL = (
    f"https://api.twilio.com/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Recordings/{RECORDING_SID}"
)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def dead_backends_app(tmp_path: Path, clock: MutableClock) -> Iterator[tuple[Flask, Services]]:
    """The service pointed at a PostgreSQL and a Redis that are not there."""
    settings = Settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/callcenter",
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        data_dir=tmp_path,
        twilio_account_sid=TEST_ACCOUNT_SID,
        twilio_auth_token=TEST_AUTH_TOKEN,
        public_base_url=TEST_PUBLIC_BASE,
        duty_phone=DUTY,
    )
    services = Services.from_settings(settings, clock=clock)
    yield create_app(services=services), services
    services.engine.dispose()


def tags(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def spooled(data_dir: Path, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The spooled records, once there are `count` of them."""
    path = spool_path(data_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text("utf-8").splitlines()
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
        time.sleep(0.02)
    raise AssertionError(f"{count} spooled record(s) expected at {path}")


def assert_apology_and_duty_phone(root: ET.Element) -> None:
    assert tags(root) == ["Say", "Dial"]
    say, dial = root
    assert say.text == prompts.APOLOGY
    assert say.attrib == {"language": "ru-RU", "voice": VOICE}
    assert dial.text == DUTY
    assert dial.attrib == {"action": DIAL_RESULT, "method": "POST", "timeout": "25"}


def test_the_fallback_answers_with_the_duty_phone_when_database_and_redis_are_down(
    dead_backends_app: tuple[Flask, Services],
) -> None:
    app, services = dead_backends_app
    client = app.test_client()
    started = time.monotonic()
    response = signed_post(client, "/webhooks/voice/fallback", fixture("fallback"))
    root = parse_twiml(response)

    assert time.monotonic() - started < 1.0  # the database was not waited for
    assert_apology_and_duty_phone(root)
    [record] = spooled(services.settings.data_dir, 1)
    assert record["kind"] == "fallback"
    assert record["params"]["CallSid"] == fixture("fallback")["CallSid"]
    assert record["params"]["ErrorCode"] == "11200"


def test_the_incoming_webhook_itself_falls_back_when_the_database_is_down(
    dead_backends_app: tuple[Flask, Services],
) -> None:
    app, services = dead_backends_app
    root = parse_twiml(
        signed_post(app.test_client(), "/webhooks/voice/incoming", fixture("incoming_call"))
    )

    assert_apology_and_duty_phone(root)
    assert spooled(services.settings.data_dir, 1)[0]["kind"] == "step_error"


def test_nobody_at_the_duty_phone_means_a_voicemail_also_without_a_database(
    dead_backends_app: tuple[Flask, Services],
) -> None:
    app, services = dead_backends_app
    client = app.test_client()
    root = parse_twiml(
        signed_post(client, "/webhooks/voice/fallback/dial-result", fixture("dial_action"))
    )

    assert tags(root) == ["Say", "Record", "Say", "Hangup"]
    assert root[0].text == prompts.FALLBACK_VOICEMAIL
    assert root[1].attrib == {
        "action": VOICEMAIL,
        "method": "POST",
        "maxLength": "180",
        "finishOnKey": "#",
        "timeout": "10",
        "playBeep": "true",
    }
    assert root[2].text == prompts.FALLBACK_THANKS

    params = fixture("record_action", RecordingSid=RECORDING_SID, RecordingUrl=RECORDING_URL)
    thanks = parse_twiml(signed_post(client, "/webhooks/voice/fallback/voicemail", params))
    assert tags(thanks) == ["Say", "Hangup"]
    records = spooled(services.settings.data_dir, 2)
    assert [r["kind"] for r in records] == ["dial_result", "voicemail"]
    assert records[1]["params"]["RecordingUrl"] == RECORDING_URL


def test_without_a_duty_phone_the_fallback_takes_a_voicemail_at_once(
    dead_backends_app: tuple[Flask, Services],
) -> None:
    """DUTY_PHONE unset (allowed outside production): nothing to dial, so the apology is
    followed by the voicemail at once — never a dead end, never one of our own lines."""
    _, services = dead_backends_app
    unset = Services.from_settings(services.settings.with_(duty_phone=None), clock=services.clock)
    client = create_app(services=unset).test_client()
    try:
        root = parse_twiml(signed_post(client, "/webhooks/voice/fallback", fixture("fallback")))
    finally:
        unset.engine.dispose()

    assert tags(root) == ["Say", "Say", "Record", "Say", "Hangup"]
    assert root[0].text == prompts.APOLOGY_NO_DUTY_PHONE
    assert root[1].text == prompts.FALLBACK_VOICEMAIL
    assert root[2].attrib["action"] == VOICEMAIL


def test_an_answered_duty_phone_ends_the_call(dead_backends_app: tuple[Flask, Services]) -> None:
    app, _ = dead_backends_app
    params = fixture("dial_action", DialCallStatus="completed", DialCallDuration="120")
    root = parse_twiml(
        signed_post(app.test_client(), "/webhooks/voice/fallback/dial-result", params)
    )
    assert tags(root) == ["Hangup"]


def test_callbacks_that_cannot_be_stored_are_spooled_not_lost(
    dead_backends_app: tuple[Flask, Services],
) -> None:
    app, services = dead_backends_app
    client = app.test_client()
    assert (
        signed_post(client, "/webhooks/voice/status", fixture("status_completed")).status_code
        == 204
    )
    response = signed_post(
        client, "/webhooks/voice/recording-status?kind=voicemail", fixture("recording_status")
    )
    assert response.status_code == 204
    records = spooled(services.settings.data_dir, 2)
    assert [r["kind"] for r in records] == ["status", "recording_status"]
    assert records[0]["params"]["SequenceNumber"] == "2"
    assert records[1]["recording_kind"] == "voicemail"


def test_with_the_database_up_a_fallback_voicemail_becomes_a_callback_ticket(
    client: Any, services: Services
) -> None:
    call_sid = "CA" + "d" * 32
    signed_post(client, "/webhooks/voice/fallback", fixture("fallback", CallSid=call_sid)).close()
    params = fixture(
        "record_action", CallSid=call_sid, RecordingSid=RECORDING_SID, RecordingUrl=RECORDING_URL
    )
    parse_twiml(signed_post(client, "/webhooks/voice/fallback/voicemail", params))

    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == call_sid)).one()
        kinds = [
            e.kind for e in session.scalars(select(CallEvent).where(CallEvent.call_id == call.id))
        ]
        request = session.scalars(
            select(TicketRequest).where(TicketRequest.call_id == call.id)
        ).one()
        assert (call.category, call.topic, call.recording_sid) == (
            "consultation",
            "consultation",
            RECORDING_SID,
        )
        assert request.draft["topic"] == "consultation"
    assert kinds[:2] == ["fallback_fallback", "fallback_voicemail"]
    assert not spool_path(services.settings.data_dir).exists()


def test_spooled_events_are_replayed_once_the_database_is_back(
    dead_backends_app: tuple[Flask, Services], make_services: Any
) -> None:
    app, dead = dead_backends_app
    client = app.test_client()
    call_sid = "CA" + "f" * 32
    parse_twiml(
        signed_post(client, "/webhooks/voice/fallback", fixture("fallback", CallSid=call_sid))
    )
    signed_post(client, "/webhooks/voice/status", fixture("status_completed", CallSid=call_sid))
    spooled(dead.settings.data_dir, 2)

    alive = make_services(data_dir=dead.settings.data_dir)
    assert replay_spool(alive) == (2, 0)
    with alive.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == call_sid)).one()
        assert (call.twilio_status, call.outcome, call.category) == (
            "completed",
            "abandoned",
            "abandoned",
        )
    assert not spool_path(dead.settings.data_dir).exists()


def test_the_outbox_sweep_replays_the_spool_by_itself(services: Services) -> None:
    from callcenter.ivr.spool import spool
    from callcenter.jobs.tasks import replay_fallback_spool

    record = {
        "kind": "status",
        "at": "2025-11-27T08:00:00+00:00",
        "params": {
            "CallSid": "CA" + "5" * 32,
            "CallStatus": "completed",
            "From": "+79161234567",
            "To": "+78002506077",
            "CallDuration": "30",
            "SequenceNumber": "3",
        },
    }
    spool(services.settings.data_dir, record)
    replay_fallback_spool(services)
    assert not spool_path(services.settings.data_dir).exists()
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == "CA" + "5" * 32)).one()
        assert call.twilio_status == "completed"
