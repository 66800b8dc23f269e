"""Repeat callers over the IVR's webhooks: a caller with an open ticket is offered to add to
it in the first `<Gather>`; the recorded addition goes onto that ticket (a comment with the
recording and the call's link, once), the caller hears its status and deadline, and no new
ticket is opened. The built-in portal, jobs run as soon as their step commits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from callcenter.access.tokens import create_token
from callcenter.app import create_app
from callcenter.cli.simulate import LocalCallLog
from callcenter.db import transaction
from callcenter.db.models import SmsMessage, Ticket
from callcenter.ivr import prompts
from callcenter.ivr.conversation import OPEN_TICKETS_SECONDS
from callcenter.regulation.speech import say_digits
from callcenter.services import Services
from callcenter.simulator.script import Answer, CallScript
from callcenter.simulator.twilio import Simulator, format_call_summary
from tests.conftest import DEFAULT_NOW, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE
from tests.console_helpers import add_user, login
from tests.job_runner import SynchronousJobRunner
from tests.misbehaving_portal import Script
from tests.test_console_calls import text_of
from tests.test_portal_api import PREFIX, TOKEN
from tests.test_portal_http import serve_app
from tests.test_voice_webhooks import (
    KNOWN_MOBILE,
    STEP,
    UNKNOWN_MOBILE,
    add_contact,
    assert_menu_gather,
    call_row,
    events,
    tags,
    ticket_request,
)
from tests.twilio_requests import TwilioCall, fixture, signed_post


def tickets_on_portal(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Ticket)) or 0)


def first_call(client: FlaskClient, services: Services, caller: str) -> str:
    """A new problem, described and ticketed; returns the ticket's number."""
    call = TwilioCall(client, caller=caller)
    call.start()
    # Said, not keyed: with open tickets offered, keys 1-3 add to them.
    call.say("новая проблема")
    call.press("1")
    call.press("4")
    call.press("#")  # no plate
    if call.twiml is not None and call.twiml.find("Record") is None:
        call.say("Иван Петров, Ромашка")
    call.record()
    call.hang_up()
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.ticket_number
    return request.ticket_number


def recording_callback(client: FlaskClient, call: TwilioCall, sid: str, kind: str) -> Any:
    url = f"https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/{sid}"
    params = fixture("recording_status", CallSid=call.call_sid, RecordingSid=sid, RecordingUrl=url)
    return signed_post(client, f"/webhooks/voice/recording-status?kind={kind}", params)


@pytest.mark.both_databases  # the step's row lock, the portal's lookup beside it
def test_the_second_call_from_a_known_contact_adds_to_the_open_ticket_and_opens_nothing(
    client: FlaskClient, services: Services, sync_jobs: SynchronousJobRunner
) -> None:
    add_contact(services, KNOWN_MOBILE)
    number = first_call(client, services, KNOWN_MOBILE)
    assert tickets_on_portal(services) == 1

    call = TwilioCall(client, caller=KNOWN_MOBILE)
    offer = call.start()
    gather = assert_menu_gather(offer, "repeat_offer", 1)
    assert [say.text for say in gather][1:] == [
        f"У вас открыта заявка номер {say_digits(number)}, статус — новая. "
        "Чтобы дополнить её, нажмите 1.",
        prompts.REPEAT_OTHERWISE,
    ]
    asked = call.press("1")
    assert tags(asked) == ["Say", "Record", "Redirect"]
    record = asked.find("Record")
    assert record is not None and record.attrib["action"] == f"{STEP}/addition?t=2"
    assert record.attrib["recordingStatusCallback"] == (
        f"{TEST_PUBLIC_BASE}/webhooks/voice/recording-status?kind=addition"
    )
    heard = call.record(sid="RE" + "a" * 32, duration="17")
    done = assert_menu_gather(heard, "addition_done", 3)
    assert [say.text for say in done] == [
        f"Спасибо, ваше дополнение будет приложено к заявке номер {say_digits(number)}.",
        "Статус заявки — новая.",
        "Срок решения — в четверг, четвёртого декабря, в одиннадцать часов по московскому времени.",
        prompts.ADDITION_DONE_MENU,
    ]
    # Twilio's recording callback for the same recording, late: attached once all the same.
    assert recording_callback(client, call, "RE" + "a" * 32, "addition").status_code == 204
    call.silence()
    call.hang_up()

    assert tickets_on_portal(services) == 1
    ticket = services.portal.get_ticket(number)
    additions = [
        e for e in ticket.history if e.kind == "attachment" and "Дополнение" in (e.text or "")
    ]
    assert len(additions) == 1
    [entry] = additions
    assert entry.text is not None
    assert f"Звонок: {TEST_PUBLIC_BASE}/console/calls/{call.call_sid}" in entry.text
    assert entry.attachment_url is not None and entry.attachment_url.endswith(
        "RE" + "a" * 32 + ".mp3"
    )
    assert [e.kind for e in ticket.history].count("attachment") == 2  # the first call's, this

    request = ticket_request(services, call.call_sid)
    assert request is not None
    assert (request.status, request.ticket_number) == ("done", number)
    assert request.draft["addition_to"] == number
    row = call_row(services, call.call_sid)
    assert (row.category, row.outcome) == ("addition", "completed")
    assert row.state["related_ticket"] == number
    assert "addition" in [e.kind for e in events(services, call.call_sid)]
    # /api/calls names the ticket the call was about.
    with transaction(services.sessions) as session:
        secret = create_token(session, "tests", now=DEFAULT_NOW).secret
    api = client.get(
        f"/api/calls/{call.call_sid}", headers={"Authorization": f"Bearer {secret}"}
    ).get_json()
    assert (api["category"], api["related_ticket"], api["ticket_number"]) == (
        "addition",
        number,
        number,
    )
    # No "your ticket is registered" SMS for an addition.
    with services.sessions() as session:
        keys = list(session.scalars(select(SmsMessage.key)))
    assert not any(key.startswith(f"ticket-request:{request.id}:") for key in keys)


