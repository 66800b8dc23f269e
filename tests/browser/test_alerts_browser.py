"""«Кто оповещён» end to end: an urgent call nobody takes, played by the simulator over
real HTTP, its SMS sent through the real `twilio` client to Prism (Twilio's OpenAPI
description), then Twilio's status callbacks posted as Twilio posts them — late and out
of order (https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks)
— to the StatusCallback each SMS was sent with. The call page, at a desk's 1440 px and a
phone's 390 px, and `/api/calls/<sid>` show who was rung and texted and what became of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from callcenter.access.tokens import create_token
from callcenter.clock import fixed_clock
from callcenter.db import transaction
from callcenter.db.models import Call, SmsMessage
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.simulator.script import CallScript, parse_answer_tokens
from callcenter.simulator.twilio import HttpCallLog, Simulator
from callcenter.telephony.client import TwilioExchange, TwilioTelephony
from tests.browser.conftest import screenshot
from tests.browser.test_console_phone import DESK, PHONE, log_in, new_page, overflow
from tests.conftest import (
    DEFAULT_NOW,
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_PUBLIC_BASE,
    MutableClock,
)
from tests.console_helpers import add_user
from tests.twilio_requests import signed_http_post

pytestmark = [pytest.mark.browser, pytest.mark.prism]

CALLER = "+79161234567"
IVANOV, ORLOVA_DESK, SMIRNOVA = "+79123456701", "+78126077750", "+79123456709"
# Orlova has only a desk phone: the roster gives her no number to text.
ROSTER = """
staff:
  - key: ivanov
    name: Иванов Иван
    phones: ["+7 912 345-67-01"]
  - key: orlova
    name: Орлова Мария
    phones: ["+7 812 607-77-50"]
  - key: smirnova
    name: Смирнова Елена
    role: head
    phones: ["+7 912 345-67-09"]
shifts:
  - staff: ivanov
    days: working_days
    hours: business
    order: 1
  - staff: orlova
    days: working_days
    hours: business
    order: 2
"""
CHAIN_ALERT = "SKAI ТП: срочный звонок не принят."


@pytest.fixture
def services(settings: Settings, clock: MutableClock, prism_url: str) -> Iterator[Services]:
    """The console's services, with SMS through the real adapter to Prism."""
    # A loaded machine may take longer than the 8 s a caller waits for the number.
    svc = Services.from_settings(
        settings.with_(twilio_api_base_url=prism_url, ticket_wait_seconds=30), clock=clock
    )
    yield svc
    svc.close()


