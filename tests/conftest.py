"""Shared fixtures: real SQLite and PostgreSQL, real Redis, the app built from test settings.

Which database a test gets (`database_url`, parametrized here and nowhere else):

- SQLite, by default: what a test specifies does not depend on the dialect.
- SQLite and PostgreSQL, for tests marked `both_databases` (a module's `pytestmark`, or a
  test's own mark): where the two dialects run different SQL or behave differently —
  row locks and concurrent writers, ON CONFLICT inserts, JSON columns, NUL bytes, Cyrillic
  case folding, the call log's streamed export. When in doubt, a test is marked.
- PostgreSQL only, for tests marked `postgres` (the fault tests, the database deadline).

Every test that runs on PostgreSQL carries the `postgres` mark, so `-m "not postgres"` runs
without the server. `--all-databases` runs every database test on both, as a check that
nothing dialect-dependent hides in an unmarked test.

Each pytest run gets its own PostgreSQL database and its own RQ queue names, so concurrent
runs never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

import callcenter.db.models  # noqa: F401
from callcenter.access import users
from callcenter.clock import Clock, fixed_clock
from callcenter.db import Base
from callcenter.services import Services
from callcenter.settings import Settings
from tests.job_runner import SynchronousJobRunner

if TYPE_CHECKING:
    from tests.processes import ServiceStack, TcpGate

# Fixtures kept in a helper module next to the helpers they go with, for every test module
# that asks for them (`exchanges`, `hotline`, `misbehaving`); a module's own fixture of the
# name wins.
pytest_plugins = ["tests.incident_helpers", "tests.misbehaving_portal"]

ROOT = Path(__file__).resolve().parent.parent
# The customer's shared, read-only folder (Twilio's OpenAPI description, the regulation):
# next to the checkout, or where SHARED_DIR says (scripts/test.sh finds it for a clone).
SHARED = Path(os.environ.get("SHARED_DIR") or ROOT.parent / "shared")
TWILIO_SPEC = SHARED / "twilio" / "twilio_api_v2010.json"

PG_ADMIN_URL = os.environ.get(
    "TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# A valid-looking account for Prism (^AC[0-9a-fA-F]{32}$) and a token for signatures.
TEST_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TEST_AUTH_TOKEN = "test-auth-token-0123456789"
TEST_PUBLIC_BASE = "https://hotline.example.test"
# The on-duty phone of the test settings: a person's mobile, not one of the hotline's lines.
TEST_DUTY_PHONE = "+79990000077"


# Console users' passwords are hashed with the real scrypt at a lower work factor in this
# process (N=2^12 instead of werkzeug's 2^15: ~10 ms instead of ~110 ms of CPU a hash or a
# login), as test settings commonly do: a few hundred hashes and logins per run would
# otherwise cost about a minute of CPU. The service's processes the tests start keep the
# default; test_users checks the stored hash is scrypt.
FAST_PASSWORD_METHOD = "scrypt:4096:8:1"


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    saved = users.PASSWORD_METHOD
    users.PASSWORD_METHOD = FAST_PASSWORD_METHOD
    users._dummy_hash.cache_clear()
    yield
    users.PASSWORD_METHOD = saved
    users._dummy_hash.cache_clear()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this pytest run, dropped at the end."""
    name = f"cc_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database with every table, copied for each test (faster than DDL)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    return path


_pg_engines: dict[str, Any] = {}


def _truncate_all(url: str) -> None:
    """Empty every table and restart its ids. DELETE beats TRUNCATE on tiny tables:
    TRUNCATE pays a fixed cost per table (new files, locks) that dominates here."""
    engine = _pg_engines.get(url)
    if engine is None:
        engine = _pg_engines[url] = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        for (seq,) in conn.execute(text("SELECT sequence_name FROM information_schema.sequences")):
            conn.execute(text(f'ALTER SEQUENCE "{seq}" RESTART WITH 1'))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-databases",
        action="store_true",
        help="run every database test on SQLite and on PostgreSQL, not only the marked ones",
    )


# ---------------------------------------------------------------- the slow tests first

# How long each test took last time (setup + call + teardown, seconds), in pytest's cache
# (.pytest_cache): the next run starts the slow ones first.
DURATIONS_KEY = "callcenter/durations"
# Slower than this: started first, longest first.
SLOW_TEST_SECONDS = 2.0
# A test not timed yet that starts the service's own processes (`start_stack`) is taken to
# be this slow: the fault tests wait out real outages and timeouts.
UNTIMED_STACK_TEST_SECONDS = 15.0


