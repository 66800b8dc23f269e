"""The per-request database deadline, against a real PostgreSQL: a query that does not
answer in time is cut, and the pool goes on with healthy connections."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from callcenter.db import make_engine
from callcenter.db.deadline import guard_of
from callcenter.errors import DatabaseTimeout
from callcenter.jobs.runners import run_job
from callcenter.services import Services
from callcenter.settings import Settings

pytestmark = pytest.mark.postgres


def test_a_query_past_its_deadline_is_cut_and_the_pool_recovers(pg_database_url: str) -> None:
    engine = make_engine(pg_database_url)
    deadline = guard_of(engine)
    assert deadline is not None  # make_engine guards every PostgreSQL engine
    try:
        with engine.connect() as conn:  # a pooled connection, as a web process holds
            assert conn.execute(text("select 1")).scalar() == 1

        started = time.monotonic()
        with pytest.raises(DBAPIError) as caught:
            with deadline.within(0.5), engine.connect() as conn:
                # The server stops answering (from the client's side, a busy server and a
                # hung one look the same).
                conn.execute(text("select pg_sleep(30)"))
        elapsed = time.monotonic() - started
        assert elapsed < 3, f"cut after {elapsed:.1f} s"
        assert caught.value.connection_invalidated

        # Outside a deadline nothing is cut, and the pool hands out a live connection.
        with engine.connect() as conn:
            assert conn.execute(text("select pg_sleep(0.8), 2")).one()[1] == 2
    finally:
        engine.dispose()


def test_sqlite_engines_need_no_deadline(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        assert guard_of(engine) is None
    finally:
        engine.dispose()


def test_closed_services_leave_no_deadline_watchdog_running(
    pg_database_url: str, tmp_path: Path
) -> None:
    """The watchdog ends when its engine is disposed (as `Services.close` does), not
    whenever the engine happens to be garbage-collected: a process that builds and closes
    services (the CLI, the tests) keeps no thread waking four times a second for an engine
    nobody uses."""

    def watchdogs() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "db-deadline-watchdog"}

    services = Services.from_settings(Settings(database_url=pg_database_url, data_dir=tmp_path))
    earlier = watchdogs()
    keeper = guard_of(services.engine)
    assert keeper is not None
    with keeper.within(5), services.engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    [started] = watchdogs() - earlier
    assert started.is_alive()
    services.close()
    assert not started.is_alive()
    # The engine still works after a close, and a new deadline gets a watchdog again.
    with keeper.within(5), services.engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    [restarted] = watchdogs() - earlier
    assert restarted is not started and restarted.is_alive()
    services.close()
    assert not restarted.is_alive()


def test_a_pooled_connection_is_handed_out_idle(pg_database_url: str) -> None:
    """The liveness ping runs in autocommit: a checked-out connection is not inside a
    transaction, so per-connection options (isolation level) still apply."""
    engine = make_engine(pg_database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        with engine.connect() as conn:  # the same connection, pinged on checkout
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            assert auto.execute(text("show transaction_isolation")).scalar() == "read committed"
    finally:
        engine.dispose()


def test_an_overdue_thread_that_gave_its_connection_back_cuts_nobody(
    pg_database_url: str,
) -> None:
    """A request past its deadline that got its answer and returned the connection must not
    have that connection cut under the next request the pool lends it to."""
    engine = make_engine(pg_database_url, pool_size=1, max_overflow=0)
    deadline = guard_of(engine)
    assert deadline is not None
    returned, finish = threading.Event(), threading.Event()

    def late_request() -> None:
        with deadline.within(0.0):  # overdue from the start
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            returned.set()  # its connection is back in the pool; the request goes on
            finish.wait(10)

    thread = threading.Thread(target=late_request)
    thread.start()
    try:
        assert returned.wait(10)
        with engine.connect() as conn:  # the pool's only connection, lent again
            assert deadline.expire_overdue() == 0
            assert conn.execute(text("select 3")).scalar() == 3
    finally:
        finish.set()
        thread.join()
        engine.dispose()


def test_a_jobs_call_past_its_deadline_is_cut_but_its_idle_time_is_not_counted(
    pg_database_url: str,
) -> None:
    """A job holds its connection while it waits on the portal or Twilio: only the time a
    database call waits for the server counts against its deadline."""
    engine = make_engine(pg_database_url)
    deadline = guard_of(engine)
    assert deadline is not None
    try:
        with deadline.each_call_within(0.6) as bound, engine.connect() as conn:
            conn.execute(text("select 1"))
            conn.commit()
            # Idle well past the deadline (the portal answering slowly) ...
            idle_until = time.monotonic() + 1.5
            while time.monotonic() < idle_until:
                assert deadline.expire_overdue() == 0
                time.sleep(0.1)
            # ... then short calls, each well inside it: nothing is cut.
            assert conn.execute(text("select pg_sleep(0.2), 4")).one()[1] == 4
            conn.commit()
            assert bound.cuts == 0

            started = time.monotonic()
            with pytest.raises(DBAPIError) as caught:
                conn.execute(text("select pg_sleep(30)"))  # the server stops answering
            elapsed = time.monotonic() - started
        assert caught.value.connection_invalidated
        assert bound.cuts == 1
        assert elapsed < 3, f"cut after {elapsed:.1f} s"
        # Outside the block the thread is unbounded again.
        with engine.connect() as conn:
            assert conn.execute(text("select pg_sleep(0.8), 5")).one()[1] == 5
    finally:
        engine.dispose()


def test_a_job_cut_off_by_its_database_deadline_fails_as_database_timeout(
    pg_database_url: str, tmp_path: Path
) -> None:
    """`run_job`, as both runners call every job: the lost connection becomes the named
    `DatabaseTimeout`, in about JOB_DB_DEADLINE seconds."""
    services = Services.from_settings(
        Settings(database_url=pg_database_url, data_dir=tmp_path, job_db_deadline=0.5)
    )

    def hanging_job(svc: Services, seconds: int) -> None:
        with svc.engine.connect() as conn:
            conn.execute(text("select pg_sleep(:s)"), {"s": seconds})

    def failing_job(svc: Services) -> None:
        raise ValueError("not the database")

    try:
        started = time.monotonic()
        with pytest.raises(DatabaseTimeout, match=r"within 0\.5 s"):
            run_job(services, hanging_job, 30)
        assert time.monotonic() - started < 3
        with pytest.raises(ValueError):  # other failures stay what they are
            run_job(services, failing_job)
        assert run_job(services, lambda svc, n: n + 1, 6) == 7
    finally:
        services.close()
