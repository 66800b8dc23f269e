"""The console on a phone: the specialist on duty at night has only a phone.

Every console page is opened at 390×844 (an ordinary phone), as a supervisor and as a
specialist, and must fit the screen: the document is never wider than the viewport
(`scrollWidth <= clientWidth`). The log is a list of cards, the filters and the menu fold
away, «Кто дежурит» and «Выйти» are in the top bar. A desk (1440 px) keeps its table and
open filters. The pages the README shows are saved at 390 and 1440 px under
test-artifacts/screenshots/ (a test run never touches the tracked docs/screenshots/:
scripts/screenshots.py copies them there, deliberately).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from callcenter.db import transaction
from callcenter.directory.importer import import_directory
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from tests.browser.conftest import screenshot
from tests.conftest import ROOT
from tests.console_helpers import PASSWORD, SampleLog, add_user, sample_log

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESK = {"width": 1440, "height": 900}
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
FIXTURES = ROOT / "tests" / "fixtures"


def new_page(browser: Browser, viewport: dict[str, int]) -> tuple[BrowserContext, Page]:
    ctx = browser.new_context(
        locale="ru-RU",
        timezone_id="Europe/Moscow",
        viewport=viewport,  # type: ignore[arg-type]
        device_scale_factor=1,
    )
    ctx.set_default_timeout(15_000)
    return ctx, ctx.new_page()


def log_in(page: Page, base: str, name: str) -> None:
    page.goto(f"{base}/console/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Журнал звонков")


def overflow(page: Page) -> int:
    """How many pixels the page is wider than the screen (0 when nothing scrolls sideways)."""
    return int(
        page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


# The elements whose right edge is past the screen, outermost first: what to fix.
_WIDE = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 5)
  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
            + (e.className && typeof e.className === 'string' ? '.' + e.className : ''))"""


def assert_fits(page: Page, path: str) -> None:
    wider = overflow(page)
    assert wider <= 0, f"{path}: {wider} px wider than the 390 px screen: {page.evaluate(_WIDE)}"


def fill_directory_and_roster(services: Services) -> None:
    with transaction(services.sessions) as session:
        import_directory(
            session, (FIXTURES / "directory" / "good.csv").read_bytes(), services.clock()
        )
        import_roster(session, (FIXTURES / "roster" / "office.yaml").read_text("utf-8"))


def pages(names: SampleLog) -> list[str]:
    """Every page of the console a signed-in person opens."""
    return [
        "/console/",
        "/console/?attention=true",
        "/console/?from=2025-11-27&to=2025-11-27&q=%2B79161234567",
        "/console/?from=27.11.2025",  # a refused filter: the error must fit too
        f"/console/calls/{names.ticketed}",
        f"/console/calls/{names.failed}",
        f"/console/calls/{names.urgent_missed}",
        f"/console/calls/{names.consultation}",
        f"/console/tickets/{names.ticket_number}",
        "/console/dashboard",
        "/console/dashboard?from=2025-11-01&to=2025-11-30",
        "/console/directory",
        "/console/directory?q=Иванов",
        "/console/roster",
        "/console/callbacks",
        "/console/incidents",
        "/console/live",
        "/console/calls/CA" + "99" * 16,  # not found
    ]


SUPERVISOR_ONLY = [
    "/console/directory/contacts/new",
    "/console/directory/contacts/1",
    "/console/directory/organisations/new",
    "/console/directory/organisations/1",
]


@pytest.mark.parametrize("role", ["supervisor", "specialist"])
def test_every_page_fits_a_phone(
    services: Services, live_url: str, browser: Browser, role: str
) -> None:
    names = sample_log(services, services.settings.data_dir / "recordings")
    fill_directory_and_roster(services)
    add_user(services, role, role)
    ctx, page = new_page(browser, PHONE)
    try:
        page.goto(f"{live_url}/console/login")
        assert_fits(page, "/console/login")
        log_in(page, live_url, role)
        visited = pages(names) + (SUPERVISOR_ONLY if role == "supervisor" else [])
        for path in visited:
            page.goto(f"{live_url}{path}")
            expect(page.locator("h1")).to_be_visible()
            assert_fits(page, path)
            screenshot(page, f"phone-{role}-{re.sub(r'[^a-z0-9]+', '-', path.lower()).strip('-')}")
            # «Кто дежурит» and «Выйти» are at the top of every page, without scrolling.
            for control in ("#on-duty-link", "#logout"):
                box = page.locator(control).bounding_box()
                assert box is not None and box["y"] < 120, f"{path}: {control} is not at the top"
                assert box["x"] + box["width"] <= PHONE["width"], f"{path}: {control} off-screen"
        # The filters opened on a phone fit as well.
        page.goto(f"{live_url}/console/")
        page.click("#filters-button")
        expect(page.locator("#filters")).to_be_visible()
        assert_fits(page, "/console/ with the filters open")
        # The menu opened too.
        page.click("#menu-button")
        expect(page.locator("#menu")).to_be_visible()
        assert_fits(page, "/console/ with the menu open")
    finally:
        ctx.close()


