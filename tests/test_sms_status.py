"""Twilio's SMS status callbacks (`POST /webhooks/sms/status`) on the SMS ledger, and what
the call page says of each SMS.

Twilio posts a status callback for each change of an outbound message's status after its
creation, to the StatusCallback it was sent with; the requests may arrive late, more than
once and out of order, and an undelivered or failed one carries an ErrorCode
(https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks,
https://www.twilio.com/docs/messaging/api/message-resource#message-status-values). The
payload is Twilio's (`tests/fixtures/twilio/sms_status.json`), signed as Twilio signs it
(https://www.twilio.com/docs/usage/security#validating-requests).
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.db import transaction
from callcenter.db.models import Call, SmsMessage
from callcenter.routing.alerts import NO_SMS_NUMBER, send_chain_alerts
from callcenter.services import Services
from callcenter.telephony.client import NOT_CONFIGURED
from callcenter.tickets.notifications import SmsOutcome, send_unsettled, settle
from tests.conftest import DEFAULT_NOW, TEST_PUBLIC_BASE
from tests.console_helpers import add_user, login
from tests.twilio_requests import fixture, signature, signed_post

pytestmark = pytest.mark.both_databases  # the conditional UPDATE runs per dialect

STATUS = "/webhooks/sms/status"
SID = "SM" + "0123456789abcdef" * 2
OTHER_SID = "SM" + "f" * 32
CALL_SID = "CA" + "1" * 32


def report(status: str, sid: str = SID, **changes: str | None) -> dict[str, str]:
    """Twilio's status callback of message `sid` (SmsStatus mirrors MessageStatus)."""
    values: dict[str, str | None] = {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
    }
    return fixture("sms_status", **{**values, **changes})


def new_message(services: Services, **columns: Any) -> int:
    """A call and one SMS about it (by default: sent, Twilio's SID known)."""
    values: dict[str, Any] = {
        "key": f"chain-alert:{CALL_SID}:+79123456701",
        "to": "+79123456701",
        "recipient": "Иванов Иван",
        "body": "SKAI ТП: срочный звонок не принят.",
        "status": "sent",
        "twilio_sid": SID,
        "created_at": DEFAULT_NOW,
        "updated_at": DEFAULT_NOW,
    }
    values.update(columns)
    with transaction(services.sessions) as session:
        call = session.scalar(select(Call).where(Call.call_sid == CALL_SID))
        if call is None:
            call = Call(
                call_sid=CALL_SID,
                caller_raw="+79161234567",
                caller_e164="+79161234567",
                caller_kind="mobile",
                category="critical",
                outcome="completed",
                started_at=DEFAULT_NOW,
                updated_at=DEFAULT_NOW,
            )
            session.add(call)
            session.flush()
        message = SmsMessage(call_id=call.id, **values)
        session.add(message)
        session.flush()
        return message.id


def stored(services: Services, message_id: int) -> tuple[Any, ...]:
    with services.sessions() as session:
        row = session.get_one(SmsMessage, message_id)
        return (row.status, row.delivery, row.error_code, row.twilio_sid)


def post(client: FlaskClient, params: dict[str, str], message_id: int | None = None) -> Any:
    path = STATUS if message_id is None else f"{STATUS}?m={message_id}"
    return signed_post(client, path, params)


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def sms_rows(page: str) -> list[str]:
    """The «Кто оповещён» SMS table's rows as text."""
    table = re.search(r'<table class="legs cards" id="sms">(.*?)</table>', page, re.S)
    assert table, "no SMS table on the page"
    return [
        text_of(row) for row in re.findall(r"<tr data-state[^>]*>(.*?)</tr>", table.group(1), re.S)
    ]


# ---------------------------------------------------------------- the webhook


def test_a_request_without_twilios_signature_changes_nothing(
    services: Services, client: FlaskClient
) -> None:
    message_id = new_message(services)
    unsigned = client.post(f"{STATUS}?m={message_id}", data=report("delivered"))
    assert unsigned.status_code == 403
    # Signed for another message (the query is part of what Twilio signs).
    forged = client.post(
        f"{STATUS}?m={message_id}",
        data=report("delivered"),
        headers={
            "X-Twilio-Signature": signature(
                f"{TEST_PUBLIC_BASE}{STATUS}?m={message_id + 1}", report("delivered")
            )
        },
    )
    assert forged.status_code == 403
    assert stored(services, message_id) == ("sent", None, None, SID)


def test_reports_move_a_message_forward_never_back(services: Services, client: FlaskClient) -> None:
    message_id = new_message(services)
    # Out of order: Twilio's "delivered" arrives before its "sent".
    assert post(client, report("delivered"), message_id).status_code == 204
    assert stored(services, message_id) == ("sent", "delivered", None, SID)
    for late in ("sent", "sending", "queued", "delivered", "undelivered"):
        answer = post(client, report(late), message_id)
        assert (answer.status_code, answer.get_data()) == (204, b"")
        assert stored(services, message_id) == ("sent", "delivered", None, SID), late
    # Read receipts come after delivery (channels that have them).
    assert post(client, report("read"), message_id).status_code == 204
    assert stored(services, message_id)[1] == "read"


