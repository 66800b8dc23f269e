"""Prometheus metrics.

Two kinds, on purpose:
- Process-local observations (webhook latency by step) are a Histogram. Under gunicorn
  with several workers, `callcenter.gunicorn_conf` sets `PROMETHEUS_MULTIPROC_DIR` before
  the workers start; `render` then adds up the workers' files (prometheus_client's
  multiprocess mode), so any worker's scrape reports the whole server.
- Business figures (calls by category, tickets opened/failed, outbox backlog, urgent calls
  unanswered) are read from the database at scrape time. The database is the one truth
  every web and worker process shares, so these never disagree between processes and
  survive restarts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.db.models import Call, Incident, IncidentCall, TicketRequest
from callcenter.vocabulary import URGENT_CATEGORIES

WEBHOOK_LATENCY = Histogram(
    "callcenter_webhook_seconds",
    "Time to answer a Twilio webhook, by endpoint/step.",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class DatabaseCollector(Collector):
    """Business figures computed from the shared database on each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[Metric]:
        with self._sessions() as session:
            calls = CounterMetricFamily(
                "callcenter_calls", "Calls received, by category.", labels=["category"]
            )
            for category, count in session.execute(
                select(Call.category, func.count()).group_by(Call.category)
            ):
                calls.add_metric([category or "undecided"], count)
            yield calls

            tickets = CounterMetricFamily(
                "callcenter_ticket_requests", "Ticket requests, by state.", labels=["state"]
            )
            by_state = dict(
                session.execute(
                    select(TicketRequest.status, func.count()).group_by(TicketRequest.status)
                ).all()
            )
            for state in ("pending", "done", "failed"):
                tickets.add_metric([state], by_state.get(state, 0))
            yield tickets

            backlog = GaugeMetricFamily(
                "callcenter_outbox_backlog", "Ticket requests not yet turned into tickets."
            )
            backlog.add_metric([], by_state.get("pending", 0))
            yield backlog

            unanswered = GaugeMetricFamily(
                "callcenter_urgent_unanswered",
                "Urgent calls (critical/stolen) nobody accepted, not yet called back.",
            )
            unanswered.add_metric(
                [],
                session.scalar(
                    select(func.count())
                    .select_from(Call)
                    .where(
                        Call.category.in_(URGENT_CATEGORIES),
                        Call.routing_outcome == "nobody_accepted",
                        Call.called_back_at.is_(None),
                    )
                )
                or 0,
            )
            yield unanswered

            incidents = GaugeMetricFamily(
                "callcenter_incidents_open", "Known incidents open now (callers hear them)."
            )
            incidents.add_metric(
                [],
                session.scalar(
                    select(func.count()).select_from(Incident).where(Incident.status == "open")
                )
                or 0,
            )
            yield incidents

            joined = CounterMetricFamily(
                "callcenter_incident_calls_joined", "Calls that joined a known incident."
            )
            joined.add_metric(
                [],
                session.scalar(
                    select(func.count())
                    .select_from(IncidentCall)
                    .where(IncidentCall.kind == "joined")
                )
                or 0,
            )
            yield joined


class ReadinessCollector(Collector):
    """`callcenter_ready{check}`: 1 when the readiness check passed at this scrape."""

    def __init__(self, ready: Mapping[str, bool]) -> None:
        self._ready = dict(ready)

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "callcenter_ready",
            "Readiness checks as /readyz makes them (database, redis, roster): 1 ok, 0 failing.",
            labels=["check"],
        )
        for check, ok in sorted(self._ready.items()):
            gauge.add_metric([check], 1 if ok else 0)
        yield gauge


def render(
    sessions: sessionmaker[Session], ready: Mapping[str, bool] | None = None
) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(WEBHOOK_LATENCY)
    if ready is not None:
        registry.register(ReadinessCollector(ready))
    if ready is None or ready.get("database", True):
        # With the database down the scrape still answers: callcenter_ready says why.
        registry.register(DatabaseCollector(sessions))
    return generate_latest(registry), CONTENT_TYPE_LATEST
