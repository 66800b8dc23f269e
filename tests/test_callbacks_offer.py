"""The call-back queue offered to a consultation nobody answered (issue 15, item 1), played
by the simulator over HTTP exactly as Twilio plays our TwiML: during working hours the
caller hears «…нажмите 1 — вы третий в очереди…» inside a `<Gather>`; 1 puts the call in
the queue (once, however often Twilio repeats the request) and ends the call politely;
no key falls through to the voicemail, as Twilio does
(https://www.twilio.com/docs/voice/twiml/gather: without input Twilio goes on to the next
verb; "#" alone is no input); at night the caller hears the voicemail as before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from callcenter.app import create_app
from callcenter.callbacks import queue
from callcenter.calllog.timeline import timeline
from callcenter.clock import fixed_clock
from callcenter.db import transaction
from callcenter.db.models import Call, CallbackItem, CallEvent
from callcenter.ivr import prompts
from callcenter.regulation.speech import say_phone
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.simulator.script import Answer, CallScript
from callcenter.simulator.twilio import SentRequest, Simulator, Transcript
from tests.conftest import DEFAULT_NOW, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE, MutableClock
from tests.console_helpers import add_call, add_user, login
from tests.ticket_pipeline import serving

ROSTER = Path(__file__).parent / "fixtures" / "roster" / "office.yaml"
CLIENT = "+79031112233"
# Everyone on consultation duty at 11:00 on a working Thursday (the office roster) is rung
# at once; nobody answers.
NOBODY = ("no-answer", "no-answer", "no-answer")
NIGHT = datetime.fromisoformat("2025-11-27T02:30:00+03:00")

OFFER_THIRD = (
    "К сожалению, сейчас все специалисты заняты. Чтобы мы перезвонили вам в порядке "
    "очереди, нажмите 1 — вы третий в очереди. Или оставьте сообщение после сигнала."
)
LEAVE_MESSAGE = prompts.ROUTING_LEAVE_MESSAGE


@pytest.fixture
def svc(make_services: Callable[..., Services], run_jobs_at_once: Any, prism_url: str) -> Services:
    """The service with the office roster, jobs run at once, SMS to Prism."""
    services: Services = make_services(twilio_api_base_url=prism_url)
    run_jobs_at_once(services)
    with transaction(services.sessions) as session:
        import_roster(session, ROSTER.read_text(encoding="utf-8"))
    return services


def two_waiting_items(services: Services) -> None:
    """Two clients already waiting in the queue, from calls earlier this morning."""
    with transaction(services.sessions) as session:
        for n, minutes in ((1, 40), (2, 20)):
            add_call(
                session,
                "CA" + f"b{n}" * 16,
                DEFAULT_NOW - timedelta(minutes=minutes),
                category="incident",
                outcome="abandoned",
                caller_e164=f"+7916000000{n}",
            )
        added = queue.refresh_queue(
            session, now=services.clock(), calendar=services.calendar, sla_minutes=30
        )
    assert added == 2


def play(url: str, script: CallScript, at: datetime = DEFAULT_NOW) -> Transcript:
    simulator = Simulator(
        url, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE, clock=fixed_clock(at)
    )
    transcript = simulator.run(script)
    assert transcript.errors == [], transcript.errors
    return transcript


def call_of(services: Services, sid: str) -> Call:
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
        session.expunge(call)
        return call


def items_of(services: Services, sid: str) -> list[tuple[str, str]]:
    with services.sessions() as session:
        rows = session.execute(
            select(CallbackItem.reason, CallbackItem.status)
            .join(Call, Call.id == CallbackItem.call_id)
            .where(Call.call_sid == sid)
        ).all()
        return [(reason, status) for reason, status in rows]


def events_of(services: Services, sid: str) -> list[str]:
    with services.sessions() as session:
        return list(
            session.scalars(
                select(CallEvent.kind)
                .join(Call, Call.id == CallEvent.call_id)
                .where(Call.call_sid == sid)
                .order_by(CallEvent.id)
            )
        )


def path_of(services: Services, sid: str) -> list[str]:
    """The call's path as the call page words it."""
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
        return [entry.text for entry in timeline(call)]


def offer_requests(t: Transcript) -> list[SentRequest]:
    return [r for r in t.requests if r.url.endswith("/webhooks/voice/route/callback")]


