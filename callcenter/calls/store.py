"""The call log: one `Call` row per CallSid and one `CallEvent` per webhook.

Every Twilio webhook of a call goes through `lock_call` first (in the step cycle,
`callcenter.calls.step_cycle`), so two requests for the same
call (a retried webhook, a status callback racing an IVR step) are applied one after the
other, never interleaved. Status callbacks are applied order-safely by
`apply_status_callback`: Twilio gives no ordering guarantee, so a duplicate or late callback
is logged but never rewinds a call, and a finished call stays finished.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached

from callcenter.clock import as_utc
from callcenter.db.models import Call, CallEvent, Contact, clipped_value
from callcenter.directory.contacts import contact_ref
from callcenter.errors import CallCenterError
from callcenter.phones import classify, normalise
from callcenter.vocabulary import Outcome, sms_reach

# Twilio's call statuses; these five end a call and are never followed by another.
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# Where a status sits in a call's life, for callbacks that carry no SequenceNumber.
_STATUS_RANK = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "answered": 3,
}
_TERMINAL_RANK = 4


@dataclass(frozen=True)
class CallerFacts:
    """What the IVR knows about who is calling (from the caller ID and the directory)."""

    known: bool
    contact_id: int | None
    organisation_id: int | None
    sms_reachable: bool
    # The caller ID is a number to call back (not withheld, a SIP name, a client).
    has_number: bool = True


# Built once: constructing these per webhook costs more CPU than running them.
_calls = cast(Table, Call.__table__)


def _locking_statements(*columns: Any) -> tuple[Any, Any]:
    """(SQLite, PostgreSQL) statements that lock a call's row by CallSid and return
    `columns`. SQLite: an UPDATE ... RETURNING, whose write takes SQLite's lock before
    anything is read. PostgreSQL: SELECT ... FOR NO KEY UPDATE — we never change the key,
    and a plain FOR UPDATE would deadlock with the outbox job, whose UPDATE of
    ticket_requests takes FOR KEY SHARE on this row through the foreign key."""
    sqlite = (
        update(_calls)
        .where(_calls.c.call_sid == bindparam("sid"))
        .values(updated_at=bindparam("now", type_=_calls.c.updated_at.type))
        .returning(*columns)
    )
    postgres = select(*columns).where(_calls.c.call_sid == bindparam("sid"))
    return sqlite, postgres.with_for_update(key_share=True)


@dataclass(frozen=True, slots=True)
class CallColumns:
    """The columns of a call's row that a step reads, as the lock returned them: a step
    loads these fifteen columns instead of an ORM object of forty (a third of a step's
    CPU); `twilio_status` to `started_at` are what a status callback decides by, and
    `routing_state` what on-duty routing's leg steps do (NULL, and cheap, for the IVR)."""

    id: int
    call_sid: str
    state: dict[str, Any]
    category: str | None
    topic: str | None
    vehicles: list[str]
    caller_kind: str
    caller_e164: str | None
    contact_id: int | None
    organisation_id: int | None
    outcome: str
    twilio_status: str | None
    status_sequence: int | None
    started_at: datetime | None
    routing_state: dict[str, Any] | None


_STEP_COLUMNS = tuple(_calls.c[name] for name in CallColumns.__slots__)
_LOCK_SQLITE, _LOCK_POSTGRES = _locking_statements(*_STEP_COLUMNS)


def lock_call(connection: Connection, call_sid: str, *, now: datetime) -> CallColumns | None:
    """Lock the call's row until the transaction ends and return the columns a step reads;
    None when the call has no row yet.

    PostgreSQL: `SELECT ... FOR NO KEY UPDATE` locks the row. SQLite has no row locks: two
    transactions that both read first would fail on the second write instead of waiting
    for each other, so there the first statement is a write (see `_locking_statements`).
    A step that needs the ORM object loads it by id afterwards (`load_locked_call`).
    """
    if connection.dialect.name == "sqlite":
        row = connection.execute(_LOCK_SQLITE, {"sid": call_sid, "now": now}).first()
    else:
        row = connection.execute(_LOCK_POSTGRES, {"sid": call_sid}).first()
    if row is None:
        return None
    values = row._asdict()
    values["state"] = values["state"] or {}
    values["vehicles"] = list(values["vehicles"] or ())
    return CallColumns(**values)


def load_locked_call(session: Session, call_sid: str, *, now: datetime) -> Call | None:
    """`lock_call`, then the row as an ORM object read fresh (the lock makes it current)."""
    columns = lock_call(session.connection(), call_sid, now=now)
    if columns is None:
        return None
    return session.get_one(Call, columns.id, populate_existing=True)


