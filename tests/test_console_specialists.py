"""Per-specialist figures on the dashboard: offered, answered, missed, median time to
answer, callbacks done."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask.testing import FlaskClient

from callcenter.calllog.dashboard import Period
from callcenter.calllog.specialists import specialist_figures
from callcenter.db import transaction
from callcenter.db.models import Call, DialLeg, Staff
from callcenter.services import Services
from tests.console_helpers import add_user, login
from tests.test_console_dashboard import text_of

NOV_20 = datetime.fromisoformat("2025-11-20T10:00:00+03:00")


def add_call(
    services: Services,
    sid: str,
    at: datetime,
    legs: list[tuple[str | None, str, str, int | None]],
    *,
    called_back_by: str | None = None,
) -> None:
    """A call with its legs: (staff key, number, result, seconds to pick up)."""
    with transaction(services.sessions) as session:
        call = Call(
            call_sid=sid,
            line="+78002506077",
            category="critical",
            outcome="completed",
            started_at=at,
            updated_at=at,
            called_back_at=at + timedelta(minutes=30) if called_back_by else None,
            called_back_by=called_back_by,
        )
        session.add(call)
        session.flush()
        for position, (key, number, result, pickup) in enumerate(legs, start=1):
            ring = at + timedelta(seconds=30 + position)
            session.add(
                DialLeg(
                    call_id=call.id,
                    position=position,
                    staff_key=key,
                    staff_name={"ivanov": "Иванов И.", "petrova": "Петрова А."}.get(key or ""),
                    number=number,
                    started_at=ring,
                    answered_at=ring + timedelta(seconds=pickup) if pickup is not None else None,
                    ended_at=ring + timedelta(seconds=60),
                    result=result,
                )
            )


def sample(services: Services) -> None:
    with transaction(services.sessions) as session:
        session.add(Staff(key="ivanov", name="Иванов Иван", role="specialist", phones=[]))
        session.add(Staff(key="petrova", name="Петрова Анна", role="specialist", phones=[]))
        session.add(Staff(key="smirnova", name="Смирнова Елена", role="head", phones=[]))
    ivanov, petrova, duty = "+79123456701", "+79123456702", "+78126077700"
    add_call(
        services,
        "CA1",
        NOV_20,
        [("ivanov", ivanov, "no-answer", None), ("petrova", petrova, "accepted", 8)],
        called_back_by="ivanov",
    )
    # Rung together: Ivanov took it, Petrova's phone stopped ringing (not a miss).
    add_call(
        services,
        "CA2",
        NOV_20 + timedelta(hours=1),
        [("ivanov", ivanov, "accepted", 4), ("petrova", petrova, "canceled", None)],
        called_back_by="Петрова Анна",
    )
    # Two legs of one person on one call: one call offered, answered on the second phone.
    add_call(
        services,
        "CA3",
        NOV_20 + timedelta(hours=2),
        [("ivanov", ivanov, "busy", None), ("ivanov", "+79123456777", "accepted", 10)],
        called_back_by="head",
    )
    # The duty phone outside the roster; picked up without pressing 1.
    add_call(
        services,
        "CA4",
        NOV_20 + timedelta(hours=3),
        [(None, duty, "not-accepted", 6)],
    )
    # Outside the period.
    add_call(services, "CA5", NOV_20 - timedelta(days=5), [("ivanov", ivanov, "no-answer", None)])


def test_figures_per_person(services: Services) -> None:
    sample(services)
    with services.sessions() as session:
        people = specialist_figures(
            session, Period(NOV_20.date() - timedelta(days=1), NOV_20.date())
        )
    table = [
        (p.name, p.in_roster, p.offered, p.answered, p.missed, p.median_answer_seconds, p.callbacks)
        for p in people
    ]
    assert table == [
        ("Иванов Иван", True, 3, 2, 1, 7.0, 1),
        ("Петрова Анна", True, 2, 1, 0, 8.0, 1),
        ("+78126077700", False, 1, 0, 1, None, 0),
        ("head", False, 0, 0, 0, None, 1),
    ]


def test_a_missed_call_counts_once_per_person(services: Services) -> None:
    sample(services)
    with services.sessions() as session:
        people = specialist_figures(
            session, Period(NOV_20.date() - timedelta(days=5), NOV_20.date())
        )
    ivanov = next(p for p in people if p.key == "ivanov")
    # CA1 (no answer, a colleague took it), CA2, CA3 and CA5 (no answer).
    assert (ivanov.offered, ivanov.answered, ivanov.missed) == (4, 2, 2)


def test_the_dashboard_shows_the_table_for_the_chosen_period(
    services: Services, client: FlaskClient
) -> None:
    sample(services)
    add_user(services, "head", "supervisor")
    login(client, "head")

    page = client.get("/console/dashboard?from=2025-11-19&to=2025-11-20").get_data(as_text=True)

    found = re.search(r'<table id="specialists".*?</table>', page, re.S)
    assert found, page
    table = text_of(found.group(0))
    assert table.startswith(
        "Сотрудник Звонков предложено Принято Пропущено Медиана ответа Перезвонили "
        "Иванов Иван 3 2 1 7 с 1 "
    )
    assert "Петрова Анна 2 1 0 8 с 1" in table
    assert "+78126077700 (не в графике) 1 0 1 — 0" in table
    assert "head (не в графике) 0 0 0 — 1" in table

    empty = client.get("/console/dashboard?from=2025-10-01&to=2025-10-02").get_data(as_text=True)
    assert "За период никому из сотрудников не звонили." in text_of(empty)
