"""Detection: a surge of critical-failure calls opens an incident by itself.

When INCIDENT_THRESHOLD critical-failure calls (default 3) from different organisations
concern one product within INCIDENT_WINDOW minutes (default 10), the incident is opened on
the first of their tickets. The critical path does not ask for the product (it stays as
short as it is), so a call whose product is unknown counts toward every product: a surge of
such calls opens an incident for all products. A caller the directory does not know counts
as an organisation of their own number.

Run in the webhook step that writes a critical call's own ticket request
(`callcenter.ivr.conversation`), in its transaction: the moment the threshold-th report
commits, the incident exists, and every caller after it hears it (without a number until
the pipeline has made the ticket) however far the ticket jobs lag. It counts ticket
requests, never ticket numbers: the incident is opened on the first report's request, and
takes its number when the ticket job records it. It runs only for those steps (a few
reads), never on a call's first webhook. The ticket job runs it again after each critical
ticket (`callcenter.jobs.tasks`): a no-op once the incident is open. Safe under several
web processes and workers at once: the unique `incidents.open_product` lets one of them
open it; the others find it open (`IncidentConflict`) and stop. Whoever opens it queues
its job after commit, which texts the on-duty specialist and the head once (the SMS
ledger's keys).

Two threshold-th reports committing at the very same moment in two processes each decide
their caller's reply before either incident exists: both ring the chain (the threshold is
then exceeded by those concurrent reports, never by a lagging worker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from callcenter.db.models import Call, Incident, IncidentCall, TicketRequest
from callcenter.errors import IncidentConflict
from callcenter.incidents import store
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.regulation.topics import PRODUCTS
from callcenter.tickets import outbox
from callcenter.vocabulary import Category

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Report:
    call_id: int
    started_at: datetime
    who: str  # the organisation, or the caller's number for an unknown caller
    organisation_id: int | None
    product: str | None
    request_id: int
    ticket_number: str | None


def detect(
    session: Session,
    call_sid: str,
    *,
    now: datetime,
    calendar: BusinessCalendar,
    threshold: int,
    window_minutes: int,
) -> int | None:
    """After call `call_sid`'s critical ticket: open an incident if the surge is there;
    the new incident's id (the caller commits, then queues its alerts), else None."""
    session.flush()  # what the session holds written before the surge is read with Core
    found = _surge(session.connection(), call_sid, now, threshold, window_minutes)
    if found is None:
        return None
    product, involved = found
    first = min(involved, key=lambda r: (r.started_at, r.call_id))
    message = (
        f"Обнаружен автоматически: {len({r.who for r in involved})} организаций сообщили "
        f"о критическом сбое за {window_minutes} мин."
    )
    try:
        incident = store.open_incident(
            session,
            product=product,
            message=message,
            now=now,
            calendar=calendar,
            ticket=first.ticket_number,
            ticket_request_id=first.request_id,
            by="обнаружен автоматически",
            detected=True,
        )
    except IncidentConflict:
        return None  # another process opened it a moment ago
    for report in involved:
        store.link_call(session, incident, report.call_id, report.organisation_id, now)
    log.warning(
        "incident %s detected: %d critical calls for %s", incident.id, len(involved), product
    )
    return incident.id


def surging(
    connection: Connection, call_sid: str, *, now: datetime, threshold: int, window_minutes: int
) -> bool:
    """Would `detect` open an incident for call `call_sid` now? Its reads only, with Core
    statements: a step asks this first and opens no ORM session when the answer is no
    (nearly always)."""
    return _surge(connection, call_sid, now, threshold, window_minutes) is not None


# Built once: building and keying a statement costs as much as running it on SQLite.
_CALL_OF_SID = select(Call.id, Call.category, Call.product).where(
    Call.call_sid == bindparam("call_sid")
)
_OPEN_PRODUCTS = select(Incident.product).where(Incident.status == store.OPEN)
_RECENT_REPORTS = (
    select(
        Call.id,
        Call.started_at,
        Call.organisation_id,
        Call.caller_e164,
        Call.product,
        TicketRequest.id,
        TicketRequest.ticket_number,
        TicketRequest.draft,
    )
    .join(TicketRequest, TicketRequest.call_id == Call.id)
    .where(
        Call.category == Category.CRITICAL,
        Call.started_at >= bindparam("since"),
        Call.id.not_in(select(IncidentCall.call_id)),
    )
)


def _surge(
    connection: Connection, call_sid: str, now: datetime, threshold: int, window_minutes: int
) -> tuple[str, list[_Report]] | None:
    """The product the surge completed by call `call_sid` is about and the calls that make
    it; None when there is none, or a known open incident covers the call already."""
    call = connection.execute(_CALL_OF_SID, {"call_sid": call_sid}).first()
    if call is None or call.category != Category.CRITICAL:
        return None
    if any(store.covers(product, call.product) for product in connection.scalars(_OPEN_PRODUCTS)):
        return None  # known already: callers hear it
    reports = _recent_reports(connection, now - timedelta(minutes=window_minutes))
    if not any(r.call_id == call.id for r in reports):
        return None
    return _surging_product(reports, threshold)


def _recent_reports(connection: Connection, since: datetime) -> list[_Report]:
    """Critical calls since `since` with a ticket of their own (not a duplicate), not
    tied to an incident yet."""
    rows = connection.execute(_RECENT_REPORTS, {"since": since}).all()
    reports = []
    for call_id, started, org_id, e164, product, request_id, number, draft in rows:
        stored = draft or {}
        if stored.get(outbox.DUPLICATE_OF) or stored.get(outbox.DUPLICATE_OF_REQUEST):
            continue
        who = f"org:{org_id}" if org_id is not None else f"caller:{e164 or call_id}"
        reports.append(_Report(call_id, started, who, org_id, product or None, request_id, number))
    return reports


def _surging_product(reports: list[_Report], threshold: int) -> tuple[str, list[_Report]] | None:
    """The product the surge is about (or "all") and the calls that make it."""
    surging: dict[str, list[_Report]] = {}
    for slug in PRODUCTS:
        concerned = [r for r in reports if r.product in (None, slug)]
        if len({r.who for r in concerned}) >= threshold:
            surging[slug] = concerned
    if not surging:
        return None
    if len(surging) == 1:
        ((slug, involved),) = surging.items()
        return slug, involved
    known = {r.product for r in reports if r.product is not None}
    if len(known) == 1 and (only := next(iter(known))) in surging:
        return only, surging[only]
    return store.ALL, reports
