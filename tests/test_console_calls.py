"""The call log, its CSV export, a call's page, the actions on it, recordings and tickets.

Everything through the real app (Flask's test client) on SQLite and PostgreSQL, with the
built-in portal, in-process jobs and, for recordings, a real HTTP server standing in for
Twilio's media host.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from callcenter.calllog.csv_export import EXPORT_OPTIONS
from callcenter.calllog.query import CallFilter, PageRequest, search_calls
from callcenter.calllog.review import call_problems
from callcenter.db import transaction
from callcenter.db.models import Call, CallNote, DialLeg, TicketRequest
from callcenter.services import Services
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.console_helpers import (
    RECORDING_SID,
    TWILIO_RECORDING_URL,
    VOICEMAIL_SID,
    SampleLog,
    add_call,
    add_user,
    at,
    csrf_of,
    event,
    login,
    sample_log,
    wav_bytes,
)

NAMES = SampleLog()


@pytest.fixture
def head(client: FlaskClient, services: Services) -> FlaskClient:
    add_user(services, "head", "supervisor")
    assert login(client, "head").status_code == 302
    return client


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def log_rows(page: str) -> dict[str, tuple[str, str]]:
    """CallSid → (the row's class, its visible text), in page order."""
    return {
        sid: (cls, text_of(body))
        for cls, sid, body in re.findall(
            r'<tr class="([^"]*)" data-call-sid="([^"]+)">(.*?)</tr>', page, re.S
        )
    }


def get_page(client: FlaskClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.get_data(as_text=True)


# ---------------------------------------------------------------- the log


def test_the_log_shows_every_call_newest_first_with_problem_rows_labelled(
    services: Services, head: FlaskClient
) -> None:
    sample_log(services)
    rows = log_rows(get_page(head, "/console/"))
    assert list(rows) == [
        NAMES.no_ticket,
        NAMES.consultation,
        NAMES.abandoned,
        NAMES.urgent_answered,
        NAMES.urgent_missed,
        NAMES.failed,
        NAMES.ticketed,
    ]
    assert rows[NAMES.no_ticket] == (
        "problem",
        "27.11.2025 10:55 8 (800) 250-60-77 +7 916 999-00-11 Новая проблема Создание учётных "
        "записей и настройка прав доступа — — — Завершён Нет заявки 3:05",
    )
    assert rows[NAMES.failed][0] == "problem"
    assert (
        "Ошибка создания 28.11.2025 18:00 01.12.2025 18:00 Завершён Ошибка создания заявки"
        in rows[NAMES.failed][1]
    )
    assert rows[NAMES.urgent_missed][0] == "problem"
    assert "8 (812) 607-77-41" in rows[NAMES.urgent_missed][1]
    assert "Никто не принял Срочный: никто не принял" in rows[NAMES.urgent_missed][1]
    assert rows[NAMES.abandoned] == (
        "problem",
        "27.11.2025 10:30 8 (800) 250-60-77 +7 905 777-88-99 Сброшен до выбора — — — Сброшен "
        "Не перезвонили 0:07",
    )
    assert rows[NAMES.urgent_answered][0] == ""
    assert "№9002" in rows[NAMES.urgent_answered][1]
    assert "Соединён со специалистом: Петрова Анна" in rows[NAMES.urgent_answered][1]
    assert rows[NAMES.consultation] == (
        "",
        "27.11.2025 10:45 8 (800) 250-60-77 Номер скрыт Консультация — — — Завершён "
        "Соединён со специалистом: Иванов Иван 3:05",
    )
    assert rows[NAMES.ticketed] == (
        "",
        "27.11.2025 09:00 8 (800) 250-60-77 +7 916 123-45-67 Мария, ООО Ромашка Новая "
        "проблема Актуализация данных в системе №1001 28.11.2025 18:00 01.12.2025 18:00 "
        "Завершён 3:05",
    )
    # A ticket whose resolution is agreed with the client says so.
    assert "№9002 — по согласованию" in rows[NAMES.urgent_answered][1]


@pytest.mark.both_databases  # Cyrillic case folding, stored times, streaming: per dialect
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("attention=true", ["no_ticket", "abandoned", "urgent_missed", "failed"]),
        ("attention=false", ["consultation", "urgent_answered", "ticketed"]),
        ("category=critical,stolen", ["urgent_answered", "urgent_missed"]),
        ("urgent_unanswered=true", ["urgent_missed"]),
        ("ticket_failed=true", ["failed"]),
        ("has_ticket=false&category=incident", ["no_ticket", "failed"]),
        ("line=%2B78126077741", ["urgent_missed"]),
        ("topic=data_update", ["ticketed"]),
        ("outcome=abandoned", ["abandoned"]),
        ("q=8+(916)+123-45-67", ["ticketed"]),
        ("q=%E2%84%961001", ["ticketed"]),  # №1001
        ("q=ромашка", ["ticketed"]),
        # A vehicle plate in any spelling: Cyrillic, spaced and lower case, Latin look-alikes.
        ("q=А123ВС77", ["ticketed"]),
        ("q=а+123+вс+77", ["ticketed"]),
        ("q=A123BC77", ["ticketed"]),
        ("q=a-123-bc-77", ["ticketed"]),
        ("q=в456ор99", ["urgent_answered"]),
        ("q=А123ВС99", []),
        ("from=2025-11-28", []),
        ("from=2025-11-27&to=2025-11-27&line=&category=&q=", None),  # blanks mean "any"
    ],
)
def test_filters(
    services: Services, head: FlaskClient, query: str, expected: list[str] | None
) -> None:
    sample_log(services)
    page = get_page(head, f"/console/?{query}")
    rows = log_rows(page)
    if expected is None:
        assert len(rows) == 7
        return
    assert list(rows) == [getattr(NAMES, name) for name in expected]
    if not expected:
        assert "Звонков с такими условиями нет." in page


