"""`/console/incidents`: known incidents — open and recent, their affected organisations
and joined calls; a supervisor opens one, edits its message, closes it, or merges it into
another open one (one failure found twice). While one is open a banner on every console
page says so (and the dashboard shows it).

Thin views over `callcenter.incidents.store`; the forms are Flask-WTF's (the console's
guard checks every POST's CSRF token and the supervisor role before any view).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp

from callcenter.clock import to_moscow
from callcenter.console import bp
from callcenter.console.auth import current_user
from callcenter.console.common import portal_link, roster_warnings
from callcenter.db import transaction
from callcenter.db.models import IncidentCall
from callcenter.errors import InvalidInput
from callcenter.incidents import store
from callcenter.incidents.texts import product_title
from callcenter.jobs.tasks import submit_incident_job
from callcenter.regulation.speech import agree_with_number
from callcenter.web import services

log = logging.getLogger(__name__)

PRODUCT_OPTIONS = [
    SelectChoice("online", "SKAI-Online"),
    SelectChoice("studio", "SKAI-Studio"),
    SelectChoice("silver", "SKAI-Silver Studio"),
    SelectChoice("all", "Все продукты"),
]


class OpenIncidentForm(FlaskForm):  # type: ignore[misc]  # flask-wtf ships no types
    class Meta:
        csrf = False  # checked for every console POST by the guard

    product = SelectField("Продукт", choices=PRODUCT_OPTIONS, validators=[DataRequired()])
    ticket = StringField(
        "Заявка на портале",
        validators=[Optional(), Regexp(r"^\d{1,12}$", message="Номер заявки — до 12 цифр.")],
    )
    message = TextAreaField(
        "Что известно",
        validators=[DataRequired(message="Напишите, что известно."), Length(max=2000)],
    )


class MessageForm(FlaskForm):  # type: ignore[misc]  # flask-wtf ships no types
    class Meta:
        csrf = False

    message = TextAreaField(
        "Сообщение", validators=[DataRequired(message="Напишите сообщение."), Length(max=2000)]
    )


class MergeForm(FlaskForm):  # type: ignore[misc]  # flask-wtf ships no types
    """Merge this incident into another open one: the page offers the open ones; what
    is submitted is checked against the open ones again by `store.merge_incident`."""

    class Meta:
        csrf = False

    into = SelectField(
        "Тот же сбой, что и открытый",
        coerce=int,
        validators=[InputRequired(message="Выберите сбой, с которым объединить.")],
    )

    @classmethod
    def offering(cls, targets: list[tuple[int, str]], **kwargs: Any) -> MergeForm:
        form = cls(**kwargs)
        form.into.choices = [SelectChoice(value, label) for value, label in targets]
        return form


@bp.app_context_processor
def _open_incidents() -> dict[str, object]:
    """The banner's incidents, for every console page of a signed-in user."""
    if request.blueprint != "console" or current_user() is None:
        return {}
    with services().sessions() as db:
        rows = store.open_incidents(db)
        joined = store.joined_counts(db, [row.id for row in rows])
        banner = [
            {
                "id": row.id,
                "product": product_title(row.product),
                "ticket": store.ticket_number(row),
                "message": row.message,
                "joined": joined.get(row.id, 0),
            }
            for row in rows
        ]
    return {"open_incidents": banner}


@bp.get("/incidents")
def incidents() -> ResponseReturnValue:
    return _page(OpenIncidentForm())


def _page(form: OpenIncidentForm, status: int = 200) -> ResponseReturnValue:
    svc = services()
    with svc.sessions() as db:
        rows = store.list_incidents(db, limit=20)
        joined = store.joined_counts(db, [row.id for row in rows])
        linked = db.scalars(
            select(IncidentCall)
            .where(IncidentCall.incident_id.in_([row.id for row in rows]))
            .options(joinedload(IncidentCall.call), joinedload(IncidentCall.organisation))
            .order_by(IncidentCall.id)
        ).all()
        targets = _merge_targets(db)
        views = [_view(row, joined.get(row.id, 0), linked, targets) for row in rows]
    page = render_template(
        "console/incidents.html", incidents=views, form=form, warnings=roster_warnings()
    )
    return page, status


def _merge_targets(db: Any) -> list[tuple[int, str]]:
    """The open incidents one may be merged into: (id, «№2 · SKAI-Online»)."""
    return [
        (row.id, f"№{row.id} · {product_title(row.product)}") for row in store.open_incidents(db)
    ]


