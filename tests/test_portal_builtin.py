"""The built-in portal on SQLite and PostgreSQL: numbers, idempotency, history, workflow,
phone duplicates, and creation from many threads at once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from callcenter.db import make_engine, make_session_factory
from callcenter.db.models import Ticket, TicketEntry
from callcenter.errors import (
    InvalidStatusChange,
    InvalidTicketData,
    PortalRejected,
    PortalUnavailable,
    TicketNotFound,
)
from callcenter.portal import Portal, build_portal
from callcenter.portal.builtin import BuiltinPortal
from callcenter.portal.http import HttpPortal
from callcenter.portal.protocol import AffectedOrganisation, IncidentLink, TicketDraft
from callcenter.services import Services
from tests.conftest import TEST_PUBLIC_BASE, MutableClock

# ON CONFLICT, the numbering lock and concurrent writers differ per dialect.
pytestmark = pytest.mark.both_databases

MSK = "+03:00"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text + MSK)


def draft(key: str = "CA-one", **changes: Any) -> TicketDraft:
    values: dict[str, Any] = {
        "topic": "reports",
        "description": "Не строится отчёт по пробегу за ноябрь",
        "idempotency_key": key,
        "product": "SKAI-Online",
        "vehicles": ("А123ВС77", "М456ОР178"),
        "contact_name": "Иванова Мария",
        "contact_id": 7,
        "organisation_name": "ООО «Трансавто»",
        "organisation_id": 3,
        "caller": "+79161234567",
        "call_ref": key,
        "recording_url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        "first_stage_due": at("2025-11-28T11:00:00"),
        "resolution_due": at("2025-12-01T11:00:00"),
    }
    values.update(changes)
    return TicketDraft(**values)


@pytest.fixture
def portal(services: Services) -> BuiltinPortal:
    return BuiltinPortal(services.sessions, services.clock, base_url=TEST_PUBLIC_BASE)


def count(services: Services, model: type[Any]) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# ---------------------------------------------------------------- create


def test_a_new_ticket_gets_the_first_number_status_deadlines_and_a_created_entry(
    portal: BuiltinPortal, clock: MutableClock
) -> None:
    view = portal.create_ticket(draft())

    assert view.number == "1001"
    assert view.status == "Новая"
    assert view.priority == "normal"
    assert view.topic == "reports"
    assert view.first_stage_due == at("2025-11-28T11:00:00")
    assert view.resolution_due == at("2025-12-01T11:00:00")
    assert view.first_stage_due is not None and view.first_stage_due.utcoffset() is not None
    assert view.created_at == clock.now
    assert view.vehicles == ("А123ВС77", "М456ОР178")
    assert (view.organisation_id, view.organisation_name) == (3, "ООО «Трансавто»")
    assert view.url == f"{TEST_PUBLIC_BASE}/console/tickets/1001"
    [created] = view.history
    assert created.kind == "created"
    assert created.text == "Не строится отчёт по пробегу за ноябрь"
    assert created.author == "Иванова Мария"
    assert created.attachment_url == draft().recording_url
    assert created.attachment_name == "Запись звонка 27.11.2025 11:00.mp3"


def test_numbers_follow_on_and_survive_a_new_portal_object(
    portal: BuiltinPortal, services: Services
) -> None:
    first = portal.create_ticket(draft("CA-1"))
    second = portal.create_ticket(draft("CA-2"))
    again = BuiltinPortal(services.sessions, services.clock).create_ticket(draft("CA-3"))

    assert [first.number, second.number, again.number] == ["1001", "1002", "1003"]


def test_the_same_idempotency_key_returns_the_first_ticket_and_stores_nothing_new(
    portal: BuiltinPortal, services: Services
) -> None:
    first, created = portal.create_ticket_once(draft("CA-same"))
    replay, created_again = portal.create_ticket_once(
        draft("CA-same", description="другой текст при повторе")
    )

    assert (created, created_again) == (True, False)
    assert replay.number == first.number
    assert replay.description == "Не строится отчёт по пробегу за ноябрь"
    assert count(services, Ticket) == 1
    assert count(services, TicketEntry) == 1


def test_a_bad_draft_is_refused_with_every_field_named_and_nothing_stored(
    portal: BuiltinPortal, services: Services
) -> None:
    bad = draft(
        "CA bad key",
        topic=" ",
        priority="urgent",
        first_stage_due=datetime(2025, 11, 28, 11, 0),
        recording_url="ftp://example/rec.wav",
        vehicles=("",),
    )
    with pytest.raises(InvalidTicketData) as caught:
        portal.create_ticket(bad)

    assert set(caught.value.fields) == {
        "idempotency_key",
        "topic",
        "priority",
        "first_stage_due",
        "recording_url",
        "vehicles",
    }
    assert "normal, high, critical" in caught.value.fields["priority"]
    assert isinstance(caught.value, PortalRejected)
    assert count(services, Ticket) == 0


def test_unknown_and_malformed_numbers_are_not_found(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    for number in ("1002", "abc", "", "1001/../1", "١٠٠١"):
        with pytest.raises(TicketNotFound):
            portal.get_ticket(number)
    assert portal.get_ticket(" 1001 ").number == "1001"


# ---------------------------------------------------------------- history


def test_entries_are_kept_in_chronological_order_and_a_dedup_key_counts_once(
    portal: BuiltinPortal, clock: MutableClock, services: Services
) -> None:
    portal.create_ticket(draft())
    clock.now = at("2025-11-27T11:05:00")
    portal.add_entry("1001", text="Перезвонили клиенту", author="Петров")
    clock.now = at("2025-11-27T11:10:00")
    url = "https://files.example/log.txt"
    view, added = portal.add_entry_once(
        "1001", attachment_url=url, attachment_name="log.txt", dedup_key="log:1"
    )
    clock.now = at("2025-11-27T11:20:00")
    replay, added_again = portal.add_entry_once(
        "1001", attachment_url=url, attachment_name="log.txt", dedup_key="log:1"
    )

    assert (added, added_again) == (True, False)
    assert [(e.kind, e.at) for e in replay.history] == [
        ("created", at("2025-11-27T11:00:00")),
        ("comment", at("2025-11-27T11:05:00")),
        ("attachment", at("2025-11-27T11:10:00")),
    ]
    assert replay.history[1].text == "Перезвонили клиенту"
    assert replay.history[1].author == "Петров"
    assert replay.history[2].attachment_url == url
    assert count(services, TicketEntry) == 3


def test_a_dedup_key_is_per_ticket(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft("CA-1"))
    portal.create_ticket(draft("CA-2"))

    one = portal.add_entry("1001", text="запись", dedup_key="recording:RE1")
    two = portal.add_entry("1002", text="запись", dedup_key="recording:RE1")

    assert len(one.history) == len(two.history) == 2


def test_an_empty_entry_or_a_missing_ticket_is_refused(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    with pytest.raises(InvalidTicketData) as caught:
        portal.add_entry("1001", text="   ")
    assert "text" in caught.value.fields
    with pytest.raises(InvalidTicketData) as caught:
        portal.add_entry("1001", attachment_url="file:///etc/passwd")
    assert "attachment_url" in caught.value.fields
    with pytest.raises(TicketNotFound):
        portal.add_entry("1999", text="нет такой")
    assert len(portal.get_ticket("1001").history) == 1


# ---------------------------------------------------------------- phone duplicates


def test_a_phone_duplicate_raises_the_priority_and_is_recorded_once_per_call(
    portal: BuiltinPortal, services: Services, clock: MutableClock
) -> None:
    portal.create_ticket(draft(topic="critical_failure"))
    clock.now = at("2025-11-27T11:30:00")

    view, added = portal.record_phone_duplicate_once(
        "1001", at=at("2025-11-27T11:25:00"), caller="+79161234567", call_ref="CA-dup"
    )
    replay, added_again = portal.record_phone_duplicate_once(
        "1001", at=at("2025-11-27T11:25:00"), caller="+79161234567", call_ref="CA-dup"
    )

    assert (added, added_again) == (True, False)
    assert view.priority == replay.priority == "critical"
    assert view.duplicated_by_phone_at == at("2025-11-27T11:25:00")
    last = view.history[-1]
    assert last.kind == "phone_duplicate"
    assert last.at == at("2025-11-27T11:25:00")
    assert last.author == "+79161234567"
    assert last.text == (
        "Заявка продублирована звонком с номера +79161234567 (звонок CA-dup)."
        " Приоритет повышен: обычный → критический"
    )
    assert count(services, TicketEntry) == 2


def test_the_earliest_duplicate_is_kept_and_history_stays_chronological(
    portal: BuiltinPortal, clock: MutableClock
) -> None:
    portal.create_ticket(draft(topic="critical_failure"))
    clock.now = at("2025-11-27T12:00:00")
    portal.add_entry("1001", text="Взята в работу")
    portal.record_phone_duplicate(
        "1001", at=at("2025-11-27T12:30:00"), caller=None, call_ref="CA-late"
    )
    # A job that ran late reports an earlier call.
    view = portal.record_phone_duplicate(
        "1001", at=at("2025-11-27T11:40:00"), caller="+78121234567", call_ref="CA-early"
    )

    assert view.duplicated_by_phone_at == at("2025-11-27T11:40:00")
    assert [e.at for e in view.history] == sorted(e.at for e in view.history)
    assert [e.kind for e in view.history] == [
        "created",
        "phone_duplicate",
        "comment",
        "phone_duplicate",
    ]
    assert "с номера не определён" in (view.history[-1].text or "")
    # Already critical: the second duplicate says nothing about priority.
    assert "Приоритет" not in (view.history[1].text or "")


def test_a_naive_duplicate_time_is_refused(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    with pytest.raises(InvalidTicketData) as caught:
        portal.record_phone_duplicate(
            "1001", at=datetime(2025, 11, 27, 12), caller=None, call_ref=None
        )
    assert "at" in caught.value.fields


# ---------------------------------------------------------------- workflow


def test_the_status_workflow_with_history(portal: BuiltinPortal, clock: MutableClock) -> None:
    portal.create_ticket(draft())
    steps = ["В работе", "Решена", "В работе", "Решена", "Закрыта"]
    for minute, status in enumerate(steps, start=1):
        clock.now = at(f"2025-11-27T12:{minute:02d}:00")
        view = portal.update_ticket("1001", status=status, author="Петров")
        assert view.status == status

    assert [e.text for e in view.history if e.kind == "status"] == [
        "Статус: Новая → В работе",
        "Статус: В работе → Решена",
        "Статус: Решена → В работе",
        "Статус: В работе → Решена",
        "Статус: Решена → Закрыта",
    ]
    with pytest.raises(InvalidStatusChange, match="«Закрыта» to «В работе»"):
        portal.update_ticket("1001", status="В работе")
    assert portal.get_ticket("1001").status == "Закрыта"


def test_setting_the_same_status_again_changes_nothing(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    portal.update_ticket("1001", status="В работе")
    view = portal.update_ticket("1001", status="В работе")

    assert [e.kind for e in view.history] == ["created", "status"]


def test_a_priority_change_with_a_comment_and_bad_changes(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    view = portal.update_ticket("1001", priority="high", comment="клиент ключевой")

    assert view.priority == "high"
    assert view.history[-1].text == "Приоритет: обычный → высокий: клиент ключевой"
    with pytest.raises(InvalidTicketData) as caught:
        portal.update_ticket("1001", status="Отложена")
    assert "status" in caught.value.fields
    with pytest.raises(InvalidTicketData):
        portal.update_ticket("1001")


# ---------------------------------------------------------------- concurrency


def test_a_lookup_leaves_its_connection_transactional_for_the_next_writer(
    database_url: str, clock: MutableClock
) -> None:
    """The lookups read in the driver's autocommit (no BEGIN/ROLLBACK round trips before a
    caller hears anything); the one pooled connection they used must come back to the pool
    transactional, or a caller's next step would commit half of its writes."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        sessions = make_session_factory(engine)
        portal = BuiltinPortal(sessions, clock)
        portal.create_ticket(draft("CA-a"))
        assert [v.number for v in portal.open_tickets(contact_id=7)] == ["1001"]
        assert portal.get_ticket("1001").number == "1001"

        with pytest.raises(RuntimeError), sessions() as session, session.begin():
            session.add(
                Ticket(number=1002, topic="reports", created_at=clock(), updated_at=clock())
            )
            session.flush()
            raise RuntimeError("the step fails after its first write")

        assert [v.number for v in portal.open_tickets(contact_id=7, caller="+79161234567")] == [
            "1001"
        ]
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Ticket)) == 1
    finally:
        engine.dispose()


