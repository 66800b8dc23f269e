"""Property-based fuzzing of every Twilio webhook (`/webhooks/voice/...`, the routing
blueprint's included, and the SMS status callback), on SQLite and PostgreSQL, through
the Flask test client.

- Correctly signed requests with arbitrary form parameters and query strings reach the
  views (never a 403) and get a 200 with well-formed TwiML (`text/xml; charset=utf-8`,
  a `<Response>` root), a 204 for callbacks, or a clear 400 for a request lacking what
  every Twilio request carries — never a 500 and never an exception. A step that has to
  hide an error behind the apology (a caught exception, logged at ERROR) counts as a crash
  too: Twilio-shaped input must not need that safety net. (ERROR lines without an
  exception are the service saying what it refused; they are fine.)
- Unsigned or forged requests get 403 on every route, whatever they carry.

The CallSids come mostly from a small pool, so the fuzzed requests walk the same few calls
through the IVR and routing in random orders, as a confused or hostile sender would.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from callcenter.ivr.engine import STEPS
from tests.conftest import TEST_ACCOUNT_SID, TEST_PUBLIC_BASE
from tests.twilio_requests import signature

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Shrinking kilobyte strings through PostgreSQL takes minutes; a failure is reported as
# found (the explicit examples below show each known kind plainly).
HOSTILE = settings(FUZZ, phases=(Phase.explicit, Phase.reuse, Phase.generate))
FORGED = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

CALL_POOL = ("CA" + "a1" * 16, "CA" + "b2" * 16, "CA" + "c3" * 16)
NUMBERS = (
    "+79161234567",
    "+74951234567",
    "+78002506077",
    "89161234567",
    "8 (916) 123-45-67",
    "anonymous",
    "+266696687",
    "sip:ivan@pbx.example.ru",
    "client:support",
    "",
)
STATUSES: tuple[str, ...] = ("queued", "initiated", "ringing", "in-progress", "completed")
STATUSES += ("busy", "failed", "no-answer", "canceled", "answered", "absent")
DIAL_STATUSES = ("completed", "answered", "busy", "no-answer", "failed", "canceled")

# Every webhook route, with the query parameters our own TwiML puts on it.
ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/webhooks/voice/incoming", ()),
    ("/webhooks/voice/step/{step}", ("t",)),
    ("/webhooks/voice/status", ()),
    ("/webhooks/voice/recording-status", ("kind",)),
    ("/webhooks/voice/fallback", ()),
    ("/webhooks/voice/fallback/dial-result", ()),
    ("/webhooks/voice/fallback/voicemail", ()),
    ("/webhooks/voice/route/consultation", ()),
    ("/webhooks/voice/route/urgent", ()),
    ("/webhooks/voice/route/dial", ("step",)),
    ("/webhooks/voice/route/voicemail", ()),
    ("/webhooks/voice/route/whisper", ("call", "leg")),
    ("/webhooks/voice/route/whisper/answer", ("call", "leg")),
    ("/webhooks/voice/route/leg-status", ("call", "leg")),
    ("/webhooks/sms/status", ("m",)),
)
MESSAGE_SIDS = ("SM" + "e5" * 16, "SM" + "f6" * 16, "MM" + "a1" * 16)
MESSAGE_STATUSES = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "read")

# Odd values a Twilio parameter could still hold and a column could store: short,
# printable, no NUL. And hostile ones: any text, control characters and NUL included, up
# to a few kilobytes (longer than any column).
odd = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=19)
hostile = st.one_of(st.text(max_size=30), st.text(min_size=200, max_size=3000))
digits = st.text(alphabet="0123456789*#", max_size=20)
RECORDING_URLS = (
    f"https://api.twilio.com/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Recordings/RE1",
    "http://evil.example/recording.mp3",
    "not a url",
    "javascript:alert(1)",
)


def forms_and_queries(
    junk: st.SearchStrategy[str],
) -> tuple[st.SearchStrategy[dict[str, str]], dict[str, st.SearchStrategy[str]]]:
    """Form and query-value strategies where any value may also be `junk`."""

    def value(*likely: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        """Mostly what Twilio sends for a parameter, sometimes junk."""
        return st.one_of(*likely, junk)

    numberish = value(st.integers(-(2**70), 2**70).map(str), st.floats().map(str))
    params = {
        "AccountSid": value(st.just(TEST_ACCOUNT_SID)),
        "From": value(st.sampled_from(NUMBERS)),
        "To": value(st.sampled_from(NUMBERS)),
        "Caller": value(st.sampled_from(NUMBERS)),
        "Called": value(st.sampled_from(NUMBERS)),
        "Direction": value(st.sampled_from(("inbound", "outbound-dial", "outbound-api"))),
        "CallStatus": value(st.sampled_from(STATUSES)),
        "Digits": value(digits, st.just("hangup"), st.just("timeout")),
        "SpeechResult": value(st.sampled_from(("два", "А123ВС77", "специалист", "повторить"))),
        "Confidence": numberish,
        "RecordingUrl": value(st.sampled_from(RECORDING_URLS)),
        "RecordingSid": value(st.just("RE" + "d4" * 16)),
        "RecordingDuration": numberish,
        "RecordingStatus": value(st.sampled_from(("completed", "failed", "absent"))),
        "SequenceNumber": numberish,
        "Timestamp": value(st.just("Thu, 27 Nov 2025 08:00:05 +0000")),
        "CallDuration": numberish,
        "DialCallStatus": value(st.sampled_from(DIAL_STATUSES)),
        "DialCallSid": value(st.sampled_from(CALL_POOL)),
        "DialCallDuration": numberish,
        "DialBridged": value(st.sampled_from(("true", "false"))),
        "ParentCallSid": value(st.sampled_from(CALL_POOL)),
        "ErrorCode": value(st.sampled_from(("11200", "12100", "0"))),
        "ErrorUrl": value(st.just(TEST_PUBLIC_BASE + "/webhooks/voice/incoming")),
        "MessageSid": value(st.sampled_from(MESSAGE_SIDS)),
        "MessageStatus": value(st.sampled_from(MESSAGE_STATUSES)),
        "SmsSid": value(st.sampled_from(MESSAGE_SIDS)),
        "SmsStatus": value(st.sampled_from(MESSAGE_STATUSES)),
    }
    call_sids = st.one_of(st.sampled_from(CALL_POOL), st.sampled_from(CALL_POOL), junk)
    forms = st.builds(
        lambda sid, known, extra: {**({} if sid is None else {"CallSid": sid}), **known, **extra},
        st.one_of(st.none(), call_sids),
        st.fixed_dictionaries({}, optional=params),
        st.dictionaries(st.text(min_size=1, max_size=12), junk, max_size=3),
    )
    queries = {
        "t": value(st.integers(-3, 40).map(str)),
        "kind": value(st.sampled_from(("description", "voicemail"))),
        "step": value(st.integers(-1, 6).map(str)),
        "call": value(st.sampled_from(CALL_POOL)),
        "leg": value(st.integers(-1, 6).map(str)),
        "m": value(st.integers(-1, 6).map(str)),
    }
    return forms, queries


# Our own step names, and names that are not steps (URL-safe: Twilio requests our URLs).
step_names = st.one_of(
    st.sampled_from(sorted(STEPS)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=70),
)


@st.composite
def webhook_requests(
    draw: st.DrawFn, junk: st.SearchStrategy[str] = odd
) -> tuple[str, dict[str, str]]:
    """(path with query string, form) for any webhook route."""
    forms, queries = forms_and_queries(junk)
    template, query_names = draw(st.sampled_from(ROUTES))
    path = template.format(step=draw(step_names)) if "{step}" in template else template
    query = {name: draw(queries[name]) for name in query_names if draw(st.booleans())}
    if query:
        path += "?" + urlencode(query)
    return path, draw(forms)


class ErrorLog(logging.Handler):
    """Collects ERROR records of the service's loggers; those with an exception are the
    crashes a view caught and hid behind the apology."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("callcenter", "webhooks")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def post(client: FlaskClient, path: str, form: dict[str, str], headers: dict[str, str]) -> Any:
    response = client.post(path, data=form, headers=headers)
    body = response.get_data()
    response.close()  # as a WSGI server does: runs the after-response work
    return response, body


