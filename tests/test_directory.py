"""The caller directory on SQLite and PostgreSQL: lookup by any spelling, the all-or-nothing
CSV import with its per-line report, re-import, and the `callcenter directory` command."""

from __future__ import annotations

import csv
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db import transaction
from callcenter.db.models import Contact, ContactPhone, Organisation
from callcenter.directory.contacts import find_contact, identify_caller, inn_problem
from callcenter.directory.importer import ImportReport, export_rows, import_csv, import_directory
from callcenter.errors import ImportRejected
from callcenter.phones import classify
from callcenter.services import Services

FIXTURES = Path(__file__).parent / "fixtures" / "directory"
GOOD = FIXTURES / "good.csv"


def _import(services: Services, path: Path) -> ImportReport:
    with transaction(services.sessions) as session:
        return import_csv(session, path, services.clock())


def _snapshot(services: Services) -> list[tuple[Any, ...]]:
    """Everything the directory holds, to compare before and after a refused import."""
    with services.sessions() as session:
        rows: list[tuple[Any, ...]] = [
            (o.id, o.name, o.inn, o.stage_one_days, o.topic_days)
            for o in session.scalars(select(Organisation).order_by(Organisation.id))
        ]
        rows += [
            (c.id, c.name, c.email, c.organisation_id)
            for c in session.scalars(select(Contact).order_by(Contact.id))
        ]
        rows += [
            (p.id, p.e164, p.contact_id)
            for p in session.scalars(select(ContactPhone).order_by(ContactPhone.id))
        ]
        return rows


def _seed_other_contact(services: Services) -> None:
    """A contact the bad file collides with: Ершов owns +7 903 999-88-77."""
    now = services.clock()
    with transaction(services.sessions) as session:
        org = Organisation(name="ЗАО «Старое»", created_at=now, topic_days={})
        contact = Contact(name="Ершов Егор", organisation=org, created_at=now)
        contact.phones.append(ContactPhone(e164="+79039998877"))
        session.add(org)


def _contact_name(session: Session, raw: str | None) -> str | None:
    contact = find_contact(session, raw)
    return contact.name if contact else None


# ---------------------------------------------------------------- field rules


@pytest.mark.parametrize("inn", ["7707083893", "7707123458", "0274062111", "500100732259"])
def test_valid_inns(inn: str) -> None:
    assert inn_problem(inn) is None


@pytest.mark.parametrize(
    ("inn", "why"),
    [
        ("7707083894", "не сходится контрольная цифра (опечатка?)"),
        ("500100732258", "не сходится контрольная цифра (опечатка?)"),
        ("77070838", "нужно 10 или 12 цифр, а не 8"),
        (
            "274062111",
            "нужно 10 или 12 цифр, а не 9 (таблица могла отбросить ведущий ноль: "
            "задайте столбцу текстовый формат)",
        ),
        ("77070838AB", "только цифры"),
        ("７７０７０８３８９３", "только цифры"),
    ],
)
def test_invalid_inns(inn: str, why: str) -> None:
    assert inn_problem(inn) == why


# ---------------------------------------------------------------- import and lookup


def test_good_file_imports_and_every_spelling_finds_the_contact(services: Services) -> None:
    report = _import(services, GOOD)
    assert report == ImportReport(organisations_created=4, contacts_created=5)

    with services.sessions() as session:
        for spelling in (
            "+79161234567",
            "8 (916) 123-45-67",
            "89161234567",
            "79161234567",
            "9161234567",
            "+7 495 123-45-67",
            "sip:+79161234567@trunk.example",
        ):
            assert _contact_name(session, spelling) == "Иванов Иван", spelling
        assert _contact_name(session, "+79265550102") == "Смирнова Анна"
        assert _contact_name(session, "8 812 607 00 11") == "Диспетчерская"
        assert _contact_name(session, "+79990000000") is None

        orgs = {o.name: o for o in session.scalars(select(Organisation))}
        assert set(orgs) == {
            "ООО «ТрансЛогистик»",
            "АО «СеверТранс»",
            "ООО «Агротех»",
            "ИП Кузнецов Олег",
        }
        sever = orgs["АО «СеверТранс»"]
        # The dispatcher's row had no INN; the name tied it to the INN on the row above.
        assert sever.inn == "7810123451"
        assert (sever.stage_one_days, sever.topic_days) == (2, {"consultation": 3})
        assert sorted(c.name for c in sever.contacts) == ["Диспетчерская", "Петров Пётр"]
        agro = orgs["ООО «Агротех»"]
        assert (agro.inn, agro.stage_one_days, agro.topic_days) == (
            None,
            None,
            {"stolen_vehicle": 2},
        )
        assert orgs["ИП Кузнецов Олег"].inn == "771234567859"
        assert orgs["ИП Кузнецов Олег"].contacts == []
        ivanov = find_contact(session, "89161234567")
        assert ivanov is not None
        assert ivanov.email == "ivanov@translogistic.example"
        assert sorted(p.e164 for p in ivanov.phones) == ["+74951234567", "+79161234567"]


