"""The Twilio adapter, through the real `twilio` client.

REST calls go to Prism serving Twilio's own OpenAPI description: Prism checks each request
against the spec (a 2xx means Twilio's schema accepts it) but answers with fixed examples,
so the tests assert on the requests Twilio would have received, as seen by the adapter's
`on_exchange` hook. What Prism cannot play — recording media, Twilio's own error bodies,
outages, slowness — a small real HTTP server in the test plays instead (`StandIn`).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from callcenter.errors import (
    ConfigurationError,
    TelephonyError,
    TelephonyNotConfigured,
    TelephonyRejected,
    TelephonyUnavailable,
)
from callcenter.settings import Settings
from callcenter.telephony.client import (
    OfflineTelephony,
    TwilioExchange,
    TwilioTelephony,
    build_telephony,
    route_url,
)
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN

AUDIO = Path(__file__).parent / "fixtures" / "audio" / "silence.mp3"
ACCOUNT_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}"
RECORDING_SID = "RE" + "0123456789abcdef" * 2
RECORDING_URL = f"https://api.twilio.com{ACCOUNT_PATH}/Recordings/{RECORDING_SID}"
OUR_NUMBER = "+78126077741"
CALLER = "+79161234567"
# Prism answers every Messages create with the spec's example message.
PRISM_MESSAGE_SID = "SM" + "a" * 32


# --------------------------------------------------------------- test helpers


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    authorization: str | None


class StandIn:
    """A real HTTP server on loopback playing one scripted part of Twilio."""

    def __init__(self, answer: Callable[[Request], Response]) -> None:
        self.requests: list[Seen] = []
        self.release = threading.Event()  # lets a deliberately slow answer finish
        self._answer = answer
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        # A short poll interval: shutdown() waits for the loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _wsgi(self, environ, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        self.requests.append(
            Seen(
                request.method,
                request.path,
                dict(request.args),
                dict(request.form),
                request.headers.get("Authorization"),
            )
        )
        return self._answer(request)(environ, start_response)

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def stand_in() -> Iterator[Callable[[Callable[[Request], Response]], StandIn]]:
    started: list[StandIn] = []

    def start(answer: Callable[[Request], Response]) -> StandIn:
        server = StandIn(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def make_twilio(
    exchanges: list[TwilioExchange],
) -> Iterator[Callable[..., TwilioTelephony]]:
    built: list[TwilioTelephony] = []

    def make(base_url: str, **options: object) -> TwilioTelephony:
        options.setdefault("sms_from", OUR_NUMBER)
        telephony = TwilioTelephony(
            TEST_ACCOUNT_SID,
            TEST_AUTH_TOKEN,
            base_url,
            on_exchange=exchanges.append,
            **options,  # type: ignore[arg-type]
        )
        built.append(telephony)
        return telephony

    yield make
    for telephony in built:
        telephony.close()


def twilio_error(status: int, code: int, message: str) -> Response:
    """An error body as Twilio's REST API writes one."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(json.dumps(body), status=status, content_type="application/json")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ------------------------------------------------------------------- routing


def test_route_url_moves_only_twilio_hosts_and_keeps_path_and_query() -> None:
    from urllib.parse import urlsplit

    base = urlsplit("http://127.0.0.1:4010/mock")
    assert (
        route_url("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?Page=2", base)
        == "http://127.0.0.1:4010/mock/2010-04-01/Accounts/AC1/Calls.json?Page=2"
    )
    assert (
        route_url("https://messaging.twilio.com/v1/Services", base)
        == "http://127.0.0.1:4010/mock/v1/Services"
    )
    # Not Twilio's: left alone, whatever the name looks like.
    assert route_url("https://eviltwilio.com/x", base) == "https://eviltwilio.com/x"
    assert route_url("https://portal.example/x", base) == "https://portal.example/x"
    assert route_url("https://api.twilio.com/x", None) == "https://api.twilio.com/x"


# ----------------------------------------------------------------------- SMS


