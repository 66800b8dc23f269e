"""A known incident on the phone: announced inside the first <Gather>, joined with 1 (a
phone duplicate on its ticket, one SMS now, no urgent chain), and closed with one
resolution SMS per joined caller — through the real webhooks, the outbox and its jobs, and
the twilio library against Prism."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from click.testing import CliRunner

from callcenter.app import create_app
from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db import transaction
from callcenter.db.models import SmsMessage
from callcenter.incidents import store
from callcenter.ivr import prompts
from callcenter.portal.protocol import TicketDraft
from callcenter.regulation.speech import say_digits
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.telephony.client import TwilioExchange, TwilioTelephony, build_telephony
from tests.conftest import TEST_ACCOUNT_SID
from tests.job_runner import SynchronousJobRunner
from tests.ticket_pipeline import CALLER, LANDLINE, add_contact
from tests.twilio_requests import TwilioCall

pytestmark = pytest.mark.both_databases

MESSAGES_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Messages.json"
SPECIALIST_SMS = "+79123456701"
HEAD_SMS = "+79123456709"
ROSTER = """
staff:
  - key: ivanov
    name: Иванов Иван
    phones: ["+7 912 345-67-01"]
  - key: head
    name: Сидоров Пётр
    role: head
    phones: ["+7 912 345-67-09"]
shifts:
  - staff: ivanov
    days: working_days
    hours: business
    duty: urgent