# No VALUES: the SET clause comes from the parameters' keys, so one statement (and one cached
# compilation per set of columns) serves every step instead of a new statement per call.
_UPDATE_CALL = update(_calls).where(_calls.c.id == bindparam("call_id_"))


def update_call(connection: Connection, call_id: int, values: dict[str, Any]) -> None:
    """Write `values` (column keys) to the call's locked row with one Core UPDATE, each value
    clipped to its column as the ORM's listener would."""
    params = {key: clipped_value(_calls.c[key], value) for key, value in values.items()}
    params["call_id_"] = call_id
    connection.execute(_UPDATE_CALL, params)


def get_or_create_call(
    session: Session,
    call_sid: str,
    *,
    now: datetime,
    caller_raw: str | None,
    line_raw: str | None,
    find_contact: Any = None,
) -> tuple[Call, bool]:
    """The locked row of `call_sid`, created (caller identified) on the first webhook.

    Returns (call, created). `find_contact(session, e164) -> Contact | None` identifies the
    caller; it defaults to the directory's lookup. Two first webhooks racing each other
    both end with the one row: the loser of the insert re-reads the winner's.
    """
    call = load_locked_call(session, call_sid, now=now)
    if call is not None:
        return call, False
    return create_call(
        session,
        call_sid,
        now=now,
        caller_raw=caller_raw,
        line_raw=line_raw,
        find_contact=find_contact,
    )


# A new call's row: INSERT ... ON CONFLICT (call_sid) DO NOTHING RETURNING id, per dialect.
# A first webhook racing another for the same call inserts nothing and reads the winner's
# row instead, without the savepoint and the IntegrityError the ORM's INSERT would need.
_INSERT_CALL = {
    "sqlite": sqlite_insert(_calls)
    .on_conflict_do_nothing(index_elements=[_calls.c.call_sid])
    .returning(_calls.c.id),
    "postgresql": postgresql_insert(_calls)
    .on_conflict_do_nothing(index_elements=[_calls.c.call_sid])
    .returning(_calls.c.id),
}


# A new row's columns by their model default, sorted once: none (NULL), a constant, or a
# callable making a fresh list or dict for each row.
_DEFAULTED = [c for c in _calls.c if c.key not in ("id", "call_sid")]
_UNDEFAULTED = tuple(c.key for c in _DEFAULTED if c.default is None)
_CONSTANT_DEFAULTS = {
    c.key: cast(Any, c.default).arg
    for c in _DEFAULTED
    if c.default is not None and not c.default.is_callable
}
_MADE_DEFAULTS = tuple(
    (c.key, cast(Any, c.default).arg)
    for c in _DEFAULTED
    if c.default is not None and c.default.is_callable
)


def _new_call_defaults() -> dict[str, Any]:
    """Every column of a new row as the ORM's INSERT would write it: the model's default
    (a fresh list or dict where it is one), else NULL."""
    values: dict[str, Any] = dict.fromkeys(_UNDEFAULTED)
    values.update(_CONSTANT_DEFAULTS)
    for key, make in _MADE_DEFAULTS:
        values[key] = make(None)  # `list`, `dict`: a new one each time
    return values


def create_call(
    session: Session,
    call_sid: str,
    *,
    now: datetime,
    caller_raw: str | None,
    line_raw: str | None,
    find_contact: Any = None,
) -> tuple[Call, bool]:
    """The first webhook of a call whose row the lock did not find: create it (caller
    identified). Returns (call, created): False when a racing first webhook won the
    insert, whose row is returned locked.

    The row is written as `insert_call` writes it (the caller looked up with one Core
    SELECT, unless `find_contact(session, e164) -> Contact | None` is given) and handed to
    the session as if loaded: the ORM's INSERT, its savepoint and the contact's ORM object
    cost most of a first webhook's CPU.
    """
    values = _new_call_values(call_sid, now=now, caller_raw=caller_raw, line_raw=line_raw)
    if values["caller_e164"] is not None:
        if find_contact is None:
            _identify(session.connection(), values)
        else:
            contact: Contact | None = find_contact(session, values["caller_e164"])
            if contact is not None:
                values.update(contact_id=contact.id, organisation_id=contact.organisation_id)
    new_id = _insert(session.connection(), values)
    if new_id is None:
        existing = load_locked_call(session, call_sid, now=now)
        if existing is None:  # pragma: no cover - the unique key said it exists
            raise CallCenterError(f"call {call_sid}: neither inserted nor found")
        return existing, False
    call = Call(id=new_id, **values)
    # Persistent with exactly these values, as if just loaded: no SELECT, nothing to flush.
    make_transient_to_detached(call)
    session.add(call)
    return call, True