def test_the_call_page_says_who_was_rung_and_texted_and_what_became_of_it(
    services: Services, live_url: str, browser: Browser, prism_url: str, run_jobs_at_once: Any
) -> None:
    exchanges: list[TwilioExchange] = []
    services.__dict__["telephony"] = TwilioTelephony(
        TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, prism_url, on_exchange=exchanges.append
    )
    run_jobs_at_once(services)
    with transaction(services.sessions) as session:
        import_roster(session, ROSTER)
        token = create_token(session, "alerts-test", now=DEFAULT_NOW).secret
    add_user(services, "head", "supervisor")

    # 1. A critical failure («3», «#»: no ticket yet); Ivanov does not pick up, Orlova's
    #    desk phone is busy, the head's phone cannot be reached; the caller leaves a message.
    simulator = Simulator(
        live_url, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE, clock=fixed_clock(DEFAULT_NOW)
    )
    api = HttpCallLog(live_url, token)
    played = simulator.run(
        CallScript(
            from_number=CALLER,
            answers=parse_answer_tokens(["--press", "3", "#"]),
            dial_results=("no-answer", "busy", "failed"),
        ),
        call_log=api,
    )
    assert played.errors == [], played.errors
    sid = played.call_sid

    # 2. The chain alerts are rows of the call: two went to Twilio (Prism), each with its
    #    StatusCallback; Orlova's is recorded as not sent, with the reason.
    with services.sessions() as session:
        call_id = session.scalars(select(Call.id).where(Call.call_sid == sid)).one()
        chain = session.scalars(
            select(SmsMessage)
            .where(SmsMessage.key.startswith(f"chain-alert:{sid}:"))
            .order_by(SmsMessage.id)
        ).all()
        assert [(m.recipient, m.to, m.status, m.call_id) for m in chain] == [
            ("Иванов Иван", IVANOV, "sent", call_id),
            ("Орлова Мария", None, "skipped", call_id),
            ("Смирнова Елена", SMIRNOVA, "sent", call_id),
        ]
        ids = {m.to: m.id for m in chain}
        message_sid = chain[0].twilio_sid
        assert message_sid is not None
        # Every SMS about the call (the caller's ticket number, the on-duty alerts) is linked.
        unlinked = session.scalars(select(SmsMessage.key).where(SmsMessage.call_id.is_(None))).all()
        assert unlinked == []
    callbacks = {
        e.form["To"]: e.form["StatusCallback"]
        for e in exchanges
        if e.form.get("Body", "").startswith(CHAIN_ALERT) and e.status == 201
    }
    status_path = f"{TEST_PUBLIC_BASE}/webhooks/sms/status?m="
    assert callbacks == {
        IVANOV: f"{status_path}{ids[IVANOV]}",
        SMIRNOVA: f"{status_path}{ids[SMIRNOVA]}",
    }

    # 3. Twilio reports: Ivanov's «delivered» before its «sent» (and again); the head's
    #    carrier could not deliver (30003: unreachable destination handset).
    http = requests.Session()

    def report(to: str, status: str, **extra: str) -> int:
        params = {
            "AccountSid": TEST_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "From": services.settings.sms_from,
            "To": to,
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            **extra,
        }
        answer = signed_http_post(
            http, live_url, callbacks[to], params, public_base=TEST_PUBLIC_BASE
        )
        return int(answer.status_code)

    assert [report(IVANOV, s) for s in ("delivered", "sent", "delivered")] == [204, 204, 204]
    assert report(SMIRNOVA, "sent") == 204
    assert report(SMIRNOVA, "undelivered", ErrorCode="30003") == 204

    # 4. The API says the same, in codes and in words.
    call = api.fetch(sid)
    assert call is not None
    assert call["flag_reason"] == (
        "Никто из дежурных не принял срочный звонок. Обзвонены: Иванов Иван, Орлова Мария, "
        "Смирнова Елена."
    )
    assert [(c["who"], c["result_title"]) for c in call["alerts"]["calls"]] == [
        ("Иванов Иван", "нет ответа"),
        ("Орлова Мария", "занято"),
        ("Смирнова Елена", "не дозвонились"),
    ]
    chain_sms = [
        (s["who"], s["delivery"], s["sent"], s["state_title"])
        for s in call["alerts"]["sms"]
        if s["kind"] == "никто не принял срочный звонок"
    ]
    assert chain_sms == [
        ("Иванов Иван", "delivered", True, "доставлено"),
        ("Орлова Мария", None, False, "не отправлено: нет мобильного номера"),
        ("Смирнова Елена", "undelivered", True, "не доставлено (код 30003)"),
    ]
    http.close()

    # 5. The call page, on a desk and on a phone.
    for name, viewport in (("desk", DESK), ("phone", PHONE)):
        ctx, page = new_page(browser, viewport)
        try:
            log_in(page, live_url, "head")
            page.goto(f"{live_url}/console/calls/{sid}")
            alerted = page.locator("#alerted")
            expect(alerted.locator("h2")).to_have_text("Кто оповещён")
            legs = alerted.locator("#legs tbody tr")
            expect(legs).to_have_count(3)
            for row, (who, result) in enumerate(
                (
                    ("Иванов Иван", "нет ответа"),
                    ("Орлова Мария", "занято"),
                    ("Смирнова Елена", "не дозвонились"),
                )
            ):
                expect(legs.nth(row)).to_contain_text(who)
                expect(legs.nth(row).locator("td[data-label='Результат']")).to_have_text(result)
            texts = alerted.locator("#sms tbody tr", has_text="никто не принял срочный звонок")
            expect(texts).to_have_count(3)
            for row, (who, state) in enumerate(
                (
                    ("Иванов Иван", "доставлено"),
                    ("Орлова Мария", "не отправлено: нет мобильного номера"),
                    ("Смирнова Елена", "не доставлено (код 30003)"),
                )
            ):
                expect(texts.nth(row)).to_contain_text(who)
                expect(texts.nth(row).locator(".sms-state")).to_contain_text(state)
            # The caller's ticket number went to Twilio; nothing reported yet: queued.
            caller = alerted.locator("#sms tbody tr", has_text="номер и сроки заявки")
            expect(caller.locator(".sms-state")).to_have_text("в очереди")
            timeline = page.locator("#timeline")
            expect(timeline).to_contain_text(
                "SMS «никто не принял срочный звонок» — Смирнова Елена: не доставлено (код 30003)"
            )
            expect(timeline).not_to_contain_text("отправляется SMS")
            assert overflow(page) <= 0, f"the call page is wider than {viewport['width']} px"
            screenshot(page, f"call-alerted-{name}")
        finally:
            ctx.close()
