"""A deadline on the database for each webhook: a hung PostgreSQL never holds a caller.

A database that is *down* fails fast (connection refused, a reset), and the webhook answers
with the fallback. One that *hangs* — a frozen server, a network path that drops every
packet — fails nothing: the kernel acknowledges what we send, keepalives are answered,
and psycopg waits for a reply with no timeout of its own. Twilio gives a webhook 15 s.

So every webhook request runs `within(seconds)`: the thread's deadline is registered, and a
watchdog thread (one per engine, started on first use) shuts down the socket of every
connection an overdue thread holds. The blocked call then fails as a lost connection —
SQLAlchemy invalidates it, the pool never hands it out again — and the webhook answers
with its fallback in time. New connections are bounded by libpq's `connect_timeout`.

Which connections a thread holds comes from the pool's checkout/checkin events. The
liveness check of a pooled connection ("pre-ping") runs inside our checkout handler, not
SQLAlchemy's `pool_pre_ping` (which pings before any event fires, where the watchdog could
not see it): `make_engine` turns that off for the engines this module guards.

Jobs get the same watchdog, bounded per database *call* rather than per job
(`each_call_within(seconds)`, JOB_DB_DEADLINE): a job also waits on the portal and on
Twilio, with their own timeouts, while it holds an idle connection, and only the time
spent waiting for PostgreSQL counts. Every blocking call of the engine's dialect (execute,
commit, rollback, the liveness ping) arms the thread's deadline and clears it on return;
a call the watchdog cuts is noted (`CallBound.cuts`), so the job fails as
`DatabaseTimeout`, not as a lost connection of unknown cause.

SQLite needs none of this (a local file; its busy timeout bounds lock waits).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any

import psycopg
from sqlalchemy import Engine, event, exc

log = logging.getLogger(__name__)

# A webhook's database work ends within this: Twilio waits 15 s for the answer, and a
# fresh connection may still take libpq's connect_timeout (db.PG_CONNECT_TIMEOUT, 4 s).
WEBHOOK_DATABASE_SECONDS = 6.0
# How often the watchdog looks for overdue requests; a deadline fires at most this late.
WATCH_INTERVAL_SECONDS = 0.25
# The dialect's methods that wait for the server: a job's deadline covers each of them.
BLOCKING_CALLS = (
    "do_execute",
    "do_executemany",
    "do_execute_no_params",
    "do_commit",
    "do_rollback",
    "do_ping",
)


@dataclass
class CallBound:
    """A thread's bound on each of its database calls (`each_call_within`)."""

    seconds: float
    # How many of its calls the watchdog cut.
    cuts: int = 0


