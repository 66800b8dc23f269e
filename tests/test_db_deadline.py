"""The per-request database deadline, against a real PostgreSQL: a query that does not
answer in time is cut, and the pool goes on with healthy connections."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from callcenter.db import make_engine
from callcenter.db_deadline import guard_of

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
