"""An SMS whose sending process died between the claim and writing Twilio's answer: after
SMS_UNSETTLED_MINUTES the sweep asks Twilio. Found in Twilio's message list — `sent`, with
its SID, not sent again; not there — sent again, once; Twilio away — asked again later;
Twilio not to be asked — `unknown`, never sent again. (The database going away in that
window is tests/test_faults_sms.py: there the outcome is written once it is back.)

Twilio is Prism serving Twilio's own OpenAPI description, through the real adapter, behind
the chaos stack's proxy (`scripts/stack.py`): it counts every request and, with
`MessageMemory`, gives each created Message its own SID and answers the Message list with
the messages created — what Twilio does and stateless Prism cannot
(https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources:
the list filtered by `To`; each Message is created when Twilio answers the create request,
https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from callcenter.db.models import SmsMessage
from callcenter.errors import ConfigurationError, TelephonyUnavailable
from callcenter.jobs import tasks
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.telephony.client import OfflineTelephony, TwilioTelephony, build_telephony
from callcenter.tickets.delivery import Applied, DeliveryReport, record_delivery
from callcenter.tickets.notifications import SmsOutcome, send_once, settle
from callcenter.tickets.unsettled_sms import reconcile_unsettled
from tests.conftest import ROOT, TEST_ACCOUNT_SID, MutableClock

sys.path.insert(0, str(ROOT / "scripts"))
from stack import MessageMemory, Proxy  # noqa: E402 - the stack's Twilio stand-in

pytestmark = [pytest.mark.both_databases, pytest.mark.prism]

MESSAGES_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Messages.json"
TO = "+79161234567"
KEY, BODY = "ticket-request:1:caller", "Заявка №1042 зарегистрирована."


class ProcessDied(BaseException):
    """What a `kill -9` looks like from inside: nothing after it runs (not an Exception,
    so no handler of the job writes anything)."""


@dataclass
class DiesWhileAsking:
    """The real adapter, but the process dies before Twilio's answer reaches it
    (`reached`: Twilio got the request first; else the process died before sending it)."""

    telephony: TwilioTelephony
    reached: bool

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        if self.reached:
            self.telephony.send_sms(to, body, status_callback=status_callback)
        raise ProcessDied


@dataclass
class Twilio:
    telephony: TwilioTelephony
    proxy: Proxy
    memory: MessageMemory

    def creates(self) -> list[dict[str, list[str]]]:
        """The SMS create requests Twilio (Prism) accepted, as their forms."""
        with self.proxy.lock:
            seen = list(self.proxy.seen)
        return [
            parse_qs(body.decode())
            for method, path, body, status in seen
            if method == "POST" and path == MESSAGES_PATH and status == 201
        ]

    def lookups(self) -> list[dict[str, list[str]]]:
        """The Message list requests, as their query strings."""
        with self.proxy.lock:
            seen = list(self.proxy.seen)
        return [
            parse_qs(urlsplit(path).query)
            for method, path, _body, status in seen
            if method == "GET" and urlsplit(path).path == MESSAGES_PATH and status == 200
        ]


@pytest.fixture
def twilio(services: Services, prism_url: str) -> Iterator[Twilio]:
    memory = MessageMemory()
    proxy = Proxy(prism_url, rewrite=memory)
    settings = Settings(
        database_url=services.settings.database_url,
        twilio_account_sid=TEST_ACCOUNT_SID,
        twilio_auth_token="test-token",
        twilio_api_base_url=proxy.url,
    )
    telephony = build_telephony(settings, on_exchange=None)
    assert isinstance(telephony, TwilioTelephony)
    yield Twilio(telephony, proxy, memory)
    telephony.close()
    proxy.close()


@pytest.fixture
def now(clock: MutableClock) -> MutableClock:
    """The service's clock at the real time: Twilio (the proxy) stamps the messages it
    creates with its own clock, as Twilio does."""
    clock.now = datetime.now(UTC)
    return clock


def send(services: Services, clock: MutableClock, adapter: Any) -> SmsOutcome:
    return send_once(
        services.sessions, adapter, key=KEY, to=TO, body=BODY, now=clock(), status_callback=None
    )


def dies_mid_send(
    services: Services, clock: MutableClock, twilio: Twilio, *, reached: bool
) -> None:
    """The job claims the SMS and its process dies asking Twilio (`DiesWhileAsking`)."""
    with pytest.raises(ProcessDied):
        send(services, clock, DiesWhileAsking(twilio.telephony, reached=reached))


def took_it_and_died(services: Services, clock: MutableClock, twilio: Twilio) -> str:
    """`dies_mid_send` after Twilio took the message: the SID Twilio gave it."""
    dies_mid_send(services, clock, twilio, reached=True)
    sid: str = twilio.memory.created[0]["sid"]
    return sid


def sweep(services: Services, telephony: Any) -> None:
    """What every outbox sweep does (`tasks.reconcile_sms`), with this test's Twilio."""
    services.telephony = telephony
    tasks.reconcile_sms(services)


