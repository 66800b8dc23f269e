"""On-duty routing through the real webhooks, signed as Twilio signs them.

Each test plays Twilio's side of a call the IVR has handed over: it follows the URLs in
our TwiML (the Dial action, each `<Number url>` whisper and its `<Gather>` action, each
`<Number statusCallback>`, the `<Record>` action) with Twilio's parameters, and asserts the
exact TwiML, the `DialLeg` rows and the call row. SMS go through the real `twilio` client to
Prism serving Twilio's OpenAPI description; tickets to the built-in portal.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.app import create_app
from callcenter.calls.store import get_or_create_call
from callcenter.db import transaction
from callcenter.db.models import (
    Call,
    CallEvent,
    Contact,
    ContactPhone,
    DialLeg,
    Organisation,
    SmsMessage,
    Ticket,
    TicketRequest,
)
from callcenter.regulation.speech import say_digits
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.settings import LOCAL_SIGNING_TOKEN
from callcenter.tickets import outbox
from callcenter.tickets.intake import open_ticket_request
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE, MutableClock
from tests.twilio_requests import TwilioCall, fixture, signed_post

ROSTER = Path(__file__).parent / "fixtures" / "roster" / "office.yaml"
BASE = TEST_PUBLIC_BASE + "/webhooks/voice/route"
CALLER = "+79161234567"
HOTLINE = "+78002506077"
EVENTS = "initiated ringing answered completed"
SAY = {"language": "ru-RU", "voice": "Polly.Tatyana"}

IVANOV, PETROVA, PETROVA_DESK, SIDOROV, SMIRNOVA = (
    "+79123456701",
    "+79123456702",
    "+78126077750",
    "+79123456703",
    "+79123456709",
)


# ---------------------------------------------------------------- set-up


@pytest.fixture
def routed(make_services: Any, prism_url: str) -> Services:
    """Services whose Twilio REST calls (SMS) go to Prism."""
    services: Services = make_services(twilio_api_base_url=prism_url)
    return services


@pytest.fixture
def client(routed: Services) -> Iterator[FlaskClient]:
    app = create_app(services=routed)
    app.config.update(TESTING=True)
    yield app.test_client()


def load_roster(services: Services) -> None:
    with transaction(services.sessions) as session:
        import_roster(session, ROSTER.read_text(encoding="utf-8"))


def handed_over_call(services: Services, *, category: str, topic: str | None) -> tuple[str, str]:
    """A call as the IVR leaves it when it redirects to routing: a known caller of
    ООО Ромашка and, for an urgent path, its ticket already made by the pipeline.
    Returns (CallSid, ticket number or "")."""
    sid = "CA" + uuid.uuid4().hex
    now = services.clock()
    with transaction(services.sessions) as session:
        if session.scalars(select(ContactPhone).where(ContactPhone.e164 == CALLER)).first() is None:
            org = Organisation(name="ООО Ромашка", topic_days={}, created_at=now)
            contact = Contact(name="Петров Олег", organisation=org, created_at=now)
            contact.phones.append(ContactPhone(e164=CALLER))
            session.add(contact)
            session.flush()
        call, _ = get_or_create_call(session, sid, now=now, caller_raw=CALLER, line_raw=HOTLINE)
        call.category = category
        call.topic = topic
        request_id = (
            open_ticket_request(session, call, now=now, calendar=services.calendar).id
            if topic
            else None
        )
    if request_id is None:
        return sid, ""
    delivery = outbox.deliver(services.sessions, services.portal, request_id, clock=services.clock)
    assert delivery.ticket_number
    return sid, delivery.ticket_number


# ---------------------------------------------------------------- Twilio's side


def tree(response: Any) -> list[Any]:
    """The TwiML as nested tuples: (tag, attributes, text) or (tag, attributes, [children])."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(response.get_data())
    assert root.tag == "Response"
    return [_node(child) for child in root]


def _node(element: ET.Element) -> tuple[Any, ...]:
    children = [_node(child) for child in element]
    return (element.tag, dict(element.attrib), children or (element.text or "").strip())


