"""Who may see and do what in the console: login, sessions, CSRF, roles, headers.

- The session cookie (Flask's signed cookie: HttpOnly, SameSite=Lax, Secure in production,
  set by the app factory) carries the user's id, a fingerprint of the password hash (a
  new password signs out every other session), the time of the last request (sessions
  idle for `IDLE_TIMEOUT` end) and the CSRF token.
- Every request to the console but the login page and the static files needs a signed-in
  user: a page request is redirected to the login page, anything else (recording streams,
  JSON, POSTs) gets 401.
- Every POST needs the session's CSRF token in the form (`csrf_token`) or in the
  `X-CSRF-Token` header: missing or wrong → 400, before anything else is looked at.
- Every POST but logging out needs the supervisor role: a specialist gets 403. The rule
  is by method, not by a list of views, so a new action is protected without anyone
  remembering to.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Response,
    abort,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from callcenter.access.users import AddressThrottle, ConsoleUser, authenticate, password_stamp
from callcenter.calllog.words import moscow
from callcenter.clock import as_utc
from callcenter.console import bp
from callcenter.db.models import User
from callcenter.errors import LoginFailed, LoginLocked
from callcenter.web import services

IDLE_TIMEOUT = timedelta(hours=12)
# The last-seen time is rewritten at most this often (each rewrite is a new cookie).
SEEN_RESOLUTION = timedelta(minutes=1)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

_USER = "console_user"
_STAMP = "console_stamp"
_SEEN = "console_seen"
_CSRF = "console_csrf"

# Endpoints open without a login, and POSTs open to every signed-in role.
PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})
POST_FOR_EVERYONE = frozenset({"console.login", "console.logout"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)


def throttle() -> AddressThrottle:
    """The app's per-address login throttle (one per app, i.e. per process)."""
    from flask import current_app

    found: AddressThrottle | None = current_app.extensions.get("console_throttle")
    if found is None:
        found = current_app.extensions.setdefault("console_throttle", AddressThrottle())
    return found


def now() -> datetime:
    return services().clock()


def current_user() -> ConsoleUser | None:
    """The signed-in user of this request, or None."""
    if "console_user_obj" not in g:
        g.console_user_obj = _load_user()
    found: ConsoleUser | None = g.console_user_obj
    return found


def _load_user() -> ConsoleUser | None:
    user_id = session.get(_USER)
    if not isinstance(user_id, int):
        return None
    seen_raw = session.get(_SEEN)
    at = now()
    try:
        seen = datetime.fromisoformat(seen_raw) if isinstance(seen_raw, str) else None
    except ValueError:
        seen = None
    if seen is None or at - as_utc(seen) > IDLE_TIMEOUT:
        _forget()
        return None
    with services().sessions() as db:
        user = db.get(User, user_id)
        if user is None or session.get(_STAMP) != password_stamp(user):
            _forget()
            return None
        found = ConsoleUser.of(user)
    if at - as_utc(seen) >= SEEN_RESOLUTION:
        session[_SEEN] = at.isoformat()
    return found


def _forget() -> None:
    for key in (_USER, _STAMP, _SEEN):
        session.pop(key, None)


def require_user() -> ConsoleUser:
    user = current_user()
    if user is None:  # pragma: no cover - the before_request guard runs first
        abort(401)
    return user


def csrf_token() -> str:
    token = session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_CSRF] = token
    return token


def _csrf_ok() -> bool:
    expected = session.get(_CSRF)
    presented = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return isinstance(expected, str) and hmac.compare_digest(expected, presented)


def _asks_for_html() -> bool:
    """A browser navigating (Accept names text/html), not a media element or a script,
    which send */* and should get a status, not a login form."""
    return any(value == "text/html" for value, _quality in request.accept_mimetypes)


def _wants_page() -> bool:
    return request.method == "GET" and _asks_for_html()


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    endpoint = request.endpoint or ""
    changes = request.method not in ("GET", "HEAD", "OPTIONS")
    if endpoint not in PUBLIC_ENDPOINTS:
        user = current_user()
        if user is None:
            if _wants_page() and not _is_stream(request.path):
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            return _refuse(401, "Нужно войти в консоль.")
    if changes and not _csrf_ok():
        return _refuse(400, "Форма устарела или отправлена не из консоли. Обновите страницу.")
    if changes and endpoint not in POST_FOR_EVERYONE:
        user = current_user()
        if user is None or not user.can_edit:
            return _refuse(403, "Это действие доступно только руководителю (supervisor).")
    return None


def _is_stream(path: str) -> bool:
    """Recordings and JSON: a media element or a script asked, not a person."""
    return path.endswith((".json", "/recording")) or "/recordings/" in path


def _refuse(status: int, message: str) -> ResponseReturnValue:
    if _asks_for_html() and not request.path.endswith(".json"):
        return render_template("console/error.html", status=status, message=message), status
    response = jsonify(error=status, message=message)
    response.status_code = status
    return response


@bp.after_request
def _headers(response: Response) -> Response:
    # Caller numbers, names and voices: never kept by a browser or proxy cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@bp.app_context_processor
def _template_globals() -> dict[str, object]:
    # Every console template gets the user and the CSRF token (no other templates exist).
    if not request.blueprint == "console":
        return {}
    return {"current_user": current_user(), "csrf_token": csrf_token}


# ---------------------------------------------------------------- login and logout


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect to another site."""
    default = url_for("console.calls")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/"):
        return default
    if "\\" in target or target.startswith("//"):
        return default
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(next_url)
        return render_template("console/login.html", next_url=next_url, error=None, name="")
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    address = request.remote_addr or "unknown"
    at = now()
    try:
        throttle().check(address, at)
        user = _authenticate(name, password, at)
    except LoginLocked as exc:
        message = (
            "Слишком много неудачных попыток входа. Попробуйте после "
            f"{moscow(exc.until, 'HH:mm')} (МСК)."
        )
        throttle().failed(address, at)
        return render_template(
            "console/login.html", next_url=next_url, error=message, name=name
        ), 429
    except LoginFailed:
        throttle().failed(address, at)
        return render_template(
            "console/login.html",
            next_url=next_url,
            error="Неверное имя пользователя или пароль.",
            name=name,
        ), 401
    throttle().succeeded(address)
    # A new session on login: nothing set before it (fixation) survives.
    session.clear()
    session[_USER] = user.id
    session[_STAMP] = user.stamp
    session[_SEEN] = at.isoformat()
    csrf_token()
    return redirect(next_url)


class _SignedIn:
    def __init__(self, user: User) -> None:
        self.id = user.id
        self.stamp = password_stamp(user)


def _authenticate(name: str, password: str, at: datetime) -> _SignedIn:
    with services().sessions() as db:
        try:
            user = authenticate(db, name, password, now=at)
        except LoginFailed:
            db.commit()  # the failure counters
            raise
        signed_in = _SignedIn(user)
        db.commit()
        return signed_in


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("console.login"))