def expected_seconds(item: pytest.Item, durations: dict[str, float]) -> float:
    if item.nodeid in durations:
        return durations[item.nodeid]
    if "start_stack" in getattr(item, "fixturenames", ()):
        return UNTIMED_STACK_TEST_SECONDS
    return 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests (real processes, outages waited out, Chromium) first, longest first;
    the rest in file order. xdist hands the first tests out round robin, so the slow ones
    wait side by side on every worker while the CPU runs the quick ones, instead of
    queueing on one worker at the end of the run. Every worker reads the same cache, so
    all collect the same order (xdist requires it)."""
    cache = getattr(config, "cache", None)
    durations: dict[str, float] = cache.get(DURATIONS_KEY, {}) if cache is not None else {}
    expected = {item.nodeid: expected_seconds(item, durations) for item in items}
    slow = sorted(
        (item for item in items if expected[item.nodeid] >= SLOW_TEST_SECONDS),
        key=lambda item: -expected[item.nodeid],
    )
    if slow:
        slow_ids = {item.nodeid for item in slow}
        items[:] = slow + [item for item in items if item.nodeid not in slow_ids]


_durations_this_run: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations_this_run[report.nodeid] = _durations_this_run.get(report.nodeid, 0.0) + (
        report.duration
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Written once, by the process that saw every test (xdist's controller, or the only one).
    cache = getattr(session.config, "cache", None)
    if cache is None or hasattr(session.config, "workerinput") or not _durations_this_run:
        return
    durations: dict[str, float] = cache.get(DURATIONS_KEY, {})
    durations.update({nodeid: round(s, 2) for nodeid, s in _durations_this_run.items()})
    cache.set(DURATIONS_KEY, durations)


def databases_for(definition: pytest.FunctionDefinition, config: pytest.Config) -> list[str]:
    """The databases a test runs on (see the module docstring)."""
    if definition.get_closest_marker("postgres") is not None:
        return ["postgres"]
    if definition.get_closest_marker("both_databases") or config.getoption("all_databases"):
        return ["sqlite", "postgres"]
    return ["sqlite"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    # A run on PostgreSQL carries the `postgres` mark whichever way it got there.
    params = [
        pytest.param(name, marks=pytest.mark.postgres) if name == "postgres" else name
        for name in databases_for(metafunc.definition, metafunc.config)
    ]
    metafunc.parametrize("database_url", params, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's database from empty tables: SQLite unless marked (module docstring)."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "test.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database_url")
    _truncate_all(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        twilio_account_sid=TEST_ACCOUNT_SID,
        twilio_auth_token=TEST_AUTH_TOKEN,
        public_base_url=TEST_PUBLIC_BASE,
        # Never the real Twilio from a test: a closed local port unless a test points the
        # client at Prism (make_services(twilio_api_base_url=prism_url)).
        twilio_api_base_url="http://127.0.0.1:9",
        secret_key="test-secret",
        # A person's phone, as production requires; tests of an unset one pass duty_phone=None.
        duty_phone=TEST_DUTY_PHONE,
    )


# Thu 2025-11-27 11:00 Moscow: an ordinary working morning.
DEFAULT_NOW = datetime.fromisoformat("2025-11-27T11:00:00+03:00")


class MutableClock:
    """A clock a test can move: `clock.now = ...`."""

    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return fixed_clock(self.now)()


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock(DEFAULT_NOW)


@pytest.fixture
def services(settings: Settings, clock: Clock) -> Iterator[Services]:
    svc = Services.from_settings(settings, clock=clock)
    yield svc
    svc.close()


@pytest.fixture
def make_services(settings: Settings, clock: Clock) -> Iterator[Any]:
    """Build Services with changed settings: make_services(redis_url=..., portal_url=...)."""
    built: list[Services] = []

    def make(**changes: Any) -> Services:
        svc = Services.from_settings(settings.with_(**changes), clock=clock)
        built.append(svc)
        return svc

    yield make
    for svc in built:
        svc.close()


@pytest.fixture
def run_jobs_at_once() -> Iterator[Callable[[Services], SynchronousJobRunner]]:
    """`run_jobs_at_once(services)`: from now on `services` runs each job at once, in the
    thread that submits it (`tests/job_runner.py`), so a test asserts on what the job did
    instead of polling for it. Fails the test if any of those jobs raised."""
    runners: list[SynchronousJobRunner] = []

    def install(services: Services) -> SynchronousJobRunner:
        if "jobs" in services.__dict__:
            services.jobs.close()
        runner = SynchronousJobRunner(services)
        services.jobs = runner  # type: ignore[misc]  # the cached property's slot
        runners.append(runner)
        return runner

    yield install
    failures = [failure for runner in runners for failure in runner.failures]
    assert not failures, f"jobs raised: {failures}"


@pytest.fixture
def sync_jobs(services: Services, run_jobs_at_once: Any) -> SynchronousJobRunner:
    """The test's `services` runs its jobs synchronously (see `run_jobs_at_once`)."""
    runner: SynchronousJobRunner = run_jobs_at_once(services)
    return runner