def dial(step: int, sid: str, *legs: tuple[int, str], timeout: int = 20) -> tuple[Any, ...]:
    return (
        "Dial",
        {
            "action": f"{BASE}/dial?step={step}",
            "method": "POST",
            "timeout": str(timeout),
            "ringTone": "ru",
        },
        [
            (
                "Number",
                {
                    "url": f"{BASE}/whisper?call={sid}&leg={leg}",
                    "method": "POST",
                    "statusCallback": f"{BASE}/leg-status?call={sid}&leg={leg}",
                    "statusCallbackEvent": EVENTS,
                    "statusCallbackMethod": "POST",
                },
                number,
            )
            for leg, number in legs
        ],
    )


def say(text: str) -> tuple[Any, ...]:
    return ("Say", SAY, text)


def whisper_twiml(sid: str, leg: int, text: str) -> list[Any]:
    gather = (
        "Gather",
        {
            "input": "dtmf",
            "numDigits": "1",
            "timeout": "6",
            "action": f"{BASE}/whisper/answer?call={sid}&leg={leg}",
            "method": "POST",
        },
        [say(text)],
    )
    return [gather, gather, ("Hangup", {}, "")]


class TwilioSide:
    """What Twilio does for one call, leg by leg."""

    def __init__(
        self, client: FlaskClient, clock: MutableClock, sid: str, token: str = TEST_AUTH_TOKEN
    ) -> None:
        self.client, self.clock, self.sid, self.token = client, clock, sid, token
        self.children: dict[int, str] = {}
        self.sequence: dict[int, int] = {}

    def _post(self, path: str, params: Mapping[str, str]) -> Any:
        return signed_post(self.client, path, params, token=self.token)

    def wait(self, seconds: int) -> None:
        self.clock.now = self.clock.now + timedelta(seconds=seconds)

    def redirect(self, kind: str) -> Any:
        return self._post(f"{BASE}/{kind}", fixture("redirect", CallSid=self.sid))

    def child(self, leg: int) -> str:
        return self.children.setdefault(leg, "CA" + uuid.uuid4().hex)

    def _child_params(self, leg: int, number: str, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": TEST_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": self.child(leg),
            "ParentCallSid": self.sid,
            "Direction": "outbound-dial",
            "From": CALLER,
            "To": number,
            "Called": number,
            "Caller": CALLER,
            **extra,
        }

    def leg_status(self, leg: int, number: str, status: str, **extra: str) -> Any:
        seq = self.sequence.get(leg, 0)
        self.sequence[leg] = seq + 1
        params = self._child_params(
            leg,
            number,
            CallStatus=status,
            CallbackSource="call-progress-events",
            SequenceNumber=str(seq),
            Timestamp=format_datetime(self.clock.now),
            **extra,
        )
        response = self._post(f"{BASE}/leg-status?call={self.sid}&leg={leg}", params)
        assert response.status_code == 200
        return response

    def answer(self, leg: int, number: str) -> Any:
        """The person (or their voicemail) picks up: Twilio fetches the whisper."""
        self.leg_status(leg, number, "in-progress")
        return self._post(
            f"{BASE}/whisper?call={self.sid}&leg={leg}",
            self._child_params(leg, number, CallStatus="in-progress"),
        )

    def press(self, leg: int, number: str, digits: str) -> Any:
        return self._post(
            f"{BASE}/whisper/answer?call={self.sid}&leg={leg}",
            self._child_params(leg, number, CallStatus="in-progress", Digits=digits),
        )

    def dial_result(
        self, step: int, status: str, *, leg: int, bridged: bool, call_status: str = "in-progress"
    ) -> Any:
        params = fixture(
            "dial_action",
            CallSid=self.sid,
            DialCallStatus=status,
            DialCallSid=self.child(leg),
            DialBridged="true" if bridged else "false",
            CallStatus=call_status,
        )
        return self._post(f"{BASE}/dial?step={step}", params)

    def voicemail(self, recording_sid: str | None) -> Any:
        if recording_sid is None:  # an empty recording: Twilio follows the <Redirect>
            return signed_post(
                self.client, f"{BASE}/voicemail", fixture("redirect", CallSid=self.sid)
            )
        params = fixture(
            "record_action",
            CallSid=self.sid,
            RecordingSid=recording_sid,
            RecordingUrl=f"https://api.twilio.com/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Recordings/{recording_sid}",
            RecordingDuration="17",
        )
        return self._post(f"{BASE}/voicemail", params)


