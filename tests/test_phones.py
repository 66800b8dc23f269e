"""Caller-ID normalisation: every spelling of a number, Twilio's withheld callers, SIP and
client identities, and junk that must never crash or turn into a number."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.phones import (
    TWILIO_WITHHELD_NUMBERS,
    CallerId,
    callback_number,
    classify,
    normalise,
)

KINDS = {"mobile", "landline", "tollfree", "withheld", "sip", "client", "foreign", "invalid"}
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@pytest.mark.parametrize(
    ("raw", "e164", "kind"),
    [
        ("8 (800) 250-60-77", "+78002506077", "tollfree"),
        ("+7 800 2506077", "+78002506077", "tollfree"),
        ("78002506077", "+78002506077", "tollfree"),
        ("8-916-123-45-67", "+79161234567", "mobile"),
        ("+79161234567", "+79161234567", "mobile"),
        ("9161234567", "+79161234567", "mobile"),
        ("8 (812) 607-77-41", "+78126077741", "landline"),
        ("+7 495 123 45 67", "+74951234567", "landline"),
        # What spreadsheets and word processors put in: non-breaking spaces, en dashes.
        ("8\u00a0916\u00a0123\u201345\u201367", "+79161234567", "mobile"),
        ("  +7 (916) 123.45.67  ", "+79161234567", "mobile"),
        # Russia's international prefix, and the 00 most of the world dials.
        ("810 49 30 12345678", "+493012345678", "foreign"),
        ("0049 30 12345678", "+493012345678", "foreign"),
        ("+44 20 7946 0958", "+442079460958", "foreign"),
        # Kazakhstan shares +7 with Russia.
        ("+7 701 234 5678", "+77012345678", "foreign"),
        ("tel:+79161234567;ext=12", "+79161234567", "mobile"),
    ],
)
def test_spellings_of_a_number_become_e164(raw: str, e164: str, kind: str) -> None:
    caller = classify(raw)
    assert (caller.e164, caller.kind) == (e164, kind)
    assert caller.is_number
    assert normalise(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "ANONYMOUS",
        "Restricted",
        "Unknown",
        "unknown",
        "Private",
        "Unavailable",
        "Blocked",
        "+266696687",
        "+7378742833",
        "+8656696",
        "+86282452253",
        "+2562533",
        "266696687",
        "+7 378 742 833",
        "sip:anonymous@anonymous.invalid",
        "sip:Anonymous@trunk.example;transport=udp",
        "sip:+266696687@trunk.example",
    ],
)
def test_withheld_callers_have_no_number(raw: str | None) -> None:
    caller = classify(raw)
    assert caller == CallerId(raw, None, "withheld")
    assert not caller.is_number
    assert not caller.is_russian_mobile
    assert caller.display == "Номер скрыт"
    assert normalise(raw) is None


def test_the_restricted_placeholder_is_not_read_as_a_russian_number() -> None:
    # +7378742833 starts like a Russian number; it is Twilio's RESTRICTED.
    assert TWILIO_WITHHELD_NUMBERS["7378742833"] == "RESTRICTED"
    assert classify("+7378742833").kind == "withheld"


def test_a_sip_trunk_forwarding_a_number_keeps_the_number() -> None:
    caller = classify("sip:+79161234567@trunk.example")
    assert caller.kind == "sip"
    assert caller.e164 == "+79161234567"
    assert caller.is_number and caller.is_russian_mobile
    assert caller.display == "+7 916 123-45-67"
    assert classify("sip:89161234567@trunk.example;user=phone").e164 == "+79161234567"
    assert classify("sips:+74951234567@trunk.example:5061").e164 == "+74951234567"


@pytest.mark.parametrize(
    "raw", ["sip:alice@pbx.example", "sip:1001@pbx.example", "sip:pbx.example", "SIP:bob@x"]
)
def test_sip_names_have_no_number(raw: str) -> None:
    caller = classify(raw)
    assert (caller.kind, caller.e164) == ("sip", None)
    assert caller.display == raw


def test_client_identities_have_no_number() -> None:
    caller = classify("client:operator_7")
    assert caller == CallerId("client:operator_7", None, "client")
    assert caller.display == "client:operator_7"
    # Even one that looks like a number: a Voice SDK identity is a name.
    assert classify("client:+79161234567").e164 is None


@pytest.mark.parametrize(
    "raw",
    [
        "8 916 123",
        "12345",
        "+",
        "+7",
        "ANONYMOUS1",
        # phonenumbers would read letters as keypad digits; a caller ID never has them.
        "1-800-FLOWERS",
        "8 916 123-45-67 доб. 12",
        "+7 916 123 45 67 89 01 23",
        "\x00\x01\x02",
        "\ud800",
        "９１６１２３４５６７",
        "9" * 10_000,
        "+" + "7" * 1_000,
    ],
)
def test_junk_is_invalid(raw: str) -> None:
    caller = classify(raw)
    assert (caller.kind, caller.e164) == ("invalid", None)
    assert caller.raw == raw
    assert len(caller.display) <= 60


def test_display_is_the_international_form() -> None:
    assert classify("89161234567").display == "+7 916 123-45-67"
    assert classify("88002506077").display == "+7 800 250-60-77"
    assert classify("\x00\x07").display == "—"


def test_russian_mobile_is_only_a_russian_mobile() -> None:
    assert classify("+79161234567").is_russian_mobile
    assert not classify("+74951234567").is_russian_mobile
    assert not classify("+78002506077").is_russian_mobile
    assert not classify("+77012345678").is_russian_mobile  # Kazakh mobile


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="+0123456789 ()-.:;@sipclent", max_size=40),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        st.from_regex(r"(sip|client|tel):.{0,80}", fullmatch=True),
        st.text(min_size=200, max_size=5_000),
    )
)
def test_any_string_classifies_without_raising(raw: str) -> None:
    caller = classify(raw)
    assert caller.raw == raw
    assert caller.kind in KINDS
    assert isinstance(caller.display, str)
    if caller.e164 is not None:
        assert E164.fullmatch(caller.e164)
        assert caller.kind not in {"withheld", "client", "invalid"}
        # E.164 is a fixed point: stored numbers read back as themselves.
        assert classify(caller.e164).e164 == caller.e164
    else:
        assert caller.kind in {"withheld", "sip", "client", "invalid"}


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"9[0-9]{9}", fullmatch=True))
def test_every_spelling_of_a_russian_mobile_agrees(national: str) -> None:
    spellings = [
        national,
        "8" + national,
        "7" + national,
        "+7" + national,
        f"8 ({national[:3]}) {national[3:6]}-{national[6:8]}-{national[8:]}",
        f"+7 {national[:3]} {national[3:]}",
        f"sip:+7{national}@trunk.example",
    ]
    numbers = {classify(s).e164 for s in spellings}
    assert len(numbers) == 1
    (e164,) = numbers
    if e164 is not None:
        assert e164 == "+7" + national
        assert classify(national).kind == "mobile"


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("89161234567", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("78126077741", "+78126077741"),
        ("12345", None),
        ("0", None),
        ("", None),
        ("14155550100", None),  # valid, but not Russian
        ("7378742833", None),  # Twilio's RESTRICTED placeholder
    ],
)
def test_a_typed_callback_number_is_a_valid_russian_number(typed: str, e164: str | None) -> None:
    assert callback_number(typed) == e164
