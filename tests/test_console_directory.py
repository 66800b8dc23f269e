"""The directory and roster pages: view, import, edit — and bad input loses nothing."""

from __future__ import annotations

import html
import io
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.calllog.words import phone_display
from callcenter.console.roster_text import date_ranges, roster_yaml
from callcenter.db import transaction
from callcenter.db.models import Contact, Organisation, Shift, Staff
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from tests.console_helpers import add_call, add_user, at, csrf_of, login

SHEET = (
    "организация;инн;контакт;телефоны;почта;stage_one_days\n"
    "ООО «Ромашка»;7707083893;Кузнецова Мария;+7 916 123-45-67;maria@romashka.example;2\n"
    "ООО «Ромашка»;7707083893;Диспетчер;8 (495) 765-43-21|8 916 000-11-22;;2\n"
    "АО «Лютик»;;Петров Пётр;+7 921 700-10-20;;\n"
)
ROSTER = """\
staff:
  - key: ivanov
    name: Иванов Иван
    phones: ["+7 912 345-67-01"]
    away: ["2026-02-02..2026-02-04", "2026-02-10"]
  - key: petrova
    name: Петрова Анна
    phones: ["8 (912) 345-67-02", "+7 812 607-77-50"]
  - key: smirnova
    name: Смирнова Елена
    role: head
    phones: ["+7 912 345-67-09"]
shifts:
  - staff: ivanov
    days: working_days
    hours: business
    duty: both
    order: 1
  - staff: petrova
    days: [sat, sun]
    hours: 09:30-09:30
    duty: urgent
    order: 2
  - staff: petrova
    days: daily
    hours: close-09:30
duties:
  - staff: petrova
    dates: [2025-12-31, 2026-01-02..2026-01-04]
    hours: 18:00-09:30
    duty: urgent
"""


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


@pytest.fixture
def head(client: FlaskClient, services: Services) -> FlaskClient:
    add_user(services, "head", "supervisor")
    login(client, "head")
    return client


def upload(client: FlaskClient, url: str, name: str, content: str, **fields: str) -> object:
    data = {"csrf_token": csrf_of(client), "file": (io.BytesIO(content.encode()), name), **fields}
    return client.post(url, data=data, content_type="multipart/form-data")


# ---------------------------------------------------------------- directory


def test_import_all_or_nothing_then_view_search_and_export(
    services: Services, head: FlaskClient
) -> None:
    bad = SHEET + "ООО «Лютик»;123;Сидоров;12;not-an-email\n"
    rejected = upload(head, "/console/directory/import", "clients.csv", bad)
    assert rejected.status_code == 400  # type: ignore[attr-defined]
    page = text_of(rejected.get_data(as_text=True))  # type: ignore[attr-defined]
    assert "Файл «clients.csv» не загружен: ничего не изменено" in page
    assert "5 неверный ИНН «123»: только цифры" not in page  # it is digits
    assert "5 неверный ИНН «123»: нужно 10 или 12 цифр, а не 3" in page
    assert "неверная почта «not-an-email»: это не адрес электронной почты" in page
    # A file the csv module cannot read: Russian first, the parser's words folded away.
    huge_cell = 'организация,контакт,телефоны\nX,"' + "я" * 140_000 + '",1\n'
    unreadable = upload(head, "/console/directory/import", "x.csv", huge_cell)
    raw = unreadable.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "строка не читается как CSV" in text_of(raw)
    assert '<details class="technical"><summary>Подробности</summary><code>' in raw
    with services.sessions() as session:
        assert session.scalars(select(Organisation)).all() == []

    done = upload(head, "/console/directory/import", "clients.csv", SHEET)
    assert done.headers["Location"] == "/console/directory"  # type: ignore[attr-defined]
    page = text_of(head.get("/console/directory").get_data(as_text=True))
    assert (
        "Справочник загружен из «clients.csv». Организации: создано 2, изменено 0, "
        "без изменений 0. Контакты: создано 3, изменено 0, без изменений 0." in page
    )
    assert "Организаций: 2, контактов: 3." in page
    assert "АО «Лютик» Петров Пётр +7 921 700-10-20" in page
    assert "ООО «Ромашка» ИНН 7707083893 Сроки по договору: первый этап 2 раб. дн." in page
    assert "Диспетчер +7 495 765-43-21 +7 916 000-11-22" in page

    found = text_of(head.get("/console/directory?q=45-67").get_data(as_text=True))
    assert "Найдено организаций: 1." in found and "Кузнецова Мария" in found
    assert "Лютик" not in found
    # The search box's own example, and other spellings of a whole number.
    for spelt in ("8 916 123-45-67", "8 (916) 1234567", "+7 916 123 45 67", "89161234567"):
        found = text_of(
            head.get("/console/directory", query_string={"q": spelt}).get_data(as_text=True)
        )
        assert "Найдено организаций: 1." in found and "Кузнецова Мария" in found, spelt
    nobody = text_of(head.get("/console/directory?q=8 916 999-99-99").get_data(as_text=True))
    assert "Найдено организаций: 0." in nobody

    exported = head.get("/console/directory/export.csv")
    assert exported.headers["Content-Disposition"] == 'attachment; filename="directory.csv"'
    data = exported.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    again = upload(head, "/console/directory/import", "directory.csv", data.decode("utf-8-sig"))
    assert again.status_code == 302  # type: ignore[attr-defined]
    page = text_of(head.get("/console/directory").get_data(as_text=True))
    assert "Контакты: создано 0, изменено 0, без изменений 3." in page


