"""Twilio's parameters of the routing webhooks, read into typed events at the boundary.

The twin of `callcenter.ivr.webhook_params`: a request without what Twilio always sends
(a `CallSid`; a leg and a `CallStatus` on a leg's status callback) is malformed
(`MalformedWebhook`, a 400); everything else is read leniently. Numbers of our own query
strings (`?step=N`, `?leg=P`) are ASCII digits or absent: a step or leg that is not ours
is answered as one that is over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from callcenter.calls.store import parse_twilio_timestamp
from callcenter.errors import MalformedWebhook
from callcenter.ivr.webhook_params import require
from callcenter.routing.chain import LegStatus


def count(raw: str | None) -> int | None:
    """A small non-negative number, or None. ASCII digits only: str.isdigit() also admits
    "²" and other digits int() refuses; at most nine, so it fits every integer column."""
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 10 else None


def _flag(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    return raw.strip().lower() == "true"


@dataclass(frozen=True)
class CallerRedirect:
    """The IVR hands the caller's call over to routing (`/consultation`, `/urgent`)."""

    call_sid: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> CallerRedirect:
        require(form, "CallSid")
        return cls(form["CallSid"].strip())


@dataclass(frozen=True)
class DialEnded:
    """The `<Dial>` of routing step `step` ended (its `action`, `?step=N`)."""

    call_sid: str
    step: int | None
    dial_status: str
    dial_call_sid: str | None
    # The caller's own CallStatus: a final one means the caller hung up.
    call_status: str | None
    # Twilio's DialBridged, when sent: whether the two parties were ever connected.
    bridged: bool | None

    @classmethod
    def from_form(cls, form: Mapping[str, str], *, step: str | None) -> DialEnded:
        require(form, "CallSid")
        return cls(
            call_sid=form["CallSid"].strip(),
            step=count(step),
            dial_status=form.get("DialCallStatus", ""),
            dial_call_sid=form.get("DialCallSid") or None,
            call_status=form.get("CallStatus") or None,
            bridged=_flag(form.get("DialBridged")),
        )


@dataclass(frozen=True)
class VoicemailLeft:
    """The `<Record>` action after nobody took the call (no recording: the caller kept
    silent, and Twilio followed the `<Redirect>`)."""

    call_sid: str
    recording_sid: str | None
    recording_url: str | None
    duration: int | None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> VoicemailLeft:
        require(form, "CallSid")
        return cls(
            call_sid=form["CallSid"].strip(),
            recording_sid=form.get("RecordingSid") or None,
            recording_url=form.get("RecordingUrl") or None,
            duration=count(form.get("RecordingDuration")),
        )


@dataclass(frozen=True)
class CallbackAnswer:
    """The caller's keys at the call-back offer (`/callback`): 1, or a typed number."""

    call_sid: str
    digits: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> CallbackAnswer:
        require(form, "CallSid")
        return cls(form["CallSid"].strip(), form.get("Digits", "").strip())


@dataclass(frozen=True)
class KbAnswer:
    """The caller's answer to the knowledge base offer (`/kb`): 1, or «да» said."""

    call_sid: str
    wants: bool

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> KbAnswer:
        require(form, "CallSid")
        digits = form.get("Digits", "").strip()
        speech = form.get("SpeechResult", "").strip().lower()
        said_yes = speech.startswith(("да", "отправ", "один"))
        return cls(form["CallSid"].strip(), digits == "1" or (not digits and said_yes))


@dataclass(frozen=True)
class LegRequest:
    """A request on a dialled leg: its whisper (`<Number url>`) or the key pressed after it.
    `call_sid` is the caller's call (`?call=`, else `ParentCallSid`); `position` the leg's
    (`?leg=`), None when it is not one of ours."""

    call_sid: str
    position: int | None
    digits: str

    @classmethod
    def from_form(cls, form: Mapping[str, str], *, call: str | None, leg: str | None) -> LegRequest:
        require(form, "CallSid")  # the leg's own call
        return cls(
            call_sid=call or form.get("ParentCallSid", ""),
            position=count(leg),
            digits=form.get("Digits", ""),
        )


@dataclass(frozen=True)
class LegStatusReport:
    """One status callback of a dialled leg (`<Number statusCallback>`)."""

    call_sid: str
    position: int
    status: LegStatus

    @classmethod
    def from_form(
        cls, form: Mapping[str, str], *, call: str | None, leg: str | None
    ) -> LegStatusReport:
        position = count(leg)
        if position is None or not form.get("CallStatus"):
            raise MalformedWebhook("leg and CallStatus are required")
        return cls(
            call_sid=call or form.get("ParentCallSid", ""),
            position=position,
            status=LegStatus(
                status=form["CallStatus"],
                child_call_sid=form.get("CallSid") or None,
                timestamp=parse_twilio_timestamp(form.get("Timestamp")),
            ),
        )
