"""The built-in portal: tickets in this service's own database (the embedded default).

Numbers are human-friendly and sequential from 1001, said to callers digit by digit.
A new number is the largest one plus one, computed inside the INSERT itself: on SQLite
that one statement runs under the database write lock, so it is atomic; on PostgreSQL
creators first take a transaction-scoped advisory lock, so they queue instead of racing.
The unique indexes stay the last word: an insert of a known `idempotency_key` does
nothing (ON CONFLICT DO NOTHING) and the second of two creates with one key finds the
first one's ticket; an insert whose `number` was taken meanwhile is simply tried again.

Changes to an existing ticket start by touching its row (`UPDATE … SET updated_at`):
on PostgreSQL that takes the row lock, on SQLite the database write lock, so a status
change, a dedup check or a priority raise never works from a stale read.

Failure policy: bad input raises `InvalidTicketData` / `InvalidStatusChange` (both
`PortalRejected`), an unknown number `TicketNotFound`, a database that cannot be reached
`PortalUnavailable` (transient, like a portal that is down).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Executable,
    Row,
    Select,
    Table,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from callcenter.clock import Clock, as_utc
from callcenter.db.models import Ticket, TicketEntry
from callcenter.errors import (
    InvalidStatusChange,
    InvalidTicketData,
    PortalUnavailable,
    TicketNotFound,
)
from callcenter.portal import tickets as rules
from callcenter.portal.protocol import (
    AffectedOrganisation,
    IncidentLink,
    TicketDraft,
    TicketEntryView,
    TicketView,
)
from callcenter.vocabulary import recording_file_name

FIRST_NUMBER = 1001
# pg_advisory_xact_lock key that queues ticket creators on PostgreSQL ("SKAI" tickets).
NUMBERING_LOCK = 0x534B_4149_0001
# Each failed attempt means another process just took a number, so this bounds the
# number of simultaneous creators, not the patience of one.
NUMBER_ATTEMPTS = 50


class BuiltinPortal:
    """`Portal` over the `Ticket` / `TicketEntry` tables. Safe to share between threads."""

    reads_own_database = True

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, base_url: str | None = None
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._base_url = base_url.rstrip("/") if base_url else None

    # ------------------------------------------------------------ the Portal protocol

    def create_ticket(self, draft: TicketDraft) -> TicketView:
        return self.create_ticket_once(draft)[0]

    def get_ticket(self, number: str, *, history: bool = True) -> TicketView:
        wanted = _parse_number(number)
        with self._reading() as connection:
            ticket = connection.execute(_TICKET_BY_NUMBER, {"number": wanted}).one_or_none()
            if ticket is None:
                raise TicketNotFound(f"ticket {number} not found")
            return self._read_views(connection, [ticket], history=history)[0]

    def add_entry(
        self,
        number: str,
        *,
        text: str | None = None,
        attachment_url: str | None = None,
        attachment_name: str | None = None,
        author: str | None = None,
        dedup_key: str | None = None,
    ) -> TicketView:
        return self.add_entry_once(
            number,
            text=text,
            attachment_url=attachment_url,
            attachment_name=attachment_name,
            author=author,
            dedup_key=dedup_key,
        )[0]

    def record_phone_duplicate(
        self, number: str, *, at: datetime, caller: str | None, call_ref: str | None
    ) -> TicketView:
        return self.record_phone_duplicate_once(number, at=at, caller=caller, call_ref=call_ref)[0]

    def open_tickets(
        self,
        *,
        contact_id: int | None = None,
        caller: str | None = None,
        limit: int = 3,
        history: bool = True,
    ) -> tuple[TicketView, ...]:
        problems = rules.open_query_problems(contact_id=contact_id, caller=caller, limit=limit)
        if problems:
            raise InvalidTicketData(problems)
        statement = _open_tickets_statement(contact_id is not None, caller is not None)
        with self._reading() as connection:
            found = connection.execute(
                statement, {"contact_id": contact_id, "caller": caller, "limit": limit}
            ).all()
            return self._read_views(connection, found, history=history)

    def add_affected_organisations(
        self,
        number: str,
        organisations: Sequence[AffectedOrganisation],
        *,
        author: str | None = None,
    ) -> TicketView:
        return self.add_affected_organisations_once(number, organisations, author=author)[0]

    def link_incident(
        self, number: str, link: IncidentLink, *, author: str | None = None
    ) -> TicketView:
        return self.link_incident_once(number, link, author=author)[0]

    def ticket_url(self, number: str) -> str | None:
        """The console's ticket page; relative when no public base URL is configured."""
        path = f"/console/tickets/{number}"
        return f"{self._base_url}{path}" if self._base_url else path

    # ------------------------------------------------------------ with "was it new?"

    def create_ticket_once(self, draft: TicketDraft) -> tuple[TicketView, bool]:
        """The ticket, and True when this call created it (False: the key was known)."""
        problems = rules.draft_problems(draft)
        if problems:
            raise InvalidTicketData(problems)
        for _attempt in range(NUMBER_ATTEMPTS):
            with self._session() as session:
                try:
                    view = self._insert_ticket(session, draft)
                    if view is not None:
                        session.commit()
                        return view, True
                except IntegrityError:
                    # Another creator took the number (only on an engine without the
                    # queue): try again.
                    session.rollback()
                    continue
                # The key is known: that ticket (the insert did nothing).
                session.rollback()
                existing = session.scalars(
                    select(Ticket).where(Ticket.idempotency_key == draft.idempotency_key)
                ).one_or_none()
                if existing is not None:
                    return self._view(session, existing), False
                # Gone again since (never, as tickets are not deleted): try again.
        raise PortalUnavailable(
            f"could not allocate a ticket number in {NUMBER_ATTEMPTS} attempts; try again"
        )

    def add_entry_once(
        self,
        number: str,
        *,
        text: str | None = None,
        attachment_url: str | None = None,
        attachment_name: str | None = None,
        author: str | None = None,
        dedup_key: str | None = None,
    ) -> tuple[TicketView, bool]:
        """The ticket after the entry, and False when `dedup_key` had been seen already."""
        problems = rules.entry_problems(
            text=text,
            attachment_url=attachment_url,
            attachment_name=attachment_name,
            author=author,
            dedup_key=dedup_key,
        )
        if problems:
            raise InvalidTicketData(problems)
        wanted = _parse_number(number)
        with self._session() as session:
            ticket = self._lock(session, wanted, number)
            scoped_key = f"{ticket.number}:{dedup_key}" if dedup_key else None
            if scoped_key and self._seen(session, scoped_key):
                return self._view(session, ticket), False
            session.add(
                TicketEntry(
                    ticket_id=ticket.id,
                    at=ticket.updated_at,
                    kind=rules.ATTACHMENT if attachment_url else rules.COMMENT,
                    author=author,
                    text=text if text and text.strip() else None,
                    attachment_url=attachment_url,
                    attachment_name=attachment_name,
                    dedup_key=scoped_key,
                )
            )
            return self._commit(session, ticket)

    def record_phone_duplicate_once(
        self, number: str, *, at: datetime, caller: str | None, call_ref: str | None
    ) -> tuple[TicketView, bool]:
        """The ticket after the duplicate, and False when this call_ref was recorded before."""
        problems = rules.phone_duplicate_problems(at=at, caller=caller, call_ref=call_ref)
        if problems:
            raise InvalidTicketData(problems)
        at = as_utc(at)
        wanted = _parse_number(number)
        with self._session() as session:
            ticket = self._lock(session, wanted, number)
            scoped_key = f"{ticket.number}:phone-duplicate:{call_ref}" if call_ref else None
            if scoped_key and self._seen(session, scoped_key):
                return self._view(session, ticket), False
            text = f"Заявка продублирована звонком с номера {caller or 'не определён'}"
            if call_ref:
                text += f" (звонок {call_ref})"
            if ticket.priority != rules.CRITICAL:
                old = rules.PRIORITY_LABELS.get(ticket.priority, ticket.priority)
                text += f". Приоритет повышен: {old} → {rules.PRIORITY_LABELS[rules.CRITICAL]}"
                ticket.priority = rules.CRITICAL
            # The first duplication is the one the regulation asks for; later ones stay in
            # the history.
            if ticket.duplicated_by_phone_at is None or at < ticket.duplicated_by_phone_at:
                ticket.duplicated_by_phone_at = at
            session.add(
                TicketEntry(
                    ticket_id=ticket.id,
                    at=at,
                    kind=rules.PHONE_DUPLICATE,
                    author=caller,
                    text=text,
                    dedup_key=scoped_key,
                )
            )
            return self._commit(session, ticket)

    def add_affected_organisations_once(
        self,
        number: str,
        organisations: Sequence[AffectedOrganisation],
        *,
        author: str | None = None,
    ) -> tuple[TicketView, bool]:
        """The ticket after the addition, and False when every organisation was on it."""
        wanted_orgs = tuple(organisations)
        problems = rules.affected_problems(wanted_orgs, author=author)
        if problems:
            raise InvalidTicketData(problems)
        wanted = _parse_number(number)
        with self._session() as session:
            ticket = self._lock(session, wanted, number)
            kept = [_affected_of(item) for item in ticket.affected_organisations or []]
            known = {org.key for org in kept}
            added: list[AffectedOrganisation] = []
            for org in wanted_orgs:
                org = AffectedOrganisation(name=org.name.strip(), id=org.id)
                if org.key not in known:
                    known.add(org.key)
                    added.append(org)
            if not added:
                return self._view(session, ticket), False
            ticket.affected_organisations = [
                {"id": org.id, "name": org.name} for org in (*kept, *added)
            ]
            names = ", ".join(org.name for org in added)
            session.add(
                TicketEntry(
                    ticket_id=ticket.id,
                    at=ticket.updated_at,
                    kind=rules.AFFECTED,
                    author=author,
                    text=f"Затронутые клиенты: {names}",
                )
            )
            return self._commit(session, ticket)

    def link_incident_once(
        self, number: str, link: IncidentLink, *, author: str | None = None
    ) -> tuple[TicketView, bool]:
        """The ticket after the link, and False when it was linked to that incident."""
        problems = rules.incident_problems(link, author=author)
        if problems:
            raise InvalidTicketData(problems)
        wanted = _parse_number(number)
        with self._session() as session:
            ticket = self._lock(session, wanted, number)
            links = list(ticket.incidents or [])
            if any(item.get("incident") == link.incident for item in links):
                return self._view(session, ticket), False
            ticket.incidents = [*links, {"incident": link.incident, "label": link.label}]
            text = f"Связана с инцидентом {link.label or link.incident}"
            session.add(
                TicketEntry(
                    ticket_id=ticket.id,
                    at=ticket.updated_at,
                    kind=rules.INCIDENT,
                    author=author,
                    text=text,
                    dedup_key=f"{ticket.number}:incident:{link.incident}"[:120],
                )
            )
            return self._commit(session, ticket)

    # ------------------------------------------------------------ the workflow

    def update_ticket(
        self,
        number: str,
        *,
        status: str | None = None,
        priority: str | None = None,
        author: str | None = None,
        comment: str | None = None,
    ) -> TicketView:
        """Move the ticket along the workflow and/or set its priority (the head of
        support's call). Setting what is already set changes nothing (safe to repeat)."""
        problems = rules.change_problems(
            status=status, priority=priority, author=author, comment=comment
        )
        if problems:
            raise InvalidTicketData(problems)
        wanted = _parse_number(number)
        suffix = f": {comment.strip()}" if comment and comment.strip() else ""
        with self._session() as session:
            ticket = self._lock(session, wanted, number)
            changed = False
            if status is not None and status != ticket.status:
                if status not in rules.TRANSITIONS[ticket.status]:
                    allowed = ", ".join(
                        f"«{s}»" for s in rules.STATUSES if s in rules.TRANSITIONS[ticket.status]
                    )
                    raise InvalidStatusChange(
                        f"ticket {ticket.number} cannot go from «{ticket.status}» to «{status}»"
                        f"; allowed: {allowed or 'none, the ticket is closed'}"
                    )
                session.add(
                    TicketEntry(
                        ticket_id=ticket.id,
                        at=ticket.updated_at,
                        kind=rules.STATUS_CHANGE,
                        author=author,
                        text=f"Статус: {ticket.status} → {status}{suffix}",
                    )
                )
                ticket.status = status
                changed = True
            if priority is not None and priority != ticket.priority:
                old = rules.PRIORITY_LABELS.get(ticket.priority, ticket.priority)
                session.add(
                    TicketEntry(
                        ticket_id=ticket.id,
                        at=ticket.updated_at,
                        kind=rules.PRIORITY_CHANGE,
                        author=author,
                        text=f"Приоритет: {old} → {rules.PRIORITY_LABELS[priority]}{suffix}",
                    )
                )
                ticket.priority = priority
                changed = True
            if not changed:
                return self._view(session, ticket)
            return self._commit(session, ticket)[0]

    # ------------------------------------------------------------ internals

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session that is rolled back unless committed, with a database outage
        reported as the portal being unavailable (the job retries later)."""
        with _outage_as_unavailable(), self._sessions() as session:
            yield session

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for a read-only lookup. On a database server, in the driver's
        autocommit: no BEGIN and no ROLLBACK around the lookup's SELECTs, two round trips
        fewer before a caller hears anything (the isolation level goes back to the pool's
        default when the connection is returned). SQLite's reads take no round trip, and
        switching back would cost it a PRAGMA: its connection is used as it is. A
        connection of the sessions' engine, not a session: a lookup needs no unit of work,
        and a session's set-up and close cost more than its SELECTs on SQLite."""
        engine: Engine = self._sessions.kw["bind"]
        with _outage_as_unavailable(), engine.connect() as connection:
            if connection.dialect.name != "sqlite":
                connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    def _insert_ticket(self, session: Session, draft: TicketDraft) -> TicketView | None:
        """Insert the ticket and its `created` entry; the caller commits. None, and nothing
        inserted, when a ticket with the draft's idempotency key exists.

        Plain INSERTs, the number computed by the database and returned — on PostgreSQL one
        statement for both rows — because there everything from `_queue_for_a_number` to
        the commit holds up every other creator: the fewer round trips in there, the more
        tickets a second. The statements are built once (`_ticket_statements`); each
        ticket only binds its values.
        """
        now = as_utc(self._clock())
        values: dict[str, Any] = {
            "idempotency_key": draft.idempotency_key,
            "topic": draft.topic,
            "product": draft.product,
            "vehicles": list(draft.vehicles),
            "contact_name": draft.contact_name,
            "contact_id": draft.contact_id,
            "organisation_name": draft.organisation_name,
            "organisation_id": draft.organisation_id,
            "caller": draft.caller,
            "description": draft.description,
            "call_ref": draft.call_ref,
            "recording_url": draft.recording_url,
            "priority": draft.priority,
            "status": rules.NEW,
            "first_stage_due": _utc_or_none(draft.first_stage_due),
            "resolution_due": _utc_or_none(draft.resolution_due),
            "created_at": now,
            "updated_at": now,
        }
        created: dict[str, Any] = {
            "at": now,
            "kind": rules.CREATED,
            "author": draft.contact_name or draft.caller,
            "text": draft.description or None,
            "attachment_url": draft.recording_url,
            "attachment_name": recording_file_name(None, now) if draft.recording_url else None,
        }
        _queue_for_a_number(session)
        statements = _ticket_statements(
            session.get_bind().dialect.name, tuple(values), tuple(created)
        )
        params = {**values, **{_ENTRY_PARAM + name: value for name, value in created.items()}}
        # One round trip for both rows on PostgreSQL, while the numbering lock is held.
        row = session.execute(statements.ticket, params).one_or_none()
        if row is None:
            return None
        if statements.entry is not None:
            # SQLite has no data-modifying CTEs; its write lock is held anyway.
            session.execute(statements.entry, {"ticket_id": row.id, **params})
        ticket = Ticket(id=row.id, number=row.number, duplicated_by_phone_at=None, **values)
        return self._view_of(ticket, [TicketEntry(ticket_id=row.id, **created)])

    def _lock(self, session: Session, wanted: int, shown: str) -> Ticket:
        """Touch the ticket's row (taking its write lock) and load it fresh."""
        touched = session.scalar(
            update(Ticket)
            .where(Ticket.number == wanted)
            .values(updated_at=as_utc(self._clock()))
            .returning(Ticket.id)
        )
        if touched is None:
            raise TicketNotFound(f"ticket {shown} not found")
        return session.get_one(Ticket, touched, populate_existing=True)

    @staticmethod
    def _seen(session: Session, scoped_key: str) -> bool:
        found = session.scalar(select(TicketEntry.id).where(TicketEntry.dedup_key == scoped_key))
        return found is not None

    def _commit(self, session: Session, ticket: Ticket) -> tuple[TicketView, bool]:
        try:
            session.flush()
        except IntegrityError:
            # Only a dedup key can clash here, and the row lock makes even that a
            # belt-and-braces case: the entry is there already.
            session.rollback()
            fresh = session.get_one(Ticket, ticket.id)
            return self._view(session, fresh), False
        view = self._view(session, ticket)
        session.commit()
        return view, True

    def _view(self, session: Session, ticket: Ticket) -> TicketView:
        entries = session.scalars(
            select(TicketEntry)
            .where(TicketEntry.ticket_id == ticket.id)
            .order_by(TicketEntry.at, TicketEntry.id)
        ).all()
        return self._view_of(ticket, entries)

    def _read_views(
        self, connection: Connection, tickets: Sequence[Row[Any]], *, history: bool
    ) -> tuple[TicketView, ...]:
        """Read-only lookups (a caller's ticket, a repeat caller's open tickets — both
        before the words a caller hears next): the tickets' rows and, when asked for, their
        histories, read in one query for all of them, with prebuilt Core statements — no
        ORM objects to build, no statement to build per call."""
        entries: dict[int, list[Row[Any]]] = {ticket.id: [] for ticket in tickets}
        if entries and history:
            for entry in connection.execute(_HISTORIES, {"ticket_ids": list(entries)}):
                entries[entry.ticket_id].append(entry)
        return tuple(self._view_of(ticket, entries[ticket.id]) for ticket in tickets)

    def _view_of(
        self, ticket: Ticket | Row[Any], entries: Sequence[TicketEntry | Row[Any]]
    ) -> TicketView:
        """A ticket's view, from its ORM object or its row (the same names)."""
        number = str(ticket.number)
        return TicketView(
            number=number,
            topic=ticket.topic,
            status=ticket.status,
            priority=ticket.priority,
            organisation_id=ticket.organisation_id,
            organisation_name=ticket.organisation_name,
            first_stage_due=ticket.first_stage_due,
            resolution_due=ticket.resolution_due,
            created_at=ticket.created_at,
            duplicated_by_phone_at=ticket.duplicated_by_phone_at,
            url=self.ticket_url(number),
            history=tuple(
                TicketEntryView(
                    at=e.at,
                    kind=e.kind,
                    text=e.text,
                    author=e.author,
                    attachment_url=e.attachment_url,
                    attachment_name=e.attachment_name,
                )
                for e in entries
            ),
            product=ticket.product,
            vehicles=tuple(ticket.vehicles or ()),
            contact_name=ticket.contact_name,
            contact_id=ticket.contact_id,
            caller=ticket.caller,
            description=ticket.description or "",
            call_ref=ticket.call_ref,
            recording_url=ticket.recording_url,
            affected_organisations=tuple(
                _affected_of(item) for item in ticket.affected_organisations or []
            ),
            incidents=tuple(
                IncidentLink(incident=str(item["incident"]), label=item.get("label"))
                for item in ticket.incidents or []
            ),
        )


