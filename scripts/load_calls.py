#!/usr/bin/env python3
"""Load benchmark (not a test): many simultaneous simulated calls through full IVR paths,
with signed requests, against the service as the Procfile runs it on this machine.

    .venv/bin/python scripts/load_calls.py                    # 1 000 calls, real-time pacing
    .venv/bin/python scripts/load_calls.py --calls 200 --ramp 20 --speed 0.5   # a quick look

What it starts (and stops at the end, whatever happens), all on 127.0.0.1:
  - a fresh PostgreSQL database on TEST_PG_ADMIN_URL's server (dropped at the end), the
    tables, and the example roster (`callcenter roster import scripts/examples/roster.yaml`);
  - a private redis-server on a free port;
  - the Procfile's `web` line (gunicorn, `--workers`/`--threads`), serving
    `scripts/bench_bare.py:create_bench_app()` — the service plus a bare fixed-TwiML
    endpoint on the same server — and `--rq-workers` copies of the `worker` line;
  - a stand-in for Twilio's REST API (the SMS the pipeline sends), answering 201.

The callers (asyncio + httpx, one event loop) each play one call the way Twilio would:
signed form posts to the Voice URL, then the TwiML executed verb by verb — `<Say>`
listened to, `<Gather>` answered, `<Record>` recorded (then the recording callback),
`<Pause>` waited, `<Redirect>` followed, `<Dial>` rung: the first person answers, hears
the whisper and presses 1, talks, the dial action follows — and the final status callback.

Pacing, so that "1 000 calls at once" means 1 000 calls in progress, not 1 000 requests
in flight: a caller listens to what is said (14 characters a second, as Twilio's Russian
voices read, cut short by 0–40 % when they know what to press), takes 0.5–2.5 s to react,
speaks a 10–30 s description, talks 15–45 s with a specialist; pauses are waited out.
`--speed` scales every wait (1.0 = real time). Calls start evenly over `--ramp` seconds
and last 40 s (a ticket status) to about 3 minutes (a new problem: menus, plate, name,
description, ticket number), so at the end of the ramp practically all of them are in
progress together (peak 997 of 1 000 with the defaults). The mix: 65 % new problem, 10 %
critical failure, 10 % stolen vehicle (these three open tickets), 10 % consultation, 5 %
ticket status — about ten webhooks a call.

Reported: calls held at once, requests, errors (non-2xx, transport errors, malformed
TwiML, the apology a failed step falls back to), webhook latency as the callers saw it and
as the server logged it (median, p99, max, by step), tickets created vs expected (none
lost, none twice), the CPU each part used (web, worker, PostgreSQL, Redis, this
generator), and the ratio of a signed, logged IVR step to the bare endpoint at the same
closed-loop concurrency on the same server. Bounded: `--calls` at most 5 000, the whole
run at most `--max-seconds`; the exit status says whether the targets were met.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PUBLIC = "https://hotline.load.test"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "load-test-auth-token"
LINE = "+78002506077"
CHARS_PER_SECOND = 14
PG_ADMIN_URL = os.environ.get(
    "TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
APOLOGY_START = "Извините, у нас техническая неполадка"
CALLS_PER_CLIENT = 25

# name, share, answers to the Gathers in order ("say:" = speech), opens a ticket
PLANS: tuple[tuple[str, float, tuple[str, ...], bool], ...] = (
    ("new_problem", 0.65, ("2", "1", "1", "say:А123ВС77", "say:Иван Петров, ООО Ромашка"), True),
    ("critical", 0.10, ("3", "#"), True),
    ("stolen", 0.10, ("4", "say:А123ВС77"), True),
    ("consultation", 0.10, ("1",), False),
    ("status", 0.05, ("5", "1001#"), False),
)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def procfile(name: str) -> str:
    for line in (ROOT / "Procfile").read_text("utf-8").splitlines():
        kind, sep, command = line.partition(":")
        if sep and kind.strip() == name:
            return command.strip()
    raise SystemExit(f"no {name!r} process in the Procfile")


class Process:
    def __init__(self, name: str, command: str, env: Mapping[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            env=dict(env),
            cwd=ROOT,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._file.close()


def wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up within {timeout} s")


class LoopbackServer:
    """An HTTP server of this script's own on a free loopback port, served by a thread."""

    server: ThreadingHTTPServer

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TwilioStandIn(LoopbackServer):
    """Twilio's Messages API, as far as the pipeline uses it: every SMS is accepted."""

    def __init__(self) -> None:
        self.sent = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stand_in.sent += 1
                body = json.dumps(
                    {
                        "sid": "SM" + secrets.token_hex(16),
                        "account_sid": ACCOUNT_SID,
                        "status": "queued",
                        "direction": "outbound-api",
                        "num_segments": "1",
                    }
                ).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.serve(Handler)


