"""Named exceptions of the service, in one place.

    CallCenterError
    ├── ConfigurationError      settings missing or inconsistent (start-up refuses)
    ├── InvalidInput            a value from a caller, a file or a command line is unusable
    │   ├── UnknownTopic
    │   └── ImportRejected      an all-or-nothing import found bad rows (carries the report)
    ├── PortalError             the ticket portal could not do what was asked
    │   ├── PortalUnavailable   transient: timeouts, 5xx, connection refused → retry
    │   ├── PortalRejected      permanent: 4xx, the draft is wrong → failed, visible
    │   └── TicketNotFound
    ├── TelephonyError          Twilio's REST API refused or could not be reached
    └── QueueUnavailable        Redis is down; the outbox keeps the work
"""

from __future__ import annotations


class CallCenterError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigurationError(CallCenterError):
    pass


class InvalidInput(CallCenterError, ValueError):
    pass


class UnknownTopic(InvalidInput):
    pass


class ImportRejected(InvalidInput):
    """An all-or-nothing import was refused; `problems` lists (line, reason)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        lines = "; ".join(f"line {n}: {why}" for n, why in problems[:20])
        super().__init__(f"{len(problems)} problem(s): {lines}")


class PortalError(CallCenterError):
    pass


class PortalUnavailable(PortalError):
    pass


class PortalRejected(PortalError):
    pass


class TicketNotFound(PortalError):
    pass


class TelephonyError(CallCenterError):
    pass


class QueueUnavailable(CallCenterError):
    pass
