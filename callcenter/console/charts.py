"""Charts as geometry for inline SVG: the server draws them, the browser needs no library.

`columns` lays out vertical bars (calls per day, per hour); `rows` horizontal ones (calls
by category, line, topic). The template `console/_charts.html` turns the geometry into
`<rect>` and `<text>` elements styled by the console's stylesheet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str  # under the column ("" to skip)
    title: str  # the tooltip: the full label and value


@dataclass(frozen=True)
class ColumnChart:
    width: int
    height: int
    plot_top: float
    plot_bottom: float
    columns: list[Column]
    grid: list[tuple[float, int]]  # (y, value) of the horizontal guide lines
    show_values: bool


@dataclass(frozen=True)
class Row:
    y: float
    bar_x: float
    bar_width: float
    label: str
    value: int
    share: str  # "12 %"


@dataclass(frozen=True)
class RowChart:
    width: int
    height: int
    row_height: float
    label_width: float
    rows: list[Row]

    @property
    def label_chars(self) -> int:
        """How many characters of a label fit left of the bars (12 px text)."""
        return max(10, int(self.label_width / 6.8))


def nice_ceiling(value: int) -> int:
    """The next "round" number at or above `value` (1, 2, 5 × 10ⁿ), for the axis."""
    if value <= 0:
        return 1
    exponent = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent  # pragma: no cover - the loop always returns


def columns(
    points: Sequence[tuple[str, int, str]],
    *,
    width: int = 720,
    height: int = 180,
    label_every: int = 1,
) -> ColumnChart:
    """`points` are (axis label, value, tooltip) left to right."""
    top, bottom = 16.0, float(height - 22)
    plot = bottom - top
    left = 34.0
    count = max(1, len(points))
    slot = (width - left - 4) / count
    gap = min(6.0, slot * 0.2)
    ceiling = nice_ceiling(max((v for _, v, _ in points), default=0))
    bars: list[Column] = []
    for index, (label, value, title) in enumerate(points):
        h = plot * value / ceiling
        bars.append(
            Column(
                x=round(left + index * slot + gap / 2, 1),
                y=round(bottom - h, 1),
                width=round(max(1.0, slot - gap), 1),
                height=round(h, 1),
                value=value,
                label=label if index % max(1, label_every) == 0 else "",
                title=title,
            )
        )
    # Guide lines at 0, the top and, when it is a whole number, half way.
    steps = (0.0, 0.5, 1.0) if ceiling % 2 == 0 else (0.0, 1.0)
    grid = [(round(bottom - plot * f, 1), int(ceiling * f)) for f in steps]
    return ColumnChart(width, height, top, bottom, bars, grid, show_values=count <= 31)


def rows(
    items: Sequence[tuple[str, int]],
    *,
    width: int = 560,
    row_height: float = 26.0,
    label_width: float = 250.0,
) -> RowChart:
    """`items` are (label, value), drawn top to bottom in the given order."""
    total = sum(v for _, v in items) or 1
    largest = max((v for _, v in items), default=0) or 1
    room = width - label_width - 70
    laid = [
        Row(
            y=round(index * row_height, 1),
            bar_x=label_width,
            bar_width=round(max(2.0, room * value / largest), 1) if value else 0.0,
            label=label,
            value=value,
            share=f"{round(100 * value / total)} %",
        )
        for index, (label, value) in enumerate(items)
    ]
    return RowChart(width, int(row_height * max(1, len(items))), row_height, label_width, laid)