# ---------------------------------------------------------------- one problem, many clients


def test_open_tickets_of_a_contact_or_a_number_newest_first(
    portal: BuiltinPortal, clock: MutableClock
) -> None:
    portal.create_ticket(draft("CA-a"))  # contact 7, +79161234567
    clock.now += timedelta(minutes=5)
    portal.create_ticket(draft("CA-b", contact_id=None, contact_name=None))  # the number only
    clock.now += timedelta(minutes=5)
    portal.create_ticket(draft("CA-c", contact_id=8, caller="+79031112233"))  # someone else
    clock.now += timedelta(minutes=5)
    portal.create_ticket(draft("CA-d"))
    portal.update_ticket("1004", status="В работе")
    portal.create_ticket(draft("CA-e"))
    portal.update_ticket("1005", status="Решена")  # solved: not open

    by_contact = portal.open_tickets(contact_id=7)
    assert [(v.number, v.status) for v in by_contact] == [("1004", "В работе"), ("1001", "Новая")]
    by_number = portal.open_tickets(caller="+79161234567")
    assert [v.number for v in by_number] == ["1004", "1002", "1001"]
    assert [v.number for v in portal.open_tickets(contact_id=7, caller="+79161234567")] == [
        "1004",
        "1002",
        "1001",
    ]
    assert [v.number for v in portal.open_tickets(caller="+79161234567", limit=2)] == [
        "1004",
        "1002",
    ]
    assert portal.open_tickets(contact_id=99) == ()

    # Without their histories (what the IVR's repeat-caller offer asks for): the same
    # views, each with its history left out — and every ticket has one.
    assert all(view.history for view in by_number)
    assert portal.open_tickets(caller="+79161234567", history=False) == tuple(
        replace(view, history=()) for view in by_number
    )
    assert portal.get_ticket("1004", history=False) == replace(
        portal.get_ticket("1004"), history=()
    )
    with pytest.raises(InvalidTicketData) as refused:
        portal.open_tickets()
    assert set(refused.value.fields) == {"contact_id"}


