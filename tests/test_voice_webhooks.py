"""The IVR over its webhooks, as Twilio drives it: every branch and every failure, with the
exact TwiML verbs and attributes, the call log row, its events and the ticket request.

Runs on SQLite and PostgreSQL (the `client` fixture is parametrized), with the built-in
portal and in-process jobs (no REDIS_URL), as the embedded default does.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.calllog.query import get_call
from callcenter.calllog.review import NOT_CALLED_BACK, call_problems
from callcenter.calllog.timeline import timeline
from callcenter.db import transaction
from callcenter.db.models import (
    Call,
    CallEvent,
    Contact,
    ContactPhone,
    Organisation,
    SmsMessage,
    TicketRequest,
)
from callcenter.ivr import prompts
from callcenter.portal.protocol import TicketDraft
from callcenter.regulation.speech import say_digits
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import TEST_PUBLIC_BASE, MutableClock
from tests.twilio_requests import TwilioCall, fixture, parse_twiml, said, signed_post

VOICE = "Polly.Tatyana"
STEP = f"{TEST_PUBLIC_BASE}/webhooks/voice/step"
ROUTE_CONSULTATION = f"{TEST_PUBLIC_BASE}/webhooks/voice/route/consultation"
ROUTE_URGENT = f"{TEST_PUBLIC_BASE}/webhooks/voice/route/urgent"
KNOWN_MOBILE = "+79161112233"
UNKNOWN_MOBILE = "+79169998877"


# ---------------------------------------------------------------- helpers


def tags(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def assert_says_russian(root: ET.Element) -> None:
    says = list(root.iter("Say"))
    assert says, "nothing is said"
    for say in says:
        assert say.attrib == {"language": "ru-RU", "voice": VOICE}


def assert_menu_gather(
    root: ET.Element, step: str, turn: int, *, num_digits: str | None = "1", speech: bool = True
) -> ET.Element:
    """The reply ends in <Gather> for `step`, then a <Redirect> back to it (silence)."""
    assert tags(root)[-2:] == ["Gather", "Redirect"]
    gather = root.find("Gather")
    assert gather is not None
    action = f"{STEP}/{step}?t={turn}"
    assert gather.attrib["action"] == action
    assert gather.attrib["method"] == "POST"
    assert gather.attrib.get("numDigits") == num_digits
    if speech:
        assert gather.attrib["input"] == "dtmf speech"
        assert gather.attrib["language"] == "ru-RU"
    else:
        assert gather.attrib["input"] == "dtmf"
        assert "language" not in gather.attrib
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == action
    assert redirect.attrib == {"method": "POST"}
    assert_says_russian(root)
    return gather


def call_row(services: Services, call_sid: str) -> Call:
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == call_sid)).one()
        session.expunge(call)
        return call


def events(services: Services, call_sid: str) -> list[CallEvent]:
    with services.sessions() as session:
        found = list(
            session.scalars(
                select(CallEvent).join(Call).where(Call.call_sid == call_sid).order_by(CallEvent.id)
            )
        )
        session.expunge_all()
        return found


def ticket_request(services: Services, call_sid: str) -> TicketRequest | None:
    with services.sessions() as session:
        found = session.scalars(
            select(TicketRequest).join(Call).where(Call.call_sid == call_sid)
        ).one_or_none()
        if found is not None:
            session.expunge(found)
        return found


def wait_for(condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def add_contact(services: Services, phone: str, *, org: str = "ООО «Ромашка»") -> int:
    """A contact in the directory; returns the organisation's id."""
    now = services.clock()
    with transaction(services.sessions) as session:
        organisation = session.scalars(
            select(Organisation).where(Organisation.name == org)
        ).one_or_none()
        if organisation is None:
            organisation = Organisation(name=org, created_at=now, topic_days={})
            session.add(organisation)
            session.flush()
        contact = Contact(name="Иванова Мария", organisation_id=organisation.id, created_at=now)
        contact.phones.append(ContactPhone(e164=phone))
        session.add(contact)
        session.flush()
        return organisation.id


def portal_ticket(services: Services, *, organisation_id: int | None, key: str) -> str:
    due = datetime.fromisoformat("2025-12-01T18:00:00+03:00")
    view = services.portal.create_ticket(
        TicketDraft(
            topic="system_reports",
            description="Не строится отчёт",
            idempotency_key=key,
            organisation_id=organisation_id,
            organisation_name="ООО «Ромашка»" if organisation_id else "ООО «Другая»",
            first_stage_due=due,
            resolution_due=due,
        )
    )
    return view.number


# ---------------------------------------------------------------- greeting and main menu