def resend(request: SentRequest) -> requests.Response:
    """Twilio delivering the same webhook again (same URL, form and signature)."""
    return requests.post(
        request.sent_to,
        data=request.params,
        headers={"X-Twilio-Signature": request.signature},
        timeout=10,
    )


@pytest.mark.both_databases
def test_pressing_1_puts_the_caller_third_in_the_queue_once(svc: Services) -> None:
    two_waiting_items(svc)
    with serving(svc) as url:
        t = play(
            url,
            CallScript(
                from_number=CLIENT,
                answers=(Answer.press("1"), Answer.press("1")),
                dial_results=NOBODY,
            ),
        )
        [answer] = offer_requests(t)
        assert answer.params["Digits"] == "1"
        again = resend(answer)

    assert OFFER_THIRD in t.heard
    booked = prompts.ROUTING_CALLBACK_BOOKED.format(number=say_phone(CLIENT))
    assert booked == (
        "Вы в очереди на обратный звонок. Мы перезвоним вам на номер восемь, девять ноль три, "
        "один один один, два два, три три."
    )
    assert booked in t.heard
    # No message is asked for; the call ends with a goodbye.
    assert LEAVE_MESSAGE not in t.heard and t.requests_of("record") == []
    assert t.heard[-1] == prompts.GOODBYE and t.ended_by == "hangup"

    # One item, the caller's request, third after the two already waiting.
    assert items_of(svc, t.call_sid) == [(queue.REQUESTED, queue.OPEN)]
    with svc.sessions() as session:
        waiting = queue.list_items(session)
        assert [item.call.call_sid for item in waiting][2] == t.call_sid
        assert len(waiting) == 3

    # The same webhook delivered twice: the same words, still one item.
    assert again.status_code == 200
    assert booked in again.text
    assert items_of(svc, t.call_sid) == [(queue.REQUESTED, queue.OPEN)]
    assert events_of(svc, t.call_sid).count("callback_requested") == 1

    # Once the call ends the queue's own rules add nothing for it.
    with transaction(svc.sessions) as session:
        queue.refresh_queue(session, now=svc.clock(), calendar=svc.calendar, sla_minutes=30)
    assert items_of(svc, t.call_sid) == [(queue.REQUESTED, queue.OPEN)]

    # The console: the queue shows why, the call's path says what happened.
    client = create_app(services=svc).test_client()
    add_user(svc, "ivanov", "specialist")
    login(client, "ivanov")
    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "Просил перезвонить" in page and "+7 903 111-22-33" in page
    path = client.get(f"/console/calls/{t.call_sid}").get_data(as_text=True)
    assert "Предложен перезвон в порядке очереди (третий в очереди) или сообщение" in path
    assert "Абонент просил перезвонить: третий в очереди перезвонов" in path
    # What was offered is said once, as it was: not "a voicemail" before the queue's offer.
    assert "Специалисты не ответили" in path
    assert "предложено голосовое сообщение" not in path


@pytest.mark.parametrize("no_input", [Answer.silence(), Answer.press("#")], ids=["silence", "#"])
def test_no_key_at_the_offer_is_the_voicemail_as_before(svc: Services, no_input: Answer) -> None:
    with serving(svc) as url:
        t = play(
            url,
            CallScript(
                from_number=CLIENT, answers=(Answer.press("1"), no_input), dial_results=NOBODY
            ),
        )

    first = (
        "К сожалению, сейчас все специалисты заняты. Чтобы мы перезвонили вам в порядке "
        "очереди, нажмите 1 — вы первый в очереди. Или оставьте сообщение после сигнала."
    )
    heard = t.heard
    assert heard.index(first) < heard.index(LEAVE_MESSAGE)
    # Twilio never posts the offer's action without input: it went on to the <Record>.
    assert offer_requests(t) == [] and len(t.requests_of("record")) == 1
    assert prompts.ROUTING_MESSAGE_THANKS in heard
    call = call_of(svc, t.call_sid)
    assert (call.routing_outcome, call.recording_sid is not None) == ("voicemail", True)
    assert items_of(svc, t.call_sid) == []  # the rules make its item once the call is over
    assert "callback_requested" not in events_of(svc, t.call_sid)