@dataclass
class Stack:
    directory: Path
    database_url: str
    web_port: int
    processes: list[Process] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def start_stack(args: argparse.Namespace, directory: Path, twilio: TwilioStandIn) -> Stack:
    from sqlalchemy import create_engine, text

    import callcenter.db.models  # noqa: F401 - the tables
    from callcenter.db import Base

    name = f"cc_load_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    engine.dispose()

    stack = Stack(directory, database_url, free_port())
    redis_port = free_port()
    stack.processes.append(
        Process(
            "redis",
            f"redis-server --bind 127.0.0.1 --port {redis_port} --save '' --appendonly no "
            f"--dir {shlex.quote(str(directory))}",
            os.environ,
            directory / "redis.log",
        )
    )
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "CALLCENTER_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "QUEUE_NAME": f"cc-load-{os.getpid()}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": twilio.url,
        "PUBLIC_BASE_URL": PUBLIC,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DUTY_PHONE": "+79110000001",
        # A mix of independent callers, not a surge: no incident detected mid-run.
        "INCIDENT_THRESHOLD": "0",
        "CALLCENTER_DATA_DIR": str(directory / "data"),
        "LOG_JSON": "1",
        "HOST": "127.0.0.1",
        "PORT": str(stack.web_port),
        "WEB_CONCURRENCY": str(args.workers),
        "WEB_THREADS": str(args.threads),
    }
    imported = subprocess.run(
        [str(VENV_BIN / "callcenter"), "roster", "import", "scripts/examples/roster.yaml"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if imported.returncode != 0:
        raise SystemExit("roster import failed:\n" + imported.stderr)
    web = procfile("web").replace(
        "'callcenter.app:create_app()'", "--pythonpath scripts 'bench_bare:create_bench_app()'"
    )
    stack.processes.append(Process("web", web, env, directory / "web.log"))
    for n in range(args.rq_workers):
        stack.processes.append(
            Process(f"worker{n}", procfile("worker"), env, directory / f"worker{n}.log")
        )
    wait_for(
        "gunicorn",
        lambda: httpx.get(stack.base_url + "/readyz", timeout=2).status_code == 200,
        60,
    )
    for n in range(args.rq_workers):
        log = directory / f"worker{n}.log"
        wait_for(f"worker {n}", lambda log=log: "Listening on" in log.read_text(), 60)
    return stack


def stop_stack(stack: Stack) -> None:
    for process in reversed(stack.processes):
        process.stop(signal.SIGINT if process.name == "web" else signal.SIGTERM)
    from sqlalchemy import create_engine, text

    name = stack.database_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found.extend([child, *_children(child)])
    return found


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU used so far by each part: our processes and their children, and the
    PostgreSQL backends serving the benchmark's database."""
    hz = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {"load generator": _ticks(os.getpid()) / hz}
    for process in stack.processes:
        pids = [process.proc.pid, *_children(process.proc.pid)]
        used[process.name] = sum(_ticks(pid) for pid in pids) / hz
    name = stack.database_url.rsplit("/", 1)[1]
    backends = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f" {name} ".encode() in cmdline.read_bytes().replace(b"\0", b" "):
                backends += _ticks(int(cmdline.parent.name))
        except OSError:
            continue
    used["postgresql (its backends)"] = backends / hz
    return used


# ---------------------------------------------------------------- one simulated call


def sign(url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature, as Twilio computes it (what `RequestValidator` checks)."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(AUTH_TOKEN.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def step_label(url: str) -> str:
    path = urlsplit(url).path
    return path.removeprefix("/webhooks/voice")


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    active: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)
    finished: Counter[str] = field(default_factory=Counter)
    ticketed_calls: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {detail}")


class Caller:
    def __init__(
        self,
        number: int,
        plan: tuple[str, float, tuple[str, ...], bool],
        client: httpx.AsyncClient,
        base_url: str,
        stats: Stats,
        speed: float,
        rng: random.Random,
    ) -> None:
        self.plan_name, _share, answers, self.opens_ticket = plan
        self.answers = list(answers)
        self.client, self.base_url, self.stats = client, base_url, stats
        self.speed, self.rng = speed, rng
        self.call_sid = "CA" + secrets.token_hex(16)
        self.caller = f"+7916{number:07d}"
        self.requests = 0
        self.started = 0.0

    def params(self, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "From": self.caller,
            "Caller": self.caller,
            "To": LINE,
            "Called": LINE,
            "Direction": "inbound",
            "CallStatus": "in-progress",
            **extra,
        }

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds * self.speed))

    async def post(self, url: str, params: dict[str, str], *, twiml: bool = True) -> Any:
        """POST a signed webhook; the parsed TwiML (or None for a callback / an error)."""
        self.requests += 1
        if self.requests > 80:
            raise RuntimeError("more than 80 requests in one call: a loop?")
        public = url if url.startswith("http") else PUBLIC + url
        if not public.startswith(PUBLIC):
            raise RuntimeError(f"TwiML points outside the service: {public}")
        target = self.base_url + public[len(PUBLIC) :]
        label = step_label(public)
        started = time.perf_counter()
        try:
            response = await self.client.post(
                target, data=params, headers={"X-Twilio-Signature": sign(public, params)}
            )
        except httpx.HTTPError as exc:
            self.stats.error("transport", f"{label}: {exc!r}")
            return None
        self.stats.latencies[label].append(time.perf_counter() - started)
        if response.status_code not in (200, 204):
            self.stats.error(f"http_{response.status_code}", f"{label}: {response.text[:200]}")
            return None
        if not twiml:
            return None
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError as exc:
            self.stats.error("bad_twiml", f"{label}: {exc}")
            return None
        said = " ".join(el.text or "" for el in root.iter("Say"))
        if said.startswith(APOLOGY_START):
            self.stats.error("apology", f"{label}: a step failed and fell back")
        return root

    async def play(self) -> None:
        self.started = time.monotonic()
        self.stats.active += 1
        try:
            doc = await self.post("/webhooks/voice/incoming", self.params(CallStatus="ringing"))
            while doc is not None:
                doc = await self.execute(doc)
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            self.stats.error("caller", f"{self.plan_name}: {exc!r}")
        finally:
            duration = int(time.monotonic() - self.started) + 1
            await self.post(
                "/webhooks/voice/status",
                self.params(
                    CallStatus="completed",
                    CallDuration=str(duration),
                    SequenceNumber="3",
                    CallbackSource="call-progress-events",
                ),
                twiml=False,
            )
            self.stats.active -= 1
            self.stats.finished[self.plan_name] += 1
            if self.opens_ticket:
                self.stats.ticketed_calls.append(self.call_sid)

    async def execute(self, doc: ET.Element) -> ET.Element | None:
        """Run one TwiML document; the next document, or None when the call ends."""
        heard = 0
        for verb in doc:
            if verb.tag == "Say":
                heard += len(verb.text or "")
            elif verb.tag == "Pause":
                await self.wait(heard / CHARS_PER_SECOND)
                heard = 0
                await self.wait(float(verb.get("length", "1")))
            elif verb.tag == "Gather":
                heard += sum(len(s.text or "") for s in verb.iter("Say"))
                answered = await self.gather(verb, heard)
                if answered is not None:
                    return answered
                heard = 0  # silence: on to the next verb, as Twilio does
            elif verb.tag == "Record":
                await self.wait(heard / CHARS_PER_SECOND)
                return await self.record(verb)
            elif verb.tag == "Redirect":
                await self.wait(heard / CHARS_PER_SECOND)
                return await self.post(verb.text or "", self.params())  # type: ignore[no-any-return]
            elif verb.tag == "Dial":
                await self.wait(heard / CHARS_PER_SECOND)
                return await self.dial(verb)
            elif verb.tag in ("Hangup", "Reject"):
                await self.wait(heard / CHARS_PER_SECOND)
                return None
        await self.wait(heard / CHARS_PER_SECOND)
        return None

    async def gather(self, verb: ET.Element, heard: int) -> ET.Element | None:
        listen = heard / CHARS_PER_SECOND
        if not self.answers:
            await self.wait(listen + float(verb.get("timeout", "5")))
            return None
        answer = self.answers.pop(0)
        await self.wait(listen * self.rng.uniform(0.6, 1.0) + self.rng.uniform(0.5, 2.5))
        if answer.startswith("say:"):
            extra = {"SpeechResult": answer[4:], "Confidence": "0.91"}
        else:
            digits = answer.rstrip(verb.get("finishOnKey", "#") or "#")
            if not digits and verb.get("actionOnEmptyResult") != "true":
                return None  # only the finish key: no input, on to the next verb
            extra = {"Digits": digits}
        return await self.post(verb.get("action", ""), self.params(**extra))  # type: ignore[no-any-return]

    async def record(self, verb: ET.Element) -> ET.Element | None:
        seconds = self.rng.randint(10, 30)
        await self.wait(seconds)
        sid = "RE" + secrets.token_hex(16)
        url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"
        recording = {"RecordingSid": sid, "RecordingUrl": url, "RecordingDuration": str(seconds)}
        doc = await self.post(verb.get("action", ""), self.params(Digits="#", **recording))
        callback = verb.get("recordingStatusCallback")
        if callback:
            await self.post(
                callback,
                {
                    "AccountSid": ACCOUNT_SID,
                    "CallSid": self.call_sid,
                    "RecordingStatus": "completed",
                    "RecordingChannels": "1",
                    "RecordingSource": "RecordVerb",
                    **recording,
                },
                twiml=False,
            )
        return doc  # type: ignore[no-any-return]

    async def dial(self, verb: ET.Element) -> ET.Element | None:
        """The first number answers, hears the whisper, presses 1 and talks."""
        numbers = verb.findall("Number")
        child = "CA" + secrets.token_hex(16)
        number = numbers[0] if numbers else None
        leg = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": child,
            "ParentCallSid": self.call_sid,
            "From": LINE,
            "To": (number.text or "").strip() if number is not None else "",
            "Direction": "outbound-dial",
            "CallStatus": "in-progress",
        }
        if number is not None and number.get("url"):
            whisper = await self.post(number.get("url", ""), leg)
            gather = whisper.find("Gather") if whisper is not None else None
            if gather is not None:
                said = sum(len(s.text or "") for s in gather.iter("Say"))
                await self.wait(said / CHARS_PER_SECOND * 0.5 + 1)
                await self.post(gather.get("action", ""), {**leg, "Digits": "1"})
        talk = self.rng.randint(15, 45)
        await self.wait(talk)
        if number is not None and number.get("statusCallback"):
            await self.post(
                number.get("statusCallback", ""),
                {**leg, "CallStatus": "completed", "CallDuration": str(talk)},
                twiml=False,
            )
        action = verb.get("action")
        if not action:
            return None
        return await self.post(  # type: ignore[no-any-return]
            action,
            self.params(
                DialCallStatus="completed",
                DialCallSid=child,
                DialCallDuration=str(talk),
                DialBridged="true",
            ),
        )


