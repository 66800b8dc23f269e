"""The app factory. Nothing builds an app or connects at import time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response, g, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

from callcenter.api.calls import bp as api_bp
from callcenter.api.portal import bp as portal_api_bp
from callcenter.console import bp as console_bp
from callcenter.db.deadline import WEBHOOK_DATABASE_SECONDS, guard_of
from callcenter.health import bp as health_bp
from callcenter.logs import bind_call_sid, configure_logging, unbind_call_sid
from callcenter.metrics import WEBHOOK_LATENCY
from callcenter.roster.on_duty import roster_health
from callcenter.security import bound_webhook_bodies, init_security
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.vocabulary import WEBHOOKS_PREFIX
from callcenter.web import EXTENSION, close_db_session
from webhooks.callbacks import bp as callbacks_bp
from webhooks.routing import bp as routing_bp
from webhooks.sms import bp as sms_bp
from webhooks.voice import bp as voice_bp

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    if services is None:
        services = Services.from_settings(settings or Settings.from_env())
    settings = services.settings

    app = _App(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.session_interface = _NoSessionForMachines()
    app.extensions[EXTENSION] = services

    configure_logging(settings)

    app.register_blueprint(api_bp)
    app.register_blueprint(portal_api_bp)
    app.register_blueprint(console_bp)
    app.register_blueprint(health_bp)
    twilio = _twilio_app(app, services)
    app.extensions[TWILIO_APP] = twilio
    # In front of everything the security set-up wraps (ProxyFix): both apps see the
    # request as the trusted proxies describe it.
    app.wsgi_app = _WebhooksApart(twilio.wsgi_app, app.wsgi_app)  # type: ignore[method-assign]
    init_security(app, settings)

    _instrument(app, services, webhooks=False)
    _warn_about_roster(services)

    app.teardown_appcontext(close_db_session)

    return app


# Where `create_app` keeps the app that serves Twilio's webhooks (`twilio_app_of`).
TWILIO_APP = "callcenter.twilio_app"


def twilio_app_of(app: Flask) -> Flask:
    """The app behind `app` that serves Twilio's webhooks (its URL map, for instance)."""
    twilio: Flask = app.extensions[TWILIO_APP]
    return twilio


def _twilio_app(app: Flask, services: Services) -> Flask:
    """Twilio's webhooks (`webhooks/`) on an app of their own, behind the same WSGI entry
    point: signed machine requests that need none of the console's extensions. Flask-Login,
    Flask-WTF and Flask-Limiter each run their hooks on every request of an app (the
    limiter's check even for requests no limit applies to): ~45 µs of every call step's
    CPU, measured with `scripts/profile_ivr_step.py`. What a webhook does need is here:
    the body bound (`security.bound_webhook_bodies`), the per-request instruments, the
    database session's teardown, and the one configuration (shared, so a test's
    `TESTING` reaches both)."""
    twilio = _App(__name__)
    twilio.config = app.config
    twilio.session_interface = _NoSession()
    twilio.extensions[EXTENSION] = services
    twilio.register_blueprint(voice_bp)
    twilio.register_blueprint(routing_bp)
    twilio.register_blueprint(callbacks_bp)
    twilio.register_blueprint(sms_bp)
    bound_webhook_bodies(twilio)
    _instrument(twilio, services, webhooks=True)
    twilio.teardown_appcontext(close_db_session)
    return twilio


class _WebhooksApart:
    """The WSGI entry point: a path under `WEBHOOKS_PREFIX` to the Twilio app, the rest to
    the console's. Not werkzeug's `DispatcherMiddleware`: it moves the mount point into
    SCRIPT_NAME, and every URL the service gives Twilio, and every signature it checks,
    names the whole path."""

    def __init__(self, twilio: WSGIApplication, rest: WSGIApplication) -> None:
        self._twilio = twilio
        self._rest = rest

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if str(environ.get("PATH_INFO", "")).startswith(WEBHOOKS_PREFIX):
            return self._twilio(environ, start_response)
        return self._rest(environ, start_response)


