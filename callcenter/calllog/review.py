"""What a supervisor must act on: the problem rows of the call log.

A call needs attention when
- it chose a path the regulation tickets (a new problem, a critical failure, a stolen
  vehicle), it is over, and it has no ticket: none was requested (`no_ticket`), the
  request is still waiting for the portal (`ticket_pending`) or it failed (`ticket_failed`);
- it is urgent and nobody in the chain accepted it, and nobody has called back yet
  (`urgent_unanswered`);
- the caller was not served — hung up before choosing, or a consultation nobody answered
  and without a voicemail — has a number to call, and nobody has called back yet
  (`not_called_back`).

`call_problems` answers for one loaded call (the log's row labels, the CSV's column);
`needs_attention` is the same rule as a SQL condition (the log's "problems only" filter,
the dashboard's count). The two must agree; the tests check them against each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select

from callcenter.calllog.serialize import is_urgent_unanswered
from callcenter.db.models import Call, DialLeg, TicketRequest
from callcenter.vocabulary import TICKETED_CATEGORIES, URGENT_CATEGORIES, Category, Outcome

# Consultations that reached nobody and left no message: the caller waits for a call.
NOT_SERVED_ROUTING = ("no_answer", "caller_hung_up", "nobody_accepted")


@dataclass(frozen=True)
class Problem:
    kind: str
    label: str  # what the log shows on the row, in Russian


NO_TICKET = Problem("no_ticket", "Нет заявки")
TICKET_PENDING = Problem("ticket_pending", "Заявка ещё не создана")
TICKET_FAILED = Problem("ticket_failed", "Ошибка создания заявки")
URGENT_UNANSWERED = Problem("urgent_unanswered", "Срочный: никто не принял")
NOT_CALLED_BACK = Problem("not_called_back", "Не перезвонили")
PROBLEMS = (NO_TICKET, TICKET_PENDING, TICKET_FAILED, URGENT_UNANSWERED, NOT_CALLED_BACK)


def call_problems(call: Call) -> list[Problem]:
    """The call's problems, most serious first; empty for a call that needs nothing.

    Reads `call.ticket_request` and `call.legs`: load them with the call.
    """
    found: list[Problem] = []
    finished = call.outcome != Outcome.IN_PROGRESS
    request = call.ticket_request
    if call.category in TICKETED_CATEGORIES and finished:
        if request is None:
            found.append(NO_TICKET)
        elif request.status == "failed":
            found.append(TICKET_FAILED)
        elif request.ticket_number is None:
            found.append(TICKET_PENDING)
    if call.called_back_at is None:
        if is_urgent_unanswered(call):
            found.append(URGENT_UNANSWERED)
        elif _not_served(call) and call.caller_e164 is not None:
            found.append(NOT_CALLED_BACK)
    return found


def _not_served(call: Call) -> bool:
    if call.outcome == Outcome.IN_PROGRESS:
        return False
    return call.category == Category.ABANDONED or (
        call.category == Category.CONSULTATION and call.routing_outcome in NOT_SERVED_ROUTING
    )


def needs_attention() -> ColumnElement[bool]:
    """`call_problems(call)` is not empty, as a condition on `calls` (correlated
    sub-queries on the ticket request and the legs; no join needed)."""
    finished = Call.outcome != Outcome.IN_PROGRESS
    has_ticket = exists(
        select(TicketRequest.id).where(
            TicketRequest.call_id == Call.id,
            TicketRequest.status != "failed",
            TicketRequest.ticket_number.is_not(None),
        )
    )
    accepted = exists(
        select(DialLeg.id).where(DialLeg.call_id == Call.id, DialLeg.result == "accepted")
    )
    ticket_missing = and_(Call.category.in_(TICKETED_CATEGORIES), finished, not_(has_ticket))
    urgent_unanswered = and_(Call.category.in_(URGENT_CATEGORIES), finished, not_(accepted))
    not_served = and_(
        finished,
        Call.caller_e164.is_not(None),
        or_(
            Call.category == Category.ABANDONED,
            and_(
                Call.category == Category.CONSULTATION,
                Call.routing_outcome.in_(NOT_SERVED_ROUTING),
            ),
        ),
    )
    return or_(
        ticket_missing,
        and_(Call.called_back_at.is_(None), or_(urgent_unanswered, not_served)),
    )
