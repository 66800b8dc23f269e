"""The words every layer shares: what a call is about, how it ended, where its steps are
served, and who may be sent an SMS.

The IVR writes these words, routing and the ticket pipeline act on them, the call log
filters and labels them, and Twilio reaches the steps by their URLs; each is defined here
once. The values are what the database stores (`calls.category`, `calls.outcome`), so the
enums are `StrEnum`s: a member compares and serialises as its stored string.

Adding a category: a `Category` member and its row in `CATEGORY_RULES` (a test checks
that every member has one); urgency, tickets and the implied topic follow from the row.
Adding an IVR step: a `Step` member; its URL comes from `step_path`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, NamedTuple
from urllib.parse import urlencode

import phonenumbers
from phonenumbers import PhoneNumberType

from callcenter.clock import to_moscow
from callcenter.phones import classify

# ------------------------------------------------------------------ categories


class Category(StrEnum):
    """What a call is about (`calls.category`): the main-menu path the caller took."""

    CONSULTATION = "consultation"
    INCIDENT = "incident"  # "a new problem"
    CRITICAL = "critical"  # a critical server failure
    STOLEN = "stolen"  # a stolen vehicle
    STATUS = "status"  # the status of an existing ticket
    ADDITION = "addition"  # a repeat caller adds to an open ticket of theirs
    ABANDONED = "abandoned"  # hung up before choosing anything


TicketRule = Literal["always", "callback", "never"]


@dataclass(frozen=True)
class CategoryRules:
    # Rings the urgent chain, day or night, and alerts the staff on duty by SMS.
    urgent: bool
    # always: every such call ends with a ticket (the regulation: every phone request but a
    # consultation); callback: only when nobody answered it; never: nothing to ticket.
    ticket: TicketRule
    # The topic the category implies when no menu chose one (None: the caller chooses).
    topic: str | None = None
    # The ticket's priority on the portal.
    priority: str = "normal"


CATEGORY_RULES: Mapping[Category, CategoryRules] = {
    Category.CONSULTATION: CategoryRules(urgent=False, ticket="callback", topic="consultation"),
    Category.INCIDENT: CategoryRules(urgent=False, ticket="always"),
    Category.CRITICAL: CategoryRules(
        urgent=True, ticket="always", topic="critical_server_failure", priority="critical"
    ),
    Category.STOLEN: CategoryRules(
        urgent=True, ticket="always", topic="stolen_vehicle", priority="high"
    ),
    # A status enquiry asks about a ticket; it is not a new request.
    Category.STATUS: CategoryRules(urgent=False, ticket="never"),
    # An addition goes onto the caller's open ticket; it never opens a new one.
    Category.ADDITION: CategoryRules(urgent=False, ticket="never"),
    Category.ABANDONED: CategoryRules(urgent=False, ticket="never"),
}

# Tuples in the enum's order, so SQL built from them (`Call.category.in_(...)`) is the same
# statement in every process.
# Calls that must reach a person at once: the urgent chain, the on-duty alerts.
URGENT_CATEGORIES = tuple(c for c in Category if CATEGORY_RULES[c].urgent)
# Calls that must end with a ticket; a finished one without is a problem for the supervisor.
TICKETED_CATEGORIES = tuple(c for c in Category if CATEGORY_RULES[c].ticket == "always")
# Calls that never make a ticket.
UNTICKETED_CATEGORIES = tuple(c for c in Category if CATEGORY_RULES[c].ticket == "never")
# Category → the topic it implies when none was chosen from a menu.
CATEGORY_TOPICS: Mapping[Category, str] = {
    c: rules.topic for c, rules in CATEGORY_RULES.items() if rules.topic is not None
}
CRITICAL_TOPIC = CATEGORY_TOPICS[Category.CRITICAL]
STOLEN_TOPIC = CATEGORY_TOPICS[Category.STOLEN]
CONSULTATION_TOPIC = CATEGORY_TOPICS[Category.CONSULTATION]
# Topic → the ticket priority its category sets (every other topic: "normal").
TOPIC_PRIORITIES: Mapping[str, str] = {
    rules.topic: rules.priority
    for rules in CATEGORY_RULES.values()
    if rules.topic is not None and rules.priority != "normal"
}
# Tickets whose priority says an urgent call made them: the staff on duty are alerted.
URGENT_PRIORITIES = frozenset(TOPIC_PRIORITIES.values())


# ------------------------------------------------------------------ outcomes


class Outcome(StrEnum):
    """How a call ended (`calls.outcome`)."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"  # hung up after a choice: the ticket says so
    # Hung up before any choice (category ABANDONED), or at a path's first question before
    # saying anything (the category chosen; event ABANDONED_AFTER_CHOICE): a callback.
    ABANDONED = "abandoned"
    FAILED = "failed"  # Twilio could not connect the call


