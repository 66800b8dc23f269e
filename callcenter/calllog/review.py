"""What a supervisor must act on: the problem rows of the call log — ONE rule set.

Each `ProblemRule` says, once, when a call has one kind of problem: as a Python test on a
loaded call (the log's red row and its badge, the call page, the CSV column) and as a SQL
condition on `calls` (the log's quick filter `?problem=<kind>`, the «Требуют внимания»
filter and the dashboard's attention count, which are the OR of all of them). The tests
check the two halves against each other on every kind.

The kinds, most serious first:
- `ticket_failed`: the ticket request failed — whatever the call's path (a consultation
  voicemail's callback ticket included);
- `no_ticket` / `ticket_pending`: a path the regulation tickets (a new problem, a critical
  failure, a stolen vehicle), finished, and no ticket was requested, or it still waits for
  the portal;
- `urgent_unanswered`: urgent, people of the chain were rung and nobody accepted, and
  nobody has called back yet;
- `urgent_not_rung`: urgent, finished before anybody was rung, nobody has called back;
- `not_called_back`: the caller was not served — hung up before or after choosing, or a
  consultation nobody answered and without a voicemail — has a number to call, and nobody
  has called back yet;
- `callback_overdue`: the call's call-back item is still waiting past its SLA deadline
  (only when the moment is given: `now`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select

from callcenter.callbacks.queue import NOT_SERVED_ROUTING, WAITING
from callcenter.db.models import Call, CallbackItem, DialLeg, TicketRequest
from callcenter.vocabulary import TICKETED_CATEGORIES, URGENT_CATEGORIES, Category, Outcome


@dataclass(frozen=True)
class Problem:
    kind: str
    label: str  # what the log shows on the row, in Russian


TICKET_FAILED = Problem("ticket_failed", "Ошибка создания заявки")
NO_TICKET = Problem("no_ticket", "Нет заявки")
TICKET_PENDING = Problem("ticket_pending", "Заявка ещё не создана")
URGENT_UNANSWERED = Problem("urgent_unanswered", "Срочный: никто не принял")
URGENT_NOT_RUNG = Problem("urgent_not_rung", "Срочный: прерван до обзвона")
NOT_CALLED_BACK = Problem("not_called_back", "Не перезвонили")
CALLBACK_OVERDUE = Problem("callback_overdue", "Перезвон просрочен")


@dataclass(frozen=True)
class ProblemRule:
    problem: Problem
    applies: Callable[[Call, datetime | None], bool]
    condition: Callable[[datetime | None], ColumnElement[bool]]


# ---------------------------------------------------------------- Python side


def _finished(call: Call) -> bool:
    return call.outcome != Outcome.IN_PROGRESS


def _ticketed(call: Call) -> bool:
    # Hung up after choosing, before saying anything: a callback, not a missing ticket.
    return (
        call.category in TICKETED_CATEGORIES
        and _finished(call)
        and call.outcome != Outcome.ABANDONED
    )


def _chain_legs(call: Call) -> list[DialLeg]:
    return [leg for leg in call.legs if leg.purpose in (None, "chain")]


def _urgent_waiting(call: Call) -> bool:
    return call.category in URGENT_CATEGORIES and _finished(call) and call.called_back_at is None


def _not_served(call: Call) -> bool:
    if not _finished(call) or call.caller_e164 is None or call.called_back_at is not None:
        return False
    if call.category in URGENT_CATEGORIES:
        return False  # the urgent rules say it better
    return (
        call.category == Category.ABANDONED
        or call.outcome == Outcome.ABANDONED
        or (call.category == Category.CONSULTATION and call.routing_outcome in NOT_SERVED_ROUTING)
    )


def _overdue(call: Call, now: datetime | None) -> bool:
    item = call.callback
    return now is not None and item is not None and item.status in WAITING and item.due_at <= now


# ---------------------------------------------------------------- SQL side


def _request_where(*conds: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(select(TicketRequest.id).where(TicketRequest.call_id == Call.id, *conds))


def _finished_sql() -> ColumnElement[bool]:
    return Call.outcome != Outcome.IN_PROGRESS


def _ticketed_sql() -> ColumnElement[bool]:
    return and_(
        Call.category.in_(TICKETED_CATEGORIES),
        _finished_sql(),
        Call.outcome != Outcome.ABANDONED,
    )


def _chain_leg_where(*conds: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(
        select(DialLeg.id).where(DialLeg.call_id == Call.id, DialLeg.purpose == "chain", *conds)
    )


def _urgent_waiting_sql() -> ColumnElement[bool]:
    return and_(
        Call.category.in_(URGENT_CATEGORIES), _finished_sql(), Call.called_back_at.is_(None)
    )


def _not_served_sql() -> ColumnElement[bool]:
    return and_(
        _finished_sql(),
        Call.caller_e164.is_not(None),
        Call.called_back_at.is_(None),
        or_(Call.category.is_(None), Call.category.not_in(URGENT_CATEGORIES)),
        or_(
            Call.category == Category.ABANDONED,
            Call.outcome == Outcome.ABANDONED,
            and_(
                Call.category == Category.CONSULTATION,
                Call.routing_outcome.in_(NOT_SERVED_ROUTING),
            ),
        ),
    )


def _overdue_sql(now: datetime | None) -> ColumnElement[bool]:
    if now is None:
        return false()
    return exists(
        select(CallbackItem.id).where(
            CallbackItem.call_id == Call.id,
            CallbackItem.status.in_(WAITING),
            CallbackItem.due_at <= now,
        )
    )


RULES: tuple[ProblemRule, ...] = (
    ProblemRule(
        TICKET_FAILED,
        lambda c, _: c.ticket_request is not None and c.ticket_request.status == "failed",
        lambda _: _request_where(TicketRequest.status == "failed"),
    ),
    ProblemRule(
        NO_TICKET,
        lambda c, _: _ticketed(c) and c.ticket_request is None,
        lambda _: and_(_ticketed_sql(), not_(_request_where())),
    ),
    ProblemRule(
        TICKET_PENDING,
        lambda c, _: (
            _ticketed(c)
            and c.ticket_request is not None
            and c.ticket_request.status != "failed"
            and c.ticket_request.ticket_number is None
        ),
        lambda _: and_(
            _ticketed_sql(),
            _request_where(TicketRequest.status != "failed", TicketRequest.ticket_number.is_(None)),
        ),
    ),
    ProblemRule(
        URGENT_UNANSWERED,
        lambda c, _: (
            _urgent_waiting(c)
            and bool(_chain_legs(c))
            and not any(leg.result == "accepted" for leg in _chain_legs(c))
        ),
        lambda _: and_(
            _urgent_waiting_sql(),
            _chain_leg_where(),
            not_(_chain_leg_where(DialLeg.result == "accepted")),
        ),
    ),
    ProblemRule(
        URGENT_NOT_RUNG,
        lambda c, _: _urgent_waiting(c) and not _chain_legs(c) and c.caller_e164 is not None,
        lambda _: and_(
            _urgent_waiting_sql(), not_(_chain_leg_where()), Call.caller_e164.is_not(None)
        ),
    ),
    ProblemRule(NOT_CALLED_BACK, lambda c, _: _not_served(c), lambda _: _not_served_sql()),
    ProblemRule(CALLBACK_OVERDUE, _overdue, _overdue_sql),
)
PROBLEMS = tuple(rule.problem for rule in RULES)
BY_KIND = {rule.problem.kind: rule for rule in RULES}


def call_problems(call: Call, *, now: datetime | None = None) -> list[Problem]:
    """The call's problems, most serious first; empty for a call that needs nothing.

    Reads `call.ticket_request`, `call.legs` and `call.callback`: load them with the call.
    """
    return [rule.problem for rule in RULES if rule.applies(call, now)]


def has_problem(kind: str, *, now: datetime | None = None) -> ColumnElement[bool]:
    """`problem of kind` in `call_problems(call)`, as a condition on `calls`."""
    return BY_KIND[kind].condition(now)


def needs_attention(*, now: datetime | None = None) -> ColumnElement[bool]:
    """`call_problems(call)` is not empty, as a condition on `calls` (correlated
    sub-queries; no join needed)."""
    return or_(*(rule.condition(now) for rule in RULES))
