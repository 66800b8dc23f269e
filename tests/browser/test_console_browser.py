"""The supervisor console in a real browser: what a head of support sees and does.

Log in, filter the log, open a call and play its recording, retry a failed ticket until
the page shows it done, export CSV, look at the dashboard, import the directory and edit
the roster. Each test checks the rendered text and saves screenshots of the pages under
test-artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from callcenter.services import Services
from tests.browser.conftest import screenshot
from tests.console_helpers import PASSWORD, add_user, sample_log

pytestmark = pytest.mark.browser


def log_in(page: Page, base: str, name: str = "head") -> None:
    page.goto(f"{base}/console/")
    expect(page).to_have_url(f"{base}/console/login?next=/console/")
    expect(page.locator("h1")).to_have_text("Вход в консоль руководителя")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Журнал звонков")


def test_log_in_filter_the_log_open_a_call_and_play_its_recording(
    services: Services, live_url: str, page: Page, tmp_path: Path
) -> None:
    names = sample_log(services, services.settings.data_dir / "recordings")
    add_user(services, "head", "supervisor")

    page.goto(f"{live_url}/console/login")
    page.fill("input[name=name]", "head")
    page.fill("input[name=password]", "wrong password!")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Неверное имя пользователя или пароль.")
    screenshot(page, "01-login-refused")

    log_in(page, live_url)
    rows = page.locator("#call-log tbody tr")
    expect(rows).to_have_count(7)
    expect(page.locator("#summary")).to_contain_text("Звонков: 7")
    # Newest first; the problem rows stand out with a class and a visible label.
    expect(rows.first).to_contain_text("27.11.2025 10:55")
    expect(page.locator("#call-log tr.problem")).to_have_count(4)
    for label in (
        "Нет заявки",
        "Ошибка создания заявки",
        "Срочный: никто не принял",
        "Не перезвонили",
    ):
        expect(page.locator("#call-log tr.problem", has_text=label)).to_have_count(1)
    ticketed = page.locator(f"tr[data-call-sid='{names.ticketed}']")
    expect(ticketed).to_contain_text("8 (800) 250-60-77")
    expect(ticketed).to_contain_text("Новая проблема")
    expect(ticketed).to_contain_text("Актуализация данных в системе")
    expect(ticketed.locator("a.ticket")).to_have_text("№1001")
    expect(ticketed.locator("a.ticket")).to_have_attribute("href", "/console/tickets/1001")
    expect(ticketed).to_contain_text("3:05")
    screenshot(page, "02-call-log")

    # Filter: only the calls needing attention, on the 8-800 line.
    page.select_option("select[name=line]", "+78002506077")
    page.check("input[name=attention]")
    page.click("#filters button[type=submit]")
    expect(page.locator("#summary")).to_contain_text("Звонков: 3")
    expect(page.locator("#call-log tbody tr")).to_have_count(3)
    expect(page.locator("#call-log tbody tr.problem")).to_have_count(3)
    expect(page.locator("input[name=attention]")).to_be_checked()
    screenshot(page, "03-call-log-filtered")

    # A search by the caller's number in another spelling.
    page.goto(f"{live_url}/console/")
    page.fill("input[name=q]", "8 916 123-45-67")
    page.click("#filters button[type=submit]")
    expect(page.locator("#call-log tbody tr")).to_have_count(1)
    page.click(f"tr[data-call-sid='{names.ticketed}'] td.time a")

    expect(page.locator("h1")).to_have_text("Новая проблема · Актуализация данных в системе")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Главное меню: клавиша «2» — новая проблема")
    expect(timeline).to_contain_text("Выбор темы: тишина, повтор 1")
    expect(timeline).to_contain_text(
        "Выбор темы: голосом «актуализация данных» — Актуализация данных в системе"
    )
    expect(timeline).to_contain_text("Госномер ТС: голосом «А 123 ВС 77» — госномер А123ВС77")
    expect(timeline).to_contain_text("Абоненту назван номер заявки №1001")
    ticket_panel = page.locator("#ticket")
    expect(ticket_panel).to_contain_text("Создана")
    expect(ticket_panel).to_contain_text("18:00, пятница 28 ноября 2025")
    expect(ticket_panel).to_contain_text("18:00, понедельник 1 декабря 2025")

    audio = page.locator("#recordings audio")
    expect(audio).to_have_count(1)
    src = audio.get_attribute("src")
    assert src is not None and src.startswith(f"/console/calls/{names.ticketed}/recordings/")
    page.wait_for_function(
        "() => { const a = document.querySelector('#recordings audio');"
        " return a.readyState >= 1 && a.duration > 0.9 && a.duration < 1.1; }"
    )
    page.evaluate("() => document.querySelector('#recordings audio').play()")
    page.wait_for_function(
        "() => { const a = document.querySelector('#recordings audio');"
        " return a.currentTime > 0 || a.ended; }"
    )
    screenshot(page, "04-call-page")

    # The ticket page of the built-in portal, behind the same login.
    page.click("#ticket-link")
    expect(page.locator("h1")).to_have_text("Заявка №1001")
    expect(page.locator("#ticket-status")).to_have_text("Новая")
    expect(page.locator("#ticket-details")).to_contain_text("ООО «Ромашка»")
    screenshot(page, "05-ticket-page")


def test_retry_a_failed_ticket_and_see_it_done(
    services: Services, live_url: str, page: Page
) -> None:
    names = sample_log(services)
    add_user(services, "head", "supervisor")
    log_in(page, live_url)

    page.click(f"tr[data-call-sid='{names.failed}'] td.time a")
    expect(page.locator("#ticket-state")).to_have_text("Ошибка создания")
    expect(page.locator("#ticket-error")).to_have_text("Портал заявок был недоступен")
    expect(page.locator("#ticket .technical code")).to_be_hidden()  # folded away
    page.click("#ticket .technical summary")
    expect(page.locator("#ticket .technical code")).to_have_text("portal unavailable: HTTP 503")
    expect(page.locator("#problems")).to_contain_text("Ошибка создания заявки")
    screenshot(page, "06-failed-ticket")

    page.click("#retry-ticket")
    # In-process jobs ask the built-in portal; the page polls and reloads when it is done.
    expect(page.locator("#ticket-state")).to_have_text("Создана")
    expect(page.locator("#ticket-link")).to_have_text("№1002")
    expect(page.locator("#problems")).to_have_count(0)
    screenshot(page, "07-ticket-retried")

    page.goto(f"{live_url}/console/?ticket_failed=true")
    expect(page.locator("#summary")).to_contain_text("Звонков с такими условиями нет.")


def test_export_the_filtered_log_as_csv(services: Services, live_url: str, page: Page) -> None:
    names = sample_log(services)
    add_user(services, "head", "supervisor")
    log_in(page, live_url)
    page.select_option("select[name=category]", "critical,stolen")
    page.click("#filters button[type=submit]")
    expect(page.locator("#call-log tbody tr")).to_have_count(2)

    with page.expect_download() as caught:
        page.click("#export-csv")
    download = caught.value
    assert download.suggested_filename == "calls_2025-11-27.csv"
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["Время (МСК)", "Линия", "Номер абонента", "Контакт"]
    assert [row[-1] for row in rows[1:]] == [names.urgent_answered, names.urgent_missed]
    by_sid = {row[-1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    missed = by_sid[names.urgent_missed]
    assert missed["Категория"] == "Критический сбой сервера"
    assert missed["Линия"] == "8 (812) 607-77-41"
    assert missed["Требует внимания"] == "Срочный: никто не принял"
    assert by_sid[names.urgent_answered]["Принял"] == "Петрова Анна"
    screenshot(page, "08-call-log-urgent")


def test_dashboard_directory_and_roster(
    services: Services, live_url: str, page: Page, tmp_path: Path
) -> None:
    sample_log(services)
    add_user(services, "head", "supervisor")
    log_in(page, live_url)
    # No roster yet: every page says so, loudly.
    expect(page.locator("#roster-warning")).to_contain_text("График дежурств пуст")

    page.click("text=Сводка")
    today = page.locator("#today")
    expect(today.locator(".tile").first).to_contain_text("7")
    # Of 5 finished calls on ticketed paths, 3 have a ticket (one failed, one never asked).
    expect(today).to_contain_text("60 %")
    expect(today).to_contain_text("3 из 5")
    expect(today).to_contain_text("1 из 2")  # urgent calls accepted
    expect(today).to_contain_text("32 с")  # first ring to the press of 1: 20 s + 12 s
    expect(page.locator("svg.chart")).to_have_count(5)
    expect(page.locator("#busiest")).to_contain_text("10:00–11:00")
    screenshot(page, "09-dashboard")

    sheet = tmp_path / "clients.csv"
    sheet.write_text(
        "организация;инн;контакт;телефоны;почта\n"
        "ООО «Ромашка»;7707083893;Кузнецова Мария;+7 916 123-45-67;maria@romashka.example\n"
        "ООО «Ромашка»;7707083893;Диспетчер;8 (495) 765-43-21;\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "организация;инн;контакт;телефоны\nООО «Лютик»;123;Петров;12\n", encoding="utf-8"
    )
    page.click("text=Справочник")
    page.set_input_files("#directory-import input[type=file]", str(bad))
    page.click("#directory-import button[type=submit]")
    problems = page.locator("#import-problems")
    expect(problems).to_contain_text("ничего не изменено")
    expect(problems).to_contain_text("неверный ИНН «123»: нужно 10 или 12 цифр, а не 3")
    expect(problems.locator("tbody tr").first).to_contain_text("2")
    screenshot(page, "10-directory-rejected")
    page.set_input_files("#directory-import input[type=file]", str(sheet))
    page.click("#directory-import button[type=submit]")
    expect(page.locator(".flashes")).to_contain_text("Контакты: создано 2")
    expect(page.locator("#directory")).to_contain_text("Кузнецова Мария")
    expect(page.locator("#directory")).to_contain_text("+7 495 765-43-21")
    screenshot(page, "11-directory")

    page.click("text=График дежурств")
    editor = page.locator("textarea[name=roster]")
    broken = "staff:\n  - key: ivanov\n    name: Иванов\n    phones: ['12345']\n"
    editor.fill(broken)
    page.click("#roster-editor button.primary")
    expect(page.locator("#roster-problems")).to_contain_text("строка 4")
    expect(page.locator("textarea[name=roster]")).to_have_value(broken)
    editor = page.locator("textarea[name=roster]")
    editor.fill(
        "staff:\n"
        "  - key: ivanov\n    name: Иванов Иван\n    phones: ['+7 912 345-67-01']\n"
        "  - key: smirnova\n    name: Смирнова Елена\n    role: head\n"
        "    phones: ['+7 912 345-67-09']\n"
        "shifts:\n"
        "  - staff: ivanov\n    days: daily\n    hours: all-day\n    duty: both\n"
    )
    page.click("#roster-editor button.primary")
    expect(page.locator(".flashes")).to_contain_text("График сохранён")
    expect(page.locator("#roster-ok")).to_contain_text("График в порядке")
    expect(page.locator("#roster-warning")).to_have_count(0)
    on_duty = page.locator("#on-duty")
    expect(on_duty).to_contain_text("Иванов Иван")
    expect(on_duty).to_contain_text("Смирнова Елена (руководитель)")
    screenshot(page, "12-roster")