def test_an_undelivered_message_keeps_twilios_error_code(
    services: Services, client: FlaskClient
) -> None:
    message_id = new_message(services)
    post(client, report("sent"), message_id)
    post(client, report("sent"), message_id)  # a duplicate
    assert stored(services, message_id) == ("sent", "sent", None, SID)
    assert post(client, report("undelivered", ErrorCode="30003"), message_id).status_code == 204
    assert stored(services, message_id) == ("sent", "undelivered", "30003", SID)
    # A Messaging Service's own callback names no row: found by its MessageSid.
    assert post(client, report("delivered")).status_code == 204
    assert stored(services, message_id) == ("sent", "undelivered", "30003", SID)


def test_a_report_before_the_sending_job_wrote_the_sid_finds_its_message(
    services: Services, client: FlaskClient
) -> None:
    """Twilio may report "sent" before the job that sent it has settled the row: the URL
    names the row, so the report is kept, and the settling that follows keeps it too."""
    message_id = new_message(services, status="sending", twilio_sid=None)
    assert post(client, report("sent"), message_id).status_code == 204
    assert stored(services, message_id) == ("sending", "sent", None, SID)
    with transaction(services.sessions) as session:
        row = session.get_one(SmsMessage, message_id)
        # What the job writes once Twilio's answer is in (its claim: the row's time).
        outcome = SmsOutcome(row.key, "sent", None, SID, fresh=True, claimed_at=row.created_at)
        settle(session, outcome)
    assert stored(services, message_id) == ("sent", "sent", None, SID)


def test_an_unknown_message_is_answered_200_and_logged(
    services: Services, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    message_id = new_message(services)
    caplog.set_level("WARNING", logger="callcenter.tickets.delivery")
    unknown = post(client, report("delivered", sid=OTHER_SID))
    assert unknown.status_code == 200
    assert unknown.get_data(as_text=True).endswith("<Response />")  # nothing to do
    # The URL names our message, but the report is of another one.
    assert post(client, report("delivered", sid=OTHER_SID), message_id).status_code == 200
    assert post(client, report("delivered"), message_id + 100).status_code == 200
    assert stored(services, message_id) == ("sent", None, None, SID)
    lines = [r.getMessage() for r in caplog.records if "unknown message" in r.getMessage()]
    assert lines == [
        f"SMS status delivered for unknown message {OTHER_SID} (m=None): nothing to update",
        f"SMS status delivered for unknown message {OTHER_SID} (m={message_id}): nothing to update",
        f"SMS status delivered for unknown message {SID} (m={message_id + 100}): nothing to update",
    ]


@pytest.mark.parametrize(
    ("changes", "path", "why"),
    [
        ({"MessageSid": None, "SmsSid": None}, STATUS, "MessageSid '' is not a Message SID"),
        ({"MessageStatus": "bogus", "SmsStatus": None}, STATUS, "MessageStatus 'bogus'"),
        ({"ErrorCode": "30003abc"}, STATUS, "ErrorCode '30003abc' is not a number"),
        ({}, STATUS + "?m=first", "m='first' names no message"),
    ],
)
def test_a_malformed_report_is_a_plain_400_naming_the_problem(
    services: Services,
    client: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, str | None],
    path: str,
    why: str,
) -> None:
    message_id = new_message(services)
    caplog.set_level("WARNING", logger="webhooks.serving")
    answer = signed_post(client, path, report("delivered", **changes))
    assert answer.status_code == 400
    assert answer.mimetype == "text/plain"
    assert why in answer.get_data(as_text=True)
    assert any(why in r.getMessage() for r in caplog.records)  # logged with what was sent
    assert stored(services, message_id) == ("sent", None, None, SID)


# ---------------------------------------------------------------- never shown as sent


@pytest.fixture
def offline(make_services: Any) -> Services:
    """The embedded default: no Twilio account, so nothing can be sent."""
    svc: Services = make_services(twilio_account_sid=None, twilio_auth_token=None)
    return svc