def test_affected_organisations_are_added_once_each_with_history(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    first, added = portal.add_affected_organisations_once(
        "1001",
        [AffectedOrganisation("ООО «Ромашка»", 5), AffectedOrganisation("ИП Сидоров")],
        author="Телефонная линия",
    )
    assert added
    again, added_again = portal.add_affected_organisations_once(
        "1001",
        [AffectedOrganisation("ООО «Ромашка» (новое имя)", 5), AffectedOrganisation("ип сидоров")],
    )
    assert not added_again
    assert again == first
    later = portal.add_affected_organisations(
        "1001", [AffectedOrganisation("ООО «Ромашка»", 5), AffectedOrganisation("АО «Лютик»", 6)]
    )

    assert later.affected_organisations == (
        AffectedOrganisation("ООО «Ромашка»", 5),
        AffectedOrganisation("ИП Сидоров"),
        AffectedOrganisation("АО «Лютик»", 6),
    )
    affected = [e for e in later.history if e.kind == "affected_client"]
    assert [e.text for e in affected] == [
        "Затронутые клиенты: ООО «Ромашка», ИП Сидоров",
        "Затронутые клиенты: АО «Лютик»",
    ]
    assert portal.get_ticket("1001") == later
    with pytest.raises(InvalidTicketData) as refused:
        portal.add_affected_organisations("1001", [])
    assert set(refused.value.fields) == {"organisations"}
    with pytest.raises(TicketNotFound):
        portal.add_affected_organisations("4242", [AffectedOrganisation("X", 1)])


def test_concurrent_adds_of_one_organisation_add_it_once(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    outcomes = run_in_threads(
        6,
        lambda _i: portal.add_affected_organisations_once(
            "1001", [AffectedOrganisation("ООО «Ромашка»", 5)]
        )[1],
    )
    assert sum(outcomes) == 1
    view = portal.get_ticket("1001")
    assert view.affected_organisations == (AffectedOrganisation("ООО «Ромашка»", 5),)
    assert [e.kind for e in view.history] == ["created", "affected_client"]


def test_an_incident_is_linked_once(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())
    link = IncidentLink("7", "сбой СКАЙ Онлайн")
    view, linked = portal.link_incident_once("1001", link, author="Телефонная линия")
    again, linked_again = portal.link_incident_once("1001", link)

    assert (linked, linked_again) == (True, False)
    assert again == view
    assert view.incidents == (link,)
    assert [(e.kind, e.text) for e in view.history][-1] == (
        "incident",
        "Связана с инцидентом сбой СКАЙ Онлайн",
    )
    assert portal.link_incident("1001", IncidentLink("8")).incidents == (link, IncidentLink("8"))
    with pytest.raises(InvalidTicketData):
        portal.link_incident("1001", IncidentLink(" "))


def run_in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) in n threads released together; re-raise the first failure."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_concurrent_creates_get_distinct_consecutive_numbers(
    portal: BuiltinPortal, services: Services
) -> None:
    per_thread = 5

    def create_several(i: int) -> list[str]:
        return [portal.create_ticket(draft(f"CA-{i}-{j}")).number for j in range(per_thread)]

    numbers = [n for batch in run_in_threads(8, create_several) for n in batch]

    assert sorted(int(n) for n in numbers) == list(range(1001, 1001 + 8 * per_thread))
    assert count(services, Ticket) == 8 * per_thread
    assert count(services, TicketEntry) == 8 * per_thread


