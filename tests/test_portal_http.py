"""HttpPortal against real HTTP servers.

The main server is the built-in portal's API itself (the real app, served by werkzeug on
a free loopback port, on SQLite and PostgreSQL). Failures the built-in portal never
produces (500, a hang, HTML from a proxy) come from a tiny `http.server` of our own.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
import requests
import yaml
from sqlalchemy import func, select
from werkzeug.serving import make_server

from callcenter.app import create_app
from callcenter.db.models import Ticket
from callcenter.errors import (
    InvalidStatusChange,
    InvalidTicketData,
    PortalRejected,
    PortalUnavailable,
    TicketNotFound,
)
from callcenter.portal.http import HttpPortal
from callcenter.portal.protocol import AffectedOrganisation, IncidentLink, TicketDraft
from callcenter.services import Services
from tests.misbehaving_portal import Script
from tests.test_portal_api import PREFIX, SPEC_PATH, TOKEN, Contract
from tests.test_portal_builtin import draft, run_in_threads


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@functools.cache
def contract() -> Contract:
    return Contract(yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8")))


# ---------------------------------------------------------------- the built-in portal, served


@dataclass
class Served:
    base_url: str
    services: Services

    def tickets(self) -> int:
        with self.services.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Ticket)) or 0)


def serve_app(services: Services) -> Iterator[str]:
    """The whole app on a free loopback port, in a thread; yields the portal API's root."""
    app = create_app(services=services)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="portal-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{PREFIX}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def served(make_services: Callable[..., Services]) -> Iterator[Served]:
    services = make_services(builtin_portal_token=TOKEN)
    for base_url in serve_app(services):
        yield Served(base_url, services)


@pytest.fixture
def portal(served: Served) -> Iterator[HttpPortal]:
    client = HttpPortal(served.base_url, TOKEN, timeout=(2, 10))
    yield client
    client.close()


def test_create_read_and_replay_through_http(portal: HttpPortal, served: Served) -> None:
    sent = draft("CA-http-1", priority="high")
    created = portal.create_ticket(sent)

    assert created.number == "1001"
    assert created.status == "Новая"
    assert created.priority == "high"
    assert created.first_stage_due == sent.first_stage_due
    assert created.resolution_due == sent.resolution_due
    assert created.vehicles == sent.vehicles
    assert created.organisation_name == "ООО «Трансавто»"
    assert created.url == "https://hotline.example.test/console/tickets/1001"
    assert [e.kind for e in created.history] == ["created"]

    # The job retried (its first answer was lost): the same key, the same ticket.
    replayed = portal.create_ticket(sent)
    assert replayed == created
    assert portal.get_ticket("1001") == created
    assert served.tickets() == 1


@pytest.mark.both_databases  # concurrent creates: ON CONFLICT
def test_concurrent_retries_of_one_call_make_one_ticket(portal: HttpPortal, served: Served) -> None:
    numbers = run_in_threads(6, lambda _i: portal.create_ticket(draft("CA-race")).number)
    assert set(numbers) == {"1001"}
    assert served.tickets() == 1


def test_entries_and_phone_duplicates_through_http(portal: HttpPortal) -> None:
    portal.create_ticket(draft("CA-crit", topic="critical_failure"))
    portal.add_entry("1001", text="Сервер перезапущен", author="Петров")
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE9"
    portal.add_entry("1001", attachment_url=url, dedup_key="recording:RE9")
    portal.add_entry("1001", attachment_url=url, dedup_key="recording:RE9")
    view = portal.record_phone_duplicate(
        "1001", at=at("2025-11-27T11:20:00+03:00"), caller="+79161234567", call_ref="CA-dup"
    )

    assert view.priority == "critical"
    assert view.duplicated_by_phone_at == at("2025-11-27T11:20:00+03:00")
    assert [e.kind for e in view.history] == ["created", "comment", "attachment", "phone_duplicate"]
    assert view.history[2].attachment_url == url


