"""The supervisor console: the call-to-ticket log a head of support works from every day.

Server-rendered pages in Russian (Jinja templates, one small script, no CDN), behind a
login. Every page is a thin view over a Flask-free module:

    /console/                      the call log: filters, pages, problem rows  (calllog_query)
    /console/calls.csv             the filtered log as CSV for Excel            (csv_export)
    /console/calls/<CallSid>       a call: IVR path, legs, recordings, ticket, actions
    /console/calls/<CallSid>/recording, /console/recordings/<RecordingSid>
                                   recordings streamed through the login      (recordings)
    /console/tickets/<number>      a ticket of the portal                      (portal)
    /console/dashboard             figures for today and a period              (dashboard)
    /console/live                  calls in progress and the last minutes, polled (live)
    /console/directory             organisations and contacts: view, import, edit
    /console/roster                who is on duty now; the roster: view, edit, import
    /console/callbacks             the call-back queue: take, call, record the result

Access (see `auth`): anonymous requests are sent to the login page (streams and JSON get
401); `supervisor` may do everything, `specialist` reads, works the call-back queue and adds
notes (403 on every other POST); every POST carries a CSRF token.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

# The views attach themselves to `bp`; imported here so that registering `bp` is enough.
import callcenter.console.auth  # noqa: E402, F401
import callcenter.console.callbacks  # noqa: E402, F401
import callcenter.console.calls  # noqa: E402, F401
import callcenter.console.dashboard  # noqa: E402, F401
import callcenter.console.directory  # noqa: E402, F401
import callcenter.console.incidents  # noqa: E402, F401
import callcenter.console.live  # noqa: E402, F401
import callcenter.console.recordings  # noqa: E402, F401
import callcenter.console.roster  # noqa: E402, F401
import callcenter.console.tickets  # noqa: E402, F401

__all__ = ["bp"]
