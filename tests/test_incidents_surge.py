"""scripts/surge.py, shortened for the suite: the server falls and clients call at once.

Eighteen critical-failure calls, each from an organisation of its own, in three waves of
callers who call at the same moment (threads released together), through the real
webhooks of the app in this process, with the outbox's jobs run as they are submitted,
SMS sent by the twilio library to Prism (every one counted there) and the built-in portal:

- the first INCIDENT_THRESHOLD (3) report it on the critical path (3, then # for no ticket
  number): each gets a ticket and is put through to the urgent chain; the service detects
  the incident on the first of their tickets and texts the specialist and the head once;
- the next twelve, then three more five minutes later, hear the incident first and join
  it with 1: each is a phone duplicate on the incident's ticket (no ticket of its own),
  nobody is rung for them (no dial leg), each mobile gets one SMS now;
- the on-duty specialist's digest goes at most once per ten minutes (the clock moved);
- closing sends the resolution SMS once to every caller tied to the incident who can take
  one (the landline cannot), and nothing more on the next sweeps.

The full run, with real processes, fifty callers and Redis killed mid-surge, is
`scripts/surge.py` (README, «Known incidents»)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from callcenter.app import create_app
from callcenter.db import transaction
from callcenter.db.models import Call, DialLeg, SmsMessage, Ticket, TicketRequest
from callcenter.ivr import prompts
from callcenter.regulation.speech import say_digits
from callcenter.services import Services
from callcenter.telephony.client import TwilioExchange
from tests.conftest import MutableClock
from tests.incident_helpers import (
    HEAD_SMS,
    SPECIALIST_SMS,
    add_callers,
    cli,
    sms_sent,
)
from tests.job_runner import SynchronousJobRunner
from tests.ticket_pipeline import LANDLINE, add_contact
from tests.twilio_requests import TwilioCall, said

pytestmark = pytest.mark.both_databases

THRESHOLD = 3  # INCIDENT_THRESHOLD's default, which the test settings keep
JOINING_AT_ONCE = 12
JOINING_LATER = 3
DETECTED = "массовый сбой"
DIGEST = "к сбою №"
JOINED = "зарегистрирован в заявке"
RESOLVED = "SKAI ТП: сбой "


@pytest.fixture
def hotline(hotline: Services) -> Services:
    """The incident hotline (tests/incident_helpers.py) at the threshold this story counts on."""
    assert hotline.settings.incident_threshold == THRESHOLD
    return hotline


def at_once(callers: list[str], play: Callable[[str], TwilioCall]) -> list[TwilioCall]:
    """Every caller's call played in a thread of its own, all released at one moment."""
    barrier = threading.Barrier(len(callers))
    calls: dict[str, TwilioCall] = {}
    errors: list[BaseException] = []

    def run(caller: str) -> None:
        try:
            barrier.wait(timeout=30)
            calls[caller] = play(caller)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(caller,)) for caller in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads)
    return [calls[caller] for caller in callers]


def reporting(app: Flask) -> Callable[[str], TwilioCall]:
    """A caller on the critical path: 3, # (no ticket number), then the urgent chain —
    Twilio follows the <Redirect> to the <Dial>."""

    def play(caller: str) -> TwilioCall:
        call = TwilioCall(app.test_client(), caller=caller)
        call.start()
        call.press("3")
        root = call.press("#")
        assert said(root) == prompts.CONNECTING_URGENT, said(root)
        root = call.follow_redirect()
        assert root.find("Dial") is not None, call.heard
        return call

    return play


def joining(app: Flask, number: str) -> Callable[[str], TwilioCall]:
    """A caller who hears the incident first and presses 1; Twilio hangs up after."""

    def play(caller: str) -> TwilioCall:
        call = TwilioCall(app.test_client(), caller=caller)
        root = call.start()
        assert f"заявка номер {say_digits(number)}" in said(root), said(root)
        root = call.press("1")
        assert said(root).startswith(prompts.INCIDENT_JOINED.format(number=say_digits(number)))
        assert root.find("Hangup") is not None and root.find("Redirect") is None
        assert root.find("Dial") is None
        call.hang_up()
        return call

    return play