def insert_call(
    connection: Connection,
    call_sid: str,
    *,
    now: datetime,
    caller_raw: str | None,
    line_raw: str | None,
) -> tuple[CallColumns, bool]:
    """`create_call` without the ORM, for the IVR's first webhook: the new row's step
    columns (the caller identified by the directory), or — when a racing first webhook
    won the insert — the winner's row, locked. Returns (columns, created)."""
    values = _new_call_values(call_sid, now=now, caller_raw=caller_raw, line_raw=line_raw)
    if values["caller_e164"] is not None:
        _identify(connection, values)
    new_id = _insert(connection, values)
    if new_id is None:
        existing = lock_call(connection, call_sid, now=now)
        if existing is None:  # pragma: no cover - the unique key said it exists
            raise CallCenterError(f"call {call_sid}: neither inserted nor found")
        return existing, False
    return CallColumns(
        id=new_id,
        call_sid=call_sid,
        state=values["state"] or {},
        category=values["category"],
        topic=values["topic"],
        vehicles=list(values["vehicles"] or ()),
        caller_kind=values["caller_kind"],
        caller_e164=values["caller_e164"],
        contact_id=values["contact_id"],
        organisation_id=values["organisation_id"],
        outcome=values["outcome"],
        twilio_status=values["twilio_status"],
        status_sequence=values["status_sequence"],
        started_at=values["started_at"],
        routing_state=values["routing_state"],
    ), True


def _new_call_values(
    call_sid: str, *, now: datetime, caller_raw: str | None, line_raw: str | None
) -> dict[str, Any]:
    """A new call's row before the directory is asked: every column as the ORM's INSERT
    would write it, the caller's number classified."""
    caller = classify(caller_raw)
    values = _new_call_defaults()
    values.update(
        call_sid=call_sid,
        line=_line_e164(line_raw) or (line_raw or None),
        caller_raw=caller_raw,
        caller_e164=caller.e164,
        caller_kind=caller.kind,
        outcome=Outcome.IN_PROGRESS,
        started_at=now,
        updated_at=now,
    )
    return values


def _identify(connection: Connection, values: dict[str, Any]) -> None:
    """The caller's contact and organisation from the directory, into `values`."""
    ref = contact_ref(connection, values["caller_e164"])
    if ref is not None:
        values.update(contact_id=ref.contact_id, organisation_id=ref.organisation_id)


def _insert(connection: Connection, values: dict[str, Any]) -> int | None:
    """INSERT the row (each value clipped to its column, as the ORM's listener would);
    its id, or None when the CallSid already has a row. `values` is clipped in place, so
    an ORM object built from it holds what was written."""
    for key, value in values.items():
        values[key] = clipped_value(_calls.c[key], value)
    new_id: int | None = connection.execute(_INSERT_CALL[connection.dialect.name], values).scalar()
    return new_id


@functools.lru_cache(maxsize=64)
def _line_e164(line_raw: str | None) -> str | None:
    # The service has a couple of lines: normalising the same few numbers on every new call
    # is parsing work for nothing.
    return normalise(line_raw)


def caller_facts(call: Call | CallColumns, *, sms_foreign: bool = False) -> CallerFacts:
    """Who is calling, and whether an SMS can reach them (`vocabulary.sms_reach`, the rule
    the follow-ups send by)."""
    return CallerFacts(
        known=call.contact_id is not None,
        contact_id=call.contact_id,
        organisation_id=call.organisation_id,
        sms_reachable=sms_reach(call.caller_kind, call.caller_e164, sms_foreign=sms_foreign).ok,
        has_number=call.caller_e164 is not None,
    )


_events = cast(Table, CallEvent.__table__)
_INSERT_EVENT = insert(_events)


def record_event(
    db: Session | Connection,
    call: Call | int,
    kind: str,
    at: datetime,
    step: str | None = None,
    digits: str | None = None,
    speech: str | None = None,
    **detail: Any,
) -> None:
    """Append one event to the call's path (what a supervisor replays), with one Core
    INSERT — an ORM object flushed by the unit of work costs a third of a step's CPU.

    `call` is the ORM object (through its session) or the id of a written row (through a
    connection or a session). Changes still pending in the session are flushed first, so
    the call exists and the path keeps the order in which it was recorded.
    """
    if isinstance(db, Session):
        if db.new or (isinstance(call, Call) and call.id is None):
            db.flush()
        if isinstance(call, Call) and "events" in call.__dict__:
            # A path already loaded in this session learns of the new row when next read
            # (`add_recording` reads it to stay idempotent).
            db.expire(call, ["events"])
        connection = db.connection()
    else:
        connection = db
    call_id = call.id if isinstance(call, Call) else call
    connection.execute(
        _INSERT_EVENT,
        {
            "call_id": call_id,
            "at": at,
            # Clipped to their columns, as the ORM's listener does for its objects.
            "kind": clipped_value(_events.c.kind, kind),
            "step": clipped_value(_events.c.step, step),
            "digits": clipped_value(_events.c.digits, digits),
            "speech": speech,
            "detail": {k: v for k, v in detail.items() if v is not None},
        },
    )


