#!/usr/bin/env python3
"""Benchmark (not a test): a full signed IVR step with its database write, against a bare
Flask endpoint returning fixed TwiML, on the same gunicorn server.

    .venv/bin/python scripts/bench_webhooks.py [--requests 2000] [--concurrency 8]
        [--workers 1] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

One gunicorn server (by default the `callcenter serve` settings: 1 worker, gthread, 8
threads; `--workers 2` is the Procfile's) serves both: the service's `/webhooks/voice/...`
and `/bench/bare`, a Flask view that returns a constant `<Gather>` document and does
nothing else. Virtual callers (one process each, a keep-alive connection, requests signed in
advance) each start a call and then keep answering the main menu with "*" (repeat) at the
next turn, so every request is a real step: the Twilio signature checked, the call row
locked, the state advanced, an event row written, TwiML rendered. The bare endpoint gets the
same number of requests at the same concurrency.

Prints median and p99 latency and throughput for both, and their ratio. Targets: p99 under
50 ms, and at least half the bare endpoint's throughput. Only 127.0.0.1 is ever a target;
request counts are bounded and the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

SCRIPTS = Path(__file__).resolve().parent


def _project_root() -> Path:
    """The checkout whose `callcenter` this interpreter imports: the scripts' own, or (a
    copy of the scripts run by another checkout's virtualenv, for before/after figures)
    that one."""
    if (SCRIPTS.parent / "callcenter").is_dir():
        return SCRIPTS.parent
    spec = importlib.util.find_spec("callcenter")
    if spec is None or spec.origin is None:
        raise SystemExit("callcenter cannot be imported by this interpreter")
    return Path(spec.origin).resolve().parent.parent


ROOT = _project_root()
AUTH_TOKEN = "bench-auth-token"
BARE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/x" input="dtmf speech" '
    'language="ru-RU" numDigits="1"><Say language="ru-RU" voice="Polly.Tatyana">Меню</Say>'
    "</Gather></Response>"
)


def serve_app() -> Any:
    """The WSGI app gunicorn runs: the service, plus the bare endpoint at /bench/bare."""
    from flask import Flask, Response
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from callcenter.app import create_app
    from callcenter.services import Services
    from callcenter.settings import Settings

    services = Services.from_settings(Settings.from_env())
    create_tables(services.engine)
    service = create_app(services=services)

    bare = Flask("bare")

    @bare.post("/bare")
    def bare_twiml() -> Response:
        return Response(BARE_TWIML, content_type="text/xml; charset=utf-8")

    service.wsgi_app = DispatcherMiddleware(service.wsgi_app, {"/bench": bare})  # type: ignore[method-assign]
    return service


def create_tables(engine: Any) -> None:
    try:
        import callcenter.db.models  # noqa: F401 - the tables
        from callcenter.db import Base
    except ImportError:  # the layout before the packages, for before/after figures
        import callcenter.models  # noqa: F401

        from callcenter.db import Base
    Base.metadata.create_all(engine)


def prepare_database(database_url: str, data_dir: Path) -> None:
    """The tables, then the example directory (with the `callcenter` command), before the
    server starts: its workers boot at once and would race each other's CREATE TABLE on an
    empty PostgreSQL database."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        create_tables(engine)
    finally:
        engine.dispose()
    env = {**os.environ, "DATABASE_URL": database_url, "CALLCENTER_DATA_DIR": str(data_dir)}
    csv = ROOT / "scripts" / "examples" / "directory.csv"
    command = [str(Path(sys.executable).parent / "callcenter"), "directory", "import", str(csv)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"directory import failed:\n{done.stdout}{done.stderr}")


@dataclass
class Run:
    name: str
    latencies: list[float]
    seconds: float
    errors: int

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.name:<28} {len(self.latencies):>6} req  "
            f"median {statistics.median(self.latencies) * 1000:6.1f} ms  "
            f"p99 {self.percentile(0.99) * 1000:6.1f} ms  "
            f"{self.throughput:7.1f} req/s  errors {self.errors}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def start_server(
    port: int, database_url: str, data_dir: Path, workers: int, threads: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CALLCENTER_DATA_DIR": str(data_dir),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{SCRIPTS}",
    }
    env.pop("REDIS_URL", None)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [
        str(gunicorn),
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--worker-class", "gthread",
        "--threads", str(threads),
        "--log-level", "warning",
        "bench_webhooks:serve_app()",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not start within 60 s")


def signature(url: str, params: dict[str, str]) -> str:
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(AUTH_TOKEN).compute_signature(url, params))


def call_params(call_sid: str, **more: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "From": "+79161234567",
        "Caller": "+79161234567",
        "To": "+78002506077",
        "Called": "+78002506077",
        **more,
    }


@dataclass(frozen=True)
class Prepared:
    path: str
    body: bytes
    signature: str
    expect: bytes  # a piece the reply must contain


def ivr_requests(base: str, steps: int) -> list[Prepared]:
    """One caller's requests, signed in advance so the client does little while measured:
    the incoming webhook, then "*" (repeat) at each turn of the main menu."""
    call_sid = "CA" + uuid.uuid4().hex
    out: list[Prepared] = []
    incoming = call_params(call_sid, CallStatus="ringing")
    path = "/webhooks/voice/incoming"
    out.append(
        Prepared(
            path, urlencode(incoming).encode(), signature(base + path, incoming), b"main_menu?t=1"
        )
    )
    for turn in range(1, steps + 1):
        params = call_params(call_sid, Digits="*")
        path = f"/webhooks/voice/step/main_menu?t={turn}"
        expect = f"main_menu?t={turn + 1}".encode()
        out.append(
            Prepared(path, urlencode(params).encode(), signature(base + path, params), expect)
        )
    return out


