"""The service's wiring: settings → engine, sessions, clock, calendar and adapters.

One `Services` per process (web, worker, CLI); tests build their own. It satisfies
`callcenter.ports.Services`, which is what the domain and the jobs are typed against.
Adapters are built lazily so a command that needs only the calendar never connects to
Redis or Twilio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from callcenter.clock import Clock, running_clock, system_clock
from callcenter.db import make_engine, make_session_factory
from callcenter.jobs.runners import build_runner
from callcenter.portal import build_portal
from callcenter.portal.protocol import Portal
from callcenter.ports import JobRunner
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.settings import Settings
from callcenter.telephony.client import Telephony, build_telephony


@dataclass(eq=False)
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock = field(default=system_clock)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> Services:
        """Without a `clock`: the system's, or one running from `CALLCENTER_CLOCK`."""
        if clock is None:
            start = settings.clock_start
            clock = running_clock(start) if start is not None else system_clock
        if settings.database_url.startswith("sqlite:///"):
            path = settings.database_url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        return cls(settings, engine, make_session_factory(engine), clock)

    @cached_property
    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar.from_settings(self.settings)

    @cached_property
    def portal(self) -> Portal:
        return build_portal(self.settings, self.sessions, self.clock)

    @cached_property
    def telephony(self) -> Telephony:
        return build_telephony(self.settings)

    @cached_property
    def jobs(self) -> JobRunner:
        return build_runner(self)

    def close(self) -> None:
        if "jobs" in self.__dict__:
            self.jobs.close()
        if "telephony" in self.__dict__:
            self.telephony.close()
        self.engine.dispose()
