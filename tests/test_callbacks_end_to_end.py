"""A call back end to end, as the issue's "done when" says: an abandoned call (played by
the simulator over HTTP, signed as Twilio signs) → a queue item → taken → «Перезвонить» →
Twilio's Calls API rings the specialist (Prism sees the POST to Calls.json) → the
specialist's leg presses 1 and the client is bridged (the leg's webhooks, signed) → the
result recorded → in the ticket's history on the portal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from callcenter.app import create_app
from callcenter.clock import fixed_clock
from callcenter.db import transaction
from callcenter.db.models import Call, CallbackItem, DialLeg, Shift, Staff, TicketRequest
from callcenter.services import Services
from callcenter.simulator.script import Answer, CallScript
from callcenter.simulator.twilio import Simulator
from callcenter.telephony.client import TwilioExchange, TwilioTelephony
from tests.conftest import DEFAULT_NOW, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE
from tests.console_helpers import add_user, csrf_of, login
from tests.ticket_pipeline import serving
from tests.twilio_requests import parse_twiml, said, signed_post

CLIENT = "+79161234567"
SPECIALIST_PHONE = "+79160000001"
LINE = "+78002506077"


def _roster(services: Services) -> None:
    with transaction(services.sessions) as session:
        smirnova = Staff(
            key="smirnova", name="Смирнова Елена", role="specialist", phones=[SPECIALIST_PHONE]
        )
        head = Staff(
            key="orlova", name="Орлова Ольга", role="head", phones=["+79160000009"], sms=None
        )
        session.add_all([smirnova, head])
        session.flush()
        session.add(
            Shift(
                staff_id=smirnova.id,
                duty="both",
                pattern="working_days",
                start_local="09:30",
                end_local="18:00",
                chain_order=1,
            )
        )


def test_an_abandoned_call_is_called_back_and_the_result_is_on_the_ticket(
    make_services: Callable[..., Services], run_jobs_at_once: Any, prism_url: str
) -> None:
    svc = make_services(twilio_api_base_url=prism_url)
    exchanges: list[TwilioExchange] = []
    # The real adapter against Prism, reporting what Twilio would have received.
    svc.__dict__["telephony"] = TwilioTelephony(
        TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, prism_url, on_exchange=exchanges.append
    )
    run_jobs_at_once(svc)
    _roster(svc)

    # 1. A consultation: the caller gives up while the specialist's phone rings.
    with serving(svc) as url:
        simulator = Simulator(
            url, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE, clock=fixed_clock(DEFAULT_NOW)
        )
        transcript = simulator.run(
            # Requests: the call, the menu, the redirect to routing; then the <Dial> rings.
            CallScript(from_number=CLIENT, answers=(Answer.press("1"),), hangup_after=3)
        )
    assert transcript.errors == [], transcript.errors
    with svc.sessions() as session:
        call = session.scalars(select(Call)).one()
        assert (call.category, call.routing_outcome) == ("consultation", "caller_hung_up")
        request = session.scalar(select(TicketRequest).where(TicketRequest.call_id == call.id))
        assert request is not None and request.ticket_number is not None
        ticket_number = request.ticket_number

    # 2. The queue shows it to the specialist, who takes it and presses «Перезвонить».
    client = create_app(services=svc).test_client()
    add_user(svc, "smirnova", "specialist")
    login(client, "smirnova")
    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "Консультация без ответа" in page and "+7 916 123-45-67" in page
    with svc.sessions() as session:
        item_id = session.scalars(select(CallbackItem.id)).one()
    token = csrf_of(client)
    client.post(f"/console/callbacks/{item_id}/take", data={"csrf_token": token})
    client.post(f"/console/callbacks/{item_id}/dial", data={"csrf_token": token})
    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "Звоним вам на +7 916 000-00-01" in page

    # 3. Prism received the Calls API request: the specialist's phone, from the line the
    #    client called, TwiML and status callbacks under our public URL.
    calls = [e for e in exchanges if e.method == "POST" and e.path.endswith("/Calls.json")]
    assert len(calls) == 1
    sent = calls[0]
    assert sent.status == 201
    assert sent.path == f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Calls.json"
    assert (sent.form["To"], sent.form["From"]) == (SPECIALIST_PHONE, LINE)
    assert sent.form["Url"] == f"{TEST_PUBLIC_BASE}/webhooks/callbacks/{item_id}/specialist"
    assert sent.form["StatusCallback"] == f"{TEST_PUBLIC_BASE}/webhooks/callbacks/{item_id}/status"
    with svc.sessions() as session:
        item = session.get(CallbackItem, item_id)
        assert item is not None and item.status == "dialing"
        leg_sid = item.specialist_call_sid
    assert leg_sid

    # 4. Twilio's requests for the specialist's leg: answered → "press 1" → the client.
    base = {
        "CallSid": leg_sid,
        "AccountSid": TEST_ACCOUNT_SID,
        "From": LINE,
        "To": SPECIALIST_PHONE,
    }
    hooks = f"/webhooks/callbacks/{item_id}"
    signed_post(client, f"{hooks}/status", {**base, "CallStatus": "ringing"})
    prompt = parse_twiml(
        signed_post(client, f"{hooks}/specialist", {**base, "CallStatus": "in-progress"})
    )
    gather = prompt.find("Gather")
    assert gather is not None and gather.get("numDigits") == "1"
    assert said(prompt).startswith("Перезвон клиенту из очереди. Нажмите 1")
    bridge = parse_twiml(signed_post(client, f"{hooks}/answer", {**base, "Digits": "1"}))
    dial = bridge.find("Dial")
    assert dial is not None
    assert dial.get("callerId") == LINE
    assert dial.get("record") == "record-from-answer-dual"
    assert dial.get("action") == f"{TEST_PUBLIC_BASE}{hooks}/bridge"
    number = dial.find("Number")
    assert number is not None and number.text == CLIENT
    child = {"CallSid": "CA" + "c1" * 16, "ParentCallSid": leg_sid, "AccountSid": TEST_ACCOUNT_SID}
    signed_post(client, f"{hooks}/client-status", {**child, "CallStatus": "ringing"})
    signed_post(client, f"{hooks}/client-status", {**child, "CallStatus": "in-progress"})
    signed_post(client, f"{hooks}/client-status", {**child, "CallStatus": "completed"})
    # Late and out of order: a "ringing" after the end changes nothing.
    signed_post(client, f"{hooks}/client-status", {**child, "CallStatus": "ringing"})
    ended = parse_twiml(
        signed_post(
            client,
            f"{hooks}/bridge",
            {**base, "DialCallStatus": "completed", "DialCallSid": child["CallSid"]},
        )
    )
    assert said(ended) == "Разговор завершён. Отметьте результат в консоли."
    signed_post(client, f"{hooks}/status", {**base, "CallStatus": "completed"})

    # 5. The result, with a note.
    done = client.post(
        f"/console/callbacks/{item_id}/result",
        data={"csrf_token": token, "result": "reached", "note": "Объяснила, как выгрузить отчёт"},
    )
    assert done.status_code == 302

    with svc.sessions() as session:
        item = session.get(CallbackItem, item_id)
        assert item is not None
        assert (item.status, item.result, item.attempts, item.bridge_status) == (
            "done",
            "reached",
            1,
            "completed",
        )
        legs = session.execute(
            select(DialLeg.purpose, DialLeg.number, DialLeg.result).order_by(DialLeg.position)
        ).all()
    # Both legs of the call back are the call's legs, after the one the caller gave up on.
    assert [tuple(leg) for leg in legs][-2:] == [
        ("callback_specialist", SPECIALIST_PHONE, "completed"),
        ("callback_client", CLIENT, "completed"),
    ]
    history = svc.portal.get_ticket(ticket_number).history
    assert any(
        entry.text
        == "Перезвон клиенту (попытка 1): дозвонились. Заметка: Объяснила, как выгрузить отчёт"
        and entry.author == "smirnova"
        for entry in history
    ), [entry.text for entry in history]
    call_page = client.get(f"/console/calls/{transcript.call_sid}").get_data(as_text=True)
    # The call page's path: every step of the call back, with who did it.
    for line in (
        "Перезвон взят: smirnova",
        "Перезвон: звоним специалисту smirnova на +79160000001",
        "Перезвон (smirnova): нажата 1 — соединяем с клиентом",
        "Перезвон: звонок клиенту — завершён",
        "Результат перезвона (попытка 1, smirnova): дозвонились. "
        "Заметка: Объяснила, как выгрузить отчёт",
    ):
        assert line in call_page, line
