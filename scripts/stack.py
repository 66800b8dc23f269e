#!/usr/bin/env python3
"""The real stack for the benchmark-style runs (scripts/chaos.py, scripts/surge.py): the
service started the documented way, with private dependencies, and stopped whatever
happens.

`SupervisedStack` starts, all on 127.0.0.1, in a temp dir:
  - a private PostgreSQL cluster (`initdb` there, its own port: stopping it touches nothing
    else; run as the `postgres` user when this runs as root) and a private redis-server;
  - Prism serving Twilio's OpenAPI description (`.cache/prism`, as scripts/test.sh
    installs it), behind a counting proxy: every SMS the service sends is seen
    (`sms_at_prism`), and Twilio's message list answers what was sent (`MessageMemory`);
  - the portal: the service's own built-in portal API, reached directly or, with
    `portal_proxy=True`, through a proxy that can be switched to answer 500s;
  - the service itself with `supervisord -n -c deploy/supervisord.conf`: the release step,
    gunicorn and two workers, exactly as the README's production section runs it.

    with SupervisedStack("cc-run-", settings={"QUEUE_NAME": "cc-run"}) as stack:
        stack.cli_or_exit("roster", "import", "scripts/examples/roster.yaml")
        stack.wait_ready()
        ...  # stack.base_url, stack.pg, stack.redis, stack.prism, stack.service

The pieces (`PostgresCluster`, `RedisServer`, `Proxy`, `Supervised`, ...) are the faults'
handles: a run kills, stops and switches them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
SUPERVISORD_CONF = ROOT / "deploy" / "supervisord.conf"
PRISM_BIN = ROOT / ".cache" / "prism" / "node_modules" / ".bin" / "prism"
SHARED = Path(os.environ.get("SHARED_DIR") or ROOT.parent / "shared")
TWILIO_SPEC = SHARED / "twilio" / "twilio_api_v2010.json"

sys.path.insert(0, str(ROOT / "scripts"))
import load_calls  # noqa: E402 - the callers' account, token and public URL

# ---------------------------------------------------------------- small tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not come up within {timeout} s")


def log(message: str, started: float | None = None) -> None:
    stamp = f"[{time.monotonic() - started:6.1f} s] " if started is not None else ""
    print(stamp + message, flush=True)


class Process:
    """A command in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """A crash: SIGKILL to the group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, grace: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


# ---------------------------------------------------------------- the dependencies


class PostgresCluster:
    """A private cluster: `initdb` in `directory`, its own port, trust auth on loopback."""

    def __init__(self, directory: Path) -> None:
        self.data = directory / "pg"
        self.port = free_port()
        self.log_path = directory / "postgresql.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data.mkdir()
        if self._as:
            shutil.chown(self.data, "postgres")
            self.log_path.touch()
            shutil.chown(self.log_path, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{argv[0]} failed:\n{done.stdout}{done.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/callcenter"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            "-c max_connections=200 -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                  "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(
            self.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE callcenter"))
        admin.dispose()


class RedisServer(Process):
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
        super().__init__("redis", argv, directory / "redis.log", dict(os.environ))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start_and_wait(self) -> None:
        self.start()

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        wait_for("redis-server", up, 15)


# What a proxy may do to an answer on its way back: (method, path, request body, status,
# content) → (status, content).
Rewrite = Callable[[str, str, bytes, int, bytes], tuple[int, bytes]]


class Proxy(load_calls.LoopbackServer):
    """A reverse proxy to `target` on a free loopback port. `failing`: every request
    answers 500 instead. `seen` keeps (method, path, form body) of what went through;
    `rewrite` may change each answer (see `MessageMemory`)."""

    def __init__(self, target: str, *, rewrite: Rewrite | None = None) -> None:
        self.target = target.rstrip("/")
        self.failing = False
        self.seen: list[tuple[str, str, bytes, int]] = []
        self.lock = threading.Lock()
        proxy = self
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.failing:
                    status, content, ctype = 500, b"<html>Internal Server Error</html>", "text/html"
                else:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("host", "content-length", "connection")
                    }
                    try:
                        upstream = session.request(
                            self.command, proxy.target + self.path, data=body,
                            headers=headers, timeout=30,
                        )  # fmt: skip
                        status, content = upstream.status_code, upstream.content
                        ctype = upstream.headers.get("Content-Type", "application/json")
                    except requests.RequestException:
                        status, content, ctype = 502, b"bad gateway", "text/plain"
                    if rewrite is not None:
                        status, content = rewrite(self.command, self.path, body, status, content)
                with proxy.lock:
                    proxy.seen.append((self.command, self.path, body, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        self.serve(Handler)


def _listed_time(message: dict[str, Any]) -> datetime:
    """When a listed message was sent; one never sent first (where Twilio puts those is
    not documented)."""
    sent = message.get("date_sent")
    return parsedate_to_datetime(sent) if sent else datetime.max.replace(tzinfo=UTC)


class MessageMemory:
    """What Prism cannot do, for a `Proxy` in front of it: remember the SMS created.

    Prism answers from the examples in Twilio's OpenAPI description, statelessly: every
    created Message has the example's SID, and the Message list answers the same example
    messages whatever was sent. Twilio gives each Message its own SID and lists the
    messages the account created
    (https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources).
    This rewrite does the same with Prism's own answers (so every request is still checked
    against the description): a create's answer gets a new SID and the time it was made
    (created and sent), and the list's answer carries, instead of the examples, the
    messages created to its `To` filter, newest sent first, each shaped as Prism's example
    message, `PageSize` a page (50 unless asked), with a `next_page_uri` while there are
    more.
    """

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(
        self, method: str, path: str, body: bytes, status: int, content: bytes
    ) -> tuple[int, bytes]:
        where = urlsplit(path)
        if not where.path.endswith("/Messages.json") or status >= 300:
            return status, content
        answer = json.loads(content)
        if method == "POST":
            form = parse_qs(body.decode())
            answer.update(
                sid="SM" + secrets.token_hex(16),
                to=form.get("To", [""])[0],
                body=form.get("Body", [""])[0],
                direction="outbound-api",
                date_created=format_datetime(datetime.now(UTC), usegmt=True),
            )
            answer["date_sent"] = answer["date_created"]  # sent at once, as a test SMS is
            with self.lock:
                self.created.append(answer)
        elif method == "GET":
            query = {name: values[0] for name, values in parse_qs(where.query).items()}
            to = query.get("To")
            with self.lock:
                listed = [m for m in reversed(self.created) if to is None or m["to"] == to]
            # Newest first by the time sent, as Twilio lists them.
            listed.sort(key=_listed_time, reverse=True)
            size, number = int(query.get("PageSize", 50)), int(query.get("Page", 0))
            more = len(listed) > (number + 1) * size
            query.update(Page=str(number + 1), PageSize=str(size))
            answer.update(
                messages=listed[number * size : (number + 1) * size],
                page=number,
                page_size=size,
                next_page_uri=f"{where.path}?{urlencode(query)}" if more else None,
            )
        return status, json.dumps(answer).encode()


# ---------------------------------------------------------------- the service, supervised


class Supervised:
    """`supervisord -n -c deploy/supervisord.conf` with the run's settings."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.env = env
        self.data_dir = Path(env["CALLCENTER_DATA_DIR"])
        self.process = Process(
            "supervisord",
            [str(VENV_BIN / "supervisord"), "-n", "-c", str(SUPERVISORD_CONF)],
            directory / "supervisord.out",
            env,
        )

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(SUPERVISORD_CONF), *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return done.stdout

    def states(self) -> dict[str, str]:
        states = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0]] = parts[1]
        return states

    def pid(self, name: str) -> int:
        return int(self.ctl("pid", name).strip())


