"""Named exceptions of the service, in one place.

CallCenterError
├── ConfigurationError      settings missing or inconsistent (start-up refuses)
├── InvalidInput            a value from a caller, a file or a command line is unusable
│   ├── UnknownTopic
│   ├── UnknownProduct
│   ├── ImportRejected      an all-or-nothing import found bad rows (carries the report)
│   ├── InvalidFilter       a call-log filter value is unusable (carries the field)
│   ├── TokenNameTaken      an API token of that name already exists
│   ├── NotTicketable       a call the regulation does not ticket (nothing chosen yet)
│   ├── UnknownTicketRequest     no ticket request (outbox row) with that id
│   ├── TicketRequestNotRetryable only a failed ticket request can be retried
│   ├── UnknownApiToken     no API token of that name
│   ├── UserNameTaken       a console user of that name already exists
│   ├── UnknownUser         no console user of that name
│   ├── WeakPassword        a console password too short or too guessable
│   ├── InvalidForm         a console form has unusable fields (`fields`: field → why)
│   ├── UnknownIncident     no known incident with that id
│   ├── IncidentConflict    an incident for that product is open already / it is closed
│   └── MalformedWebhook    a Twilio webhook lacks what every such request carries
├── PortalError             the ticket portal could not do what was asked
│   ├── PortalUnavailable   transient: timeouts, 5xx, connection refused → retry
│   ├── PortalRejected      permanent: 4xx, the draft is wrong → failed, visible
│   │   ├── InvalidTicketData    fields of a draft/entry/change are unusable (`fields`)
│   │   └── InvalidStatusChange  the workflow does not allow that status change
│   └── TicketNotFound
├── TelephonyError          Twilio's REST API refused or could not be reached
│   ├── TelephonyNotConfigured  no Twilio account in the settings (embedded default)
│   ├── TelephonyUnavailable    transient: timeouts, 5xx, 429, refused → retry
│   └── TelephonyRejected       permanent: Twilio said no (4xx); carries status, code
├── QueueUnavailable        Redis is down; the outbox keeps the work
├── DatabaseTimeout         PostgreSQL did not answer a job's call within JOB_DB_DEADLINE
├── LoginFailed             wrong console user name or password (which one is not said)
└── SimulationError         the call simulator could not go on (service refused, bad TwiML)
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


class UnknownProduct(InvalidInput):
    pass


class Reason(str):
    """A problem in a person's words, with the technical detail (a parser's message) kept
    apart: `str(reason)` is what the person reads; a page folds `detail` away."""

    detail: str

    def __new__(cls, text: str, detail: str = "") -> Reason:
        reason = super().__new__(cls, text)
        reason.detail = detail
        return reason


def with_detail(reason: str) -> str:
    """A reason with its technical detail, for a terminal (nothing is folded there)."""
    detail = getattr(reason, "detail", "")
    return f"{reason} ({detail})" if detail else str(reason)


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


class InvalidTicketData(PortalRejected):
    """A draft, entry or change has unusable fields; `fields` maps a field to the reason."""

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        self.fields = dict(fields)
        detail = "; ".join(f"{name}: {why}" for name, why in self.fields.items())
        super().__init__(message or f"invalid ticket data: {detail}")


class InvalidStatusChange(PortalRejected):
    """The ticket workflow does not allow this status change (e.g. out of «Закрыта»)."""


class TicketNotFound(PortalError):
    pass


class TelephonyError(CallCenterError):
    pass


class TelephonyNotConfigured(TelephonyError):
    """No Twilio account is configured: nothing was sent (the embedded default)."""


class TelephonyUnavailable(TelephonyError):
    """Twilio could not be reached or asked us to come back later: worth retrying."""


class TelephonyRejected(TelephonyError):
    """Twilio refused the request; retrying the same request will not help.

    `status` is the HTTP status, `code` Twilio's error code (www.twilio.com/docs/errors).
    """

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class QueueUnavailable(CallCenterError):
    pass


class DatabaseTimeout(CallCenterError):
    """A job's database call waited longer than its deadline (the database hangs): its
    connection was cut and the job failed; the outbox keeps the work for the sweep."""


class NotTicketable(InvalidInput):
    """The call carries nothing a ticket can be opened for (no path chosen, a status query)."""


class UnknownTicketRequest(InvalidInput):
    """No ticket request (outbox row) has that id."""


class TicketRequestNotRetryable(InvalidInput):
    """Only a `failed` ticket request can be retried: a done one has its ticket, a pending
    one is still being worked on."""


class InvalidFilter(InvalidInput):
    """A call-log filter (API query string, console form) has an unusable value.

    `message` is for the API (English, technical); `words`, when given, says the same to a
    person in Russian (the console shows it, with `message` folded away)."""

    def __init__(self, field: str, message: str, words: str = "") -> None:
        self.field = field
        self.message = message
        self.words = words
        super().__init__(f"{field}: {message}")


class TokenNameTaken(InvalidInput):
    pass


class UnknownApiToken(InvalidInput):
    pass


class SimulationError(CallCenterError):
    """The call simulator could not go on: the service is unreachable, refused a request
    (e.g. a signature mismatch) or answered with something that is not TwiML."""


class MalformedWebhook(InvalidInput):
    """A Twilio webhook without a parameter every such request carries (e.g. CallSid):
    answered 400 with the reason, never 500."""


class UserNameTaken(InvalidInput):
    """A console user of that name already exists."""


class UnknownUser(InvalidInput):
    """No console user has that name."""


class WeakPassword(InvalidInput):
    """A console password that is too short or too easy to guess (the message says why)."""


class LoginFailed(CallCenterError):
    """A console login was refused: the message never says whether the name or the
    password was wrong."""


class InvalidForm(InvalidInput):
    """A console form (a contact, an organisation) has unusable fields; `fields` maps each
    field to the reason, in Russian, shown next to it. Nothing was saved."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__("; ".join(f"{name}: {why}" for name, why in self.fields.items()))


class UnknownIncident(InvalidInput):
    pass


class IncidentConflict(InvalidInput):
    """An incident for the product is open already (one at a time per product), or the
    incident is closed and cannot change."""
