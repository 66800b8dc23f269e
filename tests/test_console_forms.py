"""The console's forms (`callcenter/console/forms.py`): a bad submission of each one is
answered with 400 and the problem in Russian on the page, beside what was typed, and
nothing is written."""

from __future__ import annotations

import html
import io
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from callcenter.db.models import CallNote, Contact, Organisation, Staff
from callcenter.services import Services
from tests.console_helpers import SampleLog, add_user, csrf_of, login, sample_log

HTML = {"Accept": "text/html"}
NAMES = SampleLog()


def text_of(response: Any) -> str:
    page = response.get_data(as_text=True)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture
def head(client: FlaskClient, services: Services) -> FlaskClient:
    add_user(services, "head", "supervisor")
    login(client, "head")
    return client


def post(client: FlaskClient, url: str, **fields: Any) -> Any:
    """A multipart POST, as a browser sends the console's forms; `(stream, name)` is a
    file. Encoded here in memory (the test client would spool a big body to a temporary
    file it never closes)."""
    values = {
        key: FileStorage(value[0], filename=value[1]) if isinstance(value, tuple) else value
        for key, value in {"csrf_token": csrf_of(client), **fields}.items()
    }
    boundary, body = encode_multipart(values)
    return client.post(
        url,
        data=body,
        headers=HTML,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def count(services: Services, model: Any) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# ---------------------------------------------------------------- sign-in and sessions


def test_login_without_a_password(client: FlaskClient, services: Services) -> None:
    add_user(services, "head", "supervisor")
    answer = post(client, "/console/login", name="head", password="")
    assert answer.status_code == 400
    assert "Введите имя пользователя и пароль." in text_of(answer)


def test_sign_out_everywhere_with_a_name_too_long_or_a_control_character(
    head: FlaskClient,
) -> None:
    long_name = post(head, "/console/sign-out-everywhere", name="и" * 121)
    assert long_name.status_code == 400
    assert "Имя пользователя длиннее 120 символов." in text_of(long_name)
    bell = post(head, "/console/sign-out-everywhere", name="head\x07")
    assert bell.status_code == 400
    assert "Недопустимый управляющий символ (U+0007): уберите его." in text_of(bell)
    assert head.get("/console/", headers=HTML).status_code == 200  # still signed in


# ---------------------------------------------------------------- calls


def test_a_note_with_a_control_character(services: Services, head: FlaskClient) -> None:
    sample_log(services)
    url = f"/console/calls/{NAMES.urgent_missed}/notes"
    answer = post(head, url, text="Перезвонил\x1b[31m в 11:30")
    assert answer.status_code == 400
    page = text_of(answer)
    assert "Недопустимый управляющий символ (U+001B): уберите его." in page
    assert "Перезвонил" in page  # what was typed stays in the form
    # Line breaks and tabs are text, not control characters, in a note.
    assert post(head, url, text="Перезвонил.\r\n\tКлиент доволен.").status_code == 302
    assert count(services, CallNote) == 1


# ---------------------------------------------------------------- directory


def test_a_contact_without_a_phone_or_with_an_unknown_organisation(
    services: Services, head: FlaskClient
) -> None:
    answer = post(
        head,
        "/console/directory/contacts/new",
        name="Новиков Павел",
        phones="  ",
        organisation_id="999",
        email="",
    )
    assert answer.status_code == 400
    page = text_of(answer)
    assert "Контакт не сохранён: исправьте отмеченные поля." in page
    assert "укажите номер телефона" in page
    assert "такой организации нет в справочнике: выберите из списка" in page
    assert "Новиков Павел" in answer.get_data(as_text=True)
    assert count(services, Contact) == 0
    assert count(services, Organisation) == 0


@pytest.mark.both_databases
def test_control_characters_in_the_directory_forms_are_refused_on_every_database(
    services: Services, head: FlaskClient
) -> None:
    contact = post(
        head,
        "/console/directory/contacts/new",
        name="Новиков\x01",
        phones="+7 903 000-00-01",
        new_organisation="ООО «Ромашка»\x7f",
        email="pavel\x1f@example.org",
    )
    assert contact.status_code == 400
    page = text_of(contact)
    assert page.count("Недопустимый управляющий символ") == 3
    # Refused by the form alone (the directory's own rules would take it): nothing written.
    name_only = post(
        head,
        "/console/directory/contacts/new",
        name="Новиков\x01",
        phones="+7 903 000-00-01",
        new_organisation="ООО «Ромашка»",
        email="",
    )
    assert name_only.status_code == 400
    assert "Недопустимый управляющий символ (U+0001): уберите его." in text_of(name_only)
    organisation = post(head, "/console/directory/organisations/new", name="", inn="77\x0b07")
    assert organisation.status_code == 400
    page = text_of(organisation)
    assert "Организация не сохранена: исправьте отмеченные поля." in page
    assert "укажите название" in page
    assert "Недопустимый управляющий символ (U+000B): уберите его." in page
    # A NUL never reaches a form (PostgreSQL could not store it): 400 from the guard.
    nul = post(head, "/console/directory/organisations/new", name="ООО\x00")
    assert nul.status_code == 400
    assert "недопустимый символ (NUL)" in text_of(nul)
    assert count(services, Contact) == 0
    assert count(services, Organisation) == 0


def test_an_organisation_with_an_email_too_long_for_its_column(
    services: Services, head: FlaskClient
) -> None:
    answer = post(
        head,
        "/console/directory/contacts/new",
        name="Новиков",
        phones="+7 903 000-00-01",
        new_organisation="ООО «Ромашка»",
        email="a" * 300 + "@example.org",
    )
    assert answer.status_code == 400
    assert "адрес почты длиннее 300 символов" in text_of(answer)
    assert count(services, Contact) == 0


def test_the_directory_upload_wants_a_csv_file_not_too_big(
    services: Services, head: FlaskClient
) -> None:
    url = "/console/directory/import"
    nothing = post(head, url)
    assert nothing.status_code == 400
    assert "Выберите CSV-файл для загрузки." in text_of(nothing)
    sheet = post(head, url, file=(io.BytesIO(b"PK\x03\x04"), "clients.xlsx"))
    assert sheet.status_code == 400
    page = text_of(sheet)
    assert "Файл «clients.xlsx» не загружен" in page
    assert "Нужен файл CSV (.csv): таблица, сохранённая как CSV." in page
    big = post(head, url, file=(io.BytesIO(b"a;" * (1536 * 1024 + 1)), "big.csv"))
    assert big.status_code == 400
    assert "Файл слишком большой: больше 3 МБ." in text_of(big)
    assert count(services, Organisation) == 0


# ---------------------------------------------------------------- roster


def test_the_roster_editor_refuses_a_roster_too_big_and_keeps_it(
    services: Services, head: FlaskClient
) -> None:
    typed = "staff: []\n" + "# " + "я" * (256 * 1024) + "\n"
    answer = post(head, "/console/roster", roster=typed)
    assert answer.status_code == 400
    assert "График больше 512 КБ — это не график." in text_of(answer)
    assert "я" * 1000 in answer.get_data(as_text=True)  # the editor keeps what was typed
    bell = post(head, "/console/roster", roster="staff: []\x07\n")
    assert bell.status_code == 400
    assert "Недопустимый управляющий символ (U+0007): уберите его." in text_of(bell)
    assert count(services, Staff) == 0


def test_the_roster_upload_wants_a_yaml_file_not_too_big(
    services: Services, head: FlaskClient
) -> None:
    url = "/console/roster"
    nothing = post(head, url, file=(io.BytesIO(b""), ""))
    assert nothing.status_code == 400
    assert "Выберите файл графика (roster.yaml)." in text_of(nothing)
    wrong = post(head, url, file=(io.BytesIO(b"staff: []\n"), "roster.docx"))
    assert wrong.status_code == 400
    assert "Нужен файл YAML (.yaml или .yml)." in text_of(wrong)
    big = post(head, url, file=(io.BytesIO(b"#" * (512 * 1024 + 1)), "roster.yaml"))
    assert big.status_code == 400
    assert "Файл слишком большой: больше 512 КБ — это не график." in text_of(big)
    assert count(services, Staff) == 0