def assert_twiml(response: Any, body: bytes) -> None:
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(body)
    assert root.tag == "Response"


def check_signed_request(
    client: FlaskClient, error_log: ErrorLog, request: tuple[str, dict[str, str]]
) -> None:
    path, form = request
    headers = {"X-Twilio-Signature": signature(TEST_PUBLIC_BASE + path, form)}
    before = len(error_log.records)

    response, body = post(client, path, form, headers)

    assert response.status_code in (200, 204, 400), (response.status_code, body[:300])
    if response.status_code == 200:
        assert_twiml(response, body)
    if response.status_code == 400:
        assert body.strip() and b"Traceback" not in body, body  # says what is missing
    crashes = [
        f"{r.name}: {r.getMessage()}\n{logging.Formatter().formatException(r.exc_info)}"
        for r in error_log.records[before:]
        if r.exc_info
    ]
    assert crashes == [], "\n".join(crashes)


@FUZZ
@given(request=webhook_requests(odd))
def test_signed_webhooks_with_odd_parameters_answer_twiml_or_a_clear_400(
    client: FlaskClient, error_log: ErrorLog, request: tuple[str, dict[str, str]]
) -> None:
    check_signed_request(client, error_log, request)


@pytest.mark.both_databases  # NUL bytes: PostgreSQL refuses them
@HOSTILE
@given(request=webhook_requests(hostile))
# The two kinds of value PostgreSQL refuses, in their plainest form (SQLite stores both).
@example(request=("/webhooks/voice/incoming", {"CallSid": CALL_POOL[0], "From": "+7916\x00"}))
@example(
    request=("/webhooks/voice/status", {"CallSid": CALL_POOL[1], "CallStatus": "c" * 21}),
)
# A NUL in the query string of one of our own action URLs (decoded, it reaches the query).
@example(request=("/webhooks/voice/route/whisper/answer?call=%00&leg=1", {}))
def test_signed_webhooks_with_hostile_parameters_answer_twiml_or_a_clear_400(
    client: FlaskClient, error_log: ErrorLog, request: tuple[str, dict[str, str]]
) -> None:
    """NUL characters and values longer than any column: what a signed request can carry
    (an attacker with the token, a broken proxy), so a clear 400 or a stored event, never
    a step that crashes into the apology and an event that can never be stored."""
    check_signed_request(client, error_log, request)


@FORGED
@given(
    request=webhook_requests(hostile),
    forgery=st.sampled_from(("missing", "empty", "other-token", "other-url", "junk")),
    junk_signature=st.text(min_size=1, max_size=60).filter(lambda s: s.isprintable()),
)
def test_unsigned_or_forged_webhooks_are_refused_with_403(
    client: FlaskClient,
    request: tuple[str, dict[str, str]],
    forgery: str,
    junk_signature: str,
) -> None:
    path, form = request
    headers: dict[str, str] = {}
    if forgery == "empty":
        headers["X-Twilio-Signature"] = ""
    elif forgery == "other-token":
        headers["X-Twilio-Signature"] = signature(TEST_PUBLIC_BASE + path, form, "not-our-token")
    elif forgery == "other-url":
        headers["X-Twilio-Signature"] = signature("https://evil.example" + path, form)
    elif forgery == "junk":
        headers["X-Twilio-Signature"] = junk_signature.encode("utf-8").decode("latin-1")

    response, body = post(client, path, form, headers)

    assert response.status_code == 403, (response.status_code, body[:300])
    assert response.mimetype == "text/plain"