# ---------------------------------------------------------------- health and SMS


def sms_at_prism(prism: Proxy) -> list[tuple[str, str]]:
    sent = []
    with prism.lock:
        seen = list(prism.seen)
    for method, path, body, status in seen:
        if method == "POST" and path.endswith("/Messages.json") and status < 300:
            form = parse_qs(body.decode())
            sent.append((form.get("To", [""])[0], form.get("Body", [""])[0]))
    return sent


def healthy(service: Supervised, base_url: str) -> bool:
    states = service.states()
    running = all(
        states.get(name) == "RUNNING" for name in ("web", "worker:worker-0", "worker:worker-1")
    )
    return running and requests.get(base_url + "/readyz", timeout=5).status_code == 200


def healthy_or_empty_roster(service: Supervised, base_url: str) -> bool:
    """Web and workers up (/readyz may still say 503 for the empty roster)."""
    states = service.states()
    running = all(states.get(n) == "RUNNING" for n in ("web", "worker:worker-0", "worker:worker-1"))
    return running and requests.get(base_url + "/healthz", timeout=5).status_code == 200


# ---------------------------------------------------------------- the whole stack


def require_prism(parser: argparse.ArgumentParser) -> None:
    if not TWILIO_SPEC.is_file() or not PRISM_BIN.exists():
        parser.error(f"needs Prism ({PRISM_BIN}) and {TWILIO_SPEC}: run scripts/test.sh once, "
                     "set SHARED_DIR")  # fmt: skip


