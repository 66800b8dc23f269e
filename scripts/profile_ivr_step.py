#!/usr/bin/env python3
"""Benchmark (not a test): the CPU of one signed IVR step inside the app, without HTTP.

    .venv/bin/python scripts/profile_ivr_step.py [--steps 2000] [--database-url URL]
        [--logs] [--profile]

The same app and requests as `scripts/bench_webhooks.py` (the service plus the bare
endpoint at /bench/bare), called as a WSGI app in this process, one request after another:
no gunicorn, no sockets, no other process on the cores. Prints the process CPU time per
request for the IVR step and for the bare endpoint — what the app itself costs, as opposed
to what `bench_webhooks.py` measures through a server shared with its clients. `--logs`
keeps the access log line on (to /dev/null); `--profile` prints cProfile's top functions of
the IVR run (cProfile slows calls down unevenly: use it for where, not how much).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import bench_webhooks  # noqa: E402 - after the path

BASE = "http://127.0.0.1:8000"


def environs(kind: str, steps: int) -> list[dict[str, Any]]:
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


def play(app: Callable[..., Any], requests: list[dict[str, Any]]) -> None:
    for environ in requests:
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc: Any = None) -> None:
            statuses.append(status)  # noqa: B023 - called before the next iteration

        body = app(environ, start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()
        if not statuses or not statuses[0].startswith("200"):
            raise SystemExit(f"{environ['PATH_INFO']}: {statuses}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--logs", action="store_true", help="keep the access log line")
    parser.add_argument("--profile", action="store_true", help="cProfile the IVR run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cc-profile-") as tmp:
        os.environ.update(
            DATABASE_URL=args.database_url or f"sqlite:///{tmp}/profile.db",
            CALLCENTER_DATA_DIR=tmp,
            TWILIO_AUTH_TOKEN=bench_webhooks.AUTH_TOKEN,
            PUBLIC_BASE_URL=BASE,
        )
        app = bench_webhooks.serve_app()
        if args.logs:
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
        else:
            logging.disable(logging.INFO)
        results = {}
        for kind in ("bare", "ivr"):
            warm = environs(kind, 200)
            play(app, warm)
            requests = environs(kind, args.steps)
            profiler = cProfile.Profile() if args.profile and kind == "ivr" else None
            started = time.process_time()
            if profiler is not None:
                profiler.enable()
            play(app, requests)
            if profiler is not None:
                profiler.disable()
            results[kind] = (time.process_time() - started) / len(requests)
        dialect = os.environ["DATABASE_URL"].split(":", 1)[0]
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(
            f"in-process, {args.steps} requests each, {dialect}, access log "
            f"{'on' if args.logs else 'off'}; load average {load}",
            file=sys.__stdout__,
        )
        for kind, label in (("bare", "bare Flask TwiML"), ("ivr", "signed IVR step + DB write")):
            print(f"  {label:28} {results[kind] * 1e6:7.0f} µs CPU/request", file=sys.__stdout__)
        if args.profile:
            stats = pstats.Stats(profiler, stream=sys.__stdout__)
            stats.sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
