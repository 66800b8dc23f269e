"""The ways the service is run, as shipped and documented: the systemd units in deploy/
(checked by systemd's own `systemd-analyze verify`), the supervisord and systemd web
commands against the Procfile's, and the README's honcho lines run exactly as written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from configparser import RawConfigParser
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, inspect, text

from tests.conftest import PG_ADMIN_URL
from tests.processes import RedisServer, free_port, procfile_command, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = ("callcenter-release.service", "callcenter-web.service", "callcenter-worker.service")
INSTALL_DIR = "/srv/callcenter"  # where the units expect the checkout

# The values the README's honcho lines export; a test run points them at its own servers.
README_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/callcenter"
README_REDIS_URL = "redis://127.0.0.1:6379/0"


def unit_sections(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# ---------------------------------------------------------------- systemd


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own check (syntax, known keys, executables that exist), with the units
    pointed at this checkout instead of /srv/callcenter."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: scripts/test.sh installs Debian's systemd")
    for name in UNITS:
        unit = (DEPLOY / name).read_text("utf-8")
        assert INSTALL_DIR in unit
        (tmp_path / name).write_text(unit.replace(INSTALL_DIR, str(ROOT)), "utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    # A warning (an unknown key, a bad value) exits 0 too: it must not be there either.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit whose program is missing does not pass."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: scripts/test.sh installs Debian's systemd")
    unit = (DEPLOY / "callcenter-worker.service").read_text("utf-8")
    broken = tmp_path / "callcenter-worker.service"
    broken.write_text(unit.replace(INSTALL_DIR, str(tmp_path / "nowhere")), "utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(broken)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_systemd_restarts_each_process_and_never_ties_the_web_to_the_worker() -> None:
    web = unit_sections("callcenter-web.service")
    worker = unit_sections("callcenter-worker.service")
    release = unit_sections("callcenter-release.service")
    for unit in (web, worker):
        assert unit["Service"]["Restart"] == ["always"]
        assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]  # never gives up
        assert "callcenter-release.service" in unit["Unit"]["After"][0].split()
    # Wants, not Requires/BindsTo/PartOf: neither the worker nor a failed release stops
    # the web.
    binding = ("Requires", "BindsTo", "PartOf", "Requisite")
    for key in binding:
        assert key not in web["Unit"]
        assert key not in worker["Unit"]
    assert "callcenter-worker.service" not in " ".join(sum(web["Unit"].values(), []))
    assert release["Service"]["Type"] == ["oneshot"]
    assert release["Service"]["ExecStart"] == [f"{INSTALL_DIR}/.venv/bin/callcenter db upgrade"]
    assert worker["Service"]["ExecStart"] == [f"{INSTALL_DIR}/.venv/bin/callcenter worker"]


def _gunicorn_args(command: str) -> list[str]:
    """gunicorn's arguments with the environment's defaults spelt out: `${X:-d}` and
    `${X}` both become `$X`, the program path its name."""
    command = re.sub(r"\$\{(\w+)(:-[^}]*)?\}", r"$\1", command)
    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if w.endswith("gunicorn"))
    return ["gunicorn", *words[start + 1 :]]


def test_supervisord_and_systemd_run_the_procfiles_web_command() -> None:
    procfile = _gunicorn_args(procfile_command("web"))
    systemd = _gunicorn_args(unit_sections("callcenter-web.service")["Service"]["ExecStart"][0])
    config = RawConfigParser()
    config.read(DEPLOY / "supervisord.conf", encoding="utf-8")
    supervisord = config.get("program:web", "command")
    inner = shlex.split(supervisord)[2]  # /bin/sh -c '<this>' %(here)s/..
    assert systemd == procfile
    assert _gunicorn_args(inner.replace('"$0/.venv/bin/gunicorn"', "gunicorn")) == procfile
    assert config.get("program:worker", "command").endswith("/.venv/bin/callcenter worker")
    assert procfile_command("worker") == "callcenter worker"


# ---------------------------------------------------------------- the README's honcho lines


def readme_honcho_lines() -> list[str]:
    """The README's honcho block: the indented lines around `honcho start web worker`."""
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("honcho start"))
    start = at
    while start > 0 and lines[start - 1].startswith("    "):
        start -= 1
    end = at
    while end + 1 < len(lines) and lines[end + 1].startswith("    "):
        end += 1
    block = [line[4:] for line in lines[start : end + 1]]
    return [line for line in block if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = f"cc_honcho_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def shell_env(tmp_path: Path, port: int) -> dict[str, str]:
    """A shell without the virtualenv: no VIRTUAL_ENV, no .venv/bin on PATH."""
    venv_bin = str(ROOT / ".venv" / "bin")
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        PATH=path,
        PORT=str(port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="1",
        WEB_THREADS="4",
        CALLCENTER_DATA_DIR=str(tmp_path / "var"),
        QUEUE_NAME=f"cc-honcho-{uuid.uuid4().hex[:8]}",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.postgres
@pytest.mark.redis
def test_the_readme_honcho_lines_run_as_written(tmp_path: Path, empty_database: str) -> None:
    lines = readme_honcho_lines()
    assert lines[-1].startswith("honcho start web worker")
    assert any(README_DATABASE_URL in line and README_REDIS_URL in line for line in lines)
    assert shutil.which("honcho", path=shell_env(tmp_path, 0)["PATH"]) is None
    redis = RedisServer(tmp_path)
    redis.start_and_wait()
    port = free_port()
    env = shell_env(tmp_path, port)
    # The documented servers are this run's own; every other word is the README's.
    script = "\n".join(
        line.replace(README_DATABASE_URL, empty_database).replace(README_REDIS_URL, redis.url)
        for line in lines
    )
    setup = "\n".join(script.splitlines()[:-1])
    log = (tmp_path / "honcho.log").open("w")
    honcho: subprocess.Popen[str] | None = None
    try:
        # The release step, with a virtualenv activated as well as without.
        for prelude in ("", ". .venv/bin/activate\n"):
            done = subprocess.run(
                ["bash", "-euc", prelude + setup],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert "database at head" in done.stdout
        engine = create_engine(empty_database)
        assert {"calls", "ticket_requests", "alembic_version"} <= set(
            inspect(engine).get_table_names()
        )
        engine.dispose()

        honcho = subprocess.Popen(
            ["bash", "-euc", script],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output = tmp_path / "honcho.log"

        def both_up() -> bool:
            assert honcho is not None and honcho.poll() is None, output.read_text()
            listening = "Listening on" in output.read_text()
            return listening and requests.get(f"http://127.0.0.1:{port}/healthz").ok

        wait_until(both_up, timeout=90, interval=0.2, what="web and worker under honcho")
        assert "not found" not in output.read_text()

        # What the README warns about: one process gone, honcho stops them all.
        # honcho's pid is the shell running the Procfile line; the worker is its child and
        # RQ's scheduler the worker's (holding honcho's pipe open): the whole tree dies.
        tree = re.findall(r"worker\.1 started \(pid=(\d+)\)", output.read_text())
        for pid in tree:
            tree += subprocess.run(
                ["pgrep", "-P", pid], capture_output=True, text=True, check=False
            ).stdout.split()
        for pid in tree:
            os.kill(int(pid), signal.SIGKILL)
        wait_until(
            lambda: honcho is not None and honcho.poll() is not None,
            timeout=60,
            what="honcho to stop everything",
            on_timeout=output.read_text,
        )

        def web_gone() -> bool:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except requests.ConnectionError:
                return True
            return False

        wait_until(web_gone, timeout=30, what="the web to be stopped with the worker")
    finally:
        if honcho is not None and honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGTERM)
            try:
                honcho.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait(timeout=10)
        log.close()
        redis.stop()
