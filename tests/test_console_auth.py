"""Who may see and do what in the console: every route, every role, CSRF, throttling.

The routes are read from the app's URL map, so a page or an action added later is
checked too without anyone listing it here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.access.users import set_password
from callcenter.console.auth import IDLE_TIMEOUT, POST_FOR_SPECIALISTS, TOO_MANY_LOGINS
from callcenter.db import transaction
from callcenter.db.models import Call, TicketRequest
from callcenter.services import Services
from tests.conftest import MutableClock
from tests.console_helpers import (
    PASSWORD,
    RECORDING_SID,
    SampleLog,
    add_user,
    csrf_of,
    login,
    sample_log,
)

NAMES = SampleLog()
URL_VALUES: dict[str, str | int] = {
    "call_sid": NAMES.failed,
    "sid": RECORDING_SID,
    "number": "1001",
    "contact_id": 1,
    "organisation_id": 1,
    "incident_id": 1,
    "item_id": 1,
}
OPEN = {"console.login", "console.static", "console.logout"}
# What a browser sends when it navigates to a page.
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def console_routes(app: Flask, method: str) -> Iterator[tuple[str, str]]:
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("console.") or rule.endpoint in OPEN:
                continue
            if method not in (rule.methods or set()):
                continue
            values = {arg: URL_VALUES[arg] for arg in rule.arguments}
            yield rule.endpoint, app.url_for(rule.endpoint, **values)  # type: ignore[arg-type]


def test_the_console_has_the_routes_we_guard(app: Flask) -> None:
    gets = dict(console_routes(app, "GET"))
    posts = dict(console_routes(app, "POST"))
    assert {
        "console.calls",
        "console.call_page",
        "console.call_recording",
        "console.recording",
        "console.dashboard",
        "console.ticket_page",
        "console.directory",
        "console.roster",
        "console.export_calls",
        "console.incidents",
    } <= set(gets)
    assert {
        "console.retry_ticket",
        "console.mark_called_back",
        "console.add_note",
        "console.open_ticket",
        "console.save_roster",
        "console.import_upload",
        "console.edit_contact",
        "console.remove_contact",
        "console.open_incident",
        "console.edit_incident_message",
        "console.close_incident",
        "console.take_callback",
        "console.dial_callback",
        "console.callback_result",
    } <= set(posts)
    assert "console.callbacks" in gets


def test_every_page_and_stream_refuses_an_anonymous_request(
    app: Flask, client: FlaskClient, services: Services
) -> None:
    sample_log(services, services.settings.data_dir / "recordings")
    for endpoint, url in console_routes(app, "GET"):
        page = client.get(url, headers=HTML)
        if url.endswith(".json") or "/recording" in url:
            assert page.status_code == 401, (endpoint, page.status_code)
        else:
            assert page.status_code == 302, (endpoint, page.status_code)
            assert page.headers["Location"].startswith("/console/login?next=")
        # A media element or a script (no text/html in Accept) gets 401, never content.
        other = client.get(url, headers={"Accept": "*/*"})
        assert other.status_code == 401, (endpoint, other.status_code)
        assert b"RIFF" not in other.data and b"\xef\xbb\xbf" not in other.data
    for endpoint, url in console_routes(app, "POST"):
        response = client.post(url, data={"csrf_token": csrf_of(client)})
        assert response.status_code == 401, (endpoint, response.status_code)


def test_a_specialist_reads_everything_and_changes_only_callbacks_and_notes(
    app: Flask, client: FlaskClient, services: Services
) -> None:
    sample_log(services, services.settings.data_dir / "recordings")
    add_user(services, "ivanov", "specialist")
    assert login(client, "ivanov").status_code == 302
    for endpoint, url in console_routes(app, "GET"):
        if endpoint in ("console.edit_contact", "console.edit_organisation"):
            continue  # no such rows in the sample: 404 either way
        response = client.get(url)
        response.close()  # recordings are files, the export a stream
        assert response.status_code in (200, 404), (endpoint, response.status_code)
    page = client.get(f"/console/calls/{NAMES.failed}").get_data(as_text=True)
    assert "специалист" in page and "руководитель" not in page
    # A specialist adds notes (and works the call-back queue), nothing else.
    assert 'id="retry-ticket"' not in page and 'name="text"' in page
    token = csrf_of(client)
    for endpoint, url in console_routes(app, "POST"):
        if endpoint in POST_FOR_SPECIALISTS:
            continue
        response = client.post(url, data={"csrf_token": token, "text": "x", "roster": "x"})
        assert response.status_code == 403, (endpoint, response.status_code)
        assert "только руководителю" in response.get_data(as_text=True)
    with services.sessions() as session:
        failed = session.scalar(
            select(TicketRequest).where(TicketRequest.idempotency_key == NAMES.failed)
        )
        assert failed is not None and failed.status == "failed"
        call = session.scalars(select(Call).where(Call.call_sid == NAMES.failed)).one()
        assert call.notes == [] and call.called_back_at is None


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_the_sessions_csrf_token_is_refused(
    client: FlaskClient, services: Services, token: str | None
) -> None:
    sample_log(services)
    add_user(services, "head", "supervisor")
    login(client, "head")
    data = {"text": "Перезвонить завтра"}
    if token is not None:
        data["csrf_token"] = token
    response = client.post(f"/console/calls/{NAMES.failed}/notes", data=data)
    assert response.status_code == 400
    assert "Форма устарела" in response.get_data(as_text=True)
    # The header works as well as the field (for scripts); the note is then saved.
    good = client.post(
        f"/console/calls/{NAMES.failed}/notes",
        data={"text": "Перезвонить завтра"},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert good.status_code == 302


def test_login_without_csrf_is_refused_and_logout_needs_it_too(
    client: FlaskClient, services: Services
) -> None:
    add_user(services, "head", "supervisor")
    refused = client.post("/console/login", data={"name": "head", "password": PASSWORD})
    assert refused.status_code == 400
    assert login(client, "head").status_code == 302
    assert client.post("/console/logout").status_code == 400
    assert client.get("/console/").status_code == 200
    assert client.post("/console/logout", data={"csrf_token": csrf_of(client)}).status_code == 302
    assert client.get("/console/", headers=HTML).status_code == 302


def test_login_throttling_per_name_answers_alike_for_known_and_unknown_names(
    app: Flask, services: Services
) -> None:
    add_user(services, "head", "supervisor")
    answers: dict[str, list[int]] = {}
    for name in ("head", "ghost"):
        client = app.test_client()
        statuses = [login(client, name, "wrong password").status_code for _ in range(6)]
        answers[name] = statuses
        last = login(client, name, "wrong password")
        assert TOO_MANY_LOGINS in last.get_data(as_text=True)
        assert last.headers["Retry-After"] == "60"
    # The same sequence for a real name and an unknown one: nothing tells them apart.
    assert answers["head"] == answers["ghost"] == [401] * 5 + [429]


def test_login_throttling_per_address(app: Flask, client: FlaskClient, services: Services) -> None:
    add_user(services, "head", "supervisor")
    for n in range(20):
        # Guessing names, so no per-name limit is reached: only the address counts.
        assert login(client, f"guess{n}", "wrong password").status_code == 401
    assert login(client, "head").status_code == 429
    other = app.test_client()
    page = other.get("/console/login", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    token = csrf_of(other)
    assert page.status_code == 200
    response = other.post(
        "/console/login",
        data={"name": "head", "password": PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert response.status_code == 302


def test_a_new_password_or_a_long_pause_ends_the_session(
    client: FlaskClient, services: Services, clock: MutableClock
) -> None:
    add_user(services, "head", "supervisor")
    login(client, "head")
    assert client.get("/console/").status_code == 200
    with transaction(services.sessions) as session:
        set_password(session, "head", "a brand new passphrase")
    assert client.get("/console/", headers=HTML).status_code == 302
    login(client, "head", "a brand new passphrase")
    assert client.get("/console/").status_code == 200
    clock.now += IDLE_TIMEOUT - timedelta(minutes=1)
    assert client.get("/console/").status_code == 200  # still active: the clock restarted
    clock.now += IDLE_TIMEOUT + timedelta(minutes=1)
    assert client.get("/console/", headers=HTML).status_code == 302


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(
    client: FlaskClient, services: Services
) -> None:
    add_user(services, "head", "supervisor")
    first = client.get("/console/dashboard?from=2025-11-01", headers=HTML)
    assert first.headers["Location"] == "/console/login?next=/console/dashboard?from%3D2025-11-01"
    page = client.get(first.headers["Location"])
    token = csrf_of(client)
    assert 'name="next" value="/console/dashboard?from=2025-11-01"' in page.get_data(as_text=True)
    done = client.post(
        "/console/login",
        data={
            "name": "head",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/console/dashboard?from=2025-11-01",
        },
    )
    assert done.headers["Location"] == "/console/dashboard?from=2025-11-01"
    for evil in ("https://evil.example/", "//evil.example/console/", "/api/calls", "/\\evil"):
        client.post("/console/logout", data={"csrf_token": csrf_of(client)})
        client.get("/console/login")
        response = client.post(
            "/console/login",
            data={
                "name": "head",
                "password": PASSWORD,
                "csrf_token": csrf_of(client),
                "next": evil,
            },
        )
        assert response.headers["Location"] == "/console/", evil


def test_pages_carry_no_store_and_a_strict_content_security_policy(
    client: FlaskClient, services: Services
) -> None:
    add_user(services, "head", "supervisor")
    login(client, "head")
    response = client.get("/console/")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    cookie = response.headers.get("Set-Cookie") or ""
    assert cookie == "" or "HttpOnly" in cookie


def test_production_cookies_are_secure(make_services: object) -> None:
    from callcenter.app import create_app

    services = make_services(  # type: ignore[operator]
        production=True,
        secret_key="a-real-secret-for-the-test-of-32-characters",
        # A closed local port: the start-up roster check fails fast, as it may.
        database_url="postgresql+psycopg://postgres@127.0.0.1:9/prod",
        public_base_url="https://hotline.example",
        duty_phone="+79110000001",
    )
    app = create_app(services=services)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_the_site_root_leads_to_the_console_and_the_login_page_shows_no_commands(
    client: FlaskClient, services: Services
) -> None:
    root = client.get("/", headers=HTML)
    assert (root.status_code, root.headers["Location"]) == (302, "/console/")
    console = client.get(root.headers["Location"], headers=HTML)
    assert console.headers["Location"] == "/console/login?next=/console/"
    login_page = client.get(console.headers["Location"]).get_data(as_text=True)
    assert "Вход в консоль руководителя" in login_page
    assert "<code>" not in login_page and "callcenter" not in login_page
    assert "обратитесь к администратору" in login_page
    add_user(services, "head", "supervisor")
    login(client, "head")
    signed_in = client.get("/", headers=HTML, follow_redirects=True)
    assert signed_in.status_code == 200
    assert "Журнал звонков" in signed_in.get_data(as_text=True)