def test_edit_a_contact_field_by_field_in_russian(services: Services, head: FlaskClient) -> None:
    upload(head, "/console/directory/import", "clients.csv", SHEET)
    with services.sessions() as session:
        maria = session.scalars(select(Contact).where(Contact.name == "Кузнецова Мария")).one()
        romashka = maria.organisation_id
    url = f"/console/directory/contacts/{maria.id}"
    form = head.get(url).get_data(as_text=True)
    assert "+7 916 123-45-67</textarea>" in form
    token = csrf_of(head)
    bad = head.post(
        url,
        data={
            "csrf_token": token,
            "name": "Кузнецова Мария Ивановна",
            "phones": "+7 916 123-45-67\n8 (921) 700-10-20\nабв",
            "email": "maria@",
            "organisation_id": str(romashka),
        },
    )
    assert bad.status_code == 400
    page = text_of(bad.get_data(as_text=True))
    assert "Контакт не сохранён: исправьте отмеченные поля." in page
    assert "не телефонные номера: «абв»" in page
    assert "«maria@» не похоже на адрес электронной почты" in page
    assert "Кузнецова Мария Ивановна" in bad.get_data(as_text=True)  # what was typed stays
    taken = head.post(
        url,
        data={
            "csrf_token": token,
            "name": "Кузнецова Мария Ивановна",
            "phones": "+7 916 123-45-67\n8 (921) 700-10-20",
            "email": "",
            "organisation_id": str(romashka),
        },
    )
    assert "номер +7 921 700-10-20 уже принадлежит контакту Петров Пётр (АО «Лютик»)" in (
        text_of(taken.get_data(as_text=True))
    )
    ok = head.post(
        url,
        data={
            "csrf_token": token,
            "name": "Кузнецова Мария Ивановна",
            "phones": "8 916 123 45 67, +7 (916) 555-00-99",
            "email": "m.kuznetsova@romashka.example",
            "organisation_id": "",
            "new_organisation": "ООО «Ромашка-Сервис»",
        },
    )
    assert ok.status_code == 302
    with services.sessions() as session:
        contact = session.get(Contact, maria.id)
        assert contact is not None
        assert contact.name == "Кузнецова Мария Ивановна"
        assert sorted(p.e164 for p in contact.phones) == ["+79161234567", "+79165550099"]
        assert contact.email == "m.kuznetsova@romashka.example"
        assert contact.organisation.name == "ООО «Ромашка-Сервис»"
        assert contact.organisation.created_at == at(0)


def test_new_contact_and_delete_only_without_calls(services: Services, head: FlaskClient) -> None:
    upload(head, "/console/directory/import", "clients.csv", SHEET)
    token = csrf_of(head)
    created = head.post(
        "/console/directory/contacts/new",
        data={
            "csrf_token": token,
            "name": "Новиков",
            "phones": "+7 903 000-00-01",
            "email": "",
            "organisation_id": "",
            "new_organisation": "ооо «ромашка»",  # the existing one, in another case
        },
    )
    assert created.status_code == 302
    with services.sessions() as session:
        novikov = session.scalars(select(Contact).where(Contact.name == "Новиков")).one()
        petrov = session.scalars(select(Contact).where(Contact.name == "Петров Пётр")).one()
        assert novikov.organisation.name == "ООО «Ромашка»"
        assert len(session.scalars(select(Organisation)).all()) == 2
    with transaction(services.sessions) as session:
        add_call(session, "CA-petrov", at(-5), contact_id=petrov.id)
    refused = head.post(
        f"/console/directory/contacts/{petrov.id}/delete", data={"csrf_token": token}
    )
    assert refused.headers["Location"] == f"/console/directory/contacts/{petrov.id}"
    assert "у контакта 1 звонк(ов) в журнале" in text_of(
        head.get(refused.headers["Location"]).get_data(as_text=True)
    )
    deleted = head.post(
        f"/console/directory/contacts/{novikov.id}/delete", data={"csrf_token": token}
    )
    assert deleted.headers["Location"] == "/console/directory"
    with services.sessions() as session:
        assert session.get(Contact, novikov.id) is None
        assert session.get(Contact, petrov.id) is not None


