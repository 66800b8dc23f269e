"""The ticket portal, behind the `Portal` protocol.

    build_portal(services)  HttpPortal when PORTAL_URL is set, else BuiltinPortal
    BuiltinPortal           tickets in our own database (the embedded default)
    HttpPortal              the customer's portal over the REST contract (openapi.yaml)
    portal.api.bp           the built-in portal served as that REST contract

Errors (`callcenter.errors`): `PortalUnavailable` (transient, retry), `PortalRejected`
(permanent; `InvalidTicketData`, `InvalidStatusChange`), `TicketNotFound`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callcenter.portal.protocol import Portal, TicketDraft, TicketEntryView, TicketView

if TYPE_CHECKING:
    from callcenter.services import Services

__all__ = ["Portal", "TicketDraft", "TicketEntryView", "TicketView", "build_portal"]


def build_portal(services: Services) -> Portal:
    settings = services.settings
    if settings.portal_url:
        from callcenter.portal.http import HttpPortal

        return HttpPortal(
            settings.portal_url,
            settings.portal_token,
            ticket_url_template=settings.portal_ticket_url,
        )
    from callcenter.portal.builtin import BuiltinPortal

    return BuiltinPortal(services.sessions, services.clock, base_url=settings.public_base_url)
