"""The REST contract's JSON shapes (see `openapi.yaml`), both ways.

The API reads requests and writes tickets with these functions; `HttpPortal` writes
requests and reads tickets with the same ones, so the two sides cannot drift apart.

Times are ISO 8601 with an offset. We write Moscow time (`+03:00`), the zone the
regulation counts in; a time without an offset is refused rather than guessed.
Unknown request fields are refused (a misspelt field must not be lost silently); unknown
response fields are ignored (the customer's portal may say more than we ask for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from callcenter.clock import as_utc, to_moscow
from callcenter.errors import InvalidTicketData
from callcenter.portal import tickets as rules
from callcenter.portal.protocol import (
    AffectedOrganisation,
    IncidentLink,
    TicketDraft,
    TicketEntryView,
    TicketView,
)

# ---------------------------------------------------------------- times


def time_to_json(at: datetime | None) -> str | None:
    return None if at is None else to_moscow(at).isoformat()


def time_from_json(value: str) -> datetime:
    """An aware UTC datetime; ValueError for anything but ISO 8601 with an offset."""
    parsed = datetime.fromisoformat(value)
    if parsed.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone offset")
    return as_utc(parsed)


# ---------------------------------------------------------------- reading requests


class _Fields:
    """Reads a JSON object field by field, collecting every problem before refusing."""

    def __init__(self, body: object, allowed: set[str]) -> None:
        self.problems: dict[str, str] = {}
        if not isinstance(body, dict):
            self.body: dict[str, Any] = {}
            self.problems["body"] = "must be a JSON object"
            return
        self.body = body
        for name in sorted(set(body) - allowed):
            self.problems[name] = "unknown field"

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.body.get(name)
        if value is None:
            if required:
                self.problems[name] = "is required"
            return None
        if not isinstance(value, str):
            self.problems[name] = "must be a string"
            return None
        return value

    def integer(self, name: str) -> int | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems[name] = "must be an integer"
            return None
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.body.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems[name] = "must be a list of strings"
            return ()
        return tuple(value)

    def time(self, name: str, *, required: bool = False) -> datetime | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        try:
            return time_from_json(value)
        except ValueError:
            self.problems[name] = "must be an ISO 8601 date-time with an offset"
            return None

    def check(self, more: Mapping[str, str] | None = None) -> None:
        """Refuse with every problem found, type problems winning over value problems."""
        if "body" in self.problems:  # not an object: nothing else is worth saying
            raise InvalidTicketData({"body": self.problems["body"]})
        merged = {**(more or {}), **self.problems}
        if merged:
            raise InvalidTicketData(dict(sorted(merged.items())))


DRAFT_FIELDS = {
    "topic",
    "description",
    "product",
    "vehicles",
    "contact_name",
    "contact_id",
    "organisation_name",
    "organisation_id",
    "caller",
    "call_ref",
    "recording_url",
    "priority",
    "first_stage_due",
    "resolution_due",
}


def draft_from_json(body: object, idempotency_key: str) -> TicketDraft:
    """The draft of `POST /tickets` (the key travels in the Idempotency-Key header)."""
    f = _Fields(body, DRAFT_FIELDS)
    draft = TicketDraft(
        topic=f.text("topic", required=True) or "",
        description=f.text("description") or "",
        idempotency_key=idempotency_key,
        product=f.text("product"),
        vehicles=f.texts("vehicles"),
        contact_name=f.text("contact_name"),
        contact_id=f.integer("contact_id"),
        organisation_name=f.text("organisation_name"),
        organisation_id=f.integer("organisation_id"),
        caller=f.text("caller"),
        call_ref=f.text("call_ref"),
        recording_url=f.text("recording_url"),
        priority=f.text("priority") or "normal",
        first_stage_due=f.time("first_stage_due"),
        resolution_due=f.time("resolution_due"),
    )
    f.check(rules.draft_problems(draft))
    return draft


@dataclass(frozen=True)
class NewEntry:
    """`POST /tickets/{number}/entries`."""

    text: str | None
    attachment_url: str | None
    attachment_name: str | None
    author: str | None


def entry_from_json(body: object) -> NewEntry:
    f = _Fields(body, {"text", "attachment_url", "attachment_name", "author"})
    entry = NewEntry(
        text=f.text("text"),
        attachment_url=f.text("attachment_url"),
        attachment_name=f.text("attachment_name"),
        author=f.text("author"),
    )
    f.check(
        rules.entry_problems(
            text=entry.text,
            attachment_url=entry.attachment_url,
            attachment_name=entry.attachment_name,
            author=entry.author,
            dedup_key=None,
        )
    )
    return entry


@dataclass(frozen=True)
class PhoneDuplicate:
    """`POST /tickets/{number}/phone-duplicates`."""

    at: datetime
    caller: str | None
    call_ref: str | None


def phone_duplicate_from_json(body: object) -> PhoneDuplicate:
    f = _Fields(body, {"at", "caller", "call_ref"})
    at = f.time("at", required=True)
    caller, call_ref = f.text("caller"), f.text("call_ref")
    f.check(rules.phone_duplicate_problems(at=at, caller=caller, call_ref=call_ref) if at else None)
    assert at is not None  # check() refused a missing or unreadable `at`
    return PhoneDuplicate(at=at, caller=caller, call_ref=call_ref)


@dataclass(frozen=True)
class TicketChange:
    """`PATCH /tickets/{number}`."""

    status: str | None
    priority: str | None
    author: str | None
    comment: str | None


def change_from_json(body: object) -> TicketChange:
    f = _Fields(body, {"status", "priority", "author", "comment"})
    change = TicketChange(
        status=f.text("status"),
        priority=f.text("priority"),
        author=f.text("author"),
        comment=f.text("comment"),
    )
    f.check(
        rules.change_problems(
            status=change.status,
            priority=change.priority,
            author=change.author,
            comment=change.comment,
        )
    )
    return change


@dataclass(frozen=True)
class NewAffected:
    """`POST /tickets/{number}/affected-organisations`."""

    organisations: tuple[AffectedOrganisation, ...]
    author: str | None


def affected_from_json(body: object) -> NewAffected:
    f = _Fields(body, {"organisations", "author"})
    author = f.text("author")
    raw = f.body.get("organisations")
    organisations: list[AffectedOrganisation] = []
    if raw is None:
        f.problems["organisations"] = "is required"
    elif not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        f.problems["organisations"] = "must be a list of objects with a name and an optional id"
    else:
        for item in raw:
            name, org_id = item.get("name"), item.get("id")
            if set(item) - {"name", "id"}:
                f.problems["organisations"] = "each organisation has only a name and an id"
            elif not isinstance(name, str):
                f.problems["organisations"] = "each organisation needs a name (a string)"
            elif org_id is not None and (isinstance(org_id, bool) or not isinstance(org_id, int)):
                f.problems["organisations"] = "an organisation's id must be an integer"
            else:
                organisations.append(AffectedOrganisation(name=name, id=org_id))
    found = NewAffected(tuple(organisations), author)
    f.check(
        None
        if "organisations" in f.problems
        else rules.affected_problems(found.organisations, author=author)
    )
    return found


@dataclass(frozen=True)
class NewIncidentLink:
    """`POST /tickets/{number}/incidents`."""

    link: IncidentLink
    author: str | None


def incident_from_json(body: object) -> NewIncidentLink:
    f = _Fields(body, {"incident", "label", "author"})
    link = IncidentLink(incident=f.text("incident", required=True) or "", label=f.text("label"))
    author = f.text("author")
    f.check(None if "incident" in f.problems else rules.incident_problems(link, author=author))
    return NewIncidentLink(link, author)


def affected_to_json(
    organisations: tuple[AffectedOrganisation, ...] | list[AffectedOrganisation],
    author: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organisations": [
            {"name": org.name, **({"id": org.id} if org.id is not None else {})}
            for org in organisations
        ]
    }
    if author is not None:
        body["author"] = author
    return body


def incident_to_json(link: IncidentLink, author: str | None) -> dict[str, Any]:
    body = {"incident": link.incident, "label": link.label, "author": author}
    return {k: v for k, v in body.items() if v is not None}


# ---------------------------------------------------------------- writing requests


def draft_to_json(draft: TicketDraft) -> dict[str, Any]:
    """The body of `POST /tickets`; send `draft.idempotency_key` as Idempotency-Key."""
    return {
        "topic": draft.topic,
        "description": draft.description,
        "product": draft.product,
        "vehicles": list(draft.vehicles),
        "contact_name": draft.contact_name,
        "contact_id": draft.contact_id,
        "organisation_name": draft.organisation_name,
        "organisation_id": draft.organisation_id,
        "caller": draft.caller,
        "call_ref": draft.call_ref,
        "recording_url": draft.recording_url,
        "priority": draft.priority,
        # A naive value goes out as written so the portal refuses it with a field error.
        "first_stage_due": _any_time_to_json(draft.first_stage_due),
        "resolution_due": _any_time_to_json(draft.resolution_due),
    }


def _any_time_to_json(at: datetime | None) -> str | None:
    if at is not None and at.utcoffset() is None:
        return at.isoformat()
    return time_to_json(at)


# ---------------------------------------------------------------- tickets


def view_to_json(view: TicketView) -> dict[str, Any]:
    return {
        "number": view.number,
        "topic": view.topic,
        "status": view.status,
        "priority": view.priority,
        "product": view.product,
        "vehicles": list(view.vehicles),
        "contact_name": view.contact_name,
        "contact_id": view.contact_id,
        "organisation_id": view.organisation_id,
        "organisation_name": view.organisation_name,
        "caller": view.caller,
        "description": view.description,
        "call_ref": view.call_ref,
        "recording_url": view.recording_url,
        "first_stage_due": time_to_json(view.first_stage_due),
        "resolution_due": time_to_json(view.resolution_due),
        "created_at": time_to_json(view.created_at),
        "duplicated_by_phone_at": time_to_json(view.duplicated_by_phone_at),
        "url": view.url,
        "affected_organisations": [
            {"id": org.id, "name": org.name} for org in view.affected_organisations
        ],
        "incidents": [{"incident": i.incident, "label": i.label} for i in view.incidents],
        "history": [
            {
                "at": time_to_json(e.at),
                "kind": e.kind,
                "text": e.text,
                "author": e.author,
                "attachment_url": e.attachment_url,
                "attachment_name": e.attachment_name,
            }
            for e in view.history
        ],
    }


class MalformedTicket(ValueError):
    """A portal's answer does not have the shape of a ticket."""