def test_concurrent_creates_with_one_key_make_one_ticket(
    portal: BuiltinPortal, services: Services
) -> None:
    outcomes = run_in_threads(8, lambda _i: portal.create_ticket_once(draft("CA-race")))

    assert {view.number for view, _created in outcomes} == {"1001"}
    assert sum(created for _view, created in outcomes) == 1
    assert count(services, Ticket) == 1


def test_concurrent_status_changes_are_serialised(portal: BuiltinPortal) -> None:
    portal.create_ticket(draft())

    def take(_i: int) -> str:
        try:
            return portal.update_ticket("1001", status="В работе").status
        except InvalidStatusChange:  # pragma: no cover - must not happen
            return "refused"

    assert run_in_threads(6, take) == ["В работе"] * 6
    history = portal.get_ticket("1001").history
    assert [e.kind for e in history] == ["created", "status"]


# ---------------------------------------------------------------- wiring and outages


def test_build_portal_is_builtin_by_default_and_http_with_a_portal_url(
    make_services: Callable[..., Services],
) -> None:
    def built(services: Services) -> Portal:
        return build_portal(services.settings, services.sessions, services.clock)

    builtin = built(make_services())
    assert isinstance(builtin, BuiltinPortal)
    assert builtin.ticket_url("1042") == f"{TEST_PUBLIC_BASE}/console/tickets/1042"

    remote = built(make_services(portal_url="https://portal.example/api/v1/", portal_token="t0ken"))
    assert isinstance(remote, HttpPortal)
    assert remote.base_url == "https://portal.example/api/v1"
    # The REST resource is no page for a human: no link unless the portal's page is set.
    assert remote.ticket_url("1042") is None
    remote.close()

    linked = built(
        make_services(
            portal_url="https://portal.example/api/v1/",
            portal_token="t0ken",
            portal_ticket_url="https://portal.example/tickets/{number}/view",
        )
    )
    assert linked.ticket_url("1042") == "https://portal.example/tickets/1042/view"
    linked.close()


def test_without_a_public_base_url_the_ticket_link_is_relative(services: Services) -> None:
    portal = BuiltinPortal(services.sessions, services.clock)
    assert portal.ticket_url("1001") == "/console/tickets/1001"


def test_an_unreachable_database_is_reported_as_portal_unavailable(
    clock: MutableClock,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    try:
        portal = BuiltinPortal(make_session_factory(engine), clock)
        with pytest.raises(PortalUnavailable, match="database is unavailable"):
            portal.create_ticket(draft())
    finally:
        engine.dispose()


def test_an_agreed_deadline_is_stored_as_none_and_read_back_as_created(
    portal: BuiltinPortal,
) -> None:
    created = portal.create_ticket(draft(resolution_due=None, priority="high"))
    read = portal.get_ticket(created.number)

    assert read.resolution_due is None
    assert read.first_stage_due == at("2025-11-28T11:00:00")
    # What create answers is exactly what a later read shows.
    assert read == created
