"""`/console/directory`: organisations and contacts — view, search, import, edit.

Import and export are the directory's own (`directory.importer.import_directory`, all or nothing,
problems by line; `export_rows`, the import format); single edits are read by the Flask-WTF
forms of `console.forms` and saved by `directory_forms`. A rejected upload or form is
shown again with every problem, and the form keeps what was typed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from callcenter.calllog.words import phone_display, topic_title
from callcenter.console import bp
from callcenter.console.common import roster_warnings
from callcenter.console.directory_forms import (
    ContactForm,
    OrganisationForm,
    delete_contact,
    save_contact,
    save_organisation,
)
from callcenter.console.forms import (
    ContactEditForm,
    DirectoryImportForm,
    OrganisationEditForm,
    first_errors,
)
from callcenter.db import transaction
from callcenter.db.models import Contact, Organisation
from callcenter.directory.contacts import TOPIC_SLUGS, list_directory
from callcenter.directory.importer import ImportReport, export_rows, import_directory
from callcenter.errors import ImportRejected, InvalidForm
from callcenter.phones import normalise
from callcenter.services import Services
from callcenter.spreadsheet import csv_bytes
from callcenter.web import services


def _matches(org: Organisation, query: str) -> bool:
    needle = query.casefold()
    digits = re.sub(r"\D", "", query)
    # A whole number in any spelling (8 916 123-45-67, +7 (916) 1234567) is compared as E.164.
    e164 = normalise(query) if len(digits) >= 10 else None
    if needle in org.name.casefold() or (org.inn and digits and digits in org.inn):
        return True
    for contact in org.contacts:
        if needle in contact.name.casefold():
            return True
        if e164 is not None and any(p.e164 == e164 for p in contact.phones):
            return True
        if len(digits) >= 4 and any(digits in re.sub(r"\D", "", p.e164) for p in contact.phones):
            return True
    return False


@bp.get("/directory")
def directory() -> ResponseReturnValue:
    return _directory_page()


def _directory_page(
    *, problems: list[tuple[int, str]] | None = None, filename: str | None = None
) -> ResponseReturnValue:
    query = request.args.get("q", "").strip()
    with services().sessions() as db:
        organisations = list_directory(db)
        total = len(organisations)
        contacts_total = sum(len(o.contacts) for o in organisations)
        if query:
            organisations = [o for o in organisations if _matches(o, query)]
        page = render_template(
            "console/directory.html",
            organisations=organisations,
            total=total,
            contacts_total=contacts_total,
            query=query,
            problems=problems,
            filename=filename,
            phone=phone_display,
            topic_title=topic_title,
            warnings=roster_warnings(),
        )
    return (page, 400) if problems else page


@bp.post("/directory/import")
def import_upload() -> ResponseReturnValue:
    form = DirectoryImportForm()
    upload = form.file.data
    filename = upload.filename if isinstance(upload, FileStorage) else None
    if not form.validate():
        return _directory_page(problems=[(0, form.file.errors[0])], filename=filename)
    data = upload.stream.read()
    svc = services()
    try:
        with transaction(svc.sessions) as db:
            report = import_directory(db, data, svc.clock())
    except ImportRejected as exc:
        return _directory_page(problems=exc.problems, filename=filename)
    flash(f"Справочник загружен из «{filename}». {_summary(report)}", "ok")
    return redirect(url_for("console.directory"))


def _summary(report: ImportReport) -> str:
    return (
        f"Организации: создано {report.organisations_created}, "
        f"изменено {report.organisations_updated}, "
        f"без изменений {report.organisations_unchanged}. "
        f"Контакты: создано {report.contacts_created}, изменено {report.contacts_updated}, "
        f"без изменений {report.contacts_unchanged}."
    )


@bp.get("/directory/export.csv")
def export_directory() -> ResponseReturnValue:
    """The directory in its own import format, through the one CSV writer of every export
    (formula-like cells neutralised; the importer reads them back unchanged)."""
    with services().sessions() as db:
        table = export_rows(db)
    response = Response(csv_bytes(table), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = 'attachment; filename="directory.csv"'
    return response


# ---------------------------------------------------------------- contacts


@contextmanager
def _saving(valid: bool, svc: Services) -> Iterator[Session]:
    """A transaction when the form is valid; otherwise a session rolled back at the end,
    so the directory's own checks still run (every problem shown at once) and nothing is
    written. What the form refused may also fail to be written (a value too long for
    its column): that failure is the form's problem, already shown, and is dropped."""
    if valid:
        with transaction(svc.sessions) as db:
            yield db
        return
    with svc.sessions() as db:
        try:
            yield db
        except SQLAlchemyError:
            pass
        finally:
            db.rollback()


def _organisations() -> list[tuple[int, str]]:
    with services().sessions() as db:
        rows = db.execute(select(Organisation.id, Organisation.name)).all()
    return sorted(((i, n) for i, n in rows), key=lambda r: r[1].casefold())