class SupervisedStack:
    """The service under supervisord and its private dependencies (module docstring).
    `settings`: environment for the service on top of the common ones (QUEUE_NAME,
    INCIDENT_THRESHOLD, ...). `stop()` (or leaving the `with` block) stops everything it
    started and removes the temp dir unless `keep_logs`."""

    def __init__(
        self,
        prefix: str,
        *,
        settings: Mapping[str, str],
        portal_proxy: bool = False,
        keep_logs: bool = False,
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.directory.chmod(0o755)  # the postgres user reaches its cluster inside
        self.settings = dict(settings)
        self.portal_proxy = portal_proxy
        self.keep_logs = keep_logs
        self.pg: PostgresCluster | None = None
        self.redis: RedisServer | None = None
        self.prism_process: Process | None = None
        self.proxies: list[Proxy] = []
        self.prism: Proxy | None = None
        self.portal: Proxy | None = None
        self.service: Supervised | None = None
        self.env: dict[str, str] = {}
        self.base_url = ""

    def __enter__(self) -> SupervisedStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> SupervisedStack:
        directory = self.directory
        self.pg = PostgresCluster(directory)
        self.pg.start()
        self.pg.create_database()
        self.redis = RedisServer(directory)
        self.redis.start_and_wait()
        prism_port = free_port()
        self.prism_process = Process(
            "prism",
            [str(PRISM_BIN), "mock", "-h", "127.0.0.1", "-p", str(prism_port), str(TWILIO_SPEC)],
            directory / "prism.log",
            dict(os.environ),
        )
        self.prism_process.start()
        wait_for(
            "Prism", lambda: "Prism is listening" in (directory / "prism.log").read_text(), 240
        )
        self.prism = Proxy(f"http://127.0.0.1:{prism_port}", rewrite=MessageMemory())
        self.proxies.append(self.prism)
        web_port = free_port()
        self.base_url = f"http://127.0.0.1:{web_port}"
        portal_base = self.base_url
        if self.portal_proxy:
            self.portal = Proxy(self.base_url)
            self.proxies.append(self.portal)
            portal_base = self.portal.url
        # Production refuses secrets shorter than 32 characters (settings.MIN_SECRET_LENGTH).
        portal_token = secrets.token_urlsafe(32)
        self.env = {
            **os.environ,
            "CALLCENTER_ENV": "production",
            "CALLCENTER_DATA_DIR": str(directory / "data"),
            "DATABASE_URL": self.pg.url,
            "REDIS_URL": self.redis.url,
            "TWILIO_ACCOUNT_SID": load_calls.ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": load_calls.AUTH_TOKEN,
            "TWILIO_API_BASE_URL": self.prism.url,
            "PUBLIC_BASE_URL": load_calls.PUBLIC,
            # The callers reach gunicorn directly: no proxy's X-Forwarded-* is believed.
            "TRUSTED_PROXIES": "0",
            # A person's phone, never one of the hotline's own lines (production refuses those).
            "DUTY_PHONE": "+79110000001",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "PORTAL_URL": portal_base + "/portal/api/v1",
            "PORTAL_TOKEN": portal_token,
            "BUILTIN_PORTAL_TOKEN": portal_token,
            "LOG_JSON": "1",
            "HOST": "127.0.0.1",
            "PORT": str(web_port),
            "WEB_CONCURRENCY": "2",
            "WEB_THREADS": "8",
            **self.settings,
        }
        (directory / "data").mkdir()
        service = self.service = Supervised(directory, self.env)
        service.process.start()
        base_url = self.base_url
        wait_for(
            "the release step, web and workers",
            lambda: healthy_or_empty_roster(service, base_url),
            120,
        )
        return self

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`callcenter ...` with the service's settings."""
        return subprocess.run(
            [str(VENV_BIN / "callcenter"), *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip

    def cli_or_exit(self, *args: str) -> str:
        done = self.cli(*args)
        if done.returncode != 0:
            raise SystemExit(f"callcenter {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def wait_ready(self, timeout: float = 60) -> None:
        """/readyz 200 and every supervised process RUNNING (the roster is in)."""
        service, base_url = self.service, self.base_url
        assert service is not None
        wait_for("/readyz", lambda: healthy(service, base_url), timeout)

    def stop(self) -> None:
        if self.service is not None:
            self.service.process.stop(grace=60)
        for proxy in self.proxies:
            proxy.close()
        if self.prism_process is not None:
            self.prism_process.stop(grace=10)
        if self.redis is not None:
            self.redis.stop(grace=5)
        if self.pg is not None:
            try:
                self.pg.stop("immediate")
            except SystemExit:
                pass  # already stopped
        if self.keep_logs:
            print(f"logs kept in {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)
