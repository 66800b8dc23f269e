"""Helpers for the ticket pipeline's tests: calls as the IVR leaves them, a live built-in
portal API over real HTTP, the whole service over real HTTP, a port nothing listens on, and
an RQ worker in burst mode."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from callcenter.app import create_app
from callcenter.calls.store import get_or_create_call
from callcenter.db import transaction
from callcenter.db.models import Call, Contact, ContactPhone, Organisation, Ticket, TicketRequest
from callcenter.jobs.worker import run_worker
from callcenter.services import Services
from callcenter.tickets.intake import open_ticket_request

CALLER = "+79161234567"  # a Russian mobile
LANDLINE = "+74951234567"
HOTLINE = "+78002506077"
PORTAL_TOKEN = "portal-test-token"


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


def new_recording_sid() -> str:
    return "RE" + uuid.uuid4().hex


def add_contact(
    session: Session,
    *,
    now: datetime,
    name: str = "Иванов Иван",
    organisation: str = "ООО «Ромашка»",
    phone: str = CALLER,
    topic_days: dict[str, int] | None = None,
) -> Contact:
    org = Organisation(name=organisation, topic_days=topic_days or {}, created_at=now)
    contact = Contact(name=name, organisation=org, created_at=now)
    contact.phones.append(ContactPhone(e164=phone))
    session.add(contact)
    session.flush()
    return contact


def make_call(
    session: Session,
    *,
    now: datetime,
    sid: str | None = None,
    caller: str | None = CALLER,
    line: str = HOTLINE,
    category: str | None = "incident",
    topic: str | None = "system_reports",
    product: str | None = "studio",
    vehicles: Iterable[str] = ("А123ВС77",),
    said_name: str | None = None,
) -> Call:
    """A call as the IVR leaves it: identified by the directory, with what was chosen."""
    call, _ = get_or_create_call(
        session, sid or new_call_sid(), now=now, caller_raw=caller, line_raw=line
    )
    call.category = category
    call.topic = topic
    call.product = product
    call.vehicles = list(vehicles)
    call.caller_said_name = said_name
    session.flush()
    return call


def open_request(services: Services, **call: object) -> int:
    """A finished call and its ticket request, committed (what a webhook leaves)."""
    with transaction(services.sessions) as session:
        row = make_call(session, now=services.clock(), **call)  # type: ignore[arg-type]
        request = open_ticket_request(
            session, row, now=services.clock(), calendar=services.calendar
        )
        session.flush()
        return request.id


def request_row(services: Services, request_id: int) -> TicketRequest:
    with services.sessions() as session:
        row = session.get(TicketRequest, request_id)
        assert row is not None
        return row


def tickets(services: Services) -> list[Ticket]:
    with services.sessions() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.number)))


def ticket_count(services: Services) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Ticket)) or 0)


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class LivePortal:
    """The built-in portal's REST API blueprint served over real HTTP on loopback.

    Only that blueprint is mounted (as `create_app` mounts it, with the app's `Services`),
    so these tests stand on the portal's contract and nothing else of the web app.
    """

    def __init__(self, services: Services) -> None:
        from flask import Flask

        from callcenter.api.portal import bp

        self.services = services
        app = Flask("portal_api_under_test")
        app.extensions["callcenter"] = services
        app.register_blueprint(bp)
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/portal/api/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def serving(services: Services) -> Iterator[str]:
    """The real service (`create_app`), served over HTTP on a free loopback port."""
    http = make_server("127.0.0.1", 0, create_app(services=services), threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(timeout=10)


def work_burst(services: Services) -> bool:
    """A real RQ worker (in this process) works the pipeline's queues until empty."""
    return run_worker(services, burst=True)
