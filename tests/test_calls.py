"""The call log repository: one row per CallSid, events, order-safe status callbacks, and
row locking that makes concurrent webhooks of one call wait for each other."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from callcenter.calls import store as calls
from callcenter.calls.store import StatusCallback, parse_twilio_timestamp
from callcenter.db import transaction
from callcenter.db.models import Call, CallEvent, Contact, ContactPhone, Organisation
from callcenter.services import Services

# Row locks, concurrent webhooks of one call and racing first webhooks: per dialect.
pytestmark = pytest.mark.both_databases

SID = "CA" + "7" * 32
NOW = datetime.fromisoformat("2025-11-27T11:00:00+03:00")


def create(services: Services, caller: str | None = "+79161234567") -> None:
    with transaction(services.sessions) as session:
        calls.get_or_create_call(
            session, SID, now=NOW, caller_raw=caller, line_raw="8 (800) 250-60-77"
        )


def load(services: Services) -> Call:
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == SID)).one()
        session.expunge(call)
        return call


def callback(status: str, sequence: int | None, seconds: int = 0, **more: object) -> StatusCallback:
    return StatusCallback(
        call_sid=SID,
        status=status,
        sequence=sequence,
        timestamp=NOW + timedelta(seconds=seconds),
        **more,  # type: ignore[arg-type]
    )


def apply(services: Services, cb: StatusCallback) -> calls.StatusChange:
    with transaction(services.sessions) as session:
        call = calls.load_locked_call(session, SID, now=NOW)
        assert call is not None
        return calls.apply_status_callback(session, call, cb, now=NOW)


def test_the_first_webhook_creates_the_row_with_line_and_caller(services: Services) -> None:
    create(services)
    create(services)  # the second finds it

    with services.sessions() as session:
        rows = list(session.scalars(select(Call)))
    assert len(rows) == 1
    row = rows[0]
    assert (row.line, row.caller_raw, row.caller_e164, row.caller_kind) == (
        "+78002506077",
        "+79161234567",
        "+79161234567",
        "mobile",
    )
    assert (row.outcome, row.started_at, row.state, row.vehicles) == ("in_progress", NOW, {}, [])


def test_a_caller_in_the_directory_is_identified_by_any_spelling(services: Services) -> None:
    with transaction(services.sessions) as session:
        org = Organisation(name="ООО «Ромашка»", created_at=NOW, topic_days={})
        session.add(org)
        session.flush()
        contact = Contact(name="Иванова Мария", organisation_id=org.id, created_at=NOW)
        contact.phones.append(ContactPhone(e164="+79161234567"))
        session.add(contact)
        session.flush()
        ids = (contact.id, org.id)
    create(services, caller="8 916 123-45-67")

    row = load(services)
    assert row.contact_id is not None and row.organisation_id is not None
    assert (row.contact_id, row.organisation_id) == ids


def test_a_new_calls_row_is_written_on_in_the_same_transaction(services: Services) -> None:
    """The first webhook's step changes the row it has just created (its answer, an event)
    before the transaction commits; both reach the database."""
    with transaction(services.sessions) as session:
        call, created = calls.get_or_create_call(
            session, SID, now=NOW, caller_raw="+79161234567", line_raw="+78002506077"
        )
        call.category = "consultation"
        calls.record_event(session, call, "incoming", NOW, step="main_menu")
    assert created

    row = load(services)
    assert (row.category, row.caller_kind, row.outcome) == ("consultation", "mobile", "in_progress")
    with services.sessions() as session:
        kinds = session.scalars(select(CallEvent.kind).where(CallEvent.call_id == row.id))
        assert list(kinds) == ["incoming"]


@pytest.mark.parametrize("caller", [None, "anonymous", "client:bob", "sip:x@y.example"])
def test_callers_without_a_number_are_never_looked_up(
    services: Services, caller: str | None
) -> None:
    create(services, caller=caller)
    row = load(services)
    assert (row.caller_e164, row.contact_id) == (None, None)


def test_events_keep_the_path_in_order(services: Services) -> None:
    create(services)
    with transaction(services.sessions) as session:
        call = calls.load_locked_call(session, SID, now=NOW)
        assert call is not None
        calls.record_event(session, call, "gather", NOW, step="main_menu", digits="2", result="x")
        calls.record_event(session, call, "gather", NOW, step="topic", speech="отчёты", none=None)
    with services.sessions() as session:
        found = list(session.scalars(select(CallEvent).order_by(CallEvent.id)))
    assert [(e.kind, e.step, e.digits, e.speech, e.detail) for e in found] == [
        ("gather", "main_menu", "2", None, {"result": "x"}),
        ("gather", "topic", None, "отчёты", {}),
    ]


def test_status_callbacks_in_order_end_the_call_with_its_duration(services: Services) -> None:
    create(services)
    assert apply(services, callback("ringing", 0)).applied
    assert apply(services, callback("in-progress", 1, 1)).applied
    change = apply(services, callback("completed", 2, 96, duration=95))

    assert (change.applied, change.ended) == (True, True)
    row = load(services)
    assert (row.twilio_status, row.status_sequence, row.duration_seconds) == ("completed", 2, 95)
    assert row.ended_at == NOW + timedelta(seconds=96)


@pytest.mark.parametrize("terminal", ["completed", "busy", "failed", "no-answer", "canceled"])
def test_nothing_rewinds_a_finished_call(services: Services, terminal: str) -> None:
    create(services)
    apply(services, callback(terminal, 1))
    for late in (callback("ringing", 0), callback("in-progress", 5), callback("completed", 9)):
        change = apply(services, late)
        assert not change.applied and not change.ended
    assert load(services).twilio_status == terminal


def test_duplicates_and_late_callbacks_are_logged_not_applied(services: Services) -> None:
    create(services)
    apply(services, callback("in-progress", 2))
    assert apply(services, callback("in-progress", 2)).reason == "duplicate"
    assert apply(services, callback("ringing", 1)).reason == "late"
    with services.sessions() as session:
        ignored = list(session.scalars(select(CallEvent).where(CallEvent.kind == "status_ignored")))
    assert [e.detail["reason"] for e in ignored] == ["duplicate", "late"]


def test_without_sequence_numbers_a_status_never_goes_back_in_a_calls_life(
    services: Services,
) -> None:
    create(services)
    apply(services, callback("in-progress", None))
    assert apply(services, callback("ringing", None)).reason == "late"
    assert apply(services, callback("completed", None)).ended


def test_twilio_timestamps_are_read_as_utc() -> None:
    assert parse_twilio_timestamp("Thu, 27 Nov 2025 08:01:36 +0000") == datetime.fromisoformat(
        "2025-11-27T08:01:36+00:00"
    )
    assert parse_twilio_timestamp("yesterday") is None
    assert parse_twilio_timestamp(None) is None


def test_concurrent_webhooks_of_one_call_wait_for_each_other(services: Services) -> None:
    """Two transactions each read a counter from the locked row and write it back + 1:
    without the lock one increment would be lost."""
    create(services)
    started = threading.Barrier(2)

    def bump() -> None:
        started.wait()
        with transaction(services.sessions) as session:
            call = calls.load_locked_call(session, SID, now=NOW)
            assert call is not None
            count = int(call.state.get("count", 0))
            threading.Event().wait(0.05)  # widen the window a lost update would need
            call.state = {"count": count + 1}

    threads = [threading.Thread(target=bump) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert load(services).state == {"count": 2}


def test_two_first_webhooks_racing_make_one_row(services: Services) -> None:
    started = threading.Barrier(2)
    errors: list[BaseException] = []

    def first_webhook() -> None:
        try:
            started.wait()
            create(services)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_webhook) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with services.sessions() as session:
        assert len(list(session.scalars(select(Call)))) == 1
