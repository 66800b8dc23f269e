"""The one CSV writer of every export (the call log, the directory, anything added later).

Exports are opened by a supervisor in Excel or LibreOffice, so each is written the way
Russian Excel reads a double-clicked file: UTF-8 with a BOM, `;`-separated (`,` is the
decimal comma), CRLF line ends. Two guards, for every cell:

- formula injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a CR is taken by a
  spreadsheet for a formula (`=HYPERLINK(...)`, `+SUM(...)`, `-2+3`, `@...`); such a cell
  gets a leading apostrophe, which the spreadsheet shows as text and hides.
  `read_cell` undoes exactly that on import, so an export still imports back unchanged;
- separators: every field containing `;`, a quote, a CR or LF is quoted (the csv module's
  minimal quoting, which does precisely that).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

BOM = "\ufeff"
DELIMITER = ";"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | None


def safe_cell(value: Cell) -> str | int:
    """A value a spreadsheet shows as it is (no formula, no number mangling)."""
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    if value.startswith(FORMULA_START):
        return "'" + value
    return value


def read_cell(value: str) -> str:
    """An imported cell as it was before `safe_cell` guarded it."""
    if value.startswith("'") and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


class CsvWriter:
    """Rows in, bytes out: `rows()` buffers guarded rows, `take()` hands over what is
    written so far (a streamed export yields it chunk by chunk). The BOM comes first (a
    file for Excel); a terminal's copy (`callcenter directory list --csv`) goes without it,
    comma-separated."""

    def __init__(
        self, *, delimiter: str = DELIMITER, lineterminator: str = "\r\n", bom: bool = True
    ) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(
            self._buffer,
            delimiter=delimiter,
            lineterminator=lineterminator,
            quoting=csv.QUOTE_MINIMAL,
        )
        if bom:
            self._buffer.write(BOM)

    def row(self, cells: Sequence[Cell]) -> None:
        self._writer.writerow([safe_cell(cell) for cell in cells])

    def rows(self, rows: Iterable[Sequence[Cell]]) -> None:
        for cells in rows:
            self.row(cells)

    def take(self) -> bytes:
        data = self._buffer.getvalue().encode("utf-8")
        self._buffer.seek(0)
        self._buffer.truncate()
        return data


def csv_bytes(rows: Iterable[Sequence[Cell]], **layout: Any) -> bytes:
    """A whole (small) export at once (`layout`: `CsvWriter`'s keyword arguments)."""
    writer = CsvWriter(**layout)
    writer.rows(rows)
    return writer.take()
