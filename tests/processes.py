"""Real processes for the fault tests: the service as the Procfile runs it, and the parts
around it that a test can break on purpose.

- `Gunicorn`: the Procfile's `web` line (gunicorn serving `create_app()`), env settings.
- `Worker`: the Procfile's `worker` line (`callcenter worker`, RQ with its scheduler).
- `run_cli(...)`: one `callcenter ...` command, e.g. `outbox flush`.
- `RedisServer`: a PRIVATE `redis-server` on its own free port (never the shared one at
  6379, which other test runs use), that can crash (`kill`: SIGKILL, data lost) and come
  back on the same port.
- `TcpGate`: a TCP proxy in front of PostgreSQL that can cut the database off (connections
  reset, new ones refused) and let it through again.
- `FlakyPortal`: the built-in portal's REST API over real HTTP behind a switch: answer
  normally, answer 500, or do the work and answer only after HttpPortal's timeout.
- `HttpClient`: a `requests` session shaped like Flask's test client, so
  `tests.twilio_requests.TwilioCall` drives a real server over HTTP.
- `wait_until(...)`: polling for a condition with a deadline (never a bare sleep).

Every process is started in its own session (process group) and stopped by its group id,
SIGTERM first, SIGKILL after a grace period; the fixtures that use these stop them in
teardown whatever the test did.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PROCFILE = ROOT / "Procfile"

T = TypeVar("T")


class ProcessFailed(AssertionError):
    """A process the test needs did not start, or died."""


# ---------------------------------------------------------------- small tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "the condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call `condition` until it returns something truthy (returned), or fail after
    `timeout` seconds naming `what` (and `on_timeout()`'s text, e.g. a process log)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may fail until ready
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            extra = "\n" + on_timeout() if on_timeout is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}{extra}")
        time.sleep(interval)


def procfile_command(name: str) -> str:
    """The command of process type `name` in the Procfile."""
    for line in PROCFILE.read_text("utf-8").splitlines():
        kind, sep, command = line.partition(":")
        if sep and kind.strip() == name:
            return command.strip()
    raise KeyError(f"no {name!r} process in {PROCFILE}")


def service_env(**settings: str | None) -> dict[str, str]:
    """The environment a service process runs with: this machine's PATH with the venv
    first, and the given settings (None leaves one out)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "COV_", "HYPOTHESIS"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in settings.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# ---------------------------------------------------------------- managed processes


