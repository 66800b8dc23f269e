"""The ticket outbox: a ticket request is written in the same transaction as the call; a
job turns it into a portal ticket.

A row's life::

    pending ──portal gives a number──▶ done ──follow-ups (recordings, SMS, alerts)
      │ ▲
      │ └── portal unavailable, tries left: attempts += 1, next_attempt_at = now + backoff
      └──▶ failed  (rejected by the portal, or the last try failed; on-duty staff alerted)
             └── supervisor: `callcenter outbox retry ID` ──▶ pending

`next_attempt_at` says when the next job for the row is due: for a pending row, the next
try at creating the ticket; for a done or failed row, its outstanding follow-ups; None when
nothing is due. The retry schedule lives in the row, not in Redis, so it survives a worker
restart and Redis losing its data: a periodic sweep (`due_ticket_ids`, `due_followup_ids`)
re-submits whatever is due.

The same CallSid never yields two tickets: the row is unique per call and per idempotency
key (the CallSid), and the portal is asked with that key, so a job that runs twice, or two
workers running the same request at once, get the same ticket back. Rows are never locked
across a portal call (on SQLite the built-in portal writes to the same database file, and a
write lock held over the call would stall it); outcomes are written in a short transaction
that re-checks the state: a ticket number by one conditional UPDATE (a number in hand always
wins), a failure under the row's lock (`lock_request`), counted once however many runs saw
it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.interfaces import ORMOption

from callcenter.clock import Clock
from callcenter.db.models import TicketRequest
from callcenter.errors import (
    PortalRejected,
    PortalUnavailable,
    TicketNotFound,
    TicketRequestNotRetryable,
    UnknownTicketRequest,
)
from callcenter.portal.protocol import Portal, TicketDraft, TicketView

log = logging.getLogger(__name__)

PENDING = "pending"
DONE = "done"
FAILED = "failed"
STATUSES = (PENDING, DONE, FAILED)

# Seconds to wait after the n-th failed try (the last value repeats): seconds for the
# first ones — most trouble is a dependency restarting, and the work should go on as soon
# as it is back — then growing to an hour, so a dependency down for long is not hammered.
# After the last one (~3.8 h of tries) the request fails and a person is told; a
# supervisor can retry it at any time. A long wait does not outlast the trouble: the first
# request that gets through again makes every other one waiting out its backoff due at
# once (`resume_waiting`).
RETRY_DELAYS: tuple[int, ...] = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3600, 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1

# Keys of `TicketRequest.draft` beyond the `TicketDraft` fields.
DUPLICATE_OF = "duplicate_of"  # the caller named an existing ticket (critical path)
ADDITION_TO = "addition_to"  # a repeat caller added to their open ticket (no new ticket)
RECEIVED_AT = "received_at"  # when the call started: what the deadlines count from
RECORDING_SID = "recording_sid"
# The caller joined a known incident (`callcenter.incidents`): {"id", "comment", "sms"}.
INCIDENT = "incident"
# A phone duplicate of the ticket that request `id` is making (a known incident detected a
# moment ago, its ticket not made yet): the job waits for that number, then records the
# duplicate on it and keeps the number under DUPLICATE_OF.
DUPLICATE_OF_REQUEST = "duplicate_of_request"
# Where the ticket's number goes in a text written before it was known (the incident's SMS).
NUMBER_SLOT = "{ticket_number}"

_DRAFT_FIELDS = {f.name for f in fields(TicketDraft)}
_DATETIME_FIELDS = ("first_stage_due", "resolution_due")


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after `attempts` failed tries (1 = the first try failed)."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    return timedelta(seconds=RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1])


# ---------------------------------------------------------------- the draft as JSON


def draft_to_json(draft: TicketDraft, **extra: Any) -> dict[str, Any]:
    """A `TicketDraft` as the JSON kept in `TicketRequest.draft` (ISO datetimes)."""
    data = asdict(draft)
    data["vehicles"] = list(draft.vehicles)
    for name in _DATETIME_FIELDS:
        value = data[name]
        data[name] = value.isoformat() if value is not None else None
    data.update(extra)
    return data


def draft_from_json(data: Mapping[str, Any]) -> TicketDraft:
    """The `TicketDraft` kept in a request; keys that are not draft fields are ignored."""
    values = {k: v for k, v in data.items() if k in _DRAFT_FIELDS}
    values["vehicles"] = tuple(values.get("vehicles") or ())
    for name in _DATETIME_FIELDS:
        raw = values.get(name)
        values[name] = datetime.fromisoformat(raw) if raw else None
    return TicketDraft(**values)


# ---------------------------------------------------------------- writing and reading rows


_requests = cast(Table, TicketRequest.__table__)
# Built once: building and keying a statement costs as much as running it on SQLite.
# A new request's INSERT: nothing on a conflict (the call's or the key's row exists); the
# new row's id when it was written.
_INSERT_REQUEST = {
    "sqlite": sqlite.insert(_requests).on_conflict_do_nothing().returning(_requests.c.id),
    "postgresql": postgresql.insert(_requests).on_conflict_do_nothing().returning(_requests.c.id),
}
_REQUEST_OF_CALL_OR_KEY = select(_requests.c.id, _requests.c.status, _requests.c.draft).where(
    (_requests.c.call_id == bindparam("call_id"))
    | (_requests.c.idempotency_key == bindparam("idempotency_key"))
)
# Not a done row's, even one the ticket job finished between our read and this write
# (PostgreSQL re-checks the condition once the job's lock is released).
_NEW_DRAFT = (
    update(_requests)
    .where(_requests.c.id == bindparam("request_id"), _requests.c.status != DONE)
    .values(
        draft=bindparam("draft", type_=_requests.c.draft.type),
        updated_at=bindparam("now", type_=_requests.c.updated_at.type),
    )
)


def put_request(
    connection: Connection,
    *,
    call_id: int,
    idempotency_key: str,
    draft: dict[str, Any],
    now: datetime,
) -> int:
    """The id of the call's ticket request, created if missing, in the caller's
    transaction, with Core statements (a session using `connection` flushes first).

    Safe against two webhooks of the same call racing: the insert does nothing on a
    conflict (PostgreSQL waits for the other transaction, SQLite serialises writers) and the
    row is read back. A pending or failed row takes the newer draft; a done one never
    changes (its ticket exists).
    """
    values = {
        "call_id": call_id,
        "idempotency_key": idempotency_key,
        "draft": draft,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "followups": {},
        "created_at": now,
        "updated_at": now,
    }
    new_id: int | None = connection.execute(
        _INSERT_REQUEST[connection.dialect.name], values
    ).scalar()
    if new_id is not None:
        return new_id  # written just now with this draft
    row = connection.execute(
        _REQUEST_OF_CALL_OR_KEY, {"call_id": call_id, "idempotency_key": idempotency_key}
    ).first()
    if row is None:  # pragma: no cover - the insert or the conflicting row guarantees one
        raise RuntimeError(f"ticket request for call {call_id} vanished")
    if row.status != DONE and row.draft != draft:
        connection.execute(_NEW_DRAFT, {"request_id": row.id, "draft": draft, "now": now})
    return int(row.id)


def lock_request(
    session: Session, request_id: int, *, options: Sequence[ORMOption] = ()
) -> TicketRequest | None:
    """The row, locked for writing until the transaction ends (None if there is none),
    re-read so the caller sees the latest state; `options` load related rows with it
    (e.g. `joinedload(TicketRequest.call)`: only the request's row is locked).

    PostgreSQL: SELECT … FOR UPDATE takes the row lock. SQLite has no row locks: a no-op
    UPDATE first takes the database's write lock, which serialises writers.
    """
    if session.get_bind().dialect.name == "sqlite":
        result = session.execute(
            update(TicketRequest)
            .where(TicketRequest.id == request_id)
            .values(updated_at=TicketRequest.updated_at)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            return None
        return session.get(TicketRequest, request_id, populate_existing=True, options=options)
    return session.get(
        TicketRequest,
        request_id,
        populate_existing=True,
        with_for_update={"of": TicketRequest} if options else True,
        options=options,
    )


def get_request(session: Session, request_id: int) -> TicketRequest:
    row = session.get(TicketRequest, request_id)
    if row is None:
        raise UnknownTicketRequest(f"no ticket request with id {request_id}")
    return row


def due_ticket_ids(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Pending requests whose next try has come, oldest first."""
    return list(
        session.scalars(
            select(TicketRequest.id)
            .where(
                TicketRequest.status == PENDING,
                TicketRequest.next_attempt_at.is_(None) | (TicketRequest.next_attempt_at <= now),
            )
            .order_by(TicketRequest.next_attempt_at, TicketRequest.id)
            .limit(limit)
        )
    )


def due_followup_ids(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Done or failed requests with follow-ups due (recordings, SMS, alerts)."""
    return list(
        session.scalars(
            select(TicketRequest.id)
            .where(
                TicketRequest.status.in_((DONE, FAILED)),
                TicketRequest.next_attempt_at <= now,
            )
            .order_by(TicketRequest.next_attempt_at, TicketRequest.id)
            .limit(limit)
        )
    )


def resume_waiting(
    sessions: sessionmaker[Session], now: datetime, statuses: Sequence[str], *, why: str
) -> int:
    """Make every request with one of `statuses` that is waiting out a backoff (its next
    job due after `now`: only transient trouble puts it there) due now, for the sweep to
    submit; how many. Called when a request that had met trouble got through: the
    dependency is back. Rows another transaction holds are skipped (they are being worked
    on), so this never waits for, or deadlocks with, a job. A failure here is logged and
    costs only the head start: each row still has its own schedule."""
    waiting = (
        select(TicketRequest.id)
        .where(TicketRequest.status.in_(statuses), TicketRequest.next_attempt_at > now)
        .with_for_update(skip_locked=True)
    )
    try:
        with sessions() as session, session.begin():
            ids = list(session.scalars(waiting))
            if ids:
                session.execute(
                    update(TicketRequest)
                    .where(TicketRequest.id.in_(ids))
                    .values(next_attempt_at=now)
                    .execution_options(synchronize_session=False)
                )
    except SQLAlchemyError as exc:
        log.warning("%s, but the others waiting stay on their backoff: %s", why, exc)
        return 0
    if ids:
        log.info("%s: %d more %s request(s) due now, not after their backoff", why, len(ids),
                 "/".join(statuses))  # fmt: skip
    return len(ids)


def list_requests(
    session: Session, *, status: str | None = None, limit: int = 100
) -> Sequence[TicketRequest]:
    """Newest first; `status` one of pending / done / failed."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    query = select(TicketRequest).order_by(TicketRequest.id.desc()).limit(limit)
    if status is not None:
        query = query.where(TicketRequest.status == status)
    return session.scalars(query).all()


def retry_request(
    session: Session, request_id: int, *, now: datetime, by: str | None = None
) -> TicketRequest:
    """A supervisor's retry of a failed request: pending again, due now, tries from zero.

    The caller commits, then submits the request. The last error stays visible until the
    next try replaces it; each retry is noted in `followups["retries"]`.
    """
    row = lock_request(session, request_id)
    if row is None:
        raise UnknownTicketRequest(f"no ticket request with id {request_id}")
    if row.status != FAILED:
        what = (
            f"it already has ticket №{row.ticket_number}"
            if row.status == DONE
            else "it is still pending (a job will try it)"
        )
        raise TicketRequestNotRetryable(
            f"ticket request {request_id} cannot be retried: {what}; only failed ones can"
        )
    row.status = PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.updated_at = now
    followups = dict(row.followups or {})
    followups["retries"] = [*followups.get("retries", []), {"at": now.isoformat(), "by": by}]
    row.followups = followups
    return row


# ---------------------------------------------------------------- turning a row into a ticket

# `(recording_sid, twilio_url) -> the URL the ticket carries` (see `callcenter.calls.recordings`).
RecordingLink = Callable[[str, str], str]


@dataclass(frozen=True)
class Delivery:
    """What one run of `deliver` found or did."""

    request_id: int
    status: str  # the row's status afterwards
    ticket_number: str | None = None
    # True when this run wrote the outcome (a ticket, a scheduled retry, or a failure).
    recorded: bool = False
    error: str | None = None
    next_attempt_at: datetime | None = None

    @property
    def created(self) -> bool:
        return self.recorded and self.status == DONE

    @property
    def failed(self) -> bool:
        return self.recorded and self.status == FAILED


@dataclass(frozen=True)
class RequestState:
    """What a ticket job reads of its request before anything else (see `read_request`)."""

    request_id: int
    status: str
    ticket_number: str | None
    attempts: int
    draft: dict[str, Any]
    call_sid: str  # the idempotency key: the CallSid of the request's call


def read_request(sessions: sessionmaker[Session], request_id: int) -> RequestState:
    """The request as it stands, in one short read (no lock). Raises
    `UnknownTicketRequest`."""
    with sessions() as session:
        found = session.execute(_READ_REQUEST, {"request_id": request_id}).one_or_none()
    if found is None:
        raise UnknownTicketRequest(f"no ticket request with id {request_id}")
    status, number, attempts, draft, key = found
    return RequestState(request_id, status, number, attempts, draft, key)


def deliver(
    sessions: sessionmaker[Session],
    portal: Portal,
    request_id: int,
    *,
    clock: Clock,
    recording_link: RecordingLink | None = None,
    state: RequestState | None = None,
) -> Delivery:
    """Ask the portal for the request's ticket (or, for a phone duplicate, mark the named
    ticket) and record the outcome. Safe to run twice and concurrently.

    `state`: the request as the caller just read it (`read_request`), saving the read.
    `PortalRejected` fails the request at once; `PortalUnavailable` — or anything
    unexpected, so a bug cannot loop forever — schedules the next try until the tries run
    out. Errors of the database itself propagate: nothing could be recorded, and the sweep
    will find the row still due.
    """
    if state is None or state.request_id != request_id:
        state = read_request(sessions, request_id)
    if state.status != PENDING:
        return Delivery(request_id, state.status, state.ticket_number)
    stored, attempts_seen = state.draft, state.attempts
    draft = draft_from_json(stored)
    if recording_link is not None and stored.get(RECORDING_SID) and draft.recording_url:
        link = recording_link(stored[RECORDING_SID], draft.recording_url)
        draft = replace(draft, recording_url=link)

    view: TicketView | None = None
    error: str | None = None
    permanent = False
    resolved: dict[str, Any] | None = None
    try:
        if stored.get(DUPLICATE_OF_REQUEST) and not stored.get(DUPLICATE_OF):
            resolved = stored = _resolve_duplicate(sessions, stored)
        view = _ask_portal(portal, draft, stored)
    except PortalRejected as exc:
        error, permanent = f"portal rejected the ticket: {exc}", True
    except PortalUnavailable as exc:
        error = f"portal unavailable: {exc}"
    except _NumberComing as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - see the docstring: retried, then visible
        log.exception("ticket request %s: unexpected error from the portal", request_id)
        error = f"unexpected error: {exc.__class__.__name__}: {exc}"

    now = clock()
    with sessions() as session, session.begin():
        if view is not None:
            if resolved is not None:
                session.execute(
                    update(_requests)
                    .where(_requests.c.id == request_id, _requests.c.status == PENDING)
                    .values(draft=resolved)
                )
            delivery = _record_ticket(session, request_id, view.number, now)
        else:
            return _record_failure(
                session,
                request_id,
                attempts_seen=attempts_seen,
                error=error or "no reason given",
                permanent=permanent,
                now=now,
            )
    if delivery.recorded and attempts_seen > 0:
        # A request that had met trouble got through: the portal is back, and the others
        # waiting out their backoff need not wait any longer.
        resume_waiting(sessions, now, (PENDING,), why=f"ticket request {request_id} got through")
    return delivery


# The two statements every ticket runs, built once with their parameters bound at each
# execution: no per-ticket statement building and cache-key hashing. Core statements on
# the table (the ORM has no objects to keep in step with them).
# Only the columns `deliver` needs.
_READ_REQUEST = select(
    _requests.c.status,
    _requests.c.ticket_number,
    _requests.c.attempts,
    _requests.c.draft,
    _requests.c.idempotency_key,
).where(_requests.c.id == bindparam("request_id"))
_NOW = bindparam("now", type_=_requests.c.updated_at.type)
_RECORD_TICKET = (
    update(_requests)
    .where(_requests.c.id == bindparam("request_id"), _requests.c.status != DONE)
    .values(
        status=DONE,
        ticket_number=bindparam("number"),
        attempts=_requests.c.attempts + 1,
        done_at=_NOW,
        last_error=None,
        next_attempt_at=_NOW,  # follow-ups are due
        updated_at=_NOW,
    )
)


def _record_ticket(session: Session, request_id: int, number: str, now: datetime) -> Delivery:
    """The row takes the number, in one statement (the hot path of the pipeline). A number
    in hand wins even over a failure another run recorded meanwhile: the ticket exists."""
    result = session.execute(
        _RECORD_TICKET, {"request_id": request_id, "number": number, "now": now}
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Another run of the same request recorded the number first (the same ticket: the
        # portal knows the idempotency key).
        row = get_request(session, request_id)
        return Delivery(request_id, row.status, row.ticket_number)
    log.info(
        "ticket request %s: ticket №%s",
        request_id,
        number,
        extra={"ticket_request_id": request_id, "ticket_number": number},
    )
    return Delivery(request_id, DONE, number, recorded=True, next_attempt_at=now)


def _record_failure(
    session: Session,
    request_id: int,
    *,
    attempts_seen: int,
    error: str,
    permanent: bool,
    now: datetime,
) -> Delivery:
    row = lock_request(session, request_id)
    if row is None:
        raise UnknownTicketRequest(f"no ticket request with id {request_id}")
    if row.status != PENDING or row.attempts != attempts_seen:
        # Another run of the same request got here first and recorded its outcome.
        return Delivery(request_id, row.status, row.ticket_number)
    row.attempts += 1
    row.updated_at = now
    extra = {"ticket_request_id": request_id}
    if permanent or row.attempts >= MAX_ATTEMPTS:
        row.status = FAILED
        row.last_error = error
        row.next_attempt_at = now  # the on-duty alert is due
        followups = dict(row.followups or {})
        followups["failures"] = int(followups.get("failures", 0)) + 1
        row.followups = followups
        log.error(
            "ticket request %s failed after %d tries: %s",
            request_id,
            row.attempts,
            error,
            extra=extra,
        )
    else:
        row.last_error = error
        row.next_attempt_at = now + retry_delay(row.attempts)
        log.warning(
            "ticket request %s: try %d failed (%s); next try at %s",
            request_id,
            row.attempts,
            error,
            row.next_attempt_at.isoformat(),
            extra=extra,
        )
    return Delivery(
        request_id,
        row.status,
        row.ticket_number,
        recorded=True,
        error=row.last_error,
        next_attempt_at=row.next_attempt_at,
    )


class _NumberComing(Exception):
    """The ticket a phone duplicate waits for is still being made: tried again later."""


def _resolve_duplicate(
    sessions: sessionmaker[Session], stored: Mapping[str, Any]
) -> dict[str, Any]:
    """A duplicate of the ticket another request is making (`DUPLICATE_OF_REQUEST`): the
    draft with that ticket's number under DUPLICATE_OF once it has one. That request failed
    (no ticket will come): the draft as it is, so this call gets a ticket of its own — a
    critical failure ends up on a ticket either way. Raises `_NumberComing` meanwhile."""
    awaited = int(stored[DUPLICATE_OF_REQUEST])
    with sessions() as session:
        found = session.execute(_READ_REQUEST, {"request_id": awaited}).one_or_none()
    if found is not None and found.ticket_number:
        return {**stored, DUPLICATE_OF: found.ticket_number}
    if found is None or found.status == FAILED:
        log.warning("phone duplicate: request %s made no ticket; opening a new one", awaited)
        return dict(stored)
    raise _NumberComing(f"waiting for the number of ticket request {awaited}")


def duplicates_waiting_for(
    sessions: sessionmaker[Session], request_id: int, now: datetime
) -> list[int]:
    """Pending phone duplicates waiting for request `request_id`'s ticket
    (`DUPLICATE_OF_REQUEST`), made due now: it has its number (or failed), and they need
    not wait out their backoff. Their ids, to submit."""
    with sessions() as session, session.begin():
        rows = session.execute(
            select(TicketRequest.id, TicketRequest.draft).where(TicketRequest.status == PENDING)
        ).all()
        ids = [
            row_id
            for row_id, draft in rows
            if (draft or {}).get(DUPLICATE_OF_REQUEST) == request_id
            and not (draft or {}).get(DUPLICATE_OF)
        ]
        if ids:
            session.execute(
                update(TicketRequest)
                .where(TicketRequest.id.in_(ids), TicketRequest.status == PENDING)
                .values(next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
    return ids


def _ask_portal(portal: Portal, draft: TicketDraft, stored: Mapping[str, Any]) -> TicketView:
    addition_to = stored.get(ADDITION_TO)
    if addition_to:
        return _add_to_ticket(portal, str(addition_to), draft, stored)
    number = stored.get(DUPLICATE_OF)
    if not number:
        return portal.create_ticket(draft)
    received = stored.get(RECEIVED_AT)
    try:
        return portal.record_phone_duplicate(
            str(number),
            at=datetime.fromisoformat(received) if received else _required(draft.first_stage_due),
            caller=draft.caller,
            call_ref=draft.call_ref,
        )
    except TicketNotFound:
        # The caller named a ticket the portal does not know (a slip of the finger): a
        # critical failure must still end up on a ticket, so open one that says so.
        log.warning("phone duplicate: ticket №%s not found; opening a new ticket", number)
        note = f"Названная абонентом заявка №{number} на портале не найдена."
        return portal.create_ticket(replace(draft, description=f"{note}\n{draft.description}"))


# How entries this service adds to a ticket are signed.
AUTHOR = "Телефонная линия"


def _add_to_ticket(
    portal: Portal, number: str, draft: TicketDraft, stored: Mapping[str, Any]
) -> TicketView:
    """A repeat caller's addition: one comment with the call's link and the recording on
    the named ticket. Its dedup key is the recording's (the follow-ups attach recordings by
    the same key, so the recording lands once) or, without one, the call's."""
    sid = stored.get(RECORDING_SID)
    try:
        return portal.add_entry(
            number,
            text=draft.description,
            attachment_url=draft.recording_url,
            attachment_name=f"{sid}.mp3" if sid and draft.recording_url else None,
            author=AUTHOR,
            dedup_key=f"recording:{sid}" if sid else f"addition:{draft.call_ref}",
        )
    except TicketNotFound as exc:
        # The ticket was offered a minute ago; gone now is for a person to look at.
        raise PortalRejected(f"ticket №{number} to add to was not found: {exc}") from exc


def _required(value: datetime | None) -> datetime:
    if value is None:  # pragma: no cover - intake always stores received_at
        raise ValueError("a phone duplicate needs the time of the call")
    return value
