"""What a view reaches for during a request: the app's `Services` and the request's session.

The blueprints import these (as the Flask tutorial's views import `get_db` from `db.py`);
the app factory imports the blueprints. Keeping the accessors out of `app.py` is what lets
both directions hold without an import loop.
"""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from callcenter.services import Services

EXTENSION = "callcenter"


def services() -> Services:
    """The Services of the app handling the current request."""
    svc: Services = current_app.extensions[EXTENSION]
    return svc


def db_session() -> Session:
    """One session per request, closed at teardown (`close_db_session`)."""
    if "db_session" not in g:
        g.db_session = services().sessions()
    session: Session = g.db_session
    return session


def close_db_session(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


# ---------------------------------------------------------------- security extensions

# Requests are bounded before their body is read: Twilio's webhooks are a few kilobytes
# (WEBHOOK_MAX_BYTES leaves room for long speech results), the console's largest request is
# a directory or roster file (MAX_CONTENT_LENGTH).
MAX_CONTENT_LENGTH = 4 * 1024 * 1024
WEBHOOK_MAX_BYTES = 64 * 1024
# Failed logins counted per submitted name (known or not: the same answer for both) and
# per client address; a short moving window slows guessing down without locking anyone out.
LOGIN_LIMIT_PER_NAME = "5 per minute"
LOGIN_LIMIT_PER_ADDRESS = "20 per minute"
# The JSON APIs, per client address: far above what a dashboard or a portal needs.
API_LIMIT = "600 per minute"