def view_from_json(data: object) -> TicketView:
    """A ticket from a portal's answer; MalformedTicket when it is not one."""
    if not isinstance(data, dict):
        raise MalformedTicket("expected a JSON object")
    try:
        return TicketView(
            number=_required_str(data, "number"),
            topic=_required_str(data, "topic"),
            status=_required_str(data, "status"),
            priority=_required_str(data, "priority"),
            organisation_id=_opt(data, "organisation_id", int),
            organisation_name=_opt(data, "organisation_name", str),
            first_stage_due=_opt_time(data, "first_stage_due"),
            resolution_due=_opt_time(data, "resolution_due"),
            created_at=time_from_json(_required_str(data, "created_at")),
            duplicated_by_phone_at=_opt_time(data, "duplicated_by_phone_at"),
            url=_opt(data, "url", str),
            history=tuple(_entry_from_json(e) for e in _opt(data, "history", list) or ()),
            product=_opt(data, "product", str),
            vehicles=_strings(data, "vehicles"),
            contact_name=_opt(data, "contact_name", str),
            contact_id=_opt(data, "contact_id", int),
            caller=_opt(data, "caller", str),
            description=_opt(data, "description", str) or "",
            call_ref=_opt(data, "call_ref", str),
            recording_url=_opt(data, "recording_url", str),
            affected_organisations=tuple(
                _affected_from(item) for item in _opt(data, "affected_organisations", list) or ()
            ),
            incidents=tuple(_incident_from(item) for item in _opt(data, "incidents", list) or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedTicket(str(exc)) from exc


def views_to_json(views: tuple[TicketView, ...]) -> dict[str, Any]:
    """A list of tickets (`GET /tickets`)."""
    return {"tickets": [view_to_json(view) for view in views]}


def views_from_json(data: object) -> tuple[TicketView, ...]:
    if not isinstance(data, dict) or not isinstance(data.get("tickets"), list):
        raise MalformedTicket("expected an object with a list of tickets")
    return tuple(view_from_json(item) for item in data["tickets"])


def _affected_from(data: object) -> AffectedOrganisation:
    if not isinstance(data, dict):
        raise MalformedTicket("an affected organisation must be a JSON object")
    return AffectedOrganisation(name=_required_str(data, "name"), id=_opt(data, "id", int))


def _incident_from(data: object) -> IncidentLink:
    if not isinstance(data, dict):
        raise MalformedTicket("an incident link must be a JSON object")
    return IncidentLink(incident=_required_str(data, "incident"), label=_opt(data, "label", str))


def _entry_from_json(data: object) -> TicketEntryView:
    if not isinstance(data, dict):
        raise MalformedTicket("a history entry must be a JSON object")
    return TicketEntryView(
        at=time_from_json(_required_str(data, "at")),
        kind=_required_str(data, "kind"),
        text=_opt(data, "text", str),
        author=_opt(data, "author", str),
        attachment_url=_opt(data, "attachment_url", str),
        attachment_name=_opt(data, "attachment_name", str),
    )


def _required_str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedTicket(f"{name!r} must be a non-empty string")
    return value


T = TypeVar("T")


def _opt(data: dict[str, Any], name: str, kind: type[T]) -> T | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedTicket(f"{name!r} must be a {kind.__name__}")
    return value


def _strings(data: dict[str, Any], name: str) -> tuple[str, ...]:
    values = _opt(data, name, list) or []
    if not all(isinstance(v, str) for v in values):
        raise MalformedTicket(f"{name!r} must be a list of strings")
    return tuple(values)


def _opt_time(data: dict[str, Any], name: str) -> datetime | None:
    value = _opt(data, name, str)
    return None if value is None else time_from_json(value)
