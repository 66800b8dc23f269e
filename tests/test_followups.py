"""Follow-ups once the portal has answered: recordings attached to the ticket, the caller's
SMS, on-duty alerts — each once, whatever is re-run.

Twilio's REST API is the real `twilio` client against Prism (Twilio's own OpenAPI); the
recording media, which Prism cannot serve, comes from a real HTTP server standing in for
Twilio's media host. Tickets are made by the built-in portal in the same database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from callcenter.calls import recordings
from callcenter.calls.store import caller_facts
from callcenter.db import transaction
from callcenter.db.models import Call, SmsMessage, TicketRequest
from callcenter.portal.protocol import TicketDraft, TicketEntryView
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from callcenter.telephony.client import TwilioExchange, TwilioTelephony, build_telephony
from callcenter.tickets import outbox
from callcenter.tickets.followups import (
    FollowupReport,
    leaves_database,
    run_followups,
    run_local_followups,
)
from callcenter.tickets.intake import add_recording, mark_phone_duplicate, open_ticket_request
from callcenter.tickets.notifications import caller_confirmation
from tests.conftest import TEST_ACCOUNT_SID, TEST_PUBLIC_BASE, MutableClock
from tests.incident_helpers import ROSTER, sms_sent
from tests.ticket_pipeline import (
    CALLER,
    LANDLINE,
    closed_port_url,
    make_call,
    new_recording_sid,
    open_request,
    request_row,
)

# The SMS ledger's ON CONFLICT insert differs per dialect.
pytestmark = pytest.mark.both_databases

RECORDINGS = f"https://api.twilio.com/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Recordings/"
AUDIO = Path(__file__).parent / "fixtures" / "audio" / "silence.mp3"


@pytest.fixture
def twilio(
    make_services: Callable[..., Services], prism_url: str, exchanges: list[TwilioExchange]
) -> Iterator[Callable[..., Services]]:
    """Services whose Twilio is at `twilio_api_base_url` (Prism unless changed); every
    request the adapter makes lands in `exchanges`."""
    adapters: list[TwilioTelephony] = []

    def make(**changes: object) -> Services:
        changes.setdefault("twilio_api_base_url", prism_url)
        services = make_services(**changes)
        telephony = build_telephony(services.settings, on_exchange=exchanges.append)
        assert isinstance(telephony, TwilioTelephony)
        adapters.append(telephony)
        services.telephony = telephony  # type: ignore[misc]  # the wiring's adapter slot
        return services

    yield make
    for telephony in adapters:
        telephony.close()


def create(services: Services, request_id: int) -> str:
    """What the ticket job does (jobs.create_ticket), without queueing the follow-ups."""
    delivery = outbox.deliver(
        services.sessions,
        services.portal,
        request_id,
        clock=services.clock,
        recording_link=partial(recordings.ticket_link, services.settings),
    )
    assert delivery.ticket_number is not None, delivery
    return delivery.ticket_number


def follow_up(services: Services, request_id: int) -> FollowupReport:
    return run_followups(
        sessions=services.sessions,
        portal=services.portal,
        telephony=services.telephony,
        settings=services.settings,
        calendar=services.calendar,
        clock=services.clock,
        request_id=request_id,
    )


def follow_up_locally(services: Services, request_id: int) -> FollowupReport:
    """What the ticket job does right after the number (jobs.create_ticket)."""
    return run_local_followups(
        sessions=services.sessions,
        portal=services.portal,
        telephony=services.telephony,
        settings=services.settings,
        calendar=services.calendar,
        clock=services.clock,
        request_id=request_id,
    )


def make_due(services: Services, request_id: int) -> None:
    """As if a sweep or a replayed job came round again."""
    with transaction(services.sessions) as session:
        row = session.get(TicketRequest, request_id)
        assert row is not None
        row.next_attempt_at = services.clock()


def sms_rows(services: Services) -> dict[str, tuple[str, str | None]]:
    with services.sessions() as session:
        return {m.key: (m.status, m.reason) for m in session.scalars(select(SmsMessage))}


def history(services: Services, number: str) -> list[TicketEntryView]:
    """The ticket's attachments, as the portal shows them."""
    return [e for e in services.portal.get_ticket(number).history if e.kind == "attachment"]