def test_edit_an_organisation_and_its_contract_terms(services: Services, head: FlaskClient) -> None:
    upload(head, "/console/directory/import", "clients.csv", SHEET)
    with services.sessions() as session:
        lutik = session.scalars(select(Organisation).where(Organisation.name == "АО «Лютик»")).one()
    url = f"/console/directory/organisations/{lutik.id}"
    token = csrf_of(head)
    bad = head.post(
        url,
        data={
            "csrf_token": token,
            "name": "АО «Лютик»",
            "inn": "7707083893",
            "stage_one_days": "0",
            "consultation_days": "много",
        },
    )
    assert bad.status_code == 400
    page = text_of(bad.get_data(as_text=True))
    assert "этот ИНН уже у организации «ООО «Ромашка»»" in page
    assert page.count("целое число рабочих дней от 1 до 250") == 2
    ok = head.post(
        url,
        data={
            "csrf_token": token,
            "name": "АО «Лютик»",
            "inn": "7810 1234 51",
            "stage_one_days": "3",
            "remote_diagnostics_days": "10",
        },
    )
    assert ok.status_code == 302
    with services.sessions() as session:
        org = session.get(Organisation, lutik.id)
        assert org is not None
        assert (org.inn, org.stage_one_days, org.topic_days) == (
            "7810123451",
            3,
            {"remote_diagnostics": 10},
        )
    form = head.get(url).get_data(as_text=True)
    assert 'name="remote_diagnostics_days" min="1" value="10"' in form


# ---------------------------------------------------------------- roster


def test_an_empty_roster_is_a_loud_warning_on_every_page(
    services: Services, head: FlaskClient
) -> None:
    for url in ("/console/", "/console/dashboard", "/console/directory", "/console/roster"):
        page = text_of(head.get(url).get_data(as_text=True))
        assert "Внимание: график дежурств неисправен." in page, url
        assert "График дежурств пуст: все звонки уходят на дежурный телефон" in page, url
    roster = text_of(head.get("/console/roster").get_data(as_text=True))
    duty = phone_display(services.settings.duty_phone)
    assert f"Никого — звонки идут на дежурный телефон {duty}." in roster
    assert "График пуст. Пример" in roster


def test_edit_the_roster_as_yaml_all_or_nothing(services: Services, head: FlaskClient) -> None:
    token = csrf_of(head)
    broken = ROSTER.replace("hours: business", "hours: 09:30-18:60")
    rejected = head.post("/console/roster", data={"csrf_token": token, "roster": broken})
    assert rejected.status_code == 400
    page = rejected.get_data(as_text=True)
    assert "График не сохранён, ничего не изменено:" in text_of(page)
    assert "строка 16: неверное время «18:60» в часах «09:30-18:60»" in text_of(page)
    not_yaml = head.post("/console/roster", data={"csrf_token": token, "roster": "staff: [\n"})
    assert "текст не читается как YAML (проверьте отступы и двоеточия)" in text_of(
        not_yaml.get_data(as_text=True)
    )
    assert "<summary>Подробности</summary>" in not_yaml.get_data(as_text=True)
    assert html.escape("hours: 09:30-18:60", quote=False) in page  # the text stays
    with services.sessions() as session:
        assert session.scalars(select(Staff)).all() == []

    saved = head.post("/console/roster", data={"csrf_token": token, "roster": ROSTER})
    assert saved.headers["Location"] == "/console/roster"
    raw_page = head.get("/console/roster?at=2025-11-27T11:00").get_data(as_text=True)
    page = text_of(raw_page)
    assert (
        "График сохранён (текст из редактора): сотрудников 3, смен 3, дежурств по датам 1, "
        "отсутствий 4." in page
    )
    assert "Внимание: график дежурств неисправен." not in page
    assert "Дежурство: четверг, 27 ноября 2025, 11:00 (МСК), рабочее время" in page
    assert "Консультации Иванов Иван · +7 912 345-67-01" in page
    assert (
        "Срочные звонки (по очереди) Иванов Иван · +7 912 345-67-01 "
        "Смирнова Елена (руководитель) · +7 912 345-67-09" in page
    )
    shifts = [text_of(m) for m in re.findall(r'<div class="shift">(.*?)</div>', raw_page)]
    # Shifts in words, a dated duty repeated on consecutive days as one range.
    assert shifts == [
        "консультации и срочные: рабочие дни, 09:30–18:00, очередь 1",
        "отсутствует: с 2 февраля 2026 по 4 февраля 2026, 10 февраля 2026",
        "срочные: сб, вс, круглосуточно (сутки с 09:30), очередь 2",
        "консультации и срочные: ежедневно, 18:00–09:30, очередь 1",
        "срочные: 31 декабря 2025, с 2 января 2026 по 4 января 2026, 18:00–09:30, очередь 1",
    ]
    for code in ("working_days", "business", "09:30-09:30", "2026-01-02"):
        assert code not in text_of(raw_page.split('id="roster-editor"')[0]), code
    night = text_of(head.get("/console/roster?at=2025-11-29T03:00").get_data(as_text=True))
    assert "суббота, 29 ноября 2025, 03:00 (МСК), нерабочее время" in night
    assert "Петрова Анна · +7 912 345-67-02, +7 812 607-77-50" in night


