"""One rule set for problem rows: the red row, its badge, the quick filter and the
attention count all come from `calllog.review.RULES`, and the Python and SQL halves of
every rule agree on every call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from callcenter.callbacks import queue
from callcenter.calllog.dashboard import Period, figures
from callcenter.calllog.review import RULES, call_problems, has_problem, needs_attention
from callcenter.db import transaction
from callcenter.db.models import Call
from callcenter.services import Services
from tests.console_helpers import T0, add_call, add_user, login

pytestmark = pytest.mark.both_databases

VOICEMAIL_FAILED = "CA" + "b1" * 16
URGENT_NOT_RUNG = "CA" + "b2" * 16
URGENT_RUNG = "CA" + "b3" * 16
DUPLICATE_A = "CA" + "b4" * 16
DUPLICATE_B = "CA" + "b5" * 16
OVERDUE = "CA" + "b6" * 16


def _log(services: Services) -> None:
    with transaction(services.sessions) as session:
        # The lost client: a consultation voicemail whose callback ticket failed.
        add_call(
            session,
            VOICEMAIL_FAILED,
            T0 - timedelta(minutes=90),
            category="consultation",
            topic="consultation",
            routing_outcome="voicemail",
            ticket_status="failed",
        )
        # Urgent, hung up before anybody was rung: nobody "did not accept" it.
        add_call(
            session,
            URGENT_NOT_RUNG,
            T0 - timedelta(minutes=80),
            category="stolen",
            topic="stolen_vehicle",
            outcome="abandoned",
        )
        add_call(
            session,
            URGENT_RUNG,
            T0 - timedelta(minutes=70),
            category="critical",
            topic="critical_server_failure",
            ticket="2001",
            legs=(("no-answer", None), ("no-answer", None)),
        )
        # Two calls about one critical failure: one ticket, duplicated by phone.
        add_call(
            session,
            DUPLICATE_A,
            T0 - timedelta(minutes=60),
            ticket="2002",
            legs=(("accepted", 5),),
            category="critical",
            topic="critical_server_failure",
        )
        add_call(
            session,
            DUPLICATE_B,
            T0 - timedelta(minutes=50),
            ticket="2002",
            draft={"topic": "critical_server_failure"},
            category="critical",
            topic="critical_server_failure",
            legs=(("accepted", 5),),
        )
        add_call(
            session,
            OVERDUE,
            T0 - timedelta(minutes=40),
            category="incident",
            outcome="abandoned",
        )
    with transaction(services.sessions) as session:
        queue.refresh_queue(
            session, now=services.clock(), calendar=services.calendar, sla_minutes=30
        )


def test_python_and_sql_agree_on_every_kind(services: Services) -> None:
    _log(services)
    now = services.clock()
    with services.sessions() as session:
        calls = session.scalars(
            select(Call).options(
                selectinload(Call.legs),
                selectinload(Call.ticket_request),
                selectinload(Call.callback),
            )
        ).all()
        for rule in RULES:
            in_sql = set(
                session.scalars(
                    select(Call.call_sid).where(has_problem(rule.problem.kind, now=now))
                )
            )
            in_python = {c.call_sid for c in calls if rule.problem in call_problems(c, now=now)}
            assert in_sql == in_python, rule.problem.kind
        attention = set(session.scalars(select(Call.call_sid).where(needs_attention(now=now))))
        assert attention == {c.call_sid for c in calls if call_problems(c, now=now)}
        kinds = {c.call_sid: [p.kind for p in call_problems(c, now=now)] for c in calls}
    assert kinds[VOICEMAIL_FAILED] == ["ticket_failed", "callback_overdue"]
    assert kinds[URGENT_NOT_RUNG] == ["urgent_not_rung", "callback_overdue"]
    assert kinds[URGENT_RUNG] == ["urgent_unanswered", "callback_overdue"]
    assert kinds[DUPLICATE_A] == kinds[DUPLICATE_B] == []
    assert kinds[OVERDUE] == ["not_called_back", "callback_overdue"]


def test_the_lost_voicemail_is_a_red_row_a_badge_a_quick_filter_and_counted(
    services: Services, client: FlaskClient
) -> None:
    _log(services)
    add_user(services, "head", "supervisor")
    login(client, "head")

    page = client.get("/console/").get_data(as_text=True)
    opening = f'<tr class="problem" data-call-sid="{VOICEMAIL_FAILED}">'
    assert opening in page
    row = page[page.index(opening) :]
    row = row[: row.index("</tr>")]
    assert '<span class="badge badge-ticket_failed">Ошибка создания заявки</span>' in row
    # Every kind has its quick filter, labelled as its badge.
    for rule in RULES:
        assert f'data-problem="{rule.problem.kind}">{rule.problem.label}</a>' in page
    failed = client.get("/console/?problem=ticket_failed").get_data(as_text=True)
    assert VOICEMAIL_FAILED in failed and URGENT_RUNG not in failed
    attention = client.get("/console/?attention=true").get_data(as_text=True)
    assert VOICEMAIL_FAILED in attention and DUPLICATE_A not in attention
    rung = client.get("/console/?problem=urgent_not_rung").get_data(as_text=True)
    assert "Срочный: прерван до обзвона" in rung and URGENT_RUNG not in rung
    bad = client.get("/console/?problem=whatever")
    assert bad.status_code == 400

    with services.sessions() as session:
        f = figures(session, Period(T0.date(), T0.date()), lines={}, now=services.clock())
    assert f.attention == 4
    # Two calls, one ticket: one ticket opened (another for the urgent call rung).
    assert f.tickets_opened == 2