@contextmanager
def _outage_as_unavailable() -> Iterator[None]:
    """A database outage reported as the portal being unavailable (the job retries later)."""
    try:
        yield
    except OperationalError as exc:
        raise PortalUnavailable(f"the ticket database is unavailable: {exc.orig}") from exc


_tickets = cast(Table, Ticket.__table__)
_entries = cast(Table, TicketEntry.__table__)
_TICKET_BY_NUMBER = select(_tickets).where(_tickets.c.number == bindparam("number"))
_HISTORIES = (
    select(_entries)
    .where(_entries.c.ticket_id.in_(bindparam("ticket_ids", expanding=True)))
    .order_by(_entries.c.at, _entries.c.id)
)


@cache
def _open_tickets_statement(by_contact: bool, by_caller: bool) -> Select[Any]:
    """A contact's or a number's open tickets (or either's), newest first, built once."""
    whose = []
    if by_contact:
        whose.append(_tickets.c.contact_id == bindparam("contact_id"))
    if by_caller:
        whose.append(_tickets.c.caller == bindparam("caller"))
    return (
        select(_tickets)
        .where(_tickets.c.status.in_(rules.OPEN_STATUSES), or_(*whose))
        .order_by(_tickets.c.created_at.desc(), _tickets.c.number.desc())
        .limit(bindparam("limit"))
    )


