"""Prometheus metrics.

Two kinds, on purpose:
- Process-local observations (webhook latency by step) are a Histogram. Under gunicorn
  with several workers, `callcenter.gunicorn_conf` sets `PROMETHEUS_MULTIPROC_DIR` before
  the workers start; `render` then adds up the workers' files (prometheus_client's
  multiprocess mode), so any worker's scrape reports the whole server.
- Business figures (calls by category and by line and outcome, time to answer, tickets
  opened/failed, outbox backlog, urgent calls unanswered, the call-back queue and its SLA,
  incidents) are read from the database at scrape time. The database is the one truth
  every web and worker process shares, so these never disagree between processes and
  survive restarts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.callbacks import queue as callback_queue
from callcenter.db.models import Call, CallbackItem, DialLeg, Incident, IncidentCall, TicketRequest
from callcenter.vocabulary import URGENT_CATEGORIES, Outcome

WEBHOOK_LATENCY = Histogram(
    "callcenter_webhook_seconds",
    "Time to answer a Twilio webhook, by endpoint/step.",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# Ring to pick-up of a person the routing chain rang (seconds): a phone rings ~20-30 s
# before the chain moves on.
ANSWER_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0)

CALLBACK_REASONS = (
    callback_queue.URGENT_MISSED,
    callback_queue.URGENT_NOT_RUNG,
    callback_queue.TICKET_FAILED,
    callback_queue.VOICEMAIL,
    callback_queue.ABANDONED,
    callback_queue.NOT_SERVED,
)


def answer_histogram(seconds: Iterable[float]) -> HistogramMetricFamily:
    """`callcenter_answer_seconds`: Prometheus's cumulative buckets of the given times."""
    values = sorted(seconds)
    buckets: list[tuple[str, float]] = []
    for bound in ANSWER_BUCKETS:
        buckets.append((str(bound), float(sum(1 for v in values if v <= bound))))
    buckets.append(("+Inf", float(len(values))))
    family = HistogramMetricFamily(
        "callcenter_answer_seconds",
        "Ring to pick-up of the people the routing chain rang and who took the call.",
    )
    family.add_metric([], buckets, sum_value=sum(values))
    return family


class DatabaseCollector(Collector):
    """Business figures computed from the shared database on each scrape, as of `now`
    (the service's clock: an overdue call back is one whose SLA moment has passed)."""

    def __init__(self, sessions: sessionmaker[Session], now: datetime) -> None:
        self._sessions = sessions
        self._now = now

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

            # By line (the number dialled) and how the call ended. A call in progress is
            # a gauge of its own: it moves to an outcome when it ends, and a counter never
            # goes down.
            finished = CounterMetricFamily(
                "callcenter_calls_finished",
                "Calls that ended, by line (the number dialled) and outcome.",
                labels=["line", "outcome"],
            )
            in_progress = GaugeMetricFamily(
                "callcenter_calls_in_progress", "Calls in progress now, by line.", labels=["line"]
            )
            # Every line that ever had a call says 0 when none is in progress: the series
            # stays (a graph at 0, not a gap).
            now_on_line: dict[str, int] = {}
            for line, outcome, count in session.execute(
                select(Call.line, Call.outcome, func.count()).group_by(Call.line, Call.outcome)
            ):
                name = line or "unknown"
                now_on_line.setdefault(name, 0)
                if outcome == Outcome.IN_PROGRESS:
                    now_on_line[name] += count
                else:
                    finished.add_metric([name, outcome], count)
            for name, count in sorted(now_on_line.items()):
                in_progress.add_metric([name], count)
            yield finished
            yield in_progress

            # Few rows (one per call a person took); bucketed here because the two
            # databases subtract timestamps differently.
            yield answer_histogram(
                max(0.0, (answered - started).total_seconds())
                for started, answered in session.execute(
                    select(DialLeg.started_at, DialLeg.answered_at).where(
                        DialLeg.purpose == "chain",
                        DialLeg.result == "accepted",
                        DialLeg.answered_at.is_not(None),
                    )
                )
                if answered is not None
            )

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

            yield from self._callbacks(session)

    def _callbacks(self, session: Session) -> Iterable[Metric]:
        waiting = GaugeMetricFamily(
            "callcenter_callbacks_waiting",
            "Call-back queue items not finished (open, taken, being dialled), by reason.",
            labels=["reason"],
        )
        by_reason = dict(
            session.execute(
                select(CallbackItem.reason, func.count())
                .where(CallbackItem.status.in_(callback_queue.WAITING))
                .group_by(CallbackItem.reason)
            ).all()
        )
        for reason in CALLBACK_REASONS:
            waiting.add_metric([reason], by_reason.get(reason, 0))
        yield waiting

        overdue = GaugeMetricFamily(
            "callcenter_callbacks_overdue",
            "Call-back queue items past their SLA moment (CALLBACK_SLA_MINUTES working "
            "minutes after the call) and not finished.",
        )
        overdue.add_metric(
            [],
            session.scalar(
                select(func.count())
                .select_from(CallbackItem)
                .where(callback_queue.overdue_at(self._now))
            )
            or 0,
        )
        yield overdue

        done = CounterMetricFamily(
            "callcenter_callbacks_done",
            "Call-back queue items finished, by result (reached, wrong_number).",
            labels=["result"],
        )
        by_result = dict(
            session.execute(
                select(CallbackItem.result, func.count())
                .where(CallbackItem.status == callback_queue.DONE)
                .group_by(CallbackItem.result)
            ).all()
        )
        for result in (callback_queue.REACHED, callback_queue.WRONG_NUMBER):
            done.add_metric([result], by_result.get(result, 0))
        yield done


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


class WorkersCollector(Collector):
    """`callcenter_workers`: the RQ workers alive (heartbeat within their TTL) serving
    this service's ticket queue, as Redis knows them."""

    def __init__(self, count: int) -> None:
        self._count = count

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "callcenter_workers", "Job workers alive (`callcenter worker`), as Redis knows them."
        )
        gauge.add_metric([], self._count)
        yield gauge


def render(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    ready: Mapping[str, bool] | None = None,
    workers: int | None = None,
) -> tuple[bytes, str]:
    """The scrape. `workers`: how many job workers Redis knows (None: no Redis, jobs
    run in-process, or Redis did not answer — `callcenter_ready{check="redis"}` says)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(WEBHOOK_LATENCY)
    if ready is not None:
        registry.register(ReadinessCollector(ready))
    if workers is not None:
        registry.register(WorkersCollector(workers))
    if ready is None or ready.get("database", True):
        # With the database down the scrape still answers: callcenter_ready says why.
        registry.register(DatabaseCollector(sessions, now))
    return generate_latest(registry), CONTENT_TYPE_LATEST