def test_open_tickets_affected_clients_and_incidents_through_http(
    portal: HttpPortal, served: Served
) -> None:
    portal.create_ticket(draft("CA-a"))
    portal.create_ticket(draft("CA-b", contact_id=None))
    portal.create_ticket(draft("CA-c", contact_id=8, caller="+79031112233"))

    assert [v.number for v in portal.open_tickets(contact_id=7)] == ["1001"]
    assert [v.number for v in portal.open_tickets(caller="+79161234567")] == ["1002", "1001"]
    assert portal.open_tickets() == ()

    orgs = [AffectedOrganisation("ООО «Ромашка»", 5), AffectedOrganisation("ИП Сидоров")]
    first = portal.add_affected_organisations("1003", orgs, author="Телефонная линия")
    # The job retried (the answer was lost): nothing is added twice.
    again = portal.add_affected_organisations("1003", orgs)
    assert again == first
    assert again.affected_organisations == tuple(orgs)

    link = IncidentLink("7", "сбой СКАЙ Онлайн")
    linked = portal.link_incident("1003", link)
    assert portal.link_incident("1003", link) == linked
    assert linked.incidents == (link,)
    assert [e.kind for e in linked.history] == ["created", "affected_client", "incident"]
    assert portal.get_ticket("1003") == linked

    with pytest.raises(TicketNotFound):
        portal.link_incident("4242", link)
    with pytest.raises(InvalidTicketData) as refused:
        portal.add_affected_organisations("1003", [])
    assert set(refused.value.fields) == {"organisations"}


def test_a_recording_comment_with_the_calls_link_is_added_once_through_http(
    portal: HttpPortal,
) -> None:
    """What a repeat caller's addition leaves: one entry with the text, the call's link and
    the recording, however often the job sends it."""
    portal.create_ticket(draft("CA-first"))
    text = "Дополнение по телефону. Звонок: https://hotline.example.test/console/calls/CA-2"
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE2"
    for _ in range(2):
        view = portal.add_entry(
            "1001",
            text=text,
            attachment_url=url,
            attachment_name="RE2.mp3",
            author="Телефонная линия",
            dedup_key="recording:RE2",
        )
    added = [e for e in view.history if e.kind == "attachment"]
    assert [(e.text, e.attachment_url, e.attachment_name) for e in added] == [
        (text, url, "RE2.mp3")
    ]


def test_a_bad_draft_is_rejected_with_the_portals_field_errors(
    portal: HttpPortal, served: Served
) -> None:
    with pytest.raises(InvalidTicketData) as caught:
        portal.create_ticket(draft(priority="urgent", first_stage_due=datetime(2025, 11, 28)))

    assert isinstance(caught.value, PortalRejected)
    assert set(caught.value.fields) == {"priority", "first_stage_due"}
    assert "422" in str(caught.value) and "must be one of normal, high, critical" in str(
        caught.value
    )
    assert served.tickets() == 0


def test_unknown_tickets_are_not_found_over_http(portal: HttpPortal) -> None:
    with pytest.raises(TicketNotFound):
        portal.get_ticket("4242")
    with pytest.raises(TicketNotFound):
        portal.add_entry("4242", text="?")
    with pytest.raises(TicketNotFound):
        portal.get_ticket("../tickets")


def test_a_wrong_token_is_a_rejection_with_the_servers_reason(served: Served) -> None:
    client = HttpPortal(served.base_url, "not-the-token")
    try:
        with pytest.raises(PortalRejected, match="401.*Bearer"):
            client.create_ticket(draft())
    finally:
        client.close()
    assert served.tickets() == 0


def test_a_portal_with_its_api_switched_off_says_why(
    make_services: Callable[..., Services],
) -> None:
    for base_url in serve_app(make_services(builtin_portal_token=None)):
        client = HttpPortal(base_url, TOKEN)
        try:
            with pytest.raises(PortalRejected, match="403.*BUILTIN_PORTAL_TOKEN is not set"):
                client.get_ticket("1001")
        finally:
            client.close()


def test_a_served_ticket_is_the_documented_shape(served: Served, portal: HttpPortal) -> None:
    """What HttpPortal parsed came in the shape openapi.yaml documents (the server side is
    checked answer by answer in test_portal_api; here once more, through a real socket)."""
    portal.create_ticket(draft())
    with requests.get(
        f"{served.base_url}/tickets/1001", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ) as response:
        contract().check("GET", f"{PREFIX}/tickets/1001", response)