def test_a_bad_filter_is_explained_in_russian(services: Services, head: FlaskClient) -> None:
    page = get_page(head, "/console/?from=27.11.2025", status=400)
    assert (
        "Дата «с»: «27.11.2025» — не дата: выберите день в календаре или введите его как "
        "ГГГГ-ММ-ДД." in text_of(page)
    )
    # The API's English words are there for whoever needs them, folded away.
    assert (
        '<details class="technical"><summary>Подробности</summary>'
        "<code>&#39;27.11.2025&#39; is not a date (YYYY-MM-DD, Moscow)</code></details>" in page
    )
    page = get_page(head, "/console/?from=2025-11-27&to=2025-11-01", status=400)
    assert "Дата «по»: 01.11.2025 раньше даты «с» (27.11.2025)." in text_of(page)
    page = get_page(head, "/console/?topic=nonsense", status=400)
    assert "Тема: такой темы нет." in text_of(page)
    outside_details = re.sub(r"<details.*?</details>", "", page, flags=re.DOTALL)
    assert "unknown topic" in page and "unknown topic" not in outside_details
    page = get_page(head, "/console/dashboard?from=2025-11-27&to=2025-11-01", status=400)
    assert (
        "Период задан неверно: дата «по» (01.11.2025) раньше даты «с» (27.11.2025). "
        "Показаны последние 30 дней." in text_of(page)
    )


def test_pages_of_fifty_with_links_that_keep_the_filter(
    services: Services, head: FlaskClient
) -> None:
    with transaction(services.sessions) as session:
        for n in range(120):
            add_call(session, f"CA{n:032d}", at(-n), category="consultation", topic=None)
    first = get_page(head, "/console/?category=consultation")
    assert len(log_rows(first)) == 50
    assert "Звонков: 120. Показаны 1–50, новые сверху." in text_of(first)
    assert 'href="/console/?category=consultation&amp;page=2" rel="next"' in first
    third = get_page(head, "/console/?category=consultation&page=3")
    assert list(log_rows(third))[-1] == f"CA{119:032d}"
    assert "Показаны 101–120" in text_of(third)
    assert 'rel="next"' not in third and 'rel="prev"' in third


