"""The call-back queue in Chromium, on a desk (1440 px) and on the on-duty specialist's
phone (390 px): no sideways scrolling, the oldest client first, «Беру» then «Перезвонить».
Screenshots go to test-artifacts/screenshots/; scripts/screenshots.py copies them to
docs/screenshots/ for the README."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from callcenter.db import transaction
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from tests.browser.conftest import screenshot
from tests.conftest import ROOT
from tests.console_helpers import PASSWORD, T0, add_call, add_user

pytestmark = pytest.mark.browser

QUEUE_OVERFLOW = """() => [...document.querySelectorAll('main, main *')]
    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
    .map(e => e.tagName + '.' + e.className)"""


def _queue(services: Services) -> None:
    with transaction(services.sessions) as session:
        # A working roster: the page as the README shows it, without the empty-roster alarm.
        import_roster(session, (ROOT / "tests" / "fixtures" / "roster" / "office.yaml").read_text())
        add_call(
            session,
            "CA" + "d1" * 16,
            T0 - timedelta(minutes=75),
            category="consultation",
            topic="consultation",
            routing_outcome="voicemail",
            ticket_status="failed",
            caller_said_name="Мария Кузнецова, ООО «Северный транспорт и логистика»",
        )
        add_call(
            session,
            "CA" + "d2" * 16,
            T0 - timedelta(minutes=20),
            category="incident",
            outcome="abandoned",
            caller_e164="+79031112233",
        )
        add_call(
            session,
            "CA" + "d3" * 16,
            T0 - timedelta(minutes=5),
            category="stolen",
            topic="stolen_vehicle",
            outcome="abandoned",
            caller_e164="+79261234500",
        )


@pytest.mark.parametrize("width", [1440, 390])
def test_the_queue_fits_the_screen_and_is_worked_from_it(
    services: Services, live_url: str, page: Page, width: int
) -> None:
    _queue(services)
    add_user(services, "smirnova", "specialist")
    page.set_viewport_size({"width": width, "height": 900 if width > 500 else 844})
    page.goto(f"{live_url}/console/login?next=/console/callbacks")
    page.fill("input[name=name]", "smirnova")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Перезвоны")

    items = page.locator("#callback-queue li.callback")
    expect(items).to_have_count(3)
    expect(page.locator("#callback-summary")).to_contain_text("Ждут перезвона: 3")
    # Oldest first; the overdue ones stand out.
    expect(items.first).to_contain_text("+7 916 123-45-67")
    expect(items.first).to_contain_text("Ошибка создания заявки")
    expect(items.first).to_contain_text("Просрочен")
    expect(items.nth(2)).to_contain_text("Срочный: прерван до обзвона")

    items.first.get_by_role("button", name="Беру").click()
    expect(page.locator(".flash-ok")).to_contain_text("Перезвон ваш")
    expect(items.first).to_contain_text("Взят · smirnova")
    expect(items.first.get_by_role("button", name="Перезвонить")).to_be_visible()
    expect(items.first.get_by_role("button", name="Записать результат")).to_be_visible()

    # Nothing of the queue reaches past the screen's edge. (The top bar's navigation is
    # the layout's own; its phone version is checked with every page's.)
    sticking_out = page.evaluate(QUEUE_OVERFLOW)
    assert sticking_out == [], f"at {width} px, past the edge: {sticking_out}"
    screenshot(page, f"callbacks-{width}")