def row(services: Services) -> SmsMessage:
    with services.sessions() as session:
        return session.scalars(select(SmsMessage).where(SmsMessage.key == KEY)).one()


def stale(services: Services, clock: MutableClock) -> None:
    """Just past SMS_UNSETTLED_MINUTES since the claim."""
    clock.now += timedelta(minutes=services.settings.sms_unsettled_minutes, seconds=1)


def settled_for_good(services: Services, clock: MutableClock, twilio: Twilio, status: str) -> None:
    """Neither a later sweep nor the next run of the job asks Twilio anything again."""
    asked = (len(twilio.lookups()), len(twilio.creates()))
    stale(services, clock)
    sweep(services, twilio.telephony)
    outcome = send(services, clock, twilio.telephony)
    assert (outcome.status, outcome.fresh) == (status, False)
    assert (len(twilio.lookups()), len(twilio.creates())) == asked


def test_an_sms_twilio_took_before_its_process_died_is_found_and_not_sent_again(
    services: Services, now: MutableClock, twilio: Twilio, caplog: pytest.LogCaptureFixture
) -> None:
    dies_mid_send(services, now, twilio, reached=True)
    assert len(twilio.creates()) == 1  # Twilio took it; nobody wrote that down
    assert (row(services).status, row(services).twilio_sid) == ("sending", None)

    # Within SMS_UNSETTLED_MINUTES the sweep leaves it alone (a job may still be writing).
    now.now += timedelta(minutes=services.settings.sms_unsettled_minutes, seconds=-1)
    sweep(services, twilio.telephony)
    assert row(services).status == "sending" and twilio.lookups() == []

    now.now += timedelta(seconds=2)
    sweep(services, twilio.telephony)
    settled = row(services)
    assert [q["To"] for q in twilio.lookups()] == [[TO]]
    assert settled.status == "sent"
    assert settled.twilio_sid == twilio.memory.created[0]["sid"]
    assert len(twilio.creates()) == 1
    logged = [r.getMessage() for r in caplog.records if KEY in r.getMessage()]
    assert any("found in Twilio's message list" in m for m in logged)
    assert not any(TO in m for m in logged)  # numbers are masked in logs
    settled_for_good(services, now, twilio, "sent")