def test_a_surge_is_one_incident_one_ticket_no_chain_for_joined_callers_one_sms_each(
    hotline: Services, exchanges: list[TwilioExchange], clock: MutableClock
) -> None:
    mobiles = add_callers(
        hotline, THRESHOLD + JOINING_AT_ONCE + JOINING_LATER - 1, organisations=17
    )
    with transaction(hotline.sessions) as session:
        add_contact(session, now=hotline.clock(), phone=LANDLINE, organisation="ООО «Стационар»")
    first, rest = mobiles[:THRESHOLD], mobiles[THRESHOLD:]
    wave = [*rest[: JOINING_AT_ONCE - 1], LANDLINE]
    later = rest[JOINING_AT_ONCE - 1 :]
    assert len(wave) == JOINING_AT_ONCE and len(later) == JOINING_LATER
    app = create_app(services=hotline)

    def texts(marker: str) -> list[tuple[str, str]]:
        return [(m["To"], m["Body"]) for m in sms_sent(exchanges) if marker in m["Body"]]

    # The first callers report it at the same moment: a ticket each, the chain each.
    reporters = at_once(first, reporting(app))
    [incident] = json.loads(cli(hotline, "incident", "list", "--json"))
    assert (incident["status"], incident["detected"]) == ("open", True)
    number = incident["ticket_number"]
    assert isinstance(number, str)
    with hotline.sessions() as session:
        first_call = session.scalars(
            select(Call.call_sid).where(Call.caller_e164.in_(first)).order_by(Call.id)
        ).first()
        assert session.scalar(select(Ticket.call_ref).where(Ticket.number == int(number))) == (
            first_call
        )  # opened on the first of their tickets
    assert sorted(to for to, _body in texts(DETECTED)) == [SPECIALIST_SMS, HEAD_SMS]

    # Twelve more at once hear it and join; three more five minutes later.
    joined = at_once(wave, joining(app, number))
    hotline.jobs.flush()  # the sweep: the specialist's digest
    assert texts(DIGEST) == [
        (
            SPECIALIST_SMS,
            f"SKAI ТП: к сбою №{incident['id']} (заявка №{number}) присоединились ещё "
            f"{JOINING_AT_ONCE} клиентов.",
        )
    ]
    clock.now += timedelta(minutes=5)
    joined += at_once(later, joining(app, number))
    hotline.jobs.flush()
    clock.now += timedelta(minutes=4, seconds=59)
    hotline.jobs.flush()
    assert len(texts(DIGEST)) == 1  # not within ten minutes of the last one
    clock.now += timedelta(seconds=1)
    hotline.jobs.flush()
    hotline.jobs.flush()
    assert [body for _to, body in texts(DIGEST)][1:] == [
        f"SKAI ТП: к сбою №{incident['id']} (заявка №{number}) присоединились ещё "
        f"{JOINING_LATER} клиента."
    ]

    # One ticket for the incident: every joined call a phone duplicate on it, none new.
    ticket = hotline.portal.get_ticket(number)
    assert ticket.priority == "critical"
    assert sum(1 for e in ticket.history if e.kind == "phone_duplicate") == len(joined)
    assert len(ticket.affected_organisations) == len(joined)
    with hotline.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == THRESHOLD
        rung = session.execute(
            select(Call.call_sid, func.count(DialLeg.id)).join(DialLeg).group_by(Call.call_sid)
        ).all()
    # The urgent chain rang for the reporters only; no dial leg for a joined caller.
    assert {sid for sid, legs in rung if legs > 0} == {call.call_sid for call in reporters}
    [item] = json.loads(cli(hotline, "incident", "list", "--json"))
    assert item["joined_calls"] == len(joined)
    # Each mobile that joined got one SMS now; the landline none. The specialist got an
    # urgent-ticket alert per reporter, the detection alert and the two digests — no
    # alert per joined caller.
    assert Counter(to for to, _body in texts(JOINED)) == {m: 1 for m in [*wave[:-1], *later]}
    staff = [m["Body"] for m in sms_sent(exchanges) if m["To"] == SPECIALIST_SMS]
    urgent = [body for body in staff if body.startswith("Срочная заявка №")]
    assert len(urgent) == THRESHOLD
    assert not any("продублирована звонком" in body for body in staff)
    assert len(staff) == THRESHOLD + 1 + 2

    # Closing: one resolution SMS to every caller tied to it who can take one.
    before = len(sms_sent(exchanges))
    output = cli(hotline, "incident", "close", str(incident["id"]), "--message", "Сервер поднят.")
    assert ": skipped (landline number, cannot receive SMS)" in output
    hotline.jobs.flush()
    hotline.jobs.flush()
    resolved = Counter(m["To"] for m in sms_sent(exchanges)[before:])
    assert resolved == {m: 1 for m in [*first, *wave[:-1], *later]}
    assert all(
        m["Body"] == f"{RESOLVED}все продукты SKAI устранён (заявка №{number}). Сервер поднят."
        for m in sms_sent(exchanges)[before:]
    )
    with hotline.sessions() as session:
        statuses = Counter(
            m.status
            for m in session.query(SmsMessage).where(SmsMessage.key.like("incident:%:resolved:%"))
        )
    assert statuses == {"sent": THRESHOLD + len(joined) - 1, "skipped": 1}


JOINING_UNNUMBERED = 5  # callers after the threshold, while the worker has run nothing


