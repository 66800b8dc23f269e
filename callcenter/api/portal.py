"""The built-in portal's REST API at `/portal/api/v1`, documented in `openapi.yaml`.

Thin views over `BuiltinPortal`: read the request with `wire`, call one portal method,
answer with `wire`. It is the contract the customer's portal implements for `HttpPortal`,
so every answer, errors included, is JSON: `{"error": {"code", "message"[, "fields"]}}`.

Access: `Authorization: Bearer <BUILTIN_PORTAL_TOKEN>`. Without that setting the API is
switched off and says so (403); the in-process portal needs no token.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from callcenter.errors import (
    InvalidStatusChange,
    InvalidTicketData,
    PortalRejected,
    PortalUnavailable,
    TicketNotFound,
)
from callcenter.portal import tickets as rules
from callcenter.portal import wire
from callcenter.portal.builtin import BuiltinPortal
from callcenter.portal.protocol import TicketView
from callcenter.web import services

PREFIX = "/portal/api/v1"
bp = Blueprint("portal_api", __name__, url_prefix=PREFIX)

IDEMPOTENCY_HEADER = "Idempotency-Key"


class ApiError(Exception):
    """An answer other than success, already decided by a view."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify(error={"code": code, "message": message, **extra})
    response.status_code = status
    return response


def _portal() -> BuiltinPortal:
    svc = services()
    return BuiltinPortal(svc.sessions, svc.clock, base_url=svc.settings.public_base_url)


def _ticket(view: TicketView, status: int = 200) -> Response:
    response = jsonify(wire.view_to_json(view))
    response.status_code = status
    if status == 201:
        response.headers["Location"] = url_for(".get_ticket", number=view.number)
    return response


def _json_body() -> object:
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)"
        )
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    return body


def _required_key() -> str:
    key = _optional_key()
    if key is None:
        raise ApiError(
            400,
            "idempotency_key_required",
            f"send an {IDEMPOTENCY_HEADER} header (e.g. the CallSid) so a retried "
            "request never makes a second ticket",
        )
    return key


def _optional_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        why = rules.key_problem(key)
        if why:
            raise ApiError(400, "invalid_idempotency_key", f"{IDEMPOTENCY_HEADER} {why}")
    return key


# ---------------------------------------------------------------- access