# The call-log event (`call_events.kind`) of a call hung up at its path's first question,
# before saying anything the path needs: no ticket, a callback (outcome ABANDONED with the
# category chosen); an urgent one from a callable number texts the on-duty specialist.
ABANDONED_AFTER_CHOICE = "abandoned_after_choice"


# ------------------------------------------------------------------ steps and their URLs


class Step(StrEnum):
    """The IVR's steps (`CallState.step`), each served at `step_path(step, turn)`."""

    START = "start"
    # A known incident announced before the main menu: 1 or «да» joins it.
    INCIDENT_OFFER = "incident_offer"
    MAIN_MENU = "main_menu"
    CONFIRM_URGENT = "confirm_urgent"  # "did you say a critical failure?" (a spoken choice)
    TOPIC = "topic"
    PRODUCT = "product"
    VEHICLES = "vehicles"
    CALLER_NAME = "caller_name"
    DESCRIPTION = "description"
    TICKET_WAIT = "ticket_wait"
    TICKET_DONE = "ticket_done"
    CRITICAL = "critical"  # the critical path's "your ticket number, or #"
    STOLEN_VEHICLES = "stolen_vehicles"
    STATUS_NUMBER = "status_number"
    STATUS_DONE = "status_done"
    STATUS_UNAVAILABLE = "status_unavailable"
    # A caller we cannot tie to an organisation asked for a status: a specialist tells it.
    STATUS_UNKNOWN_CALLER = "status_unknown_caller"
    STATUS_OBJECTION = "status_objection"  # the objection to a solution, being recorded
    CALLBACK_NUMBER = "callback_number"  # a withheld caller types a number to call back
    REPEAT_OFFER = "repeat_offer"  # "you have an open ticket: to add to it, press 1"
    ADDITION = "addition"  # the recorded addition to that ticket
    ADDITION_DONE = "addition_done"  # its status and deadline said
    ROUTED = "routed"  # handed over to routing
    ENDED = "ended"


# Where the IVR's state (`Call.state`) keeps a withheld caller's typed callback number
# (E.164); the ticket intake reads it for the ticket's contact and description, and the
# call-back queue dials it. Typed in the IVR's step, or at routing's call-back offer.
CALLBACK_NUMBER_KEY = "callback_number"


class Route(StrEnum):
    """Where the IVR hands a call over to on-duty routing."""

    CONSULTATION = "consultation"  # consultation duty (after hours: the duty specialist)
    URGENT = "urgent"  # the urgent chain, then the head of support


# Every URL below is a path on this service; `callcenter.ivr.twiml.absolute` makes it
# absolute against PUBLIC_BASE_URL where Twilio needs that.
WEBHOOKS_PREFIX = "/webhooks/"  # Twilio's requests: signed, never throttled, never a 500
VOICE_PREFIX = WEBHOOKS_PREFIX + "voice"
INCOMING_PATH = VOICE_PREFIX + "/incoming"  # the numbers' Voice URL
STATUS_PATH = VOICE_PREFIX + "/status"  # their status callback
FALLBACK_PATH = VOICE_PREFIX + "/fallback"  # their Voice fallback URL
FALLBACK_DIAL_RESULT_PATH = FALLBACK_PATH + "/dial-result"
FALLBACK_VOICEMAIL_PATH = FALLBACK_PATH + "/voicemail"
RECORDING_STATUS_PATH = VOICE_PREFIX + "/recording-status"
STEP_PREFIX = VOICE_PREFIX + "/step"
ROUTE_PREFIX = VOICE_PREFIX + "/route"

RecordingKind = Literal["description", "voicemail", "addition"]
RECORDING_KINDS: tuple[RecordingKind, ...] = ("description", "voicemail", "addition")


def step_path(step: str, turn: int) -> str:
    """`/webhooks/voice/step/main_menu?t=3`: the step and its turn, so a retried or stale
    request is recognised (`callcenter.ivr.engine`)."""
    return f"{STEP_PREFIX}/{step}?t={turn}"


def route_path(route: str) -> str:
    """Where routing takes the call over: `/webhooks/voice/route/urgent`."""
    return f"{ROUTE_PREFIX}/{Route(route)}"