def legs_of(services: Services, sid: str) -> list[tuple[Any, ...]]:
    """(position, staff, number, result, seconds to answer or None) per leg."""
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
        rows = session.scalars(
            select(DialLeg).where(DialLeg.call_id == call.id).order_by(DialLeg.position)
        ).all()
        return [
            (
                leg.position,
                leg.staff_key,
                leg.number,
                leg.result,
                int((leg.answered_at - leg.started_at).total_seconds())
                if leg.answered_at
                else None,
            )
            for leg in rows
        ]


def call_row(services: Services, sid: str) -> Call:
    with services.sessions() as session:
        return session.scalars(select(Call).where(Call.call_sid == sid)).one()


def event_kinds(services: Services, sid: str) -> list[str]:
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
        return list(
            session.scalars(
                select(CallEvent.kind).where(CallEvent.call_id == call.id).order_by(CallEvent.id)
            )
        )


# ---------------------------------------------------------------- urgent chain


def test_first_leg_accepts(routed: Services, client: FlaskClient, clock: MutableClock) -> None:
    load_roster(routed)
    sid, number = handed_over_call(routed, category="critical", topic="critical_server_failure")
    twilio = TwilioSide(client, clock, sid)

    first = tree(twilio.redirect("urgent"))
    assert first == [dial(1, sid, (1, IVANOV))]

    twilio.leg_status(1, IVANOV, "initiated")
    twilio.leg_status(1, IVANOV, "ringing")
    twilio.wait(7)
    assert tree(twilio.answer(1, IVANOV)) == whisper_twiml(
        sid,
        1,
        f"Критический сбой сервера, заявка {number}, ООО Ромашка. Нажмите 1, чтобы принять звонок.",
    )
    twilio.wait(3)
    # Pressing 1 ends the whisper document: Twilio bridges the two parties.
    assert tree(twilio.press(1, IVANOV, "1")) == [say("Соединяю.")]
    twilio.wait(240)
    twilio.leg_status(1, IVANOV, "completed", CallDuration="250")
    ended = tree(twilio.dial_result(1, "completed", leg=1, bridged=True))
    assert ended == [say("Спасибо за обращение. До свидания!"), ("Hangup", {}, "")]

    assert legs_of(routed, sid) == [(1, "ivanov", IVANOV, "accepted", 7)]
    call = call_row(routed, sid)
    assert (call.routing_outcome, call.flagged) == ("connected", False)

    # Twilio retrying the Dial action, or a duplicated status callback, changes nothing.
    assert tree(twilio.dial_result(1, "completed", leg=1, bridged=True)) == ended
    twilio.leg_status(1, IVANOV, "completed", CallDuration="250")
    assert legs_of(routed, sid) == [(1, "ivanov", IVANOV, "accepted", 7)]
    assert event_kinds(routed, sid).count("dial_result") == 1


def test_a_voicemail_answering_is_not_an_answer(
    routed: Services, client: FlaskClient, clock: MutableClock
) -> None:
    load_roster(routed)
    sid, number = handed_over_call(routed, category="stolen", topic="stolen_vehicle")
    with transaction(routed.sessions) as session:
        session.scalars(select(Call).where(Call.call_sid == sid)).one().vehicles = ["А123ВС77"]
    twilio = TwilioSide(client, clock, sid)
    assert tree(twilio.redirect("urgent")) == [dial(1, sid, (1, IVANOV))]

    # Ivanov's mobile voicemail picks up after 15 s, plays its greeting over the whisper
    # and never presses 1: the whisper ends in <Hangup>, Twilio reports "completed".
    twilio.wait(15)
    whisper = tree(twilio.answer(1, IVANOV))
    assert whisper[0][2] == [
        say(
            f"Угон транспортного средства, заявка {number}, ООО Ромашка. "
            "Госномер: а, один, два, три, вэ, эс, семь, семь. Нажмите 1, чтобы принять звонок."
        )
    ]
    twilio.wait(14)
    twilio.leg_status(1, IVANOV, "completed", CallDuration="14")
    moved_on = tree(twilio.dial_result(1, "completed", leg=1, bridged=False))
    assert moved_on == [
        say("Пожалуйста, оставайтесь на линии. Соединяю с другим специалистом."),
        dial(2, sid, (2, PETROVA)),
    ]

    # A late whisper request on the first leg is refused; a replayed Dial action of step 1
    # gets the current step again and rings nobody new.
    assert tree(twilio.answer(1, IVANOV)) == [("Hangup", {}, "")]
    assert tree(twilio.dial_result(1, "completed", leg=1, bridged=False)) == moved_on

    twilio.wait(4)
    tree(twilio.answer(2, PETROVA))
    assert tree(twilio.press(2, PETROVA, "1")) == [say("Соединяю.")]
    twilio.wait(60)
    assert tree(twilio.dial_result(2, "completed", leg=2, bridged=True))[-1] == ("Hangup", {}, "")

    assert legs_of(routed, sid) == [
        (1, "ivanov", IVANOV, "not-accepted", 15),
        (2, "petrova", PETROVA, "accepted", 4),
    ]
    call = call_row(routed, sid)
    assert (call.routing_outcome, call.flagged) == ("connected", False)


