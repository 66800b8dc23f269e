"""An SMS Twilio has taken while the database goes away: its outcome is written down once
the database is back — `sent`, with Twilio's Message SID — and the SMS went out once.

Real processes (the Procfile's `web` and `worker`, a private Redis) reach PostgreSQL
through a TCP gate (`tests.processes.TcpGate`), and Twilio (Prism serving Twilio's own
OpenAPI description) through a proxy in this test that counts every request. The proxy
cuts the database off the moment Twilio has answered the SMS request with its 201 and the
Message resource, before the worker sees the answer: exactly the window between Twilio's
accept and the write of the outcome.

Twilio's side as its docs say: creating a Message answers 201 with the Message resource,
whose `sid` identifies it from then on
(https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from sqlalchemy import select

from callcenter.db.models import SmsMessage
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import TEST_ACCOUNT_SID
from tests.processes import ServiceStack, TcpGate, wait_until
from tests.test_faults_database import through
from tests.ticket_pipeline import CALLER, open_request, request_row

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.prism]

MESSAGES_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Messages.json"
# How long the database stays away once Twilio has answered: several of the worker's
# tries to write the outcome (0.5 s, doubling, at most 5 s apart) meet it gone.
OUTAGE_SECONDS = 8.0


class TwilioProxy:
    """Prism behind a counting proxy: `messages` holds every SMS request that reached it
    (the form and the Message resource answered); `on_message_created` runs after Prism
    has answered a create with 201 and before the answer is passed on."""

    def __init__(self, target: str, on_message_created: Callable[[], None]) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        proxy, http = self, requests.Session()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                upstream = http.request(
                    self.command, target + self.path, data=body, headers=headers, timeout=30
                )
                if self.command == "POST" and self.path == MESSAGES_PATH:
                    with proxy.lock:
                        proxy.messages.append((body.decode(), upstream.json()))
                    if upstream.status_code == 201:
                        on_message_created()
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            do_GET = do_POST = _forward  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def sent(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_sms_twilio_took_while_the_database_went_away_is_recorded_sent_once_it_is_back(
    gate: TcpGate,
    start_stack: Callable[..., ServiceStack],
    pg_database_url: str,
    prism_url: str,
) -> None:
    cut_at: list[float] = []

    def database_goes_away() -> None:
        if not cut_at:
            gate.cut()
            cut_at.append(time.monotonic())

    twilio = TwilioProxy(prism_url, database_goes_away)
    stack = start_stack(database_url=through(gate, pg_database_url), TWILIO_API_BASE_URL=twilio.url)
    assert stack.redis is not None
    db = Services.from_settings(
        Settings(
            database_url=pg_database_url,  # the test's own way in, not through the gate
            data_dir=stack.data_dir,
            redis_url=stack.redis.url,
            queue_name=stack.queue_name,
        )
    )
    try:
        request_id = open_request(db, caller=CALLER)
        key = f"ticket-request:{request_id}:caller"
        assert db.jobs.submit_ticket_request(request_id)

        def worker_says(text: str) -> list[dict[str, Any]]:
            return [
                r
                for r in stack.worker.json_lines(strict=False)
                if key in r["msg"] and text in r["msg"]
            ]

        # The ticket is made, Twilio takes the caller's SMS, and the database is gone.
        wait_until(lambda: cut_at, timeout=60, what="the caller's SMS", on_timeout=stack.logs)
        wait_until(
            lambda: time.monotonic() - cut_at[0] >= OUTAGE_SECONDS,
            timeout=OUTAGE_SECONDS + 5,
            what="the outage to last",
        )
        assert stack.worker.alive, stack.worker.log_tail()
        gate.restore()

        # Nobody touches anything: the outcome is written as soon as the database is back.
        def settled() -> SmsMessage | None:
            with db.sessions() as session:
                row = session.scalars(select(SmsMessage).where(SmsMessage.key == key)).one()
            return row if row.status != "sending" else None

        row = wait_until(
            settled, timeout=30, what="the SMS's outcome to be written", on_timeout=stack.logs
        )
        sent = twilio.sent()
        assert len(sent) == 1, sent  # sent once: never asked again
        form, message = sent[0]
        assert (row.status, row.twilio_sid) == ("sent", message["sid"])
        assert row.to == CALLER and f"To={requests.utils.quote(CALLER)}" in form
        # The follow-ups job went on and wrote what it did; the caller is told once.
        wait_until(
            lambda: request_row(db, request_id).followups.get("caller_sms") == "sent",
            timeout=30,
            what="the follow-ups to be recorded",
            on_timeout=stack.logs,
        )
        assert len(twilio.sent()) == 1
        # One line when the database went away, one when it came back: no line per try.
        away, back = worker_says("the database is away"), worker_says("the database is back")
        assert len(away) == 1 and away[0]["level"] == "WARNING", away
        assert len(back) == 1 and back[0]["level"] == "INFO", back
        assert message["sid"] in back[0]["msg"]
        assert not worker_says("stays `sending`")
        print(f"database away for {time.monotonic() - cut_at[0]:.1f} s; {back[0]['msg']}")
        print(json.dumps({"twilio_requests": len(twilio.sent())}))
    finally:
        db.close()
        twilio.close()