# What routing's own TwiML sends Twilio back to, under the route prefix.
ROUTING_ACTIONS = (
    "/dial",
    "/whisper",
    "/whisper/answer",
    "/leg-status",
    "/voicemail",
    "/callback",  # the caller's answer to the call-back offer (a consultation nobody took)
)


def routing_path(action: str, **params: object) -> str:
    """A routing step's URL (one of `ROUTING_ACTIONS`) with its query."""
    query = "?" + urlencode(params) if params else ""
    return ROUTE_PREFIX + action + query


def recording_status_path(kind: RecordingKind) -> str:
    return f"{RECORDING_STATUS_PATH}?kind={kind}"


# Twilio's status callbacks of the SMS we send (`webhooks.sms`).
SMS_PREFIX = "/webhooks/sms"
SMS_STATUS_PATH = SMS_PREFIX + "/status"


def sms_status_callback(public_base_url: str | None) -> str | None:
    """The StatusCallback every SMS is sent with: absolute under PUBLIC_BASE_URL. None
    without one (Twilio cannot post to a relative URL): the SMS then goes without
    delivery reports, and the console says only that Twilio took it."""
    if not public_base_url:
        return None
    return public_base_url.rstrip("/") + SMS_STATUS_PATH


# ------------------------------------------------------------------ SMS reachability


class SmsReach(NamedTuple):
    ok: bool
    reason: str


# Foreign numbers of these types cannot take an SMS.
_NO_SMS_TYPES = {
    PhoneNumberType.FIXED_LINE: "a foreign landline",
    PhoneNumberType.TOLL_FREE: "a foreign toll-free number",
    PhoneNumberType.PREMIUM_RATE: "a foreign premium-rate number",
    PhoneNumberType.SHARED_COST: "a foreign shared-cost number",
}


@functools.lru_cache(maxsize=4096)
def sms_reach(kind: str, e164: str | None, *, sms_foreign: bool) -> SmsReach:
    """May this caller get an SMS, and why (or why not)? The one rule for what the IVR
    promises ("the number will come by SMS") and for what the follow-ups send.

    `kind` and `e164` are a `callcenter.phones.CallerId`'s (as stored on the call
    row); `sms_foreign` is the SMS_FOREIGN setting. Russian mobiles always; numbers abroad
    only with SMS_FOREIGN (cost and delivery are the operator's call) and never when they
    are plainly not mobiles; never landlines, toll-free numbers, withheld callers, or
    SIP/client callers without a number. A SIP caller that carries a number is judged by
    that number. Whether Twilio is configured at all is the caller's to add.

    Cached: the IVR asks on every step of a call, and parsing a number is the costly part.
    """
    if kind in ("sip", "client"):
        if e164 is None:
            return SmsReach(False, f"{kind} caller without a phone number")
        kind = classify(e164).kind
    if kind == "withheld":
        return SmsReach(False, "caller ID withheld")
    if e164 is None or kind == "invalid":
        return SmsReach(False, "not a valid phone number")
    if kind == "mobile":
        return SmsReach(True, "Russian mobile number")
    if kind == "landline":
        return SmsReach(False, "landline number, cannot receive SMS")
    if kind == "tollfree":
        return SmsReach(False, "toll-free number, cannot receive SMS")
    if kind == "foreign":
        if not sms_foreign:
            return SmsReach(False, "number outside Russia (SMS_FOREIGN is off)")
        not_mobile = _foreign_non_mobile(e164)
        if not_mobile:
            return SmsReach(False, f"{not_mobile}, cannot receive SMS")
        return SmsReach(True, "number outside Russia (SMS_FOREIGN is on)")
    return SmsReach(False, f"unknown kind of caller {kind!r}")


def _foreign_non_mobile(e164: str) -> str | None:
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "an unreadable number"
    return _NO_SMS_TYPES.get(phonenumbers.number_type(number))


# What a recording file is called wherever a person sees or saves it (the portal ticket's
# attachment, the console's download): «Запись звонка 06.12.2026 06:07.mp3», never the SID.
RECORDING_FILE_TITLES: Mapping[str, str] = {
    "description": "Запись звонка",
    "voicemail": "Голосовое сообщение",
}


def recording_file_name(kind: str | None, at: datetime, suffix: str = ".mp3") -> str:
    """`at` in Moscow time, to the minute; `kind` description / voicemail (else a call)."""
    title = RECORDING_FILE_TITLES.get(kind or "", "Запись звонка")
    return f"{title} {to_moscow(at):%d.%m.%Y %H:%M}{suffix}"