def _contact_page(contact_id: int | None, values: dict[str, str], errors: dict[str, str]) -> str:
    return render_template(
        "console/contact_form.html",
        contact_id=contact_id,
        values=values,
        errors=errors,
        organisations=_organisations(),
        warnings=roster_warnings(),
    )


@bp.route("/directory/contacts/new", methods=["GET", "POST"])
def new_contact() -> ResponseReturnValue:
    return _edit_contact(None)


@bp.route("/directory/contacts/<int:contact_id>", methods=["GET", "POST"])
def edit_contact(contact_id: int) -> ResponseReturnValue:
    return _edit_contact(contact_id)


def _edit_contact(contact_id: int | None) -> ResponseReturnValue:
    svc = services()
    if request.method == "GET":
        values = {"organisation_id": request.args.get("organisation", "")}
        if contact_id is not None:
            with svc.sessions() as db:
                contact = db.get(Contact, contact_id)
                if contact is None:
                    abort(404)
                values = {
                    "name": contact.name,
                    "phones": "\n".join(phone_display(p.e164) for p in contact.phones),
                    "email": contact.email or "",
                    "organisation_id": str(contact.organisation_id),
                }
        return _contact_page(contact_id, values, {})
    form = ContactEditForm()
    form.offer(_organisations())
    valid = form.validate()
    values = {key: str(value or "") for key, value in form.data.items()}
    fields = ContactForm(
        name=values["name"],
        phones=values["phones"],
        email=values["email"],
        organisation_id=form.organisation(),
        new_organisation=values["new_organisation"],
    )
    # The form's problems and the directory's (a number taken, an unknown organisation)
    # are shown together, the form's first where both speak of one field.
    errors = first_errors(
        form, {"organisation_id": "organisation", "new_organisation": "organisation"}
    )
    try:
        with _saving(valid, svc) as db:
            contact = save_contact(db, contact_id, fields, now=svc.clock())
            name = contact.name
    except InvalidForm as exc:
        errors = {**exc.fields, **errors}
    if errors:
        return _contact_page(contact_id, values, errors), 400
    flash(f"Контакт «{name}» сохранён.", "ok")
    return redirect(url_for("console.directory"))


@bp.post("/directory/contacts/<int:contact_id>/delete")
def remove_contact(contact_id: int) -> ResponseReturnValue:
    try:
        with transaction(services().sessions) as db:
            name = delete_contact(db, contact_id)
    except InvalidForm as exc:
        flash("Контакт не удалён: " + "; ".join(exc.fields.values()), "error")
        return redirect(url_for("console.edit_contact", contact_id=contact_id))
    flash(f"Контакт «{name}» удалён.", "ok")
    return redirect(url_for("console.directory"))


# ---------------------------------------------------------------- organisations


def _organisation_page(
    organisation_id: int | None, values: dict[str, str], errors: dict[str, str]
) -> str:
    return render_template(
        "console/organisation_form.html",
        organisation_id=organisation_id,
        values=values,
        errors=errors,
        topics=[(slug, topic_title(slug)) for slug in TOPIC_SLUGS],
        warnings=roster_warnings(),
    )


@bp.route("/directory/organisations/new", methods=["GET", "POST"])
def new_organisation() -> ResponseReturnValue:
    return _edit_organisation(None)


@bp.route("/directory/organisations/<int:organisation_id>", methods=["GET", "POST"])
def edit_organisation(organisation_id: int) -> ResponseReturnValue:
    return _edit_organisation(organisation_id)


def _edit_organisation(organisation_id: int | None) -> ResponseReturnValue:
    svc = services()
    if request.method == "GET":
        values: dict[str, str] = {}
        if organisation_id is not None:
            with svc.sessions() as db:
                org = db.get(Organisation, organisation_id)
                if org is None:
                    abort(404)
                values = {
                    "name": org.name,
                    "inn": org.inn or "",
                    "stage_one_days": str(org.stage_one_days or ""),
                    **{f"{slug}_days": str(days) for slug, days in (org.topic_days or {}).items()},
                }
        return _organisation_page(organisation_id, values, {})
    form = OrganisationEditForm()
    valid = form.validate()
    values = {key: str(value or "") for key, value in form.data.items()}
    fields = OrganisationForm(
        name=values["name"],
        inn=values["inn"],
        stage_one_days=values["stage_one_days"],
        topic_days=form.topic_days(),
    )
    errors = first_errors(form)
    try:
        with _saving(valid, svc) as db:
            org = save_organisation(db, organisation_id, fields, now=svc.clock())
            name = org.name
    except InvalidForm as exc:
        errors = {**exc.fields, **errors}
    if errors:
        return _organisation_page(organisation_id, values, errors), 400
    flash(f"Организация «{name}» сохранена.", "ok")
    return redirect(url_for("console.directory"))
