"""Data retention: personal data older than the retention period is removed.

Russia's personal data law (152-FZ) requires personal data not be kept longer than its
purpose needs. After `settings.retention_days` a call keeps its shape for statistics
(time, line, category, topic, outcome, ticket number) but loses the caller's number, the
name they said, their speech transcripts and the recordings (local files deleted). The
built-in portal's copies of the caller number go too. Each purge is logged with counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callcenter.db.models import Call, CallEvent, SmsMessage, Ticket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PurgeReport:
    cutoff: datetime
    calls_anonymised: int
    recording_files_deleted: int
    tickets_anonymised: int
    sms_anonymised: int


def purge_personal_data(
    session: Session, *, now: datetime, retention_days: int, data_dir: Path
) -> PurgeReport:
    """Anonymise calls that ended before now - retention_days. Idempotent; the caller commits."""
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    cutoff = now - timedelta(days=retention_days)
    calls = session.scalars(
        select(Call).where(Call.started_at < cutoff, Call.anonymised_at.is_(None))
    ).all()
    files = 0
    recordings_dir = data_dir / "recordings"
    for call in calls:
        for sid in {call.recording_sid, *(call.recording_sids or [])}:
            if not sid or not recordings_dir.is_dir():
                continue
            for path in recordings_dir.glob(f"{sid}.*"):
                path.unlink(missing_ok=True)
                files += 1
        call.caller_raw = None
        call.caller_e164 = None
        call.caller_said_name = None
        call.recording_url = None
        call.recording_sid = None
        call.anonymised_at = now
    call_ids = [c.id for c in calls]
    if call_ids:
        session.execute(
            update(CallEvent).where(CallEvent.call_id.in_(call_ids)).values(speech=None)
        )
    call_sids = [c.call_sid for c in calls]
    tickets = 0
    if call_sids:
        tickets = len(
            session.execute(
                update(Ticket)
                .where(Ticket.call_ref.in_(call_sids), Ticket.caller.is_not(None))
                .values(caller=None, recording_url=None)
                .returning(Ticket.id)
            ).all()
        )
    sms = len(
        session.execute(
            update(SmsMessage)
            .where(SmsMessage.created_at < cutoff, SmsMessage.to.is_not(None))
            .values(to=None)
            .returning(SmsMessage.id)
        ).all()
    )
    report = PurgeReport(cutoff, len(calls), files, tickets, sms)
    log.info(
        "retention purge: cutoff %s, %d calls anonymised, %d recording files deleted, "
        "%d tickets and %d SMS anonymised",
        cutoff.isoformat(),
        report.calls_anonymised,
        report.recording_files_deleted,
        report.tickets_anonymised,
        report.sms_anonymised,
    )
    return report
