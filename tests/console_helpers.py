"""Shared by the console's tests: users, logging in, and a small call log to look at.

`sample_log` writes the calls a head of support meets on an ordinary morning: a ticketed
new problem with its whole IVR path and a recording, a failed ticket request, an urgent
call nobody accepted, an urgent call accepted after 12 s, a caller who hung up before
choosing, a connected consultation and a new problem that never got a ticket. Rows are
written with the models; the ticket of the first call is a real ticket of the built-in
portal, so its page and the retry path work end to end.
"""

from __future__ import annotations

import io
import math
import re
import struct
import wave
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from callcenter.access.users import create_user
from callcenter.db import transaction
from callcenter.db.models import Call, CallEvent, DialLeg, TicketRequest
from callcenter.portal.protocol import TicketDraft
from callcenter.services import Services
from callcenter.tickets.outbox import draft_to_json
from tests.conftest import DEFAULT_NOW

PASSWORD = "correct horse battery"
T0 = DEFAULT_NOW.astimezone(UTC)  # Thu 2025-11-27 08:00 UTC = 11:00 Moscow
LINE_800 = "+78002506077"
LINE_812 = "+78126077741"
RECORDING_SID = "RE" + "a1" * 16
VOICEMAIL_SID = "RE" + "b2" * 16
TWILIO_RECORDING_URL = (
    "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef"
    f"/Recordings/{RECORDING_SID}"
)


def add_user(services: Services, name: str, role: str, password: str = PASSWORD) -> None:
    with transaction(services.sessions) as session:
        create_user(session, name, role, password, now=services.clock())


def csrf_of(client: FlaskClient) -> str:
    """The session's CSRF token, as a page of the console carries it in its forms (the
    login page when signed out, the call log's logout form when signed in)."""
    page = client.get("/console/login")
    if page.status_code == 302:
        page = client.get("/console/")
    return csrf_in(page.get_data(as_text=True))


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def login(client: FlaskClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/console/login")
    token = csrf_in(page.get_data(as_text=True))
    return client.post(
        "/console/login", data={"name": name, "password": password, "csrf_token": token}
    )


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A real WAV file: a quiet 440 Hz tone, 16-bit mono."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * n / rate)))
            for n in range(int(seconds * rate))
        )
        out.writeframes(frames)
    return buffer.getvalue()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def add_call(
    session: Session,
    sid: str,
    started: datetime,
    *,
    ticket: str | None = None,
    ticket_status: str | None = None,
    draft: dict[str, Any] | None = None,
    legs: tuple[tuple[str, float | None], ...] = (),
    **columns: Any,
) -> Call:
    """A finished call; `legs` are (result, seconds to answer or None)."""
    values: dict[str, Any] = {
        "line": LINE_800,
        "caller_raw": "+79161234567",
        "caller_e164": "+79161234567",
        "caller_kind": "mobile",
        "category": "incident",
        "topic": "data_update",
        "outcome": "completed",
        "ended_at": started + timedelta(minutes=3),
        "duration_seconds": 185,
    }
    values.update(columns)
    call = Call(call_sid=sid, started_at=started, updated_at=started, **values)
    session.add(call)
    session.flush()
    if ticket is not None or ticket_status is not None:
        status = ticket_status or "done"
        session.add(
            TicketRequest(
                call_id=call.id,
                idempotency_key=sid,
                draft=draft or {"topic": call.topic},
                status=status,
                ticket_number=ticket,
                attempts=9 if status == "failed" else 1,
                last_error="portal unavailable: HTTP 503" if status == "failed" else None,
                created_at=started,
                updated_at=started,
            )
        )
    for position, (result, seconds) in enumerate(legs, start=1):
        rung = started + timedelta(seconds=40 + 20 * (position - 1))
        session.add(
            DialLeg(
                call_id=call.id,
                position=position,
                staff_key=f"staff{position}",
                staff_name=["Иванов Иван", "Петрова Анна", "Смирнова Елена"][position - 1],
                number=f"+7912345670{position}",
                started_at=rung,
                answered_at=rung + timedelta(seconds=seconds) if seconds is not None else None,
                ended_at=rung + timedelta(seconds=20),
                result=result,
            )
        )
    session.flush()
    return call


def event(session: Session, call: Call, seconds: float, kind: str, **fields: Any) -> None:
    detail = fields.pop("detail", {})
    session.add(
        CallEvent(
            call_id=call.id,
            at=call.started_at + timedelta(seconds=seconds),
            kind=kind,
            detail=detail,
            **fields,
        )
    )


def valid_draft(sid: str, topic: str = "data_update") -> dict[str, Any]:
    return draft_to_json(
        TicketDraft(
            topic=topic,
            description="Абонент: не обновляются данные по ТС А123ВС77.",
            idempotency_key=sid,
            caller="+79161234568",
            call_ref=sid,
            contact_name="Сидоров Пётр",
            organisation_name="ООО «Ромашка»",
            first_stage_due=datetime(2025, 11, 28, 15, 0, tzinfo=UTC),
            resolution_due=datetime(2025, 12, 1, 15, 0, tzinfo=UTC),
        )
    )


