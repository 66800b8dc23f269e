"""`/console/live.json`: calls in progress and the last minutes, for the live panel."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient

from callcenter.db import transaction
from callcenter.db.models import Call, DialLeg
from callcenter.services import Services
from tests.conftest import DEFAULT_NOW
from tests.console_helpers import add_user, login


def add(services: Services, sid: str, minutes_ago: int, outcome: str, **fields: object) -> Call:
    at = DEFAULT_NOW - timedelta(minutes=minutes_ago)
    with transaction(services.sessions) as session:
        call = Call(
            call_sid=sid,
            line="+78002506077",
            caller_raw="+79161234567",
            caller_e164="+79161234567",
            outcome=outcome,
            started_at=at,
            updated_at=at,
            **fields,
        )
        session.add(call)
        session.flush()
        session.expunge(call)
    return call


def test_anonymous_gets_401_and_a_specialist_reads_the_panel(
    services: Services, client: FlaskClient
) -> None:
    assert client.get("/console/live.json").status_code == 401
    add(services, "CAmenu", 1, "in_progress", state={"step": "main_menu"})
    ringing = add(services, "CAring", 2, "in_progress", category="critical")
    with transaction(services.sessions) as session:
        session.add(
            DialLeg(
                call_id=ringing.id,
                position=1,
                staff_key="ivanov",
                staff_name="Иванов Иван",
                number="+79123456701",
                started_at=DEFAULT_NOW,
                result="ringing",
            )
        )
    add(services, "CAdone", 10, "completed", category="incident", duration_seconds=125)
    add(services, "CAold", 45, "completed", category="incident")
    # Still "in progress" three hours on: its final callback never came; the log keeps it.
    add(services, "CAstale", 180, "in_progress")
    add_user(services, "spec", "specialist")
    login(client, "spec")

    response = client.get("/console/live.json")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    assert data["at"] == "11:00:00"
    live = [(r["sid"], r["where"], r["duration"]) for r in data["in_progress"]]
    assert live == [("CAmenu", "Главное меню", "1:00"), ("CAring", "Вызов: Иванов Иван", "2:00")]
    assert data["in_progress"][1]["category"] == "Критический сбой сервера"
    assert data["in_progress"][0]["caller"] == "+7 916 123-45-67"
    recent = data["recent"]
    assert [r["sid"] for r in recent] == ["CAdone"]
    assert recent[0]["outcome"] == "Завершён"
    assert recent[0]["duration"] == "2:05"
    assert recent[0]["problems"] == ["Нет заявки"]

    page = client.get("/console/live").get_data(as_text=True)
    assert 'Идут сейчас: <span id="live-count">2</span>' in page
    assert "Вызов: Иванов Иван" in page
