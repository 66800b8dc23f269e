"""The console's incidents: the page, the banner on every page and the dashboard, the
forms (open, edit the message, close, merge) and the role that may use them; `/metrics`."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from callcenter.db import transaction
from callcenter.incidents import store
from callcenter.services import Services
from tests.console_helpers import add_user, csrf_of, login
from tests.incident_helpers import declare
from tests.job_runner import SynchronousJobRunner


@pytest.fixture
def head(client: FlaskClient, services: Services) -> FlaskClient:
    add_user(services, "head", "supervisor")
    login(client, "head")
    return client


def test_declared_in_the_console_bannered_everywhere_edited_and_closed(
    head: FlaskClient, services: Services, sync_jobs: SynchronousJobRunner
) -> None:
    assert 'id="incident-banner"' not in head.get("/console/").get_data(as_text=True)
    token = csrf_of(head)
    response = head.post(
        "/console/incidents",
        data={
            "product": "online",
            "ticket": "",
            "message": "Карта не грузится",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    page = head.get("/console/incidents").get_data(as_text=True)
    assert "Сбой №1 объявлен" in page
    assert "Сбой №1 · SKAI-Online · открыт" in page
    assert "Заявка:" in page and "№1001" in page  # the pipeline opened its ticket
    for path in ("/console/", "/console/dashboard", "/console/roster", "/console/directory"):
        html = head.get(path).get_data(as_text=True)
        assert 'id="incident-banner"' in html, path
        assert "Открыт сбой №1: SKAI-Online</strong>, заявка №1001" in html
    assert 'id="dashboard-incidents"' in head.get("/console/dashboard").get_data(as_text=True)

    head.post(
        "/console/incidents/1/message",
        data={"message": "Карта не грузится, чиним сервер", "csrf_token": token},
    )
    assert "Карта не грузится, чиним сервер" in head.get("/console/").get_data(as_text=True)

    response = head.post(
        "/console/incidents/1/close", data={"message": "Сервер поднят", "csrf_token": token}
    )
    assert response.status_code == 302
    page = head.get("/console/incidents").get_data(as_text=True)
    assert "Сбой №1 закрыт." in page and "Устранён: Сервер поднят" in page
    assert 'id="incident-banner"' not in page
    entries = [e.text or "" for e in services.portal.get_ticket("1001").history]
    assert any("Сбой №1 устранён: Сервер поднят" in text for text in entries)


def test_a_second_incident_for_the_product_and_an_empty_message_are_refused(
    head: FlaskClient, services: Services
) -> None:
    token = csrf_of(head)
    data = {"product": "all", "ticket": "1042", "message": "Всё упало", "csrf_token": token}
    assert head.post("/console/incidents", data=data).status_code == 302
    again = head.post("/console/incidents", data=data)
    assert again.status_code == 409
    assert "По этому продукту сбой уже объявлен" in again.get_data(as_text=True)
    empty = head.post("/console/incidents", data={**data, "product": "online", "message": ""})
    assert empty.status_code == 400 and "Напишите, что известно." in empty.get_data(as_text=True)
    bad = head.post("/console/incidents", data={**data, "product": "online", "ticket": "12a"})
    assert bad.status_code == 400 and "Номер заявки — до 12 цифр." in bad.get_data(as_text=True)


def test_a_specialist_sees_the_banner_but_cannot_close(
    client: FlaskClient, services: Services
) -> None:
    with transaction(services.sessions) as session:
        store.open_incident(
            session,
            product="studio",
            message="Отчёты не строятся",
            now=services.clock(),
            calendar=services.calendar,
            ticket="1042",
        )
    add_user(services, "spec", "specialist")
    login(client, "spec")
    page = client.get("/console/incidents").get_data(as_text=True)
    assert 'id="incident-banner"' in page and "Закрыть сбой" not in page
    token = csrf_of(client)
    refused = client.post("/console/incidents/1/close", data={"message": "x", "csrf_token": token})
    assert refused.status_code == 403


def test_metrics_count_open_incidents_and_joined_calls(
    client: FlaskClient, services: Services
) -> None:
    with transaction(services.sessions) as session:
        store.open_incident(
            session,
            product="online",
            message="x",
            now=services.clock(),
            calendar=services.calendar,
            ticket="1042",
        )
    text = client.get("/metrics").get_data(as_text=True)
    assert "callcenter_incidents_open 1.0" in text
    assert "callcenter_incident_calls_joined_total 0.0" in text


def test_a_supervisor_merges_one_incident_into_another(
    head: FlaskClient,
    services: Services,
    sync_jobs: SynchronousJobRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    survivor, survivor_ticket = declare(services, "online", key="ticket-a")
    merged, merged_ticket = declare(services, "studio", key="ticket-b")
    page = head.get("/console/incidents").get_data(as_text=True)
    # Each open incident offers the other one.
    assert f'<option value="{survivor}">№{survivor} · SKAI-Online</option>' in page
    assert f'<option value="{merged}">№{merged} · SKAI-Studio</option>' in page
    token = csrf_of(head)

    itself = head.post(
        f"/console/incidents/{merged}/merge", data={"into": str(merged), "csrf_token": token}
    )
    assert itself.status_code == 303
    assert "Выберите открытый сбой" in head.get("/console/incidents").get_data(as_text=True)

    with caplog.at_level("INFO", logger="callcenter.console.incidents"):
        response = head.post(
            f"/console/incidents/{merged}/merge", data={"into": str(survivor), "csrf_token": token}
        )
    assert response.status_code == 302
    assert f"incident {merged} merged into {survivor} by head: 0 call(s) moved" in caplog.text
    page = head.get("/console/incidents").get_data(as_text=True)
    assert f"Сбой №{merged} объединён с №{survivor}: перенесено 0 звонков." in page
    assert f"Сбой №{merged} · SKAI-Studio · объединён с №{survivor}" in page
    assert f'Объединён с <a href="#incident-{survivor}">сбоем №{survivor}</a> (head)' in page
    # Only the survivor is open: no merge offered any more, the banner names it alone.
    assert "<option" not in page.split('id="open-incident"')[0]
    assert f"Открыт сбой №{survivor}: SKAI-Online</strong>" in page
    assert f"Открыт сбой №{merged}:" not in page
    linked = services.portal.get_ticket(merged_ticket).incidents
    assert [link.incident for link in linked] == [str(survivor)]
    assert any(
        f"Сбой №{merged} (SKAI-Studio" in (e.text or "")
        for e in services.portal.get_ticket(survivor_ticket).history
    )

    again = head.post(
        f"/console/incidents/{merged}/merge", data={"into": str(survivor), "csrf_token": token}
    )
    assert again.status_code == 303


def test_a_specialist_cannot_merge(client: FlaskClient, services: Services) -> None:
    declare(services, "online", key="ticket-a")
    declare(services, "studio", key="ticket-b")
    add_user(services, "spec", "specialist")
    login(client, "spec")
    assert "Объединить" not in client.get("/console/incidents").get_data(as_text=True)
    token = csrf_of(client)
    refused = client.post("/console/incidents/2/merge", data={"into": "1", "csrf_token": token})
    assert refused.status_code == 403
    with services.sessions() as session:
        assert store.get_incident(session, 2).status == store.OPEN
