"""What the code below the composition root is handed, as Protocols.

    Services   one process's wiring: settings, engine, sessions, clock, calendar, portal,
               telephony and the job runner — built by `callcenter.services.Services`
    JobRunner  how work is queued — `callcenter.jobs.runners` (RQ, in-process)

The domain (`ivr.conversation`, `ivr.spool`), the jobs and the runners are typed against
these, not against the classes that build them: `callcenter.services` imports the runners,
the runners import the jobs, the jobs import the domain, and every arrow points downward.
A test's own runner (e.g. a synchronous one) only has to satisfy `JobRunner`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from callcenter.clock import Clock
from callcenter.portal.protocol import Portal
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.settings import Settings
from callcenter.telephony.client import Telephony

# The periodic jobs: the outbox sweep (every few seconds) and the retention purge (daily).
Chain = Literal["sweep", "purge"]


class JobRunner(Protocol):
    """Runs the pipeline's jobs (`callcenter.jobs.tasks`): each is called with the runner's
    `Services` first, then the primitive arguments it was queued with.

    Failure policy: the `submit_*` methods never raise for a queue that is down (they
    return False; the outbox row stays pending and the sweep submits it); `enqueue` and
    `flush` raise `QueueUnavailable`, for callers that must know.
    """

    def submit_ticket_request(self, request_id: int) -> bool:
        """Queue the ticket job for request `request_id` (after its row was committed).
        One job per request id however often it is submitted."""
        ...

    def submit_followups(self, request_id: int) -> bool:
        """Queue the follow-ups job of request `request_id` (one per request id)."""
        ...

    def submit_chain_alerts(self, call_id: int) -> None:
        """Queue the chain alerts of call `call_id` (one job per call); raises
        `QueueUnavailable` (the sweep finds the call's alerts due all the same)."""
        ...

    def submit_missed_urgent_sms(self, call_id: int) -> None:
        """Queue the SMS about urgent call `call_id` hung up before a word (one job per
        call id). Raises `QueueUnavailable`."""
        ...

    def submit_kb_link_sms(self, call_id: int) -> None:
        """Queue the SMS with the knowledge base's link to call `call_id`'s caller (one job
        per call id). Raises `QueueUnavailable`."""
        ...

    def submit_incident(self, incident_id: int) -> None:
        """Queue what incident `incident_id` has to send (`tasks.incident_job`; one job per
        incident at a time). Raises `QueueUnavailable` (the sweep finds it due all the same:
        `incidents.followups.incidents_due`)."""
        ...

    def enqueue(self, func: Callable[..., object], *args: Any, job_id: str | None = None) -> None:
        """Run `func(services, *args)` — a module-level job of primitive arguments — as a
        job; a repeated `job_id` is one job."""
        ...

    def flush(self) -> int:
        """Submit everything due now (tickets, follow-ups, chain alerts); how many."""
        ...

    def tickets_waiting(self) -> bool:
        """Are other ticket jobs queued right now (a burst of calls ending)? A runner that
        cannot tell says False."""
        ...

    def schedule_next(self, chain: Chain) -> None:
        """A periodic job (`"sweep"`, `"purge"`) asks for its next run. A runner with its
        own timer (the in-process one) does nothing; RQ schedules the next slot's job."""
        ...

    def close(self) -> None:
        """Stop; the in-process runner lets running jobs finish first."""
        ...


class Services(Protocol):
    """One process's wiring, as the code it runs sees it (read-only)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def calendar(self) -> BusinessCalendar: ...

    @property
    def portal(self) -> Portal: ...

    @property
    def telephony(self) -> Telephony: ...

    @property
    def jobs(self) -> JobRunner: ...