NO_NUMBER = [
    None,
    "",
    "anonymous",
    "Restricted",
    "+266696687",
    "+7378742833",
    "sip:alice@pbx.example",
    "sip:anonymous@anonymous.invalid",
    "client:+79161234567",
    "client:ivanov",
    "9161234",
]


def test_callers_without_a_number_never_match(services: Services) -> None:
    _import(services, GOOD)
    with services.sessions() as session:
        for raw in NO_NUMBER:
            assert find_contact(session, raw) is None, raw
            identity = identify_caller(session, raw)
            assert identity.caller == classify(raw)
            assert (identity.contact, identity.organisation, identity.known) == (
                None,
                None,
                False,
            ), raw


def test_identify_caller_gives_contact_and_organisation(services: Services) -> None:
    _import(services, GOOD)
    with services.sessions() as session:
        identity = identify_caller(session, "8-921-700-10-20")
        assert identity.known
        assert identity.caller.e164 == "+79217001020"
        assert identity.caller.kind == "mobile"
        assert identity.contact is not None and identity.contact.name == "Петров Пётр"
        assert identity.organisation is not None
        assert identity.organisation.name == "АО «СеверТранс»"

        unknown = identify_caller(session, "+79990001122")
        assert unknown.caller.e164 == "+79990001122"
        assert not unknown.known


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.one_of(st.text(max_size=60), st.sampled_from(["anonymous", "+266696687"])))
def test_a_lookup_matches_only_the_number_itself(services: Services, raw: str) -> None:
    """Whatever the caller ID, a match is the contact owning exactly its E.164 number."""
    with transaction(services.sessions) as session:
        if session.scalar(select(Contact.id).limit(1)) is None:
            import_csv(session, GOOD, services.clock())
    with services.sessions() as session:
        contact = find_contact(session, raw)
        e164 = classify(raw).e164
        if contact is not None:
            assert e164 in {p.e164 for p in contact.phones}
        elif e164 is not None:
            assert session.scalar(select(ContactPhone).where(ContactPhone.e164 == e164)) is None


def test_bad_rows_are_all_reported_and_nothing_is_written(services: Services) -> None:
    _seed_other_contact(services)
    before = _snapshot(services)

    with pytest.raises(ImportRejected) as rejected:
        _import(services, FIXTURES / "bad.csv")

    assert rejected.value.problems == [
        (3, "неверный телефон «8 916 123»: это не номер телефона"),
        (3, "неверная почта «smirnova@translogistic»: это не адрес электронной почты"),
        (4, "неверный ИНН «7810123452»: не сходится контрольная цифра (опечатка?)"),
        (5, "не указана организация: нужно название или ИНН"),
        (
            6,
            "неизвестная организация: в справочнике нет ИНН 7707083893 "
            "(укажите название, чтобы добавить её)",
        ),
        (7, "не указано ФИО контакта"),
        (8, "телефон +79161234567 повторяется: он уже есть в строке 2"),
        (9, "неверный срок stage_one_days: «0» — нужно целое число рабочих дней от 1 до 250"),
        (
            9,
            "неверный срок consultation_days: «пять» — нужно целое число рабочих дней от 1 до 250",
        ),
        (10, "неверный телефон «+266696687»: это заглушка Twilio для скрытого номера (ANONYMOUS)"),
        (
            11,
            "телефон +79039998877 уже принадлежит контакту Ершов Егор (ЗАО «Старое»), "
            "которого нет в этом файле",
        ),
        (
            12,
            "ячеек 8, а в заголовке столбцов 7 (ячейку с разделителем внутри нужно взять "
            "в кавычки)",
        ),
        (14, "разные сроки stage_one_days у ООО «ТрансЛогистик»: 2 в строке 13, 3 здесь"),
    ]
    assert _snapshot(services) == before


