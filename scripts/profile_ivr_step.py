#!/usr/bin/env python3
"""Benchmark (not a test): the app CPU of every kind of call step, and of whole calls,
inside the app, without HTTP.

    .venv/bin/python scripts/profile_ivr_step.py [--calls 300] [--steps 2000]
        [--database-url URL] [--logs] [--profile KIND]

The service as `scripts/bench_webhooks.py` serves it (plus the bare endpoint at
/bench/bare), called as a WSGI app in this process, one request after another: no gunicorn,
no sockets, no other process on the cores. The example roster and directory are imported
first (`callcenter roster import`, `callcenter directory import`).

Calls: a few scripted calls (consultation, new problem with the plate spoken and keyed,
critical failure, stolen vehicle, a specialist) are played once by the Twilio simulator
against the app, untimed, to learn what Twilio sends. Then `--calls` new calls are replayed
from them — each with a new CallSid (and child/recording SIDs), a caller from the directory,
every request re-signed before the clock starts — and each request's process CPU time is
added to its kind (incoming, each main-menu answer, each step, the plate by speech and by
keypad, the recording callback, the dial actions, the whisper and its answer, status
callbacks) and to its call. The ticket jobs a call queues run synchronously after the
request that queued them (the job runner is replaced by one that only records) and count
as their own kind and towards the call.

Also printed, as before: the bare endpoint and the cheapest step (`*` at the main menu, over
and over). `--logs` keeps the access log line on (to /dev/null); `--profile KIND` prints
cProfile's top functions of that step kind's requests (e.g. `incoming`; cProfile slows calls
down unevenly: use it for where, not how much), by cumulative time unless `PROFILE_SORT`
names another of pstats' keys (`PROFILE_SORT=tottime`); `PROFILE_CALLERS=<regex>` adds who
called the functions it matches (`PROFILE_CALLERS=isinstance`).

`--instructions` runs the same under Valgrind's callgrind and prints instructions executed
per step kind and per call instead: a count that other processes on the cores do not
change (process CPU time does, by a factor of 2–4 on a shared machine). It needs `valgrind`
and a C compiler with Valgrind's headers (Debian: `apt-get install valgrind gcc`), and
runs ~50 times slower: use few calls (`--calls 12 --steps 100`).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import itertools
import logging
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import callcenter  # noqa: F401 - installed in the virtualenv, or next to scripts/
except ImportError:
    sys.path.insert(0, str(HERE.parent))

import bench_webhooks  # noqa: E402 - after the path

BASE = "http://127.0.0.1:8000"
PROJECT = bench_webhooks.ROOT
# What Twilio's callers dial from: the numbers of the example directory, in turn.
DIRECTORY_CALLERS = (
    "+79161234567",
    "+79265550102",
    "+79217001020",
    "+78126070011",
    "+79031234567",
    "+79037654321",
    "+74951234567",
)
TEMPLATE_CALLER = DIRECTORY_CALLERS[0]
# (name, simulator answers, dial results): one of each kind of call, about a dozen
# webhooks each.
CALL_SCRIPTS = (
    ("consultation, repeat first", ["--press", "*", "1"], "no-answer"),
    ("new problem, plate spoken", ["--press", "2", "1", "1", "--say", "А123ВС77"], ""),
    ("new problem, plate keyed", ["--press", "2", "6", "3", "1042#"], ""),
    ("critical failure", ["--press", "3", "#"], "accepted"),
    ("stolen vehicle", ["--press", "4", "--say", "А123ВС77"], "no-answer,accepted"),
    ("a specialist", ["--press", "0"], "accepted"),
)
_SID = re.compile(r"\b(CA|RE)[0-9a-f]{32}\b")


def _import(*names: str) -> Any:
    """The first of `names` that imports: module paths differ before and after the
    packages, and the script measures both."""
    for name in names:
        module, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    raise SystemExit(f"none of {names} can be imported")


# ---------------------------------------------------------------- jobs


class RecordingRunner:
    """The job runner, replaced: jobs are recorded when queued and run by `run_pending`,
    synchronously, so their CPU is measured apart from the request that queued them."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.pending: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._create_ticket = _import(
            "callcenter.jobs.tasks.create_ticket",
            "callcenter.tickets.jobs.create_ticket",
            "callcenter.jobs.create_ticket",
        )
        self._run_followups = _import(
            "callcenter.jobs.tasks.run_followups",
            "callcenter.tickets.jobs.run_followups",
            "callcenter.jobs.run_followups",
        )
        # Before the reshape a job found its Services through an ambient `using(...)`;
        # since, the runner hands them in as the first argument.
        try:
            self._using: Callable[[Any], AbstractContextManager[object]] | None = _import(
                "callcenter.tickets.jobs.using", "callcenter.jobs.using"
            )
        except SystemExit:
            self._using = None

    def submit_ticket_request(self, request_id: int) -> bool:
        self.pending.append((self._create_ticket, (request_id,)))
        return True

    def submit_followups(self, request_id: int) -> bool:
        self.pending.append((self._run_followups, (request_id,)))
        return True

    def submit_chain_alerts(self, call_id: int) -> None:
        self.pending.append((_import("callcenter.jobs.tasks.chain_alerts_job"), (call_id,)))

    def submit_missed_urgent_sms(self, call_id: int) -> None:
        self.pending.append((_import("callcenter.jobs.tasks.missed_urgent_sms_job"), (call_id,)))

    def submit_incident(self, incident_id: int) -> None:
        self.pending.append((_import("callcenter.jobs.tasks.incident_job"), (incident_id,)))

    def enqueue(self, func: Callable[..., object], *args: Any, job_id: str | None = None) -> None:
        self.pending.append((func, args))

    def flush(self) -> int:
        return 0

    def tickets_waiting(self) -> bool:
        return bool(self.pending)

    def schedule_next(self, chain: str) -> None:
        pass

    def close(self) -> None:
        pass

    def run_pending(self, measure: Callable[[str], AbstractContextManager[None]]) -> None:
        while self.pending:
            func, args = self.pending.pop(0)
            kind = "ticket job" if func is self._create_ticket else f"job {func.__name__}"
            if self._using is None:
                with measure(kind):
                    func(self.services, *args)
            else:
                with measure(kind), self._using(self.services):
                    func(*args)


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Sent:
    """One webhook as the simulator sent it: the template of a replayed request."""

    method: str
    url: str
    params: dict[str, str]


