#!/usr/bin/env python3
"""Benchmark (not a test): tickets through Redis + RQ workers + the built-in portal on
PostgreSQL, and the time from enqueue to ticket number.

    .venv/bin/python scripts/bench_tickets.py [--tickets 2000] [--workers 4] [--rate 100]

What it does:
1. creates a fresh PostgreSQL database and a fresh RQ queue name (nothing shared with a
   running service or another run) and fills it with finished calls and their ticket
   requests, through the same domain calls a webhook makes (`intake.open_ticket_request`);
2. starts `--workers` real worker processes (`callcenter worker`, RQ with its scheduler);
3. throughput: submits `--tickets` requests at once and measures tickets per second until
   the last number is recorded;
4. latency: submits `--rate` requests a second for `--seconds` (an open loop, like calls
   ending) and reports the median and p99 from enqueue to the ticket number (`done_at`,
   written in the same transaction as the number) — what decides whether a caller hears
   the number before hanging up.

The workers run with no Twilio account, so the follow-up SMS are recorded as skipped;
follow-ups that stay in the database like that are done by the ticket job itself, right
after the number (`callcenter.jobs.tasks`). `--recordings` gives every call a recorded
description: attaching it sends the follow-ups to their own job on their own queue, the
way a real SMS through Twilio does in production — the figures with that job's cost.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from rq import Queue, Worker
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter.calls.store import get_or_create_call  # noqa: E402
from callcenter.db import Base, transaction  # noqa: E402
from callcenter.db.models import TicketRequest  # noqa: E402
from callcenter.jobs import runners  # noqa: E402
from callcenter.services import Services  # noqa: E402
from callcenter.settings import Settings  # noqa: E402
from callcenter.tickets.intake import add_recording, open_ticket_request  # noqa: E402

TOPICS = ("system_reports", "data_update", "accounts_access", "critical_server_failure")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tickets", type=int, default=2000, help="for the throughput run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="submissions a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="of the latency run")
    parser.add_argument(
        "--recordings",
        action="store_true",
        help="every call has a recording: the follow-ups run as their own job",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)

    name = f"cc_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=database_url,
        redis_url=args.redis_url,
        queue_name=queue_name,
        data_dir=Path("/tmp") / name,
    )
    services = Services.from_settings(settings)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        Base.metadata.create_all(services.engine)
        paced = int(args.rate * args.seconds)
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes "
            "share the machine); preparing "
            f"{args.tickets + paced} finished calls in {name} …",
            flush=True,
        )
        burst_ids = prepare(services, args.tickets, recordings=args.recordings)
        paced_ids = prepare(services, paced, recordings=args.recordings)

        workers = start_workers(args.workers, database_url, args.redis_url, queue_name)
        wait_for_workers(args.redis_url, queue_name, args.workers)
        runner = services.jobs
        assert isinstance(runner, runners.RqJobRunner)

        print(f"throughput: {args.tickets} tickets submitted at once, {args.workers} workers")
        cpu_before = cpu_by_role(workers)
        submitted = {}
        for request_id in burst_ids:
            submitted[request_id] = time.time()
            runner.submit_ticket_request(request_id)
        done = wait_done(services, burst_ids)
        first = min(submitted.values())
        last = max(done.values())
        rate = len(burst_ids) / (last - first)
        print(f"  {rate:.0f} tickets/s ({len(burst_ids)} in {last - first:.2f} s)")
        steady = len(burst_ids) / (last - min(done.values()))
        print(f"  {steady:.0f} tickets/s from the first number to the last")
        report_latency("  (backlog) enqueue → number", submitted, done)
        cpu_after = cpu_by_role(workers)
        spent = {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
        print(
            "  CPU per ticket: "
            + ", ".join(
                f"{role} {seconds / len(burst_ids) * 1000:.1f} ms"
                for role, seconds in spent.items()
            )
        )

        drain_followups(services, burst_ids)
        # The caller waits for the number only; the follow-ups (SMS, recordings) cost the
        # same machine, so their share is reported beside it, not hidden.
        drained = time.time()
        spent = {
            role: seconds - cpu_before.get(role, 0.0)
            for role, seconds in cpu_by_role(workers).items()
        }
        print(
            f"  with follow-ups: {len(burst_ids) / (drained - first):.0f} tickets/s until the "
            "last follow-up ran; CPU per ticket: "
            + ", ".join(
                f"{role} {seconds / len(burst_ids) * 1000:.1f} ms"
                for role, seconds in spent.items()
            ),
            flush=True,
        )
        print(f"latency: {args.rate:.0f} submissions/s for {args.seconds:.0f} s")
        submitted = {}
        start = time.monotonic()
        for n, request_id in enumerate(paced_ids):
            # Open loop: calls end on their own schedule, whatever the workers are doing.
            delay = start + n / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            submitted[request_id] = time.time()
            runner.submit_ticket_request(request_id)
        done = wait_done(services, paced_ids)
        report_latency("  enqueue → number", submitted, done)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        return 0
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        services.close()
        cleanup_redis(args.redis_url, queue_name)
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(services: Services, count: int, *, recordings: bool = False) -> list[int]:
    """Finished calls with their ticket requests, committed as webhooks would leave them
    (`recordings`: each with its recorded description).

    Their first try is set an hour ahead, so the workers' sweep leaves them alone and each
    starts exactly when the benchmark submits it (what a webhook does after its commit).
    """
    ids: list[int] = []
    now = services.clock() + timedelta(hours=1)
    for start in range(0, count, 200):
        with transaction(services.sessions) as session:
            for n in range(start, min(start + 200, count)):
                call, _ = get_or_create_call(
                    session,
                    "CA" + uuid.uuid4().hex,
                    now=now,
                    caller_raw=f"+7916{n % 10_000_000:07d}",
                    line_raw="+78002506077",
                    find_contact=lambda _session, _e164: None,
                )
                call.category = "incident"
                call.topic = TOPICS[n % len(TOPICS)]
                call.product = "studio"
                call.vehicles = ["А123ВС77"]
                if recordings:
                    sid = "RE" + uuid.uuid4().hex
                    add_recording(
                        session,
                        call,
                        recording_sid=sid,
                        recording_url=f"https://api.twilio.com/2010-04-01/Recordings/{sid}",
                        kind="description",
                        duration=42,
                        now=now,
                    )
                request = open_ticket_request(session, call, now=now, calendar=services.calendar)
                session.flush()
                ids.append(request.id)
    return ids


def start_workers(
    count: int, database_url: str, redis_url: str, queue_name: str
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue_name,
        "TWILIO_ACCOUNT_SID": "",
        "TWILIO_AUTH_TOKEN": "",
    }
    command = [str(ROOT / ".venv" / "bin" / "callcenter"), "worker"]
    return [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]


def wait_for_workers(redis_url: str, queue_name: str, count: int) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=redis)
    deadline = time.monotonic() + 60
    while len(Worker.all(queue=queue)) < count:
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not start in 60 s")
        time.sleep(0.1)
    redis.close()


def wait_done(services: Services, ids: list[int], timeout: float = 300) -> dict[int, float]:
    """request id → when its number was recorded (epoch seconds, the worker's `done_at`).

    Polls a cheap count (the benchmark must not eat the workers' CPU), then reads the
    times once at the end.
    """
    low, high = min(ids), max(ids)
    in_range = (TicketRequest.id >= low, TicketRequest.id <= high)
    deadline = time.monotonic() + timeout
    while True:
        with services.sessions() as session:
            count = session.scalar(
                select(func.count()).where(TicketRequest.status == "done", *in_range)
            )
        if count == len(ids):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {count} of {len(ids)} tickets in {timeout:.0f} s")
        time.sleep(0.2)
    with services.sessions() as session:
        rows = session.execute(select(TicketRequest.id, TicketRequest.done_at).where(*in_range))
        # Every row in range is done (counted above), so each has its `done_at`.
        return {request_id: _epoch(done_at) for request_id, done_at in rows if done_at}


def drain_followups(services: Services, ids: list[int], timeout: float = 300) -> None:
    """Let the burst's follow-ups finish (every request has nothing left due: its SMS
    recorded, its recording attached), so the latency run starts from a quiet system."""
    low, high = min(ids), max(ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with services.sessions() as session:
            left = session.scalar(
                select(func.count()).where(
                    TicketRequest.id >= low,
                    TicketRequest.id <= high,
                    TicketRequest.next_attempt_at.is_not(None),
                )
            )
        if not left:
            return
        time.sleep(0.2)
    raise SystemExit(f"follow-ups of {left} tickets still due after {timeout:.0f} s")


def cpu_by_role(workers: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds used so far by the workers (and their scheduler children), PostgreSQL,
    Redis and this process — where a ticket's cost goes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    worker_pids = {p.pid for p in workers}
    totals = {"workers": 0.0, "postgres": 0.0, "redis": 0.0, "benchmark": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            rest = fields[1].split()
        except (OSError, IndexError):
            continue
        pid, ppid = int(stat.parent.name), int(rest[1])
        seconds = (int(rest[11]) + int(rest[12])) / tick
        if pid in worker_pids or ppid in worker_pids:
            totals["workers"] += seconds
        elif name.startswith("postgres"):
            totals["postgres"] += seconds
        elif name.startswith("redis-server"):
            totals["redis"] += seconds
        elif pid == os.getpid():
            totals["benchmark"] += seconds
    return totals


def report_latency(label: str, submitted: dict[int, float], done: dict[int, float]) -> None:
    latencies = sorted(max(done[i] - submitted[i], 0.0) for i in submitted)
    median = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"{label}: median {median * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max "
        f"{latencies[-1] * 1000:.0f} ms"
    )


def cleanup_redis(redis_url: str, queue_name: str) -> None:
    redis = Redis.from_url(redis_url)
    for name in (queue_name, queue_name + runners.FOLLOWUPS_SUFFIX):
        Queue(name, connection=redis).delete(delete_jobs=True)
    for key in redis.scan_iter(f"rq:*{queue_name}*"):
        redis.delete(key)
    redis.close()


def _epoch(at: datetime) -> float:
    return at.replace(tzinfo=at.tzinfo or UTC).timestamp()


if __name__ == "__main__":
    raise SystemExit(main())
