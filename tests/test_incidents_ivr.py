"""A known incident on the phone: announced inside the first <Gather>, joined with 1 (a
phone duplicate on its ticket, one SMS now, no urgent chain), and closed with one
resolution SMS per joined caller — through the real webhooks, the outbox and its jobs, and
the twilio library against Prism."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from redis import Redis
from rq import Queue

from callcenter.app import create_app
from callcenter.calllog.query import get_call
from callcenter.calllog.timeline import timeline
from callcenter.db import transaction
from callcenter.db.models import Call, IncidentCall, SmsMessage
from callcenter.incidents import store
from callcenter.ivr import prompts
from callcenter.jobs import runners
from callcenter.regulation.speech import say_digits
from callcenter.services import Services
from callcenter.telephony.client import TwilioExchange, build_telephony
from tests.conftest import MutableClock
from tests.incident_helpers import (
    HEAD_SMS,
    SPECIALIST_SMS,
    add_callers,
    cli,
    declare,
    sms_sent,
)
from tests.job_runner import SynchronousJobRunner
from tests.ticket_pipeline import CALLER, LANDLINE, closed_port_url, make_call, work_burst
from tests.twilio_requests import TwilioCall

pytestmark = pytest.mark.both_databases


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
    # The caller's organisation is among the ticket's affected organisations.
    assert [o.name for o in ticket.affected_organisations] == ["ООО «Ромашка»"]
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
    with hotline.sessions() as session:
        logged = get_call(session, call.call_sid)
        assert logged is not None
        said_in_log = [entry.text for entry in timeline(logged)]
    assert f"Присоединился к сбою №{incident_id}: дубль по телефону на заявке сбоя" in said_in_log
    assert any(
        text.startswith("Объявление об известном сбое: ")
        and text.endswith("присоединился к известному сбою — без вызова дежурных")
        for text in said_in_log
    ), said_in_log

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


# ---------------------------------------------------------------- closing with trouble


def join(services: Services, caller: str) -> None:
    call = TwilioCall(create_app(services=services).test_client(), caller=caller)
    call.start()
    call.press("1")
    call.hang_up()


def test_twilio_away_at_close_the_sweep_sends_each_resolution_sms_once(
    hotline: Services,
    exchanges: list[TwilioExchange],
    make_services: Callable[..., Services],
    run_jobs_at_once: Callable[[Services], SynchronousJobRunner],
    prism_url: str,
) -> None:
    incident_id, _number = declare(hotline)
    join(hotline, CALLER)
    join(hotline, CALLER)  # the same number twice: one resolution SMS
    join(hotline, LANDLINE)  # cannot take one: recorded as skipped
    joined_sms = len(sms_sent(exchanges))
    assert joined_sms == 2  # both calls from the mobile heard "SMS now"; the landline none

    # Twilio out of reach while the incident is closed.
    away = make_services(twilio_api_base_url="http://127.0.0.1:9")
    runner = run_jobs_at_once(away)
    cli(away, "incident", "close", str(incident_id), "--message", "Починили.")
    assert [key for key, _exc in runner.failures] == [f"incident:{incident_id}"]
    runner.failures.clear()
    assert len(sms_sent(exchanges)) == joined_sms
    with hotline.sessions() as session:
        assert store.get_incident(session, incident_id).followups_done_at is None

    # Back: the sweep finds the incident and sends what is left, once.
    assert hotline.jobs.flush() == 1
    resolution = sms_sent(exchanges)[joined_sms:]
    assert [m["To"] for m in resolution] == [CALLER]
    assert hotline.jobs.flush() == 0
    with hotline.sessions() as session:
        rows = {m.key: (m.status, m.reason) for m in session.query(SmsMessage)}
    assert rows[f"incident:{incident_id}:resolved:{LANDLINE}"] == (
        "skipped",
        "landline number, cannot receive SMS",
    )


# ---------------------------------------------------------------- detection and digest


def critical_call(services: Services, caller: str) -> None:
    call = TwilioCall(create_app(services=services).test_client(), caller=caller)
    call.start()
    call.press("3")
    call.press("#")  # no ticket number: a new critical ticket, the urgent chain


def test_three_organisations_in_ten_minutes_open_an_incident_on_the_first_ticket(
    hotline: Services, exchanges: list[TwilioExchange]
) -> None:
    phones = add_callers(hotline, 4, organisations=4)
    critical_call(hotline, phones[0])
    critical_call(hotline, phones[1])
    assert json.loads(cli(hotline, "incident", "list", "--json")) == []
    before = len(sms_sent(exchanges))
    critical_call(hotline, phones[2])

    [item] = json.loads(cli(hotline, "incident", "list", "--json"))
    assert (item["status"], item["product"], item["ticket_number"]) == ("open", "all", "1001")
    detected = [m for m in sms_sent(exchanges)[before:] if "массовый сбой" in m["Body"]]
    assert sorted(m["To"] for m in detected) == [SPECIALIST_SMS, HEAD_SMS]
    assert detected[0]["Body"].startswith(
        f"SKAI ТП: массовый сбой все продукты SKAI, сбой №{item['id']}: 3 звонка"
    )
    # The next caller hears it first.
    call = TwilioCall(create_app(services=hotline).test_client(), caller=phones[3])
    root = call.start()
    assert "заявка номер один ноль ноль один" in " ".join(s.text or "" for s in root.iter("Say"))
    # A second detection run changes nothing (one incident, alerts once).
    hotline.jobs.flush()
    assert len([m for m in sms_sent(exchanges) if "массовый сбой" in m["Body"]]) == 2


def test_one_organisation_calling_three_times_is_no_incident(hotline: Services) -> None:
    phones = add_callers(hotline, 3, organisations=1)
    for phone in phones:
        critical_call(hotline, phone)
    assert json.loads(cli(hotline, "incident", "list", "--json")) == []


def test_calls_further_apart_than_the_window_are_no_incident(
    hotline: Services, clock: MutableClock
) -> None:
    phones = add_callers(hotline, 3, organisations=3)
    critical_call(hotline, phones[0])
    clock.now = clock.now.replace(minute=6)
    critical_call(hotline, phones[1])
    clock.now = clock.now.replace(minute=11)
    critical_call(hotline, phones[2])
    assert json.loads(cli(hotline, "incident", "list", "--json")) == []


def test_the_on_duty_specialist_gets_one_digest_per_ten_minutes(
    hotline: Services, exchanges: list[TwilioExchange], clock: MutableClock
) -> None:
    incident_id, number = declare(hotline)
    phones = add_callers(hotline, 4, organisations=4)

    def digests() -> list[tuple[str, str]]:
        return [(m["To"], m["Body"]) for m in sms_sent(exchanges) if "к сбою" in m["Body"]]

    join(hotline, phones[0])
    join(hotline, phones[1])
    hotline.jobs.flush()
    assert digests() == [
        (
            SPECIALIST_SMS,
            f"SKAI ТП: к сбою №{incident_id} (заявка №{number}) присоединились ещё 2 клиента.",
        )
    ]
    join(hotline, phones[2])
    clock.now += timedelta(minutes=9)
    hotline.jobs.flush()
    assert len(digests()) == 1  # not within ten minutes of the last one
    clock.now += timedelta(minutes=1)
    join(hotline, phones[3])
    hotline.jobs.flush()
    assert digests()[1] == (
        SPECIALIST_SMS,
        f"SKAI ТП: к сбою №{incident_id} (заявка №{number}) присоединились ещё 2 клиента.",
    )
    hotline.jobs.flush()
    assert len(digests()) == 2


# ---------------------------------------------------------------- a real worker and Redis


def test_redis_down_at_close_the_resolution_sms_goes_once_when_it_is_back(
    make_services: Callable[..., Services],
    redis_url: str,
    queue_name: str,
    prism_url: str,
    exchanges: list[TwilioExchange],
) -> None:
    def wired(**changes: object) -> Services:
        services = make_services(twilio_api_base_url=prism_url, queue_name=queue_name, **changes)
        telephony = build_telephony(services.settings, on_exchange=exchanges.append)
        services.telephony = telephony  # type: ignore[misc]  # the wiring's adapter slot
        return services

    services = wired(redis_url=redis_url)
    incident_id, _number = declare(services)
    with transaction(services.sessions) as session:
        for phone in (CALLER, "+79165550001"):
            call: Call = make_call(
                session, now=services.clock(), caller=phone, category="critical", topic=None
            )
            session.add(
                IncidentCall(
                    incident_id=incident_id, call_id=call.id, kind="joined", at=services.clock()
                )
            )

    try:
        no_redis = wired(redis_url=closed_port_url().replace("http", "redis") + "/0")
        output = cli(no_redis, "incident", "close", str(incident_id), "--message", "Готово.")
        assert "left for the sweep (the queue is unavailable)" in output
        assert sms_sent(exchanges) == []

        assert "submitted" in cli(services, "outbox", "flush")
        work_burst(services)
        assert sorted(m["To"] for m in sms_sent(exchanges)) == ["+79161234567", "+79165550001"]
        cli(services, "outbox", "flush")
        work_burst(services)
        assert len(sms_sent(exchanges)) == 2
    finally:
        redis = Redis.from_url(redis_url)
        for name in (queue_name, queue_name + runners.FOLLOWUPS_SUFFIX):
            Queue(name, connection=redis).delete(delete_jobs=True)
        for key in redis.scan_iter(f"rq:*{queue_name}*"):
            redis.delete(key)
        redis.close()


def test_a_critical_caller_greeted_before_the_incident_is_offered_it_before_any_chain(
    hotline: Services,
) -> None:
    client = create_app(services=hotline).test_client()
    joining = TwilioCall(client, caller=CALLER)
    staying = TwilioCall(client, caller=LANDLINE)
    for call in (joining, staying):
        call.start()
        call.press("3")
    _incident_id, number = declare(hotline)

    root = joining.press("#")
    said = [say.text for say in root.iter("Say")]
    assert said[0].startswith("Нам известно о сбое СКАЙ Онлайн")
    assert root.find("Gather") is not None and root.find("Redirect") is not None
    root = joining.press("1")
    assert [say.text for say in root.iter("Say")][0] == (
        f"Ваш звонок зарегистрирован по заявке номер {say_digits(number)}."
    )
    assert root.find("Hangup") is not None

    staying.press("#")
    root = staying.silence()  # stays on the line: the urgent chain, with its own ticket
    assert [say.text for say in root.iter("Say")] == [prompts.CONNECTING_URGENT]
    redirect = root.find("Redirect")
    assert redirect is not None and (redirect.text or "").endswith("/webhooks/voice/route/urgent")
    with hotline.sessions() as session:
        assert store.joined_counts(session, [_incident_id]) == {_incident_id: 1}
