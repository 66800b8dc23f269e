#!/usr/bin/env python3
"""Chaos run (a benchmark-style script, not a test): the service started the documented
way, under simulated calls, while its dependencies fail — and nobody helps afterwards.

    .venv/bin/python scripts/chaos.py                      # 300 calls, the full outages
    .venv/bin/python scripts/chaos.py --calls 40 --ramp 20 --scale 0.15   # a quick look

What it starts (and stops at the end, whatever happens) is scripts/stack.py's
`SupervisedStack`, all on 127.0.0.1, in a temp dir: a private PostgreSQL cluster and
redis-server, Prism behind a counting proxy (every SMS the service sends is seen, and the
message list answers what was sent: `stack.MessageMemory`), the
built-in portal reached through a proxy that can be switched to answer 500s (PORTAL_URL
points at the proxy), and the service itself with `supervisord -n -c
deploy/supervisord.conf`: the release step, gunicorn and two workers, exactly as the
README's production section runs it.

The calls are scripts/load_calls.py's simulated callers (signed webhooks, TwiML followed,
human pacing scaled by --speed). The faults, timed from the first call (all times times
--scale): Redis killed (SIGKILL, nothing kept) at 10 s and started again empty 60 s later;
the portal answering 500s from 20 s for 60 s; PostgreSQL stopped (`pg_ctl stop -m fast`)
at 75 s and started again 30 s later; at 110 s one worker (with its RQ scheduler) is
`kill -9`ed. After that nobody issues any command.

Checked and printed: calls, ticket requests and tickets; calls that need a ticket (their
path opens one and they were not cut to the apology while the database was down, or the
service holds a request for them) with exactly one ticket, duplicates, lost; SMS sent
(Prism's proxy) against the SMS due (each sent once, none left to send); every supervised
process RUNNING and /readyz 200; the time from the end of the last fault until all of that
holds ("time to recover", required within --recover-seconds). Bounded: --calls at most
2 000, the whole run at most --max-seconds. Exit status 0 when everything held.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import load_calls  # noqa: E402 - the callers, signed as Twilio signs
from stack import (  # noqa: E402 - the stack's pieces
    PostgresCluster,
    Proxy,
    RedisServer,
    Supervised,
    SupervisedStack,
    healthy,
    log,
    require_prism,
    sms_at_prism,
)

# ---------------------------------------------------------------- the callers


class ChaosCaller(load_calls.Caller):
    """A load_calls caller that remembers when it was cut to the apology (the database
    was down for one of its steps): such a call ends without the IVR's ticket."""

    cut: set[str] = set()

    async def post(self, url: str, params: dict[str, str], *, twiml: bool = True) -> Any:
        root = await super().post(url, params, twiml=twiml)
        if root is not None:
            said = " ".join(el.text or "" for el in root.iter("Say"))
            if said.startswith(load_calls.APOLOGY_START):
                ChaosCaller.cut.add(self.call_sid)
        return root


async def run_calls(args: argparse.Namespace, base_url: str, stats: load_calls.Stats) -> None:
    load_calls.Caller = ChaosCaller  # type: ignore[misc]
    await load_calls.run_calls(args, base_url, stats)


# ---------------------------------------------------------------- the faults


def faults(
    args: argparse.Namespace,
    started: float,
    redis: RedisServer,
    pg: PostgresCluster,
    portal: Proxy,
    service: Supervised,
    done: dict[str, float],
) -> None:
    """The timeline, in a thread: each fault at its time, each repaired after its length."""
    s = args.scale
    events: list[tuple[float, str, Callable[[], None]]] = [
        (10 * s, "Redis killed (SIGKILL, no persistence)", redis.kill),
        (20 * s, "portal answers 500s", lambda: setattr(portal, "failing", True)),
        (70 * s, "Redis started again, empty", redis.start_and_wait),
        (75 * s, "PostgreSQL stopped (pg_ctl stop -m fast)", pg.stop),
        (80 * s, "portal answers again", lambda: setattr(portal, "failing", False)),
        (105 * s, "PostgreSQL started again", pg.start),
        (110 * s, "one worker kill -9ed (with its scheduler)", lambda: kill_worker(service)),
    ]
    try:
        for at, what, action in events:
            delay = started + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
            log(what, started)
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        log(f"a fault could not be played: {exc!r}", started)
        done["fault_error"] = time.monotonic()
    done["faults_over"] = time.monotonic()


def kill_worker(service: Supervised) -> None:
    pid = service.pid("worker:worker-0")
    os.killpg(pid, signal.SIGKILL)  # supervisord starts each program in its own group


# ---------------------------------------------------------------- the verdict


# What `outcome` counts as an SMS not sent.
NOT_SENT = ("retry", "sending", "failed", "unknown")