@pytest.mark.both_databases  # row locks and alerts sent once (ON CONFLICT) per dialect
def test_nobody_accepts(
    routed: Services, client: FlaskClient, clock: MutableClock, run_jobs_at_once: Any
) -> None:
    run_jobs_at_once(routed)
    load_roster(routed)
    sid, number = handed_over_call(routed, category="critical", topic="critical_server_failure")
    twilio = TwilioSide(client, clock, sid)
    assert tree(twilio.redirect("urgent")) == [dial(1, sid, (1, IVANOV))]

    # 1. Ivanov does not pick up.
    twilio.wait(20)
    twilio.leg_status(1, IVANOV, "no-answer")
    step2 = tree(twilio.dial_result(1, "no-answer", leg=1, bridged=False))
    assert step2[1] == dial(2, sid, (2, PETROVA))
    # 2. Petrova's mobile is busy.
    twilio.leg_status(2, PETROVA, "busy")
    step3 = tree(twilio.dial_result(2, "busy", leg=2, bridged=False))
    assert step3[1] == dial(3, sid, (3, PETROVA_DESK))
    # 3. Her desk phone is answered by someone who presses 2 (any key but 1 declines).
    twilio.wait(5)
    tree(twilio.answer(3, PETROVA_DESK))
    assert tree(twilio.press(3, PETROVA_DESK, "2")) == [("Hangup", {}, "")]
    twilio.leg_status(3, PETROVA_DESK, "completed", CallDuration="6")
    step4 = tree(twilio.dial_result(3, "completed", leg=3, bridged=False))
    assert step4[1] == dial(4, sid, (4, SMIRNOVA))
    # 4. The head of support does not pick up either.
    twilio.wait(20)
    offer = tree(twilio.dial_result(4, "no-answer", leg=4, bridged=False))

    spoken_number = say_digits(number)
    assert offer == [
        say(
            "К сожалению, сейчас никто из дежурных специалистов не ответил. "
            "Ваша заявка зарегистрирована, вам перезвонят. Дежурные и руководитель поддержки "
            f"получат SMS о вашем звонке. Номер заявки: {spoken_number}. "
            "После сигнала оставьте, пожалуйста, сообщение: ваше имя, компанию и суть вопроса, "
            "затем нажмите решётку."
        ),
        (
            "Record",
            {
                "action": f"{BASE}/voicemail",
                "method": "POST",
                "maxLength": "180",
                "finishOnKey": "#",
                "timeout": "10",
                "playBeep": "true",
                "recordingStatusCallback": (
                    f"{TEST_PUBLIC_BASE}/webhooks/voice/recording-status?kind=voicemail"
                ),
                "recordingStatusCallbackMethod": "POST",
            },
            "",
        ),
        ("Redirect", {"method": "POST"}, f"{BASE}/voicemail"),
    ]
    assert legs_of(routed, sid) == [
        (1, "ivanov", IVANOV, "no-answer", None),
        (2, "petrova", PETROVA, "busy", None),
        (3, "petrova", PETROVA_DESK, "declined", 5),
        (4, "smirnova", SMIRNOVA, "no-answer", None),
    ]
    call = call_row(routed, sid)
    assert call.routing_outcome == "nobody_accepted"
    assert call.flagged
    assert call.flag_reason == (
        "Никто из дежурных не принял срочный звонок. Обзвонены: Иванов Иван, Петрова Анна, "
        "Смирнова Елена."
    )

    # Every person of the chain gets one SMS (Petrova once for her two phones).
    def alerts() -> list[tuple[str | None, str, str]]:
        with routed.sessions() as session:
            rows = session.scalars(
                select(SmsMessage)
                .where(SmsMessage.key.startswith(f"chain-alert:{sid}:"))
                .order_by(SmsMessage.key)
            ).all()
            return [(r.to, r.status, r.body) for r in rows if r.status != "sending"]

    body = (
        f"SKAI ТП: срочный звонок не принят. Критический сбой сервера, заявка {number}, "
        f"ООО Ромашка, тел. {CALLER}. Перезвоните клиенту."
    )
    sent = alerts()
    assert sent == [
        (IVANOV, "sent", body),
        (PETROVA, "sent", body),
        (SMIRNOVA, "sent", body),
    ]

    # The caller leaves a message; it goes to the ticket.
    bye = tree(twilio.voicemail("RE" + "1" * 32))
    assert bye == [
        say("Спасибо, ваше сообщение записано. Мы перезвоним вам. До свидания!"),
        ("Hangup", {}, ""),
    ]
    call = call_row(routed, sid)
    assert call.recording_sid == "RE" + "1" * 32
    assert call.routing_outcome == "nobody_accepted"
    # A replayed Record action neither re-records nor re-alerts.
    assert tree(twilio.voicemail("RE" + "1" * 32)) == bye
    assert event_kinds(routed, sid).count("voicemail") == 1
    with routed.sessions() as session:
        assert (
            len(
                session.scalars(
                    select(SmsMessage.id).where(SmsMessage.key.startswith(f"chain-alert:{sid}:"))
                ).all()
            )
            == 3
        )


