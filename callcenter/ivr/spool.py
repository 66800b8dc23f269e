"""Keeping what the fallback path saw, even when the database is down.

The fallback replies (`callcenter.ivr.fallback`) are sent before anything is stored.
Afterwards `keep_fallback_event` logs the event, then tries to put it in the call log; what
cannot be stored is appended as one JSON line to `DATA_DIR/spool/fallback-events.jsonl`,
so it is never silently dropped. `replay_spool` puts spooled events into the call log once
the database is back (a voicemail becomes a callback ticket then).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from callcenter import calls
from callcenter.db import transaction
from callcenter.errors import InvalidInput
from callcenter.ivr.conversation import queue_ticket_jobs
from callcenter.services import Services

log = logging.getLogger(__name__)

SPOOL_FILE = "fallback-events.jsonl"
# Parameters of a fallback request worth keeping (Twilio adds ErrorCode/ErrorUrl to it).
KEPT_PARAMS = (
    "CallSid",
    "From",
    "To",
    "Called",
    "CallStatus",
    "ErrorCode",
    "ErrorUrl",
    "DialCallStatus",
    "DialCallDuration",
    "RecordingSid",
    "RecordingUrl",
    "RecordingDuration",
    "RecordingStatus",
    "SequenceNumber",
    "Timestamp",
    "CallDuration",
)
_spool_lock = threading.Lock()


def spool_path(data_dir: Path) -> Path:
    return data_dir / "spool" / SPOOL_FILE


def fallback_record(
    kind: str, form: Mapping[str, str], at: datetime, **extra: str
) -> dict[str, Any]:
    """What is kept of a request: its kind, time and Twilio's key parameters.

    Kinds: `fallback`, `dial_result`, `voicemail`, `step_error` (the fallback path), and
    `status` / `recording_status` (callbacks that could not be stored when they came).
    """
    return {
        "kind": kind,
        "at": at.isoformat(),
        "params": {name: form[name] for name in KEPT_PARAMS if form.get(name)},
        **extra,
    }


def keep_fallback_event(services: Services, record: dict[str, Any]) -> bool:
    """Log the event, store it in the call log, or spool it. True when stored."""
    params = record.get("params", {})
    call_sid = params.get("CallSid")
    log.warning(
        "voice fallback: %s (error %s at %s)",
        record.get("kind"),
        params.get("ErrorCode", "-"),
        params.get("ErrorUrl", "-"),
        extra={"call_sid": call_sid},
    )
    try:
        store_fallback_event(services, record)
        return True
    except Exception as exc:
        log.error(
            "could not store fallback event (%r); spooled to %s",
            exc,
            spool_path(services.settings.data_dir),
            extra={"call_sid": call_sid},
        )
        spool(services.settings.data_dir, record)
        return False


def spool(data_dir: Path, record: dict[str, Any]) -> None:
    path = spool_path(data_dir)
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _spool_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line with O_APPEND: lines from several processes never mix.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)


def store_fallback_event(services: Services, record: Mapping[str, Any]) -> None:
    """Put one fallback event into the call log. A voicemail left through the fallback
    becomes a callback request: a ticket on the consultation topic unless the call had
    chosen another path."""
    from callcenter import intake
    from callcenter.ivr.conversation import record_recording, record_status
    from callcenter.ivr.webhook_params import RecordingStatus, status_callback_from_form

    params: Mapping[str, str] = record.get("params", {})
    call_sid = params.get("CallSid")
    if not call_sid:
        return
    if record["kind"] == "status":
        record_status(services, status_callback_from_form(params))
        return
    if record["kind"] == "recording_status":
        kind = record.get("recording_kind", "description")
        record_recording(services, RecordingStatus.from_form(params), kind)
        return
    at = datetime.fromisoformat(record["at"])
    request_id: int | None = None
    with transaction(services.sessions) as session:
        call, _ = calls.get_or_create_call(
            session,
            call_sid,
            now=at,
            caller_raw=params.get("From"),
            line_raw=params.get("To") or params.get("Called"),
        )
        detail = {k: v for k, v in params.items() if k not in ("CallSid", "From", "To", "Called")}
        calls.record_event(session, call, f"fallback_{record['kind']}", at, **detail)
        if record["kind"] == "voicemail" and params.get("RecordingUrl"):
            if call.category is None or call.category == "consultation":
                call.category = "consultation"
                call.topic = call.topic or "consultation"
            call.routing_outcome = "voicemail"
            url = params["RecordingUrl"]
            # Twilio's RecordingUrl ends in the RecordingSid; older fallbacks send only it.
            sid = params.get("RecordingSid") or url.rstrip("/").rsplit("/", 1)[-1]
            try:
                intake.add_recording(
                    session, call, recording_sid=sid, recording_url=url, kind="voicemail"
                )
            except InvalidInput as exc:
                # The event above keeps the URL; a supervisor sees it on the call page.
                log.warning("spooled voicemail of %s not attached: %s", call_sid, exc)
            if intake.ticketable(call):  # a status enquiry's message is kept, not ticketed
                session.flush()
                request = intake.open_ticket_request(
                    session, call, now=at, calendar=services.calendar
                )
                session.flush()
                request_id = request.id
    if request_id is not None:
        queue_ticket_jobs(services, [request_id], call_sid)


def replay_spool(services: Services) -> tuple[int, int]:
    """Store the spooled events; those that still fail stay spooled. (stored, left)."""
    path = spool_path(services.settings.data_dir)
    with _spool_lock:
        if not path.exists():
            return 0, 0
        replaying = path.with_suffix(".replaying")
        path.rename(replaying)
    stored = left = 0
    for line in replaying.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        try:
            store_fallback_event(services, record)
            stored += 1
        except Exception as exc:
            log.error("spooled fallback event still not stored: %r", exc)
            spool(services.settings.data_dir, record)
            left += 1
    replaying.unlink()
    return stored, left