@pytest.mark.both_databases  # Cyrillic case folding, stored times, streaming: per dialect
def test_the_problems_filter_agrees_with_the_row_labels(services: Services) -> None:
    """Every combination that decides a problem, as SQL (the filter) and as Python (the
    labels): the two must select the same calls."""
    combos = itertools.product(
        ("incident", "critical", "stolen", "consultation", "abandoned", "status"),
        ("completed", "in_progress"),
        (None, "pending", "done", "failed"),
        ((), ("accepted",), ("no-answer",)),
        (None, "no_answer", "connected"),
        (False, True),  # called back
        (False, True),  # caller has a number
    )
    calls = []
    for n, (category, outcome, ticket, legs, routing, back, number) in enumerate(combos):
        started = at(-n)
        call = Call(
            call_sid=f"CA{n:032d}",
            started_at=started,
            updated_at=started,
            category=category,
            outcome=outcome,
            routing_outcome=routing,
            called_back_at=at(1) if back else None,
            caller_e164="+79161234567" if number else None,
        )
        if ticket is not None:
            call.ticket_request = TicketRequest(
                idempotency_key=call.call_sid,
                draft={},
                status=ticket,
                ticket_number=f"5{n}" if ticket == "done" else None,
                created_at=started,
                updated_at=started,
            )
        call.legs = [
            DialLeg(position=1, number="+79123456701", started_at=started, result=result)
            for result in legs
        ]
        calls.append(call)
    # One flush: the rows go in as multi-row INSERTs, not one round trip each.
    with transaction(services.sessions) as session:
        session.add_all(calls)
    with services.sessions() as session:
        everything = search_calls(
            session, CallFilter(), PageRequest(per_page=200), options=EXPORT_OPTIONS
        )
        flagged: set[str] = set()
        labelled: set[str] = set()
        page = 1
        while True:
            found = search_calls(
                session, CallFilter(), PageRequest(page=page, per_page=200), options=EXPORT_OPTIONS
            )
            labelled |= {c.call_sid for c in found.calls if call_problems(c)}
            if not found.has_next:
                break
            page += 1
        page = 1
        while True:
            found = search_calls(
                session, CallFilter(attention=True), PageRequest(page=page, per_page=200)
            )
            flagged |= {c.call_sid for c in found.calls}
            if not found.has_next:
                break
            page += 1
    assert everything.total == 6 * 2 * 4 * 3 * 3 * 2 * 2
    assert 0 < len(labelled) < everything.total
    assert flagged == labelled


# ---------------------------------------------------------------- CSV


def csv_of(response: Any) -> list[list[str]]:
    data = response.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))


def test_csv_export_is_the_filtered_log_for_excel(services: Services, head: FlaskClient) -> None:
    sample_log(services)
    with transaction(services.sessions) as session:
        add_call(
            session,
            "CA" + "99" * 16,
            at(-200),
            caller_said_name='=HYPERLINK("http://evil.example","Нажми")',
            ticket="77",
        )
    response = head.get("/console/calls.csv?from=2025-11-27&to=2025-11-27&category=incident")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="calls_2025-11-27_2025-11-27.csv"'
    )
    table = csv_of(response)
    header, rows = table[0], table[1:]
    assert header == [
        "Время (МСК)", "Линия", "Номер абонента", "Контакт", "Организация", "Назвался",
        "Категория", "Тема", "Продукт", "Госномера", "Заявка", "Состояние заявки",
        "Первый этап до", "Решение до", "Исход звонка", "Соединение", "Принял",
        "Длительность, с", "Требует внимания", "Перезвонили", "CallSid",
    ]  # fmt: skip
    assert [row[-1] for row in rows] == [
        NAMES.no_ticket,
        NAMES.failed,
        NAMES.ticketed,
        "CA" + "99" * 16,
    ]
    ticketed = dict(zip(header, rows[2], strict=True))
    assert ticketed == {
        "Время (МСК)": "27.11.2025 09:00:00",
        "Линия": "8 (800) 250-60-77",
        "Номер абонента": "8 (916) 123-45-67",
        "Контакт": "",
        "Организация": "",
        "Назвался": "Мария, ООО Ромашка",
        "Категория": "Новая проблема",
        "Тема": "Актуализация данных в системе",
        "Продукт": "SKAI-Online",
        "Госномера": "А123ВС77",
        "Заявка": "1001",
        "Состояние заявки": "Создана",
        "Первый этап до": "28.11.2025 18:00:00",
        "Решение до": "01.12.2025 18:00:00",
        "Исход звонка": "Завершён",
        "Соединение": "",
        "Принял": "",
        "Длительность, с": "185",
        "Требует внимания": "",
        "Перезвонили": "",
        "CallSid": NAMES.ticketed,
    }
    assert dict(zip(header, rows[1], strict=True))["Требует внимания"] == "Ошибка создания заявки"
    no_ticket = dict(zip(header, rows[0], strict=True))
    assert (no_ticket["Первый этап до"], no_ticket["Решение до"]) == ("", "")
    # A caller's words never run as a formula in the supervisor's spreadsheet.
    assert rows[3][5] == '\'=HYPERLINK("http://evil.example","Нажми")'


