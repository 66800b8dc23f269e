#!/usr/bin/env python3
"""Surge run (a benchmark-style script, not a test): the server falls and everyone calls at
once. 50 critical-failure calls (by default) from 50 organisations within a minute, against
the real stack, with Redis killed and started again empty in the middle.

    SHARED_DIR=../shared .venv/bin/python scripts/surge.py
    SHARED_DIR=../shared .venv/bin/python scripts/surge.py --calls 20 --ramp 20

The stack is scripts/stack.py's `SupervisedStack`, shared with scripts/chaos.py (a private
PostgreSQL cluster and redis-server, Prism behind a counting proxy, the built-in portal,
`supervisord -n -c deploy/supervisord.conf`: the release step, gunicorn and two RQ
workers), with the example roster and one directory contact per caller, each of its own
organisation. The callers are scripts/load_calls.py's
(signed webhooks, TwiML followed) pressing 3 and then # (no ticket number); a caller who
hears a known incident announced presses 1 instead. At half the ramp Redis is killed
(SIGKILL, nothing kept) and started again, empty, --redis-down seconds later. When every
call has ended and every ticket request is done, the incident is closed the documented way
(`callcenter incident close`), and the run waits for the resolution SMS at Prism.

A shortened, in-process version runs in the suite: tests/test_incidents_surge.py.

Printed: incidents detected; callers who heard the announcement and joined; phone
duplicates on the incident's ticket; calls the urgent chain rang for; the joined SMS and
the resolution SMS Prism received (and any number texted twice). Exit status 0 when one
incident was detected, every joined call is one phone duplicate on its ticket, at most
INCIDENT_THRESHOLD chains rang, and every number tied to the incident got exactly one
resolution SMS.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import load_calls  # noqa: E402 - the callers, signed as Twilio signs
from stack import SupervisedStack, log, require_prism, sms_at_prism, wait_for  # noqa: E402

THRESHOLD = 3
ANNOUNCED = "Нам известно о сбое"
JOINED = "Ваш звонок зарегистрирован"


class SurgeCaller(load_calls.Caller):
    """Presses 3 and # — or 1, when the incident is announced."""

    announced: set[str] = set()
    joined: set[str] = set()
    dialled: set[str] = set()

    async def gather(self, verb: ET.Element, heard: int) -> ET.Element | None:
        said = " ".join(s.text or "" for s in verb.iter("Say"))
        if ANNOUNCED in said:
            SurgeCaller.announced.add(self.call_sid)
            self.answers = ["1"]
        return await super().gather(verb, heard)

    async def execute(self, doc: ET.Element) -> ET.Element | None:
        if any(JOINED in (s.text or "") for s in doc.iter("Say")):
            SurgeCaller.joined.add(self.call_sid)
        return await super().execute(doc)

    async def dial(self, verb: ET.Element) -> ET.Element | None:
        SurgeCaller.dialled.add(self.call_sid)
        return await super().dial(verb)