def test_the_log_on_a_phone_is_cards_and_the_desk_keeps_its_table(
    services: Services, live_url: str, browser: Browser
) -> None:
    names = sample_log(services, services.settings.data_dir / "recordings")
    fill_directory_and_roster(services)
    add_user(services, "head", "supervisor")

    ctx, page = new_page(browser, PHONE)
    try:
        log_in(page, live_url, "head")
        # The menu and the filters are folded; the on-duty link and «Выйти» are on screen.
        expect(page.locator("#menu")).to_be_hidden()
        expect(page.locator("#filters")).to_be_hidden()
        expect(page.locator("#on-duty-link")).to_be_visible()
        expect(page.locator("#logout")).to_be_visible()
        expect(page.locator("#call-log thead")).to_be_hidden()
        card = page.locator(f"tr[data-call-sid='{names.ticketed}']")
        # A card: time, caller, category, ticket — each on screen, one under the other.
        for text in ("27.11.2025 09:00", "8 (800) 250-60-77", "Новая проблема", "№1001"):
            expect(card).to_contain_text(text)
        box = card.bounding_box()
        assert box is not None and box["width"] <= PHONE["width"]
        time_box = card.locator("td.time").bounding_box()
        ticket_box = card.locator("td[data-label='Заявка']").bounding_box()
        assert time_box and ticket_box and ticket_box["y"] > time_box["y"]
        problem = page.locator("tr.problem", has_text="Срочный: никто не принял")
        expect(problem.locator(".badge")).to_be_visible()
        screenshot(page, "log-390")

        page.click("#on-duty-link")
        expect(page.locator("#on-duty")).to_be_in_viewport()
        expect(page.locator("#on-duty")).to_contain_text("Дежурство")

        page.goto(f"{live_url}/console/calls/{names.urgent_missed}")
        expect(page.locator("#legs")).to_contain_text("Смирнова Елена")
        screenshot(page, "call-390")

        page.goto(f"{live_url}/console/dashboard?from=2025-11-01&to=2025-11-30")
        for chart in page.locator("svg.chart").all():
            chart_box = chart.bounding_box()
            assert chart_box is not None and chart_box["x"] + chart_box["width"] <= 390
        screenshot(page, "dashboard-390")

        page.click("#menu-button")
        page.locator("#menu").get_by_text("Справочник").click()
        expect(page.locator("h1")).to_have_text("Справочник клиентов")
        page.locator("#logout").click()
        expect(page.locator("h1")).to_have_text("Вход в консоль руководителя")
    finally:
        ctx.close()

    ctx, page = new_page(browser, DESK)
    try:
        log_in(page, live_url, "head")
        # On a desk: the table with its header, the filters open, the menu in the bar.
        expect(page.locator("#call-log thead")).to_be_visible()
        expect(page.locator("#filters")).to_be_visible()
        expect(page.locator("#menu")).to_be_visible()
        expect(page.locator("#menu-button")).to_be_hidden()
        expect(page.locator("#filters-button")).to_be_hidden()
        expect(page.locator("#on-duty-link")).to_be_hidden()
        header = page.locator("#call-log thead th")
        expect(header).to_have_count(9)
        expect(header.nth(5)).to_have_text("Первый этап до")
        expect(header.nth(6)).to_have_text("Решение до")
        assert overflow(page) <= 0, "the desk log is wider than 1440 px"
        row = page.locator(f"tr[data-call-sid='{names.ticketed}']")
        cells = row.locator("td")
        first, last = cells.first.bounding_box(), cells.last.bounding_box()
        assert first and last and abs(first["y"] - last["y"]) < 1, "a desk row is one line"
        screenshot(page, "log-1440")
        page.goto(f"{live_url}/console/calls/{names.urgent_missed}")
        screenshot(page, "call-1440")
    finally:
        ctx.close()


def test_the_readmes_screenshots_are_the_ones_scripts_screenshots_py_makes() -> None:
    """Each of the README's pictures exists, is one the script regenerates, and no other
    picture lies in docs/screenshots/."""
    readme = (ROOT / "README.md").read_text("utf-8")
    shown = set(re.findall(r"\(docs/screenshots/([\w-]+)\.png\)", readme))
    script = (ROOT / "scripts" / "screenshots.py").read_text("utf-8")
    made = set(re.findall(r'^    "([\w-]+)",  # ', script, flags=re.MULTILINE))
    assert (
        shown
        == made
        == {f"{page}-{w}" for page in ("log", "call", "callbacks") for w in (1440, 390)}
    )
    assert {path.stem for path in DOC_SCREENSHOTS.glob("*.png")} == shown