def test_a_refused_import_leaves_an_existing_directory_alone(services: Services) -> None:
    _import(services, GOOD)
    before = _snapshot(services)
    # Valid rows that would change things, plus one bad row: none of it may land.
    data = (
        "organisation,inn,contact,phones,stage_one_days\n"
        "ООО «ТрансЛогистик»,7707123458,Иванов Иван,+7 916 000-00-01,4\n"
        "Новая фирма,,Новый Контакт,+7 916 000-00-02,\n"
        "Новая фирма,,Ещё Один,client:bob,\n"
    ).encode()
    with pytest.raises(ImportRejected) as rejected:
        with transaction(services.sessions) as session:
            import_directory(session, data, services.clock())
    assert rejected.value.problems == [
        (4, "неверный телефон «client:bob»: адрес client:, а не номер телефона")
    ]
    assert _snapshot(services) == before


def test_semicolon_bom_file_with_russian_headers(services: Services) -> None:
    report = _import(services, FIXTURES / "semicolon_bom.csv")
    assert report == ImportReport(organisations_created=1, contacts_created=2)
    with services.sessions() as session:
        contact = find_contact(session, "8 (347) 200-00-00")
        assert contact is not None
        assert contact.name == "Ахметова Лилия"
        assert sorted(p.e164 for p in contact.phones) == ["+73472000000", "+79173456790"]
        org = contact.organisation
        # ="0274062111" is how Excel keeps the leading zero.
        assert (org.name, org.inn, org.stage_one_days) == ('ООО "Башнефтесервис"', "0274062111", 1)
        galiev = find_contact(session, "+79173456789")
        assert galiev is not None and galiev.email == "galiev@bashneft.example"