def test_the_caller_hanging_up_mid_chain_is_flagged_for_a_callback(
    routed: Services, client: FlaskClient, clock: MutableClock
) -> None:
    load_roster(routed)
    sid, _ = handed_over_call(routed, category="critical", topic="critical_server_failure")
    twilio = TwilioSide(client, clock, sid)
    tree(twilio.redirect("urgent"))
    twilio.wait(9)
    twilio.leg_status(1, IVANOV, "canceled")
    gone = tree(twilio.dial_result(1, "canceled", leg=1, bridged=False, call_status="completed"))
    assert gone == [("Hangup", {}, "")]
    assert legs_of(routed, sid) == [(1, "ivanov", IVANOV, "canceled", None)]
    call = call_row(routed, sid)
    assert (call.routing_outcome, call.flagged) == ("caller_hung_up", True)
    assert call.flag_reason is not None and call.flag_reason.startswith(
        "Звонивший положил трубку, пока звонок искал дежурного."
    )


# ---------------------------------------------------------------- consultations


def test_consultation_rings_everyone_at_once_then_takes_a_callback(
    routed: Services, client: FlaskClient, clock: MutableClock, run_jobs_at_once: Any
) -> None:
    run_jobs_at_once(routed)
    load_roster(routed)
    sid, _ = handed_over_call(routed, category="consultation", topic=None)
    twilio = TwilioSide(client, clock, sid)

    assert tree(twilio.redirect("consultation")) == [
        dial(1, sid, (1, IVANOV), (2, PETROVA), (3, PETROVA_DESK))
    ]
    for leg, number in ((1, IVANOV), (2, PETROVA), (3, PETROVA_DESK)):
        twilio.leg_status(leg, number, "ringing")
    twilio.wait(20)
    for leg, number in ((1, IVANOV), (2, PETROVA), (3, PETROVA_DESK)):
        twilio.leg_status(leg, number, "no-answer")
    offer = tree(twilio.dial_result(1, "no-answer", leg=1, bridged=False))
    # Working hours: the call-back queue is offered inside a <Gather>; no key falls through
    # to the voicemail (https://www.twilio.com/docs/voice/twiml/gather).
    assert offer[:2] == [
        (
            "Gather",
            {
                "input": "dtmf",
                "action": f"{BASE}/callback",
                "method": "POST",
                "timeout": "5",
                "numDigits": "1",
            },
            [
                say(
                    "К сожалению, сейчас все специалисты заняты. Чтобы мы перезвонили вам в "
                    "порядке очереди, нажмите 1 — вы первый в очереди. Или оставьте сообщение "
                    "после сигнала."
                )
            ],
        ),
        say(
            "После сигнала оставьте, пожалуйста, сообщение: ваше имя, компанию и суть "
            "вопроса, затем нажмите решётку."
        ),
    ]
    assert [verb[0] for verb in offer] == ["Gather", "Say", "Record", "Redirect"]
    assert legs_of(routed, sid) == [
        (1, "ivanov", IVANOV, "no-answer", None),
        (2, "petrova", PETROVA, "no-answer", None),
        (3, "petrova", PETROVA_DESK, "no-answer", None),
    ]

    # The caller's mobile takes SMS: the knowledge base (regulation §VII) is offered first;
    # no answer goes on to the goodbye (https://www.twilio.com/docs/voice/twiml/gather).
    assert tree(twilio.voicemail("RE" + "2" * 32)) == [
        (
            "Gather",
            {
                "input": "dtmf speech",
                "action": f"{BASE}/kb",
                "method": "POST",
                "timeout": "4",
                "numDigits": "1",
                "language": "ru-RU",
                "speechTimeout": "2",
                "hints": "да, отправить",
            },
            [say("Отправить ссылку на базу знаний по СМС — 1.")],
        ),
        say("Спасибо, ваше сообщение записано. Мы перезвоним вам. До свидания!"),
        ("Hangup", {}, ""),
    ]
    call = call_row(routed, sid)
    assert (call.topic, call.routing_outcome, call.recording_sid) == (
        "consultation",
        "voicemail",
        "RE" + "2" * 32,
    )

    # The pipeline turns it into a callback ticket on the portal.
    def ticket() -> Ticket | None:
        with routed.sessions() as session:
            return session.scalars(select(Ticket).where(Ticket.call_ref == sid)).one_or_none()

    made = ticket()
    assert made is not None
    assert made.topic == "consultation"
    assert made.organisation_name == "ООО Ромашка"
    with routed.sessions() as session:
        request = session.scalars(
            select(TicketRequest).where(TicketRequest.idempotency_key == sid)
        ).one()
        assert request.draft["topic"] == "consultation"


