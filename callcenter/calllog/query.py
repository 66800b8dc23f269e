"""Searching the call log: a typed filter, newest-first pages, and a stream for exports.

Flask-free: the JSON API, the console's HTML log and its CSV export all build a
`CallFilter` (usually with `CallFilter.from_params` from a query string) and call
`search_calls` or `iter_calls`. Every filter is a plain SQL condition over indexed columns
(calls.started_at, outcome, category, topic, line, caller_e164, flagged;
ticket_requests.call_id, status, ticket_number; dial_legs.call_id), and the related rows a
call's JSON needs are loaded in a fixed number of queries per page, not per call.

Dates are Moscow calendar days: `date_from=2025-11-27` means from 00:00 Moscow time that day,
`date_to` is inclusive to 24:00 Moscow time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Session, joinedload, selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from callcenter.calllog.review import BY_KIND, has_problem, needs_attention
from callcenter.clock import EARLIEST_DAY, LATEST_DAY, MOSCOW, day_in_range
from callcenter.db.models import Call, Contact, DialLeg, Organisation, TicketRequest
from callcenter.errors import InvalidFilter
from callcenter.ivr.plates import parse_plates
from callcenter.phones import normalise
from callcenter.vocabulary import URGENT_CATEGORIES, Category, Outcome

CATEGORIES = tuple(Category)
OUTCOMES = tuple(Outcome)
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50

# Query-string names → CallFilter fields (`from`/`to` are Python keywords).
PARAM_NAMES: dict[str, str] = {
    "from": "date_from",
    "to": "date_to",
    "line": "lines",
    "category": "categories",
    "topic": "topics",
    "outcome": "outcomes",
    "has_ticket": "has_ticket",
    "ticket_failed": "ticket_failed",
    "urgent_unanswered": "urgent_unanswered",
    "flagged": "flagged",
    # Only the calls a supervisor must act on (see `calllog_review`), or of some kinds.
    "attention": "attention",
    "problem": "problems",
    "q": "q",
}
PAGE_PARAMS = ("page", "per_page")

_SLUG = re.compile(r"[a-z][a-z0-9_]{0,39}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Everything call_json reads, loaded per page in a handful of queries.
CALL_LOAD_OPTIONS: tuple[LoaderOption, ...] = (
    joinedload(Call.contact),
    joinedload(Call.organisation),
    joinedload(Call.ticket_request),
    selectinload(Call.legs),
    selectinload(Call.events),
    selectinload(Call.notes),
)


@dataclass(frozen=True)
class CallFilter:
    """What a supervisor asks of the log. Empty tuples and None mean "any"; several values
    in one field mean "any of them" (`category=critical,stolen`)."""

    date_from: date | None = None
    date_to: date | None = None
    lines: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    has_ticket: bool | None = None
    ticket_failed: bool | None = None
    urgent_unanswered: bool | None = None
    flagged: bool | None = None
    attention: bool | None = None
    problems: tuple[str, ...] = ()
    q: str | None = None

    def __post_init__(self) -> None:
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise InvalidFilter(
                "to",
                f"{self.date_to} is before from={self.date_from}",
                f"{self.date_to:%d.%m.%Y} раньше даты «с» ({self.date_from:%d.%m.%Y})",
            )
        for value in self.categories:
            if value not in CATEGORIES:
                raise InvalidFilter(
                    "category",
                    f"unknown category {value!r}; one of: {', '.join(CATEGORIES)}",
                    "такой категории нет",
                )
        for value in self.outcomes:
            if value not in OUTCOMES:
                raise InvalidFilter(
                    "outcome",
                    f"unknown outcome {value!r}; one of: {', '.join(OUTCOMES)}",
                    "такого исхода нет",
                )
        for value in self.problems:
            if value not in BY_KIND:
                raise InvalidFilter(
                    "problem", f"unknown problem {value!r}; one of: {', '.join(BY_KIND)}"
                )
        for value in self.lines:
            if not value.startswith("+"):
                raise InvalidFilter("line", f"{value!r} is not an E.164 number", "такой линии нет")

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, str],
        *,
        known_topics: Collection[str] | None = None,
        ignore: Collection[str] = PAGE_PARAMS,
    ) -> CallFilter:
        """Read a query string. Unknown names are refused (a misspelt filter must not
        silently show everything); blank values mean "any". `known_topics` (the
        regulation's slugs) makes an unknown topic an error rather than an empty result."""
        unknown = sorted(k for k in params if k not in PARAM_NAMES and k not in ignore)
        if unknown:
            raise InvalidFilter(unknown[0], f"unknown filter; known: {', '.join(PARAM_NAMES)}")
        values: dict[str, Any] = {}
        for param, field in PARAM_NAMES.items():
            raw = (params.get(param) or "").strip()
            if not raw:
                continue
            if any(ord(ch) < 32 for ch in raw):
                # Control characters are never in a real search; PostgreSQL refuses NUL.
                raise InvalidFilter(param, "contains control characters", "недопустимые символы")
            if field in ("date_from", "date_to"):
                values[field] = _parse_date(param, raw)
            elif field == "lines":
                values[field] = tuple(_parse_line(part) for part in _split(raw))
            elif field == "topics":
                values[field] = tuple(_parse_topic(part, known_topics) for part in _split(raw))
            elif field in ("categories", "outcomes", "problems"):
                values[field] = tuple(_split(raw))
            elif field == "q":
                if len(raw) > 100:
                    raise InvalidFilter("q", "longer than 100 characters", "длиннее 100 знаков")
                values[field] = raw
            else:
                values[field] = _parse_bool(param, raw)
        return cls(**values)

    def to_params(self) -> dict[str, str]:
        """The query string that reads back as this filter (links, CSV export)."""
        out: dict[str, str] = {}
        by_field = {field: param for param, field in PARAM_NAMES.items()}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            param = by_field[f.name]
            if isinstance(value, tuple):
                out[param] = ",".join(value)
            elif isinstance(value, bool):
                out[param] = "true" if value else "false"
            else:
                out[param] = str(value)
        return out


@dataclass(frozen=True)
class PageRequest:
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def __post_init__(self) -> None:
        if self.page < 1:
            raise InvalidFilter("page", "must be 1 or more", "номер страницы — от 1")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise InvalidFilter("per_page", f"must be between 1 and {MAX_PER_PAGE}")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> PageRequest:
        return cls(
            page=_parse_int("page", params.get("page"), 1),
            per_page=_parse_int("per_page", params.get("per_page"), DEFAULT_PER_PAGE),
        )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True)
