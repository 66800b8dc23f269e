"""Russian phrases the IVR says and the SMS carry."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from callcenter.clock import MOSCOW
from callcenter.regulation.speech import (
    format_deadline_short,
    on_weekday,
    preposition_v,
    say_date,
    say_datetime,
    say_day,
    say_deadline,
    say_digits,
    say_number,
    say_ordinal,
    say_phone,
    say_time,
    weekday_name,
)


def msk(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MOSCOW)


def test_say_deadline() -> None:
    """All in words, the clock in the genitive «до» takes, always «по московскому времени»."""
    assert say_deadline(msk("2025-12-01T18:00")) == (
        "до восемнадцати часов по московскому времени, в понедельник, первого декабря"
    )
    assert say_deadline(msk("2025-12-03T11:23")) == (
        "до одиннадцати часов двадцати трёх минут по московскому времени, в среду, третьего декабря"
    )
    assert say_deadline(msk("2025-12-05T21:01")) == (
        "до двадцати одного часа одной минуты по московскому времени, в пятницу, пятого декабря"
    )
    assert say_deadline(msk("2025-12-05T09:30")).startswith(
        "до девяти часов тридцати минут по московскому времени"
    )


@pytest.mark.parametrize(
    ("day", "phrase"),
    [
        (date(2025, 12, 1), "в понедельник"),
        (date(2025, 12, 2), "во вторник"),
        (date(2025, 12, 3), "в среду"),
        (date(2025, 12, 4), "в четверг"),
        (date(2025, 12, 5), "в пятницу"),
        (date(2025, 12, 6), "в субботу"),
        (date(2025, 12, 7), "в воскресенье"),
    ],
)
def test_weekdays_take_the_accusative_after_v(day: date, phrase: str) -> None:
    assert on_weekday(day) == phrase


def test_weekday_names_and_months_in_the_genitive() -> None:
    assert weekday_name(date(2025, 12, 3)) == "среда"
    assert say_date(date(2025, 12, 3)) == "3 декабря"
    assert say_date(date(2026, 3, 9)) == "9 марта"
    assert say_date(date(2026, 5, 11)) == "11 мая"
    assert say_day(date(2026, 1, 12)) == "в понедельник, 12 января"


def test_the_year_is_said_only_when_it_is_not_this_year() -> None:
    due = msk("2026-01-12T10:00")
    assert say_deadline(due, now=msk("2026-01-05T12:00")) == (
        "до десяти часов по московскому времени, в понедельник, двенадцатого января"
    )
    assert say_deadline(due, now=msk("2025-12-30T10:00")) == (
        "до десяти часов по московскому времени, в понедельник, двенадцатого января "
        "две тысячи двадцать шестого года"
    )
    # "Now" is taken in Moscow: 22:00 UTC on 31 December is already the new year there.
    assert say_date(date(2026, 1, 12), now=datetime(2025, 12, 31, 22, 0, tzinfo=UTC)) == (
        "12 января"
    )
    assert say_date(date(2026, 1, 12), now=date(2025, 12, 31)) == "12 января 2026 года"


def test_moments_are_said_in_moscow_time() -> None:
    # 15:00 UTC on Monday is 18:00 in Moscow.
    assert say_deadline(datetime(2025, 12, 1, 15, 0, tzinfo=UTC)) == (
        "до восемнадцати часов по московскому времени, в понедельник, первого декабря"
    )
    # 22:30 UTC on Monday is already Tuesday in Moscow.
    assert say_datetime(datetime(2025, 12, 1, 22, 30, tzinfo=UTC)) == (
        "во вторник, 2 декабря, в 1:30"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        say_deadline(datetime(2025, 12, 1, 18, 0))


def test_say_time() -> None:
    assert say_time(time(9, 30)) == "9:30"
    assert say_time(time(18, 0)) == "18:00"
    assert say_time(msk("2025-04-30T17:00")) == "17:00"


def test_say_datetime() -> None:
    assert say_datetime(msk("2025-12-03T11:05")) == "в среду, 3 декабря, в 11:05"


def test_sms_deadline() -> None:
    assert format_deadline_short(msk("2025-12-01T18:00")) == "до 18:00 01.12.2025"
    assert format_deadline_short(datetime(2026, 1, 12, 6, 30, tzinfo=UTC)) == (
        "до 09:30 12.01.2026"
    )


def test_say_digits() -> None:
    assert say_digits("1042") == "один ноль четыре два"
    assert say_digits("+7 (800) 250-60-77") == (
        "семь восемь ноль ноль два пять ноль шесть ноль семь семь"
    )
    with pytest.raises(ValueError, match="'T' is not a digit"):
        say_digits("T-1042")
    with pytest.raises(ValueError, match="no digits"):
        say_digits(" - ")


def test_say_number() -> None:
    assert say_number(42) == "сорок два"
    assert say_number(5) == "пять"


@pytest.mark.parametrize(
    ("n", "said"),
    [
        (1, "первый"),
        (3, "третий"),
        (11, "одиннадцатый"),
        (21, "двадцать первый"),
        (40, "сороковой"),
    ],
)
def test_a_place_in_a_queue_is_a_masculine_ordinal(n: int, said: str) -> None:
    assert say_ordinal(n) == said


def test_a_phone_is_read_back_as_dialled_group_by_group() -> None:
    assert say_phone("+79161234567") == (
        "восемь, девять один шесть, один два три, четыре пять, шесть семь"
    )
    assert (
        say_phone("+78126077741")
        == "восемь, восемь один два, шесть ноль семь, семь семь, четыре один"
    )
    # Abroad: with the country code, as a Russian caller would dial it after «+».
    assert say_phone("+441234567890").startswith("четыре четыре, ")


@pytest.mark.parametrize(
    ("word", "preposition"),
    [("вторник", "во"), ("Вторник", "во"), ("воскресенье", "в"), ("среду", "в"), ("фргу", "во")],
)
def test_v_becomes_vo_before_two_consonants(word: str, preposition: str) -> None:
    assert preposition_v(word) == preposition


def test_a_moment_is_said_in_words_in_the_right_case() -> None:
    from callcenter.regulation.speech import say_clock, say_moment, say_ordinal_day

    resumes = datetime.fromisoformat("2026-11-05T09:30:00+03:00")
    assert say_moment(resumes) == (
        "в четверг, пятого ноября, в девять тридцать по московскому времени"
    )
    assert say_ordinal_day(date(2026, 2, 23)) == "двадцать третьего февраля"
    assert say_clock(datetime.fromisoformat("2026-01-01T18:00:00+03:00")) == "восемнадцать часов"
    assert say_clock(datetime.fromisoformat("2026-01-01T21:00:00+03:00")) == ("двадцать один час")