def _view(row: Any, joined: int, linked: Any, targets: list[tuple[int, str]]) -> dict[str, Any]:
    calls = [c for c in linked if c.incident_id == row.id]
    number = store.ticket_number(row)
    merged_into = store.merged_into(row)
    if row.status == store.OPEN:
        state = "открыт"
    elif merged_into is not None:
        state = f"объединён с №{merged_into}"
    else:
        state = "закрыт"
    return {
        "id": row.id,
        "open": row.status == store.OPEN,
        "state": state,
        "merged_into": merged_into,
        "closed_by": row.closed_by,
        # Into one of the other open incidents.
        "merge_form": MergeForm.offering(
            [t for t in targets if t[0] != row.id and row.status == store.OPEN], formdata=None
        ),
        "product": product_title(row.product),
        "ticket": number,
        "ticket_link": portal_link(number) if number else None,
        "message": row.message,
        "closing_message": row.closing_message if merged_into is None else None,
        "detected": row.detected,
        "opened_at": to_moscow(row.opened_at).strftime("%d.%m.%Y %H:%M"),
        "closed_at": to_moscow(row.closed_at).strftime("%d.%m.%Y %H:%M") if row.closed_at else None,
        "joined": joined,
        "organisations": sorted({c.organisation.name for c in calls if c.organisation}),
        "calls": [
            {
                "sid": c.call.call_sid,
                "at": to_moscow(c.at).strftime("%d.%m %H:%M"),
                "kind": "присоединился" if c.kind == store.JOINED else "обнаружение",
                "organisation": c.organisation.name if c.organisation else "не определена",
            }
            for c in calls
        ],
        "message_form": MessageForm(formdata=None, data={"message": row.message}),
        "close_form": MessageForm(formdata=None),
    }


@bp.post("/incidents")
def open_incident() -> ResponseReturnValue:
    form = OpenIncidentForm()
    if not form.validate():
        return _page(form, 400)
    svc = services()
    user = current_user()
    try:
        with transaction(svc.sessions) as db:
            row = store.open_incident(
                db,
                product=form.product.data,
                message=form.message.data,
                now=svc.clock(),
                calendar=svc.calendar,
                ticket=form.ticket.data or None,
                by=user.name if user else None,
            )
            incident_id, request_id = row.id, row.ticket_request_id
    except InvalidInput as exc:
        form.product.errors.append(_russian(exc))
        return _page(form, 409)
    if request_id is not None:
        svc.jobs.submit_ticket_request(request_id)
    flash(f"Сбой №{incident_id} объявлен: звонящие слышат о нём первым.", "success")
    return redirect(url_for("console.incidents"))


@bp.post("/incidents/<int:incident_id>/message")
def edit_incident_message(incident_id: int) -> ResponseReturnValue:
    form = MessageForm()
    if not form.validate():
        flash("Сообщение не может быть пустым.", "error")
        return redirect(url_for("console.incidents")), 303
    svc = services()
    try:
        with transaction(svc.sessions) as db:
            store.edit_message(db, incident_id, form.message.data)
    except InvalidInput as exc:
        flash(_russian(exc), "error")
        return redirect(url_for("console.incidents")), 303
    flash(f"Сообщение сбоя №{incident_id} изменено.", "success")
    return redirect(url_for("console.incidents"))


@bp.post("/incidents/<int:incident_id>/close")
def close_incident(incident_id: int) -> ResponseReturnValue:
    form = MessageForm()
    if not form.validate():
        flash("Напишите, как устранён сбой: это уйдёт клиентам в СМС.", "error")
        return redirect(url_for("console.incidents")), 303
    svc = services()
    user = current_user()
    try:
        with transaction(svc.sessions) as db:
            store.close_incident(
                db,
                incident_id,
                message=form.message.data,
                now=svc.clock(),
                by=user.name if user else None,
            )
    except InvalidInput as exc:
        flash(_russian(exc), "error")
        return redirect(url_for("console.incidents")), 303
    queued = submit_incident_job(svc, incident_id)
    flash(
        f"Сбой №{incident_id} закрыт. СМС об устранении "
        + ("отправляются присоединившимся." if queued else "уйдут, когда очередь заработает."),
        "success",
    )
    return redirect(url_for("console.incidents"))


@bp.post("/incidents/<int:incident_id>/merge")
def merge_incident(incident_id: int) -> ResponseReturnValue:
    svc = services()
    with svc.sessions() as db:
        targets = [t for t in _merge_targets(db) if t[0] != incident_id]
    form = MergeForm.offering(targets)
    if not form.validate():
        flash("Выберите открытый сбой, с которым объединить.", "error")
        return redirect(url_for("console.incidents")), 303
    user = current_user()
    into: int = form.into.data
    try:
        with transaction(svc.sessions) as db:
            done = store.merge_incident(
                db, incident_id, into=into, now=svc.clock(), by=user.name if user else None
            )
            moved = done.moved_calls
    except InvalidInput as exc:
        flash(_russian(exc), "error")
        return redirect(url_for("console.incidents")), 303
    log.info(
        "incident %s merged into %s by %s: %d call(s) moved",
        incident_id,
        into,
        user.name if user else "?",
        moved,
    )
    queued = submit_incident_job(svc, incident_id)
    flash(
        f"Сбой №{incident_id} объединён с №{into}: перенесено {moved} "
        f"{agree_with_number('звонок', moved)}. "
        f"СМС об устранении они получат при закрытии сбоя №{into}; "
        + (
            "заявка связывается с ним на портале."
            if queued
            else "заявка свяжется с ним на портале, когда очередь заработает."
        ),
        "success",
    )
    return redirect(url_for("console.incidents"))


def _russian(exc: InvalidInput) -> str:
    text = str(exc)
    if "open already" in text:
        return "По этому продукту сбой уже объявлен: сначала закройте его."
    if "closed already" in text:
        which = re.search(r"№(\d+)", text)
        return f"Сбой №{which.group(1)} уже закрыт." if which else "Сбой уже закрыт."
    if "no incident" in text:
        return "Такого сбоя нет."
    if "into itself" in text:
        return "Сбой нельзя объединить с самим собой."
    return "Проверьте поля формы."
