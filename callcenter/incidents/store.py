"""Known incidents as rows: open (declared or detected), close, list, and a call joining one.

Flask-free; each function runs in the caller's transaction and never commits. One incident
is open per product at a time, held by the unique `incidents.open_product` (NULL once
closed): a second declaration is refused, and two processes detecting one surge at once
open it once.

An incident is tracked on a portal ticket: a number given by the supervisor, or a ticket
the pipeline makes — a `critical_server_failure` request of its own (declared without a
number), or the first ticket of the calls that made the service detect it. Until the
pipeline has the number, `ticket_number` reads it from that request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from callcenter.db.models import Call, Incident, IncidentCall, TicketRequest
from callcenter.errors import IncidentConflict, InvalidInput, UnknownIncident
from callcenter.incidents import texts
from callcenter.portal.protocol import TicketDraft
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.regulation.topics import PRODUCTS, deadlines
from callcenter.tickets import intake, outbox
from callcenter.vocabulary import CRITICAL_TOPIC, TOPIC_PRIORITIES

OPEN = "open"
CLOSED = "closed"
# Merged into another incident by a supervisor: closed, its calls moved to the other one,
# and no closing SMS of its own. Which one is in its closing message (`merged_into`).
MERGED = "merged"
ALL = "all"
# What a supervisor types (`--product`) → the product slug stored (the regulation's).
PRODUCT_CHOICES: dict[str, str] = {
    "online": "online",
    "studio": "studio",
    "silver": "silver_studio",
    "silver_studio": "silver_studio",
    ALL: ALL,
}
JOINED = "joined"
DETECTED = "detected"


def product_slug(typed: str) -> str:
    """The stored product for what a supervisor typed; raises `InvalidInput`."""
    slug = PRODUCT_CHOICES.get(typed.strip().lower())
    if slug is None:
        raise InvalidInput(f"product must be one of online, studio, silver, all; got {typed!r}")
    return slug


def covers(incident_product: str, product: str | None) -> bool:
    """Does an incident for `incident_product` concern a call about `product` (None: the
    caller did not say — every incident concerns them)?"""
    return product is None or incident_product in (ALL, product)


def ticket_number(incident: Incident) -> str | None:
    """The incident's ticket number, once there is one."""
    if incident.ticket_number:
        return incident.ticket_number
    request = incident.ticket_request
    return request.ticket_number if request is not None else None


# ---------------------------------------------------------------- opening and closing


def open_incident(
    session: Session,
    *,
    product: str,
    message: str,
    now: datetime,
    calendar: BusinessCalendar,
    ticket: str | None = None,
    ticket_request_id: int | None = None,
    by: str | None = None,
    detected: bool = False,
) -> Incident:
    """Open an incident for `product` (a stored slug or what a supervisor typed).

    `ticket`: the portal ticket the work is tracked in; `ticket_request_id`: a request
    whose ticket it is (detection: the first call's); neither: a `critical_server_failure`
    request is written here for the pipeline (the caller commits, then submits
    `incident.ticket_request_id`). Raises `IncidentConflict` while an incident for the
    product is open, `InvalidInput` for an unusable product or ticket number.
    """
    slug = product if product in (*PRODUCTS, ALL) else product_slug(product)
    number = _ticket_number(ticket) if ticket is not None else None
    incident = Incident(
        product=slug,
        open_product=slug,
        status=OPEN,
        message=message.strip(),
        ticket_number=number,
        ticket_request_id=ticket_request_id,
        detected=detected,
        opened_at=now,
        opened_by=by,
        digest_joined=0,
    )
    try:
        with session.begin_nested():
            session.add(incident)
            session.flush()
    except IntegrityError:
        existing = open_for_product(session, slug)
        which = f" (№{existing.id})" if existing is not None else ""
        raise IncidentConflict(
            f"an incident for {slug} is open already{which}: close it first"
        ) from None
    if number is None and ticket_request_id is None:
        incident.ticket_request_id = _incident_ticket_request(session, incident, now, calendar)
    return incident


def _ticket_number(typed: str) -> str:
    number = typed.strip().lstrip("№#")
    if not number.isdigit() or len(number) > 12:
        raise InvalidInput(f"a ticket number is 1 to 12 digits, got {typed!r}")
    return number