def test_consultation_after_hours_rings_the_duty_specialist(
    routed: Services, client: FlaskClient, clock: MutableClock
) -> None:
    load_roster(routed)
    clock.now = clock.now.replace(hour=22)
    sid, _ = handed_over_call(routed, category="consultation", topic=None)
    twilio = TwilioSide(client, clock, sid)
    assert tree(twilio.redirect("consultation")) == [dial(1, sid, (1, SIDOROV))]
    # Consultations hear the whisper too; a consultation has no ticket to wait for.
    assert tree(twilio.answer(1, SIDOROV))[0][2] == [
        say("Консультация, без заявки, ООО Ромашка. Нажмите 1, чтобы принять звонок.")
    ]


@pytest.mark.both_databases  # row locks and alerts sent once (ON CONFLICT) per dialect
def test_first_to_accept_a_simultaneous_ring_takes_the_call(
    routed: Services, client: FlaskClient, clock: MutableClock
) -> None:
    load_roster(routed)
    sid, _ = handed_over_call(routed, category="consultation", topic=None)
    twilio = TwilioSide(client, clock, sid)
    tree(twilio.redirect("consultation"))
    twilio.wait(3)
    tree(twilio.answer(2, PETROVA))
    assert tree(twilio.press(2, PETROVA, "1")) == [say("Соединяю.")]
    # Another phone answering late is not connected, whatever it presses.
    assert tree(twilio.answer(1, IVANOV)) == [("Hangup", {}, "")]
    assert tree(twilio.press(1, IVANOV, "1")) == [("Hangup", {}, "")]
    assert tree(twilio.dial_result(1, "completed", leg=2, bridged=True))[-1] == ("Hangup", {}, "")
    assert legs_of(routed, sid) == [
        (1, "ivanov", IVANOV, "canceled", 3),
        (2, "petrova", PETROVA, "accepted", 3),
        (3, "petrova", PETROVA_DESK, "canceled", None),
    ]
    assert call_row(routed, sid).routing_outcome == "connected"


