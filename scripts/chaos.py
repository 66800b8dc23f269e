#!/usr/bin/env python3
"""Chaos run (a benchmark-style script, not a test): the service started the documented
way, under simulated calls, while its dependencies fail — and nobody helps afterwards.

    .venv/bin/python scripts/chaos.py                      # 300 calls, the full outages
    .venv/bin/python scripts/chaos.py --calls 40 --ramp 20 --scale 0.15   # a quick look

What it starts (and stops at the end, whatever happens), all on 127.0.0.1, in a temp dir:
  - a private PostgreSQL cluster (`initdb` there, its own port: stopping it touches nothing
    else; run as the `postgres` user when this runs as root) and a private redis-server;
  - Prism serving Twilio's OpenAPI description (`.cache/prism`, as scripts/test.sh
    installs it), behind a counting proxy: every SMS the service sends is seen;
  - the portal: the service's own built-in portal API, reached through a proxy that can be
    switched to answer 500s (PORTAL_URL points at the proxy);
  - the service itself with `supervisord -n -c deploy/supervisord.conf`: the release step,
    gunicorn and two workers, exactly as the README's production section runs it.

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
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
SUPERVISORD_CONF = ROOT / "deploy" / "supervisord.conf"
PRISM_BIN = ROOT / ".cache" / "prism" / "node_modules" / ".bin" / "prism"
SHARED = Path(os.environ.get("SHARED_DIR") or ROOT.parent / "shared")
TWILIO_SPEC = SHARED / "twilio" / "twilio_api_v2010.json"

sys.path.insert(0, str(ROOT / "scripts"))
import load_calls  # noqa: E402 - the callers, signed as Twilio signs

# ---------------------------------------------------------------- small tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not come up within {timeout} s")


def log(message: str, started: float | None = None) -> None:
    stamp = f"[{time.monotonic() - started:6.1f} s] " if started is not None else ""
    print(stamp + message, flush=True)


class Process:
    """A command in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """A crash: SIGKILL to the group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, grace: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


# ---------------------------------------------------------------- the dependencies


class PostgresCluster:
    """A private cluster: `initdb` in `directory`, its own port, trust auth on loopback."""

    def __init__(self, directory: Path) -> None:
        self.data = directory / "pg"
        self.port = free_port()
        self.log_path = directory / "postgresql.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data.mkdir()
        if self._as:
            shutil.chown(self.data, "postgres")
            self.log_path.touch()
            shutil.chown(self.log_path, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{argv[0]} failed:\n{done.stdout}{done.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/callcenter"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            "-c max_connections=200 -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                  "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(
            self.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE callcenter"))
        admin.dispose()


class RedisServer(Process):
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
        super().__init__("redis", argv, directory / "redis.log", dict(os.environ))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start_and_wait(self) -> None:
        self.start()

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        wait_for("redis-server", up, 15)


class Proxy:
    """A reverse proxy to `target` on a free loopback port. `failing`: every request
    answers 500 instead. `seen` keeps (method, path, form body) of what went through."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.failing = False
        self.seen: list[tuple[str, str, bytes, int]] = []
        self.lock = threading.Lock()
        proxy = self
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.failing:
                    status, content, ctype = 500, b"<html>Internal Server Error</html>", "text/html"
                else:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("host", "content-length", "connection")
                    }
                    try:
                        upstream = session.request(
                            self.command, proxy.target + self.path, data=body,
                            headers=headers, timeout=30,
                        )  # fmt: skip
                        status, content = upstream.status_code, upstream.content
                        ctype = upstream.headers.get("Content-Type", "application/json")
                    except requests.RequestException:
                        status, content, ctype = 502, b"bad gateway", "text/plain"
                with proxy.lock:
                    proxy.seen.append((self.command, self.path, body, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- the service, supervised


class Supervised:
    """`supervisord -n -c deploy/supervisord.conf` with the run's settings."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.env = env
        self.data_dir = Path(env["CALLCENTER_DATA_DIR"])
        self.process = Process(
            "supervisord",
            [str(VENV_BIN / "supervisord"), "-n", "-c", str(SUPERVISORD_CONF)],
            directory / "supervisord.out",
            env,
        )

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(SUPERVISORD_CONF), *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return done.stdout

    def states(self) -> dict[str, str]:
        states = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0]] = parts[1]
        return states

    def pid(self, name: str) -> int:
        return int(self.ctl("pid", name).strip())


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
        # `unknown`: left `sending` by a process that died before writing Twilio's answer.
        "sms_not_sent": sum(
            1 for _t, _b, status in sms if status in ("retry", "sending", "failed", "unknown")
        ),
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


def still_pending(database_url: str) -> list[tuple[Any, ...]]:
    """What a human would look at first: the requests that are not done yet."""
    from sqlalchemy import create_engine, select

    from callcenter.db.models import TicketRequest

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    TicketRequest.id,
                    TicketRequest.attempts,
                    TicketRequest.next_attempt_at,
                    TicketRequest.last_error,
                ).where(TicketRequest.status == "pending")
            ).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


def sms_at_prism(prism: Proxy) -> list[tuple[str, str]]:
    from urllib.parse import parse_qs

    sent = []
    with prism.lock:
        seen = list(prism.seen)
    for method, path, body, status in seen:
        if method == "POST" and path.endswith("/Messages.json") and status < 300:
            form = parse_qs(body.decode())
            sent.append((form.get("To", [""])[0], form.get("Body", [""])[0]))
    return sent


def healthy(service: Supervised, base_url: str) -> bool:
    states = service.states()
    running = all(
        states.get(name) == "RUNNING" for name in ("web", "worker:worker-0", "worker:worker-1")
    )
    return running and requests.get(base_url + "/readyz", timeout=5).status_code == 200


def still_missing(result: dict[str, Any], up: bool) -> str:
    """What keeps `all_good` and `healthy` from holding, in a few words."""
    parts = [
        f"{result[name]} {name.replace('_', ' ')}"
        for name in ("pending", "lost", "duplicates", "sms_sent_twice", "sms_not_sent",
                     "caller_sms_due")  # fmt: skip
        if result[name]
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
    if not TWILIO_SPEC.is_file() or not PRISM_BIN.exists():
        parser.error(f"needs Prism ({PRISM_BIN}) and {TWILIO_SPEC}: run scripts/test.sh once, "
                     "set SHARED_DIR")  # fmt: skip

    def too_long(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"the run took more than {args.max_seconds} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(int(args.max_seconds))
    directory = Path(tempfile.mkdtemp(prefix="cc-chaos-"))
    directory.chmod(0o755)  # the postgres user reaches its cluster inside
    redis: RedisServer | None = None
    pg: PostgresCluster | None = None
    prism_proc: Process | None = None
    proxies: list[Proxy] = []
    service: Supervised | None = None
    try:
        pg = PostgresCluster(directory)
        pg.start()
        pg.create_database()
        redis = RedisServer(directory)
        redis.start_and_wait()
        prism_port = free_port()
        prism_proc = Process(
            "prism",
            [str(PRISM_BIN), "mock", "-h", "127.0.0.1", "-p", str(prism_port), str(TWILIO_SPEC)],
            directory / "prism.log",
            dict(os.environ),
        )
        prism_proc.start()
        wait_for(
            "Prism", lambda: "Prism is listening" in (directory / "prism.log").read_text(), 240
        )
        prism = Proxy(f"http://127.0.0.1:{prism_port}")
        web_port = free_port()
        base_url = f"http://127.0.0.1:{web_port}"
        portal = Proxy(base_url)
        proxies += [prism, portal]
        # Production refuses secrets shorter than 32 characters (settings.MIN_SECRET_LENGTH).
        portal_token = secrets.token_urlsafe(32)
        env = {
            **os.environ,
            "CALLCENTER_ENV": "production",
            "CALLCENTER_DATA_DIR": str(directory / "data"),
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            "QUEUE_NAME": "cc-chaos",
            "TWILIO_ACCOUNT_SID": load_calls.ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": load_calls.AUTH_TOKEN,
            "TWILIO_API_BASE_URL": prism.url,
            "PUBLIC_BASE_URL": load_calls.PUBLIC,
            # The callers reach gunicorn directly: no proxy's X-Forwarded-* is believed.
            "TRUSTED_PROXIES": "0",
            # A person's phone, never one of the hotline's own lines (production refuses those).
            "DUTY_PHONE": "+79110000001",
            # A mix of independent callers, not a surge: no incident detected mid-run.
            "INCIDENT_THRESHOLD": "0",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "PORTAL_URL": portal.url + "/portal/api/v1",
            "PORTAL_TOKEN": portal_token,
            "BUILTIN_PORTAL_TOKEN": portal_token,
            "LOG_JSON": "1",
            "HOST": "127.0.0.1",
            "PORT": str(web_port),
            "WEB_CONCURRENCY": "2",
            "WEB_THREADS": "8",
        }
        (directory / "data").mkdir()
        service = Supervised(directory, env)
        service.process.start()
        supervised = service
        wait_for(
            "the release step, web and workers",
            lambda: healthy_or_empty_roster(supervised, base_url),
            120,
        )
        imported = subprocess.run(
            [str(VENV_BIN / "callcenter"), "roster", "import", "scripts/examples/roster.yaml"],
            env=env, cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if imported.returncode != 0:
            raise SystemExit("roster import failed:\n" + imported.stderr)
        wait_for("/readyz", lambda: healthy(supervised, base_url), 60)
        log(f"stack up under supervisord (logs in {directory}); {args.calls} calls over "
            f"{args.ramp:.0f} s, faults scaled by {args.scale}")  # fmt: skip

        stats = load_calls.Stats()
        started = stats.started
        marks: dict[str, float] = {}
        fault_thread = threading.Thread(
            target=faults, args=(args, started, redis, pg, portal, service, marks), daemon=True
        )
        fault_thread.start()
        asyncio.run(run_calls(args, base_url, stats))
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
                up = healthy(supervised, base_url)
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
            for line in (directory / "data" / "supervisord.log").read_text().splitlines()
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
    finally:
        signal.alarm(0)
        if service is not None:
            service.process.stop(grace=60)
        for proxy in proxies:
            proxy.close()
        if prism_proc is not None:
            prism_proc.stop(grace=10)
        if redis is not None:
            redis.stop(grace=5)
        if pg is not None:
            try:
                pg.stop("immediate")
            except SystemExit:
                pass  # already stopped
        if args.keep_logs:
            print(f"logs kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def healthy_or_empty_roster(service: Supervised, base_url: str) -> bool:
    """Web and workers up (/readyz may still say 503 for the empty roster)."""
    states = service.states()
    running = all(states.get(n) == "RUNNING" for n in ("web", "worker:worker-0", "worker:worker-1"))
    return running and requests.get(base_url + "/healthz", timeout=5).status_code == 200


if __name__ == "__main__":
    sys.exit(main())