def _incident_ticket_request(
    session: Session, incident: Incident, now: datetime, calendar: BusinessCalendar
) -> int:
    """A `critical_server_failure` request of the incident's own (no call): the pipeline
    makes its ticket like any other."""
    due = deadlines(CRITICAL_TOPIC, received=now, calendar=calendar)
    key = f"incident-{incident.id}"
    draft = TicketDraft(
        topic=CRITICAL_TOPIC,
        description=texts.ticket_description(incident),
        idempotency_key=key,
        product=PRODUCTS[incident.product].title if incident.product in PRODUCTS else None,
        priority=TOPIC_PRIORITIES.get(CRITICAL_TOPIC, "critical"),
        first_stage_due=due.first_stage_due,
        resolution_due=due.resolution_due,
    )
    request = TicketRequest(
        call_id=None,
        idempotency_key=key,
        draft=outbox.draft_to_json(
            draft, **{outbox.RECEIVED_AT: now.isoformat(), "interrupted": False}
        ),
        status=outbox.PENDING,
        attempts=0,
        next_attempt_at=now,
        followups={},
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    return request.id


def close_incident(
    session: Session, incident_id: int, *, message: str, now: datetime, by: str | None = None
) -> Incident:
    """Close the incident: no caller hears it any more; a job then records `message` on
    the ticket and texts every joined caller (`callcenter.incidents.followups`). Raises
    `UnknownIncident`, or `IncidentConflict` when it is closed already."""
    incident = _locked(session, incident_id)
    if incident.status != OPEN:
        raise IncidentConflict(f"incident №{incident_id} is closed already")
    incident.status = CLOSED
    incident.open_product = None
    incident.closed_at = now
    incident.closed_by = by
    incident.closing_message = message.strip()
    return incident


@dataclass(frozen=True)
class Merge:
    """What `merge_incident` did."""

    merged: Incident
    into: Incident
    moved_calls: int


def merge_incident(
    session: Session, incident_id: int, *, into: int, now: datetime, by: str | None = None
) -> Merge:
    """Merge incident `incident_id` into the open incident `into` (one failure found
    twice: a detected one and a declared one, or two products failing for one reason).

    Its calls move to `into`: the callers who joined it get the resolution SMS when
    `into` closes, once each, and none now. It is closed as merged (`MERGED`, its
    closing message says into which) and sends nothing of its own; a job then links its
    ticket to `into` on the portal and adds its organisations to `into`'s ticket
    (`callcenter.incidents.followups`). Callers who were offered it and press 1 now
    join `into` (`still_open`). Raises `UnknownIncident`, `IncidentConflict` when either
    is closed, `InvalidInput` for an incident merged into itself."""
    if incident_id == into:
        raise InvalidInput(f"incident №{incident_id} cannot be merged into itself")
    # Locked in id order: two supervisors merging the pair both ways wait, never deadlock.
    rows = {row_id: _locked(session, row_id) for row_id in sorted((incident_id, into))}
    merged, target = rows[incident_id], rows[into]
    for row in (merged, target):
        if row.status != OPEN:
            raise IncidentConflict(f"incident №{row.id} is closed already")
    on_target = select(IncidentCall.call_id).where(IncidentCall.incident_id == into)
    moving = (IncidentCall.incident_id == incident_id, IncidentCall.call_id.not_in(on_target))
    moved = session.scalar(select(func.count()).select_from(IncidentCall).where(*moving)) or 0
    session.execute(
        update(IncidentCall)
        .where(*moving)
        .values(incident_id=into)
        .execution_options(synchronize_session=False)
    )
    # A call tied to both already (it is on `into`): one row, one resolution SMS.
    session.execute(
        delete(IncidentCall)
        .where(IncidentCall.incident_id == incident_id)
        .execution_options(synchronize_session=False)
    )
    session.expire(merged, ["calls"])
    session.expire(target, ["calls"])
    # The joins its digests reported are not reported again by `into`'s.
    target.digest_joined += merged.digest_joined
    merged.status = MERGED
    merged.open_product = None
    merged.closed_at = now
    merged.closed_by = by
    merged.closing_message = texts.merged_note(into)
    return Merge(merged, target, moved)


def merged_into(incident: Incident) -> int | None:
    """The incident a merged one went into (its closing message says it); else None."""
    if incident.status != MERGED:
        return None
    return texts.merged_target(incident.closing_message or "")


def surviving(session: Session, incident_id: int, *, share_lock: bool = False) -> Incident | None:
    """The incident `incident_id` is now: itself, or the one it was merged into (and so
    on, when that one was merged too). `share_lock`: each row read is share-locked
    (PostgreSQL's FOR SHARE) till commit, so a merge, which locks both for update, waits
    for a call joining and the call never lands on an incident merged under it."""
    lock: dict[str, Any] = (
        {"with_for_update": {"read": True}, "populate_existing": True} if share_lock else {}
    )
    incident = session.get(Incident, incident_id, **lock)
    seen: set[int] = set()
    while incident is not None and (target := merged_into(incident)) is not None:
        if target in seen:
            return None  # never written so, but a loop must not hang a caller's step
        seen.add(incident.id)
        incident = session.get(Incident, target, **lock)
    return incident


def edit_message(session: Session, incident_id: int, message: str) -> Incident:
    incident = _locked(session, incident_id)
    if incident.status != OPEN:
        raise IncidentConflict(f"incident №{incident_id} is closed already")
    incident.message = message.strip()
    return incident


def _locked(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id, with_for_update=True, populate_existing=True)
    if incident is None:
        raise UnknownIncident(f"no incident with id {incident_id}")
    return incident


def get_incident(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise UnknownIncident(f"no incident with id {incident_id}")
    return incident


def open_for_product(session: Session, product: str) -> Incident | None:
    return session.scalars(select(Incident).where(Incident.open_product == product)).first()


def open_incidents(session: Session) -> Sequence[Incident]:
    """Open incidents, newest first, with their ticket requests."""
    return session.scalars(
        select(Incident)
        .where(Incident.status == OPEN)
        .options(joinedload(Incident.ticket_request))
        .order_by(Incident.opened_at.desc(), Incident.id.desc())
    ).all()


def list_incidents(session: Session, *, limit: int = 100) -> Sequence[Incident]:
    """Open ones first, then the rest; newest first within each."""
    return session.scalars(
        select(Incident)
        .options(joinedload(Incident.ticket_request))
        .order_by((Incident.status == OPEN).desc(), Incident.opened_at.desc(), Incident.id.desc())
        .limit(limit)
    ).all()


def joined_counts(session: Session, incident_ids: Sequence[int]) -> dict[int, int]:
    """How many callers joined each incident (pressed 1)."""
    if not incident_ids:
        return {}
    rows = session.execute(
        select(IncidentCall.incident_id, func.count())
        .where(IncidentCall.incident_id.in_(incident_ids), IncidentCall.kind == JOINED)
        .group_by(IncidentCall.incident_id)
    ).all()
    return {incident_id: count for incident_id, count in rows}


def as_json(incident: Incident, joined: int) -> dict[str, Any]:
    """What `callcenter incident list --json` prints for one incident."""
    return {
        "id": incident.id,
        "status": OPEN if incident.status == OPEN else CLOSED,
        "product": incident.product,
        "ticket_number": ticket_number(incident),
        "joined_calls": joined,
        "message": incident.message,
        "detected": incident.detected,
        "opened_at": incident.opened_at.isoformat(),
        "closed_at": incident.closed_at.isoformat() if incident.closed_at else None,
        # A merged one is closed (the contract's two statuses) and names where it went.
        "merged_into": merged_into(incident),
    }


# ---------------------------------------------------------------- what callers hear


@dataclass(frozen=True)
class Announced:
    """An open incident as the IVR announces it."""

    incident_id: int
    product: str
    # None until the pipeline has made its ticket (an incident detected a moment ago):
    # the caller hears it without a number, and a join waits for the number.
    ticket_number: str | None


# What the IVR asks on the first webhook of every call (and at an offer): a few columns
# read with Core — no ORM objects, no session needed — the number as `ticket_number` reads
# it (the incident's own, else its request's). Built once: building a statement costs as
# much as running it.
_incidents = cast(Table, Incident.__table__)
_requests = cast(Table, TicketRequest.__table__)
_ANNOUNCEABLE = (
    select(
        _incidents.c.id,
        _incidents.c.product,
        _incidents.c.ticket_number,
        _requests.c.ticket_number.label("request_number"),
    )
    .select_from(_incidents.outerjoin(_requests, _requests.c.id == _incidents.c.ticket_request_id))
    .where(_incidents.c.status == OPEN)
)
_OPEN_NEWEST_FIRST = _ANNOUNCEABLE.order_by(_incidents.c.opened_at.desc(), _incidents.c.id.desc())
# By id whatever its status, with what tells a merged one's target.
_ANY_BY_ID = (
    select(
        _incidents.c.id,
        _incidents.c.product,
        _incidents.c.status,
        _incidents.c.closing_message,
        _incidents.c.ticket_number,
        _requests.c.ticket_number.label("request_number"),
    )
    .select_from(_incidents.outerjoin(_requests, _requests.c.id == _incidents.c.ticket_request_id))
    .where(_incidents.c.id == bindparam("incident_id"))
)


def _read(db: Session | Connection, statement: Any, params: dict[str, Any] | None = None) -> Any:
    """Rows of a Core statement, through the session's connection when given a session
    (its pending changes flushed first, as a query's autoflush would)."""
    if isinstance(db, Session):
        if db.new or db.dirty or db.deleted:
            db.flush()
        db = db.connection()
    return db.execute(statement, params)


def announced(session: Session | Connection, *, product: str | None = None) -> Announced | None:
    """The open incident a caller about `product` (None: not known) hears first: the
    newest one concerning them, with its ticket number once there is one (an incident
    detected in the webhook of its threshold-th report is heard at once, before the ticket
    job has run). `session` may be a Connection (the IVR's hot path opens no session for
    it)."""
    for row in _read(session, _OPEN_NEWEST_FIRST):
        if covers(row.product, product):
            return Announced(row.id, row.product, row.ticket_number or row.request_number)
    return None


def still_open(session: Session | Connection, incident_id: int) -> Announced | None:
    """The incident the caller was offered, if it is still open; the one it was merged
    into meanwhile, if that one is. Core reads, as on the first webhook."""
    seen: set[int] = set()
    row = _read(session, _ANY_BY_ID, {"incident_id": incident_id}).first()
    while row is not None and row.status == MERGED:
        target = texts.merged_target(row.closing_message or "")
        if target is None or target in seen:
            return None  # never written so, but a loop must not hang a caller's step
        seen.add(row.id)
        row = _read(session, _ANY_BY_ID, {"incident_id": target}).first()
    if row is None or row.status != OPEN:
        return None
    return Announced(row.id, row.product, row.ticket_number or row.request_number)


def join_call(
    session: Session,
    call: Call,
    incident_id: int,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    sms_reachable: bool,
) -> TicketRequest | None:
    """The caller pressed 1: the call is tied to the incident and recorded as a phone
    duplicate on its ticket (the regulation's duplicate-by-phone), through the outbox.
    The request's follow-ups name the caller's organisation on the ticket and text the
    caller once now (`callcenter.tickets.followups`), and never alert the staff on duty
    per caller (the digest does). Returns the request to submit after commit; None when
    the incident is closed (the caller goes on to the main menu). An incident merged
    meanwhile: the caller joins the one it went into.

    An incident whose ticket the pipeline has not made yet (detected a moment ago): the
    duplicate names the incident's ticket request instead of a number; its job waits for
    that request's number, then records the duplicate (`outbox.DUPLICATE_OF_REQUEST`)."""
    incident = surviving(session, incident_id, share_lock=True)
    if incident is None or incident.status != OPEN:
        return None
    incident_id = incident.id
    number = ticket_number(incident)
    if number is None and incident.ticket_request_id is None:  # pragma: no cover
        return None  # never written so: an incident has a number or a request for one
    if (
        session.scalars(
            select(IncidentCall.id).where(
                IncidentCall.incident_id == incident_id, IncidentCall.call_id == call.id
            )
        ).first()
        is None
    ):
        session.add(
            IncidentCall(
                incident_id=incident_id,
                call_id=call.id,
                kind=JOINED,
                organisation_id=call.organisation_id,
                at=now,
            )
        )
    # The follow-ups name the caller in a comment and add its organisation to the
    # ticket's affected organisations (both idempotent on the portal).
    organisation = call.organisation
    marker = {
        "id": incident_id,
        "comment": texts.joined_comment(incident, call),
        "organisation": (
            {"id": organisation.id, "name": organisation.name} if organisation is not None else None
        ),
        "sms": texts.joined_sms(incident, number) if sms_reachable else None,
    }
    if number is None:
        return intake.mark_phone_duplicate(
            session,
            call,
            None,
            now=now,
            calendar=calendar,
            incident=marker,
            of_request=incident.ticket_request_id,
        )
    return intake.mark_phone_duplicate(
        session, call, number, now=now, calendar=calendar, incident=marker
    )


def link_call(
    session: Session, incident: Incident, call_id: int, organisation_id: int | None, now: datetime
) -> None:
    """Tie a call that made the service detect the incident to it (it hears the
    resolution too)."""
    exists = session.scalars(
        select(IncidentCall.id).where(
            IncidentCall.incident_id == incident.id, IncidentCall.call_id == call_id
        )
    ).first()
    if exists is None:
        session.add(
            IncidentCall(
                incident_id=incident.id,
                call_id=call_id,
                kind=DETECTED,
                organisation_id=organisation_id,
                at=now,
            )
        )