def test_the_caller_sms_carries_the_number_topic_and_deadlines() -> None:
    received = datetime.fromisoformat("2025-11-27T11:00:00+03:00")
    draft = TicketDraft(
        topic="stolen_vehicle",
        description="",
        idempotency_key="CA1",
        first_stage_due=received + timedelta(days=1),
        resolution_due=received + timedelta(days=1),
    )
    assert caller_confirmation("1042", draft) == (
        "Заявка №1042 зарегистрирована. Тема: Отслеживание угнанного ТС. "
        "Срок решения: до 11:00 28.11.2025."
    )
    by_agreement = TicketDraft(
        topic="remote_diagnostics",
        description="",
        idempotency_key="CA2",
        first_stage_due=received + timedelta(days=1),
    )
    assert caller_confirmation("7", by_agreement) == (
        "Заявка №7 зарегистрирована. Тема: Удалённая диагностика и настройка оборудования. "
        "Первый ответ: до 11:00 28.11.2025. Срок решения: по согласованию с вами."
    )


def test_only_a_mobile_gets_the_sms_and_every_skip_says_why(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange]
) -> None:
    services = twilio()
    callers = {
        "mobile": CALLER,
        "landline": LANDLINE,
        "withheld": "anonymous",
        "foreign": "+4915112345678",
    }
    ids = {kind: open_request(services, caller=raw) for kind, raw in callers.items()}
    for request_id in ids.values():
        create(services, request_id)
        follow_up(services, request_id)

    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER]
    rows = sms_rows(services)
    assert rows[f"ticket-request:{ids['mobile']}:caller"] == ("sent", None)
    assert rows[f"ticket-request:{ids['landline']}:caller"] == (
        "skipped",
        "landline number, cannot receive SMS",
    )
    assert rows[f"ticket-request:{ids['withheld']}:caller"] == ("skipped", "caller ID withheld")
    assert rows[f"ticket-request:{ids['foreign']}:caller"] == (
        "skipped",
        "number outside Russia (SMS_FOREIGN is off)",
    )
    for request_id in ids.values():
        assert request_row(services, request_id).next_attempt_at is None

    abroad = twilio(sms_foreign=True)
    request_id = open_request(abroad, caller="+4915112345679")
    create(abroad, request_id)
    follow_up(abroad, request_id)
    assert sms_sent(exchanges)[-1]["To"] == "+4915112345679"


# Callers for whom the IVR's promise and the follow-ups could part ways: SMS abroad on
# and off, a foreign landline, SIP trunks passing Russian and foreign numbers on.
SMS_CALLERS = (
    CALLER,
    LANDLINE,
    "anonymous",
    "+4915112345678",  # a German mobile
    "+442071234567",  # a London landline
    "sip:+79161234568@trunk.example",
    "sip:+4915112345670@trunk.example",
    "sip:alice@pbx.example",
)


@pytest.mark.parametrize("sms_foreign", [False, True])
def test_the_ivr_promises_an_sms_to_exactly_the_callers_who_then_get_one(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange], sms_foreign: bool
) -> None:
    """What the IVR tells a caller waiting for the number ("it will come by SMS", "you will
    get an SMS too") must be what the follow-ups then do."""
    services = twilio(sms_foreign=sms_foreign)
    promised: dict[str, bool] = {}
    texted: dict[str, bool] = {}
    for caller in SMS_CALLERS:
        request_id = open_request(services, caller=caller)
        with services.sessions() as session:
            call = session.scalars(
                select(Call).join(TicketRequest).where(TicketRequest.id == request_id)
            ).one()
            promised[caller] = caller_facts(call, sms_foreign=sms_foreign).sms_reachable
        create(services, request_id)
        follow_up(services, request_id)
        status, _ = sms_rows(services)[f"ticket-request:{request_id}:caller"]
        texted[caller] = status == "sent"

    assert promised == texted
    assert texted[CALLER] and not texted[LANDLINE] and not texted["+442071234567"]
    assert texted["+4915112345678"] == sms_foreign


