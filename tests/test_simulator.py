"""The call simulator behaves like Twilio.

Its Twilio behaviour is tested against a small real Flask app of this file that serves
fixed TwiML and checks every request's X-Twilio-Signature with the `twilio` library's
validator over the public URL (the simulator talks to 127.0.0.1 while signing the public
`https://hotline.example.test/...`, as behind a proxy). Reading the call log back is tested
against the real service (`create_app`) served over HTTP.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask, Response, request
from sqlalchemy import select
from twilio.request_validator import RequestValidator
from werkzeug.serving import BaseWSGIServer, make_server

from callcenter.access.tokens import create_token
from callcenter.calllog.query import get_call
from callcenter.calllog.serialize import call_json
from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.cli.simulate import simulate
from callcenter.clock import fixed_clock
from callcenter.db import transaction
from callcenter.db.models import (
    Call,
    Contact,
    ContactPhone,
    Organisation,
    SmsMessage,
    TicketRequest,
)
from callcenter.errors import InvalidInput, SimulationError
from callcenter.ivr import prompts
from callcenter.regulation.speech import say_digits
from callcenter.services import Services
from callcenter.simulator.script import (
    Answer,
    CallScript,
    DialResult,
    parse_answer_tokens,
    parse_dial_results,
)
from callcenter.simulator.twilio import (
    SIMULATOR_ACCOUNT_SID,
    TWILIO_APPLICATION_ERROR,
    HttpCallLog,
    Simulator,
    Transcript,
    format_call_summary,
    new_sid,
    wait_for_call,
)
from tests.conftest import (
    DEFAULT_NOW,
    TEST_AUTH_TOKEN,
    TEST_DUTY_PHONE,
    TEST_PUBLIC_BASE,
    MutableClock,
)
from tests.ticket_pipeline import serving

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
PUBLIC = TEST_PUBLIC_BASE
VOICE = "/webhooks/voice/incoming"


# ---------------------------------------------------------------- a Twilio-facing test app

Page = str | Callable[[Mapping[str, str], Mapping[str, str]], str]


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # with the query string
    form: dict[str, str]
    signature_valid: bool


class TwimlPages:
    """Fixed TwiML per path; records every request and checks its signature."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.received: list[Received] = []
        self.failing: dict[str, int] = {}
        self.validator = RequestValidator(TEST_AUTH_TOKEN)
        self.app = Flask(__name__)
        self.app.add_url_rule("/<path:path>", "any", self.serve, methods=["GET", "POST"])

    def serve(self, path: str) -> Response:
        full_path = request.full_path.rstrip("?")
        public_url = PUBLIC + full_path
        valid = self.validator.validate(
            public_url, request.form, request.headers.get("X-Twilio-Signature", "")
        )
        form = {key: request.form[key] for key in request.form}
        self.received.append(Received(request.method, full_path, form, valid))
        if not valid:
            return Response("bad signature", status=403)
        if "/" + path in self.failing:
            return Response("boom", status=self.failing["/" + path])
        page = self.pages.get("/" + path)
        if page is None:
            return Response(status=204)  # a status callback: nothing to say
        body = page(request.args, form) if callable(page) else page
        return Response(body, content_type="text/xml; charset=utf-8")

    def paths(self) -> list[str]:
        return [r.path for r in self.received]

    def form_of(self, path: str) -> dict[str, str]:
        return next(r.form for r in self.received if r.path == path)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[TwimlPages, str]]:
    pages = TwimlPages()
    http: BaseWSGIServer = make_server("127.0.0.1", 0, pages.app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield pages, f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def twiml(server: tuple[TwimlPages, str]) -> TwimlPages:
    pages, _ = server
    pages.pages.clear()
    pages.received.clear()
    pages.failing.clear()
    return pages


@pytest.fixture
def sim(server: tuple[TwimlPages, str]) -> Simulator:
    _, base = server
    return Simulator(base, TEST_AUTH_TOKEN, public_base_url=PUBLIC, clock=fixed_clock(DEFAULT_NOW))


def doc(*verbs: str) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?><Response>' + "".join(verbs) + "</Response>"


def say(text: str) -> str:
    return f'<Say voice="Polly.Tatyana" language="ru-RU">{text}</Say>'


def kinds(transcript: Transcript) -> list[str]:
    return [r.kind for r in transcript.requests]


# ---------------------------------------------------------------- the call and its Gathers


def test_a_menu_answered_by_keys_is_posted_exactly_as_twilio_would(
    twiml: TwimlPages, sim: Simulator
) -> None:
    """Gather with input="dtmf speech" and numDigits="1": the action gets Digits, FinishedOnKey
    and msg (https://www.twilio.com/docs/voice/twiml/gather#action)."""
    twiml.pages[VOICE] = doc(
        say("Здравствуйте, это техническая поддержка."),
        '<Gather input="dtmf speech" action="menu" method="POST" numDigits="1" language="ru-RU">',
        say("Новая проблема — нажмите 2."),
        "</Gather>",
        say("Мы вас не услышали."),
    )
    twiml.pages["/webhooks/voice/menu"] = lambda args, form: doc(
        say(f"Вы выбрали {form['Digits']}."), "<Hangup/>"
    )

    t = sim.run(CallScript(answers=(Answer.press("2"),)))

    assert CALL_SID.fullmatch(t.call_sid)
    assert t.heard == [
        "Здравствуйте, это техническая поддержка.",
        "Новая проблема — нажмите 2.",
        "Вы выбрали 2.",
    ]
    assert "АБОНЕНТ: нажимает 2" in t.text().splitlines()
    assert t.ended_by == "hangup" and t.errors == [] and t.warnings == []
    assert twiml.paths() == [VOICE, "/webhooks/voice/menu", "/webhooks/voice/status"]
    assert all(r.signature_valid for r in twiml.received)
    assert twiml.form_of(VOICE) == {
        "AccountSid": SIMULATOR_ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": t.call_sid,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "+79161234567",
        "Caller": "+79161234567",
        "To": "+78002506077",
        "Called": "+78002506077",
        **{f"{p}Country": "RU" for p in ("From", "Caller", "To", "Called")},
        **{
            f"{p}{g}": ""
            for p in ("From", "Caller", "To", "Called")
            for g in ("State", "City", "Zip")
        },
    }
    gathered = twiml.form_of("/webhooks/voice/menu")
    assert gathered["CallStatus"] == "in-progress"
    assert (gathered["Digits"], gathered["FinishedOnKey"], gathered["msg"]) == (
        "2",
        "",
        "Gather End",
    )
    assert gathered["CallSid"] == t.call_sid
    status = twiml.form_of("/webhooks/voice/status")
    assert status["CallStatus"] == "completed"
    assert status["CallbackSource"] == "call-progress-events"
    assert status["SequenceNumber"] == "0"
    assert int(status["CallDuration"]) == t.duration_seconds > 0
    assert status["Duration"] == "1"
    stamped = parsedate_to_datetime(status["Timestamp"])
    assert 0 < (stamped - DEFAULT_NOW).total_seconds() <= t.duration_seconds
    # Signed over the public URL, delivered to the service's own address.
    first = t.requests[0]
    assert first.url == PUBLIC + VOICE
    assert first.sent_to.startswith("http://127.0.0.1:")
    assert RequestValidator(TEST_AUTH_TOKEN).validate(first.url, first.params, first.signature)


def test_speech_the_finish_key_and_num_digits(twiml: TwimlPages, sim: Simulator) -> None:
    """The finish key ends input and is not part of Digits; numDigits ends it too, later keys
    are lost (https://www.twilio.com/docs/voice/twiml/gather#finishonkey,
    https://www.twilio.com/docs/voice/twiml/gather#numdigits)."""
    twiml.pages[VOICE] = doc(
        '<Gather input="speech" action="/vehicle" language="ru-RU">',
        say("Назовите номер машины."),
        "</Gather>",
    )
    twiml.pages["/vehicle"] = doc(
        '<Gather input="dtmf" action="/ticket" finishOnKey="#">',
        say("Номер заявки и решётка."),
        "</Gather>",
    )
    twiml.pages["/ticket"] = doc('<Gather action="/one" numDigits="1"/>')
    twiml.pages["/one"] = doc("<Hangup/>")

    t = sim.run(
        CallScript(answers=(Answer.say("А123ВС77"), Answer.press("1042#"), Answer.press("12")))
    )

    vehicle = twiml.form_of("/vehicle")
    assert (vehicle["SpeechResult"], vehicle["Confidence"]) == ("А123ВС77", "0.9")
    assert "Digits" not in vehicle
    ticket = twiml.form_of("/ticket")
    assert (ticket["Digits"], ticket["FinishedOnKey"]) == ("1042", "#")
    assert twiml.form_of("/one")["Digits"] == "1"
    assert "клавиши 2 после конца ввода не учтены" in t.text()
    assert "АБОНЕНТ: говорит «А123ВС77»" in t.text()


def test_no_input_falls_through_unless_action_on_empty_result(
    twiml: TwimlPages, sim: Simulator
) -> None:
    """No input — timeout, or only the finish key — goes on to the next verb without the
    action, unless actionOnEmptyResult="true"
    (https://www.twilio.com/docs/voice/twiml/gather#actiononemptyresult)."""
    twiml.pages[VOICE] = doc(
        '<Gather input="dtmf" action="/never">',
        say("Нажмите что-нибудь."),
        "</Gather>",
        say("Не слышу."),
        # Keys on a speech-only Gather are not heard: it times out like silence.
        '<Gather input="speech" action="/never" language="ru-RU"/>',
        say("Всё ещё не слышу."),
        '<Gather input="dtmf" action="/empty" actionOnEmptyResult="true"/>',
        say("Сюда Twilio не доходит."),
    )
    twiml.pages["/empty"] = doc(say("Соединяю со специалистом."), "<Hangup/>")

    t = sim.run(CallScript(answers=(Answer.silence(), Answer.press("5"), Answer.press("#"))))

    assert "/never" not in twiml.paths()
    assert t.heard == [
        "Нажмите что-нибудь.",
        "Не слышу.",
        "Всё ещё не слышу.",
        "Соединяю со специалистом.",
    ]
    # Only the finish key: an empty result, posted because actionOnEmptyResult is true,
    # which carries no Digits — nothing tells it from silence
    # (https://www.twilio.com/docs/voice/twiml/gather#actiononemptyresult).
    empty = twiml.form_of("/empty")
    assert "Digits" not in empty and "FinishedOnKey" not in empty
    assert empty["msg"] == "Gather End"
    assert 'клавиши не принимаются этим <Gather input="speech">' in t.text()


def test_an_exhausted_script_is_silence_and_a_document_that_runs_out_ends_the_call(
    twiml: TwimlPages, sim: Simulator
) -> None:
    twiml.pages[VOICE] = doc('<Gather action="/menu">', say("Меню."), "</Gather>", say("Пока."))

    t = sim.run(CallScript())

    assert t.heard == ["Меню.", "Пока."]
    assert t.ended_by == "ended"
    assert twiml.paths() == [VOICE, "/webhooks/voice/status"]


# ---------------------------------------------------------------- Record, Redirect, Pause


def test_a_recording_is_posted_with_its_status_callback(twiml: TwimlPages, sim: Simulator) -> None:
    """Record posts RecordingUrl/Sid/Duration and Digits (the key that ended it, "#" included,
    unlike Gather) to its action (https://www.twilio.com/docs/voice/twiml/record#finishonkey)."""
    twiml.pages[VOICE] = doc(
        say("Опишите проблему после сигнала."),
        '<Record action="/recorded" method="POST" maxLength="180" finishOnKey="#" '
        'recordingStatusCallback="/recording-status" recordingStatusCallbackMethod="POST"/>',
        say("Сюда Twilio не доходит."),
    )
    twiml.pages["/recorded"] = doc(say("Спасибо, заявка зарегистрирована."), "<Hangup/>")

    t = sim.run(CallScript(record_seconds=(25,)))

    assert twiml.paths() == [VOICE, "/recorded", "/recording-status", "/webhooks/voice/status"]
    recorded = twiml.form_of("/recorded")
    sid = recorded["RecordingSid"]
    assert re.fullmatch(r"RE[0-9a-f]{32}", sid)
    assert recorded["RecordingUrl"] == (
        f"https://api.twilio.com/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Recordings/{sid}"
    )
    assert (recorded["RecordingDuration"], recorded["Digits"]) == ("25", "#")
    callback = twiml.form_of("/recording-status")
    assert callback == {
        "AccountSid": SIMULATOR_ACCOUNT_SID,
        "CallSid": t.call_sid,
        "RecordingSid": sid,
        "RecordingUrl": recorded["RecordingUrl"],
        "RecordingStatus": "completed",
        "RecordingDuration": "25",
        "RecordingChannels": "1",
        "RecordingStartTime": callback["RecordingStartTime"],
        "RecordingSource": "RecordVerb",
    }
    assert t.heard[-1] == "Спасибо, заявка зарегистрирована."
    assert "АБОНЕНТ: говорит 25 с и нажимает #" in t.text()


def test_an_empty_recording_posts_nothing_and_falls_through(
    twiml: TwimlPages, sim: Simulator
) -> None:
    """A silent recording requests no action and goes on with the next verb
    (https://www.twilio.com/docs/voice/twiml/record#action)."""
    twiml.pages[VOICE] = doc(
        '<Record action="/recorded" recordingStatusCallback="/recording-status"/>',
        say("Вы ничего не сказали."),
    )

    t = sim.run(CallScript(record_seconds=(0,)))

    assert twiml.paths() == [VOICE, "/webhooks/voice/status"]
    assert t.heard == ["Вы ничего не сказали."]


def test_redirects_are_followed_relative_absolute_and_by_get(
    twiml: TwimlPages, sim: Simulator
) -> None:
    twiml.pages[VOICE] = doc('<Pause length="3"/>', '<Redirect method="GET">poll?n=1</Redirect>')
    twiml.pages["/webhooks/voice/poll"] = doc(
        say("Ещё секунду."), f'<Redirect method="POST">{PUBLIC}/final</Redirect>'
    )
    twiml.pages["/final"] = doc(say("Готово."), "<Hangup/>")

    t = sim.run(CallScript())

    polled = next(r for r in twiml.received if r.path.startswith("/webhooks/voice/poll"))
    assert polled.method == "GET"
    assert polled.path.startswith("/webhooks/voice/poll?n=1&")
    assert f"CallSid={t.call_sid}" in polled.path
    assert polled.signature_valid
    assert twiml.received[2].path == "/final"
    assert twiml.received[2].method == "POST"
    assert t.heard == ["Ещё секунду.", "Готово."]
    assert "пауза 3 с" in t.text()


# ---------------------------------------------------------------- Dial and whispers

LEG_EVENTS = "initiated ringing answered completed"


def whisper_page(args: Mapping[str, str], form: Mapping[str, str]) -> str:
    """Like the routing blueprint's: asked twice, then hung up (silence is no answer)."""
    gather = (
        f'<Gather input="dtmf" numDigits="1" timeout="6" '
        f'action="/whisper/answer?leg={args["leg"]}" method="POST">'
        + say("Критический сбой сервера, заявка 1042. Нажмите 1, чтобы принять звонок.")
        + "</Gather>"
    )
    return doc(gather, gather, "<Hangup/>")


def whisper_answer_page(args: Mapping[str, str], form: Mapping[str, str]) -> str:
    if form.get("Digits") == "1":
        return doc(say("Соединяю."))
    return doc("<Hangup/>")


def number(leg: int, phone: str, *, whisper: bool = True) -> str:
    url = f' url="/whisper?leg={leg}"' if whisper else ""
    return (
        f'<Number{url} statusCallback="/leg-status?leg={leg}" '
        f'statusCallbackEvent="{LEG_EVENTS}">{phone}</Number>'
    )


def chain_page(args: Mapping[str, str], form: Mapping[str, str]) -> str:
    """One leg at a time, three steps, then a goodbye."""
    step = int(args.get("step", "0")) + 1
    if step > 3:
        return doc(say("Никто не ответил. Оставьте сообщение."), "<Hangup/>")
    return doc(
        f'<Dial action="/dial?step={step}" timeout="20">',
        number(step, f"+7999000000{step}"),
        "</Dial>",
    )


@pytest.fixture
def routing(twiml: TwimlPages) -> TwimlPages:
    twiml.pages[VOICE] = chain_page
    twiml.pages["/dial"] = chain_page
    twiml.pages["/whisper"] = whisper_page
    twiml.pages["/whisper/answer"] = whisper_answer_page
    return twiml


def dial_actions(twiml: TwimlPages) -> list[tuple[str, str, str]]:
    return [
        (r.form["DialCallStatus"], r.form["DialBridged"], r.form["DialCallDuration"])
        for r in twiml.received
        if r.path.startswith("/dial")
    ]


def leg_statuses(twiml: TwimlPages, leg: int) -> list[tuple[str, str]]:
    return [
        (r.form["CallStatus"], r.form["SequenceNumber"])
        for r in twiml.received
        if r.path == f"/leg-status?leg={leg}"
    ]


def test_the_first_leg_accepts_after_the_whisper(routing: TwimlPages, sim: Simulator) -> None:
    """Dial action with DialCallStatus/DialCallSid/DialCallDuration/DialBridged
    (https://www.twilio.com/docs/voice/twiml/dial#action); the Number url whisper runs on the
    answered leg before the parties are connected, with its statusCallbackEvent events
    (https://www.twilio.com/docs/voice/twiml/number#url)."""
    t = sim.run(CallScript(dial_results=("accepted",), talk_seconds=60))

    assert routing.paths()[:8] == [
        VOICE,
        "/leg-status?leg=1",
        "/leg-status?leg=1",
        "/leg-status?leg=1",
        "/whisper?leg=1",
        "/whisper/answer?leg=1",
        "/leg-status?leg=1",
        "/dial?step=1",
    ]
    assert all(r.signature_valid for r in routing.received)
    assert leg_statuses(routing, 1) == [
        ("initiated", "0"),
        ("ringing", "1"),
        ("in-progress", "2"),
        ("completed", "3"),
    ]
    whisper = routing.form_of("/whisper?leg=1")
    child = whisper["CallSid"]
    assert CALL_SID.fullmatch(child) and child != t.call_sid
    assert whisper["ParentCallSid"] == t.call_sid
    assert (whisper["Direction"], whisper["CallStatus"]) == ("outbound-dial", "in-progress")
    assert (whisper["To"], whisper["Called"], whisper["From"]) == (
        "+79990000001",
        "+79990000001",
        "+79161234567",
    )
    assert routing.form_of("/whisper/answer?leg=1")["Digits"] == "1"
    completed = [r.form for r in routing.received if r.path == "/leg-status?leg=1"][-1]
    assert completed["CallSid"] == child
    assert completed["CallbackSource"] == "call-progress-events"
    assert int(completed["CallDuration"]) >= 60
    dial = routing.form_of("/dial?step=1")
    assert (dial["DialCallStatus"], dial["DialCallSid"], dial["DialBridged"]) == (
        "completed",
        child,
        "true",
    )
    assert int(dial["DialCallDuration"]) >= 60
    assert dial["CallSid"] == t.call_sid
    text = t.text()
    assert "ШЁПОТ СОТРУДНИКУ (+79990000001): Критический сбой сервера, заявка 1042." in text
    assert "СОТРУДНИК (+79990000001): нажимает 1" in text
    assert "СОЕДИНЕНО с +79990000001: разговор 60 с" in text


def test_no_answer_then_a_voicemail_then_accepted(routing: TwimlPages, sim: Simulator) -> None:
    t = sim.run(CallScript(dial_results=parse_dial_results("no-answer,voicemail,accepted")))

    statuses = dial_actions(routing)
    assert statuses[0] == ("no-answer", "false", "0")
    # The voicemail answers, hears the whisper twice, never presses 1: not bridged.
    assert statuses[1][:2] == ("completed", "false")
    assert statuses[2][:2] == ("completed", "true")
    assert leg_statuses(routing, 1) == [("initiated", "0"), ("ringing", "1"), ("no-answer", "2")]
    assert [s for s, _ in leg_statuses(routing, 2)] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert "/whisper?leg=1" not in routing.paths()
    assert "/whisper/answer?leg=2" not in routing.paths()
    assert "/whisper/answer?leg=3" in routing.paths()
    assert t.text().count("СОТРУДНИК (+79990000002): молчит") == 2


def test_declined_busy_and_failed_legs(routing: TwimlPages, sim: Simulator) -> None:
    t = sim.run(CallScript(dial_results=("declined", "busy", "failed")))

    assert [s for s, _, _ in dial_actions(routing)] == ["completed", "busy", "failed"]
    assert dial_actions(routing)[0][1] == "false"
    # Declined: answered, heard the whisper, put the phone down — no key press posted.
    assert "/whisper?leg=1" in routing.paths()
    assert "/whisper/answer?leg=1" not in routing.paths()
    assert "/whisper?leg=2" not in routing.paths()
    assert [s for s, _ in leg_statuses(routing, 2)] == ["initiated", "ringing", "busy"]
    # A failed number never rings.
    assert [s for s, _ in leg_statuses(routing, 3)] == ["initiated", "failed"]
    assert t.heard[-1] == "Никто не ответил. Оставьте сообщение."
    assert "СОТРУДНИК (+79990000001): кладёт трубку" in t.text()


def test_numbers_dialled_together_the_first_to_answer_wins(
    twiml: TwimlPages, sim: Simulator
) -> None:
    twiml.pages[VOICE] = doc(
        '<Dial action="/dial" timeout="20">',
        number(1, "+79990000001"),
        number(2, "+79990000002"),
        number(3, "+79990000003"),
        "</Dial>",
    )
    twiml.pages["/dial"] = doc("<Hangup/>")
    twiml.pages["/whisper"] = whisper_page
    twiml.pages["/whisper/answer"] = whisper_answer_page

    sim.run(CallScript(dial_results=("no-answer", "busy", "accepted")))

    assert [s for s, _ in leg_statuses(twiml, 1)][-1] == "canceled"
    assert [s for s, _ in leg_statuses(twiml, 2)][-1] == "busy"
    assert [s for s, _ in leg_statuses(twiml, 3)][-1] == "completed"
    winner = twiml.form_of("/whisper?leg=3")["CallSid"]
    dial = twiml.form_of("/dial")
    assert (dial["DialCallStatus"], dial["DialCallSid"], dial["DialBridged"]) == (
        "completed",
        winner,
        "true",
    )


def test_a_whisper_that_does_not_hang_up_connects_even_a_voicemail(
    twiml: TwimlPages, sim: Simulator
) -> None:
    """A whisper that ends without <Hangup> connects the call
    (https://www.twilio.com/docs/voice/twiml/number#url)."""
    twiml.pages[VOICE] = doc(
        '<Dial action="/dial">', '<Number url="/careless">+79990000001</Number>', "</Dial>"
    )
    twiml.pages["/careless"] = doc(
        '<Gather numDigits="1" action="/never">', say("Нажмите 1."), "</Gather>"
    )
    twiml.pages["/dial"] = doc("<Hangup/>")

    sim.run(CallScript(dial_results=("voicemail",)))

    assert twiml.form_of("/dial")["DialBridged"] == "true"
    assert "/never" not in twiml.paths()


def test_a_plain_dial_without_action_goes_on_with_the_document(
    twiml: TwimlPages, sim: Simulator
) -> None:
    twiml.pages[VOICE] = doc("<Dial>+78126077741</Dial>", say("Спасибо, до свидания."))

    t = sim.run(CallScript(dial_results=("no-answer",)))

    assert twiml.paths() == [VOICE, "/webhooks/voice/status"]
    assert t.heard == ["Спасибо, до свидания."]
    assert "итог набора: DialCallStatus=no-answer" in t.text()


# ---------------------------------------------------------------- hang-ups


def test_the_caller_hangs_up_at_the_first_question_after_n_requests(
    twiml: TwimlPages, sim: Simulator
) -> None:
    twiml.pages[VOICE] = doc('<Gather action="/menu">', say("Меню."), "</Gather>")
    twiml.pages["/menu"] = doc('<Gather action="/topic">', say("Тема."), "</Gather>")

    t = sim.run(CallScript(answers=(Answer.press("2"), Answer.press("1")), hangup_after=2))

    assert twiml.paths() == [VOICE, "/menu", "/webhooks/voice/status"]
    assert t.ended_by == "caller-hangup"
    assert t.text().splitlines()[-2:-1] == ["АБОНЕНТ: кладёт трубку"]
    assert twiml.form_of("/webhooks/voice/status")["CallStatus"] == "completed"


def test_hanging_up_while_recording_still_posts_the_recording(
    twiml: TwimlPages, sim: Simulator
) -> None:
    twiml.pages[VOICE] = doc('<Gather action="/menu">', say("Меню."), "</Gather>")
    twiml.pages["/menu"] = doc(
        '<Record action="/recorded" recordingStatusCallback="/recording-status"/>'
    )
    twiml.pages["/recorded"] = doc(say("Этого никто не услышит."))

    t = sim.run(
        CallScript(answers=parse_answer_tokens(["--press", "2", "--hangup"]), record_seconds=(7,))
    )

    assert twiml.paths() == [
        VOICE,
        "/menu",
        "/recorded",
        "/recording-status",
        "/webhooks/voice/status",
    ]
    recorded = twiml.form_of("/recorded")
    assert (recorded["Digits"], recorded["CallStatus"], recorded["RecordingDuration"]) == (
        "hangup",
        "completed",
        "7",
    )
    assert "Этого никто не услышит." not in t.heard


def test_hanging_up_while_the_dial_rings_cancels_the_legs(
    routing: TwimlPages, sim: Simulator
) -> None:
    sim.run(CallScript(answers=(Answer.hangup(),)))

    assert leg_statuses(routing, 1)[-1][0] == "canceled"
    dial = routing.form_of("/dial?step=1")
    assert (dial["DialCallStatus"], dial["CallStatus"]) == ("canceled", "completed")
    assert routing.paths()[-1] == "/webhooks/voice/status"
    assert "/dial?step=2" not in [p.split("&")[0] for p in routing.paths()]


# ---------------------------------------------------------------- when the service fails


def test_an_error_is_an_apology_then_the_status_callback(twiml: TwimlPages, sim: Simulator) -> None:
    twiml.pages[VOICE] = doc('<Gather action="/menu">', say("Меню."), "</Gather>")
    twiml.failing["/menu"] = 500

    t = sim.run(CallScript(answers=(Answer.press("2"),)))

    assert t.errors == [f"gather POST {PUBLIC}/menu answered 500"]
    assert t.heard == ["Меню.", TWILIO_APPLICATION_ERROR]
    assert t.ended_by == "error"
    assert twiml.paths()[-1] == "/webhooks/voice/status"


def test_a_failing_voice_url_falls_back(twiml: TwimlPages, sim: Simulator) -> None:
    twiml.failing[VOICE] = 503
    twiml.pages["/webhooks/voice/fallback"] = doc(
        say("Извините, соединяю с дежурным."), "<Hangup/>"
    )

    t = sim.run(CallScript())

    fallback = twiml.form_of("/webhooks/voice/fallback")
    assert (fallback["ErrorCode"], fallback["ErrorUrl"]) == ("11200", PUBLIC + VOICE)
    assert t.heard == ["Извините, соединяю с дежурным."]
    assert len(t.errors) == 1


def test_a_wrong_auth_token_is_refused_and_explained(
    twiml: TwimlPages, server: tuple[TwimlPages, str]
) -> None:
    twiml.pages[VOICE] = doc(say("Здравствуйте."))
    forged = Simulator(server[1], "not-the-token", public_base_url=PUBLIC)

    t = forged.run(CallScript())

    assert [r.signature_valid for r in twiml.received] == [False, False, False]
    assert "refused the Twilio signature" in t.errors[0]
    assert t.heard == [TWILIO_APPLICATION_ERROR]


def test_an_answer_that_is_not_twiml(twiml: TwimlPages, sim: Simulator) -> None:
    twiml.pages[VOICE] = "<html>Hello</html"

    t = sim.run(CallScript())

    assert "the answer is not TwiML" in t.errors[0]


def test_a_service_that_is_not_running_is_a_clear_error() -> None:
    sim = Simulator("http://127.0.0.1:9", TEST_AUTH_TOKEN)
    with pytest.raises(SimulationError, match="is `callcenter serve` running"):
        sim.run(CallScript())


# ---------------------------------------------------------------- the script


def test_answer_words_keep_their_typed_order() -> None:
    tokens = ["--press", "2", "1", "--say", "А123ВС77", "--press=#", "--silence", "--hangup"]
    assert parse_answer_tokens(tokens) == (
        Answer.press("2"),
        Answer.press("1"),
        Answer.say("А123ВС77"),
        Answer.press("#"),
        Answer.silence(),
        Answer.hangup(),
    )
    assert parse_answer_tokens(["--answers", "3", "#", "А 123", "-", "hangup"]) == (
        Answer.press("3"),
        Answer.press("#"),
        Answer.say("А 123"),
        Answer.silence(),
        Answer.hangup(),
    )
    for bad in (["2"], ["--press", "x"], ["--pres", "2"], ["--silence", "3"]):
        with pytest.raises(InvalidInput):
            parse_answer_tokens(bad)
    with pytest.raises(InvalidInput, match="one of accepted"):
        parse_dial_results("accepted,maybe")
    results: tuple[DialResult, ...] = parse_dial_results("No_Answer, busy")
    assert results == ("no-answer", "busy")


# ---------------------------------------------------------------- the call log


@pytest.fixture
def service(services: Services) -> Iterator[str]:
    with serving(services) as url:
        yield url


def test_the_call_record_is_read_from_the_api_with_a_token(
    services: Services, service: str
) -> None:
    with transaction(services.sessions) as session:
        token = create_token(session, "simulator", now=DEFAULT_NOW).secret
        call = Call(
            call_sid="CA" + "1" * 32,
            line="+78002506077",
            caller_raw="+79161234567",
            caller_e164="+79161234567",
            category="incident",
            topic="data_update",
            started_at=DEFAULT_NOW,
            updated_at=DEFAULT_NOW,
            outcome="completed",
        )
        session.add(call)
        session.flush()
        session.add(
            TicketRequest(
                call_id=call.id,
                idempotency_key=call.call_sid,
                draft={},
                status="done",
                ticket_number="1042",
                created_at=DEFAULT_NOW,
                updated_at=DEFAULT_NOW,
            )
        )

    fetched = HttpCallLog(service, token).fetch("CA" + "1" * 32)

    with services.sessions() as session:
        found = get_call(session, "CA" + "1" * 32)
        assert found is not None
        # One call's record also says who was rung and texted (nobody, here).
        expected = {
            **call_json(found, lines=services.settings.lines),
            "alerts": {"calls": [], "sms": []},
        }
        assert fetched == expected
    assert fetched is not None
    assert "  заявка № 1042 (done)" in format_call_summary(fetched)
    assert HttpCallLog(service, token).fetch("CAunknown") is None
    with pytest.raises(SimulationError, match="refused the API token"):
        HttpCallLog(service, "cc_wrong").fetch("CA" + "1" * 32)


def test_waiting_for_the_ticket_polls_until_it_is_no_longer_pending() -> None:
    states = iter(["pending", "pending", "done"])
    now = [0.0]
    slept: list[float] = []

    class Log:
        def fetch(self, call_sid: str) -> dict[str, Any] | None:
            return {"call_sid": call_sid, "ticket_state": next(states)}

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    call = wait_for_call(Log(), "CA1", wait_seconds=5, sleep=sleep, monotonic=lambda: now[0])
    assert call == {"call_sid": "CA1", "ticket_state": "done"}
    assert slept == [0.2, 0.2]

    stuck = iter(["pending"] * 100)

    class Stuck:
        def fetch(self, call_sid: str) -> dict[str, Any] | None:
            return {"ticket_state": next(stuck)}

    now[0] = 0.0
    late = wait_for_call(Stuck(), "CA1", wait_seconds=1, sleep=sleep, monotonic=lambda: now[0])
    assert late == {"ticket_state": "pending"}
    assert now[0] == pytest.approx(1.0)


def test_the_command_prints_the_conversation_and_explains_the_missing_record(
    twiml: TwimlPages, server: tuple[TwimlPages, str], services: Services
) -> None:
    twiml.pages[VOICE] = doc('<Gather action="/menu">', say("Меню."), "</Gather>")
    twiml.pages["/menu"] = lambda args, form: doc(say(f"Вы нажали {form['Digits']}."), "<Hangup/>")

    result = CliRunner().invoke(
        simulate,
        [
            "--url",
            server[1],
            "--public-url",
            PUBLIC,
            "--auth-token",
            TEST_AUTH_TOKEN,
            "--press",
            "7",
            "--wait",
            "0",
            "--show-requests",
        ],
        obj=CliContext(services),
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "АВТООТВЕТЧИК: Меню." in lines
    assert "АБОНЕНТ: нажимает 7" in lines
    assert "АВТООТВЕТЧИК: Вы нажали 7." in lines
    assert f"  200 POST {PUBLIC}/menu [gather]" in lines
    assert "      Digits=7" in lines
    assert "callcenter token create" in result.stderr
    assert all(r.signature_valid for r in twiml.received)


def test_the_command_fails_loudly_when_the_service_does(
    twiml: TwimlPages, server: tuple[TwimlPages, str], services: Services
) -> None:
    twiml.failing[VOICE] = 500
    twiml.failing["/webhooks/voice/fallback"] = 500

    result = CliRunner().invoke(
        simulate,
        [
            "--url",
            server[1],
            "--public-url",
            PUBLIC,
            "--auth-token",
            TEST_AUTH_TOKEN,
            "--wait",
            "0",
        ],
        obj=CliContext(services),
    )

    assert result.exit_code == 1
    assert "the service failed 2 time(s)" in result.output
    assert f"АВТООТВЕТЧИК: {TWILIO_APPLICATION_ERROR}" in result.output


def test_timestamps_follow_the_virtual_call_clock(twiml: TwimlPages, sim: Simulator) -> None:
    twiml.pages[VOICE] = doc('<Pause length="30"/>', "<Hangup/>")

    t = sim.run(CallScript())

    status = twiml.form_of("/webhooks/voice/status")
    assert parsedate_to_datetime(status["Timestamp"]) == datetime(
        2025, 11, 27, 8, 0, 30, tzinfo=UTC
    )
    assert status["CallDuration"] == "30" == str(t.duration_seconds)


# ---------------------------------------------------------------- end to end, the real IVR


@pytest.fixture
def live(make_services: Callable[..., Services], prism_url: str) -> Iterator[tuple[Services, str]]:
    """The whole service with in-process jobs and the built-in portal; SMS go to Prism."""
    # A loaded CI machine may take longer than the 8 s a caller waits; these tests check
    # what is said once the number exists, not how fast the pipeline is.
    svc = make_services(twilio_api_base_url=prism_url, ticket_wait_seconds=30)
    with transaction(svc.sessions) as session:
        org = Organisation(name="ООО «Ромашка»", created_at=DEFAULT_NOW)
        contact = Contact(name="Иван Петров", organisation=org, created_at=DEFAULT_NOW)
        contact.phones.append(ContactPhone(e164="+79161234567"))
        session.add_all([org, contact])
    with serving(svc) as url:
        yield svc, url


def live_simulator(url: str) -> Simulator:
    return Simulator(url, TEST_AUTH_TOKEN, public_base_url=PUBLIC, clock=fixed_clock(DEFAULT_NOW))


def api_reader(svc: Services, url: str) -> HttpCallLog:
    with transaction(svc.sessions) as session:
        return HttpCallLog(url, create_token(session, new_sid("tk"), now=DEFAULT_NOW).secret)


def test_end_to_end_a_new_problem_becomes_a_ticket_said_to_the_caller(
    live: tuple[Services, str],
) -> None:
    svc, url = live
    script = CallScript(
        answers=parse_answer_tokens(["--press", "2", "3", "1", "--say", "А123ВС77"]),
        record_seconds=(20,),
    )

    t = live_simulator(url).run(script, call_log=api_reader(svc, url))

    assert t.errors == [] and t.warnings == []
    assert all(r.status in (200, 204) for r in t.requests)
    call = t.call
    assert call is not None
    assert call["category"] == "incident"
    assert (call["topic"], call["product"], call["vehicles"]) == (
        "data_update",
        "studio",
        ["А123ВС77"],
    )
    assert call["ticket_state"] == "done"
    number = call["ticket_number"]
    assert number
    assert any(f"Номер заявки: {say_digits(number)}" in heard for heard in t.heard)
    assert call["contact"]["name"] == "Иван Петров"
    assert call["organisation"]["name"] == "ООО «Ромашка»"
    assert call["recording"]["duration"] == 20
    assert call["recording"]["sid"] == t.requests_of("record")[0].params["RecordingSid"]
    assert call["outcome"] == "completed"
    assert call["duration_seconds"] == t.duration_seconds
    assert [e["digits"] for e in call["events"] if e["digits"]][:3] == ["2", "3", "1"]
    assert any(e["speech"] == "А123ВС77" for e in call["events"])


def test_end_to_end_a_hang_up_mid_flow_still_opens_an_interrupted_ticket(
    live: tuple[Services, str],
) -> None:
    svc, url = live
    script = CallScript(answers=parse_answer_tokens(["--press", "2", "3", "--hangup"]))

    t = live_simulator(url).run(script, call_log=api_reader(svc, url))

    assert t.ended_by == "caller-hangup" and t.errors == []
    assert t.requests[-1].kind == "status"
    call = t.call
    assert call is not None
    assert (call["category"], call["topic"], call["outcome"]) == (
        "incident",
        "data_update",
        "interrupted",
    )
    assert call["interrupted"] is True
    assert call["ticket_number"] and call["ticket_state"] == "done"


def test_end_to_end_a_critical_failure_rings_the_duty_phone_and_plays_each_reaction(
    live: tuple[Services, str],
) -> None:
    svc, url = live
    reader = api_reader(svc, url)
    press_3 = parse_answer_tokens(["--press", "3", "#"])

    # Nobody on the roster: the duty phone; its voicemail answers and never presses 1.
    missed = live_simulator(url).run(
        CallScript(answers=press_3, dial_results=("voicemail",)), call_log=reader
    )
    taken = live_simulator(url).run(
        CallScript(answers=press_3, dial_results=("accepted",)), call_log=reader
    )

    assert missed.errors == [] and taken.errors == []
    assert f"ШЁПОТ СОТРУДНИКУ ({TEST_DUTY_PHONE})" in missed.text()
    assert {r.params["DialBridged"] for r in missed.requests_of("dial-action")} == {"false"}
    assert missed.call is not None and taken.call is not None
    assert missed.call["category"] == taken.call["category"] == "critical"
    assert missed.call["urgent_unanswered"] is True
    assert missed.call["ticket_number"]
    assert all(leg["result"] != "accepted" for leg in missed.call["legs"])
    assert [r.params["DialBridged"] for r in taken.requests_of("dial-action")] == ["true"]
    assert taken.call["urgent_unanswered"] is False
    assert taken.call["legs"][-1]["result"] == "accepted"


def test_end_to_end_an_empty_roster_without_a_duty_phone_takes_a_voicemail(
    make_services: Callable[..., Services], prism_url: str
) -> None:
    """Nobody on the roster and no DUTY_PHONE: nothing is dialled (no number of our own
    lines, no dead end); the caller hears so, leaves a message, and the call is flagged
    with its ticket (the critical one, or a consultation's callback) and the voicemail."""
    svc = make_services(twilio_api_base_url=prism_url, ticket_wait_seconds=30, duty_phone=None)
    with serving(svc) as url:
        reader = api_reader(svc, url)
        critical = live_simulator(url).run(
            CallScript(answers=parse_answer_tokens(["--press", "3", "--silence"])),
            call_log=reader,
        )
        # Another caller: the critical caller's open ticket would be offered first.
        consultation = live_simulator(url).run(
            CallScript(answers=parse_answer_tokens(["--press", "1"]), from_number="+79031112233"),
            call_log=reader,
        )

    for t in (critical, consultation):
        assert t.errors == []
        assert t.requests_of("dial-action") == [] and t.requests_of("whisper") == []
        assert any("сейчас нет свободного специалиста" in heard for heard in t.heard)
        assert any("После сигнала оставьте, пожалуйста, сообщение" in h for h in t.heard)
        assert t.call is not None
        assert t.call["flagged"] is True
        assert "DUTY_PHONE не задан" in t.call["flag_reason"]
        assert t.call["ticket_state"] == "done" and t.call["ticket_number"]
        assert t.call["recording"] is not None  # the voicemail, attached to the ticket
        assert t.call["legs"] == []
    assert critical.call is not None and critical.call["category"] == "critical"
    assert consultation.call is not None and consultation.call["topic"] == "consultation"


def kb_sms(svc: Services, call_sid: str, timeout: float = 10.0) -> SmsMessage:
    """The knowledge base SMS of the call, once its job has settled it (sent or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with svc.sessions() as session:
            row = session.scalars(
                select(SmsMessage).where(SmsMessage.key == f"kb-link:{call_sid}")
            ).one_or_none()
            if row is not None and row.status != "sending":
                return row
        time.sleep(0.05)
    raise AssertionError(f"no knowledge base SMS for {call_sid}")


def test_end_to_end_a_consultation_offers_the_knowledge_base_by_sms(
    live: tuple[Services, str],
) -> None:
    """Regulation §VII: once a specialist answered, or when nobody was free, the caller
    may have the knowledge base's link by SMS (1). Sent through the keyed SMS path; the
    caller is told only that it was queued."""
    svc, url = live
    answered = live_simulator(url).run(
        CallScript(answers=parse_answer_tokens(["--press", "1", "1"]), dial_results=("accepted",))
    )
    nobody = live_simulator(url).run(
        CallScript(
            answers=parse_answer_tokens(["--press", "1", "--silence"]),
            dial_results=("no-answer",),
        )
    )

    assert answered.errors == [] and nobody.errors == []
    assert prompts.KB_OFFER in answered.heard
    assert answered.heard[-1] == prompts.KB_LINK_QUEUED
    sms = kb_sms(svc, answered.call_sid)
    assert (sms.status, sms.to) == ("sent", "+79161234567")
    assert "https://kb.skai.online/" in sms.body
    # Nobody free: the offer follows the voicemail; silence is a plain goodbye, no SMS.
    assert prompts.KB_OFFER in nobody.heard
    assert nobody.heard[-1] == prompts.ROUTING_MESSAGE_THANKS


def test_status_callbacks_may_come_late_and_out_of_order(
    routing: TwimlPages, sim: Simulator
) -> None:
    """Status callbacks are asynchronous: only SequenceNumber orders them
    (https://www.twilio.com/docs/voice/api/call-resource#statuscallback). With
    `late_callbacks` a leg's events arrive after the Dial action, newest first."""
    sim.run(CallScript(dial_results=("accepted",), late_callbacks=True))

    paths = routing.paths()
    assert paths.index("/dial?step=1") < paths.index("/leg-status?leg=1")
    assert leg_statuses(routing, 1) == [
        ("completed", "3"),
        ("in-progress", "2"),
        ("ringing", "1"),
        ("initiated", "0"),
    ]


def test_the_speech_before_the_first_ring_and_before_the_caller_could_act(
    twiml: TwimlPages, sim: Simulator
) -> None:
    twiml.pages[VOICE] = doc(
        say("Двенадцать букв"),  # 15 characters nobody can interrupt
        '<Gather numDigits="1" action="/go">',
        say("Нажмите 1."),
        "</Gather>",
    )
    twiml.pages["/go"] = doc(
        say("Соединяю."), '<Dial timeout="5"><Number>+79990000001</Number></Dial>'
    )

    t = sim.run(CallScript(answers=(Answer.press("1"),), dial_results=("no-answer",)))

    assert t.speech.before_ring == len("Двенадцать букв") + len("Нажмите 1.") + len("Соединяю.")
    assert t.speech.blind == [len("Двенадцать букв"), len("Соединяю.")]
    assert "до первого гудка: 34 символов" in "\n".join(t.speech.summary())


def test_end_to_end_a_night_critical_call_reaches_the_first_ring_in_under_450_characters(
    live: tuple[Services, str], clock: MutableClock
) -> None:
    """Pressing 3, then nothing, at night: greeting, hours notice, menu, the ticket-number
    question and "connecting" — under 450 characters before the first ring, printed in the
    command's summary."""
    svc, url = live
    clock.now = datetime.fromisoformat("2025-11-27T02:30:00+03:00")

    result = CliRunner().invoke(
        simulate,
        ["--url", url, "--public-url", PUBLIC, "--auth-token", TEST_AUTH_TOKEN]
        + ["--press", "3", "--silence", "--dial-result", "accepted", "--wait", "0"],
        obj=CliContext(svc),
    )

    assert result.exit_code == 0, result.output
    heard = [line for line in result.stdout.splitlines() if line.startswith("АВТООТВЕТЧИК")]
    assert any("Настройка — в четверг, двадцать седьмого ноября" in line for line in heard)
    [figure] = re.findall(r"до первого гудка: (\d+) символов", result.stdout)
    assert int(figure) < 450
    assert "речь, когда ответить было нельзя:" in result.stdout
    # The caller never heard "Извините" (no re-prompt) before the ring.
    before_ring = result.stdout.split("набор")[0]
    assert "Извините" not in before_ring


def test_end_to_end_an_incident_from_declaration_to_the_resolution_sms(
    live: tuple[Services, str], make_services: Callable[..., Services], prism_url: str
) -> None:
    """The README's quick start: declared on the command line, joined by a simulated
    caller with --incident, closed — and the joined caller's resolution SMS goes out."""
    svc, url = live

    def run(*args: str) -> str:
        # Each command its own process's wiring, as on the command line.
        command = make_services(twilio_api_base_url=prism_url)
        result = CliRunner().invoke(main, list(args), obj=CliContext(command))
        assert result.exit_code == 0, result.output
        return result.output

    refused = CliRunner().invoke(
        simulate, ["--url", url, "--public-url", PUBLIC, "--incident"], obj=CliContext(svc)
    )
    assert refused.exit_code == 2 and "no open incident" in refused.output

    opened = run("incident", "open", "--product", "online", "--message", "Карта не грузится")
    number = re.search(r"ticket №(\d+)", opened)
    assert number, opened
    result = CliRunner().invoke(
        simulate,
        ["--url", url, "--public-url", PUBLIC, "--auth-token", TEST_AUTH_TOKEN, "--incident"],
        obj=CliContext(svc),
    )
    assert result.exit_code == 0, result.output
    assert "Нам известно о сбое СКАЙ Онлайн" in result.stdout
    assert "АБОНЕНТ: нажимает 1" in result.stdout
    assert f"Ваш звонок зарегистрирован по заявке номер {say_digits(number[1])}." in result.stdout

    closed = run("--unmasked", "incident", "close", "1", "--message", "Карта работает.")
    assert "resolution SMS to +79161234567: sent" in closed