# The example directory's numbers (`scripts/examples/directory.csv`), imported before the
# run: every new call is identified as a real first webhook is.
DIRECTORY_CALLERS = (
    "+79161234567",
    "+79265550102",
    "+79217001020",
    "+78126070011",
    "+79031234567",
    "+79037654321",
    "+74951234567",
)


def incoming_requests(base: str, calls: int) -> list[Prepared]:
    """First webhooks of `calls` new calls: each a new CallSid, a caller from the directory
    (looked up, a call row inserted, the hours said). One more than asked: the first of a
    batch is not timed."""
    path = "/webhooks/voice/incoming"
    out: list[Prepared] = []
    for index in range(calls + 1):
        caller = DIRECTORY_CALLERS[index % len(DIRECTORY_CALLERS)]
        params = call_params(
            "CA" + uuid.uuid4().hex, CallStatus="ringing", From=caller, Caller=caller
        )
        body = urlencode(params).encode()
        out.append(Prepared(path, body, signature(base + path, params), b"main_menu?t=1"))
    return out


def bare_requests(base: str, steps: int) -> list[Prepared]:
    params = call_params("CA" + uuid.uuid4().hex, Digits="*")
    body = urlencode(params).encode()
    sig = signature(base + "/bench/bare", params)
    return [Prepared("/bench/bare", body, sig, b"<Gather") for _ in range(steps + 1)]


def play(
    port: int, requests: list[Prepared], timeout: float = 10.0
) -> tuple[list[float], int, float, float]:
    """Send the requests in order on one keep-alive connection; the first is not timed.
    Returns (latencies, errors, start, end)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    latencies: list[float] = []
    errors = 0
    start = end = time.perf_counter()
    for index, prepared in enumerate(requests):
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": prepared.signature,
        }
        began = time.perf_counter()
        if index == 1:
            start = began
        connection.request("POST", prepared.path, body=prepared.body, headers=headers)
        reply = connection.getresponse()
        body = reply.read()
        end = time.perf_counter()
        if reply.status != 200 or prepared.expect not in body:
            errors += 1
            break
        if index > 0:
            latencies.append(end - began)
    connection.close()
    return latencies, errors, start, end


def server_cpu_seconds(master_pid: int) -> float | None:
    """User + system CPU of gunicorn's workers so far (Linux /proc), None elsewhere."""
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        total = 0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


def cpu_per_request(start: float | None, end: float | None, run: Run) -> str:
    if start is None or end is None or not run.latencies:
        return "n/a"
    return f"{(end - start) / len(run.latencies) * 1e6:.0f} µs"


def measure(
    name: str, kind: str, port: int, total: int, concurrency: int, timeout: float = 10.0
) -> Run:
    """`concurrency` client processes, each one caller (or one bare client) in a loop."""
    base = f"http://127.0.0.1:{port}"
    per = max(1, total // concurrency)
    make = {"ivr": ivr_requests, "incoming": incoming_requests, "bare": bare_requests}[kind]
    batches = [make(base, per) for _ in range(concurrency)]
    with multiprocessing.get_context("fork").Pool(concurrency) as pool:
        results = pool.starmap(play, [(port, batch, timeout) for batch in batches])
    latencies = [value for result in results for value in result[0]]
    errors = sum(result[1] for result in results)
    seconds = max(r[3] for r in results) - min(r[2] for r in results)
    return Run(name, latencies, seconds, errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint (max 20000)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gunicorn workers (1: `callcenter serve`; the Procfile runs 2 on PostgreSQL)",
    )
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    total = min(args.requests, 20_000)

    with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp:
        data_dir = Path(tmp)
        database_url = args.database_url or f"sqlite:///{data_dir / 'bench.db'}"
        prepare_database(database_url, data_dir)
        port = free_port()
        server = start_server(port, database_url, data_dir, args.workers, args.threads)
        try:
            warm = max(20, total // 20)
            # The socket accepts before the workers have loaded the app, which takes long
            # on a busy machine: the warm-up waits for them.
            for kind in ("ivr", "incoming", "bare"):
                measure("warm-up", kind, port, warm, args.concurrency, timeout=120)
            runs: list[tuple[Run, str]] = []
            for name, kind in (
                ("bare Flask TwiML", "bare"),
                ("signed IVR step (*) + DB", "ivr"),
                ("incoming, new calls", "incoming"),
            ):
                before = server_cpu_seconds(server.pid)
                run = measure(name, kind, port, total, args.concurrency)
                runs.append((run, cpu_per_request(before, server_cpu_seconds(server.pid), run)))
        finally:
            server.terminate()
            server.wait(timeout=30)

    dialect = database_url.split(":", 1)[0]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"gunicorn {args.workers} worker(s), gthread x{args.threads}; "
        f"{args.concurrency} concurrent clients; {dialect}; load average {load}"
    )
    # Beside each: the server's own CPU per request (its workers, from /proc), whatever the
    # clients sharing the cores cost.
    for run, cpu in runs:
        print(f"{run.line()}  server CPU {cpu}/req")
    bare, ivr, incoming = (run for run, _ in runs)
    ratio = ivr.throughput / bare.throughput
    p99_ms = ivr.percentile(0.99) * 1000
    print(
        f"IVR step/bare throughput {ratio:.2f} (target >= 0.50); IVR p99 {p99_ms:.1f} ms "
        f"(target < 50 ms): {'OK' if ratio >= 0.5 and p99_ms < 50 else 'MISSED'}"
    )
    first = incoming.throughput / bare.throughput
    print(
        f"incoming (new calls)/bare throughput {first:.2f} (target >= 0.35): "
        f"{'OK' if first >= 0.35 else 'MISSED'}"
    )
    return 0 if all(run.errors == 0 for run, _ in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