class ManagedProcess:
    """One command in its own process group, its output in a log file."""

    def __init__(self, name: str, command: str, env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        if self.alive:
            raise ProcessFailed(f"{self.name} is already running")
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {self.command}"],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped with all its children
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def json_lines(self, *, strict: bool = True) -> list[dict[str, Any]]:
        """The log, one JSON object a line (LOG_JSON=1). `strict`: a line that is not JSON
        fails; otherwise such lines (what a library prints past logging) are skipped."""
        records = []
        for number, line in enumerate(self.log_text().splitlines(), start=1):
            if not line.strip() or line.startswith("--- stacks of"):
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if strict:
                    raise AssertionError(
                        f"{self.name} log line {number} is not JSON: {line!r}"
                    ) from None
        return records

    def log_tail(self, chars: int = 4000) -> str:
        return f"--- {self.name} log ({self.log_path}) ---\n" + self.log_text()[-chars:]

    def pause(self) -> None:
        """Freeze the process (SIGSTOP to its group): it notices nothing until `resume`."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    # The signal that asks the process to stop (gunicorn: SIGINT, its quick shutdown).
    stop_signal = signal.SIGTERM

    def stop(self, grace: float = 10.0) -> None:
        """`stop_signal`, then SIGKILL to the group after `grace` seconds; always reaps."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # To the main process only: it stops its own children (gunicorn's workers, RQ's
            # scheduler). Signalling the whole group would hit gunicorn's workers twice
            # (directly and from the master), and its gthread worker's quit handler is not
            # re-entrant: it deadlocks on its own thread pool's lock.
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._dump_stacks()
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Children that outlived their parent (e.g. RQ's scheduler) go with the group.
        self._signal_group(signal.SIGKILL)
        self._close_log()

    def _dump_stacks(self) -> None:
        """Where a process that would not stop is stuck, into its log (with py-spy, if
        installed): a hang on shutdown is a finding, not noise."""
        spy = VENV_BIN / "py-spy"
        if self.proc is None or not spy.exists() or self._log is None:
            return
        group = subprocess.run(
            ["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        for pid in group.stdout.split():
            dump = subprocess.run(
                [str(spy), "dump", "--pid", pid], capture_output=True, text=True, check=False
            )
            self._log.write(f"--- stacks of {pid} (did not stop) ---\n{dump.stdout}".encode())
            self._log.flush()

    def kill(self) -> None:
        """A crash: SIGKILL to the whole group, no clean-up on its side."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Gunicorn(ManagedProcess):
    """The Procfile's `web` process on a free loopback port."""

    # Quick shutdown: a test's last requests are answered by then; no need to wait out
    # idle keep-alive connections as a graceful SIGTERM does.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        workers: int = 2,
        threads: int = 8,
    ) -> None:
        self.port = free_port()
        env = {
            **env,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": str(workers),
            "WEB_THREADS": str(threads),
        }
        super().__init__("gunicorn", procfile_command("web"), env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_and_wait(self, timeout: float = 30.0) -> None:
        self.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            if not self.alive:
                raise ProcessFailed("gunicorn exited")
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200

        wait_until(
            up, timeout=timeout, what="gunicorn to answer /healthz", on_timeout=self.log_tail
        )


class Worker(ManagedProcess):
    """The Procfile's `worker` process (`callcenter worker`)."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        super().__init__("worker", procfile_command("worker"), env, log_path)

    def start_and_wait(self, timeout: float = 30.0) -> None:
        self.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.alive and "Listening on" in self.log_text() or self._died(),
            timeout=timeout,
            what="the RQ worker to listen",
            on_timeout=self.log_tail,
        )

    def _died(self) -> bool:
        if not self.alive:
            raise ProcessFailed("the worker exited:\n" + self.log_tail())
        return False


def run_cli(
    args: Iterable[str], env: Mapping[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`callcenter ARGS` as a real process; its output is returned, never echoed."""
    command = [str(VENV_BIN / "callcenter"), *args]
    return subprocess.run(
        command,
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class RedisServer(ManagedProcess):
    """A private redis-server on its own free port, keeping nothing on disk.

    `kill()` is a crash (SIGKILL): the data set is gone, as after a restart without
    persistence; `start_and_wait()` again brings it back, empty, on the same port.
    """

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        command = " ".join(
            shlex.quote(part)
            for part in (
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--protected-mode",
                "yes",
            )
        )
        super().__init__(
            "redis-server", command, service_env(), directory / f"redis-{self.port}.log"
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        import redis

        conn = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(conn.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            conn.close()

    def start_and_wait(self, timeout: float = 10.0) -> None:
        self.start()
        wait_until(self.ping, timeout=timeout, what="redis-server", on_timeout=self.log_tail)

    def kill(self) -> None:
        super().kill()
        wait_until(lambda: not self.ping(), timeout=5, what="redis-server to be gone")


# ---------------------------------------------------------------- a gate before a database


class TcpGate:
    """A TCP proxy on a free loopback port in front of `target` (host, port).

    - `cut()`: every open connection is reset and new ones are refused — the database
      server went away.
    - `stall()`: nothing moves any more, and new connections are accepted but never
      answered — the server hangs (or the network path drops everything).
    - `restore()`: connections go through again (stalled ones resume).

    One selector thread, no extra processes.
    """

    OPEN, CUT, STALLED = "open", "cut", "stalled"

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._mode = self.OPEN  # what the test asked for
        self._applied = self.OPEN  # what the gate thread has done
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._held: list[socket.socket] = []  # accepted while stalled, never answered
        self._listener: socket.socket | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._listen()
        self._thread = threading.Thread(target=self._run, name="tcp-gate", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _switch(self, mode: str) -> None:
        with self._lock:
            self._mode = mode
        self._wake()
        wait_until(lambda: self._applied == mode, timeout=5, what=f"the gate to be {mode}")

    def cut(self) -> None:
        self._switch(self.CUT)

    def stall(self) -> None:
        self._switch(self.STALLED)

    def restore(self) -> None:
        self._switch(self.OPEN)

    def close(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5)

    def _apply(self, mode: str) -> None:
        """Move the sockets to `mode` (in the gate thread)."""
        if mode == self._applied:
            return
        if self._applied == self.STALLED:
            for sock in self._pairs:
                self._selector.register(sock, selectors.EVENT_READ)
            for sock in self._held:
                self._reset(sock)
            self._held.clear()
        if mode == self.CUT:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._close(sock, reset=True)
        elif mode == self.STALLED:
            for sock in self._pairs:
                self._selector.unregister(sock)
        if mode != self.CUT and self._listener is None:
            self._listen()
        self._applied = mode

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        """Close with RST, as a dying server's kernel does."""
        if sock.fileno() != -1:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def _close(self, sock: socket.socket, *, reset: bool = False) -> None:
        """Close `sock` and its peer."""
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            if s.fileno() == -1:
                continue
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            if reset:
                self._reset(s)
            else:
                s.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._apply(self._mode)
            for key, _mask in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    sock.recv(4096)
                elif sock is self._listener:
                    self._accept()
                elif sock in self._pairs:
                    self._pump(sock)
        with self._lock:
            self._apply(self.CUT)
            for sock in self._held:
                self._reset(sock)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._applied == self.STALLED:
            self._held.append(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(False)
            self._selector.register(s, selectors.EVENT_READ)
        self._pairs[client] = upstream
        self._pairs[upstream] = client

    def _pump(self, sock: socket.socket) -> None:
        peer = self._pairs[sock]
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._close(sock)


# ---------------------------------------------------------------- a portal that misbehaves


class FlakyPortal:
    """The built-in portal's REST API (`portal_app`, a WSGI app) over real HTTP, behind a
    switch (`mode`):

    - "ok": requests go through;
    - "error": every request answers 500 (the portal's app server is failing);
    - "slow": the request is done by the portal, and the answer sent only after `delay`
      seconds — past HttpPortal's read timeout, so the client gives up on a ticket that
      was in fact created (the case the idempotency key exists for).

    `script` overrides the mode for the next ticket creates, one entry each, in order.
    Every ticket create is noted (`creates`: Idempotency-Key and the status answered).
    """

    def __init__(self, portal_app: Any, *, delay: float = 11.0) -> None:
        from werkzeug.serving import make_server

        self.portal_app = portal_app
        self.delay = delay
        self.mode = "ok"
        self.script: list[str] = []
        self.creates: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/portal/api/v1"

    def creates_by_key(self) -> Counter[str]:
        with self._lock:
            return Counter(key for key, _status in self.creates)

    def answered(self, status: int) -> int:
        with self._lock:
            return sum(1 for _key, s in self.creates if s == status)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        is_create = environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].rstrip(
            "/"
        ).endswith("/portal/api/v1/tickets")
        with self._lock:
            mode = self.script.pop(0) if is_create and self.script else self.mode
        key = environ.get("HTTP_IDEMPOTENCY_KEY", "")
        if mode == "error":
            if is_create:
                with self._lock:
                    self.creates.append((key, 500))
            start_response("500 Internal Server Error", [("Content-Type", "text/html")])
            return [b"<html><body>Internal Server Error</body></html>"]
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.portal_app(environ, capture))
        if is_create:
            with self._lock:
                self.creates.append((key, int(captured["status"].split()[0])))
        if mode == "slow":
            # Wait without sleeping blindly: released early when the test ends.
            self._release.wait(self.delay)
        start_response(captured["status"], captured["headers"])
        return [body]

    def release(self) -> None:
        """Send the answers "slow" holds back now (and later ones at once)."""
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------- a real server, test-client shaped


class HttpResponse:
    """A `requests.Response` with the bits of Flask's test response the helpers read."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers = response.headers

    def get_data(self, as_text: bool = False) -> Any:
        return self._response.text if as_text else self._response.content

    def close(self) -> None:
        self._response.close()


class HttpClient:
    """`client.post(path, data=..., headers=...)` against a real server."""

    def __init__(self, base_url: str, timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def post(
        self, path: str, data: Mapping[str, str] | None = None, headers: Any = None
    ) -> HttpResponse:
        response = self.session.post(
            self.base_url + path, data=dict(data or {}), headers=headers, timeout=self.timeout
        )
        return HttpResponse(response)

    def get(self, path: str, headers: Any = None) -> HttpResponse:
        return HttpResponse(
            self.session.get(self.base_url + path, headers=headers, timeout=self.timeout)
        )

    def close(self) -> None:
        self.session.close()


# ---------------------------------------------------------------- the whole service


class ServiceStack:
    """The service as the Procfile runs it — `web` (gunicorn) and `worker` — against one
    PostgreSQL database and a private Redis, with env settings. Stops everything it
    started in `stop()`, whatever state the test left it in.
    """

    def __init__(
        self,
        directory: Path,
        *,
        database_url: str,
        auth_token: str,
        account_sid: str,
        public_base_url: str,
        twilio_api_base_url: str,
        with_redis: bool = True,
        web_workers: int = 2,
        web_threads: int = 8,
        **settings: str | None,
    ) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(directory) if with_redis else None
        self.queue_name = f"cc-faults-{os.getpid()}-{free_port()}"
        self.settings: dict[str, str | None] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis.url if self.redis is not None else None,
            "QUEUE_NAME": self.queue_name,
            "TWILIO_ACCOUNT_SID": account_sid,
            "TWILIO_AUTH_TOKEN": auth_token,
            "PUBLIC_BASE_URL": public_base_url,
            "TWILIO_API_BASE_URL": twilio_api_base_url,
            "CALLCENTER_DATA_DIR": str(self.data_dir),
            "CALLCENTER_ENV": "production",
            "SECRET_KEY": "fault-test-secret-of-forty-characters-long",
            # A person's phone: production refuses one of the hotline's own lines.
            "DUTY_PHONE": "+79110000001",
            "LOG_JSON": "1",
            # Keep a caller on the line no longer than needed in tests that wait for it.
            "TICKET_WAIT_SECONDS": "4",
            **settings,
        }
        self.web = Gunicorn(
            self.env(), directory / "web.log", workers=web_workers, threads=web_threads
        )
        self.worker = Worker(self.env(), directory / "worker.log")

    def env(self, **changes: str | None) -> dict[str, str]:
        return service_env(**{**self.settings, **changes})

    def start(self, *, worker: bool = True) -> ServiceStack:
        if self.redis is not None:
            self.redis.start_and_wait()
        # Both at once: each spends most of its start-up importing the service.
        self.web.start()
        if worker:
            self.worker.start()
        self.web.wait_ready()
        if worker:
            self.worker.wait_ready()
        return self

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run_cli(args, self.env(), timeout=timeout)

    def logs(self) -> str:
        return "\n".join(p.log_tail() for p in (self.web, self.worker, self.redis) if p)

    def stop(self) -> None:
        errors: list[BaseException] = []
        for process in (self.worker, self.web, self.redis):
            if process is None:
                continue
            try:
                process.stop()
            except BaseException as exc:  # noqa: BLE001 - stop the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]


def follow_twiml(call: Any, answers: Iterable[str], *, max_requests: int = 40) -> list[str]:
    """Play a `tests.twilio_requests.TwilioCall` to the end of its TwiML, as Twilio does:
    each `<Gather>` takes the next answer ("keys:2", "say:…", "silence"), `<Record>` is
    recorded, `<Redirect>` followed, `<Hangup>` / `<Dial>` / an empty document end it.
    Returns what the caller heard, reply by reply."""
    pending = list(answers)
    assert call.twiml is not None, "start the call first"
    for _ in range(max_requests):
        root = call.twiml
        tags = [child.tag for child in root]
        if "Gather" in tags:
            answer = pending.pop(0) if pending else "silence"
            kind, _, value = answer.partition(":")
            if kind == "keys":
                call.press(value)
            elif kind == "say":
                call.say(value)
            elif "Redirect" in tags:
                call.silence()
            else:
                return call.heard  # type: ignore[no-any-return]
        elif "Record" in tags:
            call.record()
        elif tags and tags[-1] == "Redirect":
            call.follow_redirect()
        else:
            return call.heard  # type: ignore[no-any-return]
    raise AssertionError(f"more than {max_requests} requests in one call: a loop?")
