"""Engine and sessions. Nothing connects at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, TypeDecorator, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from callcenter.db.deadline import guard

# Seconds to wait for PostgreSQL to accept a connection (libpq's connect_timeout).
PG_CONNECT_TIMEOUT = 4


class UTCDateTime(TypeDecorator[datetime]):
    """Stores timezone-aware datetimes as UTC; always returns aware UTC values.

    SQLite has no time zones and would hand back naive values; PostgreSQL would hand back
    the session's zone. Either way the domain sees aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime; use aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    if database_url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(database_url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the web process and the in-process jobs read while one writes.
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL is still safe against a crash of the service; only a power
            # cut may lose the last commits. The embedded default trades that for a commit
            # that does not wait for the disk on every IVR step.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    postgres = database_url.startswith("postgresql")
    # On PostgreSQL the liveness check of a pooled connection runs in `db_deadline`'s
    # checkout handler instead, where a request's deadline can cut a ping that hangs.
    kwargs.setdefault("pool_pre_ping", not postgres)
    # Waiting for a free pooled connection is no database call the deadline could cut:
    # bound it well inside a webhook's 15 s (the pool is larger than a process's threads,
    # so only leaked or hung connections make anyone wait).
    kwargs.setdefault("pool_timeout", 5)
    if postgres:
        # PostgreSQL's JIT spends ~0.7 s compiling the console's counting queries that
        # then run in ~0.1 s; our queries are short, index-driven OLTP: never worth it.
        # A server that accepts connections but never answers (hung, or a path that drops
        # packets) would hold a webhook past Twilio's 15 s, and every gunicorn thread with
        # it: give up connecting after PG_CONNECT_TIMEOUT, so callers get the fallback;
        # and notice a server host that vanished under an open connection (unacknowledged
        # data, silent keepalives) within seconds, not the kernel's default minutes.
        kwargs.setdefault(
            "connect_args",
            {
                "options": "-c jit=off",
                "connect_timeout": PG_CONNECT_TIMEOUT,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
                "tcp_user_timeout": PG_CONNECT_TIMEOUT * 2000,
            },
        )
    engine = create_engine(database_url, **kwargs)
    if postgres:
        guard(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    with factory() as session, session.begin():
        yield session