def test_an_urgent_ticket_alerts_the_staff_on_duty_once(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange], clock: MutableClock
) -> None:
    services = twilio()
    with transaction(services.sessions) as session:
        import_roster(session, ROSTER)
    request_id = open_request(
        services, category="critical", topic=None, product="online", vehicles=[]
    )
    number = create(services, request_id)
    follow_up(services, request_id)

    alert = (
        f"Срочная заявка №{number}: Диагностика критического сбоя на сервере. "
        "+7 916 123-45-67. Решить до 11:00 28.11.2025."
    )
    confirmation = (
        f"Заявка №{number} зарегистрирована. Тема: Диагностика критического сбоя на сервере. "
        "Срок решения: до 11:00 28.11.2025."
    )
    # Each with its StatusCallback naming its ledger row, so Twilio's delivery reports
    # find it (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource).
    status = f"{TEST_PUBLIC_BASE}/webhooks/sms/status?m="
    assert sms_sent(exchanges) == [
        {
            "To": CALLER,
            "StatusCallback": status + "1",
            "From": services.settings.sms_from,
            "Body": confirmation,
        },
        {
            "To": "+79123456701",
            "StatusCallback": status + "2",
            "From": services.settings.sms_from,
            "Body": alert,
        },
        {
            "To": "+79123456709",
            "StatusCallback": status + "3",
            "From": services.settings.sms_from,
            "Body": alert,
        },
    ]
    # Re-run after the shift changed: still nobody is told twice, nobody new is told.
    clock.now += timedelta(hours=12)
    make_due(services, request_id)
    follow_up(services, request_id)
    assert len(sms_sent(exchanges)) == 3


def test_recordings_are_attached_as_links_once_in_the_order_made(
    make_services: Callable[..., Services], clock: MutableClock
) -> None:
    # No Twilio account at all (the embedded default): links need none.
    services = make_services(twilio_account_sid=None, twilio_auth_token=None)
    description = new_recording_sid()
    with transaction(services.sessions) as session:
        call = make_call(session, now=services.clock(), caller=LANDLINE)
        add_recording(
            session,
            call,
            recording_sid=description,
            recording_url=RECORDINGS + description,
            kind="description",
            duration=95,
            now=services.clock(),
        )
        request_id = open_ticket_request(
            session, call, now=services.clock(), calendar=services.calendar
        ).id
        call_id = call.id
    number = create(services, request_id)
    follow_up(services, request_id)

    # A voicemail comes in later (the caller was routed, nobody answered).
    clock.now += timedelta(minutes=5)
    voicemail = new_recording_sid()
    with transaction(services.sessions) as session:
        call = session.get(Call, call_id)
        assert call is not None
        add_recording(
            session,
            call,
            recording_sid=voicemail,
            recording_url=RECORDINGS + voicemail,
            kind="voicemail",
            duration=20,
            now=services.clock(),
        )
    assert request_row(services, request_id).next_attempt_at == services.clock()
    follow_up(services, request_id)
    make_due(services, request_id)
    follow_up(services, request_id)  # a replay adds nothing

    entries = history(services, number)
    assert [(e.text, e.attachment_url, e.attachment_name) for e in entries] == [
        (
            "Запись звонка: описание проблемы (1:35)",
            f"{RECORDINGS}{description}.mp3",
            "Запись звонка 27.11.2025 11:00.mp3",  # a name a person understands, not the SID
        ),
        (
            "Голосовое сообщение абонента (0:20)",
            f"{RECORDINGS}{voicemail}.mp3",
            "Голосовое сообщение 27.11.2025 11:05.mp3",
        ),
    ]
    row = request_row(services, request_id)
    assert row.followups["recordings"] == {description: "attached", voicemail: "attached"}
    assert row.followups["caller_sms"] == "skipped"
    assert services.portal.get_ticket(number).recording_url == f"{RECORDINGS}{description}.mp3"


