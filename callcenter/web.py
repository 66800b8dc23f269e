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
