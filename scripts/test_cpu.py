#!/usr/bin/env python3
"""Benchmark (not a test): where the test suite's CPU goes, by process.

    .venv/bin/python scripts/test_cpu.py [pytest arguments, e.g. -q -p no:randomly]

Runs `scripts/test.sh` with every Python process it starts — the pytest-xdist processes and
each service process the tests start (gunicorn's master and workers, RQ workers, the
`callcenter` command, supervisord, helper scripts) — writing its own CPU time (user +
system, `getrusage`) to a log when it exits, through a `sitecustomize` module put first on
`PYTHONPATH` for this run only. Then prints the CPU by kind of process, the wall time, and
the share of the two kinds (test processes, service processes).

A process killed by a signal it does not handle (SIGKILL: the fault tests kill workers on
purpose) writes nothing: the figures are a lower bound for those kinds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SITECUSTOMIZE = """
import atexit, os, resource, sys

def _log_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    line = "\\t".join((
        f"{usage.ru_utime + usage.ru_stime:.3f}",
        os.environ.get("PYTEST_XDIST_WORKER", ""),
        " ".join(sys.argv)[:300].replace("\\t", " ").replace("\\n", " "),
    ))
    try:
        with open(os.environ["CALLCENTER_CPU_LOG"], "a", encoding="utf-8") as log:
            log.write(line + "\\n")
    except OSError:
        pass

atexit.register(_log_cpu)
"""


def kind_of(worker: str, argv: str) -> str:
    """A process's kind: its command without the arguments that change per test."""
    words = argv.split()
    if not words:
        return "python -c / stdin"
    if worker and words[0] == "-c":
        return "pytest-xdist test process"
    program = Path(words[0]).name
    if program in ("callcenter", "supervisorctl", "honcho") and len(words) > 1:
        sub = [w for w in words[1:3] if not w.startswith("-") and "/" not in w]
        return " ".join([program, *sub])
    return program


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cc-test-cpu-") as tmp:
        Path(tmp, "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        log = Path(tmp, "cpu.log")
        env = dict(os.environ, CALLCENTER_CPU_LOG=str(log))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH")]))
        started = time.perf_counter()
        code = subprocess.call([str(ROOT / "scripts" / "test.sh"), *sys.argv[1:]], env=env)
        wall = time.perf_counter() - started
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for line in lines:
        cpu, worker, argv = (line.split("\t") + ["", ""])[:3]
        kind = kind_of(worker, argv)
        seconds[kind] += float(cpu)
        counts[kind] += 1
    total = sum(seconds.values())
    tests = seconds.get("pytest-xdist test process", 0.0)
    print(f"\nscripts/test.sh exit code {code}; wall {wall:.0f} s (setup included)")
    print(f"CPU of every Python process that exited: {total:.0f} s")
    print(f"  test processes {tests:.0f} s; service and helper processes {total - tests:.0f} s")
    for kind in sorted(seconds, key=seconds.__getitem__, reverse=True):
        mean = seconds[kind] / counts[kind]
        print(f"  {seconds[kind]:7.1f} s  {counts[kind]:4d} × {mean:5.2f} s  {kind}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
