"""The `Portal` protocol: everything this service asks of the ticket portal.

Two implementations sit side by side: `builtin.BuiltinPortal` (tickets in our own
database, the embedded default) and `http.HttpPortal` (the customer's portal over the REST
contract in `openapi.yaml`). Errors: `PortalUnavailable` (transient, retry),
`PortalRejected` (permanent), `TicketNotFound`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class TicketDraft:
    topic: str  # regulation topic slug
    description: str
    idempotency_key: str  # the CallSid: one call never yields two tickets
    product: str | None = None
    vehicles: tuple[str, ...] = ()
    contact_name: str | None = None
    contact_id: int | None = None
    organisation_name: str | None = None
    organisation_id: int | None = None
    caller: str | None = None  # E.164 or the raw caller ID when not a number
    call_ref: str | None = None  # CallSid
    recording_url: str | None = None
    priority: str = "normal"  # normal / high / critical
    first_stage_due: datetime | None = None
    resolution_due: datetime | None = None  # None: "by agreement"


@dataclass(frozen=True)
class TicketEntryView:
    at: datetime
    kind: str
    text: str | None = None
    author: str | None = None
    attachment_url: str | None = None
    attachment_name: str | None = None


@dataclass(frozen=True)
class AffectedOrganisation:
    """A client organisation a ticket's problem affects (one failure, many clients).

    Its key on the ticket is `id` when given, else `name`: adding it again adds nothing."""

    name: str
    id: int | None = None

    @property
    def key(self) -> str:
        return f"id:{self.id}" if self.id is not None else f"name:{self.name.strip().casefold()}"


@dataclass(frozen=True)
class IncidentLink:
    """A known incident the ticket tracks (`incident`: the hotline's incident id)."""

    incident: str
    label: str | None = None


@dataclass(frozen=True)
class TicketView:
    number: str
    topic: str
    status: str  # Новая / В работе / Решена / Закрыта
    priority: str
    organisation_id: int | None
    organisation_name: str | None
    first_stage_due: datetime | None
    resolution_due: datetime | None
    created_at: datetime
    duplicated_by_phone_at: datetime | None = None
    url: str | None = None
    history: tuple[TicketEntryView, ...] = field(default=())
    # What the draft carried, as the portal keeps it (for the console and the REST API).
    product: str | None = None
    vehicles: tuple[str, ...] = ()
    contact_name: str | None = None
    contact_id: int | None = None
    caller: str | None = None
    description: str = ""
    call_ref: str | None = None
    recording_url: str | None = None
    # One problem, many clients: the organisations it affects, and the incidents it tracks.
    affected_organisations: tuple[AffectedOrganisation, ...] = ()
    incidents: tuple[IncidentLink, ...] = ()


class Portal(Protocol):
    # True when the portal keeps its tickets in this service's own database (the built-in
    # portal): on SQLite the IVR then asks it on the request's thread. Any other portal,
    # and any portal on PostgreSQL, is asked on a lookup thread the caller stops waiting
    # for (`ivr.conversation._ask_portal` says why).
    reads_own_database: bool

    def create_ticket(self, draft: TicketDraft) -> TicketView:
        """Create (or, for a known idempotency key, return the existing) ticket."""
        ...

    def get_ticket(self, number: str, *, history: bool = True) -> TicketView:
        """Raises TicketNotFound. `history=False`: the caller does not need the ticket's
        history, which the portal may then leave out (`history` empty)."""
        ...

    def add_entry(
        self,
        number: str,
        *,
        text: str | None = None,
        attachment_url: str | None = None,
        attachment_name: str | None = None,
        author: str | None = None,
        dedup_key: str | None = None,
    ) -> TicketView:
        """Append a comment and/or attachment, in chronological order; a repeated
        dedup_key is accepted once."""
        ...

    def record_phone_duplicate(
        self, number: str, *, at: datetime, caller: str | None, call_ref: str | None
    ) -> TicketView:
        """The regulation's rule for critical failures: the ticket was duplicated by a
        phone call at `at` from `caller`; raises the priority to critical."""
        ...

    def open_tickets(
        self,
        *,
        contact_id: int | None = None,
        caller: str | None = None,
        limit: int = 3,
        history: bool = True,
    ) -> tuple[TicketView, ...]:
        """Tickets not solved or closed whose contact is `contact_id` or whose caller is
        `caller` (E.164), newest first, at most `limit`; none when both are None.
        `history=False` as for `get_ticket`."""
        ...

    def add_affected_organisations(
        self,
        number: str,
        organisations: Sequence[AffectedOrganisation],
        *,
        author: str | None = None,
    ) -> TicketView:
        """Add client organisations the ticket's problem affects; one already on the
        ticket (same `key`) is not added again."""
        ...

    def link_incident(
        self, number: str, link: IncidentLink, *, author: str | None = None
    ) -> TicketView:
        """Note that the ticket tracks a known incident; the same incident is linked once."""
        ...

    def ticket_url(self, number: str) -> str | None:
        """Where a human opens the ticket (console links), if the portal has pages."""
        ...
