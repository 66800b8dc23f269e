"""`/api/calls`: the call log as JSON behind bearer tokens, its filters and pages.

Rows are built directly with the models; every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from callcenter.access.tokens import create_token, revoke_token
from callcenter.calllog.query import CallFilter, PageRequest, iter_calls, search_calls
from callcenter.db import transaction
from callcenter.db.models import (
    Call,
    CallEvent,
    CallNote,
    Contact,
    DialLeg,
    Organisation,
    SmsMessage,
    TicketRequest,
)
from callcenter.errors import InvalidFilter
from callcenter.services import Services
from tests.conftest import DEFAULT_NOW

T0 = DEFAULT_NOW.astimezone(UTC)  # Thu 2025-11-27 08:00 UTC = 11:00 Moscow


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def add_call(
    session: Session,
    sid: str,
    started: datetime,
    *,
    ticket: str | None = None,
    ticket_status: str | None = None,
    legs: list[str] = (),  # type: ignore[assignment]
    **columns: Any,
) -> Call:
    values: dict[str, Any] = {
        "line": "+78002506077",
        "caller_raw": "+79161234567",
        "caller_e164": "+79161234567",
        "caller_kind": "mobile",
        "category": "incident",
        "topic": "data_update",
        "outcome": "completed",
        "ended_at": started + timedelta(minutes=3),
        "duration_seconds": 180,
    }
    values.update(columns)
    call = Call(call_sid=sid, started_at=started, updated_at=started, **values)
    session.add(call)
    session.flush()
    if ticket is not None or ticket_status is not None:
        session.add(
            TicketRequest(
                call_id=call.id,
                idempotency_key=sid,
                draft={"topic": call.topic},
                status=ticket_status or "done",
                ticket_number=ticket,
                last_error="portal said 422: topic missing" if ticket_status == "failed" else None,
                created_at=started,
                updated_at=started,
            )
        )
    for position, result in enumerate(legs, start=1):
        session.add(
            DialLeg(
                call_id=call.id,
                position=position,
                staff_name=f"Дежурный {position}",
                number=f"+7999000000{position}",
                started_at=started + timedelta(seconds=30 * position),
                answered_at=started + timedelta(seconds=30 * position + 7)
                if result in ("accepted", "declined")
                else None,
                result=result,
            )
        )
    session.flush()
    return call


@pytest.fixture
def token(services: Services) -> str:
    with transaction(services.sessions) as session:
        return create_token(session, "tests", now=DEFAULT_NOW).secret


def get(client: FlaskClient, url: str, token: str) -> Any:
    response = client.get(url, headers={"Authorization": f"Bearer {token}"})
    return response


def sids(client: FlaskClient, token: str, query: str) -> list[str]:
    response = get(client, f"/api/calls?{query}", token)
    assert response.status_code == 200, response.get_json()
    return [c["call_sid"] for c in response.get_json()["calls"]]


# ---------------------------------------------------------------- auth


def test_no_token_bad_token_and_revoked_token_get_401_json(
    services: Services, client: FlaskClient, token: str
) -> None:
    missing = client.get("/api/calls")
    assert missing.status_code == 401
    assert missing.get_json()["error"] == "unauthorized"
    assert "callcenter token create" in missing.get_json()["message"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")

    basic = client.get("/api/calls", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401

    bad = get(client, "/api/calls", "cc_not-a-real-token")
    assert bad.status_code == 401
    assert bad.get_json() == {"error": "unauthorized", "message": "the token is unknown or revoked"}
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]

    good = get(client, "/api/calls", token)
    assert good.status_code == 200
    assert good.headers["Cache-Control"] == "no-store"

    with transaction(services.sessions) as session:
        revoke_token(session, "tests", now=DEFAULT_NOW)
    assert get(client, "/api/calls", token).status_code == 401
    assert get(client, "/api/calls/CAanything", token).status_code == 401


# ---------------------------------------------------------------- one call


@pytest.mark.both_databases  # JSON columns read back per dialect
def test_a_call_with_events_legs_and_a_ticket_as_json(
    services: Services, client: FlaskClient, token: str
) -> None:
    with transaction(services.sessions) as session:
        org = Organisation(name="ООО «Ромашка»", inn="7701234567", created_at=T0)
        contact = Contact(name="Иван Петров", organisation=org, created_at=T0)
        session.add_all([org, contact])
        session.flush()
        call = add_call(
            session,
            "CA" + "a" * 32,
            at(0),
            ticket="1042",
            legs=["no-answer", "accepted"],
            contact_id=contact.id,
            organisation_id=org.id,
            category="critical",
            topic="critical_server_failure",
            product="studio",
            vehicles=["А123ВС77"],
            routing_outcome="connected",
            recording_sid="RE" + "b" * 32,
            recording_url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            recording_duration=42,
            twilio_status="completed",
        )
        session.add_all(
            [
                CallEvent(call_id=call.id, at=at(0), kind="incoming", step="greeting"),
                CallEvent(
                    call_id=call.id,
                    at=at(0.5),
                    kind="gather",
                    step="main_menu",
                    digits="3",
                    detail={"attempt": 1},
                ),
                CallEvent(
                    call_id=call.id,
                    at=at(1),
                    kind="gather",
                    step="vehicle",
                    speech="А123ВС77",
                ),
                CallNote(call_id=call.id, at=at(10), author="head", text="Перезвонили"),
                SmsMessage(
                    key="ticket-request:1:caller",
                    call_id=call.id,
                    to="+79161234567",
                    body="Заявка №1042 зарегистрирована.",
                    status="sent",
                    twilio_sid="SM" + "c" * 32,
                    delivery="undelivered",
                    error_code="30003",
                    created_at=at(4),
                    updated_at=at(5),
                ),
                SmsMessage(
                    key="ticket-request:1:alert:+79990000003",
                    call_id=call.id,
                    to="+79990000003",
                    body="Срочная заявка №1042",
                    status="skipped",
                    reason="Twilio is not configured (set TWILIO_ACCOUNT_SID)",
                    created_at=at(4),
                    updated_at=at(4),
                ),
            ]
        )

    response = get(client, f"/api/calls/{'CA' + 'a' * 32}", token)

    assert response.status_code == 200
    assert response.get_json() == {
        "call_sid": "CA" + "a" * 32,
        "line": "+78002506077",
        "line_label": "8 (800) 250-60-77",
        "caller": "+79161234567",
        "caller_raw": "+79161234567",
        "caller_kind": "mobile",
        "caller_said_name": None,
        "contact": {"id": 1, "name": "Иван Петров"},
        "organisation": {"id": 1, "name": "ООО «Ромашка»"},
        "category": "critical",
        "topic": "critical_server_failure",
        "product": "studio",
        "vehicles": ["А123ВС77"],
        "ticket_number": "1042",
        "ticket_state": "done",
        "ticket_error": None,
        "related_ticket": None,
        "outcome": "completed",
        "interrupted": False,
        "twilio_status": "completed",
        "routing_outcome": "connected",
        "urgent_unanswered": False,
        "legs": [
            {
                "position": 1,
                "staff_key": None,
                "name": "Дежурный 1",
                "number": "+79990000001",
                "child_call_sid": None,
                "started_at": "2025-11-27T11:00:30+03:00",
                "answered_at": None,
                "accepted_at": None,
                "ended_at": None,
                "seconds_to_answer": None,
                "result": "no-answer",
            },
            {
                "position": 2,
                "staff_key": None,
                "name": "Дежурный 2",
                "number": "+79990000002",
                "child_call_sid": None,
                "started_at": "2025-11-27T11:01:00+03:00",
                "answered_at": "2025-11-27T11:01:07+03:00",
                "accepted_at": "2025-11-27T11:01:07+03:00",
                "ended_at": None,
                "seconds_to_answer": 7,
                "result": "accepted",
            },
        ],
        # The console's own route, never Twilio's link (it needs the account's password).
        "recording": {
            "sid": "RE" + "b" * 32,
            "duration": 42,
            "url": f"/console/calls/{'CA' + 'a' * 32}/recording",
        },
        "started_at": "2025-11-27T11:00:00+03:00",
        "ended_at": "2025-11-27T11:03:00+03:00",
        "duration_seconds": 180,
        "flagged": False,
        "flag_reason": None,
        "called_back_at": None,
        "called_back_by": None,
        "events": [
            {
                "kind": "incoming",
                "step": "greeting",
                "digits": None,
                "speech": None,
                "at": "2025-11-27T11:00:00+03:00",
                "detail": {},
            },
            {
                "kind": "gather",
                "step": "main_menu",
                "digits": "3",
                "speech": None,
                "at": "2025-11-27T11:00:30+03:00",
                "detail": {"attempt": 1},
            },
            {
                "kind": "gather",
                "step": "vehicle",
                "digits": None,
                "speech": "А123ВС77",
                "at": "2025-11-27T11:01:00+03:00",
                "detail": {},
            },
        ],
        "notes": [{"at": "2025-11-27T11:10:00+03:00", "author": "head", "text": "Перезвонили"}],
        # Who was told, and how: the stored codes beside the console's words.
        "alerts": {
            "calls": [
                {
                    "position": 1,
                    "who": "Дежурный 1",
                    "number": "+79990000001",
                    "purpose": "звонок дежурному",
                    "result": "no-answer",
                    "result_title": "нет ответа",
                    "started_at": "2025-11-27T11:00:30+03:00",
                    "answered_at": None,
                    "ended_at": None,
                },
                {
                    "position": 2,
                    "who": "Дежурный 2",
                    "number": "+79990000002",
                    "purpose": "звонок дежурному",
                    "result": "accepted",
                    "result_title": "звонок принят (нажата 1)",
                    "started_at": "2025-11-27T11:01:00+03:00",
                    "answered_at": "2025-11-27T11:01:07+03:00",
                    "ended_at": None,
                },
            ],
            "sms": [
                {
                    "who": "Абонент",
                    "to": "+79161234567",
                    "kind": "номер и сроки заявки",
                    "status": "sent",
                    "delivery": "undelivered",
                    "error_code": "30003",
                    "reason": None,
                    "state_title": "не доставлено (код 30003)",
                    "sent": True,
                    "message_sid": "SM" + "c" * 32,
                    "created_at": "2025-11-27T11:04:00+03:00",
                    "updated_at": "2025-11-27T11:05:00+03:00",
                },
                {
                    "who": "—",
                    "to": "+79990000003",
                    "kind": "срочная заявка — дежурным",
                    "status": "skipped",
                    "delivery": None,
                    "error_code": None,
                    "reason": "Twilio is not configured (set TWILIO_ACCOUNT_SID)",
                    "state_title": "не отправлено: не настроена учётная запись Twilio",
                    "sent": False,
                    "message_sid": None,
                    "created_at": "2025-11-27T11:04:00+03:00",
                    "updated_at": "2025-11-27T11:04:00+03:00",
                },
            ],
        },
    }


def test_a_withheld_caller_without_ticket_or_recording(
    services: Services, client: FlaskClient, token: str
) -> None:
    with transaction(services.sessions) as session:
        add_call(
            session,
            "CAwithheld",
            at(0),
            caller_raw="+266696687",
            caller_e164=None,
            caller_kind="withheld",
            category="abandoned",
            topic=None,
            outcome="abandoned",
        )
    body = get(client, "/api/calls/CAwithheld", token).get_json()
    assert body["caller"] is None
    assert body["caller_raw"] == "+266696687"
    assert (body["contact"], body["organisation"], body["recording"]) == (None, None, None)
    assert (body["ticket_number"], body["ticket_state"], body["ticket_error"]) == (None,) * 3


def test_an_unknown_call_sid_is_404_json(client: FlaskClient, token: str) -> None:
    response = get(client, "/api/calls/CAnope", token)
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "message": "no call 'CAnope' in the log"}


def test_paths_and_methods_the_api_has_not_answer_json(client: FlaskClient, token: str) -> None:
    for path in ("/api", "/api/", "/api/nope", "/api/calls/CA1/legs"):
        response = get(client, path, token)
        assert (response.status_code, response.get_json()) == (
            404,
            {"error": "not_found", "message": f"no endpoint at {path}; see GET /api/calls"},
        ), path
    auth = {"Authorization": f"Bearer {token}"}
    for method in ("POST", "DELETE", "PROPFIND"):
        response = client.open("/api/calls", method=method, headers=auth)
        assert response.status_code == 405
        assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
        assert response.get_json() == {
            "error": "method_not_allowed",
            "message": f"{method} is not allowed on /api/calls; use GET, HEAD, OPTIONS",
        }


def test_the_token_is_checked_before_saying_a_path_does_not_exist(client: FlaskClient) -> None:
    for method, path in (("GET", "/api/nope"), ("POST", "/api/calls")):
        response = client.open(path, method=method)
        assert response.status_code == 401
        assert response.get_json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="callcenter"'


def test_outside_the_api_a_missing_page_is_still_flasks_own(client: FlaskClient) -> None:
    response = client.get("/apis/calls")
    assert response.status_code == 404
    assert response.content_type.startswith("text/html")
    assert client.post("/healthz").content_type.startswith("text/html")


# ---------------------------------------------------------------- filters


@pytest.fixture
def log(services: Services) -> None:
    """A small day of calls, newest last."""
    moscow_late_evening_26th = datetime(2025, 11, 26, 20, 30, tzinfo=UTC)  # 23:30 Moscow
    with transaction(services.sessions) as session:
        org = Organisation(name="ООО «Ромашка»", created_at=T0)
        contact = Contact(name="Иван Петров", organisation=org, created_at=T0)
        session.add_all([org, contact])
        session.flush()
        add_call(session, "CAevening", moscow_late_evening_26th, ticket="1001")
        add_call(
            session,
            "CAconsult",
            at(0),
            category="consultation",
            topic=None,
            line="+78126077741",
            caller_raw="88121234567",
            caller_e164="+78121234567",
            caller_kind="landline",
        )
        add_call(
            session,
            "CAincident",
            at(5),
            ticket="1042",
            contact_id=contact.id,
            organisation_id=org.id,
        )
        add_call(session, "CAfailed", at(10), ticket_status="failed", topic="accounts_access")
        add_call(
            session,
            "CAunanswered",
            at(15),
            ticket="1043",
            category="critical",
            topic="critical_server_failure",
            legs=["no-answer", "declined"],
            flagged=True,
            flag_reason="nobody accepted",
        )
        add_call(
            session,
            "CAanswered",
            at(20),
            ticket="1044",
            category="stolen",
            topic="stolen_vehicle",
            legs=["no-answer", "accepted"],
        )
        add_call(
            session,
            "CAringing",
            at(25),
            category="stolen",
            topic="stolen_vehicle",
            outcome="in_progress",
            ended_at=None,
            duration_seconds=None,
        )
        add_call(
            session,
            "CAhungup",
            at(30),
            ticket_status="pending",
            outcome="interrupted",
            interrupted=True,
            caller_raw="+79031112233",
            caller_e164="+79031112233",
        )


ALL_NEWEST_FIRST = [
    "CAhungup",
    "CAringing",
    "CAanswered",
    "CAunanswered",
    "CAfailed",
    "CAincident",
    "CAconsult",
    "CAevening",
]


@pytest.mark.both_databases  # stored times compared per dialect
@pytest.mark.usefixtures("log")
def test_each_filter(client: FlaskClient, token: str) -> None:
    assert sids(client, token, "") == ALL_NEWEST_FIRST
    # Moscow days: 23:30 Moscow on the 26th is the 26th, though it is 20:30 UTC.
    assert sids(client, token, "from=2025-11-26&to=2025-11-26") == ["CAevening"]
    assert sids(client, token, "from=2025-11-27") == ALL_NEWEST_FIRST[:-1]
    assert sids(client, token, "to=2025-11-26") == ["CAevening"]
    assert sids(client, token, "from=2025-11-28") == []
    # The line in any spelling.
    assert sids(client, token, "line=8 (812) 607-77-41") == ["CAconsult"]
    assert sids(client, token, "line=%2B78126077741,88002506077") == ALL_NEWEST_FIRST
    assert sids(client, token, "category=consultation") == ["CAconsult"]
    assert sids(client, token, "category=critical,stolen") == [
        "CAringing",
        "CAanswered",
        "CAunanswered",
    ]
    assert sids(client, token, "topic=accounts_access") == ["CAfailed"]
    assert sids(client, token, "outcome=interrupted") == ["CAhungup"]
    assert sids(client, token, "outcome=in_progress,interrupted") == ["CAhungup", "CAringing"]
    assert sids(client, token, "has_ticket=true") == [
        "CAanswered",
        "CAunanswered",
        "CAincident",
        "CAevening",
    ]
    assert sids(client, token, "has_ticket=no") == [
        "CAhungup",
        "CAringing",
        "CAfailed",
        "CAconsult",
    ]
    assert sids(client, token, "ticket_failed=1") == ["CAfailed"]
    assert "CAconsult" in sids(client, token, "ticket_failed=false")
    assert "CAfailed" not in sids(client, token, "ticket_failed=false")
    # Urgent, over, and nobody pressed 1 (a call still ringing is not yet unanswered).
    assert sids(client, token, "urgent_unanswered=true") == ["CAunanswered"]
    assert "CAunanswered" not in sids(client, token, "urgent_unanswered=false")
    assert sids(client, token, "flagged=true") == ["CAunanswered"]
    assert sids(client, token, "category=incident&has_ticket=true&from=2025-11-27") == [
        "CAincident"
    ]


@pytest.mark.both_databases  # Cyrillic case folding per dialect
@pytest.mark.usefixtures("log")
def test_search_by_number_in_any_spelling_ticket_or_name(client: FlaskClient, token: str) -> None:
    assert sids(client, token, "q=8 (903) 111-22-33") == ["CAhungup"]
    assert sids(client, token, "q=%2B7 903 1112233") == ["CAhungup"]
    assert sids(client, token, "q=22-33") == ["CAhungup"]
    assert sids(client, token, "q=8 812 123 45 67") == ["CAconsult"]
    assert sids(client, token, "q=1042") == ["CAincident"]
    assert sids(client, token, "q=№1043") == ["CAunanswered"]
    assert sids(client, token, "q=ромашка") == ["CAincident"]
    assert sids(client, token, "q=Петров") == ["CAincident"]
    assert sids(client, token, "q=CAfailed") == ["CAfailed"]
    assert sids(client, token, "q=%25") == []  # LIKE wildcards are text, not patterns


@pytest.mark.usefixtures("log")
def test_the_json_carries_the_urgent_unanswered_flag_the_filter_uses(
    client: FlaskClient, token: str
) -> None:
    calls = get(client, "/api/calls", token).get_json()["calls"]
    assert [c["call_sid"] for c in calls if c["urgent_unanswered"]] == ["CAunanswered"]
    failed = next(c for c in calls if c["call_sid"] == "CAfailed")
    assert (failed["ticket_state"], failed["ticket_error"]) == (
        "failed",
        "portal said 422: topic missing",
    )


BAD_FILTERS = [
    ("from=yesterday", "from", "'yesterday' is not a date (YYYY-MM-DD, Moscow)"),
    ("from=2025-11-27&to=2025-11-26", "to", "2025-11-26 is before from=2025-11-27"),
    ("category=urgent", "category", "unknown category 'urgent'"),
    ("outcome=done", "outcome", "unknown outcome 'done'"),
    ("topic=printers", "topic", "unknown topic 'printers'"),
    ("topic=DROP TABLE", "topic", "'DROP TABLE' is not a topic slug"),
    ("line=hello", "line", "'hello' is not a phone number"),
    ("has_ticket=maybe", "has_ticket", "'maybe' is not true or false"),
    ("per_page=500", "per_page", "must be between 1 and 200"),
    ("page=0", "page", "must be 1 or more"),
    ("page=two", "page", "'two' is not a whole number"),
    ("catgory=incident", "catgory", "unknown filter"),
]


def test_a_bad_filter_is_400_naming_the_parameter(client: FlaskClient, token: str) -> None:
    for query, parameter, message in BAD_FILTERS:
        response = get(client, f"/api/calls?{query}", token)
        assert response.status_code == 400, query
        body = response.get_json()
        assert body["error"] == "invalid_filter"
        assert body["parameter"] == parameter, query
        assert body["message"].startswith(message), body


# ---------------------------------------------------------------- pages


@pytest.mark.usefixtures("log")
def test_pages_follow_next_links_to_the_end(client: FlaskClient, token: str) -> None:
    seen: list[str] = []
    url: str | None = "/api/calls?per_page=3&category=incident,critical,stolen,consultation"
    pages = []
    while url is not None:
        body = get(client, url, token).get_json()
        pages.append((body["page"], body["pages"], body["total"], len(body["calls"])))
        seen += [c["call_sid"] for c in body["calls"]]
        url = body["next"]
    assert pages == [(1, 3, 8, 3), (2, 3, 8, 3), (3, 3, 8, 2)]
    assert seen == ALL_NEWEST_FIRST
    last = get(client, "/api/calls?per_page=3&page=3", token).get_json()
    assert last["next"] is None
    assert last["prev"] == "/api/calls?page=2&per_page=3"
    beyond = get(client, "/api/calls?per_page=3&page=9", token).get_json()
    assert beyond["calls"] == [] and beyond["total"] == 8


@pytest.mark.usefixtures("log")
def test_next_link_keeps_the_filters(client: FlaskClient, token: str) -> None:
    body = get(client, "/api/calls?per_page=1&category=stolen&from=2025-11-27", token).get_json()
    assert body["next"] == "/api/calls?from=2025-11-27&category=stolen&page=2&per_page=1"
    assert get(client, body["next"], token).get_json()["calls"][0]["call_sid"] == "CAanswered"


# ---------------------------------------------------------------- the query module


@pytest.mark.both_databases  # the statements per dialect
@pytest.mark.usefixtures("log")
def test_a_page_costs_a_fixed_number_of_queries(services: Services) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(services.engine, "before_cursor_execute", count)
    try:
        with services.sessions() as session:
            found = search_calls(session, CallFilter(q="ромашка"), PageRequest(per_page=200))
            assert [c.call_sid for c in found.calls] == ["CAincident"]
            statements.clear()
            found = search_calls(session, CallFilter(), PageRequest(per_page=200))
            # Touch everything call_json reads: no lazy loads may follow.
            for call in found.calls:
                _ = (call.contact, call.organisation, call.ticket_request, call.legs)
                _ = (call.events, call.notes)
    finally:
        event.remove(services.engine, "before_cursor_execute", count)
    # count + calls (with contact, organisation, ticket) + legs + events + notes
    assert len(statements) == 5, statements


@pytest.mark.both_databases  # streamed reads per dialect
@pytest.mark.usefixtures("log")
def test_the_export_stream_walks_every_call_in_batches(services: Services) -> None:
    with services.sessions() as session:
        streamed = [c.call_sid for c in iter_calls(session, CallFilter(), batch=3)]
        assert streamed == ALL_NEWEST_FIRST
        urgent = iter_calls(session, CallFilter(categories=("critical", "stolen")), batch=1)
        assert [c.call_sid for c in urgent] == ["CAringing", "CAanswered", "CAunanswered"]


def test_a_filter_reads_back_from_its_own_params() -> None:
    params = {
        "from": "2025-11-01",
        "to": "2025-11-30",
        "line": "8 800 250 60 77",
        "category": "critical, stolen",
        "topic": "data_update",
        "outcome": "completed",
        "has_ticket": "yes",
        "ticket_failed": "0",
        "urgent_unanswered": "on",
        "flagged": "false",
        "q": "Ромашка",
        "page": "2",
    }
    call_filter = CallFilter.from_params(params, known_topics={"data_update"})
    assert call_filter.lines == ("+78002506077",)
    assert call_filter.categories == ("critical", "stolen")
    assert CallFilter.from_params(call_filter.to_params()) == call_filter
    assert CallFilter.from_params({"category": " ", "q": ""}) == CallFilter()
    with pytest.raises(InvalidFilter) as exc:
        CallFilter.from_params({"page": "1", "sort": "asc"})
    assert exc.value.field == "sort"
