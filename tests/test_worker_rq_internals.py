"""The rq internals `callcenter.jobs.worker` overrides are still what it was written against.

pyproject pins rq to a range; this fails loudly, naming the method or attribute, when an rq
release inside or outside that range renames, drops or re-shapes one of them — before a
worker that silently stopped heartbeating, handing jobs their Services, or riding out a
Redis outage reaches production.
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from redis import Redis
from rq import Queue

from callcenter.jobs.worker import RQ_INTERNALS, PipelineWorker, ServicesJob
from tests.processes import ROOT


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
