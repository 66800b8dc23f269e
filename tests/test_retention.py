from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.calls.retention import purge_personal_data
from callcenter.db.models import Call, CallEvent, SmsMessage, Ticket
from callcenter.services import Services

NOW = datetime.fromisoformat("2026-11-26T12:00:00+00:00")


def _call(sid: str, started: datetime, recording_sid: str | None = None) -> Call:
    return Call(
        call_sid=sid,
        line="+78002506077",
        caller_raw="8 916 123-45-67",
        caller_e164="+79161234567",
        caller_kind="mobile",
        caller_said_name="Иван Петров, ООО Ромашка",
        category="incident",
        topic="data_update",
        vehicles=["А123ВС77"],
        state={},
        recording_sid=recording_sid,
        recording_url=f"https://api.twilio.com/rec/{recording_sid}" if recording_sid else None,
        outcome="completed",
        started_at=started,
        updated_at=started,
    )


def test_old_calls_lose_personal_data_new_ones_keep_it(services: Services, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "RE-old.mp3").write_bytes(b"old audio")
    (recordings / "RE-new.mp3").write_bytes(b"new audio")
    old_at = NOW - timedelta(days=400)
    new_at = NOW - timedelta(days=10)
    with services.sessions.begin() as session:
        old = _call("CA-old", old_at, "RE-old")
        new = _call("CA-new", new_at, "RE-new")
        session.add_all([old, new])
        session.flush()
        session.add(CallEvent(call_id=old.id, at=old_at, kind="gather", speech="Иван Петров"))
        session.add(
            Ticket(
                number=1001,
                topic="data_update",
                caller="+79161234567",
                call_ref="CA-old",
                created_at=old_at,
                updated_at=old_at,
            )
        )
        session.add(
            SmsMessage(key="k-old", to="+79161234567", body="x", status="sent", created_at=old_at)
        )

    with services.sessions.begin() as session:
        report = purge_personal_data(session, now=NOW, retention_days=365, data_dir=tmp_path)
    assert (report.calls_anonymised, report.recording_files_deleted) == (1, 1)
    assert (report.tickets_anonymised, report.sms_anonymised) == (1, 1)
    assert not (recordings / "RE-old.mp3").exists()
    assert (recordings / "RE-new.mp3").exists()

    with services.sessions() as session:
        old = session.scalars(select(Call).where(Call.call_sid == "CA-old")).one()
        new = session.scalars(select(Call).where(Call.call_sid == "CA-new")).one()
        assert old.caller_e164 is None and old.caller_raw is None
        assert old.caller_said_name is None and old.recording_url is None
        assert old.anonymised_at == NOW
        # What statistics need stays.
        assert (old.category, old.topic, old.outcome) == ("incident", "data_update", "completed")
        assert session.scalars(select(CallEvent.speech)).one() is None
        assert new.caller_e164 == "+79161234567" and new.recording_sid == "RE-new"
        assert session.scalars(select(Ticket.caller)).one() is None

    # A second purge finds nothing more to do.
    with services.sessions.begin() as session:
        again = purge_personal_data(session, now=NOW, retention_days=365, data_dir=tmp_path)
    assert again.calls_anonymised == 0


def test_retention_period_must_be_positive(services: Services, tmp_path: Path) -> None:
    with services.sessions() as session, pytest.raises(ValueError, match="at least 1"):
        purge_personal_data(session, now=NOW, retention_days=0, data_dir=tmp_path)