def test_the_threshold_holds_while_the_worker_lags_joined_callers_wait_for_the_number(
    hotline: Services, exchanges: list[TwilioExchange]
) -> None:
    """No ticket job runs while the callers go through (the worker lags): the incident is
    opened in the webhook of the third report, so the fourth caller — on the critical
    path already — and the ones after, at their first <Gather>, hear it without a number,
    press 1 and ring nobody. Then the jobs run (the newest first: the joined calls' before
    the incident's ticket): one ticket for the incident, every joined call a phone
    duplicate on it, one detection alert each to the specialist and the head, and at
    closing one resolution SMS per mobile. TwiML as Twilio reads it:
    https://www.twilio.com/docs/voice/twiml/gather"""
    runner = hotline.jobs
    assert isinstance(runner, SynchronousJobRunner)
    mobiles = add_callers(hotline, THRESHOLD + JOINING_UNNUMBERED, organisations=8)
    reporters_numbers, joiners = mobiles[:THRESHOLD], mobiles[THRESHOLD:]
    app = create_app(services=hotline)
    announcement = prompts.INCIDENT_ANNOUNCEMENT_UNNUMBERED.format(product="серверов СКАЙ")
    runner.hold()

    # The fourth caller is on the critical path before the third report is in.
    early = TwilioCall(app.test_client(), caller=joiners[0])
    early.start()
    assert said(early.press("3")).startswith(prompts.CRITICAL_NUMBER[:20])
    reporters = [reporting(app)(caller) for caller in reporters_numbers]
    [incident] = json.loads(cli(hotline, "incident", "list", "--json"))
    assert (incident["status"], incident["detected"], incident["product"]) == ("open", True, "all")
    assert incident["ticket_number"] is None  # no ticket job has run
    assert sms_sent(exchanges) == []

    def join(call: TwilioCall, offer: Any) -> None:
        assert announcement in said(offer) and "заявка номер" not in said(offer), said(offer)
        root = call.press("1")
        assert said(root).startswith(prompts.INCIDENT_JOINED_UNNUMBERED), said(root)
        assert root.find("Hangup") is not None and root.find("Dial") is None
        assert root.find("Redirect") is None
        call.hang_up()

    # At the critical step: # (no ticket number) brings the offer instead of the chain.
    join(early, early.press("#"))
    joined = [early]
    for caller in joiners[1:]:
        call = TwilioCall(app.test_client(), caller=caller)
        join(call, call.start())  # at the first <Gather>
        joined.append(call)
    with hotline.sessions() as session:
        rung = session.scalars(select(Call.call_sid).join(DialLeg).distinct()).all()
        assert session.scalar(select(func.count()).select_from(Ticket)) == 0
    assert set(rung) == {call.call_sid for call in reporters}
    assert sms_sent(exchanges) == []

    # The worker catches up, the joined calls' jobs first.
    runner.release(newest_first=True)
    [incident] = json.loads(cli(hotline, "incident", "list", "--json"))
    number = incident["ticket_number"]
    assert isinstance(number, str)
    assert incident["joined_calls"] == JOINING_UNNUMBERED
    ticket = hotline.portal.get_ticket(number)
    assert sum(1 for e in ticket.history if e.kind == "phone_duplicate") == JOINING_UNNUMBERED
    with hotline.sessions() as session:
        # The reporters' tickets, the first of them the incident's; none for a joined call.
        assert session.scalar(select(func.count()).select_from(Ticket)) == THRESHOLD
        # Each joined call's job ran before the number existed, waited, then recorded it.
        waited = session.execute(
            select(TicketRequest.status, TicketRequest.attempts, TicketRequest.ticket_number)
            .join(Call)
            .where(Call.call_sid.in_([call.call_sid for call in joined]))
        ).all()
    assert sorted(waited) == [("done", 2, number)] * JOINING_UNNUMBERED
    sent = sms_sent(exchanges)
    detected = [m for m in sent if DETECTED in m["Body"]]
    assert sorted(m["To"] for m in detected) == sorted([SPECIALIST_SMS, HEAD_SMS])
    # Its job ran before the ticket's (the newest first): the number is to follow.
    assert all("номер заявки уточняется" in m["Body"] for m in detected)
    assert Counter(m["To"] for m in sent if JOINED in m["Body"]) == {m: 1 for m in joiners}
    assert all(
        f"зарегистрирован в заявке №{number}." in m["Body"] for m in sent if JOINED in m["Body"]
    )
    hotline.jobs.flush()
    assert len([m for m in sms_sent(exchanges) if DETECTED in m["Body"]]) == 2

    # Closing: one resolution SMS to every mobile tied to the incident.
    before = len(sms_sent(exchanges))
    cli(hotline, "incident", "close", str(incident["id"]), "--message", "Сервер поднят.")
    hotline.jobs.flush()
    hotline.jobs.flush()
    resolved = sms_sent(exchanges)[before:]
    assert Counter(m["To"] for m in resolved) == {m: 1 for m in mobiles}
    assert all(m["Body"].startswith(f"{RESOLVED}все продукты SKAI") for m in resolved)