def outcome(
    database_url: str, stats: load_calls.Stats, sms_seen: list[tuple[str, str]]
) -> dict[str, Any]:
    from sqlalchemy import create_engine, select

    from callcenter.db.models import Call, SmsMessage, Ticket, TicketRequest
    from callcenter.tickets.outbox import DUPLICATE_OF

    engine = create_engine(database_url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            tickets = conn.execute(select(Ticket.call_ref)).scalars().all()
            requests_ = conn.execute(
                select(TicketRequest.idempotency_key, TicketRequest.status,
                       TicketRequest.followups, TicketRequest.draft, TicketRequest.ticket_number)
            ).all()  # fmt: skip
            calls = conn.execute(select(Call.call_sid)).scalars().all()
            sms = conn.execute(select(SmsMessage.to, SmsMessage.body, SmsMessage.status)).all()
    finally:
        engine.dispose()
    per_call = Counter(tickets)
    requested = {row[0] for row in requests_}
    by_plan = set(stats.ticketed_calls)
    need = (by_plan - ChaosCaller.cut) | requested
    sms_sent_rows = [(to, body) for to, body, status in sms if status == "sent"]
    at_prism = Counter(sms_seen)
    return {
        "calls": len(calls),
        "calls_by_plan_with_ticket": len(by_plan),
        "calls_cut_to_apology": len(ChaosCaller.cut),
        "calls_needing_ticket": len(need),
        "ticket_requests": len(requests_),
        "pending": sum(1 for row in requests_ if row[1] == "pending"),
        "failed": sum(1 for row in requests_ if row[1] == "failed"),
        "tickets": len(tickets),
        "with_one_ticket": sum(1 for sid in need if per_call[sid] == 1),
        "duplicates": sum(n - 1 for n in per_call.values() if n > 1),
        "lost": sum(1 for sid in need if per_call[sid] == 0),
        "sms_sent_rows": len(sms_sent_rows),
        "sms_at_prism": sum(at_prism.values()),
        "sms_sent_twice": sum(n - 1 for n in at_prism.values() if n > 1),
        # `sending` past SMS_UNSETTLED_MINUTES is looked up at Twilio and settled; `unknown`:
        # Twilio could not be asked.
        "sms_not_sent": sum(1 for _t, _b, status in sms if status in NOT_SENT),
        # A done ticket owes its caller an SMS (sent, or skipped with a reason), unless
        # the call only duplicated a ticket the caller already has the number of.
        "caller_sms_due": sum(
            1
            for _key, status, followups, draft, number in requests_
            if status == "done"
            and (followups or {}).get("caller_sms") in (None, "retry")
            and (draft or {}).get(DUPLICATE_OF) != number
        ),
    }


def _rows(database_url: str, statement: Any) -> list[tuple[Any, ...]]:
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(statement).all()]
    finally:
        engine.dispose()


def still_pending(database_url: str) -> list[tuple[Any, ...]]:
    """What a human would look at first: the requests that are not done yet."""
    from sqlalchemy import select

    from callcenter.db.models import TicketRequest

    return _rows(
        database_url,
        select(
            TicketRequest.id,
            TicketRequest.attempts,
            TicketRequest.next_attempt_at,
            TicketRequest.last_error,
        ).where(TicketRequest.status == "pending"),
    )


def still_unsent(database_url: str) -> list[tuple[Any, ...]]:
    """The SMS not sent, as a human would look them up: key, status, reason, times."""
    from sqlalchemy import select

    from callcenter.db.models import SmsMessage

    return _rows(
        database_url,
        select(
            SmsMessage.key,
            SmsMessage.status,
            SmsMessage.reason,
            SmsMessage.created_at,
            SmsMessage.updated_at,
        ).where(SmsMessage.status.in_(NOT_SENT)),
    )


# The counts of `outcome` that say something is missing or doubled.
_COUNTED_MISSING = (
    "pending",
    "lost",
    "duplicates",
    "sms_sent_twice",
    "sms_not_sent",
    "caller_sms_due",
)


def still_missing(result: dict[str, Any], up: bool) -> str:
    """What keeps `all_good` and `healthy` from holding, in a few words."""
    parts = [
        f"{result[name]} {name.replace('_', ' ')}" for name in _COUNTED_MISSING if result[name]
    ]
    if result["sms_at_prism"] != result["sms_sent_rows"]:
        parts.append(
            f"{result['sms_at_prism']} SMS at Prism vs {result['sms_sent_rows']} recorded sent"
        )
    if not up:
        parts.append("a process or /readyz")
    return ", ".join(parts) or "nothing"