def test_another_key_declines_and_the_caller_leaves_a_message(svc: Services) -> None:
    with serving(svc) as url:
        t = play(
            url,
            CallScript(
                from_number=CLIENT,
                answers=(Answer.press("1"), Answer.press("2")),
                dial_results=NOBODY,
            ),
        )

    [declined] = offer_requests(t)
    assert declined.params["Digits"] == "2"
    assert t.heard.count(LEAVE_MESSAGE) == 1 and len(t.requests_of("record")) == 1
    assert call_of(svc, t.call_sid).routing_outcome == "voicemail"
    assert items_of(svc, t.call_sid) == []
    assert "Перезвон не выбран (клавиша «2») — голосовое сообщение" in path_of(svc, t.call_sid)


def test_at_night_nothing_is_offered(svc: Services, clock: MutableClock) -> None:
    two_waiting_items(svc)
    clock.now = NIGHT
    with serving(svc) as url:
        # The duty specialist does not answer.
        t = play(
            url,
            CallScript(
                from_number=CLIENT, answers=(Answer.press("1"),), dial_results=("no-answer",)
            ),
            at=NIGHT,
        )

    assert (
        "К сожалению, сейчас все специалисты заняты. Мы перезвоним вам. " + LEAVE_MESSAGE
    ) in t.heard
    assert not any("в очереди" in heard for heard in t.heard)
    assert all("/route/callback" not in r.body for r in t.requests)
    assert len(t.requests_of("record")) == 1
    assert "callback_offered" not in events_of(svc, t.call_sid)
    assert "Специалисты не ответили: предложено голосовое сообщение" in path_of(svc, t.call_sid)


def test_a_withheld_caller_types_the_number_to_be_called_back_on(svc: Services) -> None:
    with serving(svc) as url:
        t = play(
            url,
            CallScript(
                from_number="anonymous",
                # Consultation; no number in the menu's question; then one at the offer,
                # mistyped first.
                answers=(
                    Answer.press("1"),
                    Answer.silence(),
                    Answer.press("123#"),
                    Answer.press("89161234567#"),
                ),
                dial_results=NOBODY,
            ),
        )

    typing = (
        "К сожалению, сейчас все специалисты заняты. Ваш номер скрыт. Чтобы мы перезвонили "
        "вам в порядке очереди, наберите номер телефона и нажмите решётку — вы первый в "
        "очереди. Или оставьте сообщение после сигнала."
    )
    assert typing in t.heard
    assert (
        "Это не похоже на российский номер телефона. Ваш номер скрыт. Чтобы мы перезвонили "
        "вам в порядке очереди, наберите номер телефона и нажмите решётку — вы первый в "
        "очереди. Или оставьте сообщение после сигнала."
    ) in t.heard
    assert (
        "Вы в очереди на обратный звонок. Мы перезвоним вам на номер восемь, девять один "
        "шесть, один два три, четыре пять, шесть семь."
    ) in t.heard
    assert t.requests_of("record") == []
    assert items_of(svc, t.call_sid) == [(queue.REQUESTED, queue.OPEN)]
    with svc.sessions() as session:
        [item] = queue.list_items(session)
        assert queue.number_to_call(item.call) == "+79161234567"

    client = create_app(services=svc).test_client()
    add_user(svc, "ivanov", "specialist")
    login(client, "ivanov")
    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "+7 916 123-45-67 (набран абонентом, номер скрыт)" in page
    path = path_of(svc, t.call_sid)
    assert (
        "Номер скрыт: предложено набрать номер для перезвона (первый в очереди) или оставить "
        "сообщение"
    ) in path
    assert "Набранный номер для перезвона не распознан (клавиша «123»)" in path
    assert (
        "Абонент просил перезвонить: первый в очереди перезвонов, на номер, который набрал" in path
    )


def test_a_withheld_caller_who_typed_a_number_in_the_menu_presses_1(svc: Services) -> None:
    with serving(svc) as url:
        t = play(
            url,
            CallScript(
                from_number="anonymous",
                answers=(Answer.press("1"), Answer.press("89161234567#"), Answer.press("1")),
                dial_results=NOBODY,
            ),
        )

    assert (
        "К сожалению, сейчас все специалисты заняты. Чтобы мы перезвонили вам в порядке "
        "очереди, нажмите 1 — вы первый в очереди. Или оставьте сообщение после сигнала."
    ) in t.heard
    assert prompts.ROUTING_CALLBACK_BOOKED.format(number=say_phone("+79161234567")) in t.heard
    assert items_of(svc, t.call_sid) == [(queue.REQUESTED, queue.OPEN)]
    with svc.sessions() as session:
        count = session.scalar(select(func.count(CallbackItem.id)))
    assert count == 1
