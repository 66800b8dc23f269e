"""The service's wiring: settings → engine, sessions, clock, calendar and adapters.

One `Services` per process (web, worker, CLI); tests build their own. Adapters are built
lazily so a command that needs only the calendar never connects to Redis or Twilio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from callcenter.clock import Clock, running_clock, system_clock
from callcenter.db import make_engine, make_session_factory
from callcenter.settings import Settings

if TYPE_CHECKING:
    from callcenter.portal.protocol import Portal
    from callcenter.regulation.calendar import BusinessCalendar
    from callcenter.telephony.client import Telephony
    from callcenter.tickets.jobs import JobRunner


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
                from pathlib import Path

                Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        return cls(settings, engine, make_session_factory(engine), clock)

    @cached_property
    def calendar(self) -> BusinessCalendar:
        from callcenter.regulation.calendar import BusinessCalendar

        return BusinessCalendar.from_settings(self.settings)

    @cached_property
    def portal(self) -> Portal:
        from callcenter.portal import build_portal

        return build_portal(self)

    @cached_property
    def telephony(self) -> Telephony:
        from callcenter.telephony.client import build_telephony

        return build_telephony(self.settings)

    @cached_property
    def jobs(self) -> JobRunner:
        from callcenter.tickets.jobs import build_runner

        return build_runner(self)

    def close(self) -> None:
        if "jobs" in self.__dict__:
            self.jobs.close()
        if "telephony" in self.__dict__:
            self.telephony.close()
        self.engine.dispose()