@dataclass(frozen=True)
class StatusCallback:
    """One call status callback, as Twilio sent it."""

    call_sid: str
    status: str
    sequence: int | None = None
    timestamp: datetime | None = None
    duration: int | None = None
    caller_raw: str | None = None
    line_raw: str | None = None


@dataclass(frozen=True)
class StatusChange:
    """What `apply_status_callback` did: `applied` False for a duplicate or late callback;
    `ended` True when this callback is the one that finished the call."""

    applied: bool
    ended: bool
    reason: str


def parse_twilio_timestamp(raw: str | None) -> datetime | None:
    """Twilio's `Timestamp` (RFC 2822, "Thu, 27 Nov 2025 08:00:05 +0000"), or None."""
    if not raw:
        return None
    try:
        return as_utc(parsedate_to_datetime(raw))
    except (TypeError, ValueError, IndexError):
        return None


def _rank(status: str | None) -> int:
    if status is None:
        return -1
    if status in TERMINAL_STATUSES:
        return _TERMINAL_RANK
    return _STATUS_RANK.get(status, 0)


def apply_status_callback(
    session: Session, call: Call, callback: StatusCallback, *, now: datetime
) -> StatusChange:
    """Apply a status callback to a locked call row, order-safely, and log it.

    - A finished call (`completed`, `busy`, `failed`, `no-answer`, `canceled`) is never
      changed by a later callback, whatever its SequenceNumber.
    - With SequenceNumbers on both sides, an older or equal one is a late or duplicated
      callback: logged, not applied. Without them (the number-level status callback sends
      none), the callback's Timestamp and then the status's place in a call's life decide.
    """
    change, changes = decide_status(call, callback, now=now)
    kind, at, detail = status_event(change, callback, now=now)
    record_event(session, call, kind, at, **detail)
    for key, value in changes.items():
        setattr(call, key, value)
    return change


def apply_status_to_row(
    connection: Connection, call: CallColumns, callback: StatusCallback, *, now: datetime
) -> tuple[StatusChange, dict[str, Any]]:
    """`apply_status_callback` on the locked row's columns, with Core statements: the event
    inserted and the columns written. Returns the change and the columns it wrote."""
    change, changes = decide_status(call, callback, now=now)
    kind, at, detail = status_event(change, callback, now=now)
    record_event(connection, call.id, kind, at, **detail)
    if changes:
        update_call(connection, call.id, changes)
    return change, changes


def decide_status(
    call: Call | CallColumns, callback: StatusCallback, *, now: datetime
) -> tuple[StatusChange, dict[str, Any]]:
    """What a status callback does to a call (see `apply_status_callback`): the change and
    the columns to write (none for a duplicate or late one)."""
    stored_rank = _rank(call.twilio_status)
    new_rank = _rank(callback.status)
    reason = ""
    if call.twilio_status in TERMINAL_STATUSES:
        reason = "duplicate" if callback.status == call.twilio_status else "after_end"
    elif callback.sequence is not None and call.status_sequence is not None:
        if callback.sequence <= call.status_sequence:
            reason = "duplicate" if callback.sequence == call.status_sequence else "late"
    elif new_rank < stored_rank:
        reason = "late"
    if reason:
        return StatusChange(applied=False, ended=False, reason=reason), {}
    changes: dict[str, Any] = {"twilio_status": callback.status}
    if callback.sequence is not None:
        changes["status_sequence"] = callback.sequence
    changes["updated_at"] = now
    ended = callback.status in TERMINAL_STATUSES
    if ended:
        ended_at = changes["ended_at"] = callback.timestamp or now
        if callback.duration is not None:
            changes["duration_seconds"] = callback.duration
        elif call.started_at is not None:
            changes["duration_seconds"] = max(0, int((ended_at - call.started_at).total_seconds()))
    return StatusChange(applied=True, ended=ended, reason="applied"), changes


def status_event(
    change: StatusChange, callback: StatusCallback, *, now: datetime
) -> tuple[str, datetime, dict[str, Any]]:
    """The event a status callback leaves: kind, time and detail for `record_event`."""
    detail = {
        "status": callback.status,
        "sequence": callback.sequence,
        "duration": callback.duration,
        "reason": None if change.applied else change.reason,
    }
    kind = "status" if change.applied else "status_ignored"
    return kind, callback.timestamp or now, detail