def test_the_roster_written_back_reads_back_to_the_same_rows(services: Services) -> None:
    def rows() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        with services.sessions() as session:
            staff = [
                (s.key, s.name, s.role, tuple(s.phones), s.sms, s.active)
                for s in session.scalars(select(Staff).order_by(Staff.key))
            ]
            keys = {s.id: s.key for s in session.scalars(select(Staff))}
            shifts = sorted(
                (keys[sh.staff_id], sh.duty, sh.pattern, sh.on_date, sh.start_local,
                 sh.end_local, sh.chain_order)
                for sh in session.scalars(select(Shift))
            )  # fmt: skip
            return staff, shifts  # type: ignore[return-value]

    with transaction(services.sessions) as session:
        import_roster(session, ROSTER)
    before = rows()
    with services.sessions() as session:
        written = roster_yaml(session)
    assert 'dates: ["2025-12-31", "2026-01-02..2026-01-04"]' in written
    assert 'away: ["2026-02-02..2026-02-04", "2026-02-10"]' in written
    assert "days: [sat, sun]" in written and "days: daily" in written
    assert 'hours: "close-09:30"' in written and "hours: business" in written
    with transaction(services.sessions) as session:
        import_roster(session, written)
    assert rows() == before


def test_roster_upload_and_what_a_specialist_sees(
    services: Services, head: FlaskClient, client: FlaskClient
) -> None:
    done = upload(head, "/console/roster", "roster.yaml", "\ufeff" + ROSTER)
    assert done.status_code == 302  # type: ignore[attr-defined]
    assert "График сохранён (файл «roster.yaml»)" in text_of(
        head.get("/console/roster").get_data(as_text=True)
    )
    head.post("/console/logout", data={"csrf_token": csrf_of(head)})
    add_user(services, "ivanov", "specialist")
    login(client, "ivanov")
    page = client.get("/console/roster").get_data(as_text=True)
    assert '<textarea name="roster"' not in page
    assert "key: &#34;ivanov&#34;" in page or 'key: "ivanov"' in html.unescape(page)


def test_date_ranges_fold_consecutive_days() -> None:
    from datetime import date

    days = [date(2026, 1, d) for d in (4, 2, 3, 8, 10, 11)]
    assert date_ranges(days) == ["2026-01-02..2026-01-04", "2026-01-08", "2026-01-10..2026-01-11"]
    assert date_ranges([]) == []


def test_shifts_in_words() -> None:
    from datetime import date, timedelta

    from callcenter.console.roster_text import shift_lines
    from callcenter.roster.on_duty import ShiftRule

    day = date(2025, 12, 29)
    rules = [
        ShiftRule("a", "both", "days_off", None, "00:00", "00:00", 1),
        ShiftRule("a", "urgent", "working_days", None, "close", "open", 2),
        ShiftRule("a", "consultation", "mon,wed,fri", None, "10:00", "14:00", 3),
        *(ShiftRule("a", "urgent", "date", day + timedelta(days=n), "18:00", "09:30", 1)
          for n in range(12)),
    ]  # fmt: skip
    assert [(line.duty, line.when, line.order) for line in shift_lines(rules)] == [
        ("both", "выходные, круглосуточно", 1),
        ("urgent", "рабочие дни, 18:00–09:30", 2),
        ("consultation", "пн, ср, пт, 10:00–14:00", 3),
        ("urgent", "с 29 декабря 2025 по 9 января 2026, 18:00–09:30", 1),
    ]