def error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected", "says"),
    [
        (500, error("boom", "database on fire"), PortalUnavailable, "500: database on fire"),
        (503, b"<html>Service Unavailable</html>", PortalUnavailable, "503"),
        (429, error("slow_down", "too many requests"), PortalUnavailable, "too many"),
        (408, b"", PortalUnavailable, "408"),
        (200, b"<html>login page of a proxy</html>", PortalUnavailable, "not a ticket"),
        (201, json.dumps({"number": 1001}).encode(), PortalUnavailable, "not a ticket"),
        (403, error("forbidden", "token may not create"), PortalRejected, "may not create"),
        (404, b"Not Found", PortalRejected, "404"),
        (409, error("conflict", "closed"), InvalidStatusChange, "closed"),
        (422, error("invalid", "no fields given"), PortalRejected, "no fields given"),
    ],
)
def test_answers_map_to_named_errors(
    misbehaving: tuple[Script, str],
    status: int,
    body: bytes,
    expected: type[Exception],
    says: str,
) -> None:
    script, base_url = misbehaving
    script.status, script.body = status, body
    client = HttpPortal(base_url, "t0ken")
    try:
        with pytest.raises(expected) as caught:
            client.create_ticket(draft("CA-answers"))
    finally:
        client.close()
    assert type(caught.value) is expected
    assert says in str(caught.value)


def test_create_sends_the_key_the_token_and_a_documented_body(
    misbehaving: tuple[Script, str],
) -> None:
    script, base_url = misbehaving
    script.status, script.body = 500, error("boom", "later")
    client = HttpPortal(base_url + "/", "t0ken")
    try:
        for _ in range(2):
            with pytest.raises(PortalUnavailable):
                client.create_ticket(draft("CA-key-1"))
    finally:
        client.close()

    assert [r["path"] for r in script.requests] == ["/api/v1/tickets"] * 2
    for request in script.requests:
        assert request["method"] == "POST"
        assert request["headers"]["Idempotency-Key"] == "CA-key-1"
        assert request["headers"]["Authorization"] == "Bearer t0ken"
        contract().check_schema("TicketDraft", request["json"])


def test_a_redirect_is_not_followed(misbehaving: tuple[Script, str]) -> None:
    script, base_url = misbehaving
    script.status, script.body = 302, b""
    script.headers = {"Location": "https://elsewhere.example/login"}
    client = HttpPortal(base_url, "t0ken")
    try:
        with pytest.raises(PortalRejected, match="redirected to https://elsewhere.example/login"):
            client.create_ticket(draft())
    finally:
        client.close()
    assert len(script.requests) == 1


def test_404_on_a_tickets_own_url_is_not_found(misbehaving: tuple[Script, str]) -> None:
    script, base_url = misbehaving
    script.status, script.body = 404, error("ticket_not_found", "no ticket 77")
    client = HttpPortal(base_url, "t0ken")
    try:
        with pytest.raises(TicketNotFound, match="no ticket 77"):
            client.get_ticket("77")
    finally:
        client.close()


def test_a_hanging_portal_times_out_as_unavailable(misbehaving: tuple[Script, str]) -> None:
    script, base_url = misbehaving
    script.hang = True
    client = HttpPortal(base_url, "t0ken", timeout=(1, 0.3))
    started = time.monotonic()
    try:
        with pytest.raises(PortalUnavailable, match="no answer within"):
            client.create_ticket(draft())
    finally:
        client.close()
    # The read timeout, not the server's 10 s hang, ended the wait.
    assert time.monotonic() - started < 5
    assert len(script.requests) == 1


def test_a_portal_that_is_down_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = HttpPortal(f"http://127.0.0.1:{port}/api/v1", "t0ken")
    try:
        with pytest.raises(PortalUnavailable, match="ConnectionError"):
            client.create_ticket(draft())
    finally:
        client.close()


def test_the_constructor_refuses_unusable_settings() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpPortal("portal.example/api", "t")
    with pytest.raises(ValueError, match="positive"):
        HttpPortal("https://portal.example/api", "t", timeout=(0, 10))


def test_the_draft_fields_cross_the_wire_unchanged(portal: HttpPortal) -> None:
    sent = TicketDraft(
        topic="stolen_vehicle",
        description="Угнан автомобиль, нужен трекинг",
        idempotency_key="CA-stolen",
        vehicles=("Х001ХХ777",),
        caller="anonymous",
        call_ref="CA-stolen",
        priority="critical",
        first_stage_due=at("2025-11-27T12:00:00+00:00"),
        resolution_due=None,
    )
    view = portal.create_ticket(sent)

    assert (view.topic, view.priority, view.caller) == ("stolen_vehicle", "critical", "anonymous")
    assert view.first_stage_due == sent.first_stage_due
    assert view.resolution_due is None
    assert view.contact_name is None and view.organisation_id is None
    assert view.description == sent.description