def test_send_sms_posts_what_twilio_expects_and_returns_the_message_sid(
    prism_url: str, make_twilio: Callable[..., TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    telephony = make_twilio(prism_url)
    body = "Заявка №1042 зарегистрирована. Срок решения: до 18:00 в понедельник, 1 декабря"

    sid = telephony.send_sms(CALLER, body)

    assert sid == PRISM_MESSAGE_SID
    [sent] = exchanges
    assert (sent.method, sent.path) == ("POST", f"{ACCOUNT_PATH}/Messages.json")
    assert sent.url.startswith(prism_url)
    assert sent.form == {"To": CALLER, "From": OUR_NUMBER, "Body": body}
    assert sent.auth_user == TEST_ACCOUNT_SID
    assert sent.status == 201  # valid against Twilio's spec


def test_send_sms_through_a_messaging_service(
    prism_url: str, make_twilio: Callable[..., TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    service = "MG" + "0123456789abcdef" * 2
    telephony = make_twilio(prism_url, sms_from=service)

    telephony.send_sms(CALLER, "Заявка №7 зарегистрирована.")

    [sent] = exchanges
    assert sent.form == {"To": CALLER, "MessagingServiceSid": service, "Body": sent.form["Body"]}
    assert sent.status == 201


def test_sms_without_a_recipient_is_rejected_by_twilio_with_its_reason(
    prism_url: str, make_twilio: Callable[..., TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    telephony = make_twilio(prism_url)

    with pytest.raises(TelephonyRejected) as caught:
        telephony.send_sms("  ", "Заявка №1 зарегистрирована.")

    assert caught.value.status == 422
    assert "send an SMS" in str(caught.value)
    assert "required property 'To'" in str(caught.value)
    [sent] = exchanges
    assert "To" not in sent.form and sent.status == 422


def test_sms_rejection_keeps_twilios_message_and_code(
    stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    twilio = stand_in(
        lambda request: twilio_error(
            400, 21211, "The 'To' number +79990000000 is not a valid phone number."
        )
    )
    telephony = make_twilio(twilio.url)

    with pytest.raises(TelephonyRejected) as caught:
        telephony.send_sms("+79990000000", "Заявка №1 зарегистрирована.")

    assert caught.value.status == 400
    assert caught.value.code == 21211
    assert "The 'To' number +79990000000 is not a valid phone number." in str(caught.value)
    [seen] = twilio.requests
    assert seen.path == f"{ACCOUNT_PATH}/Messages.json"
    assert seen.authorization == basic(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_twilio_overloaded_or_failing_is_transient(
    status: int, stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    twilio = stand_in(lambda request: twilio_error(status, 20429, "Too many requests"))
    telephony = make_twilio(twilio.url)

    with pytest.raises(TelephonyUnavailable, match=f"HTTP {status}"):
        telephony.send_sms(CALLER, "x")


def test_twilio_unreachable_is_transient(
    make_twilio: Callable[..., TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    telephony = make_twilio(closed)

    with pytest.raises(TelephonyUnavailable, match="could not reach Twilio to send an SMS"):
        telephony.send_sms(CALLER, "x")
    [attempt] = exchanges
    assert attempt.status is None and attempt.error


def test_twilio_too_slow_is_transient(
    stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    def slow(request: Request) -> Response:
        twilio.release.wait(timeout=10)
        return Response("{}", content_type="application/json")

    twilio = stand_in(slow)
    telephony = make_twilio(twilio.url, timeout=0.3)

    with pytest.raises(TelephonyUnavailable, match="did not answer in time"):
        telephony.send_sms(CALLER, "x")


def test_an_sms_longer_than_twilio_takes_is_refused_before_sending(
    prism_url: str, make_twilio: Callable[..., TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    telephony = make_twilio(prism_url)
    with pytest.raises(TelephonyRejected, match="1601 characters"):
        telephony.send_sms(CALLER, "я" * 1601)
    assert exchanges == []


# ---------------------------------------------------------------- recordings


def serve_audio(request: Request) -> Response:
    if request.authorization is None:
        return twilio_error(401, 20003, "Authenticate")
    if not request.path.endswith(f"/Recordings/{RECORDING_SID}.mp3"):
        return twilio_error(404, 20404, "The requested resource was not found")
    return Response(AUDIO.read_bytes(), content_type="audio/mpeg")


def test_fetch_recording_downloads_the_mp3_with_the_account_credentials(
    stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    twilio = stand_in(serve_audio)
    telephony = make_twilio(twilio.url)

    audio, content_type = telephony.fetch_recording(RECORDING_URL)

    assert audio == AUDIO.read_bytes()
    assert content_type == "audio/mpeg"
    [seen] = twilio.requests
    assert (seen.method, seen.path) == ("GET", f"{ACCOUNT_PATH}/Recordings/{RECORDING_SID}.mp3")
    assert seen.authorization == basic(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN)


def test_fetch_recording_keeps_an_explicit_format(
    stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    twilio = stand_in(serve_audio)
    telephony = make_twilio(twilio.url)

    telephony.fetch_recording(RECORDING_URL + ".mp3")

    assert [seen.path for seen in twilio.requests] == [
        f"{ACCOUNT_PATH}/Recordings/{RECORDING_SID}.mp3"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/2010-04-01/Recordings/RE1",
        "https://api.twilio.com.attacker.example/Recordings/RE1",
        "ftp://api.twilio.com/Recordings/RE1",
    ],
)
def test_fetch_recording_never_sends_credentials_elsewhere(
    url: str,
    prism_url: str,
    make_twilio: Callable[..., TwilioTelephony],
    exchanges: list[TwilioExchange],
) -> None:
    telephony = make_twilio(prism_url)
    with pytest.raises(TelephonyRejected, match="credentials not sent"):
        telephony.fetch_recording(url)
    assert exchanges == []


def test_fetch_recording_not_there_yet_is_transient(
    stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    twilio = stand_in(lambda request: twilio_error(404, 20404, "not found"))
    telephony = make_twilio(twilio.url)
    with pytest.raises(TelephonyUnavailable, match="still be processing"):
        telephony.fetch_recording(RECORDING_URL)


def test_fetch_recording_refused_keeps_twilios_reason(
    stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    twilio = stand_in(lambda request: twilio_error(401, 20003, "Authentication Error"))
    telephony = make_twilio(twilio.url)
    with pytest.raises(TelephonyRejected, match="Authentication Error") as caught:
        telephony.fetch_recording(RECORDING_URL)
    assert caught.value.status == 401


def test_fetch_recording_refuses_what_is_not_audio(
    stand_in: Callable[..., StandIn], make_twilio: Callable[..., TwilioTelephony]
) -> None:
    twilio = stand_in(lambda request: Response("<html>login</html>", content_type="text/html"))
    telephony = make_twilio(twilio.url)
    with pytest.raises(TelephonyRejected, match="'text/html', not audio"):
        telephony.fetch_recording(RECORDING_URL)


# ---------------------------------------------------------- incoming numbers

# The number in the example Twilio's spec gives for the IncomingPhoneNumbers list (which
# Prism therefore returns for any filter).
PRISM_NUMBER = "+18089255327"
PRISM_NUMBER_SID = "PN" + "a" * 32


def test_list_incoming_numbers_asks_for_the_number_and_keeps_exact_matches(
    prism_url: str, make_twilio: Callable[..., TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    telephony = make_twilio(prism_url)

    [number] = telephony.list_incoming_numbers(phone_number=PRISM_NUMBER)
    # Twilio's filter matches patterns; a different number in the answer is not ours.
    assert telephony.list_incoming_numbers(phone_number="+78002506077") == []

    assert (number.sid, number.phone_number) == (PRISM_NUMBER_SID, PRISM_NUMBER)
    assert number.voice_method == "POST"
    assert number.voice_url is None and number.status_callback is None
    assert [(e.method, e.path, e.query, e.status) for e in exchanges] == [
        ("GET", f"{ACCOUNT_PATH}/IncomingPhoneNumbers.json", {"PhoneNumber": PRISM_NUMBER}, 200),
        ("GET", f"{ACCOUNT_PATH}/IncomingPhoneNumbers.json", {"PhoneNumber": "+78002506077"}, 200),
    ]


def test_update_incoming_number_posts_the_three_urls_with_post(
    prism_url: str, make_twilio: Callable[..., TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    telephony = make_twilio(prism_url)

    telephony.update_incoming_number(
        PRISM_NUMBER_SID,
        voice_url="https://hotline.example.test/webhooks/voice/incoming",
        voice_fallback_url="https://hotline.example.test/webhooks/voice/fallback",
        status_callback="https://hotline.example.test/webhooks/voice/status",
    )

    [sent] = exchanges
    assert (sent.method, sent.path) == (
        "POST",
        f"{ACCOUNT_PATH}/IncomingPhoneNumbers/{PRISM_NUMBER_SID}.json",
    )
    assert sent.form == {
        "VoiceUrl": "https://hotline.example.test/webhooks/voice/incoming",
        "VoiceMethod": "POST",
        "VoiceFallbackUrl": "https://hotline.example.test/webhooks/voice/fallback",
        "VoiceFallbackMethod": "POST",
        "StatusCallback": "https://hotline.example.test/webhooks/voice/status",
        "StatusCallbackMethod": "POST",
    }
    assert sent.status == 200


def test_update_of_a_malformed_number_sid_is_rejected(
    prism_url: str, make_twilio: Callable[..., TwilioTelephony]
) -> None:
    telephony = make_twilio(prism_url)
    with pytest.raises(TelephonyRejected, match="PN") as caught:
        telephony.update_incoming_number(
            "PN-not-a-sid",
            voice_url="https://hotline.example.test/a",
            voice_fallback_url="https://hotline.example.test/b",
            status_callback="https://hotline.example.test/c",
        )
    assert caught.value.status == 422


# ------------------------------------------------------------ building it


def test_no_account_means_offline_telephony_that_refuses_by_name() -> None:
    telephony = build_telephony(Settings())
    assert isinstance(telephony, OfflineTelephony)

    with pytest.raises(TelephonyNotConfigured, match="^Twilio is not configured") as caught:
        telephony.send_sms(CALLER, "Заявка №1 зарегистрирована.")
    assert isinstance(caught.value, TelephonyError)
    for attempt in (
        lambda: telephony.fetch_recording(RECORDING_URL),
        lambda: telephony.list_incoming_numbers(),
    ):
        with pytest.raises(TelephonyNotConfigured):
            attempt()


def test_a_configured_account_means_the_twilio_adapter(prism_url: str) -> None:
    telephony = build_telephony(
        Settings(
            twilio_account_sid=TEST_ACCOUNT_SID,
            twilio_auth_token=TEST_AUTH_TOKEN,
            twilio_api_base_url=prism_url,
            sms_from=OUR_NUMBER,
        )
    )
    assert isinstance(telephony, TwilioTelephony)
    try:
        assert telephony.send_sms(CALLER, "Заявка №2 зарегистрирована.") == PRISM_MESSAGE_SID
    finally:
        telephony.close()
    assert TEST_AUTH_TOKEN not in repr(telephony)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"twilio_account_sid": TEST_ACCOUNT_SID}, "TWILIO_AUTH_TOKEN is not set"),
        ({"twilio_auth_token": TEST_AUTH_TOKEN}, "TWILIO_ACCOUNT_SID is not set"),
        (
            {"twilio_account_sid": "SK123", "twilio_auth_token": TEST_AUTH_TOKEN},
            "'AC' and 32 hex digits",
        ),
        (
            {
                "twilio_account_sid": TEST_ACCOUNT_SID,
                "twilio_auth_token": TEST_AUTH_TOKEN,
                "twilio_api_base_url": "127.0.0.1:4010",
            },
            "TWILIO_API_BASE_URL must be an http",
        ),
    ],
)
def test_half_configured_twilio_is_a_clear_error(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_telephony(Settings(**changes))  # type: ignore[arg-type]