# The `created` entry's values are bound as `entry_<column>` (the ticket's are bound by
# their column names).
_ENTRY_PARAM = "entry_"


@dataclass(frozen=True)
class _TicketStatements:
    # Inserts the ticket (PostgreSQL: and its entry) unless its key is known; returns
    # (id, number), or no row for a known key.
    ticket: Executable
    # SQLite: the `created` entry, given `ticket_id` (None: the ticket's statement does it).
    entry: Executable | None


@cache
def _ticket_statements(
    dialect: str, ticket_columns: tuple[str, ...], entry_columns: tuple[str, ...]
) -> _TicketStatements:
    """The creating statements for these columns, built once per dialect: SQLAlchemy then
    finds their compiled form in its cache without rebuilding and re-hashing them for every
    ticket."""

    def bound(table: Any, name: str, prefix: str = "") -> BindParameter[Any]:
        return bindparam(prefix + name, type_=table.c[name].type)

    tickets, entries = Ticket.__table__, TicketEntry.__table__
    next_number = select(
        func.coalesce(func.max(Ticket.number), FIRST_NUMBER - 1) + 1
    ).scalar_subquery()
    insert_ticket = (
        postgresql_insert(Ticket) if dialect == "postgresql" else sqlite_insert(Ticket)
    ).values(number=next_number, **{name: bound(tickets, name) for name in ticket_columns})
    new_ticket = insert_ticket.on_conflict_do_nothing(
        index_elements=[Ticket.idempotency_key]
    ).returning(Ticket.id, Ticket.number)
    entry_values = [bound(entries, name, _ENTRY_PARAM) for name in entry_columns]
    insert_entry = insert(TicketEntry).values(
        ticket_id=bindparam("ticket_id", type_=entries.c.ticket_id.type),
        **dict(zip(entry_columns, entry_values, strict=True)),
    )
    if dialect != "postgresql":
        return _TicketStatements(new_ticket, insert_entry)
    # The entry is inserted by a data-modifying CTE from the ticket's RETURNING (nothing,
    # for a known key).
    ticket_cte = new_ticket.cte("new_ticket")
    entry_cte = (
        insert(TicketEntry)
        .from_select(["ticket_id", *entry_columns], select(ticket_cte.c.id, *entry_values))
        .cte("created_entry")
    )
    both = select(ticket_cte.c.id, ticket_cte.c.number).add_cte(entry_cte)
    return _TicketStatements(both, None)


def _queue_for_a_number(session: Session) -> None:
    """On PostgreSQL, wait for other creators to commit (released at commit/rollback)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(NUMBERING_LOCK)))


def _parse_number(number: str) -> int:
    """Ticket numbers are digits; anything else names no ticket."""
    text = number.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise TicketNotFound(f"ticket {number!r} not found: a ticket number is digits")
    return int(text)


def _affected_of(item: dict[str, Any]) -> AffectedOrganisation:
    return AffectedOrganisation(name=str(item["name"]), id=item.get("id"))


def _utc_or_none(at: datetime | None) -> datetime | None:
    return None if at is None else as_utc(at)