def test_windows_1251_file_from_russian_excel(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = (
        "Организация;ИНН;Контакт;Телефон\r\n"
        "ООО «Ромашка»;7707083893;Иванов Иван;8 916 123-45-67\r\n"
    )
    path.write_bytes(text.encode("cp1251"))
    assert _import(services, path) == ImportReport(organisations_created=1, contacts_created=1)
    with services.sessions() as session:
        contact = find_contact(session, "+79161234567")
        assert contact is not None
        assert (contact.name, contact.organisation.name) == ("Иванов Иван", "ООО «Ромашка»")


def test_reimport_is_idempotent(services: Services) -> None:
    _import(services, GOOD)
    before = _snapshot(services)
    assert _import(services, GOOD) == ImportReport(organisations_unchanged=4, contacts_unchanged=5)
    assert _snapshot(services) == before


def test_reimport_updates_renames_and_moves_numbers(services: Services) -> None:
    _import(services, GOOD)
    with services.sessions() as session:
        ivanov_id = session.scalars(select(Contact.id).where(Contact.name == "Иванов Иван")).one()

    report = _import(services, FIXTURES / "updated.csv")

    assert report == ImportReport(
        organisations_updated=2,
        contacts_created=1,
        contacts_updated=3,
    )
    with services.sessions() as session:
        # Renamed: the same contact, recognised by its numbers.
        ivanov = find_contact(session, "+79161234567")
        assert ivanov is not None
        assert (ivanov.id, ivanov.name) == (ivanov_id, "Иванов Иван Петрович")
        assert _contact_name(session, "+74951234567") == "Иванов Иван Петрович"
        assert _contact_name(session, "+79217001029") == "Петров Пётр"
        # Смирнова's old number moved to a new colleague; her e-mail cell was blank.
        orlova = find_contact(session, "8-926-555-01-02")
        assert orlova is not None and orlova.name == "Орлова Ольга"
        smirnova = find_contact(session, "+79265550103")
        assert smirnova is not None
        assert (smirnova.name, smirnova.email) == ("Смирнова Анна", None)
        orgs = {o.name: o for o in session.scalars(select(Organisation))}
        assert orgs["ООО «ТрансЛогистик»"].stage_one_days == 1
        # The override columns are in the file and blank: the overrides are gone.
        sever = orgs["АО «СеверТранс»"]
        assert (sever.stage_one_days, sever.topic_days) == (None, {})
        # Not in the file, or its column absent: untouched.
        assert orgs["ООО «Агротех»"].topic_days == {"stolen_vehicle": 2}
        assert _contact_name(session, "+78126070011") == "Диспетчерская"
        assert session.scalar(select(ContactPhone).where(ContactPhone.e164 == "+79265550102"))


def test_a_dropped_number_is_removed(services: Services) -> None:
    _import(services, GOOD)
    data = "organisation,contact,phones\nООО «ТрансЛогистик»,Иванов Иван,+7 916 123-45-67\n"
    with transaction(services.sessions) as session:
        report = import_directory(session, data.encode(), services.clock())
    assert report == ImportReport(organisations_unchanged=1, contacts_updated=1)
    with services.sessions() as session:
        assert find_contact(session, "+74951234567") is None
        assert session.scalar(select(ContactPhone).where(ContactPhone.e164 == "+74951234567")) is (
            None
        )
        assert _contact_name(session, "+79161234567") == "Иванов Иван"


def test_a_stranger_taking_one_of_a_contacts_numbers_is_refused(services: Services) -> None:
    """Not a rename: Иванов keeps +7 495 ... elsewhere in the directory, so this row would
    silently take his mobile away from him."""
    _import(services, GOOD)
    before = _snapshot(services)
    data = "organisation,contact,phones\nООО «ТрансЛогистик»,Белов Борис,+7 916 123-45-67\n"
    with pytest.raises(ImportRejected) as rejected:
        with transaction(services.sessions) as session:
            import_directory(session, data.encode(), services.clock())
    assert rejected.value.problems == [
        (
            2,
            "телефон +79161234567 уже принадлежит контакту Иванов Иван "
            "(ООО «ТрансЛогистик»), которого нет в этом файле",
        )
    ]
    assert _snapshot(services) == before


def test_a_contact_moving_to_another_organisation_keeps_its_record(services: Services) -> None:
    _import(services, GOOD)
    with services.sessions() as session:
        sokolova = find_contact(session, "+79037654321")
        assert sokolova is not None
        sokolova_id = sokolova.id
    data = "organisation,contact,phones\nАО «СеверТранс»,Соколова Мария,9037654321\n"
    with transaction(services.sessions) as session:
        report = import_directory(session, data.encode(), services.clock())
    assert report == ImportReport(organisations_unchanged=1, contacts_updated=1)
    with services.sessions() as session:
        moved = find_contact(session, "+79037654321")
        assert moved is not None
        assert (moved.id, moved.organisation.name) == (sokolova_id, "АО «СеверТранс»")


def test_an_inn_claims_the_organisation_known_by_name(services: Services) -> None:
    _import(services, GOOD)
    data = (
        "organisation;inn;contact;phones\n"
        "ООО  «АГРОТЕХ»;7707083893;Соколова Мария;+7 903 765-43-21\n"
    ).encode()
    with transaction(services.sessions) as session:
        report = import_directory(session, data, services.clock())
    assert report == ImportReport(organisations_updated=1, contacts_unchanged=1)
    with services.sessions() as session:
        orgs = session.scalars(select(Organisation).where(Organisation.inn == "7707083893")).all()
        assert [(o.name, len(o.contacts)) for o in orgs] == [("ООО «АГРОТЕХ»", 1)]


UNUSABLE_FILES: list[tuple[bytes, list[tuple[int, str]]]] = [
    (b"", [(1, "файл пуст")]),
    (
        b"organisation,inn,contact,phones\n",
        [(1, "под заголовком нет строк: загружать нечего")],
    ),
    (
        b"organisation,contact,phones,stage_one_day,remote_diag_days\n",
        [
            (
                1,
                "неизвестный столбец «stage_one_day» (столбцы: организация, ИНН, контакт, "
                "телефоны, почта, stage_one_days, <тема>_days)",
            ),
            (
                1,
                "неизвестный столбец «remote_diag_days»: такой темы нет (столбцы сроков: "
                "stage_one_days, accounts_access_days, consultation_days, "
                "critical_server_failure_days, data_update_days, remote_diagnostics_days, "
                "scheduled_reports_days, stolen_vehicle_days, system_reports_days, "
                "violations_check_days)",
            ),
        ],
    ),
    (
        b"inn,contact,email,email\n",
        [(1, "столбец «email» встречается дважды"), (1, "нет столбца «телефоны»")],
    ),
    (
        b"\x98\xff\xfe\x00",
        [(1, "файл не в кодировке UTF-8 или Windows-1251: сохраните его как «CSV UTF-8»")],
    ),
    (
        b"organisation,contact,phones\nX,Y,7,91612E+10\n",
        [
            (
                2,
                "ячеек 4, а в заголовке столбцов 3 (ячейку с разделителем внутри нужно "
                "взять в кавычки)",
            )
        ],
    ),
    (
        b"organisation;contact;phones\nX;Y;7,91612E+10\n",
        [
            (
                2,
                "неверный телефон «7,91612E+10»: таблица превратила номер в число "
                "(задайте столбцу текстовый формат)",
            )
        ],
    ),
]


def test_unusable_files_are_refused_with_a_reason(services: Services) -> None:
    for data, problems in UNUSABLE_FILES:
        with pytest.raises(ImportRejected) as rejected:
            with transaction(services.sessions) as session:
                import_directory(session, data, services.clock())
        assert rejected.value.problems == problems, data
    assert _snapshot(services) == []


def test_export_imports_back_unchanged(services: Services, tmp_path: Path) -> None:
    _import(services, GOOD)
    _import(services, FIXTURES / "semicolon_bom.csv")
    with services.sessions() as session:
        rows = export_rows(session)
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out, delimiter=";").writerows(rows)
    assert _import(services, path) == ImportReport(organisations_unchanged=5, contacts_unchanged=7)


