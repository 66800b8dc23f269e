"""Twilio's voice webhook parameters, read into typed values at the boundary.

A webhook without what every Twilio voice request carries (`CallSid`, and `CallStatus` on a
status callback) is malformed: `MalformedWebhook` names what is missing, and the view
answers 400. Everything else is optional and read leniently (a bad `SequenceNumber` is
treated as absent, never as an error): Twilio adds parameters over time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callcenter.calls.store import StatusCallback, parse_twilio_timestamp
from callcenter.errors import MalformedWebhook
from callcenter.ivr.engine import IvrEvent, RecordingRef

# Parameters kept in the event log besides what the IVR reads.
_LOGGED = ("CallStatus", "Direction", "ForwardedFrom", "CallerName", "ErrorCode", "ErrorUrl")


def require(form: Mapping[str, str], *names: str) -> None:
    """Refuse (`MalformedWebhook`) a form without `names` or with a CallSid Twilio never sends."""
    missing = [name for name in names if not (form.get(name) or "").strip()]
    if missing:
        raise MalformedWebhook(f"not a Twilio voice webhook: missing {', '.join(missing)}")
    if len(form["CallSid"].strip()) > 64:
        # Twilio's SIDs are 34 characters; the column keeps 64. Longer is not Twilio.
        raise MalformedWebhook("not a Twilio voice webhook: CallSid is too long")


def optional_int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def _float(raw: str | None) -> float | None:
    """A number Twilio sent (a speech `Confidence`), or None for none: also for `inf` and
    `nan`, which Python reads as numbers and no JSON column (PostgreSQL's) can store."""
    try:
        value = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class VoiceWebhook:
    """An IVR request (the Voice URL, or an action/redirect URL of our own TwiML)."""

    call_sid: str
    caller: str | None
    line: str | None
    event: IvrEvent
    extra: dict[str, Any]

    @classmethod
    def from_form(
        cls, form: Mapping[str, str], *, step: str | None = None, turn: str | None = None
    ) -> VoiceWebhook:
        require(form, "CallSid")
        recording = None
        if form.get("RecordingUrl"):
            recording = RecordingRef(
                sid=form.get("RecordingSid") or None,
                url=form["RecordingUrl"],
                duration=optional_int(form.get("RecordingDuration")),
            )
        event = IvrEvent(
            kind="start" if step is None else "step",
            step=step,
            turn=optional_int(turn),
            # An empty Digits is no input (Twilio never counts the finish key as one).
            digits=form.get("Digits") or None,
            speech=(form.get("SpeechResult") or "").strip() or None,
            confidence=_float(form.get("Confidence")),
            recording=recording,
        )
        return cls(
            call_sid=form["CallSid"].strip(),
            caller=form.get("From") or form.get("Caller"),
            line=form.get("To") or form.get("Called"),
            event=event,
            extra={name: form[name] for name in _LOGGED if form.get(name)},
        )


def status_callback_from_form(form: Mapping[str, str]) -> StatusCallback:
    require(form, "CallSid", "CallStatus")
    return StatusCallback(
        call_sid=form["CallSid"].strip(),
        status=form["CallStatus"].strip().lower(),
        sequence=optional_int(form.get("SequenceNumber")),
        timestamp=parse_twilio_timestamp(form.get("Timestamp")),
        duration=optional_int(form.get("CallDuration")),
        caller_raw=form.get("From") or form.get("Caller"),
        line_raw=form.get("To") or form.get("Called"),
    )


@dataclass(frozen=True)
class RecordingStatus:
    """A recording status callback (`recordingStatusCallback` of our `<Record>`)."""

    call_sid: str
    recording: RecordingRef
    status: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> RecordingStatus:
        require(form, "CallSid", "RecordingSid", "RecordingUrl", "RecordingStatus")
        return cls(
            call_sid=form["CallSid"].strip(),
            recording=RecordingRef(
                sid=form["RecordingSid"],
                url=form["RecordingUrl"],
                duration=optional_int(form.get("RecordingDuration")),
            ),
            status=form["RecordingStatus"].strip().lower(),
        )