@dataclass(frozen=True)
class SampleLog:
    ticketed: str = "CA" + "01" * 16
    failed: str = "CA" + "02" * 16
    urgent_missed: str = "CA" + "03" * 16
    urgent_answered: str = "CA" + "04" * 16
    abandoned: str = "CA" + "05" * 16
    consultation: str = "CA" + "06" * 16
    no_ticket: str = "CA" + "07" * 16
    ticket_number: str = ""


def sample_log(services: Services, recordings_dir: Path | None = None) -> SampleLog:
    """Write the sample calls (see the module docstring); returns their CallSids."""
    names = SampleLog()
    view = services.portal.create_ticket(
        TicketDraft(
            topic="data_update",
            description="Не обновляются данные по ТС А123ВС77",
            idempotency_key=names.ticketed,
            caller="+79161234567",
            call_ref=names.ticketed,
            contact_name="Кузнецова Мария",
            organisation_name="ООО «Ромашка»",
            first_stage_due=datetime(2025, 11, 28, 15, 0, tzinfo=UTC),
            resolution_due=datetime(2025, 12, 1, 15, 0, tzinfo=UTC),
        )
    )
    with transaction(services.sessions) as session:
        first = add_call(
            session,
            names.ticketed,
            at(-120),
            ticket=view.number,
            draft=valid_draft(names.ticketed),
            caller_said_name="Мария, ООО Ромашка",
            product="online",
            vehicles=["А123ВС77"],
            recording_sid=RECORDING_SID,
            recording_url=TWILIO_RECORDING_URL,
            recording_duration=1,
        )
        event(session, first, 0, "incoming", step="start", detail={"result": "greeted"})
        event(
            session,
            first,
            8,
            "gather",
            step="main_menu",
            digits="2",
            detail={"result": "chose", "choice": "new_problem"},
        )
        event(session, first, 15, "silence", step="topic", detail={"result": "silence", "retry": 1})
        event(
            session,
            first,
            21,
            "gather",
            step="topic",
            speech="актуализация данных",
            detail={"result": "chose", "topic": "data_update"},
        )
        event(
            session,
            first,
            27,
            "gather",
            step="product",
            digits="3",
            detail={"result": "chose", "product": "online"},
        )
        event(
            session,
            first,
            40,
            "gather",
            step="vehicles",
            speech="А 123 ВС 77",
            detail={"result": "vehicles", "plates": ["А123ВС77"]},
        )
        event(session, first, 90, "record", step="description", detail={"result": "recorded"})
        event(
            session,
            first,
            91,
            "recording_added",
            detail={
                "sid": RECORDING_SID,
                "url": TWILIO_RECORDING_URL,
                "recording_kind": "description",
                "duration": 1,
            },
        )
        event(session, first, 92, "ticket_requested", detail={"request_id": 1})
        event(
            session,
            first,
            96,
            "poll",
            step="ticket_wait",
            detail={"result": "ticket_number", "number": view.number},
        )
        event(session, first, 185, "status", detail={"status": "completed", "duration": 185})

        add_call(
            session,
            names.failed,
            at(-90),
            ticket_status="failed",
            draft=valid_draft(names.failed),
            caller_e164="+79161234568",
            caller_raw="+79161234568",
            topic="system_reports",
        )
        add_call(
            session,
            names.urgent_missed,
            at(-60),
            ticket="9001",
            category="critical",
            topic="critical_server_failure",
            line=LINE_812,
            caller_e164="+79031112233",
            caller_raw="+79031112233",
            routing_outcome="nobody_accepted",
            flagged=True,
            flag_reason="Никто из цепочки не принял срочный звонок",
            legs=(("no-answer", None), ("not-accepted", 9.0), ("no-answer", None)),
        )
        add_call(
            session,
            names.urgent_answered,
            at(-45),
            ticket="9002",
            category="stolen",
            topic="stolen_vehicle",
            vehicles=["В456ОР99"],
            caller_e164="+79035556677",
            caller_raw="+79035556677",
            routing_outcome="connected",
            legs=(("no-answer", None), ("accepted", 12.0)),
        )
        add_call(
            session,
            names.abandoned,
            at(-30),
            category="abandoned",
            topic=None,
            outcome="abandoned",
            caller_e164="+79057778899",
            caller_raw="+79057778899",
            duration_seconds=7,
        )
        add_call(
            session,
            names.consultation,
            at(-15),
            category="consultation",
            topic=None,
            routing_outcome="connected",
            caller_e164=None,
            caller_raw="anonymous",
            caller_kind="withheld",
            legs=(("accepted", 5.0),),
        )
        add_call(
            session,
            names.no_ticket,
            at(-5),
            topic="accounts_access",
            caller_e164="+79169990011",
            caller_raw="+79169990011",
        )
    if recordings_dir is not None:
        recordings_dir.mkdir(parents=True, exist_ok=True)
        (recordings_dir / f"{RECORDING_SID}.wav").write_bytes(wav_bytes())
    return SampleLog(ticket_number=view.number)