def test_the_same_number_is_enough_and_silence_goes_on_to_the_main_menu(
    client: FlaskClient, services: Services, sync_jobs: SynchronousJobRunner
) -> None:
    number = first_call(client, services, UNKNOWN_MOBILE)
    call = TwilioCall(client, caller=UNKNOWN_MOBILE)
    offer = call.start()
    assert_menu_gather(offer, "repeat_offer", 1)
    assert say_digits(number) in (offer.find("Gather")[1].text or "")  # type: ignore[index]

    menu = call.silence()
    gather = assert_menu_gather(menu, "main_menu", 2)
    assert [say.text for say in gather] == [prompts.MAIN_MENU]
    assert call.press("5").find("Gather") is not None  # the main menu works as ever
    assert call_row(services, call.call_sid).category == "status"


def test_no_offer_for_a_solved_ticket_or_a_stranger(
    client: FlaskClient, services: Services, sync_jobs: SynchronousJobRunner
) -> None:
    add_contact(services, KNOWN_MOBILE)
    number = first_call(client, services, KNOWN_MOBILE)
    services.portal.update_ticket(number, status="Решена")  # type: ignore[attr-defined]

    for caller in (KNOWN_MOBILE, "+79035554433", "anonymous"):
        call = TwilioCall(client, caller=caller)
        assert_menu_gather(call.start(), "main_menu", 1)


def test_several_open_tickets_the_latest_three_each_by_its_key(
    client: FlaskClient, services: Services, sync_jobs: SynchronousJobRunner
) -> None:
    add_contact(services, KNOWN_MOBILE)
    numbers = []
    for _ in range(4):
        numbers.append(first_call(client, services, KNOWN_MOBILE))
    call = TwilioCall(client, caller=KNOWN_MOBILE)
    offer = call.start()
    texts = [say.text or "" for say in assert_menu_gather(offer, "repeat_offer", 1)]
    assert texts[1] == prompts.REPEAT_SEVERAL
    newest = list(reversed(numbers))[:3]
    for key, (text, number) in enumerate(zip(texts[2:5], newest, strict=True), start=1):
        assert text.startswith(f"Заявка номер {say_digits(number)}, статус — новая")
        assert text.endswith(f"нажмите {key}.")
    call.press("2")
    call.record()
    call.hang_up()
    assert tickets_on_portal(services) == 4
    request = ticket_request(services, call.call_sid)
    assert request is not None and request.ticket_number == newest[1]