class CallPage:
    calls: list[Call]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page * self.per_page < self.total

    @property
    def has_prev(self) -> bool:
        return self.page > 1


def search_calls(
    session: Session,
    call_filter: CallFilter,
    page: PageRequest,
    *,
    options: Sequence[LoaderOption] = CALL_LOAD_OPTIONS,
    now: datetime | None = None,
) -> CallPage:
    """One page of matching calls, newest first, with everything `call_json` reads
    (or only the related rows `options` load: the console's log needs fewer). `now`:
    the moment overdue call backs are judged at (None: not judged)."""
    conditions = _conditions(call_filter, _case_fold(session), now)
    total = (
        session.scalar(_from_clause(select(func.count(Call.id)), call_filter).where(*conditions))
        or 0
    )
    query = (
        _from_clause(select(Call), call_filter)
        .where(*conditions)
        .order_by(Call.started_at.desc(), Call.id.desc())
        .limit(page.per_page)
        .offset(page.offset)
        .options(*options)
    )
    calls = list(session.scalars(query).unique())
    return CallPage(calls=calls, page=page.page, per_page=page.per_page, total=total)


def iter_calls(
    session: Session,
    call_filter: CallFilter,
    *,
    batch: int = 500,
    options: Sequence[LoaderOption] = CALL_LOAD_OPTIONS,
    now: datetime | None = None,
) -> Iterator[Call]:
    """Every matching call, newest first, loaded `batch` at a time (CSV export).

    Keyset pagination on (started_at, id), so a long export neither holds one huge result
    nor skips or repeats rows when calls arrive meanwhile.
    """
    conditions = _conditions(call_filter, _case_fold(session), now)
    after: tuple[datetime, int] | None = None
    while True:
        query = _from_clause(select(Call), call_filter).where(*conditions)
        if after is not None:
            started, call_id = after
            query = query.where(
                or_(Call.started_at < started, and_(Call.started_at == started, Call.id < call_id))
            )
        query = (
            query.order_by(Call.started_at.desc(), Call.id.desc()).limit(batch).options(*options)
        )
        calls = list(session.scalars(query).unique())
        yield from calls
        if len(calls) < batch:
            return
        after = (calls[-1].started_at, calls[-1].id)