class _App(Flask):
    """Flask, with `ensure_sync`'s answer kept per function. Flask asks it of every hook
    and view on every request (a dozen `inspect` checks a webhook), and a function's
    answer never changes; Flask documents the method as the one to override."""

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        sync = self._sync.get(func)
        if sync is None:
            sync = super().ensure_sync(func)
            if len(self._sync) < _SYNC_KEPT:  # nothing made anew per request piles up
                self._sync[func] = sync
        return sync


# Hooks, views and error handlers are a few dozen functions.
_SYNC_KEPT = 512


class _NoSessionForMachines(SecureCookieSessionInterface):
    """The JSON API and the probes carry no session cookie: they get Flask's null session
    instead of a cookie session (whose signer is built per request)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(MACHINE_PATHS):
            return self.null_session_class()
        return super().open_session(app, request)


# The console app's paths that machines call (Twilio's have an app of their own).
MACHINE_PATHS = ("/api/", "/portal/api/", "/healthz", "/readyz", "/metrics")


class _NoSession(SecureCookieSessionInterface):
    """The Twilio app's: Twilio carries no session cookie, on any path."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        return self.null_session_class()


def _instrument(app: Flask, services: Services, *, webhooks: bool) -> None:
    """Per request: the call it belongs to for every log line and one access line; for
    Twilio's webhooks (`webhooks`: the Twilio app) also the database deadline and the
    webhook latency histogram by endpoint.

    The CallSid comes from Twilio's form (`CallSid`), or for a dialled person's leg from
    the caller's call the routing URLs name (`?call=` / `ParentCallSid`), or from a URL
    that names a call (`/api/calls/<call_sid>`). Reading the form here costs nothing
    extra: the signature check reads it anyway.
    """
    access = logging.getLogger("callcenter.http")

    def call_sid_of_request() -> str | None:
        if request.view_args and isinstance(request.view_args.get("call_sid"), str):
            return str(request.view_args["call_sid"])[:64]
        if not webhooks:
            return None
        sid = (
            request.args.get("call")
            or request.form.get("ParentCallSid")
            or request.form.get("CallSid")
            or ""
        )
        return sid.strip()[:64] or None

    deadline = guard_of(services.engine) if webhooks else None

    @app.before_request
    def _start_request() -> None:
        g.started = time.perf_counter()
        g.log_token = bind_call_sid(call_sid_of_request())
        if deadline is not None:
            # Twilio waits 15 s: a hung database must fail the step well before that, so
            # the caller hears the fallback (see callcenter.db.deadline).
            deadline.start(WEBHOOK_DATABASE_SECONDS)

    @app.after_request
    def _access_line(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            access.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "status": response.status_code,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "endpoint": request.endpoint,
                },
            )
        return response

    @app.teardown_request
    def _end_request(_exc: BaseException | None) -> None:
        started = g.pop("started", None)
        if started is not None and webhooks:
            WEBHOOK_LATENCY.labels(request.endpoint or "unknown").observe(
                time.perf_counter() - started
            )
        token = g.pop("log_token", None)
        if token is not None:
            unbind_call_sid(token)
        if deadline is not None:
            deadline.clear()


def _warn_about_roster(svc: Services) -> None:
    """An empty or broken roster is a loud warning at start-up (calls go to DUTY_PHONE)."""
    try:
        with svc.sessions() as session:
            warnings = roster_health(session, svc.clock(), svc.calendar)
    except Exception as exc:  # noqa: BLE001 - start-up must not die on a cold database
        log.warning("roster not checked at start-up: %s", exc.__class__.__name__)
        return
    for warning in warnings:
        fallback = svc.settings.duty_phone or "unset: callers leave a voicemail"
        log.warning("ROSTER: %s (calls fall back to DUTY_PHONE %s)", warning, fallback)
