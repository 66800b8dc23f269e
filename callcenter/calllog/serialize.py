"""The JSON shape of one call in the call log: the API's and the console's common word.

`call_json(call)` reads a `Call` loaded with its contact, organisation, ticket request,
legs, events and notes (see `calllog_query.CALL_LOAD_OPTIONS`) and returns plain JSON
types only. Times are ISO 8601 in Moscow time (`2025-11-27T11:00:00+03:00`): that is the
time a supervisor reads and the regulation counts in; the offset keeps them unambiguous.

The recording is never the public Twilio link (that needs the account's credentials and
would leak a customer's voice to whoever gets the JSON): it points at the console's own
recording route, which checks the supervisor's session.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from callcenter.clock import to_moscow
from callcenter.db.models import Call, CallEvent, CallNote, DialLeg
from callcenter.vocabulary import URGENT_CATEGORIES, Outcome

# Where the console serves a call's recording (owned by the console blueprint).
RECORDING_PATH = "/console/calls/{call_sid}/recording"


def iso_moscow(at: datetime | None) -> str | None:
    if at is None:
        return None
    return to_moscow(at).isoformat(timespec="seconds")


def is_urgent_unanswered(call: Call) -> bool:
    """An urgent call that ended without anybody accepting it: the head of support calls
    back. Must agree with `calllog_query`'s `urgent_unanswered` filter."""
    return (
        call.category in URGENT_CATEGORIES
        and call.outcome != Outcome.IN_PROGRESS
        and not any(leg.result == "accepted" for leg in call.legs)
    )


def call_json(call: Call, *, lines: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One call as JSON. `lines` (E.164 → label, from the settings) adds `line_label`."""
    request = call.ticket_request
    return {
        "call_sid": call.call_sid,
        "line": call.line,
        "line_label": (lines or {}).get(call.line or ""),
        "caller": call.caller_e164,
        "caller_raw": call.caller_raw,
        "caller_kind": call.caller_kind,
        "caller_said_name": call.caller_said_name,
        "contact": (
            {"id": call.contact.id, "name": call.contact.name} if call.contact is not None else None
        ),
        "organisation": (
            {"id": call.organisation.id, "name": call.organisation.name}
            if call.organisation is not None
            else None
        ),
        "category": call.category,
        "topic": call.topic,
        "product": call.product,
        "vehicles": list(call.vehicles or []),
        "ticket_number": request.ticket_number if request is not None else None,
        "ticket_state": request.status if request is not None else None,
        "ticket_error": request.last_error if request is not None else None,
        "related_ticket": related_ticket(call),
        "outcome": call.outcome,
        "interrupted": call.interrupted,
        "twilio_status": call.twilio_status,
        "routing_outcome": call.routing_outcome,
        "urgent_unanswered": is_urgent_unanswered(call),
        "legs": [_leg_json(leg) for leg in call.legs],
        "recording": _recording_json(call),
        "started_at": iso_moscow(call.started_at),
        "ended_at": iso_moscow(call.ended_at),
        "duration_seconds": call.duration_seconds,
        "flagged": call.flagged,
        "flag_reason": call.flag_reason,
        "called_back_at": iso_moscow(call.called_back_at),
        "called_back_by": call.called_back_by,
        "events": [_event_json(event) for event in call.events],
        "notes": [_note_json(note) for note in call.notes],
    }


def related_ticket(call: Call) -> str | None:
    """The existing ticket the call was about (its status said, an addition, a phone
    duplicate), as the IVR noted it in the call's state; None for any other call."""
    state = call.state or {}
    found = state.get("related_ticket") or state.get("duplicate_of")
    return str(found) if found else None


def _recording_json(call: Call) -> dict[str, Any] | None:
    if call.recording_sid is None and call.recording_url is None:
        return None
    return {
        "sid": call.recording_sid,
        "duration": call.recording_duration,
        "url": RECORDING_PATH.format(call_sid=call.call_sid),
    }


def _leg_json(leg: DialLeg) -> dict[str, Any]:
    seconds_to_answer = (
        round((leg.answered_at - leg.started_at).total_seconds())
        if leg.answered_at is not None
        else None
    )
    return {
        "position": leg.position,
        "staff_key": leg.staff_key,
        "name": leg.staff_name,
        "number": leg.number,
        "child_call_sid": leg.child_call_sid,
        "started_at": iso_moscow(leg.started_at),
        "answered_at": iso_moscow(leg.answered_at),
        "accepted_at": iso_moscow(leg.answered_at) if leg.result == "accepted" else None,
        "ended_at": iso_moscow(leg.ended_at),
        "seconds_to_answer": seconds_to_answer,
        "result": leg.result,
    }


def _event_json(event: CallEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "step": event.step,
        "digits": event.digits,
        "speech": event.speech,
        "at": iso_moscow(event.at),
        "detail": dict(event.detail or {}),
    }


def _note_json(note: CallNote) -> dict[str, Any]:
    return {"at": iso_moscow(note.at), "author": note.author, "text": note.text}