def get_call(session: Session, call_sid: str) -> Call | None:
    """One call by CallSid, with everything `call_json` reads."""
    if "\x00" in call_sid:
        return None  # never a CallSid, and PostgreSQL refuses NUL in text
    return (
        session.scalars(select(Call).where(Call.call_sid == call_sid).options(*CALL_LOAD_OPTIONS))
        .unique()
        .one_or_none()
    )


# ---------------------------------------------------------------- the SQL


def _needs_ticket_join(call_filter: CallFilter) -> bool:
    return (
        call_filter.has_ticket is not None
        or call_filter.ticket_failed is not None
        or call_filter.q is not None
    )


def _from_clause(query: Select[Any], call_filter: CallFilter) -> Select[Any]:
    # ticket_requests.call_id is unique: the outer join never multiplies calls.
    if _needs_ticket_join(call_filter):
        query = query.outerjoin(TicketRequest, TicketRequest.call_id == Call.id)
    if call_filter.q is not None:
        query = query.outerjoin(Contact, Contact.id == Call.contact_id).outerjoin(
            Organisation, Organisation.id == Call.organisation_id
        )
    return query


def _moscow_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), MOSCOW).astimezone(UTC)


def _case_fold(session: Session) -> str:
    """The SQL function that lower-cases Cyrillic as well as Latin text.

    PostgreSQL's lower() does (UTF-8 databases); SQLite's is ASCII-only, so on SQLite the
    connection gets a Python one ("Ромашка" must match a search for "ромашка").
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return "lower"
    raw: Any = connection.connection.driver_connection
    raw.create_function("cc_lower", 1, _lower, deterministic=True)
    return "cc_lower"


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _conditions(
    call_filter: CallFilter, fold: str, now: datetime | None = None
) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if call_filter.date_from is not None:
        cond.append(Call.started_at >= _moscow_midnight(call_filter.date_from))
    if call_filter.date_to is not None:
        cond.append(Call.started_at < _moscow_midnight(call_filter.date_to + timedelta(days=1)))
    if call_filter.lines:
        cond.append(Call.line.in_(call_filter.lines))
    if call_filter.categories:
        cond.append(Call.category.in_(call_filter.categories))
    if call_filter.topics:
        cond.append(Call.topic.in_(call_filter.topics))
    if call_filter.outcomes:
        cond.append(Call.outcome.in_(call_filter.outcomes))
    if call_filter.flagged is not None:
        cond.append(Call.flagged == call_filter.flagged)
    if call_filter.has_ticket is not None:
        has = TicketRequest.ticket_number.is_not(None)
        cond.append(has if call_filter.has_ticket else not_(has))
    if call_filter.ticket_failed is not None:
        failed = TicketRequest.status == "failed"
        # No ticket request at all is "not failed" (NULL would drop those rows).
        cond.append(
            failed if call_filter.ticket_failed else or_(TicketRequest.id.is_(None), not_(failed))
        )
    if call_filter.urgent_unanswered is not None:
        accepted = exists().where(DialLeg.call_id == Call.id, DialLeg.result == "accepted")
        urgent = and_(
            Call.category.in_(URGENT_CATEGORIES),
            Call.outcome != Outcome.IN_PROGRESS,
            not_(accepted),
        )
        cond.append(urgent if call_filter.urgent_unanswered else not_(urgent))
    if call_filter.attention is not None:
        attention = needs_attention(now=now)
        cond.append(attention if call_filter.attention else not_(attention))
    if call_filter.problems:
        cond.append(or_(*(has_problem(kind, now=now) for kind in call_filter.problems)))
    if call_filter.q is not None:
        cond.append(_text_search(call_filter.q, fold))
    return cond


def _text_search(q: str, fold: str) -> ColumnElement[bool]:
    """A caller number in any spelling, a ticket number, a CallSid, a vehicle plate, or a
    name."""
    q = q.strip()
    options: list[ColumnElement[bool]] = []
    e164 = normalise(q)
    if e164 is not None:
        options.append(Call.caller_e164 == e164)
    ticket = q.lstrip("№#").strip()
    if ticket:
        options.append(TicketRequest.ticket_number == ticket)
    if q.startswith("CA"):
        options.append(Call.call_sid == q)
    digits = re.sub(r"\D", "", q)
    if len(digits) >= 4 and re.fullmatch(r"[\d\s()+\-.]+", q):
        # The tail of a number ("45-67" from a sticky note) or a number spelt with the
        # trunk prefix: match on the digits of the stored E.164 or raw caller ID.
        options.append(Call.caller_e164.contains(digits[-10:], autoescape=True))
        options.append(Call.caller_raw.contains(digits, autoescape=True))
    for plate in parse_plates(q):
        # A plate in any spelling (А123ВС77, «а 123 вс 77», Latin look-alikes) is matched in
        # its stored form: an element of the JSON list, however the serializer wrote it.
        text = cast(Call.vehicles, String)
        for spelt in {json.dumps(plate), json.dumps(plate, ensure_ascii=False)}:
            options.append(text.contains(spelt, autoescape=True))
    if not re.fullmatch(r"[\d\s()+\-.#№]+", q):
        like = q.lower()
        lower = getattr(func, fold)
        for column in (Contact.name, Organisation.name, Call.caller_said_name):
            options.append(lower(column).contains(like, autoescape=True))
    return or_(*options) if options else false()


# ---------------------------------------------------------------- parsing


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def not_a_date_words(raw: str) -> str:
    return f"«{raw}» — не дата: выберите день в календаре или введите его как ГГГГ-ММ-ДД"


def out_of_range_words(raw: str) -> str:
    return f"«{raw}» — вне {EARLIEST_DAY.year}–{LATEST_DAY.year} годов"


def _parse_date(param: str, raw: str) -> date:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidFilter(
            param, f"{raw!r} is not a date (YYYY-MM-DD, Moscow)", not_a_date_words(raw)
        ) from None
    if not day_in_range(day):
        raise InvalidFilter(
            param,
            f"{raw!r} is out of range ({EARLIEST_DAY.year}–{LATEST_DAY.year})",
            out_of_range_words(raw),
        )
    return day


def _parse_bool(param: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidFilter(param, f"{raw!r} is not true or false")


def _parse_int(param: str, raw: str | None, default: int) -> int:
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidFilter(param, f"{raw!r} is not a whole number") from None
    if value > 1_000_000:
        # Beyond any real log, and an OFFSET the database could not even represent.
        raise InvalidFilter(param, "must be 1000000 or less")
    return value


def _parse_line(raw: str) -> str:
    e164 = normalise(raw)
    if e164 is None:
        raise InvalidFilter("line", f"{raw!r} is not a phone number")
    return e164


def _parse_topic(raw: str, known: Collection[str] | None) -> str:
    if not _SLUG.fullmatch(raw):
        raise InvalidFilter("topic", f"{raw!r} is not a topic slug")
    if known is not None and raw not in known:
        raise InvalidFilter(
            "topic",
            f"unknown topic {raw!r}; one of: {', '.join(sorted(known))}",
            "такой темы нет",
        )
    return raw
