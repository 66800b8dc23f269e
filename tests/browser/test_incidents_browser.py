"""Known incidents in a real browser: declared on the incidents page, bannered on every
page while open, closed from the same page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from callcenter.services import Services
from tests.browser.conftest import screenshot
from tests.browser.test_console_browser import log_in
from tests.console_helpers import add_user

pytestmark = pytest.mark.browser


def test_declare_see_the_banner_everywhere_and_close(
    services: Services, live_url: str, page: Page
) -> None:
    add_user(services, "head", "supervisor")
    log_in(page, live_url)
    expect(page.locator("#incident-banner")).to_have_count(0)

    page.click("nav >> text=Сбои")
    expect(page.locator("h1")).to_have_text("Известные сбои")
    form = page.locator("#open-incident")
    form.locator("select[name=product]").select_option("online")
    form.locator("input[name=ticket]").fill("1042")
    form.locator("textarea[name=message]").fill("Не открывается карта")
    form.locator("button[type=submit]").click()

    expect(page.locator(".flash")).to_contain_text("Сбой №1 объявлен")
    expect(page.locator("#incident-1 h2")).to_have_text("Сбой №1 · SKAI-Online · открыт")
    for link in ("Журнал звонков", "Сводка", "График дежурств"):
        page.click(f"nav >> text={link}")
        expect(page.locator("#incident-banner")).to_contain_text(
            "Открыт сбой №1: SKAI-Online, заявка №1042"
        )
    expect(page.locator("#incident-banner")).to_contain_text("Не открывается карта")
    screenshot(page, "20-incident-banner")
    page.click("nav >> text=Сводка")
    expect(page.locator("#dashboard-incidents")).to_contain_text("Сбой №1: SKAI-Online")

    page.click("#incident-banner >> text=Открыть сбои")
    close = page.locator("#incident-1 form").nth(1)
    close.locator("textarea[name=message]").fill("Карта снова работает")
    close.locator("button[type=submit]").click()
    expect(page.locator(".flash")).to_contain_text("Сбой №1 закрыт.")
    expect(page.locator("#incident-1 h2")).to_have_text("Сбой №1 · SKAI-Online · закрыт")
    expect(page.locator("#incident-banner")).to_have_count(0)
    screenshot(page, "21-incident-closed")
