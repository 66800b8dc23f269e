"""An SMS whose sending process died between the claim and writing Twilio's answer: the
sweep marks it `unknown` after SMS_UNSETTLED_MINUTES — never sent again, never called
sent. (The database going away in that window is tests/test_faults_sms.py: there the
outcome is written once it is back.)

Twilio is Prism serving Twilio's own OpenAPI description, through the real adapter; every
request it gets is counted. A message is found again only by its SID, which comes with
Twilio's answer to the create
(https://www.twilio.com/docs/messaging/api/message-resource#fetch-a-message-resource):
a process that died before that answer has nothing to look it up by.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from callcenter.db.models import SmsMessage
from callcenter.errors import ConfigurationError
from callcenter.jobs import tasks
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.telephony.client import TwilioExchange, TwilioTelephony, build_telephony
from callcenter.tickets.notifications import SmsOutcome, send_once
from tests.conftest import TEST_ACCOUNT_SID, MutableClock

pytestmark = pytest.mark.both_databases

MESSAGES_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Messages.json"
TO = "+79161234567"


class ProcessDied(BaseException):
    """What a `kill -9` looks like from inside: nothing after it runs (not an Exception,
    so no handler of the job writes anything)."""


@dataclass
class DiesWhileAsking:
    """The real adapter, but the process dies before Twilio's answer reaches it."""

    telephony: TwilioTelephony

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        self.telephony.send_sms(to, body, status_callback=status_callback)
        raise ProcessDied


@pytest.fixture
def twilio(
    services: Services, prism_url: str
) -> Iterator[tuple[TwilioTelephony, list[TwilioExchange]]]:
    exchanges: list[TwilioExchange] = []
    settings = Settings(
        database_url=services.settings.database_url,
        twilio_account_sid=TEST_ACCOUNT_SID,
        twilio_auth_token="test-token",
        twilio_api_base_url=prism_url,
    )
    telephony = build_telephony(settings, on_exchange=exchanges.append)
    assert isinstance(telephony, TwilioTelephony)
    yield telephony, exchanges
    telephony.close()


def sms_requests(exchanges: list[TwilioExchange]) -> int:
    return sum(1 for e in exchanges if e.path == MESSAGES_PATH and e.status == 201)


def row(services: Services, key: str) -> SmsMessage:
    with services.sessions() as session:
        return session.scalars(select(SmsMessage).where(SmsMessage.key == key)).one()


def test_an_sms_whose_process_died_mid_request_becomes_unknown_and_is_never_sent_again(
    services: Services,
    clock: MutableClock,
    twilio: tuple[TwilioTelephony, list[TwilioExchange]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    telephony, exchanges = twilio
    key, body = "ticket-request:1:caller", "Заявка №1042 зарегистрирована."

    def send(adapter: Any) -> SmsOutcome:
        return send_once(
            services.sessions, adapter, key=key, to=TO, body=body, now=clock(), status_callback=None
        )

    def sweep() -> None:
        tasks.reconcile_sms(services)  # what every outbox sweep does first

    with pytest.raises(ProcessDied):
        send(DiesWhileAsking(telephony))
    assert sms_requests(exchanges) == 1  # Twilio took it; nobody wrote that down
    assert (row(services, key).status, row(services, key).twilio_sid) == ("sending", None)

    # Within SMS_UNSETTLED_MINUTES the sweep leaves it alone (a job may still be writing).
    clock.now += timedelta(minutes=services.settings.sms_unsettled_minutes) - timedelta(seconds=1)
    sweep()
    assert row(services, key).status == "sending"

    clock.now += timedelta(seconds=2)
    sweep()
    stale = row(services, key)
    assert (stale.status, stale.twilio_sid) == ("unknown", None)
    assert stale.reason is not None and "not sent again" in stale.reason
    logged = [r for r in caplog.records if key in r.getMessage() and r.levelname == "ERROR"]
    assert len(logged) == 1 and "+79161234567" not in logged[0].getMessage()
    sweep()  # once: it is not `sending` any more
    assert [r for r in caplog.records if key in r.getMessage() and r.levelname == "ERROR"] == logged

    # The next run of the job finds it settled: Twilio is not asked again.
    outcome = send(telephony)
    assert outcome.status == "unknown" and not outcome.fresh
    assert sms_requests(exchanges) == 1


def test_unsettled_minutes_must_outlast_the_settle_write() -> None:
    assert Settings.from_env({"SMS_SETTLE_SECONDS": "30"}).sms_settle_seconds == 30
    assert Settings.from_env({"SMS_UNSETTLED_MINUTES": "5"}).sms_unsettled_minutes == 5
    with pytest.raises(ConfigurationError, match="SMS_UNSETTLED_MINUTES"):
        Settings.from_env({"SMS_UNSETTLED_MINUTES": "1", "SMS_SETTLE_SECONDS": "90"})
    with pytest.raises(ConfigurationError, match="SMS_SETTLE_SECONDS"):
        Settings.from_env({"SMS_SETTLE_SECONDS": "0"})