def test_an_sms_that_never_reached_twilio_is_sent_again_once(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    dies_mid_send(services, now, twilio, reached=False)
    assert twilio.creates() == []
    stale(services, now)
    sweep(services, twilio.telephony)

    creates = twilio.creates()
    assert [(c["To"], c["Body"]) for c in creates] == [([TO], [BODY])]
    settled = row(services)
    assert settled.status == "sent"
    assert settled.twilio_sid == twilio.memory.created[0]["sid"]
    assert settled.reason is not None and "sent again" in settled.reason
    settled_for_good(services, now, twilio, "sent")


def test_an_identical_text_sent_earlier_for_another_message_is_not_taken_for_it(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    # The same text to the same number, sent and recorded under another key just before.
    earlier = send_once(
        services.sessions,
        twilio.telephony,
        key="kb-link:7",
        to=TO,
        body=BODY,
        now=now(),
        status_callback=None,
    )
    assert earlier.status == "sent"
    dies_mid_send(services, now, twilio, reached=False)
    stale(services, now)
    sweep(services, twilio.telephony)

    assert len(twilio.creates()) == 2  # sent again: the listed one is kb-link:7's
    settled = row(services)
    assert settled.status == "sent" and settled.twilio_sid != earlier.sid


def test_while_twilio_is_away_the_sms_waits_and_is_settled_when_it_is_back(
    services: Services, now: MutableClock, twilio: Twilio, caplog: pytest.LogCaptureFixture
) -> None:
    dies_mid_send(services, now, twilio, reached=True)
    stale(services, now)
    away = TwilioTelephony(
        TEST_ACCOUNT_SID, "test-token", api_base_url="http://127.0.0.1:9", timeout=2
    )
    try:
        sweep(services, away)
    finally:
        away.close()
    assert row(services).status == "sending"
    assert any("the next sweep asks again" in r.getMessage() for r in caplog.records)

    sweep(services, twilio.telephony)
    assert row(services).status == "sent" and len(twilio.creates()) == 1


def test_without_a_twilio_account_to_ask_it_becomes_unknown_and_is_never_sent_again(
    services: Services, now: MutableClock, twilio: Twilio, caplog: pytest.LogCaptureFixture
) -> None:
    dies_mid_send(services, now, twilio, reached=True)
    stale(services, now)
    sweep(services, OfflineTelephony())

    unknown = row(services)
    assert (unknown.status, unknown.twilio_sid) == ("unknown", None)
    assert unknown.reason is not None and "not sent again" in unknown.reason
    errors = [r for r in caplog.records if KEY in r.getMessage() and r.levelname == "ERROR"]
    assert len(errors) == 1
    settled_for_good(services, now, twilio, "unknown")
    assert twilio.lookups() == []


def test_a_status_callback_that_named_the_message_settles_it_without_asking(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    dies_mid_send(services, now, twilio, reached=True)
    # Twilio's status callback arrives, naming the row by the `m` of its StatusCallback.
    sid = twilio.memory.created[0]["sid"]
    report = DeliveryReport(sid, "delivered", None, row(services).id)
    assert record_delivery(services.sessions, report, now=now()) == Applied.APPLIED
    stale(services, now)
    sweep(services, twilio.telephony)
    assert (row(services).status, row(services).twilio_sid) == ("sent", sid)
    assert twilio.lookups() == [] and len(twilio.creates()) == 1


def test_an_outcome_is_written_only_as_the_claim_it_belongs_to(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    dies_mid_send(services, now, twilio, reached=False)
    with pytest.raises(ValueError, match="claim"):
        SmsOutcome(KEY, "sent", None, "SM" + "8" * 32, fresh=True)
    claimed = row(services).created_at
    with services.sessions() as session, session.begin():
        earlier = claimed - timedelta(seconds=1)
        other_claim = SmsOutcome(KEY, "sent", None, "SM" + "8" * 32, fresh=True, claimed_at=earlier)
        assert settle(session, other_claim) is False
    assert (row(services).status, row(services).twilio_sid) == ("sending", None)


def test_unsettled_minutes_must_outlast_the_settle_write() -> None:
    assert Settings.from_env({"SMS_SETTLE_SECONDS": "30"}).sms_settle_seconds == 30
    assert Settings.from_env({"SMS_UNSETTLED_MINUTES": "5"}).sms_unsettled_minutes == 5
    with pytest.raises(ConfigurationError, match="SMS_UNSETTLED_MINUTES"):
        Settings.from_env({"SMS_UNSETTLED_MINUTES": "1", "SMS_SETTLE_SECONDS": "90"})
    with pytest.raises(ConfigurationError, match="SMS_SETTLE_SECONDS"):
        Settings.from_env({"SMS_SETTLE_SECONDS": "0"})


def listed(
    sid: str,
    *,
    body: str = BODY,
    to: str = TO,
    at: datetime,
    sent_at: datetime | None = None,
    direction: str = "outbound-api",
) -> dict[str, Any]:
    """A message in the account's history, as Twilio's list shows one (sent when created,
    unless `sent_at` says otherwise)."""
    return {
        "sid": sid,
        "to": to,
        "body": body,
        "direction": direction,
        "date_created": format_datetime(at, usegmt=True),
        "date_sent": format_datetime(sent_at or at, usegmt=True),
    }


def test_only_this_text_outbound_to_this_number_since_its_claim_is_taken_for_it(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    claimed = now()
    dies_mid_send(services, now, twilio, reached=False)
    sweep_at = claimed + timedelta(minutes=services.settings.sms_unsettled_minutes, seconds=1)
    # What the account's history holds besides: none of these is the message.
    twilio.memory.created += [
        listed("SM" + "1" * 32, body="Заявка №1043 зарегистрирована.", at=claimed),
        listed("SM" + "2" * 32, at=claimed - timedelta(hours=1)),  # the same text, long before
        listed("SM" + "3" * 32, at=sweep_at + timedelta(minutes=5)),  # after the sweep looked
        listed("SM" + "4" * 32, direction="inbound", at=claimed),
        listed("SM" + "5" * 32, to="+79160000000", at=claimed),
    ]
    stale(services, now)
    sweep(services, twilio.telephony)
    assert len(twilio.creates()) == 1  # sent again
    assert row(services).twilio_sid == twilio.memory.created[-1]["sid"]


def test_a_message_a_job_sent_minutes_after_its_claim_is_found_not_sent_again(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    # A job claims with the time it started (e.g. a chain alert's run) and may reach the
    # send minutes later; its process died before writing Twilio's answer.
    claimed = now()
    dies_mid_send(services, now, twilio, reached=False)
    sent_late = listed("SM" + "6" * 32, at=claimed + timedelta(minutes=3))
    twilio.memory.created.append(sent_late)
    stale(services, now)
    sweep(services, twilio.telephony)
    assert (row(services).status, row(services).twilio_sid) == ("sent", sent_late["sid"])
    assert twilio.creates() == []


def test_a_message_with_this_text_but_no_creation_time_makes_it_unknown(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    dies_mid_send(services, now, twilio, reached=False)
    undated = listed("SM" + "7" * 32, at=now())
    undated["date_created"] = None
    twilio.memory.created.append(undated)
    stale(services, now)
    sweep(services, twilio.telephony)
    unknown = row(services)
    assert unknown.status == "unknown" and "no creation time" in (unknown.reason or "")
    assert twilio.creates() == []


def test_one_row_the_sweep_cannot_settle_does_not_keep_the_others_waiting(
    services: Services, now: MutableClock, twilio: Twilio, caplog: pytest.LogCaptureFixture
) -> None:
    dies_mid_send(services, now, twilio, reached=True)

    @dataclass
    class SurprisedByTheFirst:
        """Twilio's adapter, but reading the first row's list raises what nobody expected."""

        def find_sms(self, to: str, body: str, **window: datetime) -> list[str]:
            if to == TO:
                raise RuntimeError("unexpected answer")
            return twilio.telephony.find_sms(to, body, **window)

        def close(self) -> None:
            """The fixture closes the adapter it wraps."""

    # A second row left sending, after the first: its process died, Twilio took it.
    second = "ticket-request:3:caller"
    with pytest.raises(ProcessDied):
        send_once(
            services.sessions,
            DiesWhileAsking(twilio.telephony, reached=True),
            key=second,
            to="+79160000002",
            body=BODY,
            now=now(),
            status_callback=None,
        )
    stale(services, now)
    sweep(services, SurprisedByTheFirst())
    assert row(services).status == "sending"  # left for the next sweep
    assert any("not reconciled" in r.getMessage() for r in caplog.records)
    with services.sessions() as session:
        settled = session.scalars(select(SmsMessage).where(SmsMessage.key == second)).one()
    assert (settled.status, settled.twilio_sid) == ("sent", twilio.memory.created[-1]["sid"])


def test_a_message_past_the_first_page_of_the_list_is_found(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    sid = took_it_and_died(services, now, twilio)
    later = now() + timedelta(seconds=30)
    twilio.memory.created += [
        listed(f"SM{n:032x}", body=f"Ссылка {n}", at=later) for n in range(150)
    ]
    stale(services, now)
    sweep(services, twilio.telephony)
    assert (row(services).status, row(services).twilio_sid) == ("sent", sid)
    assert [q.get("Page") for q in twilio.lookups()] == [None, ["1"]]
    assert len(twilio.creates()) == 1


def test_messages_created_long_before_but_sent_after_it_do_not_hide_it(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    # Twilio lists by the time sent: a page of scheduled messages, created an hour before
    # the claim and sent after ours, comes first.
    sid = took_it_and_died(services, now, twilio)
    hour_ago, later = now() - timedelta(hours=1), now() + timedelta(seconds=30)
    twilio.memory.created += [
        listed(f"SM{n:032x}", body=f"Напоминание {n}", at=hour_ago, sent_at=later)
        for n in range(100)
    ]
    stale(services, now)
    sweep(services, twilio.telephony)
    assert (row(services).status, row(services).twilio_sid) == ("sent", sid)
    assert len(twilio.lookups()) == 2 and len(twilio.creates()) == 1


def test_too_many_messages_to_read_through_make_it_unknown_not_sent_again(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    dies_mid_send(services, now, twilio, reached=False)
    later = now() + timedelta(seconds=30)
    twilio.memory.created += [
        listed(f"SM{n:032x}", body=f"Ссылка {n}", at=later) for n in range(1001)
    ]
    stale(services, now)
    sweep(services, twilio.telephony)
    unknown = row(services)
    assert unknown.status == "unknown" and "not read through" in (unknown.reason or "")
    assert twilio.creates() == [] and len(twilio.lookups()) == 10


def test_a_job_that_outlives_the_sweep_does_not_undo_what_the_sweep_found(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    # The job's request fails (Twilio unreachable: a `retry` it writes at its end); before
    # that end, the sweep settles the message by sending it again.
    @dataclass
    class SlowAndUnreachable:
        def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
            stale(services, now)
            sweep(services, twilio.telephony)
            raise TelephonyUnavailable("could not reach Twilio")

    outcome = send(services, now, SlowAndUnreachable())
    assert outcome.status == "retry"
    settled = row(services)
    assert (settled.status, settled.twilio_sid) == ("sent", twilio.memory.created[0]["sid"])
    assert len(twilio.creates()) == 1
    # The job's next run finds it sent: no third request.
    assert send(services, now, twilio.telephony).status == "sent"
    assert len(twilio.creates()) == 1


def test_on_a_set_clock_nothing_is_looked_up_and_it_becomes_unknown(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    dies_mid_send(services, now, twilio, reached=True)
    stale(services, now)
    reconcile_unsettled(
        services.sessions,
        twilio.telephony,
        now=now(),
        older_than=timedelta(minutes=services.settings.sms_unsettled_minutes),
        status_callback=None,
        real_clock=False,
    )
    assert row(services).status == "unknown" and "CALLCENTER_CLOCK" in (row(services).reason or "")
    assert twilio.lookups() == []


@dataclass
class CallbackMeanwhile:
    """Twilio's adapter, but the status callback naming the message (`sid`) lands while
    the sweep looks it up; `listed`: whether Twilio's list shows the message by then."""

    services: Services
    now: MutableClock
    twilio: Twilio
    sid: str
    listed: bool

    def find_sms(self, to: str, body: str, **window: datetime) -> list[str]:
        report = DeliveryReport(self.sid, "sent", None, row(self.services).id)
        assert record_delivery(self.services.sessions, report, now=self.now()) == Applied.APPLIED
        return self.twilio.telephony.find_sms(to, body, **window) if self.listed else []

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        return self.twilio.telephony.send_sms(to, body, status_callback=status_callback)

    def close(self) -> None:
        """The fixture closes the adapter it wraps."""


def test_a_status_callback_arriving_while_the_sweep_asks_twilio_is_not_taken_for_absence(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    sid = took_it_and_died(services, now, twilio)
    stale(services, now)
    sweep(services, CallbackMeanwhile(services, now, twilio, sid, listed=True))
    assert (row(services).status, row(services).twilio_sid) == ("sent", sid)
    assert len(twilio.creates()) == 1


def test_a_status_callback_landing_after_an_empty_lookup_stops_the_send_again(
    services: Services, now: MutableClock, twilio: Twilio
) -> None:
    # Twilio's list did not show it yet (an account's list may lag behind its callbacks),
    # but the status callback naming it lands before the sweep sends it again.
    sid = took_it_and_died(services, now, twilio)
    stale(services, now)
    sweep(services, CallbackMeanwhile(services, now, twilio, sid, listed=False))
    assert len(twilio.creates()) == 1  # not sent again
    sweep(services, twilio.telephony)  # the next round records what the callback said
    assert (row(services).status, row(services).twilio_sid) == ("sent", sid)
    assert len(twilio.creates()) == 1