def step_kind(sent: Sent) -> str:
    """The kind a request is counted under: the endpoint, the step, and for the main menu
    the key; a plate (vehicles) step by speech or keypad."""
    parts = urlsplit(sent.url)
    path = parts.path.removeprefix("/webhooks/voice")
    digits = sent.params.get("Digits")
    speech = sent.params.get("SpeechResult")
    if path.startswith("/step/"):
        step = path.removeprefix("/step/")
        if step == "main_menu":
            return f"main menu {digits or speech or '(nothing)'}"
        if "vehicles" in step:
            return f"plate {step} ({'speech' if speech else 'keypad' if digits else 'nothing'})"
        return f"step {step}"
    names = {
        "/incoming": "incoming (new call)",
        "/status": "status callback",
        "/recording-status": "recording callback",
        "/route/dial": "dial action",
        "/route/whisper": "whisper",
        "/route/whisper/answer": "whisper answer",
        "/route/leg-status": "leg status callback",
    }
    return names.get(path, f"route {path.removeprefix('/route/')}")


class Replay:
    """A call's requests with fresh SIDs and a caller, signed, as WSGI environs."""

    def __init__(self, auth_token: str) -> None:
        from twilio.request_validator import RequestValidator

        self.validator = RequestValidator(auth_token)

    def environs(self, template: list[Sent], caller: str) -> list[tuple[str, dict[str, Any]]]:
        from werkzeug.test import EnvironBuilder

        sids: dict[str, str] = {}

        def fresh(text: str) -> str:
            return _SID.sub(
                lambda m: sids.setdefault(m.group(0), m.group(1) + uuid.uuid4().hex), text
            )

        out = []
        for sent in template:
            params = {
                key: caller if value == TEMPLATE_CALLER else fresh(value)
                for key, value in sent.params.items()
            }
            url = fresh(sent.url)
            signature = self.validator.compute_signature(url, params)
            parts = urlsplit(url)
            builder = EnvironBuilder(
                path=parts.path,
                query_string=parts.query,
                method="POST",
                data=params,
                base_url=BASE,
                headers={"X-Twilio-Signature": signature},
            )
            out.append((step_kind(sent), builder.get_environ()))
        return out


