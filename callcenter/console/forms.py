"""The console's forms: Flask-WTF classes that read and check what a supervisor submits.

Every form that carries data is one of these classes (a form that is only a button —
retry a ticket, open one, mark a call called back, delete a contact, log out — carries
nothing but the CSRF token). The CSRF token is checked for every console POST by the
guard in `console.auth` before any view runs (Flask-WTF's CSRFProtect), so the forms
here do not check it a second time (`Meta.csrf = False`).

The forms check the shape of the input — present, not too long, no control characters,
a number where a number goes, an upload of the right kind and size — with messages in
Russian shown beside the field. What needs the database (a phone number taken by
another contact, an INN already used) stays with the directory's and the roster's own
rules (`directory_forms`, the importers), which answer in Russian too.

A NUL anywhere in a request is refused by the guard with 400 before any form sees it
(PostgreSQL cannot store one); other control characters are a form error here, on every
database alike.
"""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, FileSize
from wtforms import (
    Field,
    Form,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.meta import DefaultMeta
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from callcenter.directory.contacts import MAX_OVERRIDE_DAYS, TOPIC_SLUGS

MAX_NOTE_LENGTH = 2000
# Below the request bound (`web.MAX_CONTENT_LENGTH`, 4 MB), so a file too big gets this
# form's message rather than the bare 413 of the bound.
MAX_DIRECTORY_BYTES = 3 * 1024 * 1024
MAX_ROSTER_BYTES = 512 * 1024

# C0 and C1 control characters and DEL; tab is allowed everywhere (pasted from a
# spreadsheet), line breaks in multi-line fields only.
_CONTROL_IN_LINE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class NoControlCharacters:
    """No control characters (line breaks only where `multiline`): they come from no
    keyboard, only from a broken copy or a hostile request."""

    def __init__(self, *, multiline: bool = False) -> None:
        self.pattern = _CONTROL_IN_TEXT if multiline else _CONTROL_IN_LINE

    def __call__(self, form: Form, field: Field) -> None:
        found = self.pattern.search(field.data or "") if isinstance(field.data, str) else None
        if found is not None:
            code = f"U+{ord(found.group()):04X}"
            raise ValidationError(f"Недопустимый управляющий символ ({code}): уберите его.")


class MaxBytes:
    """At most `limit` bytes once encoded as UTF-8 (what the importers read)."""

    def __init__(self, limit: int, message: str) -> None:
        self.limit = limit
        self.message = message

    def __call__(self, form: Form, field: Field) -> None:
        if len((field.data or "").encode("utf-8")) > self.limit:
            raise ValidationError(self.message)


class ConsoleForm(FlaskForm):  # type: ignore[misc]  # flask-wtf ships no types
    """Every console form: no second CSRF check, WTForms' own messages in Russian."""

    class Meta:
        csrf = False  # checked for every console POST by `console.auth`'s guard
        locales = ("ru",)
        cache_translations = True

        def get_translations(self, form: Form) -> Any:
            # Flask-WTF translates only through Flask-Babel; WTForms' own catalogue has
            # Russian, used whatever the request's language.
            return DefaultMeta.get_translations(self, form)


def first_errors(form: Form, rename: dict[str, str] | None = None) -> dict[str, str]:
    """The first problem of each field, by field name (or its `rename`), for the page."""
    rename = rename or {}
    return {rename.get(name, name): errors[0] for name, errors in form.errors.items() if errors}


# ---------------------------------------------------------------- sign-in and sessions


class LoginForm(ConsoleForm):
    name = StringField(validators=[InputRequired("Введите имя пользователя."), Length(max=120)])
    password = PasswordField(validators=[InputRequired("Введите пароль."), Length(max=200)])
    next = HiddenField()


class SignOutForm(ConsoleForm):
    """A supervisor ends every session of `name` (blank: the supervisor's own)."""

    name = StringField(
        filters=[_strip],
        validators=[
            Length(max=120, message="Имя пользователя длиннее 120 символов."),
            NoControlCharacters(),
        ],
    )


# ---------------------------------------------------------------- calls


def _note_length(form: Form, field: Field) -> None:
    if len(field.data or "") > MAX_NOTE_LENGTH:
        raise ValidationError(
            f"Заметка длиннее {MAX_NOTE_LENGTH} символов ({len(field.data)}): сократите её."
        )


class NoteForm(ConsoleForm):
    text = TextAreaField(
        filters=[_strip],
        validators=[
            DataRequired("Заметка пустая: напишите текст."),
            _note_length,
            NoControlCharacters(multiline=True),
        ],
    )


# ---------------------------------------------------------------- directory

# Field messages are shown beside their field, in the style of the directory's own
# (`directory_forms`): lower case, no full stop.


class OrganisationChoice(SelectField):  # type: ignore[misc]  # wtforms ships no types
    """The contact's organisation from the directory's list ("" for a new one)."""

    def pre_validate(self, form: Form) -> None:
        try:
            super().pre_validate(form)
        except ValidationError:
            raise ValidationError(
                "такой организации нет в справочнике: выберите из списка"
            ) from None


NEW_ORGANISATION = SelectChoice("", "— новая организация —")


class ContactEditForm(ConsoleForm):
    name = StringField(
        filters=[_strip],
        validators=[
            DataRequired("укажите имя контакта"),
            Length(max=300, message="имя длиннее 300 символов"),
            NoControlCharacters(),
        ],
    )
    organisation_id = OrganisationChoice(choices=[NEW_ORGANISATION], default="")
    new_organisation = StringField(
        filters=[_strip],
        validators=[
            Length(max=300, message="название длиннее 300 символов"),
            NoControlCharacters(),
        ],
    )
    phones = TextAreaField(
        validators=[
            DataRequired("укажите номер телефона"),
            Length(max=2000, message="слишком длинный список номеров (больше 2000 символов)"),
            NoControlCharacters(multiline=True),
        ],
    )
    email = StringField(
        filters=[_strip],
        validators=[
            Length(max=300, message="адрес почты длиннее 300 символов"),
            NoControlCharacters(),
        ],
    )

    def offer(self, organisations: list[tuple[int, str]]) -> None:
        """The directory's organisations as the choices."""
        self.organisation_id.choices = [
            NEW_ORGANISATION,
            *(SelectChoice(str(id_), name) for id_, name in organisations),
        ]

    def organisation(self) -> int | None:
        """The chosen organisation's id, or None (a new one, or no valid choice)."""
        raw = self.organisation_id.data or ""
        return int(raw) if raw.isascii() and raw.isdigit() else None


def _days(form: Form, field: Field) -> None:
    value = field.data or ""
    if value and not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_OVERRIDE_DAYS):
        raise ValidationError(f"целое число рабочих дней от 1 до {MAX_OVERRIDE_DAYS}")


