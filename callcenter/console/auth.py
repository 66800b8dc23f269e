"""Who may see and do what in the console: login, sessions, CSRF, roles, headers.

- Flask-Login keeps the signed-in user. Its id in the session cookie (Flask's signed
  cookie: HttpOnly, SameSite=Lax, Secure in production) is `<user id>:<session
  generation>`; every request loads the user and compares the generation, so logging out,
  a new password or "sign out everywhere" (each bumps it) ends every copy of the cookie.
  Sessions idle for `IDLE_TIMEOUT` end too (the time of the last request is in the cookie).
- Every request to the console but the login page and the static files needs a signed-in
  user: a page request is redirected to the login page, anything else (recording streams,
  JSON, POSTs) gets 401.
- Every POST needs Flask-WTF's CSRF token in the form (`csrf_token`) or in the
  `X-CSRF-Token` header: missing or wrong → 400, before anything else is looked at.
- Every POST but logging out needs the supervisor role: a specialist gets 403, but for
  the few actions listed in `POST_FOR_SPECIALISTS` (the call-back queue, notes). The rule
  is by method, not by a list of views, so a new action is protected without anyone
  remembering to.
- Logins are throttled by Flask-Limiter (`callcenter.web`): failed attempts per submitted
  name and per client address, the same answer whether the name exists or not.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_login import AnonymousUserMixin, UserMixin, login_user, logout_user
from flask_login import current_user as _login_current_user
from flask_wtf.csrf import CSRFError, generate_csrf

from callcenter.access.users import ConsoleUser, authenticate, end_sessions
from callcenter.clock import as_utc
from callcenter.console import bp
from callcenter.console.forms import LoginForm, SignOutForm
from callcenter.db import transaction
from callcenter.db.models import User
from callcenter.errors import LoginFailed, UnknownUser
from callcenter.web import (
    LOGIN_LIMIT_PER_ADDRESS,
    LOGIN_LIMIT_PER_NAME,
    services,
)

IDLE_TIMEOUT = timedelta(hours=12)
# The last-seen time is rewritten at most this often (each rewrite is a new cookie).
SEEN_RESOLUTION = timedelta(minutes=1)
_SEEN = "console_seen"

# Endpoints open without a login, and POSTs open to every signed-in role.
PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})
POST_FOR_EVERYONE = frozenset({"console.login", "console.logout"})
# What a specialist may change too: the call-back queue they work and notes on a call.
POST_FOR_SPECIALISTS = frozenset(
    {
        "console.take_callback",
        "console.release_callback",
        "console.dial_callback",
        "console.callback_result",
        "console.add_note",
    }
)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
    "script-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)
TOO_MANY_LOGINS = "Слишком много попыток входа. Подождите минуту и попробуйте снова."


class SignedIn(UserMixin):  # type: ignore[misc]  # flask-login ships no types
    """Flask-Login's user: the console user and the session generation it signed in under."""

    def __init__(self, user: ConsoleUser, generation: int) -> None:
        self.user = user
        self.generation = generation

    def get_id(self) -> str:
        return f"{self.user.id}:{self.generation}"

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def can_edit(self) -> bool:
        return self.user.can_edit


class Anonymous(AnonymousUserMixin):  # type: ignore[misc]
    """Nobody signed in: false in templates (`{% if current_user %}`), may not edit."""

    name = ""
    can_edit = False

    def __bool__(self) -> bool:
        return False


def load_signed_in(user_id: str) -> SignedIn | None:
    """Flask-Login's user loader: None (signed out) when the generation moved on."""
    raw_id, _, raw_generation = user_id.partition(":")
    if not (raw_id.isdigit() and raw_generation.isdigit()):
        return None
    with services().sessions() as db:
        user = db.get(User, int(raw_id))
        if user is None or (user.session_generation or 0) != int(raw_generation):
            return None
        return SignedIn(ConsoleUser.of(user), user.session_generation or 0)


def now() -> datetime:
    return services().clock()


def current_user() -> ConsoleUser | None:
    """The signed-in user of this request, or None."""
    found = _login_current_user
    if not found or not found.is_authenticated:
        return None
    if not _still_active():
        logout_user()
        return None
    user: ConsoleUser = found.user
    return user


def _still_active() -> bool:
    """The idle timeout: a session unused for `IDLE_TIMEOUT` ends."""
    at = now()
    seen_raw = session.get(_SEEN)
    try:
        seen = as_utc(datetime.fromisoformat(seen_raw)) if isinstance(seen_raw, str) else None
    except ValueError:
        seen = None
    if seen is None or at - seen > IDLE_TIMEOUT:
        return False
    if at - seen >= SEEN_RESOLUTION:
        session[_SEEN] = at.isoformat()
    return True


def require_user() -> ConsoleUser:
    user = current_user()
    if user is None:  # pragma: no cover - the before_request guard runs first
        abort(401)
    return user


def csrf_token() -> str:
    token: str = generate_csrf()
    return token


def _csrf_ok() -> bool:
    try:
        current_app.extensions["csrf"].protect()
    except CSRFError:
        return False
    return True


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
        if user is None or not (user.can_edit or endpoint in POST_FOR_SPECIALISTS):
            return _refuse(403, "Это действие доступно только руководителю (supervisor).")
    if _has_nul():
        return _refuse(400, "В запросе недопустимый символ (NUL). Исправьте введённые данные.")
    return None