class DatabaseDeadline:
    """The deadlines of the threads using one engine's connections."""

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}  # thread id -> monotonic deadline
        # id(DBAPI connection) -> (the connection, the thread that checked it out)
        self._held: dict[int, tuple[Any, int]] = {}
        # The watchdog's thread and the event that ends it (`close`).
        self._watchdog: tuple[threading.Thread, threading.Event] | None = None
        # thread id -> its bound on each database call (jobs)
        self._per_call: dict[int, CallBound] = {}
        self._dialect = engine.dialect
        # SQLAlchemy has events before and after a statement but none after a commit or a
        # rollback (the pool's reset-on-return among them): the dialect's own methods are
        # wrapped instead, on this engine's dialect object only.
        for name in BLOCKING_CALLS:
            setattr(self._dialect, name, self._bounded(getattr(self._dialect, name)))
        event.listen(engine, "connect", self._on_connect)
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)
        event.listen(engine, "close", self._on_checkin)
        event.listen(engine, "invalidate", self._on_invalidate)
        # SQLAlchemy's hook for the resources that go with an engine: its owner is done.
        event.listen(engine, "engine_disposed", self._on_disposed)

    # ------------------------------------------------------------------ requests

    def start(self, seconds: float) -> None:
        """This thread's database calls fail once `seconds` have passed, until `clear`."""
        with self._lock:
            self._deadlines[threading.get_ident()] = time.monotonic() + seconds
            if self._watchdog is None:
                self._start_watchdog()

    def clear(self) -> None:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """`start` … `clear` around a block."""
        self.start(seconds)
        try:
            yield
        finally:
            self.clear()

    @contextmanager
    def each_call_within(self, seconds: float) -> Iterator[CallBound]:
        """Inside the block, each database call of this thread fails once it has waited
        `seconds` for the server; the yielded `CallBound` counts the calls cut."""
        if seconds <= 0:
            raise ValueError(f"a database call needs a positive deadline, got {seconds!r}")
        tid = threading.get_ident()
        bound = CallBound(seconds)
        with self._lock:
            self._per_call[tid] = bound
            if self._watchdog is None:
                self._start_watchdog()
        try:
            yield bound
        finally:
            with self._lock:
                self._per_call.pop(tid, None)
                self._deadlines.pop(tid, None)

    def _bounded(self, call: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(call)
        def bounded_call(*args: Any, **kwargs: Any) -> Any:
            tid = threading.get_ident()
            bound = self._per_call.get(tid)
            if bound is None:  # a webhook's thread (its deadline spans the request), or none
                return call(*args, **kwargs)
            with self._lock:
                # A call made inside another (a ping that executes) runs under the outer
                # call's deadline.
                outermost = tid not in self._deadlines
                if outermost:
                    self._deadlines[tid] = time.monotonic() + bound.seconds
            try:
                return call(*args, **kwargs)
            finally:
                if outermost:
                    with self._lock:
                        self._deadlines.pop(tid, None)

        return bounded_call

    # ------------------------------------------------------------------ pool events

    def _on_connect(self, _dbapi_connection: Any, record: Any) -> None:
        record.info["fresh"] = True

    def _on_checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        with self._lock:
            self._held[id(dbapi_connection)] = (dbapi_connection, threading.get_ident())
        if record.info.pop("fresh", False):
            return  # just connected: alive by definition
        # The pre-ping, where the watchdog sees it. Raising DisconnectionError makes the
        # pool discard this connection and connect a new one (SQLAlchemy's own recipe).
        try:
            # The dialect's own ping: on psycopg it pings in autocommit, so the connection
            # is handed out idle, not inside a transaction a plain SELECT would open.
            self._dialect.do_ping(dbapi_connection)
        except Exception as error:
            self._forget(dbapi_connection)
            raise exc.DisconnectionError(f"pre-ping failed: {error!r}") from error

    def _on_checkin(self, dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            self._forget(dbapi_connection)

    def _on_invalidate(self, dbapi_connection: Any, _record: Any, _error: Any) -> None:
        if dbapi_connection is not None:
            self._forget(dbapi_connection)

    def _forget(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._held.pop(id(dbapi_connection), None)

    # ------------------------------------------------------------------ the watchdog

    def _start_watchdog(self) -> None:
        # A weak reference: the watchdog ends with the engine's deadline object, or at
        # `close`, whichever comes first.
        ref = weakref.ref(self)
        stop = threading.Event()
        thread = threading.Thread(
            target=_watch, args=(ref, stop), name="db-deadline-watchdog", daemon=True
        )
        self._watchdog = thread, stop
        thread.start()

    def _on_disposed(self, _engine: Engine) -> None:
        self.close()

    def close(self) -> None:
        """End the watchdog; the engine's `dispose()` does it. Otherwise it would live until
        the engine is garbage-collected, which for an engine in reference cycles (its pool,
        its events) can be much later: a closed `Services` would leave a thread behind,
        waking four times a second. A deadline started after this starts a new one."""
        with self._lock:
            watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            thread, stop = watchdog
            stop.set()
            thread.join()

    def expire_overdue(self, now: float | None = None) -> int:
        """Cut the connections of the threads past their deadline; how many were cut.

        Under the lock: a connection checked in meanwhile (its thread got its answer) is no
        longer held, so it is never cut under the next thread it is lent to — the pool's
        checkin event, which takes the same lock, fires before the pool lends it again."""
        moment = time.monotonic() if now is None else now
        cut: list[int] = []  # requests' threads, logged here
        jobs_cut = 0
        with self._lock:
            overdue = {tid for tid, deadline in self._deadlines.items() if deadline <= moment}
            for key, (connection, tid) in list(self._held.items()):
                if tid in overdue:
                    del self._held[key]
                    if _shut_down(connection):
                        bound = self._per_call.get(tid)
                        if bound is not None:
                            # A job's: counted under the lock its blocked call's wrapper
                            # takes on the way out, so the job sees the count; it fails as
                            # `DatabaseTimeout`, and that is its one log line.
                            bound.cuts += 1
                            jobs_cut += 1
                        else:
                            cut.append(tid)
        for tid in cut:
            log.error(
                "database call over its deadline in thread %s: connection cut (the database "
                "hangs?); the request answers with its fallback",
                tid,
            )
        return len(cut) + jobs_cut


_guards: weakref.WeakKeyDictionary[Engine, DatabaseDeadline] = weakref.WeakKeyDictionary()
_guards_lock = threading.Lock()


def guard(engine: Engine) -> DatabaseDeadline:
    """The engine's deadline keeper, installed on first call (`make_engine` does it for
    PostgreSQL engines)."""
    with _guards_lock:
        keeper = _guards.get(engine)
        if keeper is None:
            keeper = _guards[engine] = DatabaseDeadline(engine)
        return keeper


def guard_of(engine: Engine) -> DatabaseDeadline | None:
    """The engine's deadline keeper, if it has one."""
    return _guards.get(engine)


@contextmanager
def bounded(engine: Engine, seconds: float) -> Iterator[None]:
    """`within(seconds)` on the engine's deadline keeper; nothing for an engine without one
    (SQLite)."""
    keeper = guard_of(engine)
    if keeper is None:
        yield
        return
    with keeper.within(seconds):
        yield


def connect_timed_out(error: BaseException) -> bool:
    """Did `error` come from a new connection that libpq's `connect_timeout` gave up on (a
    server that accepts and never answers)? SQLAlchemy's wrapper keeps psycopg's error."""
    orig = getattr(error, "orig", None)
    # psycopg 3.2+ raises errors.ConnectionTimeout, 3.1 a plain OperationalError.
    return isinstance(orig, psycopg.OperationalError) and "timeout expired" in str(orig)


def _watch(ref: weakref.ReferenceType[DatabaseDeadline], stop: threading.Event) -> None:
    while not stop.wait(WATCH_INTERVAL_SECONDS):
        deadline = ref()
        if deadline is None:
            return
        try:
            deadline.expire_overdue()
        except Exception:  # the watchdog must outlive any one failure
            log.exception("database deadline watchdog")
        del deadline


def _shut_down(dbapi_connection: Any) -> bool:
    """Shut the connection's socket down under the thread blocked on it: its wait returns
    at once, with the connection lost. (psycopg 3: `pgconn.socket` is the descriptor.)"""
    try:
        fd = dbapi_connection.pgconn.socket
    except Exception:  # closed already, or not psycopg
        return False
    try:
        # A socket object over a duplicate of the descriptor: shutdown() acts on the
        # connection itself, and closing our duplicate leaves psycopg's descriptor alone.
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True
