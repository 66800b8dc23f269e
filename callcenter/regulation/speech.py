"""Russian phrases for the IVR and SMS: dates, weekdays, times and numbers.

Words come from libraries, not hand-made tables: month and weekday names from Babel's CLDR
data, the accusative a weekday takes after «в» ("в среду") from pymorphy3's dictionary,
numbers in words from num2words. Every moment is said in Moscow time.
"""

from __future__ import annotations

from datetime import date, datetime, time
from functools import cache, lru_cache

import phonenumbers
import pymorphy3
from babel.dates import format_date, format_datetime, format_time
from num2words import num2words

from callcenter.clock import MOSCOW

LOCALE = "ru"
# Russian vowels: «в» becomes «во» before a word that starts with в/ф and a consonant
# ("во вторник", but "в воскресенье").
_VOWELS = frozenset("аеёиоуыэюя")
# What may separate digits in a number a caller is read back (a phone, a ticket number).
_DIGIT_SEPARATORS = frozenset(" -+()./")
# The words below are pure functions of a few integers and of the libraries' data, and a
# dictionary lookup in pymorphy3 or num2words costs tens to hundreds of microseconds: the
# first webhook of an after-hours call says a moment in words, every ticket read back says
# its digits. They are memoised per process (bounded: days, hours, minutes, digits).
_WORDS_CACHE = 4096


@cache
def _morph() -> pymorphy3.MorphAnalyzer:
    # Loading the dictionary takes a tenth of a second; do it once, on first use.
    return pymorphy3.MorphAnalyzer(lang="ru")


