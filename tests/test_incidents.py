"""Known incidents: declared, listed and closed from the command line; one open per
product; without a ticket number the pipeline opens a critical ticket for it."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db import transaction
from callcenter.db.models import IncidentCall
from callcenter.errors import IncidentConflict
from callcenter.incidents import detection, store
from callcenter.services import Services
from callcenter.tickets.intake import open_ticket_request
from tests.job_runner import SynchronousJobRunner
from tests.ticket_pipeline import add_contact, make_call


def cli(services: Services, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), obj=CliContext(services))
    return result.exit_code, result.output


def listed(services: Services) -> list[dict[str, object]]:
    code, output = cli(services, "incident", "list", "--json")
    assert code == 0, output
    items: list[dict[str, object]] = json.loads(output)
    return items


@pytest.mark.usefixtures("sync_jobs")
def test_declared_with_a_ticket_listed_and_closed(services: Services) -> None:
    code, output = cli(
        services,
        "incident",
        "open",
        "--product",
        "online",
        "--ticket",
        "1042",
        "--message",
        "Не открывается карта",
    )
    assert code == 0, output
    assert "incident 1 open for online, ticket №1042" in output
    [item] = listed(services)
    assert item["id"] == 1 and item["status"] == "open" and item["product"] == "online"
    assert item["ticket_number"] == "1042" and item["joined_calls"] == 0
    assert item["closed_at"] is None and isinstance(item["opened_at"], str)

    # One open incident per product.
    code, output = cli(
        services,
        "incident",
        "open",
        "--product",
        "online",
        "--ticket",
        "1043",
        "--message",
        "ещё раз",
    )
    assert code != 0 and "open already (№1)" in output

    code, output = cli(services, "incident", "close", "1", "--message", "Карта работает")
    assert code == 0, output
    [item] = listed(services)
    assert item["status"] == "closed" and item["closed_at"] is not None
    code, output = cli(services, "incident", "close", "1", "--message", "снова")
    assert code != 0 and "closed already" in output
    # Closed: the product is free for the next one.
    code, output = cli(
        services,
        "incident",
        "open",
        "--product",
        "online",
        "--ticket",
        "1050",
        "--message",
        "снова упало",
    )
    assert code == 0, output
    assert [i["status"] for i in listed(services)] == ["open", "closed"]


def test_declared_without_a_ticket_gets_a_critical_one_from_the_pipeline(
    services: Services, sync_jobs: SynchronousJobRunner
) -> None:
    code, output = cli(
        services, "incident", "open", "--product", "silver", "--message", "Сервер недоступен"
    )
    assert code == 0, output
    [item] = listed(services)
    number = item["ticket_number"]
    assert isinstance(number, str) and f"ticket №{number}" in output
    assert item["product"] == "silver_studio"
    ticket = services.portal.get_ticket(number)
    assert ticket.topic == "critical_server_failure" and ticket.priority == "critical"
    assert "Сервер недоступен" in ticket.description
    assert ticket.product == "SKAI-Silver Studio"


def test_unknown_incident_and_product_are_refused(services: Services) -> None:
    code, output = cli(services, "incident", "close", "7", "--message", "x")
    assert code != 0 and "no incident with id 7" in output
    code, output = cli(services, "incident", "open", "--product", "mars", "--message", "x")
    assert code != 0 and "mars" in output


@pytest.mark.both_databases
def test_two_declarations_racing_open_one_incident(services: Services) -> None:
    """The unique open product holds even when both check before either writes."""
    now = services.clock()
    with transaction(services.sessions) as session:
        store.open_incident(
            session, product="all", message="a", now=now, calendar=services.calendar, ticket="1"
        )
    with pytest.raises(IncidentConflict), transaction(services.sessions) as session:
        store.open_incident(
            session, product="all", message="b", now=now, calendar=services.calendar, ticket="2"
        )
    assert len(listed(services)) == 1


@pytest.mark.postgres
def test_workers_detecting_one_surge_at_once_open_one_incident(services: Services) -> None:
    """Eight workers finish the surge's tickets at the same moment: one incident, its
    calls tied to it once."""
    now = services.clock()
    sids = []
    with transaction(services.sessions) as session:
        for n in range(8):
            contact = add_contact(
                session, now=now, phone=f"+7916555{n:04d}", organisation=f"Клиент {n}"
            )
            call = make_call(
                session,
                now=now,
                caller=contact.phones[0].e164,
                category="critical",
                topic="critical_server_failure",
                product=None,
                vehicles=(),
            )
            request = open_ticket_request(session, call, now=now, calendar=services.calendar)
            request.status, request.ticket_number = "done", str(1001 + n)
            sids.append(call.call_sid)
    barrier = threading.Barrier(len(sids))
    opened: list[int | None] = []

    def worker(sid: str) -> None:
        barrier.wait()
        with transaction(services.sessions) as session:
            opened.append(
                detection.detect(
                    session,
                    sid,
                    now=now,
                    calendar=services.calendar,
                    threshold=3,
                    window_minutes=10,
                )
            )

    threads = [threading.Thread(target=worker, args=(sid,)) for sid in sids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([i for i in opened if i is not None]) == 1
    [item] = listed(services)
    assert item["status"] == "open" and item["product"] == "all"
    with services.sessions() as session:
        tied = session.scalars(select(IncidentCall.call_id)).all()
    assert len(tied) == len(set(tied)) >= 3
