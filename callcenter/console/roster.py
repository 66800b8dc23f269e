"""`/console/roster`: who is on duty now (or at a chosen moment), the roster's warnings,
and the roster itself — edited as YAML in the page or uploaded as a file.

Saving goes through `roster_import.import_roster` (all or nothing, problems by line); a rejected
roster is shown again as it was typed, with the problems beside it, and nothing changes.
"""

from __future__ import annotations

from datetime import datetime

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from callcenter.calllog import words
from callcenter.clock import EARLIEST_DAY, LATEST_DAY, MOSCOW, day_in_range, to_moscow
from callcenter.console import bp
from callcenter.console.common import forget_roster_warnings
from callcenter.console.forms import RosterTextForm, RosterUploadForm
from callcenter.console.roster_text import roster_yaml, shift_lines
from callcenter.db import transaction
from callcenter.errors import ImportRejected
from callcenter.roster.importer import import_roster
from callcenter.roster.on_duty import Roster, roster_health
from callcenter.web import services

DUTY_TITLES = {
    "consultation": "консультации",
    "urgent": "срочные",
    "both": "консультации и срочные",
    "away": "отсутствует",
}


@bp.get("/roster")
def roster() -> ResponseReturnValue:
    return _roster_page()


def _at() -> tuple[datetime, str | None]:
    raw = request.args.get("at", "").strip()
    now = services().clock()
    if not raw:
        return now, None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return now, f"«{raw[:40]}» — не дата и время; показано текущее дежурство."
    if not day_in_range(at.date()):
        return now, (
            f"«{raw[:40]}» — дата вне допустимого диапазона "
            f"({EARLIEST_DAY.year}–{LATEST_DAY.year}); показано текущее дежурство."
        )
    return (at if at.tzinfo else at.replace(tzinfo=MOSCOW)), None


def _roster_page(
    *, text: str | None = None, problems: list[tuple[int, str]] | None = None
) -> ResponseReturnValue:
    svc = services()
    at, at_error = _at()
    with svc.sessions() as db:
        stored = Roster.load(db)
        duty = stored.on_duty(at, svc.calendar)
        warnings = roster_health(db, svc.clock(), svc.calendar)
        editor = text if text is not None else roster_yaml(db)
    people = sorted(stored.people.values(), key=lambda p: (not p.is_head, p.name))
    rules = {
        person.key: [
            {
                "duty": DUTY_TITLES.get(line.duty, line.duty),
                "when": line.when,
                "order": line.order,
            }
            for line in shift_lines(r for r in stored.rules if r.staff_key == person.key)
        ]
        for person in people
    }
    page = render_template(
        "console/roster.html",
        at=words.moscow(at, "EEEE, d MMMM y, HH:mm"),
        at_value=to_moscow(at).strftime("%Y-%m-%dT%H:%M"),
        at_error=at_error,
        duty=duty,
        duty_phone=(
            words.phone_display(svc.settings.duty_phone) if svc.settings.duty_phone else None
        ),
        people=people,
        rules=rules,
        phone=words.phone_display,
        phones=lambda numbers: ", ".join(words.phone_display(n) for n in numbers),
        editor=editor,
        problems=problems,
        warnings=warnings,
    )
    return (page, 400) if problems or at_error else page


@bp.post("/roster")
def save_roster() -> ResponseReturnValue:
    # The page has two forms to this URL: the editor's text, and a file.
    if "file" in request.files:
        upload = RosterUploadForm()
        if not upload.validate():
            return _roster_page(problems=[(0, upload.file.errors[0])])
        data = upload.file.data.stream.read()
        source = f"файл «{upload.file.data.filename}»"
    else:
        typed = RosterTextForm()
        if not typed.validate():
            return _roster_page(text=typed.roster.data, problems=[(0, typed.roster.errors[0])])
        data = (typed.roster.data or "").encode("utf-8")
        source = "текст из редактора"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _roster_page(problems=[(0, "Файл не в кодировке UTF-8.")])
    svc = services()
    try:
        with transaction(svc.sessions) as db:
            report = import_roster(db, text)
    except ImportRejected as exc:
        return _roster_page(text=text, problems=exc.problems)
    forget_roster_warnings()
    message = (
        f"График сохранён ({source}): сотрудников {report.staff}, смен {report.shifts}, "
        f"дежурств по датам {report.duties}, отсутствий {report.absences}."
    )
    if report.deactivated:
        message += " Больше не в графике: " + ", ".join(report.deactivated) + "."
    flash(message, "ok")
    return redirect(url_for("console.roster"))
