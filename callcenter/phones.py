"""Caller-ID normalisation: whatever Twilio (or an operator's spreadsheet) calls a number,
turn it into one `CallerId` with an E.164 number where there is one.

Numbers are read with `phonenumbers`, Russia as the default region, so `8 (916) 123-45-67`,
`+7 916 1234567`, `79161234567` and `9161234567` are all `+79161234567`.

What is not a number is recognised, never guessed at:

* withheld callers — Twilio's words (`anonymous`, `Restricted`, `Unknown`, ...) and the
  placeholder numbers it puts in `From` instead, which spell the word on a phone keypad
  (`+266696687` ANONYMOUS, `+7378742833` RESTRICTED, ...; see `TWILIO_WITHHELD_NUMBERS`);
  `+7378742833` in particular looks Russian and must never be read as a +7 number;
* `sip:` URIs (calls from a SIP trunk or domain) and `client:` identities (Twilio's
  browser/mobile Voice SDK).

A SIP trunk forwards the real caller as the user part of the URI
(`sip:+79161234567@trunk.example`): such a caller is `kind="sip"` *and* carries the E.164, so
the directory finds the contact and SMS can reach them. A SIP user that is a name
(`sip:alice@pbx.example`) has no number. The RFC 3323 anonymous URI
(`sip:anonymous@anonymous.invalid`) is a withheld caller.

Letters are never read as keypad digits (phonenumbers would turn `ANONYMOUS` into
266696687), and `classify` never raises: any string, however long or strange, is a
`CallerId`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

DEFAULT_REGION = "RU"

CallerKind = Literal[
    "mobile", "landline", "tollfree", "withheld", "sip", "client", "foreign", "invalid"
]

# What Twilio puts in From/Caller when the caller withheld the number: the word spelled on
# a keypad (support.twilio.com, "Why am I getting calls from these strange numbers?").
TWILIO_WITHHELD_NUMBERS: dict[str, str] = {
    "266696687": "ANONYMOUS",
    "7378742833": "RESTRICTED",
    "8656696": "UNKNOWN",
    "86282452253": "UNAVAILABLE",
    "2562533": "BLOCKED",
    # The RESTRICTED placeholder has also been seen with a US country code in front.
    "17378742833": "RESTRICTED",
}

# The words themselves: Twilio passes them through on <Dial> legs since 2022, carriers and
# SIP phones send the others. Compared case-insensitively.
WITHHELD_WORDS = frozenset(
    {
        "anonymous",
        "restricted",
        "unknown",
        "unavailable",
        "private",
        "blocked",
        "withheld",
        "unknown caller",
        "private number",
    }
)

# Longer than any phone number anyone types, formatting included; longer input is junk.
_MAX_NUMBER_INPUT = 64
# E.164 allows 15 digits; a few more leave room for a trunk prefix like 810 or 00.
_MAX_DIGITS = 18

# Only these characters may appear in a number: digits, a leading plus and the separators
# people and spreadsheets write. Letters are refused (no keypad conversion).
_NUMBER_TEXT = re.compile(r"\+?[0-9 ()./\-]+", re.ASCII)
# Separators spreadsheets and word processors put into numbers.
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\u2009\t"), " ")
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")

_RUSSIAN_TYPES: dict[int, CallerKind] = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.TOLL_FREE: "tollfree",
}


@dataclass(frozen=True)
class CallerId:
    """Who is calling, as far as the caller ID tells.

    `e164` is set for every kind that is a reachable number (mobile, landline, tollfree,
    foreign) and for a SIP URI whose user part is one; `landline` means any valid Russian
    number that is neither mobile nor toll-free (fixed line, VoIP, shared cost).
    """

    raw: str | None
    e164: str | None
    kind: CallerKind

    @property
    def is_number(self) -> bool:
        """True when there is a number to look up and to call back."""
        return self.e164 is not None

    @property
    def is_russian_mobile(self) -> bool:
        """True when an SMS to `e164` reaches a Russian mobile phone."""
        if self.kind == "mobile":
            return True
        return self.e164 is not None and _kind_of_e164(self.e164) == "mobile"

    @property
    def display(self) -> str:
        """A human form for the supervisor console and tickets: "+7 916 123-45-67"."""
        if self.e164 is not None:
            return _international(self.e164)
        if self.kind == "withheld":
            return "Номер скрыт"
        text = _printable(self.raw or "")
        if not text:
            return "—"
        return text if len(text) <= 60 else text[:59] + "…"


# A call's number is read on its first webhook and again by every ticket draft of it:
# parsing with phonenumbers costs more than the rest of a draft's description. The result
# is a frozen value of the string alone.
@functools.lru_cache(maxsize=1024)
def classify(raw: str | None) -> CallerId:
    """Read a caller ID (Twilio's From/Caller, or a number typed by a person). Never raises."""
    text = (raw or "").strip()
    if not text or text.casefold() in WITHHELD_WORDS:
        return CallerId(raw, None, "withheld")
    scheme, _, rest = text.partition(":")
    scheme = scheme.casefold()
    if scheme in ("sip", "sips") and rest:
        return _classify_sip(raw, rest)
    if scheme == "client" and rest:
        return CallerId(raw, None, "client")
    if scheme == "tel" and rest:
        # RFC 3966: tel:+79161234567;ext=12 — the parameters are not part of the number.
        text = rest.split(";", 1)[0]
    if _is_withheld_placeholder(text):
        return CallerId(raw, None, "withheld")
    number = _parse(text)
    if number is None:
        return CallerId(raw, None, "invalid")
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return CallerId(raw, e164, _kind_of(number))


def callback_number(typed: str | None) -> str | None:
    """A callback number a caller typed on the keypad (`89161234567`, `9161234567`,
    `78126077741`): its E.164 when it is a valid Russian number, else None."""
    digits = "".join(ch for ch in typed or "" if ch.isdigit())
    if not digits or _is_withheld_placeholder(digits):
        return None
    number = _parse(digits)
    if number is None or phonenumbers.region_code_for_number(number) != DEFAULT_REGION:
        return None
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def normalise(raw: str | None) -> str | None:
    """The E.164 form of a number in any spelling, or None when it is not one."""
    return classify(raw).e164


def _classify_sip(raw: str | None, rest: str) -> CallerId:
    user, at, host = rest.partition("@")
    if not at:
        user, host = "", rest
    # User parameters (`;user=phone`, `;isub=`) and URI parameters/headers are not identity.
    user = user.split(";", 1)[0].strip()
    host = re.split(r"[;:?>]", host, maxsplit=1)[0].strip().casefold()
    if (
        user.casefold() in WITHHELD_WORDS
        or host == "anonymous.invalid"
        or _is_withheld_placeholder(user)
    ):
        return CallerId(raw, None, "withheld")
    if user:
        number = _parse(user.replace("%20", " "))
        if number is not None:
            return CallerId(raw, phonenumbers.format_number(number, PhoneNumberFormat.E164), "sip")
    return CallerId(raw, None, "sip")


def _is_withheld_placeholder(text: str) -> bool:
    if len(text) > _MAX_NUMBER_INPUT:
        return False
    digits = re.sub(r"[^0-9]", "", text, flags=re.ASCII)
    return digits in TWILIO_WITHHELD_NUMBERS and _NUMBER_TEXT.fullmatch(_tidy(text)) is not None


def _tidy(text: str) -> str:
    return text.translate(_SPACES).translate(_DASHES).strip()


def _parse(text: str) -> phonenumbers.PhoneNumber | None:
    if len(text) > _MAX_NUMBER_INPUT:
        return None
    text = _tidy(text)
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    digits = re.sub(r"[^0-9]", "", text)
    if not digits or len(digits) > _MAX_DIGITS:
        return None
    candidates = [text]
    if not text.startswith("+") and digits.startswith("00"):
        # The international prefix most of the world dials (Russia's own is 810, which
        # phonenumbers already understands).
        candidates.append("+" + digits[2:])
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, DEFAULT_REGION)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return number
    return None


def _kind_of(number: phonenumbers.PhoneNumber) -> CallerKind:
    if phonenumbers.region_code_for_number(number) != DEFAULT_REGION:
        # Kazakhstan shares +7 with Russia; its numbers are foreign here.
        return "foreign"
    return _RUSSIAN_TYPES.get(phonenumbers.number_type(number), "landline")


def _kind_of_e164(e164: str) -> CallerKind | None:
    try:
        return _kind_of(phonenumbers.parse(e164, None))
    except NumberParseException:
        return None


@functools.lru_cache(maxsize=1024)  # as `classify`: a draft shows the number it classified
def _international(e164: str) -> str:
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)


def _printable(text: str) -> str:
    # Caller IDs end up in HTML and logs: drop control characters and lone surrogates.
    return "".join(ch for ch in text if ch.isprintable()).strip()
