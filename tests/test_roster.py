"""The roster: YAML import (all-or-nothing, errors by line), who is on duty across the
production calendar (a holiday, the transferred working Saturday 2025-11-01 with its short
day, nights), health warnings, alert numbers and the `callcenter roster` commands."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from callcenter.cli.context import CliContext
from callcenter.cli.roster import roster as roster_cli
from callcenter.clock import MOSCOW
from callcenter.db import transaction
from callcenter.db.models import Shift, Staff
from callcenter.errors import ImportRejected
from callcenter.roster.importer import import_roster, parse_roster
from callcenter.roster.on_duty import Roster, alert_numbers, on_duty, roster_health
from callcenter.services import Services

FIXTURES = Path(__file__).parent / "fixtures" / "roster"
EXAMPLE = Path(__file__).resolve().parent.parent / "scripts" / "examples" / "roster.yaml"


def msk(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MOSCOW)


def load(services: Services, name: str) -> None:
    with transaction(services.sessions) as session:
        import_roster(session, (FIXTURES / name).read_text(encoding="utf-8"))


def who(services: Services, at: str) -> tuple[list[str], list[str], list[str], bool]:
    """(consultation, urgent chain, escalation incl. head, working time) as staff keys."""
    with services.sessions() as session:
        duty = on_duty(session, msk(at), services.calendar)
    return (
        [p.key for p in duty.consultation],
        [p.key for p in duty.urgent_chain],
        [p.key for p in duty.escalation],
        duty.working_time,
    )


# ---------------------------------------------------------------- resolution


# (consultation, urgent chain, working time) at moments of late 2025, Moscow time.
EXPECTED_ON_DUTY = {
    # An ordinary working morning: both day specialists, Ivanov rung first.
    "2025-11-27T11:00": (["ivanov", "petrova"], ["ivanov", "petrova"], True),
    # The evening duty starts at the window's close and runs through the night ...
    "2025-11-27T18:00": (["sidorov"], ["sidorov"], False),
    "2025-11-28T03:00": (["sidorov"], ["sidorov"], False),
    "2025-11-28T09:29": (["sidorov"], ["sidorov"], False),
    # ... until the next working morning.
    "2025-11-28T09:30": (["ivanov", "petrova"], ["ivanov", "petrova"], True),
    # Friday night runs into the transferred working Saturday 2025-11-01 ...
    "2025-11-01T08:00": (["sidorov"], ["sidorov"], False),
    # ... which is a working day: the day shift is on.
    "2025-11-01T12:00": (["ivanov", "petrova"], ["ivanov", "petrova"], True),
    # It is a short day: "business" ends at 17:00 and the evening duty starts then,
    # while Petrova's explicit Saturday 10:00-18:00 (consultations) does not move.
    "2025-11-01T16:59": (["ivanov", "petrova"], ["ivanov", "petrova"], True),
    "2025-11-01T17:30": (["sidorov", "petrova"], ["sidorov"], False),
    # Sunday, then the holidays of 3 and 4 November: the days-off duty, 09:30 to 09:30.
    "2025-11-02T12:00": (["sidorov"], ["sidorov"], False),
    "2025-11-04T12:00": (["sidorov"], ["sidorov"], False),
    "2025-11-05T08:00": (["sidorov"], ["sidorov"], False),
    "2025-11-05T10:00": (["ivanov", "petrova"], ["ivanov", "petrova"], True),
    # Petrova is away 15-19 December.
    "2025-12-16T11:00": (["ivanov"], ["ivanov"], True),
    # New Year's night: Petrova's dated duty crosses midnight; she and Sidorov share
    # order 1 and the tie goes by key.
    "2026-01-01T02:00": (["sidorov"], ["petrova", "sidorov"], False),
    "2026-01-01T09:30": (["sidorov"], ["sidorov"], False),
}


def test_who_is_on_duty_follows_the_production_calendar(services: Services) -> None:
    load(services, "office.yaml")
    seen = {}
    for at in EXPECTED_ON_DUTY:
        consultation, chain, escalation, working = who(services, at)
        assert escalation == [*chain, "smirnova"], at
        seen[at] = (consultation, chain, working)
    assert seen == EXPECTED_ON_DUTY


def test_people_carry_normalised_phones_and_sms_numbers(services: Services) -> None:
    load(services, "office.yaml")
    with services.sessions() as session:
        people = Roster.load(session).people
    assert people["petrova"].phones == ("+79123456702", "+78126077750")
    # No sms field: the first mobile among the phones; an explicit one wins.
    assert people["petrova"].sms == "+79123456702"
    assert people["sidorov"].sms == "+79123456713"
    assert people["smirnova"].is_head


def test_the_example_roster_imports_and_covers_a_working_day(services: Services) -> None:
    with transaction(services.sessions) as session:
        report = import_roster(session, EXAMPLE.read_text(encoding="utf-8"))
    assert (report.staff, report.shifts, report.duties) == (4, 4, 2)
    assert who(services, "2025-11-27T11:00")[1] == ["ivanov", "petrova"]
    assert who(services, "2025-11-27T22:00")[1] == ["sidorov"]


# ---------------------------------------------------------------- import


def test_import_errors_are_reported_by_line_and_nothing_is_written(services: Services) -> None:
    load(services, "office.yaml")
    with pytest.raises(ImportRejected) as rejected, transaction(services.sessions) as session:
        import_roster(session, (FIXTURES / "broken.yaml").read_text(encoding="utf-8"))
    assert rejected.value.problems == [
        (1, "нет руководителя поддержки (сотрудника с role: head)"),
        (4, "ivanov: неверный номер телефона «12345»"),
        (5, "ключ «ivanov» повторяется (впервые в строке 2)"),
        (8, "petrova: нет номера телефона"),
        (10, "неизвестное поле «phnoes» (допустимы: away, key, name, phone, phones, role, sms)"),
        (
            13,
            "неизвестный день «wensday» (mon, tue, wed, thu, fri, sat, sun "
            "или working_days, days_off, daily)",
        ),
        (14, "неверное время «18:60» в часах «09:30-18:60» (ЧЧ:ММ, open или close)"),
        (16, "нет сотрудника с ключом «sidorov»"),
    ]
    # The previous roster is untouched.
    assert who(services, "2025-11-27T11:00")[1] == ["ivanov", "petrova"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", (1, "график пуст")),
        (
            "staff: [\n  - key: a\n",
            (2, "текст не читается как YAML (проверьте отступы и двоеточия)"),
        ),
        ("- just\n- a list\n", (1, "ожидаются разделы staff (сотрудники) и shifts (смены)")),
        (
            "staff:\n  - {key: boss, name: B, role: head, phones: '+79123456709'}\n"
            "  - key: ann\n    name: A\n    role: chief\n    phones: '+79123456708'\n",
            (5, "ann: неизвестная роль «chief» (specialist или head)"),
        ),
        (
            "staff:\n  - {key: boss, name: B, role: head, phones: '+79123456709'}\n"
            "  - {key: boss2, name: C, role: head, phones: '+79123456708'}\n",
            (3, "второй руководитель поддержки (boss2): руководитель может быть только один"),
        ),
        (
            "staff:\n  - {key: boss, name: B, role: head, phones: '+79123456709'}\n"
            "duties:\n  - {staff: boss, date: 2025-02-30, hours: business}\n",
            (4, "неверная дата «2025-02-30» (ГГГГ-ММ-ДД или ГГГГ-ММ-ДД..ГГГГ-ММ-ДД)"),
        ),
        (
            "staff:\n  - {key: boss, name: B, role: head, phones: '+79123456709'}\n"
            "shifts:\n  - {staff: boss, days: daily, hours: '9:30-18:00'}\n",
            (4, "неверное время «9:30» в часах «9:30-18:00» (ЧЧ:ММ, open или close)"),
        ),
        (
            "staff:\n  - {key: boss, name: B, role: head, phones: '+79123456709', "
            "sms: '+78126077741'}\n",
            (2, "boss: номер для SMS «+78126077741» не мобильный"),
        ),
    ],
)
def test_single_problems_are_named_with_their_line(text: str, problem: tuple[int, str]) -> None:
    with pytest.raises(ImportRejected) as rejected:
        parse_roster(text)
    assert rejected.value.problems == [problem]


def test_a_yaml_error_keeps_the_parsers_words_apart() -> None:
    with pytest.raises(ImportRejected) as rejected:
        parse_roster("staff: [\n  - key: a\n")
    [(line, why)] = rejected.value.problems
    assert why == "текст не читается как YAML (проверьте отступы и двоеточия)"
    assert getattr(why, "detail", "") == "expected the node content, but found '-'"


def test_a_new_import_replaces_the_roster_and_retires_missing_staff(services: Services) -> None:
    load(services, "office.yaml")
    with transaction(services.sessions) as session:
        report = import_roster(session, (FIXTURES / "daytime_only.yaml").read_text("utf-8"))
    assert sorted(report.deactivated) == ["petrova", "sidorov"]
    with services.sessions() as session:
        active = session.scalars(select(Staff.key).where(Staff.active.is_(True))).all()
        assert sorted(active) == ["ivanov", "smirnova"]
        assert session.scalar(select(func.count()).select_from(Shift)) == 1
    assert who(services, "2025-11-27T11:00")[1] == ["ivanov"]
    # Re-importing brings a retired person back, same row.
    load(services, "office.yaml")
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Staff)) == 4
    assert who(services, "2025-11-27T22:00")[1] == ["sidorov"]


# ---------------------------------------------------------------- health and alerts


def test_an_empty_roster_is_a_loud_warning(services: Services) -> None:
    with services.sessions() as session:
        warnings = roster_health(session, msk("2025-11-27T11:00"), services.calendar)
    assert warnings == [
        "График дежурств пуст: все звонки уходят на дежурный телефон из настроек "
        "(DUTY_PHONE), а если он не задан — на автоответчик. "
        "Загрузите график: callcenter roster import roster.yaml"
    ]


def test_a_sound_roster_has_no_warnings(services: Services) -> None:
    load(services, "office.yaml")
    with services.sessions() as session:
        assert roster_health(session, msk("2025-11-27T11:00"), services.calendar) == []


def test_gaps_in_urgent_cover_are_named(services: Services) -> None:
    load(services, "daytime_only.yaml")
    with services.sessions() as session:
        warnings = roster_health(session, msk("2025-11-27T11:00"), services.calendar)
    assert warnings == [
        "Нет дежурного для срочных звонков в ближайшие 7 дней: "
        "чт 27 ноября 18:00 – пт 28 ноября 09:30; пт 28 ноября 18:00 – пн 1 декабря 09:30; "
        "пн 1 декабря 18:00 – вт 2 декабря 09:30 и ещё 2."
    ]
    with services.sessions() as session:
        night = roster_health(session, msk("2025-11-27T23:00"), services.calendar)
    assert night[0] == (
        "Сейчас нет дежурного специалиста для срочных звонков: "
        "звонят только руководителю поддержки."
    )


def test_alert_numbers_are_the_sms_numbers_of_the_chain_and_head(services: Services) -> None:
    with services.sessions() as session:
        assert alert_numbers(
            session, msk("2025-11-27T11:00"), services.calendar, services.settings
        ) == [services.settings.duty_phone]
    load(services, "office.yaml")
    with services.sessions() as session:
        day = alert_numbers(session, msk("2025-11-27T11:00"), services.calendar, services.settings)
        night = alert_numbers(
            session, msk("2025-11-27T23:00"), services.calendar, services.settings
        )
    assert day == ["+79123456701", "+79123456702", "+79123456709"]
    assert night == ["+79123456713", "+79123456709"]


# ---------------------------------------------------------------- the commands


def test_roster_commands(services: Services) -> None:
    runner = CliRunner()
    cli = CliContext(services)

    rejected = runner.invoke(roster_cli, ["import", str(FIXTURES / "broken.yaml")], obj=cli)
    assert rejected.exit_code == 1
    assert f"{FIXTURES / 'broken.yaml'}:13: неизвестный день «wensday»" in rejected.output
    assert "roster not imported: 8 problem(s); nothing was changed" in rejected.output

    imported = runner.invoke(roster_cli, ["import", str(FIXTURES / "office.yaml")], obj=cli)
    assert imported.exit_code == 0, imported.output
    assert imported.output.splitlines()[0] == (
        "roster imported: 4 staff, 5 weekly shifts, 1 dated duties, 5 days away"
    )

    now = runner.invoke(roster_cli, ["now", "--at", "2026-01-01T02:00"], obj=cli)
    assert now.exit_code == 0, now.output
    assert now.output.splitlines() == [
        "at 2026-01-01 02:00 Moscow time (after hours):",
        "consultations: Сидоров Пётр [sidorov] +79123456703",
        "urgent chain (one at a time):",
        "  1. Петрова Анна [petrova] +79123456702, +78126077750",
        "  2. Сидоров Пётр [sidorov] +79123456703",
        "  3. Смирнова Елена [smirnova] +79123456709 (head of support)",
        "head of support: Смирнова Елена [smirnova] +79123456709",
    ]

    # An offset in --at is honoured: 08:00 UTC is 11:00 in Moscow.
    day = runner.invoke(roster_cli, ["now", "--at", "2025-11-27T08:00+00:00"], obj=cli)
    assert day.output.splitlines()[:4] == [
        "at 2025-11-27 11:00 Moscow time (working hours):",
        "consultations (rung at once):",
        "  Иванов Иван [ivanov] +79123456701",
        "  Петрова Анна [petrova] +79123456702, +78126077750",
    ]

    bad = runner.invoke(roster_cli, ["now", "--at", "tomorrow"], obj=cli)
    assert bad.exit_code == 2
    assert "'tomorrow' is not an ISO 8601 date-time" in bad.output

    shown = runner.invoke(roster_cli, ["show"], obj=cli)
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[:4] == [
        "smirnova: Смирнова Елена (head)",
        "  phones: +79123456709; sms: +79123456709",
        "ivanov: Иванов Иван (specialist)",
        "  phones: +79123456701; sms: +79123456701",
    ]
    assert "  consultation: sat 10:00-18:00, order 5" in shown.output
    assert "  urgent: 2025-12-31 18:00-09:30, order 1" in shown.output
    assert "  both: working_days business, order 1" in shown.output
