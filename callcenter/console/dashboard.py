"""`/console/dashboard`: today's figures and a chosen period's, with charts.

The figures are `callcenter.calllog.dashboard`'s; this view picks the period from the form
(`from`, `to`; the last 30 days by default), lays out the charts and links every figure
to the log filtered the same way.
"""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from babel.dates import format_date
from babel.numbers import format_decimal, format_percent
from flask import render_template, request, url_for
from flask.typing import ResponseReturnValue

from callcenter.calllog import words
from callcenter.calllog.dashboard import Figures, Period, figures
from callcenter.calllog.specialists import specialist_figures
from callcenter.clock import to_moscow
from callcenter.console import bp
from callcenter.console.charts import columns, rows
from callcenter.console.common import roster_warnings
from callcenter.console.specialists import specialist_rows
from callcenter.errors import InvalidFilter, Reason
from callcenter.vocabulary import URGENT_CATEGORIES, Category
from callcenter.web import services


@bp.get("/dashboard")
def dashboard() -> ResponseReturnValue:
    svc = services()
    today = to_moscow(svc.clock()).date()
    error = None
    try:
        period = Period.parse(request.args.get("from"), request.args.get("to"), today=today)
    except InvalidFilter as exc:
        error = Reason(
            f"Период задан неверно: {exc.words or 'неверное значение'}. "
            "Показаны последние 30 дней.",
            exc.message,
        )
        period = Period.ending(today)
    with svc.sessions() as db:
        now_figures = figures(db, Period(today, today), lines=svc.settings.lines, now=svc.clock())
        period_figures = figures(db, period, lines=svc.settings.lines, now=svc.clock())
        people = specialist_figures(db, period)
    page = render_template(
        "console/dashboard.html",
        today=_view(now_figures),
        period=_view(period_figures),
        period_title=_period_title(period),
        specialists=specialist_rows(people),
        form={"from": period.first.isoformat(), "to": period.last.isoformat()},
        error=error,
        warnings=roster_warnings(),
    )
    return (page, 400) if error else page


def _period_title(period: Period) -> str:
    if period.first == period.last:
        return str(format_date(period.first, "d MMMM y", locale="ru"))
    first = format_date(period.first, "d MMMM y", locale="ru")
    last = format_date(period.last, "d MMMM y", locale="ru")
    return f"{first} — {last}"


def _log_url(period: Period, **filters: str) -> str:
    query = {"from": period.first.isoformat(), "to": period.last.isoformat(), **filters}
    return url_for("console.calls") + "?" + urlencode(query)


def _percent(value: float | None) -> str:
    return "—" if value is None else str(format_percent(value, "#0 %", locale="ru"))


def _view(f: Figures) -> dict[str, object]:
    p = f.period
    median = f.urgent_median_answer_seconds
    day_label_every = max(1, len(f.by_day) // 15)
    return {
        "calls": f.calls,
        "tickets_opened": f.tickets_opened,
        "ticket_share": _percent(f.ticket_share),
        "ticket_share_ok": f.ticket_share is None or f.ticketed == f.ticketable,
        "ticketed": f.ticketed,
        "ticketable": f.ticketable,
        "tickets_failed": f.tickets_failed,
        "urgent": f.urgent,
        "urgent_answered": f.urgent_answered,
        "urgent_unanswered": max(0, f.urgent - f.urgent_answered),
        "median_answer": "—"
        if median is None
        else f"{format_decimal(round(median), locale='ru')} с",
        "abandoned": f.abandoned,
        "abandoned_waiting": f.abandoned_waiting,
        "attention": f.attention,
        "busiest": ", ".join(f"{h:02d}:00–{(h + 1) % 24:02d}:00" for h in f.busiest_hours) or "—",
        "links": {
            "all": _log_url(p),
            "attention": _log_url(p, attention="true"),
            "tickets": _log_url(p, has_ticket="true"),
            "failed": _log_url(p, ticket_failed="true"),
            "urgent": _log_url(p, category=",".join(URGENT_CATEGORIES)),
            "urgent_unanswered": _log_url(p, urgent_unanswered="true"),
            "abandoned": _log_url(p, category=Category.ABANDONED),
        },
        "by_day": columns(
            [
                (_day_label(d), n, f"{format_date(d, 'EEE d MMMM', locale='ru')}: {n}")
                for d, n in f.by_day
            ],
            label_every=day_label_every,
        ),
        "by_hour": columns(
            [(f"{h:02d}", n, f"{h:02d}:00–{h:02d}:59: {n}") for h, n in enumerate(f.by_hour)],
            label_every=2,
        ),
        "by_category": rows([(c.title, c.count) for c in f.by_category]),
        "by_line": rows([(c.title, c.count) for c in f.by_line]),
        "by_topic": rows([(c.title, c.count) for c in f.by_topic], width=1100, label_width=480),
        "words": words,
    }


def _day_title(day: date) -> str:
    return str(format_date(day, "EEE d MMMM", locale="ru"))


def _day_label(day: date) -> str:
    return day.strftime("%d.%m")