# ---------------------------------------------------------------- always somewhere to go


def test_an_empty_roster_sends_callers_to_the_duty_phone(
    routed: Services, client: FlaskClient, clock: MutableClock
) -> None:
    duty = routed.settings.duty_phone
    for kind, category, topic in (
        ("urgent", "critical", "critical_server_failure"),
        ("consultation", "consultation", None),
    ):
        sid, _ = handed_over_call(routed, category=category, topic=topic)
        twilio = TwilioSide(client, clock, sid)
        assert tree(twilio.redirect(kind)) == [dial(1, sid, (1, duty))]
        assert legs_of(routed, sid) == [(1, None, duty, "ringing", None)]


def test_a_call_routing_does_not_know_still_reaches_the_duty_phone(
    routed: Services, client: FlaskClient, clock: MutableClock
) -> None:
    duty_phone = routed.settings.duty_phone
    twilio = TwilioSide(client, clock, "CA" + "0" * 32)
    # The one emergency reply: the duty phone, then a voicemail if nobody answers there.
    dial_result = TEST_PUBLIC_BASE + "/webhooks/voice/fallback/dial-result"
    assert tree(twilio.redirect("urgent")) == [
        say("Извините, у нас техническая неполадка. Соединяю вас с дежурным специалистом."),
        ("Dial", {"action": dial_result, "method": "POST", "timeout": "25"}, duty_phone),
    ]
    nobody = fixture("dial_action", CallSid=twilio.sid, DialCallStatus="no-answer")
    voicemail = tree(signed_post(client, dial_result, nobody))
    assert [verb[0] for verb in voicemail] == ["Say", "Record", "Say", "Hangup"]


def test_forged_requests_are_refused(client: FlaskClient) -> None:
    params = fixture("redirect")
    for path in (
        "urgent",
        "consultation",
        "dial?step=1",
        "whisper?call=CA1&leg=1",
        "whisper/answer?call=CA1&leg=1",
        "leg-status?call=CA1&leg=1",
        "voicemail",
        "kb",
    ):
        response = client.post(
            f"/webhooks/voice/route/{path}", data=params, headers={"X-Twilio-Signature": "forged"}
        )
        assert response.status_code == 403, path


def test_a_leg_status_without_its_leg_is_a_plain_400(client: FlaskClient) -> None:
    params = fixture("redirect", CallStatus="completed")
    response = signed_post(client, f"{BASE}/leg-status?call=CA1", params)
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "leg and CallStatus are required\n"


@pytest.mark.both_databases  # row locks and alerts sent once (ON CONFLICT) per dialect
def test_chain_alerts_that_could_not_be_queued_are_sent_by_the_sweep(
    make_services: Any, prism_url: str, clock: MutableClock, run_jobs_at_once: Any
) -> None:
    """Redis is down when nobody accepts an urgent call: the alerts cannot be queued, yet
    they are not lost — the outbox sweep finds the call and sends each alert once."""
    # The web side: its queue is a Redis that is not there.
    web = make_services(twilio_api_base_url=prism_url, redis_url="redis://127.0.0.1:9/0")
    load_roster(web)
    app = create_app(services=web)
    app.config.update(TESTING=True)
    sid, _number = handed_over_call(web, category="stolen", topic="stolen_vehicle")
    twilio = TwilioSide(app.test_client(), clock, sid)
    tree(twilio.redirect("urgent"))
    for step in range(1, 5):  # Ivanov, Petrova (mobile, desk), Smirnova
        twilio.wait(20)
        offer = tree(twilio.dial_result(step, "no-answer", leg=step, bridged=False))
    assert offer[1][0] == "Record"  # nobody accepted: the caller is offered a voicemail
    assert call_row(web, sid).routing_outcome == "nobody_accepted"

    def alerts(svc: Services) -> list[tuple[str | None, str]]:
        with svc.sessions() as session:
            rows = session.scalars(
                select(SmsMessage)
                .where(SmsMessage.key.startswith(f"chain-alert:{sid}:"))
                .order_by(SmsMessage.key)
            ).all()
            return [(r.to, r.status) for r in rows if r.status != "sending"]

    assert alerts(web) == []  # nothing could be queued

    # Later, a process whose queue works (here one that runs each job at once) sweeps.
    sweeper = make_services(twilio_api_base_url=prism_url)
    run_jobs_at_once(sweeper)
    assert sweeper.jobs.flush() >= 1
    sent = alerts(sweeper)
    assert sent == [(IVANOV, "sent"), (PETROVA, "sent"), (SMIRNOVA, "sent")]
    # Sent once: the next sweeps find nothing due for this call.
    from callcenter.routing.alerts import calls_with_alerts_due

    with sweeper.sessions() as session:
        assert calls_with_alerts_due(session, now=clock()) == []
    sweeper.jobs.flush()
    assert alerts(sweeper) == sent


