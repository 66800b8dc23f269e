"""What an incident sends, by a job (`callcenter.jobs.tasks.incident_job`), each once:

- detected by the service: one SMS to the on-duty specialist and one to the head of
  support (keys `incident:{id}:detected:{number}`);
- while open: at most one digest SMS per DIGEST_MINUTES to the on-duty specialist, «к сбою
  №… присоединились ещё 7 клиентов» (keyed by the count it reports), never one per caller;
- closed: the closing message and the affected organisations on the portal ticket (one
  entry, dedup key `incident:{id}:closed`), and one resolution SMS to every caller tied to
  the incident who can take one (`vocabulary.sms_reach`, keyed per number:
  `incident:{id}:resolved:{number}`); the others are recorded as skipped, with the reason;
- merged into another by a supervisor: no SMS at all (its callers moved to the other one,
  which texts them when it closes); its ticket is linked to the other incident on the
  portal, the other ticket notes the merge (dedup key `incident:{id}:merged`) and gets the
  affected organisations of every call now tied to it, its own ticket's among them.

Each SMS goes through the ledger of `callcenter.tickets.notifications` (claimed before
Twilio is asked: never twice). Twilio or the portal out of reach: the job raises, and the
outbox sweep queues it again while `incidents_due` names the incident (Redis down: when it
is back).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from callcenter.db.models import Call, Incident, IncidentCall, TicketRequest
from callcenter.errors import (
    PortalRejected,
    PortalUnavailable,
    TelephonyUnavailable,
    TicketNotFound,
)
from callcenter.incidents import texts
from callcenter.incidents.store import CLOSED, JOINED, MERGED, OPEN, merged_into, ticket_number
from callcenter.portal.protocol import AffectedOrganisation, IncidentLink, Portal
from callcenter.portal.tickets import MAX_AFFECTED
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.roster.on_duty import on_duty
from callcenter.settings import Settings
from callcenter.telephony.client import Telephony
from callcenter.tickets import outbox
from callcenter.tickets.notifications import RETRY, SENT, record_skip, send_once
from callcenter.vocabulary import sms_reach, sms_status_callback

log = logging.getLogger(__name__)

DIGEST_MINUTES = 10
# How long after opening (detected alerts) or closing (resolution SMS) the sweep still
# looks: a day late still tells people; older ones are the console's to show.
SWEEP_HOURS = 24
AUTHOR = "Телефонная линия"


def incidents_due(session: Session, *, now: datetime) -> list[int]:
    """Incidents with something to send: a detected one's alerts, a digest, a closed
    one's closing entry and resolution SMS, a merged one's portal link."""
    since = now - timedelta(hours=SWEEP_HOURS)
    joined = (
        select(func.count())
        .where(IncidentCall.incident_id == Incident.id, IncidentCall.kind == JOINED)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            select(Incident.id)
            .where(
                or_(
                    and_(
                        Incident.detected.is_(True),
                        Incident.alerted_at.is_(None),
                        Incident.opened_at >= since,
                        # Merged before its alert went: the supervisor knows of it already.
                        Incident.status != MERGED,
                    ),
                    and_(
                        Incident.status == OPEN,
                        joined > Incident.digest_joined,
                        or_(
                            Incident.digest_at.is_(None),
                            Incident.digest_at <= now - timedelta(minutes=DIGEST_MINUTES),
                        ),
                    ),
                    and_(
                        Incident.status.in_((CLOSED, MERGED)),
                        Incident.followups_done_at.is_(None),
                        Incident.closed_at >= since,
                    ),
                )
            )
            .order_by(Incident.id)
        )
    )


def run_incident_followups(
    sessions: sessionmaker[Session],
    portal: Portal,
    telephony: Telephony,
    *,
    settings: Settings,
    calendar: BusinessCalendar,
    now: datetime,
    incident_id: int,
) -> int:
    """Send what is due for the incident; returns how many SMS went out. Raises
    `TelephonyUnavailable` / `PortalUnavailable` when something is left for the sweep."""
    sent = 0
    left: list[str] = []
    with sessions() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return 0
        detected_due = (
            incident.detected and incident.alerted_at is None and incident.status != MERGED
        )
        closed_due = incident.status == CLOSED and incident.followups_done_at is None
        merged_due = incident.status == MERGED and incident.followups_done_at is None
        is_open = incident.status == OPEN
    if merged_due:
        _note_merge(sessions, portal, now, incident_id, left)
    if detected_due:
        sent += _alert_detected(sessions, telephony, settings, calendar, now, incident_id, left)
    if is_open:
        sent += _digest(sessions, telephony, settings, calendar, now, incident_id, left)
    if closed_due:
        sent += _resolve(sessions, portal, telephony, settings, now, incident_id, left)
    if left:
        raise TelephonyUnavailable(f"incident {incident_id}: left for the sweep: {'; '.join(left)}")
    return sent


def _staff(
    session: Session, now: datetime, calendar: BusinessCalendar, settings: Settings
) -> tuple[str | None, str | None]:
    """(the on-duty specialist's SMS number — the duty phone without one, None when there
    is neither —, the head's)."""
    duty = on_duty(session, now, calendar)
    specialist = next((p.sms for p in duty.urgent_chain if p.sms), None) or settings.duty_phone
    head = duty.head.sms if duty.head is not None else None
    return specialist, head


def _alert_detected(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    settings: Settings,
    calendar: BusinessCalendar,
    now: datetime,
    incident_id: int,
    left: list[str],
) -> int:
    with sessions() as session:
        incident = session.get_one(
            Incident, incident_id, options=[joinedload(Incident.ticket_request)]
        )
        specialist, head = _staff(session, now, calendar, settings)
        calls = len(incident.calls)
        body = texts.detected_sms(
            incident, calls, settings.incident_window_minutes, ticket_number(incident)
        )
    recipients = [to for to in (specialist, head if head != specialist else None) if to]
    sent = 0
    settled = True
    for to in recipients:
        outcome = send_once(
            sessions,
            telephony,
            key=f"incident:{incident_id}:detected:{to}",
            to=to,
            body=body,
            now=now,
            status_callback=sms_status_callback(settings.public_base_url),
        )
        sent += outcome.status == SENT
        if outcome.status == RETRY:
            settled = False
            left.append(f"detected alert to {to[-2:]}: {outcome.reason}")
    if settled:
        with sessions() as session, session.begin():
            session.get_one(Incident, incident_id).alerted_at = now
    return sent


def _digest(
    sessions: sessionmaker[Session],
    telephony: Telephony,
    settings: Settings,
    calendar: BusinessCalendar,
    now: datetime,
    incident_id: int,
    left: list[str],
) -> int:
    """The digest, claimed under the incident's lock (two runs never both send one)."""
    with sessions() as session, session.begin():
        incident = session.get_one(
            Incident,
            incident_id,
            with_for_update={"of": Incident},
            populate_existing=True,
            options=[joinedload(Incident.ticket_request)],
        )
        joined = session.scalar(
            select(func.count()).where(
                IncidentCall.incident_id == incident_id, IncidentCall.kind == JOINED
            )
        )
        more = (joined or 0) - incident.digest_joined
        recent = incident.digest_at is not None and incident.digest_at > now - timedelta(
            minutes=DIGEST_MINUTES
        )
        if more <= 0 or recent or incident.status != OPEN:
            return 0
        before = (incident.digest_at, incident.digest_joined)
        incident.digest_at = now
        incident.digest_joined = joined or 0
        specialist, _head = _staff(session, now, calendar, settings)
        if specialist is None:
            # Nobody on duty and no DUTY_PHONE: there is no one to text (the console's
            # banner and the roster warnings say so); the digest is not pretended sent.
            log.warning("incident %s: no on-duty specialist or DUTY_PHONE, no digest", incident_id)
            return 0
        body = texts.digest_sms(incident, more, ticket_number(incident))
        key = f"incident:{incident_id}:digest:{joined}"
    outcome = send_once(
        sessions,
        telephony,
        key=key,
        to=specialist,
        body=body,
        now=now,
        status_callback=sms_status_callback(settings.public_base_url),
    )
    if outcome.status == RETRY:
        # Not sent: the claim is given back, so the next run sends it.
        with sessions() as session, session.begin():
            row = session.get_one(Incident, incident_id, with_for_update=True)
            if row.digest_at == now:
                row.digest_at, row.digest_joined = before
        left.append(f"digest: {outcome.reason}")
    return int(outcome.status == SENT)


def _resolve(
    sessions: sessionmaker[Session],
    portal: Portal,
    telephony: Telephony,
    settings: Settings,
    now: datetime,
    incident_id: int,
    left: list[str],
) -> int:
    with sessions() as session:
        incident = session.get_one(
            Incident, incident_id, options=[joinedload(Incident.ticket_request)]
        )
        linked = session.scalars(
            select(IncidentCall)
            .where(IncidentCall.incident_id == incident_id)
            .options(
                joinedload(IncidentCall.call),
                joinedload(IncidentCall.organisation),
            )
            .order_by(IncidentCall.id)
        ).all()
        number = ticket_number(incident)
        body = texts.resolved_sms(incident, number)
        comment = texts.closing_comment(
            incident, (c.organisation.name for c in linked if c.organisation is not None)
        )
        callers = [(c.call_id, *_caller(c.call)) for c in linked]
    noted = _note_closing(portal, incident_id, number, comment, left)
    sent = 0
    settled = True
    seen: set[str] = set()
    for call_id, kind, e164 in callers:
        reach = sms_reach(kind, e164, sms_foreign=settings.sms_foreign)
        target = e164 or f"call-{kind}"
        if target in seen:
            continue  # the same number joined twice: one SMS
        seen.add(target)
        key = f"incident:{incident_id}:resolved:{target}"
        # The SMS is about the first call of that number tied to the incident.
        if not reach.ok or e164 is None:
            with sessions() as session, session.begin():
                record_skip(
                    session,
                    key=key,
                    to=e164,
                    body=body,
                    reason=reach.reason,
                    now=now,
                    call_id=call_id,
                )
            continue
        outcome = send_once(
            sessions,
            telephony,
            key=key,
            to=e164,
            body=body,
            now=now,
            status_callback=sms_status_callback(settings.public_base_url),
            call_id=call_id,
        )
        sent += outcome.status == SENT
        if outcome.status == RETRY:
            settled = False
            left.append(f"resolution SMS to {e164[-2:]}: {outcome.reason}")
    if settled and noted:
        with sessions() as session, session.begin():
            session.get_one(Incident, incident_id).followups_done_at = now
    log.info("incident %s closed: %d resolution SMS sent", incident_id, sent)
    return sent


def _caller(call: Call) -> tuple[str, str | None]:
    return call.caller_kind, call.caller_e164


def _note_closing(
    portal: Portal, incident_id: int, number: str | None, comment: str, left: list[str]
) -> bool:
    """The closing message on the ticket; False when it is left for the next run."""
    if number is None:
        return True  # no ticket was ever made: nothing to write on
    try:
        portal.add_entry(
            number, text=comment, author=AUTHOR, dedup_key=f"incident:{incident_id}:closed"
        )
    except PortalUnavailable as exc:
        left.append(f"closing entry: {exc}")
        return False
    except (PortalRejected, TicketNotFound) as exc:
        log.error("incident %s: closing entry refused on №%s: %s", incident_id, number, exc)
    return True


def _note_merge(
    sessions: sessionmaker[Session],
    portal: Portal,
    now: datetime,
    incident_id: int,
    left: list[str],
) -> None:
    """A merged incident on the portal: its ticket linked to the incident it went into,
    that one's ticket noting the merge and naming the organisations affected. Each step
    is idempotent on the portal (link per incident, entry per dedup key, organisation
    per key), so a run cut short is simply run again."""
    with sessions() as session:
        merged = session.get_one(
            Incident, incident_id, options=[joinedload(Incident.ticket_request)]
        )
        into_id = merged_into(merged)
        into = session.get(Incident, into_id) if into_id is not None else None
        if into is None:
            log.error("incident %s: merged into an incident that is not there", incident_id)
            merged.followups_done_at = now
            session.commit()
            return
        own, target = ticket_number(merged), ticket_number(into)
        waiting = [
            row.id
            for row, number in ((merged, own), (into, target))
            if number is None and _ticket_coming(row.ticket_request)
        ]
        label = texts.merge_link_label(into, target)
        comment = texts.merged_comment(merged, own)
        organisations = _organisations(session, into.id)
    if waiting:
        # The pipeline is still making a ticket: the link waits for its number.
        left.append(f"merge: tickets of incidents {waiting} not made yet")
        return
    try:
        if own is not None:
            link = IncidentLink(incident=str(into_id), label=label)
            view = portal.link_incident(own, link, author=AUTHOR)
            organisations += [
                *(
                    [AffectedOrganisation(view.organisation_name, view.organisation_id)]
                    if view.organisation_name
                    else []
                ),
                *view.affected_organisations,
            ]
        if target is not None:
            portal.add_entry(
                target, text=comment, author=AUTHOR, dedup_key=f"incident:{incident_id}:merged"
            )
            unique = list({org.key: org for org in organisations}.values())
            for start in range(0, len(unique), MAX_AFFECTED):
                batch = unique[start : start + MAX_AFFECTED]
                portal.add_affected_organisations(target, batch, author=AUTHOR)
    except PortalUnavailable as exc:
        left.append(f"merge on the portal: {exc}")
        return
    except (PortalRejected, TicketNotFound) as exc:
        log.error("incident %s: merge refused on the portal: %s", incident_id, exc)
    with sessions() as session, session.begin():
        session.get_one(Incident, incident_id).followups_done_at = now


def _ticket_coming(request: TicketRequest | None) -> bool:
    return request is not None and request.status != outbox.FAILED


def _organisations(session: Session, incident_id: int) -> list[AffectedOrganisation]:
    """The organisations of the calls tied to the incident, once each."""
    rows = session.scalars(
        select(IncidentCall)
        .where(IncidentCall.incident_id == incident_id, IncidentCall.organisation_id.is_not(None))
        .options(joinedload(IncidentCall.organisation))
        .order_by(IncidentCall.id)
    ).all()
    found: dict[int, AffectedOrganisation] = {}
    for row in rows:
        organisation = row.organisation
        if organisation is not None:
            found.setdefault(
                organisation.id, AffectedOrganisation(organisation.name, organisation.id)
            )
    return list(found.values())
