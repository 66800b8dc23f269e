"""`callcenter.jobs.worker`: the rq internals it overrides are still what it was written
against, and its wait for a Redis that is away.

pyproject pins rq to a range; this fails loudly, naming the method or attribute, when an rq
release inside or outside that range renames, drops or re-shapes one of them — before a
worker that silently stopped heartbeating, handing jobs their Services, or riding out a
Redis outage reaches production.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

from callcenter.jobs.worker import (
    RQ_INTERNALS,
    RQ_OTHER_PARTS,
    PipelineWorker,
    RedisWatch,
    ServicesJob,
    release_dead_schedulers,
)
from tests.processes import ROOT, RedisServer, wait_until


def _shape(func: Callable[..., Any]) -> str:
    """`name(a, b=None)`: the parameter names and defaults, as RQ_INTERNALS writes them."""
    params = [
        p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
        for p in inspect.signature(func).parameters.values()
    ]
    return f"{func.__name__}({', '.join(params)})"


def _resolve(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    found: type = getattr(importlib.import_module(module), name)
    return found


def test_the_installed_rq_is_the_pinned_one() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    [pin] = [d for d in pyproject["project"]["dependencies"] if d.startswith("rq")]
    assert pin == "rq>=3.0,<3.1"
    major, minor, *_ = (int(part) for part in version("rq").split(".")[:2])
    assert (major, minor) == (3, 0), f"rq {version('rq')} is outside the pin {pin}"


def test_the_methods_the_worker_overrides_keep_their_signatures() -> None:
    for dotted, names in RQ_INTERNALS.items():
        cls = _resolve(dotted)
        for entry in names:
            if "(" not in entry:
                continue
            name = entry.split("(", 1)[0]
            method = getattr(cls, name, None)
            assert method is not None, f"rq's {dotted}.{name} is gone"
            assert _shape(method) == entry, f"rq's {dotted}.{name} changed: {_shape(method)}"


def test_the_attributes_the_worker_reads_are_still_there() -> None:
    # An instance, never connected: RQ sets most of these in __init__.
    connection = Redis(host="127.0.0.1", port=1)
    queue = Queue("rq-internals-probe", connection=connection)
    worker = PipelineWorker([queue], services=None, connection=connection, prepare_for_work=False)
    job = ServicesJob.create("callcenter.jobs.tasks.sweep_outbox", connection=connection)
    instances: dict[str, object] = {"rq.job.Job": job, "rq.worker.SimpleWorker": worker}
    for dotted, names in RQ_INTERNALS.items():
        for name in (n for n in names if "(" not in n):
            assert hasattr(instances[dotted], name), f"rq's {dotted} has no {name} any more"


def test_the_worker_really_overrides_them() -> None:
    # A typo in an override's name would leave RQ's own method in place, silently.
    for dotted, names in RQ_INTERNALS.items():
        mine = ServicesJob if dotted == "rq.job.Job" else PipelineWorker
        overridden = {n.split("(", 1)[0] for n in names if "(" in n} - {"get_state"}
        for name in overridden:
            assert name in vars(mine), f"{mine.__name__} does not override {name}"


@pytest.mark.redis
def test_the_worker_says_once_per_change_that_redis_is_lost_still_away_and_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`RedisWatch`, the worker's wait for Redis, against a real redis-server that is not
    there yet: one "lost", a "still away" per period (here shortened), one "back"."""
    server = RedisServer(tmp_path)
    connection = Redis.from_url(server.url, socket_connect_timeout=0.5)
    watch = RedisWatch(connection, max_pause=0.2, still_away_seconds=0.5)
    caplog.set_level(logging.INFO, logger="callcenter.jobs.worker")
    waiting = threading.Thread(target=watch.wait_until_up)
    try:
        waiting.start()

        def states() -> list[str]:
            return [r.getMessage().split(" (")[0].split(" after ")[0] for r in caplog.records]

        wait_until(lambda: states().count("Redis still away") >= 2, timeout=30, what="two")
        assert waiting.is_alive()
        server.start_and_wait()
        waiting.join(timeout=30)
        assert not waiting.is_alive()
    finally:
        server.stop()
        connection.close()
    seen = states()
    assert seen[0] == "Redis lost" and seen[-1] == "Redis is back", seen
    assert set(seen[1:-1]) == {"Redis still away"}, seen
    assert watch.away_since is None


def test_the_other_rq_parts_relied_on_are_still_there() -> None:
    for entry in RQ_OTHER_PARTS:
        dotted = entry.split("(", 1)[0]
        module, _, name = dotted.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), name)
        except ImportError:  # a class's method: rq.scheduler.RQScheduler.get_locking_key
            owner, _, cls = module.rpartition(".")
            found = getattr(getattr(importlib.import_module(owner), cls), name)
        if "(" in entry:
            assert _shape(found) == entry.rpartition(".")[2], f"rq's {dotted} changed"
        else:
            assert isinstance(found, str | property), f"rq's {dotted} changed"


# What RQ runs in the process it forks for a worker's scheduler (`rq.scheduler.run`):
# take the queue's lock, then `work()` (register, refresh the lock, move due jobs).
SCHEDULER = """
import sys
from redis import Redis
from rq.scheduler import RQScheduler
scheduler = RQScheduler(["tickets"], connection=Redis.from_url(sys.argv[1]))
assert scheduler.acquire_locks() == {"tickets"}
scheduler.work()
"""


@pytest.mark.redis
def test_a_scheduler_killed_with_its_worker_has_its_lock_freed_at_once(tmp_path: Path) -> None:
    """Without this, RQ's lock outlives the killed scheduler by 61 s and nobody moves the
    sweep onto the queue meanwhile."""
    server = RedisServer(tmp_path)
    server.start_and_wait()
    connection = Redis.from_url(server.url)
    lock = RQScheduler.get_locking_key("tickets")
    scheduler = subprocess.Popen([sys.executable, "-c", SCHEDULER, server.url])
    try:

        def holder() -> Any:
            return connection.get(lock)

        def registered() -> Any:
            return connection.hget(SCHEDULER_KEY_TEMPLATE % (holder() or b"").decode(), "pid")

        wait_until(lambda: registered() == str(scheduler.pid).encode(), timeout=30, what="up")
        # Alive: its lock stays its own.
        assert release_dead_schedulers(connection, ["tickets", "followups"]) == []
        assert holder() is not None

        os.kill(scheduler.pid, signal.SIGKILL)
        scheduler.wait(timeout=30)
        assert holder() is not None and connection.ttl(lock) > 30  # RQ's TTL: ~61 s
        assert release_dead_schedulers(connection, ["tickets", "followups"]) == ["tickets"]
        assert holder() is None
        assert RQScheduler(["tickets"], connection=connection).acquire_locks() == {"tickets"}
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait(timeout=30)
        server.stop()
        connection.close()


@pytest.mark.redis
def test_a_scheduler_on_another_host_is_left_to_its_lock_s_ttl(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start_and_wait()
    connection = Redis.from_url(server.url)
    try:
        # As RQ records a scheduler of another machine that holds the lock (its pid may
        # be any process's here).
        lock = RQScheduler.get_locking_key("tickets")
        connection.set(lock, "elsewhere-1", ex=61)
        connection.hset(
            SCHEDULER_KEY_TEMPLATE % "elsewhere-1",
            mapping={"hostname": "not-" + socket.gethostname(), "pid": str(2**22 + 1)},
        )
        assert release_dead_schedulers(connection, ["tickets"]) == []
        assert connection.get(lock) == b"elsewhere-1"
    finally:
        server.stop()
        connection.close()
