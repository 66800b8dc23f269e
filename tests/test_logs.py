"""Structured logs: JSON lines, the CallSid on every line of a call, caller numbers masked.

Real log records go through the handler `configure_logging` installs (and gunicorn's,
through `GunicornLogger`); the web requests are real requests to `create_app()`'s app.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from callcenter import logs
from callcenter.logs import (
    GunicornLogger,
    call_context,
    configure_logging,
    current_call_sid,
    mask_phone_numbers,
)
from callcenter.settings import Settings
from tests.twilio_requests import TwilioCall, fixture, signed_post

CALLER = "+79161234567"
MASKED = "+7916***4567"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+79161234567", "+7916***4567"),
        ("call from +7 (916) 123-45-67 rang", "call from +7916***4567 rang"),
        ("8 (916) 123-45-67", "8916***4567"),
        ("89161234567.", "8916***4567."),
        ("9161234567", "9161***4567"),
        ("74951234567", "7495***4567"),
        ("From=%2B79161234567&To=x", "From=%2B7916***4567&To=x"),
        ("sip:+79161234567@pbx.example.ru", "sip:+7916***4567@pbx.example.ru"),
        ("+442071234567", "+4420***4567"),
        ("00442071234567", "0044***4567"),
        ("['+79161234567', '+79031112233']", "['+7916***4567', '+7903***2233']"),
    ],
)
def test_phone_numbers_are_masked_in_any_spelling(text: str, masked: str) -> None:
    assert mask_phone_numbers(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "CA0123456789abcdef0123456789abcdef",  # a CallSid: digits inside a word
        "RE3a9e1d5c7b2f4e6a8c0d1b3f5e7a9c2d",
        "at 2025-11-27 11:00:00+03:00",
        "ticket №1042, request 17, 3 tries",
        "next try in 10, 30, 120, 600, 1800 s",
        "epoch 1764230400",
        "from 192.168.100.200:8000",
        "SMS SM0123456789abcdef0123456789abcdef queued",
    ],
)
def test_what_is_not_a_phone_number_stays_readable(text: str) -> None:
    assert mask_phone_numbers(text) == text


# ---------------------------------------------------------------- through the handler


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The service's handler (JSON) writing into a buffer; the root logger restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(Settings(log_json=True), stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    for handler in saved_handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved_level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_a_record_is_one_json_line_with_the_number_masked_everywhere(
    log_output: io.StringIO,
) -> None:
    log = logging.getLogger("callcenter.test_logs")
    with call_context("CA" + "1" * 32):
        log.info(
            "SMS to %s about ticket %s",
            CALLER,
            "1042",
            extra={"ticket_request_id": 7, "to": CALLER, "numbers": [CALLER]},
        )
        try:
            raise ValueError(f"Twilio refused {CALLER}: not a mobile")
        except ValueError:
            log.exception("could not text %s", "8 (916) 123-45-67")

    first, second = lines(log_output)
    assert first["level"] == "INFO" and first["logger"] == "callcenter.test_logs"
    assert first["msg"] == f"SMS to {MASKED} about ticket 1042"
    assert first["call_sid"] == "CA" + "1" * 32
    assert first["ticket_request_id"] == 7 and first["to"] == MASKED
    assert first["ts"].endswith("+00:00")
    assert second["msg"] == "could not text 8916***4567"
    assert f"ValueError: Twilio refused {MASKED}: not a mobile" in second["exc"]
    assert "1234567" not in log_output.getvalue().replace("***4567", "")


def test_the_call_of_the_context_tags_lines_and_an_explicit_one_wins(
    log_output: io.StringIO,
) -> None:
    log = logging.getLogger("callcenter.test_logs")
    log.warning("no call here")
    with call_context("CAouter"):
        log.warning("in the call")
        log.warning("about another call", extra={"call_sid": "CAother"})
        with call_context("CAinner"):
            log.warning("nested")
        assert current_call_sid() == "CAouter"
    assert current_call_sid() is None
    assert [line.get("call_sid") for line in lines(log_output)] == [
        None,
        "CAouter",
        "CAother",
        "CAinner",
    ]


def test_a_forged_call_sid_cannot_break_or_forge_a_log_line(log_output: io.StringIO) -> None:
    log = logging.getLogger("callcenter.test_logs")
    with call_context("CA1\n2025 ERROR fake line " + "x" * 100):
        log.warning("step")
    (line,) = lines(log_output)
    assert "\n" not in line["call_sid"] and " " not in line["call_sid"]
    assert len(line["call_sid"]) <= 65


def test_a_broken_format_string_is_logged_masked_not_raised(log_output: io.StringIO) -> None:
    logging.getLogger("callcenter.test_logs").warning("%s and %s", CALLER)
    (line,) = lines(log_output)
    assert MASKED in line["msg"] and CALLER not in line["msg"]


def test_plain_lines_for_a_developer_carry_the_call_and_mask_numbers() -> None:
    buffer = io.StringIO()
    handler = logs.build_handler(Settings(log_json=False), stream=buffer)
    log = logging.getLogger("callcenter.test_logs.plain")
    log.addHandler(handler)
    log.propagate = False
    try:
        with call_context("CA" + "2" * 32):
            log.warning("caller %s", CALLER)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert (
        buffer.getvalue()
        .rstrip()
        .endswith(f"WARNING callcenter.test_logs.plain [CA{'2' * 32}]: caller {MASKED}")
    )


def test_configuring_twice_replaces_the_handler_never_stacks_it(
    log_output: io.StringIO,
) -> None:
    again = io.StringIO()
    configure_logging(Settings(log_json=True), stream=again)
    logging.getLogger("callcenter.test_logs").warning("once")
    installed = [h for h in logging.getLogger().handlers if getattr(h, "_callcenter_handler", 0)]
    assert len(installed) == 1
    assert log_output.getvalue() == "" and len(lines(again)) == 1


def test_log_json_follows_the_environment_and_production() -> None:
    assert logs.wants_json({"LOG_JSON": "1"}) is True
    assert logs.wants_json({"LOG_JSON": "off", "CALLCENTER_ENV": "production"}) is False
    assert logs.wants_json({"CALLCENTER_ENV": "production"}) is True
    assert logs.wants_json({}) is False
    assert Settings.from_env({"CALLCENTER_ENV": "development"}).log_json is False


def test_gunicorns_own_lines_come_out_in_the_same_shape(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gunicorn.config import Config

    monkeypatch.setenv("LOG_JSON", "1")
    logger = GunicornLogger(Config())
    logger.error("Worker (pid:%s) was sent SIGKILL! caller %s", 4242, CALLER)
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line["logger"] == "gunicorn.error" and line["level"] == "ERROR"
    assert line["msg"] == f"Worker (pid:4242) was sent SIGKILL! caller {MASKED}"


# ---------------------------------------------------------------- web requests


@pytest.fixture
def app_log(client: FlaskClient) -> Iterator[io.StringIO]:
    """The app is built (it configured logging), then its handler is pointed at a buffer."""
    root = logging.getLogger()
    saved = list(root.handlers)
    buffer = io.StringIO()
    configure_logging(Settings(log_json=True), stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        if handler not in saved:
            root.removeHandler(handler)
    for handler in saved:
        if handler not in root.handlers:
            root.addHandler(handler)


def test_every_line_of_a_webhook_carries_its_call_sid_and_no_caller_number(
    client: FlaskClient, app_log: io.StringIO
) -> None:
    call = TwilioCall(client, caller=CALLER)
    call.start()
    call.press("2")
    # A forged request for the same call: refused, and the refusal names the call.
    forged = client.post(
        "/webhooks/voice/incoming",
        data=call.params("incoming_call"),
        headers={"X-Twilio-Signature": "forged"},
    )
    assert forged.status_code == 403
    assert call.hang_up().status_code == 204

    records = lines(app_log)
    requests = [r for r in records if r["logger"] == "callcenter.http"]
    assert [(r["msg"], r["status"]) for r in requests] == [
        ("POST /webhooks/voice/incoming 200", 200),
        ("POST /webhooks/voice/step/main_menu 200", 200),
        ("POST /webhooks/voice/incoming 403", 403),
        ("POST /webhooks/voice/status 204", 204),
    ]
    assert all(r["ms"] >= 0 and r["endpoint"].startswith("voice.") for r in requests)
    assert {r.get("call_sid") for r in records} == {call.call_sid}
    assert any(r["logger"] == "webhooks.signature" for r in records)
    assert "1234567" not in app_log.getvalue().replace("***4567", "")


def test_a_routing_leg_is_logged_under_the_callers_call(
    client: FlaskClient, app_log: io.StringIO
) -> None:
    parent = "CA" + "3" * 32
    leg = fixture("status_completed", CallSid="CA" + "4" * 32, CallStatus="ringing")
    leg["ParentCallSid"] = parent
    signed_post(client, f"/webhooks/voice/route/leg-status?call={parent}&leg=1", leg)
    records = lines(app_log)
    assert records and {r.get("call_sid") for r in records} == {parent}


def test_requests_of_no_call_carry_no_call_sid(client: FlaskClient, app_log: io.StringIO) -> None:
    assert client.get("/healthz").status_code == 200
    (line,) = lines(app_log)
    assert line["msg"] == "GET /healthz 200" and "call_sid" not in line
