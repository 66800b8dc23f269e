"""The ticket portal, behind the `Portal` protocol (filled in by the ticket issue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callcenter.portal.protocol import Portal
    from callcenter.services import Services


def build_portal(services: Services) -> Portal:
    raise NotImplementedError("filled in by the ticket issue")
