"""Reading what a caller said (Twilio's ru-RU `SpeechResult`) as words and numbers.

Speech recognition writes numbers either as numerals ("1042") or as words ("тысяча сорок
два", "один ноль четыре два"). `tokens` splits a result into lower-case words and numerals;
`spoken_number_groups` turns runs of number words into numerals. The word table comes from
`num2words` (the same library that says numbers back to callers), not a hand-made list.
"""

from __future__ import annotations

import re
from functools import cache

from num2words import num2words

_WORD = re.compile(r"[0-9]+|[^\W\d_]+", re.UNICODE)


def normalise_text(text: str | None) -> str:
    """Lower case, `ё` as `е`, punctuation as spaces."""
    if not text:
        return ""
    lowered = text.casefold().replace("ё", "е")
    return " ".join(_WORD.findall(lowered))


def tokens(text: str | None) -> list[str]:
    return _WORD.findall(normalise_text(text))


@cache
def _number_words() -> dict[str, int]:
    """Russian cardinal words → value: units, teens, tens, hundreds and both genders of
    one and two ("одна", "две" are how "тысяча" and feminine nouns take them)."""
    words: dict[str, int] = {}
    for value in [*range(20), *range(20, 100, 10), *range(100, 1000, 100)]:
        words[num2words(value, lang="ru").replace("ё", "е")] = value
    for value in (1, 2):
        words[num2words(value, lang="ru", gender="f")] = value
    return words


@cache
def _thousand_words() -> frozenset[str]:
    # "одна тысяча", "две тысячи", "пять тысяч": the last word of each is a form of "тысяча".
    return frozenset(num2words(n * 1000, lang="ru").split()[-1] for n in (1, 2, 5))


def _is_number_word(word: str) -> bool:
    return word in _number_words() or word in _thousand_words()


def _group_value(words: list[str]) -> list[str]:
    """Numerals for one run of number words.

    A run that names digits one by one ("один ноль четыре два") gives the digits; a
    compound number ("тысяча сорок два", "сто двадцать три") gives its value. A run that
    mixes both ("сто двадцать три семьдесят семь") splits where a smaller-order word is
    followed by a word of the same or a higher order.
    """
    table = _number_words()
    thousands = _thousand_words()
    if all(word in table and table[word] < 10 for word in words):
        return ["".join(str(table[word]) for word in words)]
    out: list[str] = []
    total = 0
    current = 0
    last_order = 10_000
    started = False
    for word in words:
        if word in thousands:
            total += (current or 1) * 1000
            current = 0
            last_order = 1000
            started = True
            continue
        value = table[word]
        order = 100 if value >= 100 else 10 if value >= 20 else 1
        if value == 0 or (started and order >= last_order):
            out.append(str(total + current))
            total, current, started = 0, 0, False
            if value == 0:
                out.append("0")
                last_order = 10_000
                continue
        current += value
        last_order = 1 if 10 <= value < 20 else order
        started = True
    if started:
        out.append(str(total + current))
    return out


def spoken_number_groups(text: str | None) -> list[str]:
    """The text's words with every run of number words replaced by numerals.

    >>> spoken_number_groups("а сто двадцать три вс семьдесят семь")
    ['а', '123', 'вс', '77']
    """
    out: list[str] = []
    run: list[str] = []
    for word in tokens(text):
        if _is_number_word(word):
            run.append(word)
            continue
        if run:
            out.extend(_group_value(run))
            run = []
        out.append(word)
    if run:
        out.extend(_group_value(run))
    return out


def spoken_digits(text: str | None) -> str:
    """All the digits in what the caller said ("тысяча сорок два" → "1042")."""
    return "".join(part for part in spoken_number_groups(text) if part.isdigit())