def test_a_skipped_sms_is_never_shown_as_sent(
    services: Services, offline: Services, client: FlaskClient
) -> None:
    """Without a Twilio account the chain alerts are skipped, with the reason, and stay
    so: the call page and the API never call them sent, even when a (signed) report
    names one."""
    message_id = new_message(services, status="sending", twilio_sid=None)
    with transaction(services.sessions) as session:
        call = session.get_one(SmsMessage, message_id).call_id
        row = session.get_one(Call, call)
        row.routing_outcome = "nobody_accepted"
        row.routing_state = {
            "kind": "urgent",
            "phase": "voicemail",
            "step": 2,
            "steps": [
                [
                    {
                        "leg": 1,
                        "key": "ivanov",
                        "name": "Иванов Иван",
                        "number": "+79123456701",
                        "sms": "+79123456701",
                    }
                ],
                [
                    {
                        "leg": 2,
                        "key": "orlova",
                        "name": "Орлова Мария",
                        "number": "+78126077750",
                        "sms": None,
                    }
                ],
            ],
        }
        session.delete(session.get_one(SmsMessage, message_id))
    outcomes = send_chain_alerts(
        offline.sessions,
        offline.telephony,
        call,
        now=DEFAULT_NOW,
        status_callback=f"{TEST_PUBLIC_BASE}{STATUS}",
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        ("skipped", f"{NOT_CONFIGURED} (set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)"),
        ("skipped", NO_SMS_NUMBER),
    ]
    with services.sessions() as session:
        rows = session.scalars(
            select(SmsMessage).where(SmsMessage.call_id == call).order_by(SmsMessage.id)
        ).all()
        ids = [r.id for r in rows]
        assert [(r.recipient, r.to, r.status, r.delivery) for r in rows] == [
            ("Иванов Иван", "+79123456701", "skipped", None),
            ("Орлова Мария", None, "skipped", None),
        ]
    # A report naming a skipped message (it never reached Twilio) changes nothing.
    assert post(client, report("delivered"), ids[0]).status_code == 200
    assert stored(services, ids[0]) == ("skipped", None, None, None)

    add_user(services, "head", "supervisor")
    assert login(client, "head").status_code == 302
    page = client.get(f"/console/calls/{CALL_SID}").get_data(as_text=True)
    assert sms_rows(page) == [
        "Иванов Иван +7 912 345-67-01 никто не принял срочный звонок 11:00:00 "
        "не отправлено: не настроена учётная запись Twilio Подробности "
        f"{NOT_CONFIGURED} (set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)",
        "Орлова Мария — никто не принял срочный звонок 11:00:00 "
        f"не отправлено: нет мобильного номера Подробности {NO_SMS_NUMBER}",
    ]
    timeline = text_of(page[page.index('id="timeline"') :])
    assert (
        "11:00:00 SMS «никто не принял срочный звонок» — Орлова Мария: "
        "не отправлено: нет мобильного номера" in timeline
    )
    for sent_word in ("в очереди", "отправлено Twilio", "доставлено", "поставлено в очередь"):
        assert sent_word not in text_of(page), sent_word


def test_sent_and_delivered_read_as_twilio_reported(
    services: Services, client: FlaskClient
) -> None:
    """Each state the page can show, from our side and from Twilio's."""
    rows = [
        new_message(services, key="a", delivery=None),
        new_message(services, key="b", delivery="sent", updated_at=DEFAULT_NOW),
        new_message(services, key="c", delivery="delivered"),
        new_message(services, key="d", delivery="undelivered", error_code="30003"),
        new_message(services, key="e", delivery="failed", error_code="30008"),
        new_message(services, key="f", status="retry", twilio_sid=None, reason="timed out"),
        new_message(services, key="g", status="failed", twilio_sid=None, reason="HTTP 400"),
        new_message(services, key="h", status="sending", twilio_sid=None),
        new_message(services, key="i", status="unknown", twilio_sid=None, reason="stopped"),
    ]
    assert len(rows) == 9
    add_user(services, "head", "supervisor")
    assert login(client, "head").status_code == 302
    page = client.get(f"/console/calls/{CALL_SID}").get_data(as_text=True)
    states = [row.split(" 11:00:00 ", 1)[1] for row in sms_rows(page)]
    assert states == [
        "в очереди",
        "отправлено",
        "доставлено",
        "не доставлено (код 30003)",
        "не отправлено оператором (код 30008)",
        "не отправлено: Twilio недоступен, будет повтор Подробности timed out",
        "не отправлено: Twilio отклонил сообщение Подробности HTTP 400",
        "отправка не подтверждена",
        "неизвестно, ушло ли: отправка прервалась, повтора не будет Подробности stopped",
    ]


def test_the_ledger_sends_every_sms_with_a_status_callback_naming_its_row(
    services: Services,
) -> None:
    """What Twilio is asked to post to: the StatusCallback, with the row's id."""
    asked: list[tuple[str, str | None]] = []

    class Recorder:
        def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
            asked.append((to, status_callback))
            return SID

    new_message(services, key="existing")
    outcome = send_unsettled(
        services.sessions,
        Recorder(),  # type: ignore[arg-type]  # only send_sms is asked for
        key="k",
        to="+79123456701",
        body="x",
        now=DEFAULT_NOW,
        status_callback=f"{TEST_PUBLIC_BASE}{STATUS}",
        call_id=None,
    )
    assert outcome.status == "sent"
    assert asked == [("+79123456701", f"{TEST_PUBLIC_BASE}{STATUS}?m=2")]
