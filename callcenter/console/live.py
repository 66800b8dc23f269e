"""`/console/live`: calls in progress and the last minutes, updating without a reload.

The page is drawn once with the current snapshot (it works without its script); then
`live.js` asks `/console/live.json` every `POLL_SECONDS` and redraws both tables. The
snapshot is `callcenter.calllog.live`'s.
"""

from __future__ import annotations

from flask import current_app, jsonify, render_template
from flask.typing import ResponseReturnValue

from callcenter.calllog.live import RECENT_MINUTES, live_snapshot
from callcenter.console import bp
from callcenter.web import services

POLL_SECONDS = 5


def _snapshot() -> dict[str, object]:
    svc = services()
    with svc.sessions() as db:
        return live_snapshot(db, svc.clock(), lines=svc.settings.lines)


@bp.get("/live")
def live() -> ResponseReturnValue:
    return render_template(
        "console/live.html",
        live=_snapshot(),
        # Tests ask for a faster page through the app's config.
        poll_seconds=current_app.config.get("CONSOLE_LIVE_POLL_SECONDS", POLL_SECONDS),
        minutes=RECENT_MINUTES,
    )


@bp.get("/live.json")
def live_json() -> ResponseReturnValue:
    response = jsonify(_snapshot())
    response.headers["Cache-Control"] = "no-store"
    return response
