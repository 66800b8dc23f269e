#!/usr/bin/env python3
"""Benchmark (not a test): the supervisor console with 100 000 calls in PostgreSQL.

    .venv/bin/python scripts/bench_console.py [--calls 100000] [--runs 25]
        [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--keep]

Creates a scratch database (`cc_bench_console_<pid>`, dropped at the end unless --keep),
fills it with a year of calls by COPY — the ticket requests of the ticketed ones, dial
legs of the urgent ones, a few events each — runs ANALYZE, then times full page requests
through the real app (Flask's test client, signed in as a supervisor: routing, the login
check, the queries, the templates):

    log        /console/                              the first page, everything
    filtered   /console/?category=…&attention=true   a filter that touches the joins
    search     /console/?q=<a caller's number>
    month      /console/dashboard?from=…&to=…         the dashboard for a 30-day month
    call       /console/calls/<CallSid>               one call's page
    export     /console/calls.csv?from=…&to=…         a month as CSV (the whole stream)

Prints the median and p95 of each in milliseconds. Target: every page's median under a
second with 100 000 calls. Only the local PostgreSQL is touched.

`--jit-off` connects with `options=-c jit=off` in the database URL. PostgreSQL's JIT
compiler (on by default, for plans estimated above `jit_above_cost`) spends most of a
second compiling the log's "problems only" count, which then runs in ~0.1 s: for a web
service's short queries it is a loss, and a deployment can switch it off in
DATABASE_URL (or with ALTER DATABASE … SET jit = off) without any code change.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2025, 11, 27, 8, 0, tzinfo=UTC)  # 11:00 Moscow
LINES = ("+78002506077", "+78126077741")
PASSWORD = "console timing 2025"
CATEGORIES = (
    ("consultation", 40),
    ("incident", 35),
    ("critical", 3),
    ("stolen", 2),
    ("status", 8),
    ("abandoned", 12),
)
INCIDENT_TOPICS = (
    "consultation",
    "accounts_access",
    "data_update",
    "system_reports",
    "scheduled_reports",
    "remote_diagnostics",
    "violations_check",
)


def fill(engine: Any, calls: int, seed: int = 7) -> None:
    """COPY `calls` calls spread over the year before NOW into an empty schema."""
    rng = random.Random(seed)
    names, weights = zip(*CATEGORIES, strict=True)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        call_cols = (
            "id, call_sid, line, caller_raw, caller_e164, caller_kind, category, topic, "
            "product, vehicles, state, outcome, routing_outcome, interrupted, flagged, "
            "called_back_at, started_at, ended_at, duration_seconds, updated_at"
        )
        request_cols = (
            "id, call_id, idempotency_key, draft, status, attempts, ticket_number, followups, "
            "created_at, updated_at, done_at"
        )
        leg_cols = (
            "call_id, position, staff_key, staff_name, number, started_at, answered_at, result"
        )
        event_cols = "call_id, at, kind, step, digits, detail"
        requests: list[tuple[Any, ...]] = []
        legs: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        with cur.copy(f"COPY calls ({call_cols}) FROM STDIN") as copy:
            for n in range(1, calls + 1):
                started = NOW - timedelta(seconds=rng.randrange(365 * 24 * 3600))
                # Office hours are busier: move most calls into 09:00-18:00 Moscow.
                if rng.random() < 0.8:
                    day = started.replace(hour=6, minute=0, second=0)
                    started = day + timedelta(seconds=rng.randrange(9 * 3600))
                category = rng.choices(names, weights)[0]
                topic = {
                    "incident": rng.choice(INCIDENT_TOPICS),
                    "critical": "critical_server_failure",
                    "stolen": "stolen_vehicle",
                }.get(category)
                duration = rng.randrange(5, 900)
                caller = f"+7916{rng.randrange(10**7):07d}"
                urgent = category in ("critical", "stolen")
                accepted = urgent and rng.random() < 0.9
                outcome = "abandoned" if category == "abandoned" else "completed"
                routing = None
                if urgent:
                    routing = "connected" if accepted else "nobody_accepted"
                elif category == "consultation":
                    routing = rng.choice(("connected", "connected", "connected", "no_answer"))
                sid = f"CA{n:032x}"
                copy.write_row(
                    (
                        n, sid, rng.choice(LINES), caller, caller, "mobile", category, topic,
                        None, "[]", "{}", outcome, routing, False, urgent and not accepted,
                        None, started, started + timedelta(seconds=duration), duration, started,
                    )
                )  # fmt: skip
                if category in ("incident", "critical", "stolen"):
                    failed = rng.random() < 0.01
                    requests.append(
                        (
                            len(requests) + 1, n, sid, json.dumps({"topic": topic}),
                            "failed" if failed else "done", 1,
                            None if failed else str(1000 + len(requests)), "{}",
                            started, started, None if failed else started,
                        )
                    )  # fmt: skip
                if urgent:
                    first = started + timedelta(seconds=40)
                    legs.append(
                        (n, 1, "ivanov", "Иванов Иван", "+79123456701", first, None, "no-answer")
                    )
                    second = first + timedelta(seconds=20)
                    legs.append(
                        (
                            n, 2, "petrova", "Петрова Анна", "+79123456702", second,
                            second + timedelta(seconds=rng.randrange(3, 15)) if accepted else None,
                            "accepted" if accepted else "no-answer",
                        )
                    )  # fmt: skip
                events.append((n, started, "incoming", "start", None, '{"result": "greeted"}'))
                chose = '{"result": "chose", "choice": "new_problem"}'
                events.append(
                    (n, started + timedelta(seconds=8), "gather", "main_menu", "2", chose)
                )
        with cur.copy(f"COPY ticket_requests ({request_cols}) FROM STDIN") as copy:
            for row in requests:
                copy.write_row(row)
        with cur.copy(f"COPY dial_legs ({leg_cols}) FROM STDIN") as copy:
            for row in legs:
                copy.write_row(row)
        with cur.copy(f"COPY call_events ({event_cols}) FROM STDIN") as copy:
            for row in events:
                copy.write_row(row)
        for table in ("calls", "ticket_requests", "dial_legs", "call_events"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def timed(runs: int, request: Callable[[], Any]) -> list[float]:
    for _ in range(2):  # warm up: templates compiled, plans cached, pages in memory
        request()
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        request()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--jit-off",
        action="store_true",
        help="connect with PostgreSQL's JIT compiler off (DATABASE_URL ?options=-c jit=off)",
    )
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    import callcenter.db.models  # noqa: F401 - the tables
    from callcenter.access.users import create_user
    from callcenter.app import create_app
    from callcenter.clock import fixed_clock
    from callcenter.db import Base, transaction
    from callcenter.services import Services
    from callcenter.settings import Settings

    name = f"cc_bench_console_{os.getpid()}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    if args.jit_off:
        url += "?options=-c%20jit%3Doff"
    try:
        settings = Settings(database_url=url, secret_key="bench", data_dir=Path("/tmp") / name)
        services = Services.from_settings(settings, clock=fixed_clock(NOW))
        Base.metadata.create_all(services.engine)
        started = time.perf_counter()
        fill(services.engine, args.calls)
        print(f"filled {args.calls} calls in {time.perf_counter() - started:.1f} s ({url})")
        with transaction(services.sessions) as session:
            create_user(session, "bench", "supervisor", PASSWORD, now=NOW)
            sid = session.scalar(text("SELECT call_sid FROM calls ORDER BY random() LIMIT 1"))
            caller = session.scalar(text("SELECT caller_e164 FROM calls ORDER BY random() LIMIT 1"))

        app = create_app(services=services)
        client = app.test_client()
        client.get("/console/login")
        with client.session_transaction() as flask_session:
            token = flask_session["console_csrf"]
        signed_in = client.post(
            "/console/login", data={"name": "bench", "password": PASSWORD, "csrf_token": token}
        )
        assert signed_in.status_code == 302, signed_in.status_code

        def page(url: str) -> Callable[[], Any]:
            def get() -> None:
                response = client.get(url)
                assert response.status_code == 200, (url, response.status_code)
                response.get_data()
                response.close()

            return get

        month = "from=2025-10-28&to=2025-11-26"
        pages = {
            "log": "/console/",
            "filtered": "/console/?category=incident,critical,stolen&attention=true",
            "search": f"/console/?q={caller}",
            "month": f"/console/dashboard?{month}",
            "call": f"/console/calls/{sid}",
            "export": f"/console/calls.csv?{month}",
        }
        print(f"{'page':<10} {'median ms':>10} {'p95 ms':>10}  url")
        for label, target in pages.items():
            runs = max(3, args.runs // 5) if label == "export" else args.runs
            times = timed(runs, page(target))
            print(f"{label:<10} {statistics.median(times):>10.1f} {p95(times):>10.1f}  {target}")
        services.close()
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
