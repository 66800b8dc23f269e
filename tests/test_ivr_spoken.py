"""Reading ru-RU speech results: numbers said in words, Russian licence plates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from num2words import num2words

from callcenter.ivr.plates import PLATE_LETTERS, parse_plates, spoken_plate
from callcenter.ivr.spoken import normalise_text, spoken_digits, spoken_number_groups


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("1042", "1042"),
        ("заявка номер 1042.", "1042"),
        ("один ноль четыре два", "1042"),
        ("тысяча сорок два", "1042"),
        ("одна тысяча сорок два", "1042"),
        ("две тысячи двадцать пять", "2025"),
        ("ноль ноль семь", "007"),
        ("не помню", ""),
        ("", ""),
    ],
)
def test_ticket_numbers_are_read_from_numerals_and_words(said: str, digits: str) -> None:
    assert spoken_digits(said) == digits


@given(st.integers(min_value=0, max_value=999_999))
def test_any_number_said_in_words_reads_back(n: int) -> None:
    assert spoken_digits(num2words(n, lang="ru")) == str(n)


def test_text_is_lower_cased_without_punctuation_and_yo() -> None:
    assert normalise_text("Ещё ОДИН, вопрос!") == "еще один вопрос"
    assert spoken_number_groups("а сто двадцать три вс семьдесят семь") == ["а", "123", "вс", "77"]


@pytest.mark.parametrize(
    ("said", "plates"),
    [
        ("А123ВС77", ["А123ВС77"]),
        ("a123bc77", ["А123ВС77"]),  # Latin look-alikes
        ("а 123 вс 777", ["А123ВС777"]),
        ("А-123-ВС 77", ["А123ВС77"]),
        ("а сто двадцать три вэ эс семьдесят семь", ["А123ВС77"]),
        ("эм пятьсот пятьдесят пять эн эс сто девяносто девять", ["М555НС199"]),
        ("а123вс77 и в456ор178", ["А123ВС77", "В456ОР178"]),
        ("а123вс77 в456ор178 а123вс77", ["А123ВС77", "В456ОР178"]),
        ("такси ав 123 77", ["АВ12377"]),
        ("номер не помню", []),
        ("б123юя77", []),  # letters no plate uses
        (None, []),
    ],
)
def test_plates_are_read_as_people_say_them(said: str | None, plates: list[str]) -> None:
    assert parse_plates(said) == plates


@given(
    st.sampled_from(PLATE_LETTERS),
    st.integers(min_value=1, max_value=999),
    st.text(alphabet=PLATE_LETTERS, min_size=2, max_size=2),
    st.integers(min_value=1, max_value=799),
)
def test_a_plate_written_with_spaces_reads_back(
    first: str, digits: int, pair: str, region: int
) -> None:
    plate = f"{first}{digits:03d}{pair}{region:02d}"
    spaced = f"{first.lower()} {digits:03d} {pair.lower()} {region:02d}"
    assert parse_plates(spaced) == [plate]


def test_a_plate_is_read_back_sign_by_sign() -> None:
    # Letter names and digit words: nothing for the TTS voice to guess.
    assert spoken_plate("А123ВС77") == "а, один, два, три, вэ, эс, семь, семь"
    assert spoken_plate("12377") == "один, два, три, семь, семь"
