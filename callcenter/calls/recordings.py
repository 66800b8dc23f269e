"""A call's recordings: which there are, where a copy is kept, and the link a ticket carries.

A call may have several recordings: the caller's description of the problem (the IVR's
`<Record>`) and a voicemail left when nobody answered. Each is logged on the call as a
`recording_added` event (detail: `sid`, Twilio's `url`, `recording_kind`, `duration`),
which is both the call's timeline entry and the list the follow-up job attaches to the
ticket; `call.recording_sid` / `recording_url` keep the main one (the description, else
the first) and `call.recording_sids` lists them all for the retention purge.

`RECORDING_MODE`:
- `link`: the ticket gets Twilio's URL (opening it needs the Twilio account);
- `download`: the job fetches the media with the account credentials, keeps it under
  `DATA_DIR/recordings/{sid}.mp3`, and the ticket gets this service's own URL
  `{PUBLIC_BASE_URL}/console/recordings/{sid}`, which the console serves behind its login.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from callcenter.db.models import Call, CallEvent
from callcenter.errors import InvalidInput
from callcenter.settings import Settings
from callcenter.vocabulary import recording_file_name

log = logging.getLogger(__name__)

RECORDING_EVENT = "recording_added"
KINDS = ("description", "voicemail", "addition", "callback")
KIND_LABELS = {
    "description": "Запись звонка: описание проблемы",
    "voicemail": "Голосовое сообщение абонента",
    "addition": "Запись звонка: дополнение к заявке",
    "callback": "Запись перезвона клиенту",
}

# Twilio's RecordingSid is RE + 32 hex digits; anything else is refused before it can name
# a file on disk.
_SID = re.compile(r"RE[0-9a-fA-F]{32}")
# Twilio's RecordingUrl: https, a host, a path; nothing a URL parser could read two ways
# (a backslash ends the host for `requests` but not for `urlsplit`), no userinfo.
_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/%-]*")


@dataclass(frozen=True)
class Recording:
    sid: str
    url: str  # Twilio's RecordingUrl
    kind: str  # description / voicemail
    at: datetime
    duration: int | None = None

    @property
    def file_name(self) -> str:
        """«Запись звонка 06.12.2026 06:07.mp3»: the name a ticket's attachment carries."""
        return recording_file_name(self.kind, self.at, ".mp3")

    @property
    def label(self) -> str:
        text = KIND_LABELS.get(self.kind, "Запись звонка")
        if self.duration:
            minutes, seconds = divmod(self.duration, 60)
            text += f" ({minutes}:{seconds:02d})"
        return text


def check_recording(sid: str, url: str, kind: str) -> None:
    """Refuse what Twilio would never send, with the reason."""
    if not _SID.fullmatch(sid or ""):
        raise InvalidInput(f"recording SID must be 'RE' and 32 hex digits, got {sid!r}")
    if not _URL.fullmatch(url or ""):
        raise InvalidInput(f"recording URL must be a plain https URL, got {url!r}")
    if kind not in KINDS:
        raise InvalidInput(f"recording kind must be one of {', '.join(KINDS)}, got {kind!r}")


def call_recordings(call: Call) -> list[Recording]:
    """The call's recordings, oldest first."""
    found: list[Recording] = []
    seen: set[str] = set()
    for event in call.events:
        if event.kind != RECORDING_EVENT:
            continue
        detail: dict[str, Any] = event.detail or {}
        sid = detail.get("sid")
        if not isinstance(sid, str) or sid in seen:
            continue
        seen.add(sid)
        duration = detail.get("duration")
        found.append(
            Recording(
                sid=sid,
                url=str(detail.get("url") or ""),
                kind=str(detail.get("recording_kind") or "description"),
                at=event.at,
                duration=duration if isinstance(duration, int) else None,
            )
        )
    return found


# Built once: building and keying a statement costs as much as running it on SQLite.
_RECORDING_DETAILS = (
    select(CallEvent.detail)
    .where(CallEvent.call_id == bindparam("call_id"), CallEvent.kind == RECORDING_EVENT)
    .order_by(CallEvent.id)
)


def recording_sids(db: Session | Connection, call_id: int) -> list[str]:
    """The SIDs of a call's recordings, in one query (no call or events loaded)."""
    details = db.scalars(_RECORDING_DETAILS, {"call_id": call_id})
    return [d["sid"] for d in details if isinstance(d, dict) and isinstance(d.get("sid"), str)]


def recordings_dir(settings: Settings) -> Path:
    return settings.data_dir / "recordings"


def local_file(settings: Settings, sid: str) -> Path | None:
    """The downloaded copy of a recording, if there is one (the console streams it)."""
    if not _SID.fullmatch(sid):
        return None
    folder = recordings_dir(settings)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"{sid}.*")):
        if not path.name.endswith(".part"):
            return path
    return None


def store(settings: Settings, sid: str, data: bytes, content_type: str) -> Path:
    """Keep a downloaded recording; written to a temporary file and renamed, so a reader
    never sees half a file and a crash leaves no truncated recording behind."""
    if not _SID.fullmatch(sid):
        raise InvalidInput(f"recording SID must be 'RE' and 32 hex digits, got {sid!r}")
    folder = recordings_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = _suffix(content_type)
    target = folder / f"{sid}{suffix}"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{sid}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _suffix(content_type: str) -> str:
    if content_type in ("audio/mpeg", "audio/mp3"):
        return ".mp3"
    if content_type in ("audio/wav", "audio/x-wav", "audio/wave"):
        return ".wav"
    return mimetypes.guess_extension(content_type) or ".mp3"


def service_url(settings: Settings, sid: str) -> str | None:
    """This service's own URL of a downloaded recording (None without PUBLIC_BASE_URL)."""
    if not settings.public_base_url:
        return None
    return f"{settings.public_base_url.rstrip('/')}/console/recordings/{sid}"


def twilio_media_url(url: str) -> str:
    """Twilio serves WAV at the bare RecordingUrl and MP3 with `.mp3`; tickets get MP3."""
    return url if url.endswith((".mp3", ".wav")) else url + ".mp3"


def ticket_link(settings: Settings, sid: str, twilio_url: str) -> str:
    """The URL a ticket carries for a recording, by `RECORDING_MODE`."""
    if settings.recording_mode == "download":
        own = service_url(settings, sid)
        if own is not None:
            return own
        log.warning("RECORDING_MODE=download without PUBLIC_BASE_URL: linking Twilio's URL")
    return twilio_media_url(twilio_url)
