"""The data model: directory, calls and their events, the ticket outbox, the built-in
portal's tickets, the roster, console users and API tokens.

All times are aware UTC (see `UTCDateTime`). Per-call state lives on the `Call` row (the
IVR's in `state`, routing's in `routing_state`), keyed by CallSid, so any web process can
serve any step of a call.
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from callcenter.db import Base, UTCDateTime
from callcenter.vocabulary import Outcome

# ---------------------------------------------------------------- directory


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    inn: Mapped[str | None] = mapped_column(String(12), unique=True)
    # "Unless the contract says otherwise": business days for stage one, and per topic slug.
    stage_one_days: Mapped[int | None] = mapped_column(Integer)
    topic_days: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    contacts: Mapped[list[Contact]] = relationship(back_populates="organisation")


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(300))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship(back_populates="contacts")
    phones: Mapped[list[ContactPhone]] = relationship(
        back_populates="contact", cascade="all, delete-orphan"
    )


class ContactPhone(Base):
    __tablename__ = "contact_phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # One number belongs to one contact: a lookup must be unambiguous.
    e164: Mapped[str] = mapped_column(String(20), unique=True)

    contact: Mapped[Contact] = relationship(back_populates="phones")


# ---------------------------------------------------------------- calls


class Call(Base):
    """One row per call, keyed by Twilio's CallSid."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    line: Mapped[str | None] = mapped_column(String(40), index=True)  # E.164 of To/Called
    caller_raw: Mapped[str | None] = mapped_column(String(120))
    caller_e164: Mapped[str | None] = mapped_column(String(20), index=True)
    # mobile / landline / withheld / sip / client / foreign / invalid
    caller_kind: Mapped[str] = mapped_column(String(20), default="invalid")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    # Name and company as the caller said them (unknown callers), transcribed if available.
    caller_said_name: Mapped[str | None] = mapped_column(Text)
    # consultation / incident / critical / stolen / status / abandoned (None while undecided)
    category: Mapped[str | None] = mapped_column(String(20), index=True)
    topic: Mapped[str | None] = mapped_column(String(40), index=True)
    product: Mapped[str | None] = mapped_column(String(40))
    vehicles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Per-call state, one column per owner (each written by its owner alone):
    # the IVR's `CallState` (current step, retries, collected answers),
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # on-duty routing's `RoutingState` (None until the call is routed),
    routing_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # and the SIDs of every recording of the call, for the retention purge.
    recording_sids: Mapped[list[str]] = mapped_column(JSON, default=list)
    recording_sid: Mapped[str | None] = mapped_column(String(64))
    recording_url: Mapped[str | None] = mapped_column(Text)
    recording_duration: Mapped[int | None] = mapped_column(Integer)
    # Twilio's call status and the SequenceNumber it came with (order-safe updates).
    twilio_status: Mapped[str | None] = mapped_column(String(20))
    status_sequence: Mapped[int | None] = mapped_column(Integer)
    # in_progress / completed / interrupted / abandoned / failed
    outcome: Mapped[str] = mapped_column(String(30), default=Outcome.IN_PROGRESS, index=True)
    # connected / no_answer / voicemail / not_routed ... (routing's word)
    routing_outcome: Mapped[str | None] = mapped_column(String(30))
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    flag_reason: Mapped[str | None] = mapped_column(Text)
    called_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    called_back_by: Mapped[str | None] = mapped_column(String(120))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set by the retention purge: numbers, names and recordings removed (personal data law).
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    contact: Mapped[Contact | None] = relationship()
    organisation: Mapped[Organisation | None] = relationship()
    events: Mapped[list[CallEvent]] = relationship(
        back_populates="call", order_by="CallEvent.id", cascade="all, delete-orphan"
    )
    ticket_request: Mapped[TicketRequest | None] = relationship(back_populates="call")
    legs: Mapped[list[DialLeg]] = relationship(
        back_populates="call", order_by="DialLeg.id", cascade="all, delete-orphan"
    )
    notes: Mapped[list[CallNote]] = relationship(
        back_populates="call", order_by="CallNote.id", cascade="all, delete-orphan"
    )
    # Every SMS about this call (alerts, the caller's confirmation), oldest first.
    sms_messages: Mapped[list[SmsMessage]] = relationship(
        primaryjoin="Call.id == SmsMessage.call_id", order_by="SmsMessage.id", viewonly=True
    )
    # The call-back queue's item for this call, if it needed one (callcenter.callbacks).
    callback: Mapped[CallbackItem | None] = relationship(
        primaryjoin="Call.id == CallbackItem.call_id", viewonly=True, uselist=False
    )