def test_incoming_call_is_greeted_logged_and_offered_the_main_menu(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client, caller="8 (916) 999-88-77")
    root = call.start()

    # Nothing before the <Gather>: a key pressed during the greeting already acts.
    assert tags(root) == ["Gather", "Redirect"]
    gather = assert_menu_gather(root, "main_menu", 1)
    assert gather.attrib["timeout"] == "5"
    assert gather.attrib["speechTimeout"] == "2"
    assert "статус заявки" in gather.attrib["hints"]
    assert [say.text for say in gather] == [
        "Здравствуйте! Это техподдержка Скай, разговор записывается.",
        prompts.MAIN_MENU,
    ]

    row = call_row(services, call.call_sid)
    assert (row.line, row.caller_raw, row.caller_e164) == (
        "+78002506077",
        "8 (916) 999-88-77",
        UNKNOWN_MOBILE,
    )
    assert (row.caller_kind, row.contact_id, row.category, row.outcome) == (
        "mobile",
        None,
        None,
        "in_progress",
    )
    assert row.state["step"] == "main_menu"
    [event] = events(services, call.call_sid)
    assert (event.kind, event.step, event.detail["result"]) == ("incoming", "start", "greeted")
    assert event.detail["after_hours"] is False


def test_after_hours_the_caller_hears_the_working_hours_and_is_still_registered(
    client: FlaskClient, services: Services, clock: MutableClock
) -> None:
    clock.now = datetime.fromisoformat("2025-11-29T22:00:00+03:00")  # Saturday night
    call = TwilioCall(client)
    root = call.start()

    assert tags(root) == ["Gather", "Redirect"]
    gather = root[0]
    # Saturday night: configuration work resumes on Monday morning, said in words.
    assert [say.text for say in gather][1] == (
        "Сейчас нерабочее время. Настройка — в понедельник, первого декабря, "
        "в девять тридцать по московскому времени."
    )
    assert not any(ch.isdigit() for ch in [say.text or "" for say in gather][1])
    assert call_row(services, call.call_sid).outcome == "in_progress"