def call_wsgi(app: Callable[..., Any], environ: dict[str, Any]) -> tuple[str, bytes]:
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc: Any = None) -> None:
        statuses.append(status)

    body = app(environ, start_response)
    data = b"".join(body)
    if hasattr(body, "close"):
        body.close()
    return (statuses[0] if statuses else "no status"), data


def play(app: Callable[..., Any], requests: list[dict[str, Any]]) -> None:
    for environ in requests:
        status, _ = call_wsgi(app, environ)
        if not status.startswith("200"):
            raise SystemExit(f"{environ['PATH_INFO']}: {status}")


class _Response:
    """What the simulator reads of an HTTP response (the `requests` API it uses)."""

    def __init__(self, status: str, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = int(status.split()[0])
        self.content = body
        self.headers = headers


class InProcessHttp:
    """The simulator's HTTP session, served by the WSGI app in this process; the jobs a
    request queued run before the next request, as they do in the replay."""

    def __init__(self, app: Callable[..., Any], runner: RecordingRunner) -> None:
        self.app = app
        self.runner = runner

    def request(
        self,
        method: str,
        url: str,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> _Response:
        from werkzeug.test import EnvironBuilder

        parts = urlsplit(url)
        builder = EnvironBuilder(
            path=parts.path,
            query_string=parts.query,
            method=method,
            data=data,
            base_url=BASE,
            headers=headers or {},
        )
        reply_headers: dict[str, str] = {}
        statuses: list[str] = []

        def start_response(status: str, hdrs: Any, exc: Any = None) -> None:
            statuses.append(status)
            reply_headers.update(hdrs)

        body = self.app(builder.get_environ(), start_response)
        content = b"".join(body)
        if hasattr(body, "close"):
            body.close()
        self.runner.run_pending(lambda kind: nullcontext())
        return _Response(statuses[0], content, reply_headers)


def record_templates(app: Any, runner: RecordingRunner, auth_token: str) -> dict[str, list[Sent]]:
    simulator = _import("callcenter.simulator.twilio.Simulator", "callcenter.simulator.Simulator")
    call_script = _import(
        "callcenter.simulator.script.CallScript", "callcenter.simulator_script.CallScript"
    )
    parse_answers = _import(
        "callcenter.simulator.script.parse_answer_tokens",
        "callcenter.simulator_script.parse_answer_tokens",
    )
    sim = simulator(BASE, auth_token, http=InProcessHttp(app, runner))
    templates = {}
    for name, answers, dials in CALL_SCRIPTS:
        script = call_script(
            from_number=TEMPLATE_CALLER,
            answers=parse_answers(answers),
            dial_results=tuple(filter(None, dials.split(","))),
        )
        transcript = sim.run(script)
        if transcript.ended_by == "error":
            raise SystemExit(f"{name}: the simulated call failed:\n{transcript.text()}")
        if any(r.method != "POST" for r in transcript.requests):
            raise SystemExit(f"{name}: only POST webhooks are replayed")
        templates[name] = [Sent(r.method, r.url, r.params) for r in transcript.requests]
    return templates


# ---------------------------------------------------------------- measuring


CALLGRIND_ENV = "CC_PROFILE_CALLGRIND_LIB"
CALLGRIND_C = r"""
#include <valgrind/callgrind.h>
void cc_zero(void) { CALLGRIND_ZERO_STATS; }
void cc_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


class Callgrind:
    """Valgrind's client requests, when this process runs under callgrind
    (`--instructions`): the counters zeroed before a measured request and dumped, labelled,
    after it. Outside Valgrind (or without the library) both do nothing."""

    def __init__(self) -> None:
        self._lib: Any = None
        # Off while warming up: only the measured requests are dumped.
        self.on = False
        path = os.environ.get(CALLGRIND_ENV)
        if path:
            import ctypes

            self._lib = ctypes.CDLL(path)
            self._lib.cc_dump.argtypes = [ctypes.c_char_p]

    def zero(self) -> None:
        if self._lib is not None and self.on:
            self._lib.cc_zero()

    def dump(self, label: str) -> None:
        if self._lib is not None and self.on:
            self._lib.cc_dump(label.encode())


callgrind = Callgrind()


def run_under_callgrind(argv: list[str]) -> int:
    """Run this script (without `--instructions`) under callgrind, one dump per measured
    request, and print instructions per step kind and per call from the dumps."""
    import shutil

    for tool in ("valgrind", "cc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"--instructions needs `{tool}` (apt-get install valgrind gcc)")
    with tempfile.TemporaryDirectory(prefix="cc-callgrind-") as tmp:
        source, lib = Path(tmp, "cc.c"), Path(tmp, "libcc.so")
        source.write_text(CALLGRIND_C)
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", lib, source], check=True)
        out = Path(tmp, "callgrind.out")
        command = [
            "valgrind", "--tool=callgrind", "--dump-instr=no", "--dump-line=no",
            "--compress-strings=no", "--compress-pos=no", f"--callgrind-out-file={out}",
            sys.executable, __file__, *argv,
        ]  # fmt: skip
        done = subprocess.run(
            command, env={**os.environ, CALLGRIND_ENV: str(lib)}, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the run under callgrind failed ({done.returncode})")
        dumps = [read_dump(path) for path in Path(tmp).glob("callgrind.out.*")]
    print_instructions([dump for dump in dumps if dump is not None])
    return 0


def read_dump(path: Path) -> tuple[str, int] | None:
    """(label, instructions) of one callgrind dump made by `Callgrind.dump`.

    The header's `summary:` is what the threads executed since the counters were zeroed.
    The `totals:` at the end sums the cost lines, and callgrind's dump adds to them the
    calls still on the stack with their cost since they were entered (`cs_addPtr` in
    callgrind's dump.c), from before the zero: the first measured request's dump carried
    the script's warm-up (78.8 million instructions against its 5.6), later ones up to
    0.8 million. Only `summary:` is read."""
    label, total = None, None
    with path.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("desc: Trigger: Client Request: "):
                label = line.removeprefix("desc: Trigger: Client Request: ").rstrip("\n")
            elif line.startswith("summary: "):
                total = int(line.split()[1])
                break
    return (label, total) if label is not None and total is not None else None


def print_instructions(dumps: list[tuple[str, int]]) -> None:
    steps, per_call, star = Tally(), Tally(), {}
    calls: dict[str, tuple[str, int]] = {}
    for label, total in dumps:
        call, _, kind = label.partition("|")
        if call == "star":
            name, _, count = kind.partition("|")
            star[name] = total / int(count)
            continue
        steps.add(kind, total)
        name = call.rpartition("#")[0]
        calls[call] = (name, calls.get(call, (name, 0))[1] + total)
    for name, total in calls.values():
        per_call.add(name, total)
    print("instructions executed (callgrind), millions:")
    for label, kind in (("bare Flask TwiML", "bare"), ("main menu * over and over", "ivr")):
        if kind in star:
            print(f"  {label:34} {star[kind] / 1e6:7.2f}")
    print("per step kind:")
    for kind in sorted(steps.counts, key=steps.mean_us, reverse=True):
        print(f"  {kind:34} {steps.mean_us(kind) / 1e12:7.2f}  (n={steps.counts[kind]})")
    print("per call (its webhooks + its jobs):")
    for name in sorted(per_call.counts):
        mean = per_call.mean_us(name) / 1e12
        print(f"  {name:34} {mean:7.2f}  (n={per_call.counts[name]})")


@dataclass
class Tally:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, kind: str, seconds: float) -> None:
        self.seconds[kind] += seconds
        self.counts[kind] += 1

    def mean_us(self, kind: str) -> float:
        return self.seconds[kind] / self.counts[kind] * 1e6


def measure_calls(
    app: Any,
    runner: RecordingRunner,
    templates: dict[str, list[Sent]],
    calls: int,
    auth_token: str,
    profile_kind: str | None,
) -> tuple[Tally, Tally, cProfile.Profile | None]:
    """Replay `calls` new calls (the scripts in turn); returns (per step kind, per call
    script) tallies of process CPU seconds."""
    replay = Replay(auth_token)
    callers = itertools.cycle(DIRECTORY_CALLERS)
    names = itertools.cycle(templates)
    steps, per_call = Tally(), Tally()
    profiler = cProfile.Profile(time.process_time) if profile_kind else None
    call_seconds = 0.0

    def measured(kind: str) -> Iterator[None]:
        nonlocal call_seconds
        profiling = profiler is not None and kind.startswith(profile_kind or "")
        if profiling:
            profiler.enable()  # type: ignore[union-attr]
        callgrind.zero()
        started = time.process_time()
        yield
        spent = time.process_time() - started
        callgrind.dump(f"{call_label}|{kind}")
        if profiling:
            profiler.disable()  # type: ignore[union-attr]
        steps.add(kind, spent)
        call_seconds += spent

    measure = contextmanager(measured)
    call_label = ""
    for index in range(calls):
        name = next(names)
        prepared = replay.environs(templates[name], next(callers))
        call_seconds = 0.0
        call_label = f"{name}#{index}"
        for kind, environ in prepared:
            if kind.startswith("incoming"):
                # A new call's number as if never seen: the replayed callers repeat, and
                # the parse of a number is cached per process (`phones.classify`).
                forget_numbers()
            with measure(kind):
                status, body = call_wsgi(app, environ)
            if not status.startswith(("200", "204")):
                raise SystemExit(f"{name}: {kind} answered {status}: {body[:300]!r}")
            runner.run_pending(measure)
        per_call.add(name, call_seconds)
    return steps, per_call, profiler


def forget_numbers() -> None:
    """Empty the per-process caches of parsed numbers (absent before they existed)."""
    phones = importlib.import_module("callcenter.phones")
    for name in ("classify", "_international"):
        cache_clear = getattr(getattr(phones, name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


def star_environs(kind: str, steps: int) -> list[dict[str, Any]]:
    """The old benchmark's requests: `*` at the main menu over and over, or the bare one."""
    from werkzeug.test import EnvironBuilder

    make = bench_webhooks.ivr_requests if kind == "ivr" else bench_webhooks.bare_requests
    prepared = []
    while len(prepared) < steps:
        prepared += make(BASE, 200)  # callers of 200 turns, as the HTTP benchmark's
    out = []
    for request in prepared[:steps]:
        path, _, query = request.path.partition("?")
        builder = EnvironBuilder(
            path=path,
            query_string=query,
            method="POST",
            data=request.body,
            base_url=BASE,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": request.signature,
            },
        )
        out.append(builder.get_environ())
    return out


# Twilio's REST API for the SMS the jobs send: a stand-in in its own process (its CPU is not
# the app's), answering every POST as Twilio answers a queued message.
TWILIO_STAND_IN = """
import http.server, json, secrets, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"sid": "SM" + secrets.token_hex(16), "status": "queued",
                           "account_sid": "AC" + "0" * 32, "num_segments": "1"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def start_twilio_stand_in() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TWILIO_STAND_IN], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port:
        raise SystemExit("the Twilio stand-in did not start")
    return proc, f"http://127.0.0.1:{port}"


def import_examples(env: dict[str, str]) -> None:
    cli = Path(sys.executable).parent / "callcenter"
    examples = PROJECT / "scripts" / "examples"
    for command in (
        ["roster", "import", str(examples / "roster.yaml")],
        ["directory", "import", str(examples / "directory.csv")],
    ):
        subprocess.run([str(cli), *command], check=True, env=env, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="new calls replayed")
    parser.add_argument("--steps", type=int, default=2000, help="`*` steps and bare requests")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--logs", action="store_true", help="keep the access log line")
    parser.add_argument("--profile", metavar="KIND", help="cProfile this step kind")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    args = parser.parse_args()
    if args.instructions:
        return run_under_callgrind([arg for arg in sys.argv[1:] if arg != "--instructions"])

    stand_in, twilio_url = start_twilio_stand_in()
    with tempfile.TemporaryDirectory(prefix="cc-profile-") as tmp:
        os.environ.update(
            DATABASE_URL=args.database_url or f"sqlite:///{tmp}/profile.db",
            CALLCENTER_DATA_DIR=tmp,
            TWILIO_AUTH_TOKEN=bench_webhooks.AUTH_TOKEN,
            TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            TWILIO_API_BASE_URL=twilio_url,
            PUBLIC_BASE_URL=BASE,
        )
        os.environ.pop("REDIS_URL", None)
        services_cls = _import("callcenter.services.Services")
        real_from_settings = services_cls.from_settings
        runners: list[RecordingRunner] = []

        def from_settings(*a: Any, **kw: Any) -> Any:
            services = real_from_settings(*a, **kw)
            # `jobs` is a cached property: set first, it is never built.
            services.jobs = RecordingRunner(services)
            runners.append(services.jobs)
            return services

        services_cls.from_settings = from_settings
        app = bench_webhooks.serve_app()
        services_cls.from_settings = real_from_settings
        runner = runners[0]
        import_examples(dict(os.environ))
        if args.logs:
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
        else:
            logging.disable(logging.INFO)

        templates = record_templates(app, runner, bench_webhooks.AUTH_TOKEN)
        warm = max(len(templates), args.calls // 10)
        measure_calls(app, runner, templates, warm, bench_webhooks.AUTH_TOKEN, None)
        callgrind.on = True
        steps, per_call, profiler = measure_calls(
            app, runner, templates, args.calls, bench_webhooks.AUTH_TOKEN, args.profile
        )
        star = {}
        for kind in ("bare", "ivr"):
            callgrind.on = False
            play(app, star_environs(kind, 200))
            callgrind.on = True
            requests = star_environs(kind, args.steps)
            callgrind.zero()
            started = time.process_time()
            play(app, requests)
            star[kind] = (time.process_time() - started) / len(requests)
            callgrind.dump(f"star|{kind}|{len(requests)}")
    stand_in.terminate()
    stand_in.wait(timeout=10)

    out = sys.__stdout__
    dialect = os.environ["DATABASE_URL"].split(":", 1)[0]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"in-process app CPU (time.process_time), {dialect}, access log "
        f"{'on' if args.logs else 'off'}; load average {load}",
        file=out,
    )
    for label, kind in (("bare Flask TwiML", "bare"), ("main menu * over and over", "ivr")):
        print(f"  {label:34} {star[kind] * 1e6:7.0f} µs  ({args.steps} requests)", file=out)
    print(f"per step kind, {args.calls} new calls ({len(templates)} scripts in turn):", file=out)
    worst = 0.0
    for kind in sorted(steps.counts, key=steps.mean_us, reverse=True):
        mean = steps.mean_us(kind)
        if not kind.startswith("job") and kind != "ticket job":
            worst = max(worst, mean)
        print(f"  {kind:34} {mean:7.0f} µs  (n={steps.counts[kind]})", file=out)
    print("per call (its webhooks + its jobs):", file=out)
    for name in templates:
        if not per_call.counts[name]:
            continue  # fewer calls than scripts: this one was not played
        webhooks = len(templates[name])
        print(
            f"  {name:34} {per_call.mean_us(name):7.0f} µs  ({webhooks} webhooks, "
            f"n={per_call.counts[name]})",
            file=out,
        )
    total = sum(per_call.seconds.values()) / sum(per_call.counts.values()) * 1e6
    print(f"  {'mean call':34} {total:7.0f} µs", file=out)
    verdict = "OK" if worst <= 1000 else "MISSED"
    print(f"costliest webhook kind {worst:.0f} µs (target <= 1000 µs): {verdict}", file=out)
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(45)
        if os.environ.get("PROFILE_CALLERS"):
            stats.print_callers(os.environ["PROFILE_CALLERS"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