"""


@pytest.fixture
def exchanges() -> list[TwilioExchange]:
    return []


@pytest.fixture
def hotline(
    make_services: Callable[..., Services],
    prism_url: str,
    exchanges: list[TwilioExchange],
    run_jobs_at_once: Callable[[Services], SynchronousJobRunner],
) -> Iterator[Services]:
    """Services with Twilio at Prism (every request kept in `exchanges`), jobs run at
    once, the example roster and a known caller of «Ромашка»."""
    services = make_services(twilio_api_base_url=prism_url)
    telephony = build_telephony(services.settings, on_exchange=exchanges.append)
    assert isinstance(telephony, TwilioTelephony)
    services.telephony = telephony  # type: ignore[misc]  # the wiring's adapter slot
    run_jobs_at_once(services)
    with transaction(services.sessions) as session:
        import_roster(session, ROSTER)
        add_contact(session, now=services.clock(), phone=CALLER)
    yield services
    telephony.close()


def sms_sent(exchanges: list[TwilioExchange]) -> list[dict[str, str]]:
    sent = [e for e in exchanges if e.path == MESSAGES_PATH and e.status is not None]
    assert all(e.status == 201 for e in sent), sent
    return [e.form for e in sent]


def declare(services: Services, product: str = "online") -> tuple[int, str]:
    """An incident on an existing critical ticket; (incident id, ticket number)."""
    due = datetime.fromisoformat("2025-11-28T11:00:00+03:00")
    number = services.portal.create_ticket(
        TicketDraft(
            topic="critical_server_failure",
            description="Сбой",
            idempotency_key="incident-ticket",
            priority="critical",
            first_stage_due=due,
            resolution_due=due,
        )
    ).number
    with transaction(services.sessions) as session:
        incident = store.open_incident(
            session,
            product=product,
            message="Не открывается карта",
            now=services.clock(),
            calendar=services.calendar,
            ticket=number,
        )
        return incident.id, number


def cli(services: Services, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), obj=CliContext(services))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_caller_hears_the_incident_first_joins_with_1_and_gets_sms_now_and_at_close(
    hotline: Services, exchanges: list[TwilioExchange]
) -> None:
    incident_id, number = declare(hotline)
    call = TwilioCall(create_app(services=hotline).test_client(), caller=CALLER)
    root = call.start()

    gather = root.find("Gather")
    assert gather is not None and gather.attrib["numDigits"] == "1"
    said = [say.text for say in gather.iter("Say")]
    assert said[0].startswith("Здравствуйте!")
    assert said[-2] == (
        f"Нам известно о сбое СКАЙ Онлайн, заявка номер {say_digits(number)}, "
        "специалисты уже работают."
    )
    assert said[-1] == prompts.INCIDENT_OFFER_SMS
    assert prompts.MAIN_MENU not in said

    root = call.press("1")
    heard = [say.text for say in root.iter("Say")]
    assert heard == [
        f"Ваш звонок зарегистрирован по заявке номер {say_digits(number)}.",
        prompts.INCIDENT_JOINED_SMS,
        prompts.GOODBYE,
    ]
    assert root.find("Hangup") is not None and root.find("Redirect") is None  # no chain
    call.hang_up()

    ticket = hotline.portal.get_ticket(number)
    assert ticket.duplicated_by_phone_at is not None
    comments = [e.text or "" for e in ticket.history]
    assert any("ООО «Ромашка»" in text and f"сбое №{incident_id}" in text for text in comments)
    # One SMS, to the caller; the staff on duty get no alert per caller.
    assert [(m["To"], m["Body"]) for m in sms_sent(exchanges)] == [
        (
            CALLER,
            f"SKAI ТП: ваш звонок по сбою SKAI-Online зарегистрирован в заявке №{number}. "
            "Пришлём SMS, когда сбой будет устранён.",
        )
    ]
    [item] = json.loads(cli(hotline, "incident", "list", "--json"))
    assert item["joined_calls"] == 1

    cli(hotline, "incident", "close", str(incident_id), "--message", "Карта снова работает.")
    sent = sms_sent(exchanges)
    assert [(m["To"], m["Body"]) for m in sent[1:]] == [
        (
            CALLER,
            f"SKAI ТП: сбой SKAI-Online устранён (заявка №{number}). Карта снова работает.",
        )
    ]
    closing = hotline.portal.get_ticket(number).history[-1]
    assert "Карта снова работает." in (closing.text or "")
    assert "Пострадавшие организации: ООО «Ромашка»." in (closing.text or "")
    # The sweep finds nothing more to send: each SMS once.
    hotline.jobs.flush()
    assert len(sms_sent(exchanges)) == 2


def test_staying_on_the_line_goes_to_the_main_menu_at_once(hotline: Services) -> None:
    declare(hotline, product="all")
    call = TwilioCall(create_app(services=hotline).test_client(), caller=LANDLINE)
    root = call.start()
    said = [say.text for say in root.iter("Say")]
    assert "о сбое серверов СКАЙ" in said[-2]
    # A landline cannot take an SMS: none is promised.
    assert said[-1] == prompts.INCIDENT_OFFER_NO_SMS

    root = call.silence()
    assert [say.text for say in root.iter("Say")] == [prompts.MAIN_MENU]
    assert prompts.NOT_HEARD not in " ".join(say.text or "" for say in root.iter("Say"))
    # 3 there is the critical failure path, as for any caller.
    root = call.press("3")
    assert [say.text for say in root.iter("Say")] == [prompts.CRITICAL_NUMBER]


def test_a_key_of_the_main_menu_acts_during_the_announcement(hotline: Services) -> None:
    declare(hotline)
    call = TwilioCall(create_app(services=hotline).test_client(), caller=CALLER)
    call.start()
    root = call.press("5")
    assert [say.text for say in root.iter("Say")] == [prompts.STATUS_NUMBER, prompts.NAVIGATION]


def test_no_incident_no_announcement_and_a_closed_one_is_not_joined(hotline: Services) -> None:
    client = create_app(services=hotline).test_client()
    call = TwilioCall(client, caller=CALLER)
    root = call.start()
    assert [say.text for say in root.iter("Say")][-1] == prompts.MAIN_MENU

    incident_id, _number = declare(hotline)
    call = TwilioCall(client, caller=CALLER)
    call.start()
    with transaction(hotline.sessions) as session:
        store.close_incident(session, incident_id, message="готово", now=hotline.clock())
    root = call.press("1")
    assert [say.text for say in root.iter("Say")] == [prompts.MAIN_MENU]
    with hotline.sessions() as session:
        assert session.query(SmsMessage).count() == 0