# ---------------------------------------------------------------- the load


def plans_for(calls: int, rng: random.Random) -> list[tuple[str, float, tuple[str, ...], bool]]:
    chosen = []
    for plan in PLANS:
        chosen.extend([plan] * round(calls * plan[1]))
    while len(chosen) < calls:
        chosen.append(PLANS[0])
    rng.shuffle(chosen)
    return chosen[:calls]


async def run_calls(args: argparse.Namespace, base_url: str, stats: Stats) -> None:
    rng = random.Random(args.seed)
    plans = plans_for(args.calls, rng)
    # Many small connection pools, not one big one: httpcore matches every waiting request
    # against every connection of its pool, which turns a big shared pool into the
    # bottleneck of the load generator itself.
    # Idle connections are dropped well before gunicorn's 5 s keep-alive closes them:
    # reusing one the server is closing fails the request (a client artefact, not a fault).
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8, keepalive_expiry=2.0)
    clients = [
        httpx.AsyncClient(limits=limits, timeout=30.0)
        for _ in range(max(1, args.calls // CALLS_PER_CLIENT))
    ]
    try:

        async def sample() -> None:
            while True:
                stats.timeline.append((time.monotonic() - stats.started, stats.active))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        callers = []
        interval = args.ramp / max(1, args.calls)
        for n, plan in enumerate(plans):
            client = clients[n % len(clients)]
            caller = Caller(n, plan, client, base_url, stats, args.speed, random.Random(n))
            callers.append(asyncio.create_task(caller.play()))
            await asyncio.sleep(interval)
        await asyncio.gather(*callers)
        sampler.cancel()
    finally:
        for client in clients:
            await client.aclose()


async def closed_loop(
    base_url: str, kind: str, concurrency: int, total: int
) -> tuple[list[float], float, int]:
    """`total` requests at `concurrency` in flight: the bare endpoint, or signed IVR steps
    (each virtual caller starts a call and keeps pressing * on the main menu, following
    the action URL of each reply: a real step every time)."""
    latencies: list[float] = []
    errors = 0
    per_worker = total // concurrency
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=2.0)
    clients = [httpx.AsyncClient(limits=limits, timeout=30.0) for _ in range(concurrency)]
    try:

        async def worker(n: int) -> None:
            nonlocal errors
            client = clients[n]
            sid = "CA" + secrets.token_hex(16)
            base = {
                "AccountSid": ACCOUNT_SID,
                "CallSid": sid,
                "From": f"+7903{n:07d}",
                "To": LINE,
                "CallStatus": "in-progress",
            }
            url = PUBLIC + "/webhooks/voice/incoming"
            for i in range(per_worker + 1):
                if kind == "bare":
                    target, params = base_url + "/bench/bare", {**base, "Digits": "*"}
                    headers: dict[str, str] = {}
                else:
                    params = base if i == 0 else {**base, "Digits": "*"}
                    target = base_url + url[len(PUBLIC) :]
                    headers = {"X-Twilio-Signature": sign(url, params)}
                started = time.perf_counter()
                response = await client.post(target, data=params, headers=headers)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    errors += 1
                if kind != "bare":
                    gather = ET.fromstring(response.content).find("Gather")
                    url = gather.get("action", "") if gather is not None else url
                if i > 0:  # the call's start is not counted: the steps are
                    latencies.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return latencies, time.perf_counter() - started, errors
    finally:
        for client in clients:
            await client.aclose()


# ---------------------------------------------------------------- results


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def server_latencies(log: Path, since: float) -> dict[str, list[float]]:
    """Webhook times as the service logged them (`callcenter.http` lines, ms)."""
    by_step: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text("utf-8", errors="replace").splitlines():
        if '"callcenter.http"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        path = record["msg"].split(" ")[1]
        if path.startswith("/webhooks/voice"):
            by_step[path.removeprefix("/webhooks/voice")].append(record["ms"] / 1000)
    return by_step


def ticket_outcome(database_url: str, ticketed: Iterable[str]) -> dict[str, Any]:
    """Tickets as the portal holds them against what the calls asked for.

    `expected`: calls whose path opens a ticket; `requested`: ticket requests in the
    outbox; `created`: tickets on the (built-in) portal; `duplicates`: tickets beyond one
    per call; `lost`: ticketed calls without a ticket — in the IVR (no request) or in the
    pipeline (a request still pending, failed, or naming a ticket the portal lacks).
    """
    from sqlalchemy import create_engine, func, select

    from callcenter.db.models import Call, Ticket, TicketRequest

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            tickets = conn.execute(select(Ticket.call_ref, Ticket.number)).all()
            requests = conn.execute(
                select(
                    TicketRequest.idempotency_key, TicketRequest.status, TicketRequest.ticket_number
                )
            ).all()
            calls = conn.execute(select(func.count()).select_from(Call)).scalar() or 0
    finally:
        engine.dispose()
    expected = set(ticketed)
    per_call = Counter(ref for ref, _number in tickets)
    numbers = {str(number) for _ref, number in tickets}
    requested = {key for key, _status, _number in requests}
    not_done = {
        key for key, status, number in requests if status != "done" or number not in numbers
    }
    return {
        "calls_logged": calls,
        "expected": len(expected),
        "requested": len(requests),
        "created": len(tickets),
        "duplicates": sum(n - 1 for n in per_call.values() if n > 1),
        "lost_in_ivr": len(expected - requested),
        "lost_in_pipeline": len(not_done),
        "pending": sum(1 for _k, status, _n in requests if status == "pending"),
        "failed": sum(1 for _k, status, _n in requests if status == "failed"),
        "beyond_plan": len(requested - expected),
    }


def wait_for_tickets(database_url: str, ticketed: list[str], timeout: float) -> float:
    """Until the outbox holds nothing pending (or `timeout`): seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ticket_outcome(database_url, ticketed)["pending"] == 0:
            break
        time.sleep(1)
    return time.monotonic() - started


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} n={len(values):>6}  median {pct(values, 50) * 1000:7.1f} ms"
        f"  p99 {pct(values, 99) * 1000:7.1f} ms  max {max(values or [0]) * 1000:7.1f} ms"
    )


def report(args: argparse.Namespace, stack: Stack, stats: Stats, load_seconds: float) -> bool:
    print(f"\n=== {args.calls} calls, ramp {args.ramp} s, speed {args.speed} ===")
    peak = max((active for _t, active in stats.timeline), default=0)
    # The shortest paths (a ticket status) end before the last call starts: "held" counts
    # the seconds at 99 % of the calls or more.
    held = sum(0.5 for _t, active in stats.timeline if active >= args.calls * 0.99)
    print(f"calls in progress at once: peak {peak}; ≥ 99 % of them for {held:.0f} s")
    print(f"load phase: {load_seconds:.0f} s; calls finished: {dict(stats.finished)}")
    everything = [x for values in stats.latencies.values() for x in values]
    print(f"requests: {len(everything)} ({len(everything) / load_seconds:.0f}/s on average)")
    print(f"errors: {sum(stats.errors.values())} {dict(stats.errors)}")
    for sample in stats.error_samples:
        print("   ", sample)
    print("webhook latency as the callers saw it:")
    print("  " + summary("all webhooks", everything))
    for step, values in sorted(stats.latencies.items(), key=lambda kv: -len(kv[1]))[:14]:
        print("  " + summary(step, values))
    served = server_latencies(stack.directory / "web.log", stats.started)
    all_served = [x for values in served.values() for x in values]
    print("webhook latency as the server logged it (request in → response out):")
    print("  " + summary("all webhooks", all_served))
    drained = wait_for_tickets(stack.database_url, stats.ticketed_calls, args.drain_seconds)
    outcome = ticket_outcome(stack.database_url, stats.ticketed_calls)
    print(f"tickets (outbox drained {drained:.0f} s after the last call): {outcome}")
    ok = (
        sum(stats.errors.values()) == 0
        and outcome["lost_in_ivr"] == 0
        and outcome["lost_in_pipeline"] == 0
        and outcome["duplicates"] == 0
        and pct(everything, 99) < 0.100
    )
    verdict = "MET" if ok else "MISSED"
    print(f"targets (0 errors, 0 lost, 0 duplicated, webhook p99 < 100 ms): {verdict}")
    return ok


def ratio(args: argparse.Namespace, stack: Stack) -> None:
    print(f"\n=== IVR step vs bare endpoint: closed loop, {args.ratio_concurrency} in flight ===")
    results = {}
    for kind in ("bare", "ivr", "bare", "ivr"):  # twice each, the second run reported
        latencies, seconds, errors = asyncio.run(
            closed_loop(stack.base_url, kind, args.ratio_concurrency, args.ratio_requests)
        )
        results[kind] = (latencies, seconds, errors)
    for kind, (latencies, seconds, errors) in results.items():
        name = "bare fixed TwiML" if kind == "bare" else "signed, logged IVR step"
        rate = len(latencies) / seconds
        print(f"  {summary(name, latencies)}  {rate:6.0f} req/s  errors {errors}")
    bare_rate = len(results["bare"][0]) / results["bare"][1]
    ivr_rate = len(results["ivr"][0]) / results["ivr"][1]
    print(
        f"  IVR step throughput = {ivr_rate / bare_rate:.2f} × bare; "
        f"median latency = {pct(results['ivr'][0], 50) / pct(results['bare'][0], 50):.1f} × bare"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds to start them all")
    parser.add_argument("--speed", type=float, default=1.0, help="scales every wait")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn process")
    parser.add_argument("--rq-workers", type=int, default=1)
    parser.add_argument("--ratio-concurrency", type=int, default=16)
    parser.add_argument("--ratio-requests", type=int, default=3000)
    parser.add_argument("--no-ratio", action="store_true")
    parser.add_argument("--drain-seconds", type=float, default=120.0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 5000:
        parser.error("--calls is between 1 and 5000")

    # Whatever happens, the run ends: the stack is stopped in `finally`, and an alarm
    # interrupts a run that outlives --max-seconds.
    def too_long(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"the run took more than {args.max_seconds} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(int(args.max_seconds))
    directory = Path(tempfile.mkdtemp(prefix="cc-load-"))
    twilio = TwilioStandIn()
    stack: Stack | None = None
    try:
        stack = start_stack(args, directory, twilio)
        print(
            f"service up at {stack.base_url} ({args.workers}×{args.threads} gunicorn, "
            f"{args.rq_workers} RQ worker); logs in {directory}"
        )
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        stats = Stats()
        cpu_before = cpu_seconds(stack)
        asyncio.run(run_calls(args, stack.base_url, stats))
        cpu_after = cpu_seconds(stack)
        print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        load_seconds = time.monotonic() - stats.started
        spent = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
        print(
            f"CPU used during the load phase ({os.cpu_count()} cores × {load_seconds:.0f} s = "
            f"{(os.cpu_count() or 1) * load_seconds:.0f} s available): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items())
        )
        ok = report(args, stack, stats, load_seconds)
        print(f"SMS accepted by the Twilio stand-in: {twilio.sent}")
        if not args.no_ratio:
            ratio(args, stack)
        return 0 if ok else 1
    finally:
        signal.alarm(0)
        if stack is not None:
            stop_stack(stack)
        twilio.close()
        if not args.keep_logs:
            shutil.rmtree(directory, ignore_errors=True)
        print(f"stopped everything{'; logs kept in ' + str(directory) if args.keep_logs else ''}")


if __name__ == "__main__":
    sys.exit(main())