def _moscow(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is needed, got naive {at.isoformat()}")
    return at.astimezone(MOSCOW)


def preposition_v(word: str) -> str:
    """«в» or «во» before `word`, by the euphony rule."""
    w = word.lower()
    if len(w) >= 2 and w[0] in "вф" and w[1] not in _VOWELS:
        return "во"
    return "в"


def weekday_name(d: date) -> str:
    """The weekday's name: "понедельник"."""
    return str(format_date(d, "EEEE", locale=LOCALE))


def on_weekday(d: date) -> str:
    """ "в понедельник", "во вторник", "в среду": the weekday in the accusative after «в»."""
    return _on_weekday(d.isoweekday())


@lru_cache(maxsize=7)
def _on_weekday(isoweekday: int) -> str:
    # 1-7 January 2024 run from Monday to Sunday.
    name = weekday_name(date(2024, 1, isoweekday))
    parsed = _morph().parse(name)[0]
    inflected = parsed.inflect({"accs"})
    word = inflected.word if inflected is not None else name
    return f"{preposition_v(word)} {word}"


def say_date(d: date, now: date | datetime | None = None) -> str:
    """ "1 декабря", with "2026 года" added when the year is not `now`'s year."""
    if now is not None:
        this_year = (_moscow(now) if isinstance(now, datetime) else now).year
        if d.year != this_year:
            return str(format_date(d, "d MMMM y 'года'", locale=LOCALE))
    return str(format_date(d, "d MMMM", locale=LOCALE))


def say_day(d: date, now: date | datetime | None = None) -> str:
    """ "в понедельник, 1 декабря"."""
    return f"{on_weekday(d)}, {say_date(d, now)}"


def say_time(at: datetime | time) -> str:
    """ "18:00", "9:30" (a speech engine reads it as a time)."""
    if isinstance(at, datetime):
        at = _moscow(at).time()
    return str(format_time(at, "H:mm", locale=LOCALE))


def say_deadline(due: datetime, now: date | datetime | None = None) -> str:
    """A deadline as the voice says it, all in words and in Moscow time: "до восемнадцати
    часов по московскому времени, в понедельник, первого декабря" (the year added, in
    words, when it is not `now`'s year)."""
    local = _moscow(due)
    day = local.date()
    year = ""
    if now is not None:
        this_year = (_moscow(now) if isinstance(now, datetime) else now).year
        if day.year != this_year:
            year = " " + say_ordinal_year(day.year)
    return (
        f"до {say_clock_genitive(local)} по московскому времени, "
        f"{on_weekday(day)}, {say_ordinal_day(day)}{year}"
    )


def say_clock_genitive(at: datetime | time) -> str:
    """ "восемнадцати часов", "одиннадцати часов двадцати трёх минут": a time of day in
    words, in the genitive "до" takes."""
    if isinstance(at, datetime):
        at = _moscow(at).time()
    said = _count_genitive(at.hour, "час")
    if at.minute:
        said += " " + _count_genitive(at.minute, "минута", feminine=True)
    return said


@lru_cache(maxsize=_WORDS_CACHE)
def _count_genitive(n: int, noun: str, *, feminine: bool = False) -> str:
    """ "двадцати одного часа", "двух минут": `n` `noun`s in the genitive."""
    morph = _morph()
    words = []
    for word in str(num2words(n, lang="ru")).split():
        grammemes = {"gent", "femn"} if feminine and word == "один" else {"gent"}
        inflected = morph.parse(word)[0].inflect(grammemes)
        words.append(inflected.word if inflected is not None else word)
    number = "sing" if n % 10 == 1 and n % 100 != 11 else "plur"
    noun_form = morph.parse(noun)[0].inflect({"gent", number})
    words.append(noun_form.word if noun_form is not None else noun)
    return " ".join(words)


@lru_cache(maxsize=_WORDS_CACHE)
def say_ordinal_year(year: int) -> str:
    """ "две тысячи двадцать шестого года": a year in words, in the genitive."""
    words = str(num2words(year, lang="ru", to="ordinal")).split()
    inflected = _morph().parse(words[-1])[0].inflect({"gent", "masc", "sing"})
    if inflected is not None:
        words[-1] = inflected.word
    return " ".join(words) + " года"


def say_datetime(at: datetime, now: date | datetime | None = None) -> str:
    """ "в понедельник, 1 декабря, в 11:00"."""
    local = _moscow(at)
    return f"{say_day(local.date(), now)}, в {say_time(local)}"


def format_deadline_short(due: datetime) -> str:
    """A deadline for an SMS: "до 18:00 01.12.2025"."""
    return "до " + str(format_datetime(_moscow(due), "HH:mm dd.MM.yyyy", locale=LOCALE))


@lru_cache(maxsize=_WORDS_CACHE)
def say_number(n: int) -> str:
    """ "сорок два"."""
    return str(num2words(n, lang="ru"))


def say_digits(digits: str) -> str:
    """A number read back digit by digit: "1042" → "один ноль четыре два".

    Separators (spaces, dashes, brackets, plus, dots, slashes) are skipped; anything else is
    an error, so a letter in a ticket number is never silently dropped.
    """
    words: list[str] = []
    for ch in digits:
        if ch.isdigit() and ch.isascii():
            words.append(say_number(int(ch)))
        elif ch not in _DIGIT_SEPARATORS:
            raise ValueError(f"cannot read {digits!r} digit by digit: {ch!r} is not a digit")
    if not words:
        raise ValueError(f"no digits to read in {digits!r}")
    return " ".join(words)


def say_ordinal(n: int) -> str:
    """ "первый", "третий", "двадцать первый": an ordinal in words, masculine nominative
    (a place in a queue)."""
    return str(num2words(n, lang="ru", to="ordinal"))


def say_phone(e164: str) -> str:
    """A phone number read back as it is dialled here, group by group, digit by digit:
    "+79161234567" → "восемь, девять один шесть, один два три, четыре пять, шесть семь"
    (the commas are the voice's pauses)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        written = e164
    else:
        # Russian numbers as dialled in Russia (8 …); others with their country code.
        style = (
            phonenumbers.PhoneNumberFormat.NATIONAL
            if parsed.country_code == 7
            else phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
        written = phonenumbers.format_number(parsed, style)
    groups = "".join(c if c.isdigit() else " " for c in written).split()
    return ", ".join(say_digits(group) for group in groups) if groups else say_digits(e164)


def say_ordinal_day(d: date) -> str:
    """ "пятого ноября", "двадцать третьего февраля": the day as an ordinal in the genitive,
    all in words (a TTS voice reads "5 ноября" as "пять ноября")."""
    return _ordinal_day(d.day, d.month)


@lru_cache(maxsize=_WORDS_CACHE)
def _ordinal_day(day: int, month: int) -> str:
    # The month's name in the genitive is the same in every year: Babel is given a leap
    # year, in which every day of every month exists.
    words = str(num2words(day, lang="ru", to="ordinal")).split()
    parsed = _morph().parse(words[-1])[0]
    inflected = parsed.inflect({"gent", "masc"}) or parsed.inflect({"gent"})
    if inflected is not None:
        words[-1] = inflected.word
    return f"{' '.join(words)} {format_date(date(2000, month, day), 'MMMM', locale=LOCALE)}"


def say_clock(at: datetime | time) -> str:
    """ "девять тридцать", "восемнадцать часов": a time of day in words."""
    if isinstance(at, datetime):
        at = _moscow(at).time()
    return _clock(at.hour, at.minute)


@lru_cache(maxsize=_WORDS_CACHE)
def _clock(hour: int, minute: int) -> str:
    hours = str(num2words(hour, lang="ru"))
    if minute:
        return f"{hours} {num2words(minute, lang='ru')}"
    hour_word = _morph().parse("час")[0].make_agree_with_number(hour)
    return f"{hours} {hour_word.word if hour_word is not None else 'часов'}"


def say_moment(at: datetime) -> str:
    """ "в четверг, пятого ноября, в девять тридцать по московскому времени"."""
    local = _moscow(at)
    day = local.date()
    return f"{on_weekday(day)}, {say_ordinal_day(day)}, в {say_clock(local)} по московскому времени"


@lru_cache(maxsize=_WORDS_CACHE)
def agree_with_number(word: str, n: int) -> str:
    """`word` in the form a count of `n` takes (pymorphy3): 1 клиент, 2 клиента, 7 клиентов."""
    parsed = _morph().parse(word)[0].make_agree_with_number(n)
    return parsed.word if parsed is not None else word