def test_calls_about_a_ticket_show_on_the_call_page_and_the_ticket_page(
    client: FlaskClient, services: Services, sync_jobs: SynchronousJobRunner
) -> None:
    add_contact(services, KNOWN_MOBILE)
    number = first_call(client, services, KNOWN_MOBILE)
    # A second call adds to it; a third asks its status (said, as a returning caller may).
    adding = TwilioCall(client, caller=KNOWN_MOBILE)
    adding.start()
    adding.press("1")
    adding.record()
    adding.hang_up()
    asking = TwilioCall(client, caller=KNOWN_MOBILE)
    asking.start()
    asking.say("статус заявки")
    asking.press(number + "#")
    asking.hang_up()

    add_user(services, "head", "supervisor")
    assert login(client, "head").status_code == 302
    call_page = text_of(client.get(f"/console/calls/{adding.call_sid}").get_data(as_text=True))
    assert (
        f"Звонок по существующей заявке №{number} : абонент дополнил её, новая заявка не открыта."
        in call_page
    )
    assert f"приветствие; открытые заявки абонента: №{number} — предложено дополнить" in call_page
    assert f"записано дополнение к заявке №{number}, назван статус «Новая» и срок" in call_page
    status_page = text_of(client.get(f"/console/calls/{asking.call_sid}").get_data(as_text=True))
    assert f"Звонок по существующей заявке №{number} : абонент узнал её статус." in status_page

    ticket_page = text_of(client.get(f"/console/tickets/{number}").get_data(as_text=True))
    calls = ticket_page.split("Звонки по заявке", 1)[1].split("История", 1)[0]
    assert calls.count("+7 916 111-22-33") == 3
    assert "открыл заявку" in calls and "дополнение" in calls and "узнал статус" in calls
    assert "Дополнение к заявке №" in ticket_page.split("История", 1)[1]


# ---------------------------------------------------------------- the simulator


def test_the_simulator_plays_a_caller_with_an_open_ticket(
    make_services: Callable[..., Services],
) -> None:
    """What the README shows: a first call leaves a ticket, the same number calls again,
    presses 1 and records an addition; the service is served over real HTTP, the calls are
    played by `callcenter simulate`'s core exactly as Twilio would."""
    services = make_services(builtin_portal_token=TOKEN)
    for base_url in serve_app(services):
        root = base_url.removesuffix(PREFIX)
        simulator = Simulator(root, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE)
        log = LocalCallLog(services)
        first = simulator.run(
            CallScript(
                answers=(
                    *map(Answer.press, "241"),
                    Answer.say("А123ВС77"),
                    Answer.say("Иван Петров, Ромашка"),
                )
            ),
            call_log=log,
        )
        assert first.errors == [], first.text()
        assert first.call is not None and first.call["ticket_state"] == "done"
        number = first.call["ticket_number"]

        again = simulator.run(CallScript(answers=(Answer.press("1"),)), call_log=log)
        assert again.errors == [], again.text()
        heard = " ".join(again.heard)
        assert f"У вас открыта заявка номер {say_digits(number)}, статус — новая." in heard
        assert f"дополнение будет приложено к заявке номер {say_digits(number)}" in heard
        assert "по московскому времени" in heard
        assert again.call is not None
        summary = format_call_summary(again.call)
        assert f"  дополнение к заявке № {number} (done), новая заявка не открыта" in summary
        assert tickets_on_portal(services) == 1
        added = [
            e for e in services.portal.get_ticket(number).history if "Дополнение" in (e.text or "")
        ]
        assert len(added) == 1


def test_a_customer_portal_that_hangs_holds_the_greeting_for_its_second_not_for_ten(
    make_services: Callable[..., Services],
    misbehaving: tuple[Script, str],
) -> None:
    """The customer's portal (over HTTP) is asked for a caller's open tickets on a lookup
    thread the caller stops waiting for after `OPEN_TICKETS_SECONDS`: a portal that hangs
    until the adapter's 10 s read timeout keeps the caller in silence for about a second,
    and the caller hears the main menu as anyone else."""
    script, base_url = misbehaving
    script.hang = True
    services = make_services(portal_url=base_url, portal_token="t0ken")
    call = TwilioCall(create_app(services=services).test_client(), caller=UNKNOWN_MOBILE)

    started = time.monotonic()
    greeting = call.start()
    waited = time.monotonic() - started

    assert_menu_gather(greeting, "main_menu", 1)
    assert [request["path"].split("?")[0] for request in script.requests] == ["/api/v1/tickets"]
    assert waited >= OPEN_TICKETS_SECONDS  # it was asked, and waited for
    assert waited < OPEN_TICKETS_SECONDS + 4  # not for the portal's 10 s
