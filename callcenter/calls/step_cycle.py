"""The step cycle: how every webhook of a call that changes it is served, IVR and routing.

    lock the call's row → decide (the caller's function) → save → record the event
    → commit → then queue the jobs the step asked for

`StepCycle.run` owns the transaction, the lock, the retry and the after-commit work; the
IVR (`callcenter.ivr.conversation`) and on-duty routing (`callcenter.routing.steps`) only
decide. Flask-free: a view builds the cycle from its app's services and calls one domain
function with it.

Failure policy: a transaction PostgreSQL aborts to break a deadlock or a serialization
conflict (the ticket pipeline's jobs lock the same rows in their own order) is run again
from the start, up to `ATTEMPTS` times — nothing of it was kept, and the stored state
decides anew. Any other error rolls the step back and propagates (the view answers the
caller with the emergency reply). Work queued with `StepTransaction.after_commit` runs
only once the step committed, and never fails the step: what could not be queued is found
again by the outbox sweep.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from callcenter.calls.store import CallColumns, lock_call
from callcenter.db.models import Call

if TYPE_CHECKING:
    from callcenter.ports import JobRunner

log = logging.getLogger(__name__)

T = TypeVar("T")

# Deadlock detected, serialization failure: PostgreSQL aborted us; the step can run again.
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 3

_writer_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_writer_locks_guard = threading.Lock()


@contextmanager
def one_writer(engine: Engine) -> Iterator[None]:
    """On SQLite, let this process's webhook transactions write one at a time.

    SQLite admits one writer; a second one polls the file lock with growing sleeps (tens of
    milliseconds each), which puts long tails on webhook latency under concurrent calls.
    Queueing on a lock hands over as soon as the writer commits. Other processes (a CLI,
    the RQ worker) still meet at the file lock. PostgreSQL locks rows: nothing to do.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    with _writer_locks_guard:
        lock = _writer_locks.setdefault(engine, threading.Lock())
    with lock:
        yield


class StepTransaction:
    """One attempt of a step: a Core connection in a transaction, the call's locked row
    (`call`: its columns; None when the call has no row yet), an ORM session on the same
    connection only for the steps that need one (building a session costs as much as the
    hot path's statements), and the work to start after commit.

    The session joins the connection's transaction (rollback_only: its commit is a flush,
    its rollback the whole step's), so the call, its event and any ticket request commit
    or roll back as one.
    """

    def __init__(
        self,
        connection: Connection,
        sessions: sessionmaker[Session],
        jobs: Callable[[], JobRunner],
        now: datetime,
        call_sid: str,
        call: CallColumns | None,
    ) -> None:
        self.connection = connection
        self.call_sid = call_sid
        self.jobs = jobs
        self.now = now
        self.call = call
        self._sessions = sessions
        self._session: Session | None = None
        self._after_commit: list[Callable[[], object]] = []

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self._sessions(
                bind=self.connection, join_transaction_mode="rollback_only"
            )
        return self._session

    def reading_connection(self) -> Connection:
        """The step's connection for a Core read, with the session's pending changes (if a
        session was opened) flushed first, as an ORM query's autoflush would: a read that
        needs no ORM object does not open a session for it."""
        if self._session is not None:
            self._session.flush()
        return self.connection

    def call_object(self) -> Call | None:
        """The locked call as an ORM object (loaded fresh), for the steps that change more
        than a few columns; None when the call has no row."""
        if self.call is None:
            return None
        return self.session.get_one(Call, self.call.id, populate_existing=True)

    def after_commit(self, work: Callable[[], object]) -> None:
        """Run `work` once this step has committed (never if it rolls back)."""
        self._after_commit.append(work)

    def submit_ticket_requests(self, request_ids: Iterable[int]) -> None:
        """Queue the ticket jobs of `request_ids` after commit (`submit_ticket_requests`)."""
        ids = list(request_ids)
        if ids:
            self.after_commit(lambda: submit_ticket_requests(self.jobs(), ids, self.call_sid))


def submit_ticket_requests(jobs: JobRunner, request_ids: Iterable[int], call_sid: str) -> None:
    """Queue the ticket jobs of committed requests. Never fails the caller's step: a request
    that could not be queued stays pending in the outbox, and the sweep picks it up."""
    for request_id in request_ids:
        try:
            jobs.submit_ticket_request(request_id)
        except Exception:
            log.exception(
                "could not queue ticket request %s; the outbox sweep will",
                request_id,
                extra={"call_sid": call_sid, "ticket_request_id": request_id},
            )


@dataclass(frozen=True)
class StepCycle:
    """What serving a step needs from the process: the database, the clock, and the job
    runner that takes the work queued after commit — asked for only when a step queues
    work, as building it may start the in-process runner's threads."""

    engine: Engine
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    jobs: Callable[[], JobRunner]

    def run(self, call_sid: str, decide: Callable[[StepTransaction], T]) -> T:
        """Lock `call_sid`'s row, `decide(tx)`, commit, then start what the step queued;
        the decision's value is returned. See the module's failure policy."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                tx, result = self._attempt(call_sid, decide)
            except DBAPIError as exc:
                state = _sqlstate(exc)
                if attempt == ATTEMPTS or state not in RETRIED_SQLSTATES:
                    raise
                log.warning(
                    "step of call %s aborted (%s): running it again",
                    call_sid,
                    state,
                    extra={"call_sid": call_sid},
                )
                continue
            for work in tx._after_commit:
                _start(work, call_sid)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, call_sid: str, decide: Callable[[StepTransaction], T]
    ) -> tuple[StepTransaction, T]:
        now = self.clock()
        with one_writer(self.engine), self.engine.begin() as connection:
            locked = lock_call(connection, call_sid, now=now)
            tx = StepTransaction(connection, self.sessions, self.jobs, now, call_sid, locked)
            try:
                result = decide(tx)
                if tx._session is not None:
                    tx._session.commit()  # a flush: the connection commits on the way out
            finally:
                if tx._session is not None:
                    tx._session.close()
        return tx, result


def _start(work: Callable[[], object], call_sid: str) -> None:
    try:
        work()
    except Exception:
        log.exception(
            "work after the step of call %s could not be started; the outbox sweep will",
            call_sid,
            extra={"call_sid": call_sid},
        )


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) else None
