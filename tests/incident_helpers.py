"""What the known-incident tests share: the hotline they call (Twilio at Prism, every
request kept, jobs run at once, a roster with an on-duty specialist and a head), the SMS
Prism accepted, an incident declared on an existing ticket, the CLI, and callers from
organisations of their own. The roster and the SMS Prism accepted serve the follow-ups'
tests too.

`exchanges` and `hotline` are fixtures: tests/conftest.py loads this module as a plugin
(pytest_plugins), so any test module may ask for them, and one of its own overrides them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from click.testing import CliRunner

from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db import transaction
from callcenter.db.models import Contact, ContactPhone, Organisation
from callcenter.incidents import store
from callcenter.portal.protocol import TicketDraft
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.telephony.client import TwilioExchange, TwilioTelephony, build_telephony
from tests.conftest import TEST_ACCOUNT_SID
from tests.job_runner import SynchronousJobRunner
from tests.ticket_pipeline import CALLER, add_contact

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
    """Every request the Twilio adapter made, in order."""
    return []


@pytest.fixture
def hotline(
    make_services: Callable[..., Services],
    prism_url: str,
    exchanges: list[TwilioExchange],
    run_jobs_at_once: Callable[[Services], SynchronousJobRunner],
) -> Iterator[Services]:
    """Services with Twilio at Prism (every request kept in `exchanges`), jobs run at
    once, the roster above and a known caller of «Ромашка» (CALLER)."""
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
    """The SMS Twilio (Prism) accepted, in order: each one's form (To, Body, ...)."""
    # status None: the request never reached Twilio (refused, timed out).
    sent = [e for e in exchanges if e.path == MESSAGES_PATH and e.status is not None]
    assert all(e.status == 201 for e in sent), sent  # valid against Twilio's spec
    return [e.form for e in sent]


def declare(
    services: Services, product: str = "online", *, key: str = "incident-ticket"
) -> tuple[int, str]:
    """An incident on an existing critical ticket; (incident id, ticket number)."""
    due = datetime.fromisoformat("2025-11-28T11:00:00+03:00")
    number = services.portal.create_ticket(
        TicketDraft(
            topic="critical_server_failure",
            description="Сбой",
            idempotency_key=key,
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


def add_callers(
    services: Services, count: int, *, organisations: int, prefix: str = "+7916555"
) -> list[str]:
    """`count` directory contacts with mobile numbers, spread over `organisations`
    organisations («ООО «Клиент n»»); their numbers."""
    phones = [f"{prefix}{n:04d}" for n in range(count)]
    now = services.clock()
    with transaction(services.sessions) as session:
        orgs = [
            Organisation(name=f"ООО «Клиент {n}»", topic_days={}, created_at=now)
            for n in range(organisations)
        ]
        for n, phone in enumerate(phones):
            contact = Contact(
                name=f"Клиент {n}", organisation=orgs[n % organisations], created_at=now
            )
            contact.phones.append(ContactPhone(e164=phone))
            session.add(contact)
    return phones