class CallEvent(Base):
    """One event per webhook (and per domain action), so a supervisor can replay the path."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(40))
    step: Mapped[str | None] = mapped_column(String(60))
    digits: Mapped[str | None] = mapped_column(String(60))
    speech: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    call: Mapped[Call] = relationship(back_populates="events")


class CallNote(Base):
    __tablename__ = "call_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    author: Mapped[str] = mapped_column(String(120))
    text: Mapped[str] = mapped_column(Text)

    call: Mapped[Call] = relationship(back_populates="notes")


# ---------------------------------------------------------------- the ticket outbox


class TicketRequest(Base):
    """The outbox: written in the same transaction as the call; a job makes the ticket.

    status: pending (waiting for a job), done (portal gave a number), failed (rejected or
    out of tries; a supervisor may retry). `call_id` is unique: one call, one ticket.
    """

    __tablename__ = "ticket_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), unique=True
    )
    # Sent to the portal as the idempotency key (normally the CallSid).
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    draft: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    ticket_number: Mapped[str | None] = mapped_column(String(40), index=True)
    # Follow-ups done (keys: recording, sms, alert) so re-runs never repeat them.
    followups: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    call: Mapped[Call | None] = relationship(back_populates="ticket_request")


class SmsMessage(Base):
    """Every SMS we send or skip, keyed so a re-run job never sends twice.

    `status` is our side of the story (did Twilio take it); `delivery` is Twilio's, as its
    status callbacks last reported it (`callcenter.tickets.delivery`)."""

    __tablename__ = "sms_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    # The call the message is about (a chain alert, the caller's confirmation, ...); None
    # for one about no single call (an incident's digest).
    call_id: Mapped[int | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), index=True
    )
    # Who it is for, as the roster named them when it was sent (None: see `to`).
    recipient: Mapped[str | None] = mapped_column(String(200))
    to: Mapped[str | None] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    # sent / skipped / failed / retry / sending / unknown (see callcenter.tickets.notifications)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    twilio_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    # Twilio's MessageStatus as last reported (queued / sent / delivered / undelivered /
    # failed ...; never moved backwards) and its ErrorCode (e.g. 30003).
    delivery: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The last change of the row: its outcome or Twilio's last report.
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- built-in portal


class Ticket(Base):
    """A ticket of the built-in portal (embedded default)."""

    __tablename__ = "portal_tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Human-friendly sequential number, as said to callers.
    number: Mapped[int] = mapped_column(Integer, unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    topic: Mapped[str] = mapped_column(String(40))
    product: Mapped[str | None] = mapped_column(String(40))
    vehicles: Mapped[list[str]] = mapped_column(JSON, default=list)
    contact_name: Mapped[str | None] = mapped_column(String(300))
    # Indexed: every identified caller's first webhook asks for their open tickets.
    contact_id: Mapped[int | None] = mapped_column(Integer, index=True)
    organisation_name: Mapped[str | None] = mapped_column(String(300))
    organisation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    caller: Mapped[str | None] = mapped_column(String(120), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    call_ref: Mapped[str | None] = mapped_column(String(64))
    recording_url: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    # Новая / В работе / Решена / Закрыта
    status: Mapped[str] = mapped_column(String(20), default="Новая")
    first_stage_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duplicated_by_phone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # One problem, many clients: [{"id", "name"}] and [{"incident", "label"}] (None: none).
    affected_organisations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    incidents: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    history: Mapped[list[TicketEntry]] = relationship(
        back_populates="ticket", order_by="TicketEntry.id", cascade="all, delete-orphan"
    )


class TicketEntry(Base):
    """A ticket's chronological history: comments, attachments, status changes."""

    __tablename__ = "portal_ticket_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("portal_tickets.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(30))  # created / comment / attachment / ...
    author: Mapped[str | None] = mapped_column(String(120))
    text: Mapped[str | None] = mapped_column(Text)
    attachment_url: Mapped[str | None] = mapped_column(Text)
    attachment_name: Mapped[str | None] = mapped_column(String(300))
    # Idempotency for add-comment/attachment retries.
    dedup_key: Mapped[str | None] = mapped_column(String(120), unique=True)

    ticket: Mapped[Ticket] = relationship(back_populates="history")


