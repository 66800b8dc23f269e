"""`/api/calls`: the call log as JSON, behind a bearer token.

    GET /api/calls                 newest first; filters and pages from the query string
    GET /api/calls/<CallSid>       one call with its legs, events and notes, and `alerts`:
                                   everyone rung and every SMS about it, with its state
    GET /api/callbacks             the call-back queue, oldest first (`?all=1`: done too)

Tokens come from `callcenter token create NAME`. Missing, unknown or revoked token: 401
JSON; a bad filter value: 400 JSON naming the parameter; an unknown CallSid: 404 JSON; a
path or method the API does not have: 404 / 405 JSON (after the token check, as for any
other URL of the API). The filters themselves live in `callcenter.calllog.query` (shared
with the console).
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from callcenter.access.tokens import verify_token
from callcenter.api import portal as portal_api
from callcenter.callbacks import queue as callback_queue
from callcenter.calllog.alerts import alerted_json, who_was_alerted
from callcenter.calllog.query import CallFilter, PageRequest, get_call, search_calls
from callcenter.calllog.serialize import call_json
from callcenter.db import transaction
from callcenter.errors import InvalidFilter
from callcenter.regulation.topics import TOPICS
from callcenter.web import db_session, services

bp = Blueprint("api", __name__, url_prefix="/api")


def _error(status: int, error: str, message: str, **extra: str) -> Response:
    response = jsonify(error=error, message=message, **extra)
    response.status_code = status
    return response


@bp.before_request
def _require_token() -> ResponseReturnValue | None:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        response = _error(
            401,
            "unauthorized",
            "send Authorization: Bearer <token> (create one with: callcenter token create NAME)",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="callcenter"'
        return response
    if verify_token(db_session(), presented.strip()) is None:
        response = _error(401, "unauthorized", "the token is unknown or revoked")
        response.headers["WWW-Authenticate"] = 'Bearer realm="callcenter", error="invalid_token"'
        return response
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    # Caller numbers and names: never kept by a proxy or browser cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(InvalidFilter)
def _bad_filter(exc: InvalidFilter) -> ResponseReturnValue:
    return _error(400, "invalid_filter", exc.message, parameter=exc.field)


def _known_topics() -> Collection[str]:
    return set(TOPICS)


@bp.get("/calls")
def list_calls() -> ResponseReturnValue:
    params = {key: request.args.get(key, "") for key in request.args}
    call_filter = CallFilter.from_params(params, known_topics=_known_topics())
    page = PageRequest.from_params(params)
    found = search_calls(db_session(), call_filter, page)
    lines = services().settings.lines
    query = call_filter.to_params()

    def link(number: int) -> str:
        params = {**query, "page": str(number), "per_page": str(page.per_page)}
        return url_for("api.list_calls") + "?" + urlencode(params)

    return jsonify(
        calls=[call_json(call, lines=lines) for call in found.calls],
        page=found.page,
        per_page=found.per_page,
        total=found.total,
        pages=found.pages,
        next=link(found.page + 1) if found.has_next else None,
        prev=link(found.page - 1) if found.has_prev else None,
    )


@bp.get("/calls/<call_sid>")
def show_call(call_sid: str) -> ResponseReturnValue:
    session = db_session()
    call = get_call(session, call_sid)
    if call is None:
        return _error(404, "not_found", f"no call {call_sid!r} in the log")
    settings = services().settings
    alerted = who_was_alerted(session, call, duty_phone=settings.duty_phone)
    return jsonify({**call_json(call, lines=settings.lines), "alerts": alerted_json(alerted)})


@bp.get("/callbacks")
def list_callbacks() -> ResponseReturnValue:
    """The call-back queue, oldest first (`?all=1`: finished items too)."""
    svc = services()
    now = svc.clock()
    with transaction(svc.sessions) as session:
        callback_queue.refresh_queue(
            session, now=now, calendar=svc.calendar, sla_minutes=svc.settings.callback_sla_minutes
        )
    which = callback_queue.QueueFilter(include_done=request.args.get("all") == "1")
    items = callback_queue.list_items(db_session(), which)
    return jsonify(
        callbacks=[callback_queue.item_json(item, now=now) for item in items],
        total=len(items),
        overdue=sum(1 for item in items if callback_queue.is_overdue(item, now)),
    )


# ---------------------------------------------------------------- URLs no view serves


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


@bp.app_errorhandler(NotFound)
@bp.app_errorhandler(MethodNotAllowed)
def routing_error(exc: HTTPException) -> ResponseReturnValue:
    """A URL that matches no route (404), or none for its method (405), as JSON under the
    JSON APIs (this one and the built-in portal's); Flask's own page everywhere else.

    Flask hands routing errors to the app's error handlers only, never to a blueprint's,
    so this one is registered for the whole app (`app_errorhandler`) and looks at the path.
    """
    path = request.path
    if _under(path, portal_api.PREFIX):
        return portal_api.routing_error()
    if not _under(path, bp.url_prefix or "/api"):
        return exc
    refused = _require_token()
    if refused is not None:
        return refused
    if isinstance(exc, MethodNotAllowed):
        allowed = sorted(exc.valid_methods or ())
        response = _error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {path}; use " + ", ".join(allowed),
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response
    return _error(404, "not_found", f"no endpoint at {path}; see GET /api/calls")
