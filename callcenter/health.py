"""Liveness, readiness and metrics for the platform and Prometheus."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from rq import Worker
from sqlalchemy import text

from callcenter.access.tokens import verify_token
from callcenter.jobs.runners import RqJobRunner
from callcenter.metrics import render
from callcenter.roster.on_duty import Roster, roster_health
from callcenter.services import Services
from callcenter.web import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and answering. Touches nothing else on purpose."""
    return jsonify(status="ok")


def _holds_api_token() -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    with services().sessions() as session:
        return verify_token(session, presented.strip()) is not None


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Database and Redis reachable, roster not empty: this instance can take calls.

    Anyone (a load balancer) gets ready / not ready and each check's name with ok/error;
    the details — exception names, the roster's warnings with people's names — need an API
    token (`Authorization: Bearer`), as the call log does.
    """
    svc = services()
    checks, warnings = readiness_checks(svc)
    ready = all(v.startswith("ok") for v in checks.values())
    status = 200 if ready else 503
    if not _holds_api_token():
        brief = {name: "ok" if v.startswith("ok") else "error" for name, v in checks.items()}
        return jsonify(status="ready" if ready else "not ready", checks=brief), status
    return jsonify(
        status="ready" if ready else "not ready", checks=checks, warnings=warnings
    ), status


def readiness_checks(svc: Services) -> tuple[dict[str, str], list[str]]:
    """Each check's "ok…" or "error: …", and the roster's warnings (with names)."""
    checks: dict[str, str] = {}
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["database"] = f"error: {exc.__class__.__name__}"
    if svc.settings.redis_url:
        try:
            redis.Redis.from_url(
                svc.settings.redis_url, socket_connect_timeout=1, socket_timeout=1
            ).ping()
            checks["redis"] = "ok"
        except redis.exceptions.RedisError as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
    else:
        checks["redis"] = "ok (not used: jobs run in-process)"
    warnings: list[str] = []
    if checks["database"] == "ok":
        with svc.sessions() as session:
            empty = not Roster.load(session).people
            warnings = roster_health(session, svc.clock(), svc.calendar)
        # Only an empty roster makes the instance unready (the rule); gaps and
        # missing SMS numbers are warnings: calls still reach the duty phone.
        checks["roster"] = "error: empty" if empty else "ok"
    return checks, warnings


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    svc = services()
    checks, _ = readiness_checks(svc)
    # `callcenter_ready{check}`: the same checks as /readyz, for an alert rule.
    ready = {name: value.startswith("ok") for name, value in checks.items()}
    workers = workers_alive(svc) if checks.get("redis") == "ok" else None
    body, content_type = render(svc.sessions, now=svc.clock(), ready=ready, workers=workers)
    return Response(body, content_type=content_type)


def workers_alive(svc: Services) -> int | None:
    """The `callcenter worker`s whose heartbeat key is alive in Redis for this service's
    ticket queue (a killed one drops out within its TTL, WORKER_TTL + 60 s); None
    without Redis (jobs in-process) or when Redis does not answer."""
    if not svc.settings.redis_url:
        return None  # checked first: `svc.jobs` would start the in-process runner
    runner = svc.jobs
    if not isinstance(runner, RqJobRunner):
        return None
    try:
        return len(Worker.all(queue=runner.tickets))
    except redis.exceptions.RedisError:
        return None
