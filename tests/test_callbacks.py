"""The call-back queue: which calls become items, the SLA in working minutes, taking and
results with their audit lines, who may do what, `/api/callbacks`, the head's SMS for an
overdue item, and the specialist-leg webhooks (signed as Twilio signs them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.access.tokens import create_token
from callcenter.callbacks import queue
from callcenter.callbacks.dialing import CallbackWebhook, move_leg
from callcenter.callbacks.sla import alert_overdue
from callcenter.db import transaction
from callcenter.db.models import Call, CallbackItem, CallEvent, DialLeg, SmsMessage, Staff
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.services import Services
from tests.conftest import DEFAULT_NOW, MutableClock
from tests.console_helpers import T0, add_call, add_user, csrf_of, login

MOSCOW_NOON = datetime.fromisoformat("2025-11-27T12:00:00+03:00")


def _refresh(services: Services) -> int:
    with transaction(services.sessions) as session:
        return queue.refresh_queue(
            session, now=services.clock(), calendar=services.calendar, sla_minutes=30
        )


def _calls(services: Services) -> dict[str, int]:
    """One call of every kind that needs a call back, and some that do not."""
    with transaction(services.sessions) as session:
        made = {
            "voicemail": add_call(
                session,
                "CA" + "a1" * 16,
                T0 - timedelta(minutes=50),
                category="consultation",
                topic="consultation",
                routing_outcome="voicemail",
                ticket_status="failed",
            ),
            "abandoned": add_call(
                session,
                "CA" + "a2" * 16,
                T0 - timedelta(minutes=40),
                category="incident",
                outcome="abandoned",
            ),
            "urgent": add_call(
                session,
                "CA" + "a3" * 16,
                T0 - timedelta(minutes=30),
                category="critical",
                topic="critical_server_failure",
                legs=(("no-answer", None),),
                ticket="1001",
            ),
            "failed": add_call(
                session, "CA" + "a4" * 16, T0 - timedelta(minutes=20), ticket_status="failed"
            ),
            "served": add_call(
                session, "CA" + "a5" * 16, T0 - timedelta(minutes=10), ticket="1002"
            ),
            "withheld": add_call(
                session,
                "CA" + "a6" * 16,
                T0 - timedelta(minutes=5),
                category="abandoned",
                outcome="abandoned",
                caller_e164=None,
                caller_raw="anonymous",
            ),
            "live": add_call(
                session, "CA" + "a7" * 16, T0, category="abandoned", outcome="in_progress"
            ),
        }
        return {name: call.id for name, call in made.items()}


def test_every_call_that_needs_a_call_back_is_one_item_oldest_first(services: Services) -> None:
    ids = _calls(services)

    assert _refresh(services) == 4
    assert _refresh(services) == 0  # safe to run again: one item per call

    with services.sessions() as session:
        items = queue.list_items(session)
        assert [(i.call_id, i.reason) for i in items] == [
            # The consultation voicemail whose callback ticket failed is in the queue.
            (ids["voicemail"], queue.TICKET_FAILED),
            (ids["abandoned"], queue.ABANDONED),
            (ids["urgent"], queue.URGENT_MISSED),
            (ids["failed"], queue.TICKET_FAILED),
        ]
        assert all(i.status == queue.OPEN and i.attempts == 0 for i in items)


def test_the_sla_counts_working_minutes_only() -> None:
    calendar = BusinessCalendar.shipped()
    # Thursday 11:00 Moscow: half an hour later.
    assert queue.callback_due(calendar, DEFAULT_NOW, 30) == DEFAULT_NOW + timedelta(minutes=30)
    # Thursday 17:50: ten minutes today, twenty after Friday's 09:30 opening.
    evening = datetime.fromisoformat("2025-11-27T17:50:00+03:00")
    assert queue.callback_due(calendar, evening, 30) == datetime.fromisoformat(
        "2025-11-28T09:50:00+03:00"
    )
    # Saturday night: Monday 10:00.
    weekend = datetime.fromisoformat("2025-11-29T23:00:00+03:00")
    assert queue.callback_due(calendar, weekend, 30) == datetime.fromisoformat(
        "2025-12-01T10:00:00+03:00"
    )


def test_taking_and_results_leave_audit_lines_and_unanswered_items_return(
    services: Services, clock: MutableClock
) -> None:
    ids = _calls(services)
    _refresh(services)
    with services.sessions() as session:
        item_id = session.scalar(
            select(CallbackItem.id).where(CallbackItem.call_id == ids["abandoned"])
        )
    assert item_id is not None
    with transaction(services.sessions) as session:
        queue.take(session, item_id, by="smirnova", now=services.clock())
    with transaction(services.sessions) as session, pytest.raises(Exception, match="уже взял"):
        queue.take(session, item_id, by="ivanov", now=services.clock())

    clock.now = DEFAULT_NOW + timedelta(minutes=5)
    with transaction(services.sessions) as session:
        queue.record_result(
            session,
            item_id,
            result=queue.NOT_REACHED,
            note="Не берёт трубку",
            by="smirnova",
            now=services.clock(),
        )
    with services.sessions() as session:
        item = session.get(CallbackItem, item_id)
        assert item is not None
        assert (item.status, item.attempts, item.taken_by) == (queue.OPEN, 1, None)
    with transaction(services.sessions) as session:
        queue.take(session, item_id, by="ivanov", now=services.clock())
        queue.record_result(
            session, item_id, result=queue.REACHED, note="", by="ivanov", now=services.clock()
        )
    with services.sessions() as session:
        item = session.get(CallbackItem, item_id)
        call = session.get(Call, ids["abandoned"])
        assert item is not None and call is not None
        assert (item.status, item.attempts, item.done_by) == (queue.DONE, 2, "ivanov")
        assert call.called_back_by == "ivanov"
        audit = session.execute(
            select(CallEvent.kind, CallEvent.detail)
            .where(CallEvent.call_id == ids["abandoned"])
            .order_by(CallEvent.id)
        ).all()
    assert [(kind, detail.get("by"), detail.get("result")) for kind, detail in audit] == [
        ("callback_taken", "smirnova", None),
        ("callback_result", "smirnova", "not_reached"),
        ("callback_taken", "ivanov", None),
        ("callback_result", "ivanov", "reached"),
    ]


def _head(services: Services) -> None:
    with transaction(services.sessions) as session:
        session.add(
            Staff(
                key="head",
                name="Орлова Ольга",
                role="head",
                phones=["+79160000009"],
                sms="+79160000009",
            )
        )


def test_an_overdue_item_sends_the_head_one_sms(
    make_services: Any, clock: MutableClock, prism_url: str
) -> None:
    svc = make_services(twilio_api_base_url=prism_url)
    _calls(svc)
    _head(svc)
    _refresh(svc)
    # 11:00: the oldest item (10:10) is due at 10:40: overdue; the newest (10:40) at 11:10.
    outcomes = alert_overdue(svc.sessions, svc.telephony, now=svc.clock(), status_callback=None)
    assert [o.status for o in outcomes] == ["sent", "sent", "sent"]
    assert alert_overdue(svc.sessions, svc.telephony, now=svc.clock(), status_callback=None) == []
    with svc.sessions() as session:
        rows = session.scalars(select(SmsMessage).order_by(SmsMessage.id)).all()
    assert {r.to for r in rows} == {"+79160000009"}
    assert rows[0].body == (
        "Перезвон просрочен: клиент +7 916 123-45-67 ждёт с 27.11 10:10 (срок был 10:40). "
        "Очередь перезвонов в консоли."
    )


# ---------------------------------------------------------------- the console and the API


def test_a_specialist_works_the_queue_in_the_console(
    services: Services, client: FlaskClient
) -> None:
    _calls(services)
    add_user(services, "smirnova", "specialist")
    login(client, "smirnova")

    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "Ждут перезвона: <strong>4</strong>" in page
    assert "Ошибка создания заявки" in page and "Прерванный звонок" in page
    assert "Просрочен" in page
    with services.sessions() as session:
        first = session.scalars(select(CallbackItem).order_by(CallbackItem.waiting_since)).first()
        assert first is not None
        item_id = first.id

    token = csrf_of(client)
    taken = client.post(f"/console/callbacks/{item_id}/take", data={"csrf_token": token})
    assert taken.status_code == 302
    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "Перезвонить" in page and "Записать результат" in page

    missing = client.post(
        f"/console/callbacks/{item_id}/result", data={"csrf_token": token, "note": "x"}
    )
    assert missing.status_code == 302
    assert "Выберите результат звонка." in client.get("/console/callbacks").get_data(as_text=True)

    done = client.post(
        f"/console/callbacks/{item_id}/result",
        data={"csrf_token": token, "result": "wrong_number", "note": "Номер не существует"},
    )
    assert done.status_code == 302
    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "Записано: номер неверен." in page
    assert "Ждут перезвона: <strong>3</strong>" in page

    # A specialist still may not do a supervisor's actions.
    sid = "CA" + "a4" * 16
    refused = client.post(f"/console/calls/{sid}/retry", data={"csrf_token": token})
    assert refused.status_code == 403
    note = client.post(f"/console/calls/{sid}/notes", data={"csrf_token": token, "text": "Звонил"})
    assert note.status_code == 302


def test_dialling_without_a_phone_in_the_roster_says_what_to_do(
    services: Services, client: FlaskClient
) -> None:
    _calls(services)
    add_user(services, "smirnova", "specialist")
    login(client, "smirnova")
    client.get("/console/callbacks")
    token = csrf_of(client)
    client.post("/console/callbacks/1/take", data={"csrf_token": token})
    client.post("/console/callbacks/1/dial", data={"csrf_token": token})
    page = client.get("/console/callbacks").get_data(as_text=True)
    assert "Позвонить нельзя: в графике дежурств нет телефона сотрудника «smirnova»" in page


def test_the_api_lists_the_queue_behind_a_token(services: Services, client: FlaskClient) -> None:
    _calls(services)
    assert client.get("/api/callbacks").status_code == 401
    with transaction(services.sessions) as session:
        secret = create_token(session, "wallboard", now=DEFAULT_NOW).secret
    body = client.get("/api/callbacks", headers={"Authorization": f"Bearer {secret}"}).get_json()
    assert body["total"] == 4
    assert body["overdue"] == 3
    first = body["callbacks"][0]
    assert (first["call_sid"], first["reason"], first["status"]) == (
        "CA" + "a1" * 16,
        "ticket_failed",
        "open",
    )
    assert first["caller"] == "+79161234567"
    assert first["waiting_since"] == "2025-11-27T07:10:00+00:00"


# ---------------------------------------------------------------- Twilio's side


def test_a_leg_never_moves_backwards() -> None:
    """Twilio: "status callback requests are HTTP requests and are therefore subject to
    differences in latency ... your application should be prepared to receive them out of
    order" (Voice API, StatusCallbackEvent). A late `ringing` after `in-progress`, or any
    status after a final one, changes nothing."""
    leg = DialLeg(result="queued", started_at=T0, number="+79160000001", position=1)
    assert move_leg(leg, "ringing", T0)
    assert move_leg(leg, "in-progress", T0 + timedelta(seconds=5))
    assert not move_leg(leg, "ringing", T0 + timedelta(seconds=6))
    assert move_leg(leg, "completed", T0 + timedelta(seconds=60))
    assert not move_leg(leg, "in-progress", T0 + timedelta(seconds=61))
    assert not move_leg(leg, "no-answer", T0 + timedelta(seconds=62))
    assert (leg.result, leg.answered_at, leg.ended_at) == (
        "completed",
        T0 + timedelta(seconds=5),
        T0 + timedelta(seconds=60),
    )


def test_a_request_for_an_item_from_another_leg_is_refused(
    services: Services, client: FlaskClient
) -> None:
    from tests.twilio_requests import parse_twiml, said, signed_post

    _calls(services)
    _refresh(services)
    reply = parse_twiml(
        signed_post(
            client,
            "/webhooks/callbacks/1/specialist",
            {
                "CallSid": "CA" + "ff" * 16,
                "CallStatus": "in-progress",
                "AccountSid": "AC" + "0" * 32,
            },
        )
    )
    assert said(reply) == "Этот перезвон уже не ждёт соединения."
    assert reply.find("Hangup") is not None
    bad = signed_post(client, "/webhooks/callbacks/x/specialist", {"CallSid": "CA" + "ff" * 16})
    assert bad.status_code == 400
    assert CallbackWebhook is not None
