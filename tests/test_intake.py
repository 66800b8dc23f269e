"""Intake: a finished call's collected data becomes a ticket request (the outbox row).

Each test runs on SQLite and PostgreSQL; tickets are made by the built-in portal in the same
database, through the outbox's own `deliver` (what the job runs).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from callcenter.calls.recordings import call_recordings
from callcenter.db import transaction
from callcenter.db.models import Call, CallEvent, Ticket, TicketRequest
from callcenter.errors import InvalidInput, NotTicketable
from callcenter.services import Services
from callcenter.tickets import outbox
from callcenter.tickets.intake import (
    UNCHOSEN_TOPIC,
    add_recording,
    mark_phone_duplicate,
    open_ticket_request,
    ticketable,
)
from tests.conftest import MutableClock
from tests.ticket_pipeline import (
    CALLER,
    add_contact,
    make_call,
    new_call_sid,
    new_recording_sid,
    request_row,
    tickets,
)

# The outbox row's ON CONFLICT insert and racing webhooks differ per dialect.
pytestmark = pytest.mark.both_databases

MSK = "+03:00"
RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC0123/Recordings/"


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso + MSK)


def deliver(services: Services, request_id: int) -> outbox.Delivery:
    return outbox.deliver(services.sessions, services.portal, request_id, clock=services.clock)


def test_a_finished_call_becomes_a_pending_request_with_the_regulations_deadlines(
    services: Services,
) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        add_contact(session, now=now, name="Иванов Иван", organisation="ООО «Ромашка»")
        call = make_call(
            session, now=now, topic="system_reports", product="studio", vehicles=["А123ВС77"]
        )
        request = open_ticket_request(session, call, now=now, calendar=services.calendar)
        session.flush()
        request_id, call_sid = request.id, call.call_sid

    row = request_row(services, request_id)
    assert (row.status, row.attempts, row.ticket_number) == ("pending", 0, None)
    assert row.next_attempt_at == now  # due at once: the sweep finds it if Redis is down
    assert row.idempotency_key == call_sid
    draft = outbox.draft_from_json(row.draft)
    assert draft.topic == "system_reports"
    assert draft.priority == "normal"
    assert draft.product == "SKAI-Studio"
    assert draft.vehicles == ("А123ВС77",)
    assert (draft.contact_name, draft.organisation_name) == ("Иванов Иван", "ООО «Ромашка»")
    assert draft.caller == CALLER
    assert draft.call_ref == call_sid
    # Received Thu 27.11 11:00: stage one in 1 business day, system reports in 2.
    assert draft.first_stage_due == at("2025-11-28T11:00")
    assert draft.resolution_due == at("2025-12-01T11:00")
    assert draft.description.splitlines() == [
        "Звонок на линию 8 (800) 250-60-77 27.11.2025 в 11:00 (МСК) с номера +7 916 123-45-67.",
        "Абонент: Иванов Иван, ООО «Ромашка».",
        "Тема: Построение системных отчётов.",
        "Продукт: SKAI-Studio.",
        "ТС: А123ВС77.",
    ]


def test_nothing_is_written_unless_the_callers_transaction_commits(services: Services) -> None:
    now = services.clock()
    with services.sessions() as session:
        call = make_call(session, now=now)
        open_ticket_request(session, call, now=now, calendar=services.calendar)
        session.rollback()
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TicketRequest)) == 0
        assert session.scalar(select(func.count()).select_from(Call)) == 0


def test_the_same_call_gives_the_same_request_and_a_pending_draft_takes_the_news(
    services: Services,
) -> None:
    now = services.clock()
    sid = new_call_sid()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, sid=sid, vehicles=[])
        first = open_ticket_request(session, call, now=now, calendar=services.calendar).id
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, sid=sid, vehicles=["А123ВС77", "В456ОР78"])
        second = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    assert first == second
    assert outbox.draft_from_json(request_row(services, first).draft).vehicles == (
        "А123ВС77",
        "В456ОР78",
    )
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TicketRequest)) == 1


def test_a_request_whose_ticket_exists_never_changes(services: Services) -> None:
    now = services.clock()
    sid = new_call_sid()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, sid=sid, topic="data_update")
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id
    assert deliver(services, request_id).created
    before = request_row(services, request_id)

    with transaction(services.sessions) as session:
        call = make_call(session, now=now, sid=sid, topic="accounts_access")
        again = open_ticket_request(
            session, call, now=now + timedelta(minutes=1), calendar=services.calendar
        )
        assert again.id == request_id

    after = request_row(services, request_id)
    assert after.draft == before.draft
    assert (after.status, after.ticket_number) == ("done", before.ticket_number)
    assert [t.topic for t in tickets(services)] == ["data_update"]


@pytest.mark.parametrize(
    ("category", "topic", "priority", "title"),
    [
        ("critical", "critical_server_failure", "critical", "Диагностика критического сбоя"),
        ("stolen", "stolen_vehicle", "high", "Отслеживание угнанного ТС"),
    ],
)
def test_urgent_paths_get_their_topic_priority_and_one_day_deadline(
    services: Services, category: str, topic: str, priority: str, title: str
) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, category=category, topic=None, product=None)
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert (draft.topic, draft.priority) == (topic, priority)
    assert draft.first_stage_due == draft.resolution_due == at("2025-11-28T11:00")
    assert title in draft.description
    assert "Продукт: не указан." in draft.description


def test_an_unknown_caller_is_described_by_the_name_they_said(services: Services) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, said_name="Пётр из ООО Вектор")
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert draft.contact_name == "Пётр из ООО Вектор"
    assert (draft.contact_id, draft.organisation_id) == (None, None)
    assert "Абонент не найден в справочнике, представился: «Пётр из ООО Вектор»." in (
        draft.description
    )


def test_a_withheld_number_is_said_so_and_never_made_up(services: Services) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, caller="anonymous")
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert draft.caller == "anonymous"
    assert draft.description.splitlines()[0] == (
        "Звонок на линию 8 (800) 250-60-77 27.11.2025 в 11:00 (МСК), номер абонента скрыт."
    )


def test_an_interrupted_call_before_the_topic_still_gets_a_ticket(services: Services) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, topic=None, product=None, vehicles=[])
        assert ticketable(call)
        request_id = open_ticket_request(
            session, call, now=now, calendar=services.calendar, interrupted=True
        ).id

    row = request_row(services, request_id)
    draft = outbox.draft_from_json(row.draft)
    assert draft.topic == UNCHOSEN_TOPIC == "accounts_access"
    assert "абонент не успел её выбрать" in draft.description
    assert draft.description.endswith(
        "Звонок прерван до конца меню: заявка открыта с тем, что абонент успел сообщить."
    )
    assert row.draft["interrupted"] is True


def test_a_call_with_nothing_to_ticket_is_refused_by_name(services: Services) -> None:
    now = services.clock()
    with services.sessions() as session:
        for category in (None, "abandoned", "status"):
            call = make_call(session, now=now, category=category, topic=None)
            assert not ticketable(call)
            with pytest.raises(NotTicketable, match="nothing to ticket"):
                open_ticket_request(session, call, now=now, calendar=services.calendar)


def test_the_callers_contract_days_set_the_deadline(services: Services) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        add_contact(session, now=now, topic_days={"system_reports": 5})
        call = make_call(session, now=now, topic="system_reports")
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert draft.resolution_due == at("2025-12-04T11:00")  # 5 business days, not 2


def test_a_voicemail_callback_is_a_consultation_ticket(services: Services) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, category="consultation", topic=None, vehicles=[])
        add_recording(
            session,
            call,
            recording_sid=new_recording_sid(),
            recording_url=RECORDING_URL + "RE1",
            kind="voicemail",
            now=now,
        )
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert draft.topic == "consultation"
    assert "оставил сообщение" in draft.description
    assert "Описание проблемы — в записи звонка, приложенной к заявке." in draft.description


def test_a_callback_ticket_without_a_message_does_not_claim_one(services: Services) -> None:
    """Nobody answered and the caller left no message (they hung up, or chose the
    call-back queue): the ticket asks for the call back and says nothing of a message."""
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, category="consultation", topic=None, vehicles=[])
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert "Обратный звонок: абонент не дождался специалиста; перезвоните ему." in (
        draft.description
    )
    assert "сообщение" not in draft.description
    assert "запис" not in draft.description


def test_a_new_problem_on_the_consultation_topic_is_not_called_a_missed_callback(
    services: Services,
) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, category="incident", topic="consultation")
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert draft.topic == "consultation"
    assert "не дождался специалиста" not in draft.description


def test_a_typed_number_stays_in_the_description_on_every_refresh(services: Services) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(
            session, now=now, category="critical", topic="critical_server_failure", vehicles=[]
        )
        open_ticket_request(session, call, now=now, calendar=services.calendar, typed_number="77")
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id

    draft = outbox.draft_from_json(request_row(services, request_id).draft)
    assert "Абонент набрал номер заявки №77" in draft.description
    assert draft.priority == "critical"


def test_recordings_are_kept_on_the_call_once_each_and_go_into_the_pending_draft(
    services: Services,
) -> None:
    now = services.clock()
    sid = new_recording_sid()
    url = RECORDING_URL + sid
    with transaction(services.sessions) as session:
        call = make_call(session, now=now)
        request = open_ticket_request(session, call, now=now, calendar=services.calendar)
        for _ in range(2):  # Twilio retries its callbacks
            returned = add_recording(
                session,
                call,
                recording_sid=sid,
                recording_url=url,
                kind="description",
                duration=83,
                now=now,
            )
            assert returned is request
        call_id, request_id = call.id, request.id

    with services.sessions() as session:
        call = session.get(Call, call_id)
        assert call is not None
        assert [(r.sid, r.kind, r.duration, r.label) for r in call_recordings(call)] == [
            (sid, "description", 83, "Запись звонка: описание проблемы (1:23)")
        ]
        assert (call.recording_sid, call.recording_url) == (sid, url)
        assert call.recording_sids == [sid]
    row = request_row(services, request_id)
    assert row.draft["recording_url"] == url
    assert row.draft[outbox.RECORDING_SID] == sid
    assert row.next_attempt_at == now


def test_a_recording_after_the_ticket_makes_the_follow_ups_due(
    services: Services, clock: MutableClock
) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, category="critical", topic=None)
        request_id = open_ticket_request(session, call, now=now, calendar=services.calendar).id
        call_id = call.id
    assert deliver(services, request_id).created
    with transaction(services.sessions) as session:
        row = session.get(TicketRequest, request_id)
        assert row is not None
        row.next_attempt_at = None  # the follow-ups ran

    clock.now += timedelta(minutes=3)
    later = services.clock()
    with transaction(services.sessions) as session:
        call = session.get(Call, call_id)
        assert call is not None
        returned = add_recording(
            session,
            call,
            recording_sid=new_recording_sid(),
            recording_url=RECORDING_URL + "RE2",
            kind="voicemail",
            now=later,
        )
        assert returned is not None and returned.id == request_id

    row = request_row(services, request_id)
    assert row.next_attempt_at == later
    assert row.status == "done"


def test_a_recording_twilio_would_never_send_is_refused(services: Services) -> None:
    now = services.clock()
    good_sid = "RE" + "0" * 32
    with services.sessions() as session:
        call = make_call(session, now=now)
        for sid, url, kind, message in (
            ("../../etc/passwd", RECORDING_URL, "description", "recording SID"),
            (good_sid, "file:///etc/passwd", "description", "http"),
            (good_sid, RECORDING_URL, "music", "kind"),
        ):
            with pytest.raises(InvalidInput, match=message):
                add_recording(
                    session, call, recording_sid=sid, recording_url=url, kind=kind, now=now
                )
        assert session.scalar(select(func.count()).select_from(CallEvent)) == 0


def test_a_phone_duplicate_marks_the_named_ticket_and_raises_its_priority(
    services: Services, clock: MutableClock
) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        first = make_call(session, now=now, category="incident", topic="data_update")
        first_id = open_ticket_request(session, first, now=now, calendar=services.calendar).id
    number = deliver(services, first_id).ticket_number
    assert number is not None

    clock.now += timedelta(hours=2)
    later = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=later, category="critical", topic=None)
        request = mark_phone_duplicate(
            session, call, f"{number}#", now=later, calendar=services.calendar
        )
        assert request.draft[outbox.DUPLICATE_OF] == number
        # The hang-up that follows must not turn it into a new ticket.
        again = open_ticket_request(
            session, call, now=later, calendar=services.calendar, interrupted=True
        )
        assert again.id == request.id
        request_id = request.id

    delivery = deliver(services, request_id)
    assert (delivery.status, delivery.ticket_number) == ("done", number)
    [ticket] = tickets(services)
    assert ticket.priority == "critical"
    assert ticket.duplicated_by_phone_at == later


def test_a_phone_duplicate_of_a_ticket_the_portal_does_not_know_opens_one(
    services: Services,
) -> None:
    now = services.clock()
    with transaction(services.sessions) as session:
        call = make_call(session, now=now, category="critical", topic=None)
        request_id = mark_phone_duplicate(
            session, call, "777", now=now, calendar=services.calendar
        ).id

    delivery = deliver(services, request_id)
    assert delivery.status == "done"
    [ticket] = tickets(services)
    assert str(ticket.number) == delivery.ticket_number != "777"
    assert (ticket.topic, ticket.priority) == ("critical_server_failure", "critical")
    assert ticket.description.startswith("Названная абонентом заявка №777 на портале не найдена.")
    assert ticket.resolution_due == at("2025-11-28T11:00")


def test_a_ticket_number_that_is_not_one_is_refused(services: Services) -> None:
    now = services.clock()
    with services.sessions() as session:
        call = make_call(session, now=now, category="critical", topic=None)
        for number in ("", "#", "12a4", "1" * 13):
            with pytest.raises(InvalidInput, match="ticket number"):
                mark_phone_duplicate(session, call, number, now=now, calendar=services.calendar)


def test_two_webhooks_of_one_call_racing_make_one_request(services: Services) -> None:
    now = services.clock()
    sid = new_call_sid()
    with transaction(services.sessions) as session:
        make_call(session, now=now, sid=sid)
    barrier = threading.Barrier(2)
    ids: list[int] = []
    errors: list[BaseException] = []

    def webhook() -> None:
        try:
            with transaction(services.sessions) as session:
                call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
                barrier.wait(timeout=10)
                ids.append(
                    open_ticket_request(session, call, now=now, calendar=services.calendar).id
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=webhook) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(ids) == 2 and ids[0] == ids[1]
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TicketRequest)) == 1
        assert session.scalar(select(func.count()).select_from(Ticket)) == 0