@bp.before_request
def _authorise() -> ResponseReturnValue | None:
    expected = services().settings.builtin_portal_token
    if expected is None:
        return error_response(
            403,
            "portal_api_disabled",
            "the built-in portal API is switched off: BUILTIN_PORTAL_TOKEN is not set",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        response = error_response(
            401, "unauthorized", "send Authorization: Bearer <BUILTIN_PORTAL_TOKEN>"
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="portal"'
        return response
    if _carries_nul():
        return error_response(400, "bad_request", "NUL characters are not allowed")
    return None


def _carries_nul() -> bool:
    """A NUL anywhere (path, query, headers we read, JSON body): PostgreSQL cannot store it."""
    if "\x00" in request.full_path or "\x00" in request.headers.get(IDEMPOTENCY_HEADER, ""):
        return True
    body = request.get_data(cache=True)
    return b"\x00" in body or b"\\u0000" in body


# ---------------------------------------------------------------- tickets


@bp.post("/tickets")
def create_ticket() -> ResponseReturnValue:
    draft = wire.draft_from_json(_json_body(), _required_key())
    view, created = _portal().create_ticket_once(draft)
    return _ticket(view, 201 if created else 200)


@bp.get("/tickets")
def open_tickets() -> ResponseReturnValue:
    """Open tickets (not solved or closed) of a contact or a caller number, newest first."""
    args = request.args
    unknown = sorted(set(args) - {"status", "contact_id", "caller", "limit"})
    problems = {name: "unknown parameter" for name in unknown}
    if args.get("status") != "open":
        problems["status"] = "must be open (only open tickets are listed)"
    contact_id = _int_arg("contact_id", problems)
    limit = _int_arg("limit", problems)
    limit = 3 if limit is None else limit
    caller = args.get("caller")
    problems = {
        **rules.open_query_problems(contact_id=contact_id, caller=caller, limit=limit),
        **problems,
    }
    if problems:
        raise InvalidTicketData(dict(sorted(problems.items())))
    views = _portal().open_tickets(contact_id=contact_id, caller=caller, limit=limit)
    return jsonify(wire.views_to_json(views))


def _int_arg(name: str, problems: dict[str, str]) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        problems[name] = "must be a whole number"
        return None
    return int(raw)


@bp.get("/tickets/<number>")
def get_ticket(number: str) -> ResponseReturnValue:
    return _ticket(_portal().get_ticket(number))


@bp.patch("/tickets/<number>")
def update_ticket(number: str) -> ResponseReturnValue:
    change = wire.change_from_json(_json_body())
    view = _portal().update_ticket(
        number,
        status=change.status,
        priority=change.priority,
        author=change.author,
        comment=change.comment,
    )
    return _ticket(view)


@bp.post("/tickets/<number>/entries")
def add_entry(number: str) -> ResponseReturnValue:
    key = _optional_key()
    entry = wire.entry_from_json(_json_body())
    view, added = _portal().add_entry_once(
        number,
        text=entry.text,
        attachment_url=entry.attachment_url,
        attachment_name=entry.attachment_name,
        author=entry.author,
        dedup_key=key,
    )
    return _ticket(view, 201 if added else 200)


@bp.post("/tickets/<number>/phone-duplicates")
def record_phone_duplicate(number: str) -> ResponseReturnValue:
    duplicate = wire.phone_duplicate_from_json(_json_body())
    view, added = _portal().record_phone_duplicate_once(
        number, at=duplicate.at, caller=duplicate.caller, call_ref=duplicate.call_ref
    )
    return _ticket(view, 201 if added else 200)


@bp.post("/tickets/<number>/affected-organisations")
def add_affected_organisations(number: str) -> ResponseReturnValue:
    affected = wire.affected_from_json(_json_body())
    view, added = _portal().add_affected_organisations_once(
        number, affected.organisations, author=affected.author
    )
    return _ticket(view, 201 if added else 200)


@bp.post("/tickets/<number>/incidents")
def link_incident(number: str) -> ResponseReturnValue:
    linked = wire.incident_from_json(_json_body())
    view, added = _portal().link_incident_once(number, linked.link, author=linked.author)
    return _ticket(view, 201 if added else 200)


# Routing misses under the prefix would otherwise get the app's HTML error pages (Flask
# never hands routing errors to blueprint handlers); this catch-all keeps them JSON, and
# `routing_error` answers the same for a method not even the catch-all takes.
_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@bp.route("/", defaults={"rest": ""}, methods=_ANY_METHOD)
@bp.route("/<path:rest>", methods=_ANY_METHOD)
def no_such_endpoint(rest: str) -> ResponseReturnValue:
    return _routing_miss()


def routing_error() -> ResponseReturnValue:
    """The answer to a request under the prefix that matched no route at all, for the app's
    routing error handler (`callcenter.api.calls.routing_error`): as the catch-all's, after the
    same access check the blueprint's requests get."""
    refused = _authorise()
    return refused if refused is not None else _routing_miss()


def _routing_miss() -> Response:
    """404, or 405 naming the methods the path has, for a request no endpoint serves."""
    catch_all = f"{bp.name}.{no_such_endpoint.__name__}"
    adapter = current_app.create_url_adapter(request)
    allowed = []
    if adapter is not None:
        for method in ("GET", "POST", "PATCH"):
            try:
                endpoint, _args = adapter.match(request.path, method=method)
            except HTTPException:
                continue
            if endpoint != catch_all:
                allowed.append(method)
    if allowed:
        response = error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; use " + ", ".join(allowed),
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response
    return error_response(404, "not_found", f"no endpoint at {request.path}; see openapi.yaml")


# ---------------------------------------------------------------- errors as JSON


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> ResponseReturnValue:
    return error_response(exc.status, exc.code, exc.message, **exc.extra)


@bp.errorhandler(InvalidTicketData)
def _invalid(exc: InvalidTicketData) -> ResponseReturnValue:
    return error_response(422, "invalid_fields", str(exc), fields=exc.fields)


@bp.errorhandler(InvalidStatusChange)
def _bad_transition(exc: InvalidStatusChange) -> ResponseReturnValue:
    return error_response(409, "invalid_status_change", str(exc))


@bp.errorhandler(PortalRejected)
def _rejected(exc: PortalRejected) -> ResponseReturnValue:
    return error_response(422, "rejected", str(exc))


@bp.errorhandler(TicketNotFound)
def _not_found(exc: TicketNotFound) -> ResponseReturnValue:
    return error_response(404, "ticket_not_found", str(exc))


@bp.errorhandler(PortalUnavailable)
def _unavailable(exc: PortalUnavailable) -> ResponseReturnValue:
    response = error_response(503, "unavailable", str(exc))
    response.headers["Retry-After"] = "5"
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    code = (exc.name or "error").lower().replace(" ", "_")
    status = exc.code or 500
    return error_response(status, code, exc.description or exc.name or "error")
