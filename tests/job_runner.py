"""A job runner for tests that only need a job to have run: `SynchronousJobRunner`.

It keeps the `JobRunner` protocol (`callcenter.ports`) and runs the same job functions
(`callcenter.jobs.tasks`) as the real runners, called with its `Services` first, each at
once in the thread that submits it — for a webhook, right after its transaction committed,
before the test client has the reply. A test then asserts on the outcome instead of
polling for it.

Like a queue, and like the real runners:
- a job submitted by a running job (the ticket job queueing its follow-ups) runs after
  that job, not inside it;
- a key already waiting or running is one job (`submit_*` twice, `enqueue(job_id=...)`).

`hold()` makes it a worker that lags: submitted jobs wait (still one per key) until
`release()` runs them, optionally the newest first.

A job that raises is recorded in `failures` (the real runners log it and leave the row to
the sweep); the `sync_jobs` fixture fails the test at teardown if any did, so an error in a
job never hides behind an assertion that happens to hold.

Tests of the runners themselves (RQ on a real Redis, the in-process thread pool and its
sweep) keep the real runners.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from callcenter.jobs import tasks
from callcenter.ports import Chain
from callcenter.services import Services

log = logging.getLogger(__name__)


class SynchronousJobRunner:
    """Runs each submitted job at once, in order, in the submitting thread."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.failures: list[tuple[str, BaseException]] = []
        self.ran: list[str] = []
        self._lock = threading.Lock()
        self._waiting: deque[tuple[str, Callable[..., object], tuple[Any, ...]]] = deque()
        self._keys: set[str] = set()
        self._draining = False
        self._held = False

    def hold(self) -> None:
        """From now on, submitted jobs wait for `release()` (a worker lagging behind)."""
        with self._lock:
            self._held = True

    def release(self, *, newest_first: bool = False) -> None:
        """Run every job held back, in submission order or the newest first, then go on
        running jobs at once."""
        with self._lock:
            self._held = False
            if newest_first:
                self._waiting.reverse()
            if self._draining:
                return
            self._draining = True
        self._drain()

    def submit_ticket_request(self, request_id: int) -> bool:
        self._submit(f"ticket-request:{request_id}", tasks.create_ticket, request_id)
        return True

    def submit_followups(self, request_id: int) -> bool:
        self._submit(f"ticket-followups:{request_id}", tasks.run_followups, request_id)
        return True

    def submit_chain_alerts(self, call_id: int) -> None:
        self.enqueue(tasks.chain_alerts_job, call_id, job_id=f"chain-alerts:{call_id}")

    def submit_missed_urgent_sms(self, call_id: int) -> None:
        self.enqueue(tasks.missed_urgent_sms_job, call_id, job_id=f"missed-urgent:{call_id}")

    def submit_kb_link_sms(self, call_id: int) -> None:
        self.enqueue(tasks.kb_link_sms_job, call_id, job_id=f"kb-link:{call_id}")

    def submit_incident(self, incident_id: int) -> None:
        self.enqueue(tasks.incident_job, incident_id, job_id=f"incident:{incident_id}")

    def enqueue(self, func: Callable[..., object], *args: Any, job_id: str | None = None) -> None:
        self._submit(job_id or uuid.uuid4().hex, func, *args)

    def flush(self) -> int:
        """What the sweep does: submit everything due now; returns how many."""
        tickets, followup_ids = tasks.due_request_ids(self.services)
        for request_id in tickets:
            self.submit_ticket_request(request_id)
        for request_id in followup_ids:
            self.submit_followups(request_id)
        return (
            len(tickets)
            + len(followup_ids)
            + tasks.queue_due_chain_alerts(self.services)
            + tasks.queue_due_missed_urgent_sms(self.services)
            + tasks.queue_due_incidents(self.services)
        )

    def tickets_waiting(self) -> bool:
        # Every ticket job runs before its submit returns: none is ever waiting.
        return False

    def schedule_next(self, chain: Chain) -> None:
        """No periodic chains: a test runs the sweep itself (`flush`)."""

    def close(self) -> None:
        """Nothing runs in the background: every job ended before its submit returned."""

    def _submit(self, key: str, func: Callable[..., object], *args: Any) -> None:
        with self._lock:
            if key in self._keys:
                return
            self._keys.add(key)
            self._waiting.append((key, func, args))
            if self._draining or self._held:
                return  # submitted by a running job (or another thread), or held back
            self._draining = True
        self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._draining = False
                    return
                key, func, args = self._waiting.popleft()
            try:
                func(self.services, *args)
            except Exception as exc:
                log.exception("job %s failed", key)
                self.failures.append((key, exc))
            finally:
                with self._lock:
                    self._keys.discard(key)
                    self.ran.append(key)