def all_good(result: dict[str, Any]) -> bool:
    return (
        result["pending"] == 0
        and result["lost"] == 0
        and result["duplicates"] == 0
        and result["sms_sent_twice"] == 0
        and result["sms_not_sent"] == 0
        and result["caller_sms_due"] == 0
        and result["sms_at_prism"] == result["sms_sent_rows"]
    )


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--ramp", type=float, default=100.0, help="seconds to start them all")
    parser.add_argument("--speed", type=float, default=0.25, help="scales every caller's wait")
    parser.add_argument("--scale", type=float, default=1.0, help="scales the fault timeline")
    parser.add_argument("--recover-seconds", type=float, default=120.0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 2000:
        parser.error("--calls is between 1 and 2000")
    require_prism(parser)

    def too_long(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"the run took more than {args.max_seconds} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(int(args.max_seconds))
    settings = {
        "QUEUE_NAME": "cc-chaos",
        # A mix of independent callers, not a surge: no incident detected mid-run.
        "INCIDENT_THRESHOLD": "0",
        # An SMS the killed worker left `sending` is looked up at Twilio (Prism, with the
        # stack's `MessageMemory`) and settled a minute later, within the time to recover.
        "SMS_UNSETTLED_MINUTES": "1",
        "SMS_SETTLE_SECONDS": "30",
    }
    try:
        with SupervisedStack(
            "cc-chaos-", settings=settings, portal_proxy=True, keep_logs=args.keep_logs
        ) as stack:
            return run(args, stack)
    finally:
        signal.alarm(0)


def run(args: argparse.Namespace, stack: SupervisedStack) -> int:
    pg, redis, prism, portal, service = (
        stack.pg,
        stack.redis,
        stack.prism,
        stack.portal,
        stack.service,
    )
    assert pg and redis and prism and portal and service
    stack.cli_or_exit("roster", "import", "scripts/examples/roster.yaml")
    stack.wait_ready()
    log(f"stack up under supervisord (logs in {stack.directory}); {args.calls} calls over "
        f"{args.ramp:.0f} s, faults scaled by {args.scale}")  # fmt: skip

    stats = load_calls.Stats()
    started = stats.started
    marks: dict[str, float] = {}
    fault_thread = threading.Thread(
        target=faults, args=(args, started, redis, pg, portal, service, marks), daemon=True
    )
    fault_thread.start()
    asyncio.run(run_calls(args, stack.base_url, stats))
    log(f"all calls ended: {dict(stats.finished)}; errors as callers saw them: "
        f"{dict(stats.errors)}", started)  # fmt: skip
    fault_thread.join()
    if "fault_error" in marks:
        raise SystemExit("the fault timeline did not play out (see above)")
    faults_over = marks["faults_over"]

    # Nobody does anything now: wait for the service to be whole again by itself.
    recovered_at: float | None = None
    result: dict[str, Any] = {}
    deadline = faults_over + args.recover_seconds
    waiting_for = ""
    while time.monotonic() < deadline:
        try:
            result = outcome(pg.url, stats, sms_at_prism(prism))
            up = healthy(service, stack.base_url)
            if all_good(result) and up:
                recovered_at = time.monotonic()
                break
            missing = still_missing(result, up)
        except Exception as exc:  # noqa: BLE001 - still recovering
            result = {"error": repr(exc)[:200]}
            missing = result["error"]
        if missing != waiting_for:  # what recovery still waits for, as it changes
            waiting_for = missing
            log(f"waiting for: {missing}", started)
        time.sleep(1)
    if recovered_at is None:
        result = outcome(pg.url, stats, sms_at_prism(prism))
        for row in still_pending(pg.url):
            print("still pending:", row)
        for row in still_unsent(pg.url):
            print("SMS not sent:", row)
    states = service.states()
    log(f"supervised processes: {states}", started)
    r = result.get
    print("\n=== chaos run ===")
    print(
        f"calls: {args.calls} simulated, {r('calls')} in the call log, "
        f"{r('calls_cut_to_apology')} cut to the apology while the database was down"
    )
    print(
        f"calls needing a ticket: {r('calls_needing_ticket')}; with exactly one: "
        f"{r('with_one_ticket')}; lost: {r('lost')}; duplicates: {r('duplicates')}"
    )
    print(
        f"ticket requests: {r('ticket_requests')} (pending {r('pending')}, failed "
        f"{r('failed')}); tickets on the portal: {r('tickets')}"
    )
    print(
        f"SMS: {r('sms_at_prism')} reached Prism, {r('sms_sent_rows')} recorded sent, "
        f"{r('sms_sent_twice')} sent twice, {r('sms_not_sent')} not sent, "
        f"{r('caller_sms_due')} caller SMS still due"
    )
    restarts = Counter(
        line.split("spawned: ")[1].split("'")[1]
        for line in (stack.directory / "data" / "supervisord.log").read_text().splitlines()
        if "spawned: " in line
    )
    print(f"supervisord spawns: {dict(restarts)}")
    if recovered_at is not None:
        print(
            "time to recover (last fault over → all tickets and SMS, every process up): "
            f"{recovered_at - faults_over:.0f} s (limit {args.recover_seconds:.0f} s)"
        )
    else:
        print(f"NOT recovered within {args.recover_seconds:.0f} s of the last fault")
    ok = recovered_at is not None
    print(f"verdict: {'RECOVERED' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
