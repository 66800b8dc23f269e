"""The live panel in a real browser: a call that comes in while the page is open appears
without a reload, and moves to the last minutes when it ends."""

from __future__ import annotations

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from callcenter.services import Services
from tests.browser.conftest import screenshot
from tests.browser.test_console_browser import log_in
from tests.console_helpers import add_user
from tests.twilio_requests import fixture, new_call_sid, signed_post

pytestmark = pytest.mark.browser


def test_a_new_call_appears_without_a_reload_and_moves_on_when_it_ends(
    services: Services, app: Flask, live_url: str, page: Page
) -> None:
    app.config["CONSOLE_LIVE_POLL_SECONDS"] = 1
    add_user(services, "head", "supervisor")
    log_in(page, live_url)
    page.click("nav >> text=Сейчас")
    expect(page.locator("h1")).to_have_text("Сейчас")
    expect(page.locator("#live-empty")).to_have_text("Сейчас никто не звонит.")
    expect(page.locator("#live-calls tbody tr")).to_have_count(0)
    # A mark that a reload would wipe out.
    page.evaluate("window.stillTheSamePage = true")

    twilio = app.test_client()
    sid = new_call_sid()
    incoming = signed_post(
        twilio,
        "/webhooks/voice/incoming",
        fixture("incoming_call", CallSid=sid, From="+79161234567", To="+78126077741"),
    )
    assert incoming.status_code == 200

    row = page.locator(f'#live-calls tbody tr[data-call-sid="{sid}"]')
    expect(row).to_contain_text("+7 916 123-45-67")
    expect(row).to_contain_text("8 (812) 607-77-41")
    expect(row).to_contain_text("Главное меню")
    expect(page.locator("#live-count")).to_have_text("1")
    expect(page.locator("#live-empty")).to_be_hidden()
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "live-call-in-progress")

    # The caller hangs up at the menu: Twilio's final status callback.
    ended = signed_post(
        twilio,
        "/webhooks/voice/status",
        fixture("status_completed", CallSid=sid, From="+79161234567", To="+78126077741"),
    )
    assert ended.status_code in (200, 204)

    expect(page.locator("#live-calls tbody tr")).to_have_count(0)
    recent = page.locator(f'#recent-calls tbody tr[data-call-sid="{sid}"]')
    expect(recent).to_contain_text("Сброшен")
    expect(page.locator("#recent-count")).to_have_text("1")
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "live-call-ended")
