"""Russian vehicle registration plates from what a caller said or typed.

A standard plate (ГОСТ Р 50577) is a letter, three digits, two letters and a region code of
two or three digits: `А123ВС77`, `В456ОР178`. Only the twelve letters that look the same in
Latin script are used (А В Е К М Н О Р С Т У Х), which is why speech recognition may write
them in either alphabet. A taxi plate (`АВ12377`) is two letters, three digits, region.

`parse_plates` accepts what ru-RU speech recognition produces: either alphabet, any case,
spaces and dashes anywhere, letter names ("эм", "эн", "эс"), numbers as numerals or words,
and several plates in one answer. Plates are returned in Cyrillic capitals without spaces.
"""

from __future__ import annotations

import re

from num2words import num2words

from callcenter.ivr.spoken import spoken_number_groups

PLATE_LETTERS = "АВЕКМНОРСТУХ"
# Latin look-alikes of the plate letters.
_LATIN = str.maketrans("ABEKMHOPCTYX", PLATE_LETTERS)
# How the letters are named aloud, where the name cannot be read as plate letters itself
# ("ка" could be К+А, so it is not here; "эм" cannot be anything but М).
_LETTER_NAMES = {
    "вэ": "В",
    "э": "Е",
    "эм": "М",
    "эн": "Н",
    "эр": "Р",
    "эс": "С",
    "тэ": "Т",
    "хэ": "Х",
}
_L = f"[{PLATE_LETTERS}]"
_PLATE = re.compile(rf"{_L}\d{{3}}{_L}{{2}}\d{{2,3}}(?!\d)|{_L}{{2}}\d{{3}}\d{{2,3}}(?!\d)")


def _plate_text(word: str) -> str | None:
    """A word as plate characters, or None when it cannot be part of a plate."""
    if word.isdigit():
        return word
    if word in _LETTER_NAMES:
        return _LETTER_NAMES[word]
    upper = word.upper().translate(_LATIN)
    if all(ch in PLATE_LETTERS or ch.isdigit() for ch in upper):
        return upper
    return None


def parse_plates(text: str | None) -> list[str]:
    """Every plate in `text`, in the order said, without repeats."""
    found: list[str] = []
    # Words that cannot be part of a plate ("и", "номер", "машина") separate candidates.
    for chunk in _chunks(spoken_number_groups(text)):
        for match in _PLATE.finditer(chunk):
            if match.group() not in found:
                found.append(match.group())
    return found


def _chunks(words: list[str]) -> list[str]:
    chunks: list[str] = []
    current = ""
    for word in words:
        part = _plate_text(word)
        if part is None:
            if current:
                chunks.append(current)
            current = ""
        else:
            current += part
    if current:
        chunks.append(current)
    return chunks


# How each plate letter is named aloud when read back (the TTS voice would otherwise read
# "В" as the preposition and "С" as a syllable).
_SAID_LETTERS = {
    "А": "а",
    "В": "вэ",
    "Е": "е",
    "К": "ка",
    "М": "эм",
    "Н": "эн",
    "О": "о",
    "Р": "эр",
    "С": "эс",
    "Т": "тэ",
    "У": "у",
    "Х": "ха",
}


def spoken_plate(plate: str) -> str:
    """A plate as the IVR reads it back, one sign at a time in words:
    "А123ВС77" → "а, один, два, три, вэ, эс, семь, семь"."""
    said = []
    for sign in plate:
        if sign.isdigit():
            said.append(num2words(int(sign), lang="ru"))
        elif sign.upper() in _SAID_LETTERS:
            said.append(_SAID_LETTERS[sign.upper()])
        elif sign.strip():
            said.append(sign.lower())
    return ", ".join(said)
