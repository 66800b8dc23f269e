"""The dashboard's per-specialist table: `callcenter.calllog.specialists`' figures, in
words and numbers as a supervisor reads them."""

from __future__ import annotations

from babel.numbers import format_decimal

from callcenter.calllog.specialists import SpecialistFigures


def specialist_rows(people: list[SpecialistFigures]) -> list[dict[str, object]]:
    return [
        {
            "name": p.name,
            "note": "" if p.in_roster else "не в графике",
            "offered": p.offered,
            "answered": p.answered,
            "missed": p.missed,
            "median": _seconds(p.median_answer_seconds),
            "callbacks": p.callbacks,
        }
        for p in people
    ]


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{format_decimal(round(value), locale='ru')} с"
