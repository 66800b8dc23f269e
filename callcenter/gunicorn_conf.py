"""gunicorn hooks for the Procfile's `web` process (`-c python:callcenter.gunicorn_conf`):
one `/metrics` for all the workers of a server.

Each gunicorn worker is a process with its own process-local metrics (the webhook latency
histogram), so a scrape would see only the worker that answered it. prometheus-client's
multiprocess mode has every worker write its values to files in `PROMETHEUS_MULTIPROC_DIR`,
and `/metrics` (`callcenter.metrics.render`) adds up the files. The hooks:

- `on_starting` (the master, before any worker exists): the directory is
  `PROMETHEUS_MULTIPROC_DIR` if set — emptied of an earlier run's files — or a fresh one
  of this server's own under the temp directory, removed again `on_exit`. It goes into the
  environment the workers inherit, before they import prometheus-client, which picks its
  mode on import (so the app must not be preloaded in the master: `--preload` is refused).
- `child_exit`: a worker is gone (crashed, restarted); `mark_process_dead` retires its
  live gauges. Its counters and histograms stay counted: requests it served happened.

Bind address, workers, threads and timeouts stay on the Procfile's command line; the
request line and header limits are here (`REQUEST_LIMITS`, also used by `callcenter serve`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"

# Gunicorn 24+ opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl): a
# second server on the host (another release, a test stack) would take it over. Nothing
# here uses it. (A setting older gunicorns do not know is ignored in a config file.)
control_socket_disable = True

# Bounded requests, before the app sees them: Twilio's request lines carry a few query
# parameters (< 1 KB) and its headers are a dozen; the console's cookies are small. A
# longer line or more or larger headers get gunicorn's 400 without reaching a worker's
# memory (the body itself is bounded by the app's MAX_CONTENT_LENGTH).
REQUEST_LIMITS = {
    "limit_request_line": 4094,
    "limit_request_fields": 60,
    "limit_request_field_size": 8190,
}
limit_request_line = REQUEST_LIMITS["limit_request_line"]
limit_request_fields = REQUEST_LIMITS["limit_request_fields"]
limit_request_field_size = REQUEST_LIMITS["limit_request_field_size"]

# The directory this master made (and removes on exit); None when it was configured.
_made: Path | None = None


def on_starting(server: Any) -> None:
    global _made
    configured = os.environ.get(ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        # A master re-executed for an upgrade (USR2) shares the directory with the old
        # master's workers, still serving: their files stay.
        if not server.master_pid:
            for stale in directory.glob("*.db"):
                stale.unlink(missing_ok=True)
    else:
        if server.cfg.preload_app or "prometheus_client.values" in sys.modules:
            raise RuntimeError(
                f"prometheus-client was imported before {ENV} was set (--preload?): "
                "set it in the environment, or do not preload the app"
            )
        _made = directory = Path(tempfile.mkdtemp(prefix="callcenter-metrics-"))
        os.environ[ENV] = str(directory)
    server.log.info("metrics of all workers in %s=%s", ENV, directory)


def child_exit(server: Any, worker: Any) -> None:
    # Imported here, not at the top: prometheus-client picks its (multiprocess) mode when
    # first imported, and this file is read before `on_starting` sets ENV.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    server.log.info("metrics: worker %s gone, its counts stay", worker.pid)


def on_exit(server: Any) -> None:
    if _made is not None:
        shutil.rmtree(_made, ignore_errors=True)