# ---------------------------------------------------------------- the command


def _run(services: Services, *args: str) -> Result:
    # Numbers in full: these tests read the directory's own phones (masked by default).
    return CliRunner().invoke(
        main, ["--unmasked", *args], obj=CliContext(services), catch_exceptions=False
    )


def test_cli_import_find_and_list(services: Services) -> None:
    imported = _run(services, "directory", "import", str(GOOD))
    assert imported.exit_code == 0, imported.output
    assert imported.stdout == (
        "good.csv: imported. organisations: 4 created, 0 updated, 0 unchanged; "
        "contacts: 5 created, 0 updated, 0 unchanged\n"
    )

    found = _run(services, "directory", "find", "8 (916) 123-45-67")
    assert found.exit_code == 0
    assert found.stdout == (
        "+7 916 123-45-67 (mobile)\n"
        "contact:      Иванов Иван\n"
        "organisation: ООО «ТрансЛогистик» (INN 7707123458)\n"
        "e-mail:       ivanov@translogistic.example\n"
        "other phones: +7 495 123-45-67\n"
    )

    missing = _run(services, "directory", "find", "+79990001122")
    assert (missing.exit_code, missing.stdout) == (
        1,
        "+7 999 000-11-22 (mobile): not in the directory\n",
    )
    withheld = _run(services, "directory", "find", "anonymous")
    assert (withheld.exit_code, withheld.stdout) == (
        1,
        "'anonymous' is not a phone number (withheld): it matches no contact\n",
    )

    listed = _run(services, "directory", "list")
    assert listed.exit_code == 0
    assert listed.stdout == (
        "АО «СеверТранс» (INN 7810123451) — contract days: stage one 2, consultation 3\n"
        "  Диспетчерская: +7 812 607-00-11\n"
        "  Петров Пётр: +7 921 700-10-20  <petrov@severtrans.example>\n"
        "ИП Кузнецов Олег (INN 771234567859)\n"
        "ООО «Агротех» — contract days: stolen_vehicle 2\n"
        "  Соколова Мария: +7 903 765-43-21\n"
        "ООО «ТрансЛогистик» (INN 7707123458)\n"
        "  Иванов Иван: +7 916 123-45-67, +7 495 123-45-67  <ivanov@translogistic.example>\n"
        "  Смирнова Анна: +7 926 555-01-02  <smirnova@translogistic.example>\n"
    )