@pytest.mark.both_databases  # the SMS claimed once (ON CONFLICT) per dialect
def test_a_missed_urgent_call_sms_that_could_not_be_queued_is_sent_by_the_sweep(
    make_services: Any, prism_url: str, clock: MutableClock, run_jobs_at_once: Any
) -> None:
    """Redis is down when a caller hangs up on the critical path's first question: the SMS
    to the head of the urgent chain cannot be queued, yet the sweep sends it, once."""
    web = make_services(twilio_api_base_url=prism_url, redis_url="redis://127.0.0.1:9/0")
    load_roster(web)
    app = create_app(services=web)
    app.config.update(TESTING=True)
    call = TwilioCall(app.test_client(), caller=CALLER)
    call.start()
    call.press("3")
    call.hang_up(duration="9")
    assert call_row(web, call.call_sid).outcome == "abandoned"

    def texts(svc: Services) -> list[tuple[str | None, str, str]]:
        with svc.sessions() as session:
            rows = session.scalars(select(SmsMessage)).all()
            return [(r.to, r.status, r.body) for r in rows]

    assert texts(web) == []  # nothing could be queued

    sweeper = make_services(twilio_api_base_url=prism_url)
    run_jobs_at_once(sweeper)
    assert sweeper.jobs.flush() >= 1
    sent = texts(sweeper)
    assert sent == [
        (
            IVANOV,
            "sent",
            f"SKAI ТП: пропущен срочный звонок (Критический сбой сервера), перезвоните {CALLER}.",
        )
    ]
    # Sent once: the next sweeps find nothing due for this call.
    from callcenter.routing.alerts import calls_with_missed_urgent_due

    with sweeper.sessions() as session:
        assert calls_with_missed_urgent_due(session, now=clock()) == []
    sweeper.jobs.flush()
    assert texts(sweeper) == sent


def test_without_a_twilio_account_the_caller_is_not_promised_an_sms(
    make_services: Any, clock: MutableClock, run_jobs_at_once: Any
) -> None:
    """No Twilio account: no SMS alert can go out, so the caller nobody took hears that
    the ticket is registered and they will be called back — nothing about an SMS."""
    offline = make_services(twilio_account_sid=None, twilio_auth_token=None)
    run_jobs_at_once(offline)
    load_roster(offline)
    app = create_app(services=offline)
    app.config.update(TESTING=True)
    sid, _number = handed_over_call(offline, category="critical", topic="critical_server_failure")
    # The embedded default signs with the local simulator's token.
    twilio = TwilioSide(app.test_client(), clock, sid, token=LOCAL_SIGNING_TOKEN)
    tree(twilio.redirect("urgent"))
    for step in range(1, 5):  # Ivanov, Petrova (mobile, desk), Smirnova
        twilio.wait(20)
        offer = tree(twilio.dial_result(step, "no-answer", leg=step, bridged=False))
    spoken = offer[0][2]
    assert spoken.startswith(
        "К сожалению, сейчас никто из дежурных специалистов не ответил. "
        "Ваша заявка зарегистрирована, вам перезвонят. Номер заявки: "
    )
    assert "SMS" not in spoken
    assert call_row(offline, sid).routing_outcome == "nobody_accepted"