def _has_nul() -> bool:
    """A NUL anywhere in the query, the form or an uploaded file: no browser form or
    spreadsheet sends one, and PostgreSQL cannot store it (SQLite would): refused on both."""
    if "\x00" in request.path:
        return True
    for params in (request.args, request.form):
        for key, value in params.items(multi=True):
            if "\x00" in key or "\x00" in value:
                return True
    for upload in request.files.values():
        data = upload.stream.read()
        upload.stream.seek(0)
        if b"\x00" in data:
            return True
    return False


def _is_stream(path: str) -> bool:
    """Recordings and JSON: a media element or a script asked, not a person."""
    return path.endswith((".json", "/recording")) or "/recordings/" in path


def _refuse(status: int, message: str) -> ResponseReturnValue:
    if _asks_for_html() and not request.path.endswith(".json"):
        return render_template("console/error.html", status=status, message=message), status
    response = jsonify(error=status, message=message)
    response.status_code = status
    return response


@bp.record_once
def _site_root(state: BlueprintSetupState) -> None:
    # Whoever opens the service's bare address lands in the console (its login when signed
    # out), not on a 404.
    state.app.add_url_rule("/", "site_root", lambda: redirect(url_for("console.calls")))


@bp.errorhandler(404)
def _not_found(error: Exception) -> ResponseReturnValue:
    # A call, contact or recording that is not there: the console's page, not werkzeug's.
    return _refuse(404, "Такой записи нет: возможно, ссылка устарела.")


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
    if not target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        # A CR/LF would split the Location header; other control characters have no
        # place in a path either.
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/"):
        return default
    if "\\" in target or target.startswith("//"):
        return default
    return target


def _login_page(form: LoginForm, next_url: str, error: str | None, status: int) -> Response:
    page = render_template(
        "console/login.html", form=form, next_url=next_url, error=error, name=form.name.data or ""
    )
    return Response(page, status=status)


def _attempted_name() -> str:
    """The per-name throttle's key: the submitted name as a login would read it, whether
    such a user exists or not (so the throttle tells nothing about which names do)."""
    return "login-name:" + request.form.get("name", "").strip().casefold()[:120]


def _failed(response: Response) -> bool:
    return response.status_code != 302


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    next_url = _safe_next(request.values.get("next"))
    form = LoginForm()
    if request.method == "GET":
        if current_user() is not None:
            return redirect(next_url)
        return _login_page(form, next_url, None, 200)
    if not form.validate():
        return _login_page(form, next_url, "Введите имя пользователя и пароль.", 400)
    name = (form.name.data or "").strip()
    try:
        with transaction(services().sessions) as db:
            user = authenticate(db, name, form.password.data or "", now=now())
            signed_in = SignedIn(ConsoleUser.of(user), user.session_generation or 0)
    except LoginFailed:
        return _login_page(form, next_url, "Неверное имя пользователя или пароль.", 401)
    # A new session on login: nothing set before it (fixation) survives.
    session.clear()
    login_user(signed_in)
    session[_SEEN] = now().isoformat()
    return redirect(next_url)


def throttle_login(app: Flask, limiter: Limiter) -> None:
    """Flask-Limiter's limits on failed logins (the app factory calls this once per app)."""
    limits = limiter.limit
    view: Any = app.view_functions["console.login"]
    for limit, key in (
        (LOGIN_LIMIT_PER_NAME, _attempted_name),
        (LOGIN_LIMIT_PER_ADDRESS, None),
    ):
        view = limits(limit, key_func=key, methods=["POST"], deduct_when=_failed)(view)
    app.view_functions["console.login"] = view


def too_many_logins() -> ResponseReturnValue:
    """The answer once a limit is reached: the same for every name, known or not."""
    form = LoginForm()
    response = _login_page(form, _safe_next(request.values.get("next")), TOO_MANY_LOGINS, 429)
    response.headers["Retry-After"] = "60"
    return response


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Ends this session and every copy of it (the generation moves on)."""
    user = current_user()
    if user is not None:
        _end_sessions(user.name)
    logout_user()
    session.clear()
    return redirect(url_for("console.login"))


@bp.post("/sign-out-everywhere")
def sign_out_everywhere() -> ResponseReturnValue:
    """A supervisor ends every session of a user (a lost laptop, a leaver): `name` in the
    form, or the supervisor's own when it is blank."""
    me = require_user()
    form = SignOutForm()
    if not form.validate():
        return _refuse(400, " ".join(form.name.errors))
    name = form.name.data or me.name
    try:
        _end_sessions(name)
    except UnknownUser:
        return _refuse(400, f"Нет пользователя консоли с именем «{name[:120]}».")
    if name == me.name:
        logout_user()
        session.clear()
        return redirect(url_for("console.login"))
    flash(f"Все сеансы пользователя {name} завершены.", "success")
    return redirect(url_for("console.calls"))


def _end_sessions(name: str) -> None:
    with transaction(services().sessions) as db:
        end_sessions(db, name)
