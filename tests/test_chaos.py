"""scripts/chaos.py, shortened: the real stack started with deploy/supervisord.conf (a
private PostgreSQL cluster, a private Redis, Prism, gunicorn and two workers), simulated
calls, and every fault of the full run — Redis killed and back empty, PostgreSQL stopped,
the portal answering 500s, a worker kill -9ed — in a compressed timeline. Nobody helps:
the script itself checks one ticket per call, each SMS once, every process up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.prism
def test_the_stack_recovers_by_itself_from_every_fault() -> None:
    env = {**os.environ, "SHARED_DIR": str(SHARED), "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--calls", "40", "--ramp", "20", "--speed", "0.1",
         "--scale", "0.2", "--recover-seconds", "120", "--max-seconds", "600"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=700,
        check=False,
    )  # fmt: skip
    report = run.stdout[run.stdout.find("=== chaos run ===") :]
    print(report)  # the figures, with -s
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    # What the script promises, as a reader of its figures sees them.
    assert "lost: 0; duplicates: 0" in report
    assert "0 sent twice, 0 not sent, 0 caller SMS still due" in report
    assert "verdict: RECOVERED" in report
    # The faults really happened, through supervisord: the kill -9ed worker came back.
    assert "one worker kill -9ed" in run.stdout
    spawns = re.search(r"'worker-0': (\d+)", report)
    assert spawns is not None and int(spawns.group(1)) >= 2, report