# ---------------------------------------------------------------- roster and routing


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(60), unique=True)  # stable id from roster.yaml
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # specialist / head
    phones: Mapped[list[str]] = mapped_column(JSON, default=list)
    sms: Mapped[str | None] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Shift(Base):
    """A weekly pattern (weekdays/working_days) or a dated duty, in Moscow local time."""

    __tablename__ = "shifts"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    # consultation / urgent / both
    duty: Mapped[str] = mapped_column(String(20), default="both")
    # "working_days", "mon,tue,...", or "date"
    pattern: Mapped[str] = mapped_column(String(60))
    on_date: Mapped[date | None] = mapped_column(Date)
    start_local: Mapped[str] = mapped_column(String(5))  # "09:30"
    end_local: Mapped[str] = mapped_column(String(5))  # "18:00"; earlier than start → overnight
    # Position in the urgent chain (1 = first).
    chain_order: Mapped[int] = mapped_column(Integer, default=1)


class DialLeg(Base):
    """One person rung for one call: who, when, the result, time to answer."""

    __tablename__ = "dial_legs"
    __table_args__ = (UniqueConstraint("call_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    staff_key: Mapped[str | None] = mapped_column(String(60))
    staff_name: Mapped[str | None] = mapped_column(String(200))
    number: Mapped[str] = mapped_column(String(40))
    child_call_sid: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ringing / no-answer / busy / failed / declined / accepted / canceled
    result: Mapped[str] = mapped_column(String(20), default="ringing")
    # chain (routing rang them for the caller) / callback_specialist / callback_client
    # (a call back: the specialist's phone, then the client bridged to them)
    purpose: Mapped[str] = mapped_column(String(20), default="chain", server_default="chain")

    call: Mapped[Call] = relationship(back_populates="legs")


class CallbackItem(Base):
    """One call that needs a call back: the queue a specialist works from, oldest first.

    One item per call (`call_id` unique). status: open (waiting in the queue), taken (a
    specialist owns it), dialing (their phone is being rung / they talk to the client),
    done (the result is recorded: reached or a wrong number). An unanswered attempt puts
    the item back to open with `attempts` counted. See `callcenter.callbacks`.
    """

    __tablename__ = "callback_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    # voicemail / abandoned / urgent_missed / ticket_failed / not_served / requested
    reason: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    # When the caller started waiting (the call's start) and the SLA deadline.
    waiting_since: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    taken_by: Mapped[str | None] = mapped_column(String(120))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # reached / not_reached / wrong_number, with the specialist's note
    result: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    # Twilio's CallSid of the leg to the specialist of the current attempt, and what the
    # bridge to the client ended with (DialCallStatus).
    specialist_call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    bridge_status: Mapped[str | None] = mapped_column(String(20))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[str | None] = mapped_column(String(120))
    sla_alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    call: Mapped[Call] = relationship()


# ---------------------------------------------------------------- access


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    """A console user: supervisor (everything) or specialist (read-only log)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every console session carries the generation it was signed in under; logging out,
    # a new password or "sign out everywhere" bumps it, which ends every copy of them.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# ---------------------------------------------------------------- known incidents


class Incident(Base):
    """A known incident (a failure hitting many clients at once), tracked on one portal
    ticket; callers hear of it first and may join it (`callcenter.incidents`).

    `open_product` is the product while the incident is open and NULL once closed: unique,
    so two web processes detecting the same surge at once open one incident.
    """

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    # studio / silver_studio / online / all
    product: Mapped[str] = mapped_column(String(20))
    open_product: Mapped[str | None] = mapped_column(String(20), unique=True)
    # open / closed / merged (into another incident: its closing message says which)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    # The portal ticket the work is tracked in; until the pipeline has made it, the
    # ticket request that will (`ticket_request_id`).
    ticket_number: Mapped[str | None] = mapped_column(String(40))
    ticket_request_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_requests.id"))
    detected: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_by: Mapped[str | None] = mapped_column(String(120))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(120))
    closing_message: Mapped[str | None] = mapped_column(Text)
    # Detected ones: the on-duty specialist and the head of support were texted.
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Closed ones: the closing message is on the ticket and every resolution SMS settled.
    followups_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The on-duty digest: when it last went, and how many had joined by then.
    digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digest_joined: Mapped[int] = mapped_column(Integer, default=0)

    ticket_request: Mapped[TicketRequest | None] = relationship()
    calls: Mapped[list[IncidentCall]] = relationship(
        back_populates="incident", order_by="IncidentCall.id", cascade="all, delete-orphan"
    )


class IncidentCall(Base):
    """A call tied to an incident: a caller who joined it (pressed 1), or one of the calls
    that made the service detect it."""

    __tablename__ = "incident_calls"
    __table_args__ = (UniqueConstraint("incident_id", "call_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    # joined / detected
    kind: Mapped[str] = mapped_column(String(10), default="joined")
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    incident: Mapped[Incident] = relationship(back_populates="calls")
    call: Mapped[Call] = relationship()
    organisation: Mapped[Organisation | None] = relationship()


Index("ix_calls_outcome_started", Call.outcome, Call.started_at)


def clipped_value(column: ColumnElement[Any], value: Any) -> Any:
    """`value` as it may be stored in `column`.

    Twilio's free-text parameters (statuses, digits, caller IDs) are stored as sent, but
    never longer than their column: PostgreSQL refuses an over-long value where SQLite would
    keep it, and a caller must not lose a step because a parameter was odd."""
    limit = _limit_of(column)
    if limit is None or value is None:
        return value
    if limit == _INTEGER:
        # A SequenceNumber or duration beyond PostgreSQL's integer is not Twilio's.
        if isinstance(value, int) and not -(2**31) <= value < 2**31:
            return None
        return value
    if isinstance(value, str) and len(value) > limit:
        return value[:limit]
    return value


# `_limit_of` for an integer column (a length is positive).
_INTEGER = 0


@functools.cache
def _limit_of(column: ColumnElement[Any]) -> int | None:
    """What bounds a value of `column`: its length, `_INTEGER`, or None. Cached per column:
    a new call's row clips every column, and the type checks cost more than the insert's
    other Python."""
    if isinstance(column.type, Integer):
        return _INTEGER
    length = getattr(column.type, "length", None)
    if not length or not isinstance(column.type, String) or getattr(column, "unique", False):
        return None  # never clip a key: a clipped CallSid could name another call
    return int(length)


def _clip_to_column_lengths(_mapper: object, _connection: object, target: Base) -> None:
    for column in target.__table__.columns:
        value = getattr(target, column.key, None)
        clipped = clipped_value(column, value)
        if clipped is not value:
            setattr(target, column.key, clipped)


for _model in (Call, CallEvent):
    event.listen(_model, "before_insert", _clip_to_column_lengths)
    event.listen(_model, "before_update", _clip_to_column_lengths)
