"""The call log as CSV for Excel: UTF-8 with a BOM, `;`-separated, Russian headers.

`csv_chunks(sessions, call_filter, lines=...)` yields the file in pieces while it reads the log
with `calllog_query.iter_calls` (keyset pages of 500), so an export of 100 000 calls is
streamed, never built in memory. The same `CallFilter` as the console's log page and
`/api/calls`: the export is exactly what the supervisor filtered.

Why the BOM and `;`: Russian Excel opens a double-clicked CSV in the system code page with
the locale's list separator, which is `;` (`,` is the decimal comma); the BOM makes it read
UTF-8. Times are `dd.mm.yyyy hh:mm:ss` Moscow time, which Excel takes for dates. Russian
numbers are written `8 (916) 123-45-67`, which Excel keeps as text. Every row goes through
`callcenter.spreadsheet.CsvWriter`, the one CSV writer of every export: a cell that starts
like a formula gets a leading apostrophe, so a caller's name or a note can never run as a
formula in the supervisor's spreadsheet, and fields with separators are quoted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker
from sqlalchemy.orm.interfaces import LoaderOption

from callcenter.calllog.query import CallFilter, iter_calls
from callcenter.calllog.review import call_problems
from callcenter.calllog.words import (
    category_title,
    line_title,
    moscow_numeric,
    outcome_title,
    phone_national,
    product_title,
    requested_deadlines,
    routing_title,
    ticket_state_title,
    topic_title,
)
from callcenter.clock import to_moscow
from callcenter.db.models import Call
from callcenter.spreadsheet import CsvWriter, safe_cell

# Rows per chunk handed to the web server.
CHUNK_ROWS = 500
# Only what the columns read: no events or notes.
EXPORT_OPTIONS: tuple[LoaderOption, ...] = (
    joinedload(Call.contact),
    joinedload(Call.organisation),
    joinedload(Call.ticket_request),
    selectinload(Call.legs),
    selectinload(Call.callback),
)

Column = tuple[str, Callable[[Call, Mapping[str, str]], str | int | None]]


def _accepted_by(call: Call) -> str | None:
    for leg in call.legs:
        if leg.result == "accepted":
            return leg.staff_name or leg.number
    return None


def _deadline(call: Call, which: int) -> str | None:
    """A requested deadline (0: stage one, 1: resolution); «по согласованию» for a ticket
    whose resolution is agreed with the client."""
    request = call.ticket_request
    if request is None:
        return None
    due = requested_deadlines(request.draft)[which]
    if due is None:
        return "по согласованию" if which == 1 and request.draft else None
    return moscow_numeric(due)


COLUMNS: tuple[Column, ...] = (
    ("Время (МСК)", lambda c, _: moscow_numeric(c.started_at)),
    ("Линия", lambda c, lines: line_title(c.line, lines)),
    ("Номер абонента", lambda c, _: phone_national(c.caller_e164, c.caller_raw)),
    ("Контакт", lambda c, _: c.contact.name if c.contact else None),
    ("Организация", lambda c, _: c.organisation.name if c.organisation else None),
    ("Назвался", lambda c, _: c.caller_said_name),
    ("Категория", lambda c, _: category_title(c.category)),
    ("Тема", lambda c, _: topic_title(c.topic) if c.topic else None),
    ("Продукт", lambda c, _: product_title(c.product) if c.product else None),
    ("Госномера", lambda c, _: ", ".join(c.vehicles or ())),
    ("Заявка", lambda c, _: c.ticket_request.ticket_number if c.ticket_request else None),
    (
        "Состояние заявки",
        lambda c, _: ticket_state_title(c.ticket_request.status) if c.ticket_request else None,
    ),
    ("Первый этап до", lambda c, _: _deadline(c, 0)),
    ("Решение до", lambda c, _: _deadline(c, 1)),
    ("Исход звонка", lambda c, _: outcome_title(c.outcome)),
    ("Соединение", lambda c, _: routing_title(c.routing_outcome) if c.routing_outcome else None),
    ("Принял", lambda c, _: _accepted_by(c)),
    ("Длительность, с", lambda c, _: c.duration_seconds),
    ("Требует внимания", lambda c, _: "; ".join(p.label for p in call_problems(c))),
    (
        "Перезвонили",
        lambda c, _: moscow_numeric(c.called_back_at) if c.called_back_at else None,
    ),
    ("CallSid", lambda c, _: c.call_sid),
)
HEADERS: tuple[str, ...] = tuple(name for name, _ in COLUMNS)


def call_row(call: Call, lines: Mapping[str, str]) -> list[str | int]:
    return [safe_cell(read(call, lines)) for _, read in COLUMNS]


def export_filename(call_filter: CallFilter, now: datetime) -> str:
    """`calls_2025-11-01_2025-11-27.csv`: the period when the filter has one."""
    today = to_moscow(now).date().isoformat()
    first = call_filter.date_from.isoformat() if call_filter.date_from else None
    last = call_filter.date_to.isoformat() if call_filter.date_to else today
    return f"calls_{first}_{last}.csv" if first else f"calls_{last}.csv"


def csv_chunks(
    sessions: sessionmaker[Session],
    call_filter: CallFilter,
    *,
    lines: Mapping[str, str],
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[bytes]:
    """The export, piece by piece: the BOM and headers first, then `chunk_rows` rows at a
    time. Opens its own session, so it may outlive the request that started it."""
    writer = CsvWriter()
    writer.row(HEADERS)
    yield writer.take()
    with sessions() as session:
        pending = 0
        for call in iter_calls(session, call_filter, batch=chunk_rows, options=EXPORT_OPTIONS):
            writer.row(call_row(call, lines))
            pending += 1
            if pending >= chunk_rows:
                yield writer.take()
                pending = 0
    if pending:
        yield writer.take()