@pytest.mark.both_databases  # the step's row lock and JSON state per dialect
def test_a_replayed_incoming_webhook_greets_again_without_a_second_call(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    root = call.start()

    gather = assert_menu_gather(root, "main_menu", 1)
    assert (gather[0].text or "").startswith("Здравствуйте")
    with services.sessions() as session:
        assert len(list(session.scalars(select(Call)))) == 1
    assert [e.detail["result"] for e in events(services, call.call_sid)] == [
        "greeted",
        "repeated",
    ]


def test_silence_is_said_and_the_menu_repeated_twice_then_a_specialist_answers(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()

    first = call.silence()
    assert first[0].text == prompts.NOT_HEARD
    assert_menu_gather(first, "main_menu", 2)
    second = call.silence()
    assert second[0].text == prompts.NOT_HEARD
    assert_menu_gather(second, "main_menu", 3)
    third = call.silence()

    assert tags(third) == ["Say", "Redirect"]
    assert third[0].text == prompts.TOO_MANY_TRIES
    assert third[1].text == ROUTE_CONSULTATION
    assert third[1].attrib == {"method": "POST"}
    row = call_row(services, call.call_sid)
    assert (row.category, row.state["step"], row.state["route"]) == (
        "consultation",
        "routed",
        "consultation",
    )
    kinds = [
        (e.kind, e.detail.get("result"), e.detail.get("exhausted"))
        for e in events(services, call.call_sid)
    ]
    assert kinds == [
        ("incoming", "greeted", None),
        ("silence", "silence", None),
        ("silence", "silence", None),
        ("silence", "to_specialist", "silence"),
    ]
    assert ticket_request(services, call.call_sid) is None


def test_a_wrong_key_is_said_so_and_the_menu_repeated(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    root = call.press("9")

    assert root[0].text == prompts.NOT_UNDERSTOOD
    assert_menu_gather(root, "main_menu", 2)
    [_, event] = events(services, call.call_sid)
    assert (event.kind, event.digits, event.detail["result"]) == ("gather", "9", "invalid")


def test_star_repeats_the_menu_without_using_up_a_retry(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    for turn in (2, 3, 4):
        root = call.press("*")
        assert tags(root) == ["Gather", "Redirect"]
        assert_menu_gather(root, "main_menu", turn)
    assert call_row(services, call.call_sid).state["retries"] == 0
    assert call.silence()[0].text == prompts.NOT_HEARD


@pytest.mark.parametrize("key", ["1", "0"])
def test_consultation_and_specialist_go_to_routing_without_a_ticket(
    client: FlaskClient, services: Services, key: str
) -> None:
    call = TwilioCall(client)
    call.start()
    root = call.press(key)

    assert tags(root) == ["Say", "Redirect"]
    assert root[0].text == prompts.CONNECTING
    assert root[1].text == ROUTE_CONSULTATION
    assert root[1].attrib == {"method": "POST"}
    assert call.hang_up().status_code == 204
    row = call_row(services, call.call_sid)
    assert (row.category, row.outcome, row.twilio_status) == (
        "consultation",
        "completed",
        "completed",
    )
    assert (row.duration_seconds, row.status_sequence) == (95, 2)
    assert ticket_request(services, call.call_sid) is None


def test_the_menu_understands_speech(client: FlaskClient, services: Services) -> None:
    call = TwilioCall(client)
    call.start()
    root = call.say("У нас угнали машину", confidence="0.93")
    # Recognised from speech, a choice that wakes the on-duty specialist is confirmed.
    assert [say.text for say in root.iter("Say")] == [prompts.CONFIRM_STOLEN]
    assert call_row(services, call.call_sid).category is None
    root = call.say("да")

    assert_menu_gather(root, "stolen_vehicles", 3, num_digits=None)
    [_, event, _] = events(services, call.call_sid)
    assert (event.kind, event.speech, event.digits) == ("gather", "У нас угнали машину", None)
    assert event.detail["confidence"] == pytest.approx(0.93)
    assert event.detail["choice"] == "stolen"
    assert call_row(services, call.call_sid).category == "stolen"


@pytest.mark.both_databases  # PostgreSQL's JSON refuses Infinity and NaN
@pytest.mark.parametrize("odd", ["-inf", "nan", "1e999", "Infinity"])
def test_a_confidence_that_is_no_number_is_kept_as_none_and_the_step_goes_on(
    client: FlaskClient, services: Services, odd: str
) -> None:
    call = TwilioCall(client)
    call.start()
    root = call.say("У нас угнали машину", confidence=odd)
    assert [say.text for say in root.iter("Say")] == [prompts.CONFIRM_STOLEN]
    [_, event] = events(services, call.call_sid)
    assert (event.kind, event.speech) == ("gather", "У нас угнали машину")
    assert "confidence" not in event.detail


# ---------------------------------------------------------------- new problem


@pytest.mark.both_databases  # the step's row lock and JSON state per dialect
@pytest.mark.usefixtures("sync_jobs")
def test_new_problem_end_to_end_the_caller_hears_the_ticket_number(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client, caller=UNKNOWN_MOBILE)
    call.start()

    topics = call.press("2")
    gather = assert_menu_gather(topics, "topic", 2)
    assert "Системные отчёты — 4." in (gather[0].text or "")
    products = call.press("4")
    assert "СКАЙ Сильвер Студио — 2." in said(products)
    assert_menu_gather(products, "product", 3)
    vehicles = call.say("сильвер студио")
    plates_gather = assert_menu_gather(vehicles, "vehicles", 4, num_digits=None)
    assert plates_gather.attrib["finishOnKey"] == "#"
    # "just #" skips: Twilio must post the empty answer instead of falling through.
    assert plates_gather.attrib["actionOnEmptyResult"] == "true"
    assert plates_gather.attrib["timeout"] == "7"
    assert "$OOV_CLASS_ALPHANUMERIC_SEQUENCE" in plates_gather.attrib["hints"]
    name = call.say("А 123 ВС 77 и в456ор178")
    assert name[0].text == (
        "Записала: а, один, два, три, вэ, эс, семь, семь; "
        "вэ, четыре, пять, шесть, о, эр, один, семь, восемь."
    )
    assert_menu_gather(name, "caller_name", 5, num_digits=None)
    description = call.say("Пётр Сидоров, компания Вектор")
    assert tags(description) == ["Say", "Say", "Record", "Redirect"]
    record = description.find("Record")
    assert record is not None
    assert record.attrib == {
        "action": f"{STEP}/description?t=6",
        "method": "POST",
        "maxLength": "180",
        "finishOnKey": "#",
        "timeout": "10",
        "playBeep": "true",
        "recordingStatusCallback": (
            f"{TEST_PUBLIC_BASE}/webhooks/voice/recording-status?kind=description"
        ),
        "recordingStatusCallbackMethod": "POST",
    }
    registering = call.record(duration="42")
    assert tags(registering) == ["Say", "Redirect"]
    assert registering[0].text == prompts.REGISTERING
    assert registering[1].text == f"{STEP}/ticket_wait?t=7"

    # The ticket job ran once the recording's step committed (a real runner: meanwhile).
    assert (ticket_request(services, call.call_sid) or TicketRequest()).ticket_number
    heard = call.follow_redirect()
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.status == "done" and request.ticket_number
    number = request.ticket_number
    gather = assert_menu_gather(heard, "ticket_done", 8)
    texts = [say.text for say in gather]
    assert texts[0] == prompts.TICKET_NUMBER.format(number=say_digits(number))
    assert texts[1] == (
        "Специалист ответит вам до одиннадцати часов по московскому времени, "
        "в пятницу, двадцать восьмого ноября."
    )
    assert texts[2] == (
        "Срок решения — до одиннадцати часов по московскому времени, "
        "в понедельник, первого декабря."
    )
    assert texts[3] == prompts.SMS_TOO
    assert texts[4] == prompts.TICKET_DONE_MENU

    again = call.press("*")
    assert [say.text for say in again.iter("Say")][:1] == texts[:1]
    goodbye = call.silence()
    assert tags(goodbye) == ["Say", "Hangup"]
    assert goodbye[0].text == prompts.GOODBYE
    call.hang_up()

    row = call_row(services, call.call_sid)
    assert (row.category, row.topic, row.product) == ("incident", "system_reports", "silver_studio")
    assert row.vehicles == ["А123ВС77", "В456ОР178"]
    assert row.caller_said_name == "Пётр Сидоров, компания Вектор"
    assert row.recording_url is not None and row.recording_duration == 42
    assert (row.outcome, row.interrupted) == ("completed", False)
    assert request.draft["topic"] == "system_reports"
    assert request.draft["vehicles"] == ["А123ВС77", "В456ОР178"]
    kinds = [e.kind for e in events(services, call.call_sid)]
    assert kinds[:7] == [
        "incoming",
        "gather",
        "gather",
        "gather",
        "gather",
        "gather",
        "recording_added",
    ]
    assert "ticket_requested" in kinds and "record" in kinds and "poll" in kinds


def start_new_problem(client: FlaskClient, caller: str = UNKNOWN_MOBILE) -> TwilioCall:
    call = TwilioCall(client, caller=caller)
    call.start()
    call.press("2")
    call.press("1")
    call.press("4")
    return call


def test_a_known_caller_is_identified_and_not_asked_for_a_name(
    client: FlaskClient, services: Services
) -> None:
    organisation_id = add_contact(services, KNOWN_MOBILE)
    call = start_new_problem(client, caller="8-916-111-22-33")
    root = call.press("#")

    assert [say.text for say in root.iter("Say")][:2] == [
        prompts.VEHICLES_SKIPPED,
        prompts.DESCRIPTION,
    ]
    assert root.find("Record") is not None
    row = call_row(services, call.call_sid)
    assert row.organisation_id == organisation_id and row.contact_id is not None
    assert (row.topic, row.product, row.vehicles) == ("consultation", None, [])


def test_vehicle_digits_typed_on_the_keypad_are_kept(
    client: FlaskClient, services: Services
) -> None:
    call = start_new_problem(client)
    root = call.press("12377#")

    assert root[0].text == "Записала: один, два, три, семь, семь."
    assert_menu_gather(root, "caller_name", 5, num_digits=None)
    assert call_row(services, call.call_sid).vehicles == ["12377"]


def test_unreadable_plates_are_asked_again_then_never_stored_as_a_plate(
    client: FlaskClient, services: Services
) -> None:
    call = start_new_problem(client)
    assert call.say("не помню номер")[0].text == prompts.NOT_UNDERSTOOD
    call.say("какая-то газель")
    root = call.say("н е з н а ю")

    assert root[0].text == prompts.VEHICLES_SKIPPED
    assert_menu_gather(root, "caller_name", 7, num_digits=None)
    assert call_row(services, call.call_sid).vehicles == []


@pytest.mark.usefixtures("sync_jobs")
def test_a_withheld_caller_types_a_callback_number_kept_on_the_ticket(
    client: FlaskClient, services: Services
) -> None:
    """A withheld number cannot be called back: the caller is asked for one on the keypad,
    checked as a Russian number (a wrong one is said and asked again), read back, and
    kept as the ticket's contact number and in its description."""
    call = start_new_problem(client, caller="anonymous")
    call.press("#")  # no plate: Twilio posts nothing (silence)
    asked = call.say("Пётр Сидоров, компания Вектор")
    gather = assert_menu_gather(asked, "callback_number", 6, num_digits=None)
    assert [say.text for say in gather] == [prompts.CALLBACK_NUMBER, prompts.NAVIGATION]
    assert gather.attrib["finishOnKey"] == "#"
    assert gather.attrib["actionOnEmptyResult"] == "true"

    wrong = call.press("12345#")
    assert wrong[0].text == prompts.CALLBACK_NUMBER_INVALID
    assert_menu_gather(wrong, "callback_number", 7, num_digits=None)
    described = call.press("89161234567#")
    assert described[0].text == (
        "Записала номер: восемь девять один шесть один два три четыре пять шесть семь."
    )
    assert described.find("Record") is not None
    call.record(duration="12")

    request = ticket_request(services, call.call_sid)
    assert request is not None and request.ticket_number
    ticket = services.portal.get_ticket(request.ticket_number)
    assert ticket.caller == "+79161234567"
    assert "Номер для обратного звонка (набран абонентом): +7 916 123-45-67." in (
        ticket.description
    )


def test_a_withheld_caller_asking_for_a_consultation_leaves_a_number_first(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client, caller="anonymous")
    call.start()
    asked = call.press("1")
    assert_menu_gather(asked, "callback_number", 2, num_digits=None)
    routed = call.silence()  # "not needed: just wait"
    assert tags(routed) == ["Say", "Redirect"] and routed[1].text == ROUTE_CONSULTATION


def test_no_description_is_asked_once_more_then_the_ticket_is_opened_anyway(
    client: FlaskClient, services: Services
) -> None:
    add_contact(services, KNOWN_MOBILE)
    call = start_new_problem(client, caller=KNOWN_MOBILE)
    call.press("#")
    again = call.silence()
    assert again[0].text == prompts.DESCRIPTION_EMPTY
    assert again.find("Record") is not None
    registering = call.silence()

    assert registering[0].text == prompts.REGISTERING
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.draft["topic"] == "consultation"


def test_when_the_number_is_late_the_caller_hears_it_will_come_by_sms(
    make_services: Any, clock: MutableClock
) -> None:
    from callcenter.app import create_app

    # The portal is unreachable: the job keeps retrying, no number comes.
    services = make_services(portal_url="http://127.0.0.1:9", portal_token="t")
    client = create_app(services=services).test_client()
    add_contact(services, KNOWN_MOBILE)
    call = start_new_problem(client, caller=KNOWN_MOBILE)
    call.press("#")
    assert call.record()[0].text == prompts.REGISTERING
    root = call.follow_redirect()

    pauses = 0
    while root.find("Pause") is not None:
        assert tags(root) == ["Pause", "Redirect"]
        assert root[0].attrib == {"length": "2"}
        pauses += 1
        root = call.follow_redirect()
    assert pauses * 2 <= services.settings.ticket_wait_seconds  # never more than ~10 s of silence
    assert pauses == 4
    assert [say.text for say in root.iter("Say")] == [
        prompts.NUMBER_BY_SMS,
        prompts.CONNECTING_OPTION,
    ]
    assert_menu_gather(root, "ticket_done", 11)
    routed = call.press("0")
    assert routed[1].text == ROUTE_CONSULTATION
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.ticket_number is None


def test_without_a_twilio_account_no_sms_is_promised(
    make_services: Any, clock: MutableClock
) -> None:
    """The embedded default sends no SMS (no Twilio account): a late number is promised
    through the specialist and the e-mail, never by an SMS that cannot come."""
    from callcenter.app import create_app
    from callcenter.settings import LOCAL_SIGNING_TOKEN

    services = make_services(
        portal_url="http://127.0.0.1:9",
        portal_token="t",
        twilio_account_sid=None,
        twilio_auth_token=None,
    )
    client = create_app(services=services).test_client()
    add_contact(services, KNOWN_MOBILE)
    # Without an account, webhooks are signed with the local simulator's token.
    call = TwilioCall(client, caller=KNOWN_MOBILE, token=LOCAL_SIGNING_TOKEN)
    call.start()
    for key in ("2", "1", "4", "#"):
        call.press(key)
    assert call.record()[0].text == prompts.REGISTERING
    root = call.follow_redirect()
    while root.find("Pause") is not None:
        root = call.follow_redirect()
    assert [say.text for say in root.iter("Say")][0] == prompts.NUMBER_LATER


# ---------------------------------------------------------------- critical failure


def test_critical_failure_without_a_ticket_opens_one_at_once_and_goes_urgent(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    asked = call.press("3")
    gather = assert_menu_gather(asked, "critical", 2, num_digits=None)
    assert (gather.attrib["finishOnKey"], gather.attrib["timeout"]) == ("#", "5")
    assert gather.attrib["actionOnEmptyResult"] == "true"
    assert gather[0].text == prompts.CRITICAL_NUMBER
    # "#" alone: Twilio posts an empty result, no Digits — the same as silence.
    root = call.press("#")

    assert tags(root) == ["Say", "Redirect"]
    assert root[0].text == prompts.CONNECTING_URGENT
    assert root[1].text == ROUTE_URGENT and root[1].attrib == {"method": "POST"}
    row = call_row(services, call.call_sid)
    assert (row.category, row.topic) == ("critical", "critical_server_failure")
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.draft["topic"] == "critical_server_failure"
    assert request.draft["priority"] == "critical"


@pytest.mark.usefixtures("sync_jobs")
def test_critical_failure_with_an_existing_ticket_marks_it_duplicated_by_phone(
    client: FlaskClient, services: Services
) -> None:
    organisation_id = add_contact(services, KNOWN_MOBILE)
    number = portal_ticket(services, organisation_id=organisation_id, key="CA-earlier")
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    call.start()
    call.press("3")
    root = call.press(number + "#")

    assert root[0].text == prompts.CRITICAL_DUPLICATED.format(number=say_digits(number))
    assert root[0].text.startswith("Звонок по заявке номер ")
    assert root[2].text == ROUTE_URGENT
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.draft["duplicate_of"] == number
    assert services.portal.get_ticket(number).duplicated_by_phone_at
    assert services.portal.get_ticket(number).priority == "critical"
    kinds = [e.kind for e in events(services, call.call_sid)]
    assert "phone_duplicate" in kinds
    call.hang_up()
    assert call_row(services, call.call_sid).outcome == "completed"


def test_another_organisations_ticket_is_not_duplicated_a_new_one_names_the_number(
    client: FlaskClient, services: Services
) -> None:
    add_contact(services, KNOWN_MOBILE)
    number = portal_ticket(services, organisation_id=None, key="CA-other")
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    call.start()
    call.press("3")
    root = call.press(number + "#")

    assert [say.text for say in root.iter("Say")] == [prompts.CONNECTING_URGENT]
    request = ticket_request(services, call.call_sid)
    assert request is not None and not request.draft.get("duplicate_of")
    assert request.draft["priority"] == "critical"
    assert f"Абонент набрал номер заявки №{number}" in request.draft["description"]
    assert services.portal.get_ticket(number).duplicated_by_phone_at is None


def test_an_unknown_ticket_number_is_said_and_asked_again(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    call.press("3")
    root = call.press("4242#")

    assert root[0].text == prompts.CRITICAL_NOT_FOUND.format(number="четыре два четыре два")
    assert_menu_gather(root, "critical", 3, num_digits=None)
    assert ticket_request(services, call.call_sid) is None


# ---------------------------------------------------------------- stolen vehicle


def test_stolen_vehicle_opens_a_ticket_with_the_plate_and_goes_urgent(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    asked = call.press("4")
    assert asked.find("Gather/Say") is not None
    assert asked.find("Gather/Say").text == prompts.STOLEN_VEHICLES  # type: ignore[union-attr]
    root = call.say("эм пятьсот пятьдесят пять эн эс сто девяносто девять")

    assert tags(root) == ["Say", "Say", "Say", "Redirect"]
    assert root[0].text == "Записала: эм, пять, пять, пять, эн, эс, один, девять, девять."
    assert root[1].text == prompts.STOLEN_NEW
    assert root[3].text == ROUTE_URGENT
    row = call_row(services, call.call_sid)
    assert (row.category, row.topic, row.vehicles) == ("stolen", "stolen_vehicle", ["М555НС199"])
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.draft["vehicles"] == ["М555НС199"]


# ---------------------------------------------------------------- ticket status


def test_status_of_the_callers_own_ticket_is_said_with_its_deadline(
    client: FlaskClient, services: Services
) -> None:
    organisation_id = add_contact(services, KNOWN_MOBILE)
    number = portal_ticket(services, organisation_id=organisation_id, key="CA-own")
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    call.start()
    asked = call.press("5")
    assert (
        "$OOV_CLASS_DIGIT_SEQUENCE"
        in assert_menu_gather(asked, "status_number", 2, num_digits=None).attrib["hints"]
    )
    root = call.say(f"заявка {number}")

    gather = assert_menu_gather(root, "status_done", 3)
    assert [say.text for say in gather] == [
        f"Заявка {say_digits(number)}. Статус: Новая.",
        "Срок решения — до восемнадцати часов по московскому времени, "
        "в понедельник, первого декабря.",
        prompts.STATUS_DONE_MENU,
    ]
    assert call_row(services, call.call_sid).category == "status"


def test_status_of_another_organisations_ticket_is_politely_refused(
    client: FlaskClient, services: Services
) -> None:
    add_contact(services, KNOWN_MOBILE)
    other = add_contact(services, "+79035554433", org="ООО «Другая»")
    number = portal_ticket(services, organisation_id=other, key="CA-other")
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    call.start()
    call.press("5")
    root = call.press(number + "#")

    gather = assert_menu_gather(root, "status_done", 3)
    assert [say.text for say in gather] == [prompts.STATUS_REFUSED, prompts.STATUS_DONE_MENU]
    unknown = call.press("1")
    assert_menu_gather(unknown, "status_number", 4, num_digits=None)
    refused = call.press("99999#")  # no such ticket: the same answer, nothing revealed
    assert [say.text for say in refused.iter("Say")][0] == prompts.STATUS_REFUSED


def test_a_solved_ticket_offers_the_objection_which_the_portal_records(
    client: FlaskClient, services: Services
) -> None:
    organisation_id = add_contact(services, KNOWN_MOBILE)
    number = portal_ticket(services, organisation_id=organisation_id, key="CA-solved")
    services.portal.update_ticket(number, status="Решена", author="Специалист")  # type: ignore[attr-defined]
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    call.start()
    call.press("5")
    root = call.press(number + "#")

    gather = assert_menu_gather(root, "status_done", 3)
    assert [say.text for say in gather] == [
        f"Заявка {say_digits(number)}. Статус: Решена.",
        "Заявка решена и закроется автоматически через два рабочих дня после решения.",
        prompts.STATUS_SOLVED_MENU,
    ]
    # Recorded once the step has committed; the redirect back reads the ticket to say so.
    assert tags(call.press("1")) == ["Redirect"]
    recorded = call.follow_redirect()
    assert [say.text for say in recorded.find("Gather")] == [  # type: ignore[union-attr]
        prompts.STATUS_OBJECTION_RECORDED,
        prompts.STATUS_DONE_MENU,
    ]
    entries = [e for e in services.portal.get_ticket(number).history if e.kind == "comment"]
    assert [e.text for e in entries] == [prompts.STATUS_OBJECTION_ENTRY.format(call=call.call_sid)]


@pytest.mark.parametrize("caller", ["anonymous", UNKNOWN_MOBILE])
def test_a_withheld_or_unknown_caller_is_offered_a_specialist_for_a_status(
    client: FlaskClient, services: Services, caller: str
) -> None:
    call = TwilioCall(client, caller=caller)
    call.start()
    root = call.press("5")

    gather = assert_menu_gather(root, "status_unknown_caller", 2)
    assert [say.text for say in gather] == [prompts.STATUS_UNKNOWN_CALLER]
    assert prompts.STATUS_REFUSED not in said(root)
    routed = call.silence()
    assert tags(routed) == ["Say", "Redirect"] and routed[1].text == ROUTE_CONSULTATION


def test_status_when_the_portal_is_down_offers_a_specialist(make_services: Any) -> None:
    from callcenter.app import create_app

    services = make_services(portal_url="http://127.0.0.1:9", portal_token="t")
    add_contact(services, KNOWN_MOBILE)
    client = create_app(services=services).test_client()
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    call.start()
    call.press("5")
    root = call.press("1042#")

    gather = assert_menu_gather(root, "status_unavailable", 3)
    assert [say.text for say in gather] == [prompts.STATUS_UNAVAILABLE]
    routed = call.silence()
    assert tags(routed) == ["Say", "Redirect"] and routed[1].text == ROUTE_CONSULTATION


# ---------------------------------------------------------------- hang-ups


@pytest.mark.usefixtures("sync_jobs")
def test_a_hang_up_mid_new_problem_still_opens_the_ticket_marked_interrupted(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    call.press("2")
    call.press("6")  # remote diagnostics, then the caller hangs up
    assert call.hang_up(duration="31").status_code == 204

    row = call_row(services, call.call_sid)
    assert (row.outcome, row.interrupted, row.topic) == ("interrupted", True, "remote_diagnostics")
    assert row.duration_seconds == 31
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.draft["interrupted"] is True
    assert (ticket_request(services, call.call_sid) or TicketRequest()).ticket_number


def test_a_hang_up_before_any_choice_is_logged_as_abandoned_for_a_callback(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    call.hang_up(duration="6")

    row = call_row(services, call.call_sid)
    assert (row.category, row.outcome, row.interrupted) == ("abandoned", "abandoned", False)
    assert ticket_request(services, call.call_sid) is None
    assert [e.kind for e in events(services, call.call_sid)][-2:] == ["status", "abandoned"]


def test_a_hang_up_before_the_topic_opens_no_ticket_and_waits_for_a_callback(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    call.press("2")
    call.hang_up(duration="12")

    row = call_row(services, call.call_sid)
    assert (row.category, row.outcome, row.interrupted) == ("incident", "abandoned", False)
    assert ticket_request(services, call.call_sid) is None
    assert [e.kind for e in events(services, call.call_sid)][-1] == "abandoned_after_choice"
    with services.sessions() as session:
        assert session.scalars(select(SmsMessage)).all() == []
        logged = get_call(session, call.call_sid)
        assert logged is not None
        problems = call_problems(logged)
        said_in_log = [entry.text for entry in timeline(logged)]
    assert problems == [NOT_CALLED_BACK]
    assert "Абонент положил трубку после выбора, ничего не сказав: заявка не открыта" in said_in_log


@pytest.mark.parametrize(("key", "topic"), [("3", "критический сбой"), ("4", "угон")])
def test_an_urgent_hang_up_before_a_word_sends_one_sms_to_the_on_duty_specialist(
    client: FlaskClient, services: Services, key: str, topic: str
) -> None:
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    call.start()
    call.press(key)
    call.hang_up(duration="9")

    row = call_row(services, call.call_sid)
    assert row.outcome == "abandoned"
    assert ticket_request(services, call.call_sid) is None

    def sms() -> list[SmsMessage]:
        with services.sessions() as session:
            return list(session.scalars(select(SmsMessage)))

    [message] = wait_for(sms)
    assert message.to == services.settings.duty_phone  # nobody on the roster
    assert message.body.startswith("SKAI ТП: пропущен срочный звонок")
    assert f"перезвоните {KNOWN_MOBILE}" in message.body
    assert topic in message.body.lower()


def test_a_withheld_urgent_hang_up_sends_no_sms(client: FlaskClient, services: Services) -> None:
    call = TwilioCall(client, caller="anonymous")
    call.start()
    call.press("3")
    call.hang_up(duration="9")

    assert call_row(services, call.call_sid).outcome == "abandoned"
    with services.sessions() as session:
        assert session.scalars(select(SmsMessage)).all() == []


@pytest.mark.both_databases  # the step's row lock and JSON state per dialect
def test_duplicated_and_out_of_order_status_callbacks_never_rewind_a_finished_call(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    call.press("2")
    call.press("6")
    assert call.status("in-progress", 1).status_code == 204
    assert call.hang_up(sequence=3).status_code == 204
    assert call.status("ringing", 0).status_code == 204  # late
    assert call.hang_up(sequence=3).status_code == 204  # duplicated
    assert call.status("in-progress", 2).status_code == 204  # late, after the end

    row = call_row(services, call.call_sid)
    assert (row.twilio_status, row.status_sequence, row.outcome) == ("completed", 3, "interrupted")
    status_events = [
        (e.kind, e.detail.get("status"), e.detail.get("reason"))
        for e in events(services, call.call_sid)
        if e.kind.startswith("status")
    ]
    assert status_events == [
        ("status", "in-progress", None),
        ("status", "completed", None),
        ("status_ignored", "ringing", "after_end"),
        ("status_ignored", "completed", "duplicate"),
        ("status_ignored", "in-progress", "after_end"),
    ]
    with services.sessions() as session:
        assert len(list(session.scalars(select(TicketRequest)))) == 1


def test_a_status_callback_for_an_unknown_call_logs_it(
    client: FlaskClient, services: Services
) -> None:
    params = fixture("status_completed", CallSid="CA" + "e" * 32, From="anonymous")
    assert signed_post(client, "/webhooks/voice/status", params).status_code == 204
    row = call_row(services, "CA" + "e" * 32)
    assert (row.caller_kind, row.category, row.outcome) == ("withheld", "abandoned", "abandoned")


# ---------------------------------------------------------------- odd caller IDs


@pytest.mark.parametrize(
    ("caller", "kind", "e164"),
    [
        ("anonymous", "withheld", None),
        ("+266696687", "withheld", None),
        ("sip:+79161234567@trunk.example.net", "sip", "+79161234567"),
        ("sip:reception@pbx.example.net", "sip", None),
        ("client:alice", "client", None),
        ("+442079460958", "foreign", "+442079460958"),
        ("12", "invalid", None),
    ],
)
def test_odd_caller_ids_are_logged_as_such_and_served_like_anyone(
    client: FlaskClient, services: Services, caller: str, kind: str, e164: str | None
) -> None:
    call = TwilioCall(client, caller=caller)
    assert_menu_gather(call.start(), "main_menu", 1)
    root = call.press("4")
    assert_menu_gather(root, "stolen_vehicles", 2, num_digits=None)

    row = call_row(services, call.call_sid)
    assert (row.caller_raw, row.caller_kind, row.caller_e164) == (caller, kind, e164)
    assert row.contact_id is None


# ---------------------------------------------------------------- replays and failures


@pytest.mark.both_databases  # the step's row lock and JSON state per dialect
def test_a_replayed_gather_does_not_advance_the_call_twice(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    action = call.gather_action()
    call.press("2")
    replay = signed_post(client, action, call.params("gather_digits", Digits="3"))

    root = parse_twiml(replay)
    assert_menu_gather(root, "topic", 2)  # the current step again, same turn
    row = call_row(services, call.call_sid)
    assert (row.category, row.state["step"], row.state["turn"]) == ("incident", "topic", 2)
    last = events(services, call.call_sid)[-1]
    assert (last.detail["result"], last.detail["current"]) == ("stale", "topic")


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("/webhooks/voice/incoming", "CallSid"),
        ("/webhooks/voice/step/main_menu?t=1", "CallSid"),
        ("/webhooks/voice/status", "CallStatus"),
        ("/webhooks/voice/recording-status", "RecordingSid"),
    ],
)
def test_a_malformed_webhook_gets_400_with_the_reason(
    client: FlaskClient, path: str, missing: str
) -> None:
    params = fixture("status_completed") if "status" in path else fixture("incoming_call")
    params.pop(missing, None)
    response = signed_post(client, path, params)

    assert response.status_code == 400
    assert missing in response.get_data(as_text=True)


def test_a_failing_step_still_answers_with_an_apology_and_the_duty_phone(
    client: FlaskClient, services: Services
) -> None:
    call = TwilioCall(client)
    call.start()
    with transaction(services.sessions) as session:
        row = session.scalars(select(Call).where(Call.call_sid == call.call_sid)).one()
        # A state no version of the IVR writes: the step must fail, the caller must not.
        row.state = {"step": "ticket_wait", "turn": 1, "wait_started": "not a time"}
    response = signed_post(client, f"{STEP}/ticket_wait?t=1", call.params("redirect"))

    root = parse_twiml(response)
    assert tags(root) == ["Say", "Dial"]
    assert root[0].text == prompts.APOLOGY
    dial = root[1]
    assert dial.text == services.settings.duty_phone
    assert dial.attrib["action"] == f"{TEST_PUBLIC_BASE}/webhooks/voice/fallback/dial-result"
    wait_for(lambda: any(e.kind == "fallback_step_error" for e in events(services, call.call_sid)))


def test_callcenter_clock_plays_a_short_pre_holiday_evening(settings: Settings) -> None:
    """CALLCENTER_CLOCK=2026-11-03T17:30:00+03:00 (the short day before 4 November, work
    ends at 17:00): the service built from the settings alone greets with the hours notice."""
    from callcenter.app import create_app
    from callcenter.web import EXTENSION

    for moment, after_hours in (("17:30", True), ("12:00", False)):
        start = datetime.fromisoformat(f"2026-11-03T{moment}:00+03:00")
        app = create_app(settings.with_(clock_start=start))
        try:
            root = TwilioCall(app.test_client()).start()
            assert ("Сейчас нерабочее время" in said(root)) is after_hours
            if after_hours:
                assert "Настройка — в четверг, пятого ноября, в девять тридцать" in said(root)
        finally:
            app.extensions[EXTENSION].close()
