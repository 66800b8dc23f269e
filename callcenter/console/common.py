"""What several console pages share: links to the portal and the roster's warnings."""

from __future__ import annotations

import threading
import time

from flask import current_app

from callcenter.roster.on_duty import roster_health
from callcenter.web import services

# The roster's health (a week of half-hours, ~0.1 s) is worked out at most this often per
# process; an import through the console refreshes it at once.
ROSTER_WARNINGS_TTL = 60.0

_lock = threading.Lock()


def portal_link(number: str) -> str | None:
    """Where the ticket opens: the portal's URL, made relative when it is this service's
    own page (the built-in portal), so the link works behind any host name."""
    url = services().portal.ticket_url(number)
    base = (services().settings.public_base_url or "").rstrip("/")
    if url and base and url.startswith(base + "/"):
        return url[len(base) :]
    return url


def roster_warnings() -> list[str]:
    """The roster's problems in Russian (empty roster, no head, gaps in urgent cover),
    shown loudly on every page."""
    cache = current_app.extensions.setdefault("console_roster_warnings", {})
    with _lock:
        cached = cache.get("value")
        if cached is not None and time.monotonic() - cached[0] < ROSTER_WARNINGS_TTL:
            return list(cached[1])
    svc = services()
    with svc.sessions() as db:
        warnings = roster_health(db, svc.clock(), svc.calendar)
    with _lock:
        cache["value"] = (time.monotonic(), warnings)
    return list(warnings)


def forget_roster_warnings() -> None:
    current_app.extensions.setdefault("console_roster_warnings", {}).pop("value", None)