def directory_csv(path: Path, calls: int) -> None:
    lines = ["organisation,inn,contact,phones,email"]
    for n in range(calls):
        lines.append(f"ООО «Клиент {n}»,,Клиент {n},+7916{n:07d},")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def figures(database_url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, func, select

    from callcenter.db.models import DialLeg, Incident, IncidentCall, Ticket, TicketEntry
    from callcenter.db.models import TicketRequest as Request

    engine = create_engine(database_url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            incidents = conn.execute(
                select(Incident.id, Incident.detected, Incident.ticket_number,
                       Incident.ticket_request_id, Incident.status)
            ).all()  # fmt: skip
            numbers = {
                row.id: row.ticket_number
                or conn.scalar(
                    select(Request.ticket_number).where(Request.id == row.ticket_request_id)
                )
                for row in incidents
            }
            duplicates = {
                incident_id: conn.scalar(
                    select(func.count())
                    .select_from(TicketEntry)
                    .join(Ticket, Ticket.id == TicketEntry.ticket_id)
                    .where(Ticket.number == int(number), TicketEntry.kind == "phone_duplicate")
                )
                for incident_id, number in numbers.items()
                if number
            }
            pending = conn.scalar(
                select(func.count()).select_from(Request).where(Request.status != "done")
            )
            chains = conn.scalar(select(func.count(func.distinct(DialLeg.call_id))))
            linked = conn.execute(select(IncidentCall.incident_id, IncidentCall.kind)).all()
    finally:
        engine.dispose()
    return {
        "incidents": incidents,
        "numbers": numbers,
        "duplicates": duplicates,
        "pending": pending,
        "chains": chains,
        "linked": Counter(kind for _i, kind in linked),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds to start them all")
    parser.add_argument("--speed", type=float, default=0.25, help="scales every caller's wait")
    parser.add_argument("--redis-down", type=float, default=10.0, help="seconds without Redis")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if not THRESHOLD <= args.calls <= 500:
        parser.error(f"--calls is between {THRESHOLD} and 500")
    require_prism(parser)

    def too_long(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"the run took more than {args.max_seconds} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(int(args.max_seconds))
    settings = {"QUEUE_NAME": "cc-surge", "INCIDENT_THRESHOLD": str(THRESHOLD)}
    try:
        with SupervisedStack("cc-surge-", settings=settings, keep_logs=args.keep_logs) as stack:
            return run(args, stack)
    finally:
        signal.alarm(0)


def run(args: argparse.Namespace, stack: SupervisedStack) -> int:
    pg, redis, prism = stack.pg, stack.redis, stack.prism
    assert pg is not None and redis is not None and prism is not None
    csv = stack.directory / "directory.csv"
    directory_csv(csv, args.calls)
    stack.cli_or_exit("roster", "import", "scripts/examples/roster.yaml")
    stack.cli_or_exit("directory", "import", str(csv))
    stack.wait_ready()
    log(f"stack up (logs in {stack.directory}); {args.calls} critical calls over "
        f"{args.ramp:.0f} s")  # fmt: skip

    stats = load_calls.Stats()
    started = stats.started

    def redis_outage() -> None:
        time.sleep(args.ramp / 2)
        redis.kill()
        log("Redis killed (SIGKILL, nothing kept)", started)
        time.sleep(args.redis_down)
        redis.start_and_wait()
        log("Redis started again, empty", started)

    outage = threading.Thread(target=redis_outage, daemon=True)
    outage.start()
    load_calls.Caller = SurgeCaller  # type: ignore[misc]
    load_calls.plans_for = lambda calls, _rng: (
        [  # type: ignore[assignment]
            ("critical", 1.0, ("3", "#"), True)
        ]
        * calls
    )
    asyncio.run(load_calls.run_calls(args, stack.base_url, stats))
    outage.join()
    log(f"all calls ended; errors as callers saw them: {dict(stats.errors)}", started)

    wait_for("every ticket request done", lambda: figures(pg.url)["pending"] == 0, 180)
    before = figures(pg.url)
    open_ids = [row.id for row in before["incidents"] if row.status == "open"]
    for incident_id in open_ids:
        done = stack.cli("incident", "close", str(incident_id), "--message", "Сервер восстановлен.")
        log(done.stdout.strip() or done.stderr.strip(), started)
    tied = sum(before["linked"].values())

    def resolutions() -> Counter[str]:
        return Counter(to for to, body in sms_at_prism(prism) if body.startswith("SKAI ТП: сбой "))

    try:
        wait_for("the resolution SMS", lambda: sum(resolutions().values()) >= tied, 120)
    except SystemExit:
        pass  # reported below
    time.sleep(5)  # anything doubled would arrive now
    after = figures(pg.url)
    resolved = resolutions()
    joined_sms = Counter(
        to for to, body in sms_at_prism(prism) if "зарегистрирован в заявке" in body
    )
    alerts = Counter(to for to, body in sms_at_prism(prism) if "массовый сбой" in body)
    detected = [row for row in after["incidents"] if row.detected]
    duplicates = sum(after["duplicates"].values())
    print("\n=== surge run ===")
    print(f"calls: {args.calls} critical-failure calls from {args.calls} organisations "
          f"over {args.ramp:.0f} s; Redis down {args.redis_down:.0f} s mid-run")  # fmt: skip
    print(f"incidents detected: {len(detected)} (all incidents: {len(after['incidents'])}); "
          f"ticket №{', '.join(str(n) for n in after['numbers'].values())}")  # fmt: skip
    print(f"callers who heard the announcement: {len(SurgeCaller.announced)}; joined: "
          f"{len(SurgeCaller.joined)}; calls tied to the incident: "
          f"{dict(after['linked'])}")  # fmt: skip
    print(f"phone duplicates on the incident's ticket: {duplicates}")
    print(f"urgent chains rung: {after['chains']} (callers put through: "
          f"{len(SurgeCaller.dialled)}; limit {THRESHOLD})")  # fmt: skip
    print(f"joined SMS at Prism: {sum(joined_sms.values())} to {len(joined_sms)} numbers")
    print(f"detection alerts at Prism: {sum(alerts.values())} to {len(alerts)} numbers "
          "(the on-duty specialist and the head)")  # fmt: skip
    print(f"resolution SMS at Prism: {sum(resolved.values())} to {len(resolved)} numbers "
          f"(tied to the incident: {tied}); numbers texted twice: "
          f"{sum(1 for n in resolved.values() if n > 1)}")  # fmt: skip
    ok = (
        len(detected) == 1
        and duplicates == len(SurgeCaller.joined)
        and after["chains"] <= THRESHOLD
        and len(resolved) == tied
        and all(n == 1 for n in resolved.values())
        and all(n == 1 for n in joined_sms.values())
        and bool(alerts)
        and all(n == 1 for n in alerts.values())
    )
    print(f"verdict: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
