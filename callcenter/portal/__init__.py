"""The ticket portal, behind the `Portal` protocol.

    build_portal(settings, sessions, clock)  HttpPortal when PORTAL_URL is set, else
                            BuiltinPortal
    BuiltinPortal           tickets in our own database (the embedded default)
    HttpPortal              the customer's portal over the REST contract (openapi.yaml)
    portal.api.bp           the built-in portal served as that REST contract

Errors (`callcenter.errors`): `PortalUnavailable` (transient, retry), `PortalRejected`
(permanent; `InvalidTicketData`, `InvalidStatusChange`), `TicketNotFound`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from callcenter.clock import Clock
from callcenter.portal.builtin import BuiltinPortal
from callcenter.portal.http import HttpPortal
from callcenter.portal.protocol import Portal, TicketDraft, TicketEntryView, TicketView
from callcenter.settings import Settings

__all__ = ["Portal", "TicketDraft", "TicketEntryView", "TicketView", "build_portal"]


def build_portal(settings: Settings, sessions: sessionmaker[Session], clock: Clock) -> Portal:
    if settings.portal_url:
        return HttpPortal(
            settings.portal_url,
            settings.portal_token,
            ticket_url_template=settings.portal_ticket_url,
        )
    return BuiltinPortal(sessions, clock, base_url=settings.public_base_url)