@pytest.mark.both_databases  # Cyrillic case folding, stored times, streaming: per dialect
def test_a_large_export_is_streamed_in_pieces(services: Services, head: FlaskClient) -> None:
    with transaction(services.sessions) as session:
        for n in range(1234):
            session.add(
                Call(
                    call_sid=f"CA{n:032d}",
                    started_at=at(-n),
                    updated_at=at(-n),
                    line="+78002506077",
                    caller_e164="+79161234567",
                    category="consultation",
                    outcome="completed",
                )
            )
    response = head.get("/console/calls.csv")
    pieces = [p if isinstance(p, bytes) else p.encode() for p in response.response]
    assert len(pieces) == 4  # the header, then 500 + 500 + 234 rows
    table = list(csv.reader(io.StringIO(b"".join(pieces).decode("utf-8-sig")), delimiter=";"))
    assert len(table) == 1 + 1234
    assert table[1][-1] == f"CA{0:032d}" and table[-1][-1] == f"CA{1233:032d}"


# ---------------------------------------------------------------- a call's page


def test_a_call_page_replays_the_path_with_the_ticket_and_its_deadlines(
    services: Services, head: FlaskClient
) -> None:
    sample_log(services)
    page = text_of(get_page(head, f"/console/calls/{NAMES.ticketed}"))
    assert "Новая проблема · Актуализация данных в системе" in page
    assert "четверг, 27 ноября 2025, 09:00:00 (МСК)" in page
    for line in (
        "09:00:00 Звонок поступил, приветствие",
        "09:00:08 Главное меню: клавиша «2» — новая проблема",
        "09:00:15 Выбор темы: тишина, повтор 1",
        "09:00:21 Выбор темы: голосом «актуализация данных» — Актуализация данных в системе",
        "09:00:27 Выбор продукта: клавиша «3» — SKAI-Online",
        "09:00:40 Госномер ТС: голосом «А 123 ВС 77» — госномер А123ВС77",
        "09:01:30 Описание проблемы: записано описание",
        "09:01:31 Сохранена запись: описание проблемы (0:01)",
        "09:01:32 Запрошено создание заявки на портале",
        "09:01:36 Абоненту назван номер заявки №1001",
        "09:03:05 Статус звонка: завершён, длительность 185 с",
    ):
        assert line in page, line
    assert "Номер №1001 Состояние Создана · на портале: Новая, приоритет Обычный" in page
    assert "Первый этап до 18:00, пятница 28 ноября 2025" in page
    assert "Решение до 18:00, понедельник 1 декабря 2025" in page
    assert "Запись звонка: описание проблемы (0:01) · 09:01:31" in page
    raw = get_page(head, f"/console/calls/{NAMES.ticketed}")
    assert f'src="/console/calls/{NAMES.ticketed}/recordings/{RECORDING_SID}"' in raw
    assert 'href="/console/tickets/1001"' in raw
    assert "api.twilio.com" not in raw  # never the public Twilio link


def test_an_urgent_call_page_lists_who_was_rung(services: Services, head: FlaskClient) -> None:
    sample_log(services)
    page = text_of(get_page(head, f"/console/calls/{NAMES.urgent_missed}"))
    assert "Срочный: никто не принял" in page
    assert "Отметка Никто из цепочки не принял срочный звонок" in page
    assert "1 Иванов Иван +7 912 345-67-01 10:00:40 — — нет ответа" in page
    assert "2 Петрова Анна +7 912 345-67-02 10:01:00 10:01:09 9 с ответ без нажатия 1" in (page)
    answered = text_of(get_page(head, f"/console/calls/{NAMES.urgent_answered}"))
    accepted = "2 Петрова Анна +7 912 345-67-02 10:16:00 10:16:12 12 с звонок принят (нажата 1)"
    assert accepted in answered