class MediaHost:
    """A real HTTP server playing Twilio's media host: 404 until the recording is ready."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.paths: list[str] = []
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _wsgi(self, environ, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        self.paths.append(request.path)
        if request.authorization is None or request.authorization.username != TEST_ACCOUNT_SID:
            response = Response("{}", status=401, content_type="application/json")
        elif not self.ready.is_set():
            response = Response('{"code": 20404}', status=404, content_type="application/json")
        else:
            response = Response(AUDIO.read_bytes(), content_type="audio/mpeg")
        return response(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def media_host() -> Iterator[MediaHost]:
    host = MediaHost()
    yield host
    host.close()


def test_in_download_mode_the_recording_is_kept_here_and_linked_from_the_ticket(
    twilio: Callable[..., Services], media_host: MediaHost, clock: MutableClock
) -> None:
    services = twilio(recording_mode="download", twilio_api_base_url=media_host.url)
    sid = new_recording_sid()
    with transaction(services.sessions) as session:
        call = make_call(session, now=services.clock(), caller=LANDLINE)
        add_recording(
            session,
            call,
            recording_sid=sid,
            recording_url=RECORDINGS + sid,
            kind="description",
            now=services.clock(),
        )
        request_id = open_ticket_request(
            session, call, now=services.clock(), calendar=services.calendar
        ).id
    number = create(services, request_id)
    own_url = f"{TEST_PUBLIC_BASE}/console/recordings/{sid}"
    assert services.portal.get_ticket(number).recording_url == own_url

    # Twilio is still processing the recording: try again after the backoff.
    report = follow_up(services, request_id)
    row = request_row(services, request_id)
    assert report.next_attempt_at == row.next_attempt_at == clock.now + outbox.retry_delay(1)
    assert row.followups["runs"] == 1 and "not available" in row.followups["error"]
    assert history(services, number) == []
    assert follow_up(services, request_id).notes == ["nothing due"]  # a replay waits too

    media_host.ready.set()
    clock.now += outbox.retry_delay(1)
    follow_up(services, request_id)

    stored = services.settings.data_dir / "recordings" / f"{sid}.mp3"
    assert stored.read_bytes() == AUDIO.read_bytes()
    [entry] = history(services, number)
    assert (entry.attachment_url, entry.text) == (own_url, "Запись звонка: описание проблемы")
    row = request_row(services, request_id)
    assert row.next_attempt_at is None and "runs" not in row.followups
    assert media_host.paths == [f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Recordings/{sid}.mp3"] * 2


def test_twilio_unreachable_means_the_sms_is_tried_again_and_sent_once(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange], clock: MutableClock
) -> None:
    offline = twilio(twilio_api_base_url=closed_port_url())
    request_id = open_request(offline)
    create(offline, request_id)
    follow_up(offline, request_id)
    key = f"ticket-request:{request_id}:caller"
    status, reason = sms_rows(offline)[key]
    assert status == "retry" and reason is not None and "could not reach Twilio" in reason
    assert request_row(offline, request_id).next_attempt_at == clock.now + outbox.retry_delay(1)

    online = twilio()
    clock.now += outbox.retry_delay(1)
    follow_up(online, request_id)
    make_due(online, request_id)
    follow_up(online, request_id)

    assert sms_rows(online)[key] == ("sent", None)
    assert [e.status for e in exchanges] == [None, 201]  # refused once, then taken once
    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER]
    assert request_row(online, request_id).next_attempt_at is None


def test_once_twilio_answers_again_the_other_follow_ups_waiting_go_at_once(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange], clock: MutableClock
) -> None:
    """Twilio out of reach leaves two callers' SMS waiting out backoffs of different
    lengths; the first run that gets through makes the other due now — it goes with the
    next sweep, not minutes after Twilio came back."""
    offline = twilio(twilio_api_base_url=closed_port_url())
    early, late = open_request(offline), open_request(offline)
    for request_id in (early, late):
        create(offline, request_id)
    follow_up(offline, late)
    for _ in range(3):  # the late one met the outage four times: a minute to wait
        make_due(offline, late)
        follow_up(offline, late)
    clock.now += timedelta(seconds=1)
    follow_up(offline, early)
    waiting_until = request_row(offline, late).next_attempt_at
    assert waiting_until == clock.now - timedelta(seconds=1) + outbox.retry_delay(4)

    online = twilio()
    clock.now += outbox.retry_delay(1)
    with online.sessions() as session:
        assert outbox.due_followup_ids(session, clock.now) == [early]
    follow_up(online, early)
    with online.sessions() as session:
        assert outbox.due_followup_ids(session, clock.now) == [late]
    follow_up(online, late)

    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER, CALLER]
    assert {status for status, _reason in sms_rows(online).values()} == {"sent"}
    assert request_row(online, early).next_attempt_at is None
    assert request_row(online, late).next_attempt_at is None


def test_a_failed_request_alerts_on_duty_once_per_failure(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange], clock: MutableClock
) -> None:
    services = twilio(portal_url=closed_port_url() + "/api/v1", portal_token="t")
    request_id = open_request(services)

    def fail() -> None:
        with transaction(services.sessions) as session:
            row = outbox.lock_request(session, request_id)
            assert row is not None
            row.attempts = outbox.MAX_ATTEMPTS - 1  # the last try comes next
        delivery = outbox.deliver(
            services.sessions, services.portal, request_id, clock=services.clock
        )
        assert delivery.failed

    fail()
    follow_up(services, request_id)
    make_due(services, request_id)
    follow_up(services, request_id)  # replayed: no second alert
    [alert] = sms_sent(exchanges)
    assert alert["To"] == services.settings.duty_phone
    assert "не создана: portal unavailable" in alert["Body"]

    clock.now += timedelta(hours=1)
    with transaction(services.sessions) as session:
        outbox.retry_request(session, request_id, now=services.clock(), by="cli")
    fail()
    follow_up(services, request_id)
    assert [m["To"] for m in sms_sent(exchanges)] == [services.settings.duty_phone] * 2
    assert set(sms_rows(services)) == {
        f"ticket-request:{request_id}:failed:1:{services.settings.duty_phone}",
        f"ticket-request:{request_id}:failed:2:{services.settings.duty_phone}",
    }


def test_a_phone_duplicate_alerts_on_duty_and_does_not_confirm_the_old_ticket_again(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange]
) -> None:
    services = twilio()
    first = open_request(services, caller=LANDLINE, topic="data_update")
    number = create(services, first)
    with transaction(services.sessions) as session:
        call = make_call(session, now=services.clock(), category="critical", topic=None)
        request_id = mark_phone_duplicate(
            session, call, number, now=services.clock(), calendar=services.calendar
        ).id
    assert create(services, request_id) == number
    follow_up(services, request_id)

    [alert] = sms_sent(exchanges)
    assert alert["To"] == services.settings.duty_phone
    assert alert["Body"].startswith(
        f"Заявка №{number} продублирована звонком: Диагностика критического сбоя на сервере."
    )
    assert f"ticket-request:{request_id}:caller" not in sms_rows(services)


def test_follow_ups_that_stay_in_the_database_are_done_at_once_the_rest_left_for_their_job(
    twilio: Callable[..., Services], exchanges: list[TwilioExchange], clock: MutableClock
) -> None:
    services = twilio()
    landline = open_request(services, caller=LANDLINE)
    mobile = open_request(services, caller=CALLER)
    for request_id in (landline, mobile):
        create(services, request_id)

    # A landline cannot take an SMS: recorded as skipped, nothing left.
    done = follow_up_locally(services, landline)
    assert not done.deferred
    assert done.notes == ["caller SMS: skipped (landline number, cannot receive SMS)"]
    assert request_row(services, landline).next_attempt_at is None
    # A mobile's SMS goes through Twilio: nothing done here, still due for the job.
    deferred = follow_up_locally(services, mobile)
    assert deferred.deferred
    assert deferred.notes == [f"for the follow-ups job: SMS ticket-request:{mobile}:caller to send"]
    assert request_row(services, mobile).next_attempt_at == clock.now
    assert sms_rows(services) == {
        f"ticket-request:{landline}:caller": ("skipped", "landline number, cannot receive SMS")
    }
    assert exchanges == []

    follow_up(services, mobile)  # the job
    assert [m["To"] for m in sms_sent(exchanges)] == [CALLER]
    # Not due any more: a replay does nothing.
    assert follow_up_locally(services, mobile).notes == ["nothing due"]
    assert follow_up_locally(services, landline).notes == ["nothing due"]


def test_without_a_twilio_account_every_sms_is_skipped_at_once_but_a_recording_waits(
    make_services: Callable[..., Services], clock: MutableClock
) -> None:
    services = make_services(twilio_account_sid=None, twilio_auth_token=None)
    request_id = open_request(services, category="critical", topic=None, vehicles=[])
    create(services, request_id)

    report = follow_up_locally(services, request_id)
    assert not report.deferred
    not_configured = "Twilio is not configured (set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)"
    assert sms_rows(services) == {
        f"ticket-request:{request_id}:caller": ("skipped", not_configured),
        # Nobody on the roster: the alert would go to the duty phone.
        f"ticket-request:{request_id}:alert:{services.settings.duty_phone}": (
            "skipped",
            not_configured,
        ),
    }
    row = request_row(services, request_id)
    assert row.next_attempt_at is None
    assert row.followups["caller_sms"] == "skipped"
    assert row.followups["alerts"] == {services.settings.duty_phone: "skipped"}

    # A recording that came in later is attached by the follow-ups job, not here.
    with transaction(services.sessions) as session:
        call = session.scalars(select(Call)).one()
        sid = new_recording_sid()
        add_recording(
            session,
            call,
            recording_sid=sid,
            recording_url=RECORDINGS + sid,
            kind="voicemail",
            now=services.clock(),
        )
    assert follow_up_locally(services, request_id).deferred
    assert request_row(services, request_id).next_attempt_at == clock.now
    follow_up(services, request_id)
    assert [e.attachment_name for e in history(services, row.ticket_number or "")] == [
        "Голосовое сообщение 27.11.2025 11:00.mp3"
    ]


def test_an_sms_left_for_retry_is_skipped_once_twilio_is_gone(
    twilio: Callable[..., Services], make_services: Callable[..., Services], clock: MutableClock
) -> None:
    unreachable = twilio(twilio_api_base_url=closed_port_url())
    request_id = open_request(unreachable)
    create(unreachable, request_id)
    follow_up(unreachable, request_id)
    key = f"ticket-request:{request_id}:caller"
    assert sms_rows(unreachable)[key][0] == "retry"

    # The account is removed before the retry: the retry's outcome is a skip.
    clock.now += outbox.retry_delay(1)
    offline = make_services(twilio_account_sid=None, twilio_auth_token=None)
    assert not follow_up_locally(offline, request_id).deferred
    assert sms_rows(offline)[key] == (
        "skipped",
        "Twilio is not configured (set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)",
    )
    row = request_row(offline, request_id)
    assert (row.next_attempt_at, row.followups["caller_sms"]) == (None, "skipped")


def test_whether_follow_ups_leave_the_database_is_told_from_the_draft(
    twilio: Callable[..., Services], make_services: Callable[..., Services]
) -> None:
    online = twilio()
    offline = make_services(twilio_account_sid=None, twilio_auth_token=None)

    def leaves(services: Services, status: str = "done", **draft: object) -> bool:
        stored = {"caller": CALLER, "priority": "normal", "recording_url": None, **draft}
        return leaves_database(
            status, stored, settings=services.settings, telephony=services.telephony
        )

    assert leaves(online)  # the caller's SMS
    assert not leaves(online, caller=LANDLINE)
    assert leaves(online, caller=LANDLINE, priority="critical")  # the on-duty alert
    assert leaves(online, "failed", caller=LANDLINE)  # the failure alert
    assert not leaves(offline)
    assert not leaves(offline, "failed")
    assert leaves(offline, recording_url=RECORDINGS + new_recording_sid())
