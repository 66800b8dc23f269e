"""`/console/tickets/<number>`: a ticket as the portal has it, behind the console's login.

This is where the built-in portal's `ticket_url` points. The page asks the portal
(`Portal.get_ticket`), so it shows the customer's portal's tickets too when one is
configured, and links the call that opened the ticket when it is in our log.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.calllog import words
from callcenter.console import bp
from callcenter.console.common import roster_warnings
from callcenter.db.models import Call, TicketRequest
from callcenter.errors import PortalError, TicketNotFound
from callcenter.web import services

log = logging.getLogger(__name__)

ENTRY_KINDS = {
    "created": "Создана",
    "comment": "Комментарий",
    "attachment": "Вложение",
    "status": "Смена статуса",
    "status_change": "Смена статуса",
    "phone_duplicate": "Продублирована звонком",
    "priority": "Смена приоритета",
    "affected_client": "Затронутые клиенты",
    "incident": "Инцидент",
}
# How a call was about the ticket, by the call's category.
CALL_ROLES = {
    "addition": "дополнение",
    "status": "узнал статус",
}


@bp.get("/tickets/<number>")
def ticket_page(number: str) -> ResponseReturnValue:
    svc = services()
    try:
        ticket = svc.portal.get_ticket(number)
    except TicketNotFound:
        return render_template(
            "console/error.html", status=404, message=f"Заявка №{number} на портале не найдена."
        ), 404
    except (PortalError, ValueError) as exc:
        log.warning("portal lookup of ticket %s failed: %r", number, exc)
        return render_template(
            "console/error.html",
            status=503,
            message=f"Портал заявок недоступен, заявку №{number} показать нельзя. "
            "Попробуйте позже.",
        ), 503
    with svc.sessions() as db:
        opened = db.scalar(select(Call.call_sid).where(Call.call_sid == ticket.call_ref))
        calls = [opened] if ticket.call_ref and opened is not None else []
        about = _calls_about(db, ticket.number, ticket.created_at)
        calls += [call.call_sid for call in about if call.call_sid not in calls]
        about_rows = [
            {
                "call_sid": call.call_sid,
                "at": words.moscow(call.started_at, "d MMMM y, HH:mm"),
                "role": "открыл заявку"
                if call.call_sid == ticket.call_ref
                else CALL_ROLES.get(call.category or "", "дублирование звонком"),
                "caller": words.phone_display(call.caller_e164, call.caller_raw),
            }
            for call in about
        ]
    history = [
        {
            "at": words.moscow(entry.at, "d MMMM y, HH:mm"),
            "kind": ENTRY_KINDS.get(entry.kind, entry.kind),
            "author": entry.author,
            "text": entry.text,
            "attachment_url": _own_link(entry.attachment_url),
            "attachment_name": entry.attachment_name,
            "audio": _is_own_recording(entry.attachment_url),
        }
        for entry in ticket.history
    ]
    return render_template(
        "console/ticket.html",
        ticket=ticket,
        topic=words.topic_title(ticket.topic),
        product=words.product_title(ticket.product) if ticket.product else None,
        priority=words.PRIORITY_TITLES.get(ticket.priority, ticket.priority),
        created=words.moscow(ticket.created_at, "d MMMM y, HH:mm"),
        first_stage_due=words.moscow(ticket.first_stage_due, "HH:mm, EEEE d MMMM y")
        if ticket.first_stage_due
        else None,
        resolution_due=words.moscow(ticket.resolution_due, "HH:mm, EEEE d MMMM y")
        if ticket.resolution_due
        else None,
        duplicated=words.moscow(ticket.duplicated_by_phone_at, "d MMMM y, HH:mm")
        if ticket.duplicated_by_phone_at
        else None,
        caller=words.phone_display(ticket.caller, ticket.caller) if ticket.caller else None,
        calls=calls,
        calls_about=about_rows,
        history=history,
        warnings=roster_warnings(),
    )


def _calls_about(db: Session, number: str, since: datetime) -> list[Call]:
    """Calls in our log about the ticket, oldest first: the one that opened it, and those
    about it since (an addition, a phone duplicate: their request names it; a status
    enquiry: the IVR's note of the related ticket)."""
    by_request = select(TicketRequest.call_id).where(TicketRequest.ticket_number == number)
    related = Call.state["related_ticket"].as_string() == number
    return list(
        db.scalars(
            select(Call)
            .where(Call.id.in_(by_request) | ((Call.started_at >= since) & related))
            .order_by(Call.started_at, Call.id)
        )
    )


def _own_link(url: str | None) -> str | None:
    """This service's own recording link, made relative (it opens behind the login)."""
    if not url:
        return url
    base = (services().settings.public_base_url or "").rstrip("/")
    if base and url.startswith(base + "/console/"):
        return url[len(base) :]
    return url


def _is_own_recording(url: str | None) -> bool:
    """A recording this service keeps: played in the page rather than linked."""
    link = _own_link(url)
    return bool(link and link.startswith("/console/recordings/"))