def test_the_page_still_opens_when_the_portal_is_down(
    make_services: Any, services: Services
) -> None:
    from callcenter.app import create_app

    sample_log(services)
    down = make_services(portal_url="http://127.0.0.1:9/", portal_token="t")
    app = create_app(services=down)
    client = app.test_client()
    add_user(down, "head", "supervisor")
    login(client, "head")
    page = text_of(get_page(client, f"/console/calls/{NAMES.ticketed}"))
    # The deadlines come from the ticket request when the portal cannot answer.
    assert "Первый этап до 18:00, пятница 28 ноября 2025" in page
    assert "на портале:" not in page
    ticket = client.get("/console/tickets/1001", headers={"Accept": "text/html"})
    assert ticket.status_code == 503
    assert "Портал заявок недоступен" in ticket.get_data(as_text=True)


def test_an_unknown_call_is_404(services: Services, head: FlaskClient) -> None:
    assert head.get("/console/calls/CAnope").status_code == 404


# ---------------------------------------------------------------- actions


@pytest.mark.usefixtures("sync_jobs")
def test_retry_a_failed_ticket_until_it_is_done(services: Services, head: FlaskClient) -> None:
    sample_log(services)
    token = csrf_of(head)
    response = head.post(f"/console/calls/{NAMES.failed}/retry", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/console/calls/{NAMES.failed}"

    def done() -> Any:
        state = head.get(f"/console/calls/{NAMES.failed}/ticket.json").get_json()
        return state if state["state"] == "done" else None

    state = done()
    assert state is not None
    assert state["number"] == "1002"
    page = text_of(get_page(head, f"/console/calls/{NAMES.failed}"))
    assert "Заявка отправлена на портал повторно." in page
    assert "Номер №1002 Состояние Создана" in page
    assert "Ошибка создания заявки" not in page
    with services.sessions() as session:
        row = session.scalar(
            select(TicketRequest).where(TicketRequest.idempotency_key == NAMES.failed)
        )
        assert row is not None
        assert row.followups["retries"][0]["by"] == "head"
    # A done request cannot be retried: the supervisor is told why.
    again = head.post(f"/console/calls/{NAMES.failed}/retry", data={"csrf_token": token})
    assert again.status_code == 302
    refused = text_of(get_page(head, f"/console/calls/{NAMES.failed}"))
    assert (
        "Повтор невозможен: повторить можно только заявку с ошибкой создания, а эта уже "
        "создана или создаётся." in refused
    )
    assert "ticket request" not in refused


@pytest.mark.usefixtures("sync_jobs")
def test_open_the_ticket_a_call_never_got(services: Services, head: FlaskClient) -> None:
    sample_log(services)
    page = get_page(head, f"/console/calls/{NAMES.no_ticket}")
    assert 'id="open-ticket"' in page
    head.post(f"/console/calls/{NAMES.no_ticket}/open-ticket", data={"csrf_token": csrf_of(head)})

    def number() -> Any:
        return head.get(f"/console/calls/{NAMES.no_ticket}/ticket.json").get_json()["number"]

    assert number() == "1002"
    rows = log_rows(get_page(head, "/console/"))
    assert rows[NAMES.no_ticket][0] == ""
    assert "№1002" in rows[NAMES.no_ticket][1]
    # A call with nothing to ticket: the refusal is in Russian, no codes.
    head.post(f"/console/calls/{NAMES.abandoned}/open-ticket", data={"csrf_token": csrf_of(head)})
    refused = text_of(get_page(head, f"/console/calls/{NAMES.abandoned}"))
    assert "Заявку открыть нельзя: абонент не выбрал, о чём звонок" in refused
    assert "nothing to ticket" not in refused


def test_mark_called_back_clears_the_callback_problem(
    services: Services, head: FlaskClient
) -> None:
    sample_log(services)
    assert 'id="mark-called-back"' in get_page(head, f"/console/calls/{NAMES.abandoned}")
    assert 'id="mark-called-back"' not in get_page(head, f"/console/calls/{NAMES.ticketed}")
    head.post(f"/console/calls/{NAMES.abandoned}/called-back", data={"csrf_token": csrf_of(head)})
    page = text_of(get_page(head, f"/console/calls/{NAMES.abandoned}"))
    assert "Перезвонили 27 ноября 2025, 11:00 (head)." in page
    assert "Отмечено: абоненту перезвонили (head)" in page
    rows = log_rows(get_page(head, "/console/"))
    assert rows[NAMES.abandoned][0] == ""
    assert rows[NAMES.abandoned][1].endswith("Сброшен Перезвонили 0:07")


def test_notes_are_kept_and_bad_ones_lose_nothing(services: Services, head: FlaskClient) -> None:
    sample_log(services)
    url = f"/console/calls/{NAMES.urgent_missed}/notes"
    token = csrf_of(head)
    empty = head.post(url, data={"csrf_token": token, "text": "   "})
    assert empty.status_code == 400
    assert "Заметка пустая" in empty.get_data(as_text=True)
    long_text = "Перезвонил, " * 200
    too_long = head.post(url, data={"csrf_token": token, "text": long_text})
    assert too_long.status_code == 400
    body = too_long.get_data(as_text=True)
    assert "Заметка длиннее 2000 символов (2399)" in body
    assert html.escape(long_text.strip(), quote=False) in body  # still in the form
    ok = head.post(url, data={"csrf_token": token, "text": "Перезвонил <b>в 11:30</b>"})
    assert ok.status_code == 302
    page = get_page(head, f"/console/calls/{NAMES.urgent_missed}")
    assert "Перезвонил &lt;b&gt;в 11:30&lt;/b&gt;" in page  # escaped, never markup
    assert "27 ноября 2025, 11:00 · head" in text_of(page)
    with services.sessions() as session:
        notes = session.scalars(select(CallNote)).all()
        assert [(n.author, n.text) for n in notes] == [("head", "Перезвонил <b>в 11:30</b>")]


# ---------------------------------------------------------------- recordings


@pytest.fixture
def twilio_media() -> Iterator[dict[str, Any]]:
    """A real HTTP server answering like Twilio's media host: the WAV for the right
    account credentials, 401 without them."""
    state: dict[str, Any] = {"hits": [], "body": wav_bytes(0.5)}
    expected = (
        "Basic " + base64.b64encode(f"{TEST_ACCOUNT_SID}:{TEST_AUTH_TOKEN}".encode()).decode()
    )

    @Request.application
    def media(request: Request) -> Response:
        state["hits"].append(request.path)
        if request.headers.get("Authorization") != expected:
            return Response("no", status=401)
        return Response(state["body"], mimetype="audio/wav")

    server = make_server("127.0.0.1", 0, media, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def test_a_downloaded_recording_streams_with_ranges(services: Services, head: FlaskClient) -> None:
    sample_log(services, services.settings.data_dir / "recordings")
    url = f"/console/calls/{NAMES.ticketed}/recordings/{RECORDING_SID}"
    whole = head.get(url)
    assert whole.status_code == 200
    assert whole.mimetype in ("audio/wav", "audio/x-wav")
    assert whole.data == wav_bytes()
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = head.get(url, headers={"Range": "bytes=0-43"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 0-43/{len(wav_bytes())}"
    assert part.data[:4] == b"RIFF" and len(part.data) == 44
    main = head.get(f"/console/calls/{NAMES.ticketed}/recording")
    assert main.data == wav_bytes()
    by_sid = head.get(f"/console/recordings/{RECORDING_SID}")
    assert by_sid.data == wav_bytes()
    # Played in the page, saved under a name a person understands, not the SID.
    for response in (whole, main, by_sid):
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("inline; ")
        assert "filename*=UTF-8''" + quote("Запись звонка 27.11.2025 09:01.wav") in disposition
        assert RECORDING_SID not in disposition
    for response in (whole, part, main, by_sid):
        response.close()
    assert (
        head.get(f"/console/calls/{NAMES.ticketed}/recordings/{VOICEMAIL_SID}").status_code == 404
    )
    assert head.get(f"/console/recordings/{VOICEMAIL_SID}").status_code == 404


def test_a_recording_not_downloaded_yet_is_fetched_from_twilio_once_and_kept(
    make_services: Any, twilio_media: dict[str, Any]
) -> None:
    from callcenter.app import create_app

    svc = make_services(twilio_api_base_url=twilio_media["url"])
    sample_log(svc)
    with transaction(svc.sessions) as session:
        call = session.scalars(select(Call).where(Call.call_sid == NAMES.urgent_missed)).one()
        event(
            session,
            call,
            300,
            "recording_added",
            detail={
                "sid": VOICEMAIL_SID,
                "url": TWILIO_RECORDING_URL.replace(RECORDING_SID, VOICEMAIL_SID),
                "recording_kind": "voicemail",
                "duration": 1,
            },
        )
    client = create_app(services=svc).test_client()
    add_user(svc, "head", "supervisor")
    login(client, "head")
    page = text_of(get_page(client, f"/console/calls/{NAMES.urgent_missed}"))
    assert "Голосовое сообщение абонента (0:01)" in page
    url = f"/console/calls/{NAMES.urgent_missed}/recordings/{VOICEMAIL_SID}"
    first = client.get(url)
    assert first.status_code == 200
    assert first.data == twilio_media["body"]
    first.close()
    assert twilio_media["hits"] == [
        f"/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/{VOICEMAIL_SID}.mp3"
    ]
    kept = svc.settings.data_dir / "recordings" / f"{VOICEMAIL_SID}.wav"
    assert kept.read_bytes() == twilio_media["body"]
    second = client.get(url, headers={"Range": "bytes=0-3"})
    assert (second.status_code, second.data) == (206, b"RIFF")
    second.close()
    assert len(twilio_media["hits"]) == 1  # served from the kept copy


def test_a_recording_twilio_refuses_or_a_purged_call_is_explained(
    make_services: Any, twilio_media: dict[str, Any]
) -> None:
    from callcenter.app import create_app

    svc = make_services(twilio_api_base_url=twilio_media["url"], twilio_auth_token="wrong")
    sample_log(svc)
    client = create_app(services=svc).test_client()
    add_user(svc, "head", "supervisor")
    login(client, "head")
    refused = client.get(f"/console/calls/{NAMES.ticketed}/recording")
    assert refused.status_code == 502
    assert refused.get_data(as_text=True) == "Twilio отказал в выдаче записи."
    with transaction(svc.sessions) as session:
        call = session.scalars(select(Call).where(Call.call_sid == NAMES.ticketed)).one()
        call.anonymised_at = at(60 * 24 * 400)
    gone = client.get(f"/console/calls/{NAMES.ticketed}/recording")
    assert gone.status_code == 410
    page = text_of(get_page(client, f"/console/calls/{NAMES.ticketed}"))
    assert "Записи и персональные данные удалены по сроку хранения" in page


# ---------------------------------------------------------------- tickets


def test_the_ticket_page_shows_the_portals_ticket_and_its_call(
    services: Services, head: FlaskClient
) -> None:
    sample_log(services)
    services.portal.add_entry("1001", text="Проверили датчик, ждём клиента", author="Иванов")
    page = text_of(get_page(head, "/console/tickets/1001"))
    assert "Заявка №1001" in page
    assert "Актуализация данных в системе · создана 27 ноября 2025, 11:00 (МСК)" in page
    assert "Статус Новая" in page
    assert "Организация ООО «Ромашка»" in page
    assert f"Звонок {NAMES.ticketed}" in page
    assert "Первый этап до 18:00, пятница 28 ноября 2025" in page
    assert "Комментарий · Иванов Проверили датчик, ждём клиента" in page
    missing = head.get("/console/tickets/4242", headers={"Accept": "text/html"})
    assert missing.status_code == 404
    assert "Заявка №4242 на портале не найдена." in missing.get_data(as_text=True)


def test_events_of_every_kind_read_as_sentences(services: Services, head: FlaskClient) -> None:
    """The routing and pipeline events of an urgent call, as the call page words them."""
    sample_log(services)
    with transaction(services.sessions) as session:
        call = session.scalars(select(Call).where(Call.call_sid == NAMES.urgent_missed)).one()
        for seconds, kind, fields in (
            (30, "routing_start", {"step": "urgent", "detail": {"legs": 3}}),
            (40, "dial", {"step": "step 1", "detail": {"legs": [1]}}),
            (55, "leg_declined", {"step": "leg 2", "digits": "2"}),
            (70, "dial_result", {"step": "step 1", "detail": {"results": {"1": "no-answer"}}}),
            (95, "nobody_accepted", {"step": "urgent"}),
            (120, "voicemail", {"step": "urgent", "detail": {"left": True}}),
            (121, "something_new", {"step": "later"}),
        ):
            event(session, call, seconds, kind, **fields)
    page = text_of(get_page(head, f"/console/calls/{NAMES.urgent_missed}"))
    for line in (
        "10:00:30 Соединение: срочный звонок, цепочка дежурных",
        "10:00:40 Вызываем: Иванов Иван",
        "10:00:55 Звонок отклонён: Петрова Анна",
        "10:01:10 Итог вызова: Иванов Иван — нет ответа",
        "10:01:35 Никто из цепочки не принял звонок: звонок отмечен",
        "10:02:00 Абонент оставил голосовое сообщение",
        "10:02:01 something_new · later",
    ):
        assert line in page, line


def test_the_call_page_guesses_nobodys_gender_and_names_no_internal_steps(
    services: Services, head: FlaskClient
) -> None:
    """Staff and callers without a guessed gender, no internal step names, no raw codes."""
    sample_log(services)
    with transaction(services.sessions) as session:
        call = session.scalars(select(Call).where(Call.call_sid == NAMES.urgent_answered)).one()
        for seconds, kind, fields in (
            (50, "whisper", {"step": "leg 2"}),
            (62, "leg_accepted", {"step": "leg 2", "digits": "1", "detail": {"seconds": 12}}),
            (63, "leg_too_late", {"step": "leg 1", "digits": "1"}),
            (
                70,
                "gather",
                {
                    "step": "status_number",
                    "digits": "1001",
                    "detail": {"result": "refused", "number": "1001", "found": True},
                },
            ),
            (
                75,
                "gather",
                {
                    "step": "status_number",
                    "digits": "4242",
                    "detail": {"result": "refused", "number": "4242"},
                },
            ),
            (80, "gather", {"step": "status_done", "digits": "#", "detail": {"result": "goodbye"}}),
            (85, "gather", {"step": "caller_name", "speech": "Мария, ООО Ромашка"}),
            (
                86,
                "recording_refused",
                {"detail": {"reason": "recording SID must be 'RE' and 32 hex digits"}},
            ),
        ):
            event(session, call, seconds, kind, **fields)
        failed = session.scalars(select(Call).where(Call.call_sid == NAMES.failed)).one()
        failed.outcome = "interrupted"
        failed.interrupted = True
    page = text_of(get_page(head, f"/console/calls/{NAMES.urgent_answered}"))
    for line in (
        "10:15:50 Ответ: Петрова Анна — подсказка о звонке",
        "10:16:02 Звонок принят: Петрова Анна (клавиша 1) через 12 с",
        "10:16:03 Иванов Иван: клавиша 1 после того, как звонок принят другим",
        "10:16:10 Номер заявки для статуса: клавиша «1001» — заявка №1001 другой организации, "
        "статус не назван",
        "10:16:15 Номер заявки для статуса: клавиша «4242» — заявки №4242 нет, статус не назван",
        "10:16:20 Статус заявки: клавиша «#» — абонент завершил разговор",
        "10:16:25 Имя и организация: «Мария, ООО Ромашка»",
        "10:16:26 Запись не принята: Twilio прислал неверные сведения о ней Подробности "
        "recording SID must be 'RE' and 32 hex digits",
    ):
        assert line in page, line
    for slip in ("снял", "принял", "нажал", "сказал", "назвался", "прощание", "чужая"):
        assert slip not in page, slip
    raw = get_page(head, f"/console/calls/{NAMES.urgent_answered}")
    assert "<summary>Подробности</summary><code>recording SID must be" in raw
    failed_page = get_page(head, f"/console/calls/{NAMES.failed}")
    assert (
        "Исход Прерван: абонент положил трубку до конца меню, заявка открыта по сказанному"
        in text_of(failed_page)
    )
    assert "прерван до конца сценария" not in failed_page
    # The portal's error in Russian; its technical words folded away.
    assert '<span id="ticket-error">Портал заявок был недоступен</span>' in failed_page
    assert (
        '<details class="technical"><summary>Подробности</summary>'
        "<code>portal unavailable: HTTP 503</code></details>" in failed_page
    )


@pytest.mark.both_databases  # Cyrillic case folding, stored times, streaming: per dialect
def test_dates_in_the_log_are_moscow_time(services: Services, head: FlaskClient) -> None:
    with transaction(services.sessions) as session:
        add_call(session, "CA-night", at(-11 * 60 + 1), category="consultation", topic=None)
    rows = log_rows(get_page(head, "/console/"))
    assert rows["CA-night"][1].startswith("27.11.2025 00:01")
