"""Call recordings, streamed through the console's login — never a public Twilio link.

    /console/calls/<CallSid>/recording              the call's main recording
    /console/calls/<CallSid>/recordings/<RE…>       any recording of that call
    /console/recordings/<RE…>                       the link a ticket carries in
                                                    RECORDING_MODE=download

A recording the pipeline downloaded is served from `DATA_DIR/recordings/`. Otherwise it is
fetched from Twilio with the account's credentials (`telephony.fetch_recording`) and kept
there (`recordings.store`; the retention purge removes it with the call's others), so the
next play and every Range request of the audio element come from the disk. HTTP Range
and conditional requests are werkzeug's `send_file`.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from flask import Response, abort, send_file
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from callcenter.calls import recordings
from callcenter.console import bp
from callcenter.db.models import Call, CallEvent
from callcenter.errors import (
    InvalidInput,
    TelephonyError,
    TelephonyNotConfigured,
    TelephonyUnavailable,
)
from callcenter.vocabulary import recording_file_name
from callcenter.web import services

log = logging.getLogger(__name__)


class _Unavailable(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@bp.get("/calls/<call_sid>/recording")
def call_recording(call_sid: str) -> ResponseReturnValue:
    with services().sessions() as db:
        call = db.scalar(select(Call).where(Call.call_sid == call_sid))
        if call is None or (call.recording_sid is None and call.recording_url is None):
            abort(404)
        return _serve(call, call.recording_sid, call.recording_url)


@bp.get("/calls/<call_sid>/recordings/<sid>")
def call_recording_by_sid(call_sid: str, sid: str) -> ResponseReturnValue:
    with services().sessions() as db:
        call = db.scalar(select(Call).where(Call.call_sid == call_sid))
        if call is None:
            abort(404)
        if call.recording_sid == sid:
            return _serve(call, sid, call.recording_url)
        for rec in recordings.call_recordings(call):
            if rec.sid == sid:
                return _serve(call, rec.sid, rec.url)
        abort(404)


@bp.get("/recordings/<sid>")
def recording(sid: str) -> ResponseReturnValue:
    """A recording by its SID alone (the URL a ticket carries)."""
    with services().sessions() as db:
        call = db.scalar(select(Call).where(Call.recording_sid == sid))
        if call is not None:
            return _serve(call, sid, call.recording_url)
        event = db.scalar(
            select(CallEvent).where(
                CallEvent.kind == recordings.RECORDING_EVENT,
                CallEvent.detail["sid"].as_string() == sid,
            )
        )
        if event is None:
            abort(404)
        url = (event.detail or {}).get("url")
        return _serve(event.call, sid, url if isinstance(url, str) else None)


def _serve(call: Call, sid: str | None, url: str | None) -> ResponseReturnValue:
    if call.anonymised_at is not None:
        return _plain(410, "Запись удалена по сроку хранения персональных данных.")
    try:
        path = _local_copy(sid, url)
    except _Unavailable as exc:
        return _plain(exc.status, exc.message)
    mimetype = mimetypes.guess_type(path.name)[0] or "audio/mpeg"
    # Played in the page (inline), saved as «Запись звонка 06.12.2026 06:07.wav».
    return send_file(
        path,
        mimetype=mimetype,
        conditional=True,
        download_name=_file_name(call, sid, path.suffix),
        max_age=0,
    )


def _file_name(call: Call, sid: str | None, suffix: str) -> str:
    for rec in recordings.call_recordings(call):
        if rec.sid == sid:
            return recording_file_name(rec.kind, rec.at, suffix)
    return recording_file_name("description", call.started_at, suffix)


def _local_copy(sid: str | None, url: str | None) -> Path:
    settings = services().settings
    if sid is not None:
        found = recordings.local_file(settings, sid)
        if found is not None:
            return found
    if not url:
        raise _Unavailable(404, "Запись не найдена.")
    try:
        data, content_type = services().telephony.fetch_recording(url)
    except TelephonyNotConfigured:
        raise _Unavailable(404, "Запись недоступна: учётная запись Twilio не настроена.") from None
    except TelephonyUnavailable as exc:
        log.warning("recording %s not available from Twilio yet: %s", sid, exc)
        raise _Unavailable(503, "Twilio пока не отдаёт запись; попробуйте через минуту.") from None
    except TelephonyError as exc:
        log.error("recording %s could not be fetched: %s", sid, exc)
        raise _Unavailable(502, "Twilio отказал в выдаче записи.") from None
    if sid is None:
        raise _Unavailable(404, "Запись без идентификатора: сохранить её нельзя.")
    try:
        return recordings.store(settings, sid, data, content_type)
    except InvalidInput:
        raise _Unavailable(404, "Неверный идентификатор записи.") from None


def _plain(status: int, message: str) -> Response:
    response = Response(message, status=status, mimetype="text/plain")
    if status == 503:
        response.headers["Retry-After"] = "60"
    return response
