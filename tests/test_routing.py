"""The routing domain without Flask: dial plans, the chain's state machine on the call
row, leg logging in any order, and the chain alerts (sent once, retried when Twilio is
unreachable)."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.calls.store import get_or_create_call
from callcenter.clock import MOSCOW
from callcenter.db import transaction
from callcenter.db.models import Call, DialLeg, SmsMessage, TicketRequest
from callcenter.roster.importer import import_roster
from callcenter.roster.on_duty import OnDuty, Person
from callcenter.routing import chain as routing
from callcenter.routing.alerts import send_chain_alerts
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.telephony.client import TwilioTelephony
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN

# Leg callbacks in any order (row locks) and alerts sent once (ON CONFLICT): per dialect.
pytestmark = pytest.mark.both_databases

NOW = datetime(2025, 11, 27, 11, 0, tzinfo=MOSCOW)
SETTINGS = Settings(duty_phone="+79990000000")

IVANOV = Person("ivanov", "Иванов", "specialist", ("+79123456701",), "+79123456701")
PETROVA = Person(
    "petrova", "Петрова", "specialist", ("+79123456702", "+78126077750"), "+79123456702"
)
SIDOROV = Person("sidorov", "Сидоров", "specialist", ("+79123456703",), "+79123456713")
HEAD = Person("smirnova", "Смирнова", "head", ("+79123456709",), "+79123456709")


def duty(
    working: bool,
    consultation: tuple[Person, ...] = (),
    chain: tuple[Person, ...] = (),
    head: Person | None = HEAD,
) -> OnDuty:
    return OnDuty(NOW, working, consultation, chain, head)


def numbers(plan: list[list[routing.Target]]) -> list[list[str]]:
    return [[t.number for t in step] for step in plan]


# ---------------------------------------------------------------- plans


def test_consultations_in_working_hours_ring_everyone_at_once() -> None:
    plan = routing.consultation_plan(duty(True, (IVANOV, PETROVA), (SIDOROV,)), SETTINGS)
    assert numbers(plan) == [["+79123456701", "+79123456702", "+78126077750"]]
    assert [t.staff_key for t in plan[0]] == ["ivanov", "petrova", "petrova"]


def test_consultations_after_hours_ring_the_duty_specialist() -> None:
    after_hours = routing.consultation_plan(duty(False, (SIDOROV, PETROVA)), SETTINGS)
    assert numbers(after_hours) == [["+79123456703"]]
    # Nobody on consultation duty: the first of the urgent chain, then the duty phone.
    assert numbers(routing.consultation_plan(duty(True, (), (PETROVA,)), SETTINGS)) == [
        ["+79123456702", "+78126077750"]
    ]
    empty = routing.consultation_plan(duty(True, head=None), SETTINGS)
    assert empty == [[routing.Target(None, None, "+79990000000")]]


def test_a_simultaneous_ring_is_capped_at_twilios_ten_numbers() -> None:
    crowd = tuple(
        Person(f"s{i}", f"S{i}", "specialist", (f"+7912000000{i}", f"+7912000001{i}"), None)
        for i in range(6)
    )
    assert len(routing.consultation_plan(duty(True, crowd), SETTINGS)[0]) == 10


def test_the_urgent_chain_is_one_phone_at_a_time_then_the_head() -> None:
    plan = routing.urgent_plan(duty(False, chain=(PETROVA, IVANOV)), SETTINGS)
    assert numbers(plan) == [
        ["+79123456702"],
        ["+78126077750"],
        ["+79123456701"],
        ["+79123456709"],
    ]
    # A head already on urgent duty is not rung twice.
    assert numbers(routing.urgent_plan(duty(False, chain=(HEAD, IVANOV)), SETTINGS)) == [
        ["+79123456709"],
        ["+79123456701"],
    ]
    assert numbers(routing.urgent_plan(duty(False, head=None), SETTINGS)) == [["+79990000000"]]


# ---------------------------------------------------------------- the state machine


def new_call(
    services: Services, *, category: str, topic: str | None, said: str | None = None
) -> int:
    with transaction(services.sessions) as session:
        call, _ = get_or_create_call(
            session,
            "CA" + uuid.uuid4().hex,
            now=services.clock(),
            caller_raw="+79161234567",
            line_raw="+78002506077",
        )
        call.category, call.topic, call.caller_said_name = category, topic, said
        session.flush()
        return call.id


def step(services: Services, call_id: int, action: str, **kwargs: object) -> routing.Outcome:
    """Run one routing function on the call, in its own transaction, as a webhook does."""
    now = services.clock()
    with transaction(services.sessions) as session:
        call = session.get(Call, call_id)
        assert call is not None
        common: dict[str, object] = {"now": now}
        if action in ("begin_routing", "dial_finished"):
            common.update(calendar=services.calendar, settings=services.settings)
        if action == "voicemail":
            common.update(settings=services.settings)
        result: routing.Outcome = getattr(routing, action)(session, call, **kwargs, **common)
        return result


def legs(services: Services, call_id: int) -> list[tuple[int, str]]:
    with services.sessions() as session:
        return [
            (leg.position, leg.result)
            for leg in session.scalars(
                select(DialLeg).where(DialLeg.call_id == call_id).order_by(DialLeg.position)
            )
        ]


def load_office(services: Services) -> None:
    text = (Path(__file__).parent / "fixtures" / "roster" / "office.yaml").read_text("utf-8")
    with transaction(services.sessions) as session:
        import_roster(session, text)


def test_routing_starts_once(services: Services) -> None:
    load_office(services)
    call_id = new_call(services, category="critical", topic=None)
    first = step(services, call_id, "begin_routing", kind=routing.URGENT)
    again = step(services, call_id, "begin_routing", kind=routing.URGENT)
    assert (
        first.decision
        == again.decision
        == routing.DialLegs(1, (routing.LegTarget(1, "+79123456701"),), 20)
    )
    assert legs(services, call_id) == [(1, "ringing")]


def test_a_key_press_that_never_bridged_does_not_count(services: Services) -> None:
    load_office(services)
    call_id = new_call(services, category="critical", topic=None)
    step(services, call_id, "begin_routing", kind=routing.URGENT)
    with transaction(services.sessions) as session:
        call = session.get(Call, call_id)
        assert call is not None
        assert routing.whisper_answer(session, call, 1, "1", now=NOW)
    # The specialist pressed 1 and dropped the call at once: Twilio never bridged it.
    outcome = step(
        services,
        call_id,
        "dial_finished",
        step=1,
        dial_status="completed",
        dial_call_sid=None,
        call_status="in-progress",
        bridged=False,
    )
    assert outcome.decision == routing.DialLegs(
        2, (routing.LegTarget(2, "+79123456702"),), 20, moving_on=True
    )
    assert legs(services, call_id) == [(1, "not-accepted"), (2, "ringing")]


def test_leg_callbacks_count_in_any_order_and_only_once(services: Services) -> None:
    load_office(services)
    call_id = new_call(services, category="consultation", topic=None)
    step(services, call_id, "begin_routing", kind=routing.CONSULTATION)
    at = NOW + timedelta(seconds=30)

    def callback(position: int, status: str, seconds: int) -> None:
        with transaction(services.sessions) as session:
            call = session.get(Call, call_id)
            assert call is not None
            routing.leg_status(
                session,
                call,
                position,
                routing.LegStatus(status, f"CA-child-{position}", NOW + timedelta(seconds=seconds)),
                now=at,
            )

    callback(1, "completed", 25)  # the final callback overtakes the answered one
    callback(1, "in-progress", 5)
    callback(1, "completed", 25)  # and arrives twice
    # The Dial result guesses "no-answer" for leg 2, which its own callback refines.
    step(
        services,
        call_id,
        "dial_finished",
        step=1,
        dial_status="no-answer",
        dial_call_sid=None,
        call_status="in-progress",
    )
    callback(2, "busy", 1)
    callback(3, "ringing", 1)
    with services.sessions() as session:
        rows = {
            leg.position: leg
            for leg in session.scalars(select(DialLeg).where(DialLeg.call_id == call_id))
        }
    assert {p: leg.result for p, leg in rows.items()} == {
        1: "not-accepted",
        2: "busy",
        3: "no-answer",
    }
    assert routing.time_to_answer(rows[1]) == 5
    assert rows[1].child_call_sid == "CA-child-1"
    assert rows[1].ended_at == NOW + timedelta(seconds=25)


def test_the_whisper_names_an_unknown_caller_by_what_they_said(services: Services) -> None:
    load_office(services)
    call_id = new_call(services, category="critical", topic=None, said="Сергей, ООО Лютик")
    step(services, call_id, "begin_routing", kind=routing.URGENT)
    with transaction(services.sessions) as session:
        call = session.get(Call, call_id)
        assert call is not None
        said = routing.whisper(session, call, 1, now=NOW)
        refused = routing.whisper(session, call, 2, now=NOW)  # not the current step
    assert said == routing.Whisper("critical", None, "Сергей, ООО Лютик")
    assert refused is None


def test_silence_instead_of_a_message_ends_politely(services: Services) -> None:
    load_office(services)
    call_id = new_call(services, category="critical", topic="critical_server_failure")
    step(services, call_id, "begin_routing", kind=routing.URGENT)
    for n in (1, 2, 3, 4):
        outcome = step(
            services,
            call_id,
            "dial_finished",
            step=n,
            dial_status="no-answer",
            dial_call_sid=None,
            call_status="in-progress",
        )
    # The test settings have a Twilio account: the caller is told the SMS alerts go out.
    assert outcome.decision == routing.OfferVoicemail(routing.URGENT, None, sms_alerts=True)
    assert outcome.send_alerts
    silent = step(services, call_id, "voicemail", recording_sid=None, recording_url=None)
    assert silent.decision == routing.Goodbye("no_message")
    with services.sessions() as session:
        call = session.get(Call, call_id)
        assert call is not None
        assert (call.recording_sid, call.routing_outcome) == (None, "nobody_accepted")


def test_a_consultation_caller_who_hangs_up_gets_a_callback_ticket(services: Services) -> None:
    load_office(services)
    call_id = new_call(services, category="consultation", topic=None)
    step(services, call_id, "begin_routing", kind=routing.CONSULTATION)
    outcome = step(
        services,
        call_id,
        "dial_finished",
        step=1,
        dial_status="canceled",
        dial_call_sid=None,
        call_status="completed",
    )
    assert outcome.decision == routing.Goodbye("caller_gone")
    with services.sessions() as session:
        call = session.get(Call, call_id)
        assert call is not None
        request = session.scalars(
            select(TicketRequest).where(TicketRequest.call_id == call_id)
        ).one()
        assert outcome.submit_requests == (request.id,)
        assert request.draft["topic"] == "consultation"
        assert (call.routing_outcome, call.flagged) == ("caller_hung_up", True)
        assert call.flag_reason == (
            "Консультация: звонивший не дождался ответа специалиста. Перезвоните."
        )


# ---------------------------------------------------------------- chain alerts


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.prism
def test_chain_alerts_are_sent_once_and_retried_when_twilio_is_unreachable(
    services: Services, prism_url: str
) -> None:
    load_office(services)
    call_id = new_call(services, category="stolen", topic=None)
    step(services, call_id, "begin_routing", kind=routing.URGENT)
    for n in (1, 2, 3, 4):
        step(
            services,
            call_id,
            "dial_finished",
            step=n,
            dial_status="busy",
            dial_call_sid=None,
            call_status="in-progress",
        )
    unreachable = TwilioTelephony(
        TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, f"http://127.0.0.1:{closed_port()}", timeout=2
    )
    first = send_chain_alerts(
        services.sessions, unreachable, call_id, now=NOW, status_callback=None
    )
    assert [o.status for o in first] == ["retry", "retry", "retry"]

    twilio = TwilioTelephony(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, prism_url)
    second = send_chain_alerts(services.sessions, twilio, call_id, now=NOW, status_callback=None)
    assert [o.status for o in second] == ["sent", "sent", "sent"]
    third = send_chain_alerts(services.sessions, twilio, call_id, now=NOW, status_callback=None)
    assert [o.status for o in third] == ["sent", "sent", "sent"]  # what they were; not resent

    with services.sessions() as session:
        rows = session.scalars(
            select(SmsMessage)
            .where(SmsMessage.key.startswith("chain-alert:"))
            .order_by(SmsMessage.id)
        ).all()
        assert [(r.to, r.status) for r in rows] == [
            ("+79123456701", "sent"),
            ("+79123456702", "sent"),
            ("+79123456709", "sent"),
        ]
        assert rows[0].body == (
            "SKAI ТП: срочный звонок не принят. Угон транспортного средства, "
            "номер заявки уточняется, клиент не определён, тел. +79161234567. "
            "Перезвоните клиенту."
        )
