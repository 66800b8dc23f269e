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

ROOT = Path(__file__).resolve().parent.parent
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

    try:
        import callcenter.db.models  # noqa: F401 - the tables
        from callcenter.db import Base
    except ImportError:  # the layout before the packages, for before/after figures
        import callcenter.models  # noqa: F401

        from callcenter.db import Base
    from callcenter.services import Services
    from callcenter.settings import Settings

    services = Services.from_settings(Settings.from_env())
    Base.metadata.create_all(services.engine)
    service = create_app(services=services)

    bare = Flask("bare")

    @bare.post("/bare")
    def bare_twiml() -> Response:
        return Response(BARE_TWIML, content_type="text/xml; charset=utf-8")

    service.wsgi_app = DispatcherMiddleware(service.wsgi_app, {"/bench": bare})  # type: ignore[method-assign]
    return service


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
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'scripts'}",
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


def bare_requests(base: str, steps: int) -> list[Prepared]:
    params = call_params("CA" + uuid.uuid4().hex, Digits="*")
    body = urlencode(params).encode()
    sig = signature(base + "/bench/bare", params)
    return [Prepared("/bench/bare", body, sig, b"<Gather") for _ in range(steps + 1)]


def play(port: int, requests: list[Prepared]) -> tuple[list[float], int, float, float]:
    """Send the requests in order on one keep-alive connection; the first is not timed.
    Returns (latencies, errors, start, end)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
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


def measure(name: str, kind: str, port: int, total: int, concurrency: int) -> Run:
    """`concurrency` client processes, each one caller (or one bare client) in a loop."""
    base = f"http://127.0.0.1:{port}"
    per = max(1, total // concurrency)
    make = ivr_requests if kind == "ivr" else bare_requests
    batches = [make(base, per) for _ in range(concurrency)]
    with multiprocessing.get_context("fork").Pool(concurrency) as pool:
        results = pool.starmap(play, [(port, batch) for batch in batches])
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
        port = free_port()
        server = start_server(port, database_url, data_dir, args.workers, args.threads)
        try:
            warm = max(20, total // 20)
            measure("warm-up", "ivr", port, warm, args.concurrency)
            measure("warm-up", "bare", port, warm, args.concurrency)
            before = server_cpu_seconds(server.pid)
            bare = measure("bare Flask TwiML", "bare", port, total, args.concurrency)
            middle = server_cpu_seconds(server.pid)
            ivr = measure("signed IVR step + DB write", "ivr", port, total, args.concurrency)
            after = server_cpu_seconds(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)

    dialect = database_url.split(":", 1)[0]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"gunicorn {args.workers} worker(s), gthread x{args.threads}; "
        f"{args.concurrency} concurrent clients; {dialect}; load average {load}"
    )
    print(bare.line())
    print(ivr.line())
    # Where the difference goes: the server's own CPU per request (its workers, from /proc),
    # whatever the clients sharing the cores cost.
    print(
        f"server CPU per request: bare {cpu_per_request(before, middle, bare)}, "
        f"IVR step {cpu_per_request(middle, after, ivr)}"
    )
    ratio = ivr.throughput / bare.throughput
    p99_ms = ivr.percentile(0.99) * 1000
    print(
        f"IVR/bare throughput {ratio:.2f} (target >= 0.50); IVR p99 {p99_ms:.1f} ms "
        f"(target < 50 ms): {'OK' if ratio >= 0.5 and p99_ms < 50 else 'MISSED'}"
    )
    return 0 if bare.errors == 0 and ivr.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
