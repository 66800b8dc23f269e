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

Bind address, workers, threads and timeouts stay on the Procfile's command line.
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
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    server.log.info("metrics: worker %s gone, its counts stay", worker.pid)


def on_exit(server: Any) -> None:
    if _made is not None:
        shutil.rmtree(_made, ignore_errors=True)