@pytest.fixture
def app(services: Services) -> Flask:
    app = __import__("callcenter.app", fromlist=["create_app"]).create_app(services=services)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The real Redis; the test gets its own queue name (see `queue_name`)."""
    import redis

    conn = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        conn.ping()
    except redis.exceptions.ConnectionError as exc:  # pragma: no cover - environment
        pytest.fail(f"Redis is not running at {REDIS_TEST_URL}: {exc} (scripts/test.sh starts it)")
    yield REDIS_TEST_URL
    conn.close()


@pytest.fixture
def queue_name() -> str:
    return f"cc-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_stack(
    tmp_path: Path, pg_database_url: str, prism_url: str
) -> Iterator[Callable[..., ServiceStack]]:
    """Start the Procfile's `web` and `worker` (`tests.processes.ServiceStack`) against this
    run's PostgreSQL, emptied first, and Prism; stopped at teardown whatever the test did.
    `start_stack(directory=..., database_url=..., worker=False, SETTING="value", ...)`."""
    from tests.processes import ServiceStack

    started: list[ServiceStack] = []

    def start(
        *,
        directory: Path | None = None,
        database_url: str | None = None,
        worker: bool = True,
        **settings: str | None,
    ) -> ServiceStack:
        _truncate_all(pg_database_url)
        stack = ServiceStack(
            directory or tmp_path,
            database_url=database_url or pg_database_url,
            auth_token=TEST_AUTH_TOKEN,
            account_sid=TEST_ACCOUNT_SID,
            public_base_url=TEST_PUBLIC_BASE,
            twilio_api_base_url=prism_url,
            **settings,
        )
        started.append(stack)
        return stack.start(worker=worker)

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
def gate() -> Iterator[TcpGate]:
    """A `tests.processes.TcpGate` in front of the run's PostgreSQL, for a `start_stack`
    service to reach the database through. Ask for it *before* `start_stack` (pytest sets
    fixtures up in the order asked and tears them down in reverse): so the stack's
    processes stop first. Closed first, the gate would cut the database under a worker
    still finishing a job at teardown, which would then wait out its patience with the
    database and be killed at the end of its grace period, 10 s later."""
    from tests.processes import TcpGate

    gate = TcpGate(("127.0.0.1", 5432))
    yield gate
    gate.close()


@pytest.fixture
def db(pg_database_url: str, tmp_path: Path) -> Iterator[Services]:
    """The test's own view of the run's PostgreSQL database (what a supervisor would
    query), next to a `start_stack` service."""
    svc = Services.from_settings(Settings(database_url=pg_database_url, data_dir=tmp_path))
    yield svc
    svc.close()


CUSTOMER_PORTAL_TOKEN = "customer-portal-token"


@pytest.fixture
def customer_portal(tmp_path: Path) -> Iterator[tuple[Any, Services]]:
    """The customer's portal for a `start_stack` service (`PORTAL_URL`, `PORTAL_TOKEN` =
    CUSTOMER_PORTAL_TOKEN): the built-in portal's REST API over real HTTP, its own
    database, behind `tests.processes.FlakyPortal`'s switch ("slow" holds an answer until
    `release()`, well inside HttpPortal's 10 s)."""
    from callcenter.api.portal import bp as portal_api
    from tests.processes import FlakyPortal

    svc = Services.from_settings(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'portal.db'}",
            data_dir=tmp_path,
            builtin_portal_token=CUSTOMER_PORTAL_TOKEN,
        )
    )
    Base.metadata.create_all(svc.engine)
    app = Flask("customer_portal")
    app.extensions["callcenter"] = svc
    app.register_blueprint(portal_api)
    flaky = FlakyPortal(app, delay=8.0)
    yield flaky, svc
    flaky.close()
    svc.close()


PRISM_BIN = ROOT / ".cache" / "prism" / "node_modules" / ".bin" / "prism"


@pytest.fixture(scope="session")
def prism_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prism serving Twilio's own OpenAPI description on a free loopback port."""
    import socket
    import subprocess
    import time

    if not PRISM_BIN.exists():
        pytest.fail(f"Prism is not installed at {PRISM_BIN}: run scripts/test.sh")
    if not TWILIO_SPEC.exists():
        pytest.fail(f"Twilio's OpenAPI description is missing at {TWILIO_SPEC}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(PRISM_BIN), "mock", "-h", "127.0.0.1", "-p", str(port), str(TWILIO_SPEC)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    ready = False
    while time.monotonic() < deadline and proc.poll() is None:
        if "Prism is listening" in log_path.read_text(errors="replace"):
            ready = True
            break
        time.sleep(0.1)
    if not ready:
        proc.kill()
        pytest.fail("Prism did not start:\n" + log_path.read_text(errors="replace")[-2000:])
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