def _days_field() -> StringField:
    return StringField(filters=[_strip], validators=[_days])


class OrganisationEditForm(ConsoleForm):
    name = StringField(
        filters=[_strip],
        validators=[
            DataRequired("укажите название"),
            Length(max=300, message="название длиннее 300 символов"),
            NoControlCharacters(),
        ],
    )
    inn = StringField(
        filters=[_strip],
        validators=[
            Length(max=20, message="ИНН — это 10 или 12 цифр"),
            NoControlCharacters(),
        ],
    )
    stage_one_days = _days_field()

    def topic_days(self) -> dict[str, str]:
        return {slug: self[f"{slug}_days"].data or "" for slug in TOPIC_SLUGS}


# One days field per topic of the regulation, named `<topic>_days` as in the CSV import.
for _slug in TOPIC_SLUGS:
    setattr(OrganisationEditForm, f"{_slug}_days", _days_field())


class DirectoryImportForm(ConsoleForm):
    file = FileField(
        validators=[
            FileRequired("Выберите CSV-файл для загрузки."),
            FileAllowed(("csv", "txt"), "Нужен файл CSV (.csv): таблица, сохранённая как CSV."),
            FileSize(
                MAX_DIRECTORY_BYTES,
                message=f"Файл слишком большой: больше {MAX_DIRECTORY_BYTES // 1024 // 1024} МБ.",
            ),
        ]
    )


# ---------------------------------------------------------------- roster

ROSTER_TOO_BIG = "График больше 512 КБ — это не график."


class RosterTextForm(ConsoleForm):
    """The roster as YAML typed in the page's editor (blank: an empty roster)."""

    roster = TextAreaField(
        validators=[MaxBytes(MAX_ROSTER_BYTES, ROSTER_TOO_BIG), NoControlCharacters(multiline=True)]
    )


class RosterUploadForm(ConsoleForm):
    file = FileField(
        validators=[
            FileRequired("Выберите файл графика (roster.yaml)."),
            FileAllowed(("yaml", "yml", "txt"), "Нужен файл YAML (.yaml или .yml)."),
            FileSize(
                MAX_ROSTER_BYTES, message="Файл слишком большой: больше 512 КБ — это не график."
            ),
        ]
    )
