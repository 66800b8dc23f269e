"""The ticket's rules: statuses and their workflow, priorities, history kinds, and what a
usable draft, entry or phone duplicate is.

Shared by the built-in portal (which enforces them) and the REST layer (which reports
them as field errors), so an in-process caller and an HTTP client get the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from callcenter.portal.protocol import AffectedOrganisation, IncidentLink, TicketDraft

# ---------------------------------------------------------------- statuses

NEW = "Новая"
IN_PROGRESS = "В работе"
SOLVED = "Решена"
CLOSED = "Закрыта"
STATUSES = (NEW, IN_PROGRESS, SOLVED, CLOSED)

# The regulation (sections IV–V): a specialist takes a ticket into work and solves it; the
# user closes a solved ticket or objects, which sends it back into work. A new ticket may be
# solved at once (a quick answer) or closed (withdrawn, a duplicate). Closed is final: a
# new problem is a new ticket.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    NEW: frozenset({IN_PROGRESS, SOLVED, CLOSED}),
    IN_PROGRESS: frozenset({SOLVED, CLOSED}),
    SOLVED: frozenset({IN_PROGRESS, CLOSED}),
    CLOSED: frozenset(),
}

# ---------------------------------------------------------------- priorities

PRIORITIES = ("normal", "high", "critical")
CRITICAL = "critical"
PRIORITY_LABELS = {"normal": "обычный", "high": "высокий", "critical": "критический"}

# ---------------------------------------------------------------- history kinds

CREATED = "created"
COMMENT = "comment"
ATTACHMENT = "attachment"
PHONE_DUPLICATE = "phone_duplicate"
STATUS_CHANGE = "status"
PRIORITY_CHANGE = "priority"
AFFECTED = "affected_client"
INCIDENT = "incident"
ENTRY_KINDS = (
    CREATED,
    COMMENT,
    ATTACHMENT,
    PHONE_DUPLICATE,
    STATUS_CHANGE,
    PRIORITY_CHANGE,
    AFFECTED,
    INCIDENT,
)
# Not solved or closed: what a repeat caller is offered to add to.
OPEN_STATUSES = (NEW, IN_PROGRESS)

# ---------------------------------------------------------------- limits

# Column sizes of `Ticket` / `TicketEntry`; a longer value is refused, never cut.
MAX_TOPIC = 40
MAX_PRODUCT = 40
MAX_NAME = 300
MAX_CALLER = 120
MAX_CALL_REF = 64
MAX_KEY = 100
MAX_AUTHOR = 120
MAX_TEXT = 20_000
MAX_URL = 2_000
MAX_VEHICLES = 50
MAX_VEHICLE = 20
MAX_AFFECTED = 200  # organisations in one request
MAX_INCIDENT = 64
MAX_OPEN_LIMIT = 20

_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY}}}")  # printable ASCII, no spaces
_URL = re.compile(r"https?://[^\s]+", re.IGNORECASE)


def key_problem(key: str) -> str | None:
    """Why an idempotency/dedup key is unusable, or None."""
    if not _KEY.fullmatch(key):
        return f"must be 1 to {MAX_KEY} printable ASCII characters without spaces"
    return None


def _text(problems: dict[str, str], name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        problems[name] = f"must be at most {limit} characters (got {len(value)})"


def _name(problems: dict[str, str], name: str, value: str | None, limit: int) -> None:
    if value is not None and not value.strip():
        problems[name] = "must not be blank (leave it out instead)"
    else:
        _text(problems, name, value, limit)


def _url(problems: dict[str, str], name: str, value: str | None) -> None:
    if value is None:
        return
    if not _URL.fullmatch(value):
        problems[name] = "must be an http(s) URL"
    else:
        _text(problems, name, value, MAX_URL)


def _aware(problems: dict[str, str], name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        problems[name] = "must carry a time zone offset"


def draft_problems(draft: TicketDraft) -> dict[str, str]:
    """Every reason the draft cannot become a ticket, by field; empty when it can."""
    problems: dict[str, str] = {}
    if not draft.topic.strip():
        problems["topic"] = "is required"
    elif any(ch.isspace() for ch in draft.topic):
        problems["topic"] = "must be a topic slug without spaces"
    else:
        _text(problems, "topic", draft.topic, MAX_TOPIC)
    _text(problems, "description", draft.description, MAX_TEXT)
    why = key_problem(draft.idempotency_key)
    if why:
        problems["idempotency_key"] = why
    _name(problems, "product", draft.product, MAX_PRODUCT)
    if len(draft.vehicles) > MAX_VEHICLES:
        problems["vehicles"] = f"at most {MAX_VEHICLES} vehicles on one ticket"
    elif any(not v.strip() or len(v) > MAX_VEHICLE for v in draft.vehicles):
        problems["vehicles"] = f"each vehicle number must be 1 to {MAX_VEHICLE} characters"
    _name(problems, "contact_name", draft.contact_name, MAX_NAME)
    _name(problems, "organisation_name", draft.organisation_name, MAX_NAME)
    _name(problems, "caller", draft.caller, MAX_CALLER)
    _name(problems, "call_ref", draft.call_ref, MAX_CALL_REF)
    _url(problems, "recording_url", draft.recording_url)
    if draft.priority not in PRIORITIES:
        problems["priority"] = "must be one of " + ", ".join(PRIORITIES)
    _aware(problems, "first_stage_due", draft.first_stage_due)
    _aware(problems, "resolution_due", draft.resolution_due)
    return problems


def entry_problems(
    *,
    text: str | None,
    attachment_url: str | None,
    attachment_name: str | None,
    author: str | None,
    dedup_key: str | None,
) -> dict[str, str]:
    """Every reason a comment/attachment cannot be added, by field."""
    problems: dict[str, str] = {}
    if (text is None or not text.strip()) and attachment_url is None:
        problems["text"] = "a comment needs text, an attachment needs attachment_url"
    _text(problems, "text", text, MAX_TEXT)
    _url(problems, "attachment_url", attachment_url)
    _name(problems, "attachment_name", attachment_name, MAX_NAME)
    if attachment_name is not None and attachment_url is None:
        problems["attachment_name"] = "only goes with attachment_url"
    _name(problems, "author", author, MAX_AUTHOR)
    if dedup_key is not None:
        why = key_problem(dedup_key)
        if why:
            problems["dedup_key"] = why
    return problems


def phone_duplicate_problems(
    *, at: datetime, caller: str | None, call_ref: str | None
) -> dict[str, str]:
    problems: dict[str, str] = {}
    _aware(problems, "at", at)
    _name(problems, "caller", caller, MAX_CALLER)
    _name(problems, "call_ref", call_ref, MAX_CALL_REF)
    return problems


def change_problems(
    *, status: str | None, priority: str | None, author: str | None, comment: str | None
) -> dict[str, str]:
    problems: dict[str, str] = {}
    if status is None and priority is None:
        problems["status"] = "give a new status and/or priority"
    if status is not None and status not in STATUSES:
        problems["status"] = "must be one of " + ", ".join(STATUSES)
    if priority is not None and priority not in PRIORITIES:
        problems["priority"] = "must be one of " + ", ".join(PRIORITIES)
    _name(problems, "author", author, MAX_AUTHOR)
    _text(problems, "comment", comment, MAX_TEXT)
    return problems


def affected_problems(
    organisations: tuple[AffectedOrganisation, ...], *, author: str | None
) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not organisations:
        problems["organisations"] = "give at least one organisation"
    elif len(organisations) > MAX_AFFECTED:
        problems["organisations"] = f"at most {MAX_AFFECTED} organisations in one request"
    elif any(not o.name.strip() or len(o.name) > MAX_NAME for o in organisations):
        problems["organisations"] = f"each organisation needs a name of 1 to {MAX_NAME} characters"
    _name(problems, "author", author, MAX_AUTHOR)
    return problems


def incident_problems(link: IncidentLink, *, author: str | None) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not link.incident.strip():
        problems["incident"] = "is required"
    elif len(link.incident) > MAX_INCIDENT:
        problems["incident"] = f"must be at most {MAX_INCIDENT} characters"
    _name(problems, "label", link.label, MAX_NAME)
    _name(problems, "author", author, MAX_AUTHOR)
    return problems


def open_query_problems(
    *, contact_id: int | None, caller: str | None, limit: int
) -> dict[str, str]:
    problems: dict[str, str] = {}
    if contact_id is None and caller is None:
        problems["contact_id"] = "give contact_id and/or caller"
    _name(problems, "caller", caller, MAX_CALLER)
    if not 1 <= limit <= MAX_OPEN_LIMIT:
        problems["limit"] = f"must be 1 to {MAX_OPEN_LIMIT}"
    return problems