def test_cli_refused_import_reports_every_line_and_writes_nothing(
    services: Services, tmp_path: Path
) -> None:
    _seed_other_contact(services)
    before = _snapshot(services)
    path = tmp_path / "directory.csv"
    shutil.copy(FIXTURES / "bad.csv", path)

    result = _run(services, "directory", "import", str(path))

    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "directory.csv:3: неверный телефон «8 916 123»: это не номер телефона"
    assert "directory.csv:7: не указано ФИО контакта" in lines
    assert lines[-1] == "directory.csv: rejected, 13 problem(s); nothing was imported"
    assert len(lines) == 14
    assert _snapshot(services) == before


def test_cli_list_csv_round_trips(services: Services, tmp_path: Path) -> None:
    _run(services, "directory", "import", str(GOOD))
    exported = _run(services, "directory", "list", "--csv")
    assert exported.exit_code == 0
    assert exported.stdout.splitlines()[0].startswith(
        "organisation,inn,contact,phones,email,stage_one_days,critical_server_failure_days,"
    )
    path = tmp_path / "export.csv"
    path.write_text(exported.stdout, "utf-8")
    again = _run(services, "directory", "import", str(path))
    assert again.stdout.endswith(
        "organisations: 0 created, 0 updated, 4 unchanged; "
        "contacts: 0 created, 0 updated, 5 unchanged\n"
    )


def test_cli_masked_csv_says_it_does_not_import_back_and_the_importer_refuses_it(
    services: Services, tmp_path: Path
) -> None:
    _run(services, "directory", "import", str(GOOD))
    before = _snapshot(services)
    masked = CliRunner().invoke(
        main, ["directory", "list", "--csv"], obj=CliContext(services), catch_exceptions=False
    )
    assert masked.exit_code == 0
    assert "+7916***4567" in masked.stdout
    assert masked.stderr == (
        "numbers are masked, so this does not import back; for a file that does: "
        "callcenter --unmasked directory list --csv > directory.csv\n"
    )
    path = tmp_path / "masked.csv"
    path.write_text(masked.stdout, "utf-8")
    again = _run(services, "directory", "import", str(path))
    assert again.exit_code == 2
    assert again.stderr.splitlines()[-1].endswith("nothing was imported")
    assert _snapshot(services) == before


def test_cli_list_of_an_empty_directory(services: Services) -> None:
    result = _run(services, "directory", "list")
    assert (result.exit_code, result.stdout) == (0, "the directory is empty\n")


def test_cli_import_of_a_missing_file_is_a_usage_error(services: Services) -> None:
    result = _run(services, "directory", "import", "/nonexistent/directory.csv")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_import_stamps_the_clock(services: Services, clock: Any) -> None:
    clock.now = datetime.fromisoformat("2025-12-01T09:15:00+03:00")
    _import(services, GOOD)
    with services.sessions() as session:
        stamps = {c.created_at for c in session.scalars(select(Contact))}
    assert stamps == {datetime.fromisoformat("2025-12-01T06:15:00+00:00")}


def test_the_operators_example_file_imports(services: Services) -> None:
    example = Path(__file__).parent.parent / "scripts" / "examples" / "directory.csv"
    report = _import(services, example)
    assert report == ImportReport(organisations_created=4, contacts_created=6)
    with services.sessions() as session:
        dispatcher = find_contact(session, "+78126070011")
        assert dispatcher is not None
        assert dispatcher.organisation.topic_days == {"consultation": 3}
