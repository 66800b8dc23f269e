"""The app's protection, set up once by the factory: Flask-Login for the signed-in user,
Flask-WTF's CSRF, Flask-Limiter's throttles, ProxyFix for trusted proxies only, and the
request-size bound checked before any body is read. Twilio's webhooks, on an app of their
own (`callcenter.app`), get only their body bound here (`bound_webhook_bodies`) and their
signature check in `webhooks.signature`.

The console's own rules (who may do what, the login form) are in `callcenter.console.auth`;
the limits themselves are named in `callcenter.web`, where the views read them.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from callcenter.console import auth
from callcenter.settings import Settings
from callcenter.web import API_LIMIT, MAX_CONTENT_LENGTH, WEBHOOK_MAX_BYTES


def init_security(app: Flask, settings: Settings) -> None:
    """Called by the app factory once the blueprints are registered: Flask-Login,
    Flask-WTF's CSRF, Flask-Limiter, ProxyFix and the request size bound, in one place.
    The console's own rules (who may do what) are in `callcenter.console.auth`.
    """
    n = settings.trusted_proxies
    if n:
        # Only as many X-Forwarded-* hops as there are proxies we run are believed; a
        # client's own forwarded headers are ignored (and without proxies, all of them).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n
        )
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        # One form field (not a file) may carry 1 MB, over werkzeug's 500 kB default: a
        # roster typed in the console's editor gets its form's message past 512 KB
        # (`console.forms.MAX_ROSTER_BYTES`), not a bare 413.
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        # The console checks CSRF itself (console.auth), so machines' POSTs stay untouched.
        WTF_CSRF_CHECK_DEFAULT=False,
        # A token lives as long as the signed-in session (which is revocable).
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_HEADERS=["X-CSRF-Token", "X-CSRFToken"],
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_KEY_PREFIX=f"{settings.queue_name}-limits",
        RATELIMIT_STRATEGY="moving-window",
        # Redis down: count in memory for a while rather than refuse every login.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
    )

    CSRFProtect(app)
    login_manager = LoginManager(app)
    login_manager.session_protection = "basic"
    login_manager.anonymous_user = auth.Anonymous
    login_manager.user_loader(auth.load_signed_in)
    limiter = Limiter(get_remote_address, app=app)
    auth.throttle_login(app, limiter)

    for name in ("api", "portal_api"):
        blueprint = app.blueprints[name]
        assert isinstance(blueprint, Blueprint)
        limiter.limit(API_LIMIT)(blueprint)

    @app.errorhandler(429)
    def _too_many(_exc: Exception) -> ResponseReturnValue:

        if request.endpoint == "console.login":
            return auth.too_many_logins()
        response = jsonify(error=429, message="Слишком много запросов. Повторите через минуту.")
        response.status_code = 429
        response.headers["Retry-After"] = "60"
        return response

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> ResponseReturnValue:

        response = jsonify(error=413, message=TOO_LARGE)
        response.status_code = 413
        return response

    @app.before_request
    def _bound_the_body() -> None:
        # A declared length over the bound: 413 now, before anything reads the body. A
        # chunked body is cut off by werkzeug.
        if (request.content_length or 0) > MAX_CONTENT_LENGTH:
            abort(413)


TOO_LARGE = "Запрос слишком большой."


def bound_webhook_bodies(app: Flask) -> None:
    """The Twilio app's one protection besides the signature (`webhooks.signature`): a
    webhook's body is bounded (`WEBHOOK_MAX_BYTES`), and one over it is a plain 413. No
    limiter: a caller must never hear a 429, and each request is signed."""

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> ResponseReturnValue:
        return Response(f"Request Entity Too Large: {TOO_LARGE}\n", 413, mimetype="text/plain")

    @app.before_request
    def _bound_the_body() -> None:
        request.max_content_length = WEBHOOK_MAX_BYTES
        # A declared length over the bound: 413 now, before the signature check reads the
        # body. A chunked body is cut off by werkzeug.
        if (request.content_length or 0) > WEBHOOK_MAX_BYTES:
            abort(413)
