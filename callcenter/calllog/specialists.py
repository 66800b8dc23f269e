"""Per-specialist figures for a period: who was rung, who answered, how fast, callbacks.

Flask-free: `specialist_figures(session, period)` reads the dial legs (`DialLeg`, one per
person rung for a call) of the period's calls and the callback marks; the console's
dashboard draws the table.

How each figure is counted, per person of the roster (a leg's `staff_key`; legs to a
number outside the roster, e.g. the duty phone, are grouped by that number):
- offered: calls of the period on which at least one of the person's phones rang;
- answered: of those, calls the person took — a leg that ended accepted (for an urgent
  call: picked up and pressed 1; for a consultation: picked up and was connected);
- missed: offered calls the person did not take although their phone rang out: no answer,
  busy, declined, failed, or picked up without pressing 1. A call a colleague took first
  or the caller hung up on while it rang (every leg of theirs `canceled`) is neither;
- median time to answer: from the person's phone starting to ring to their picking up,
  over the legs they answered;
- callbacks done: the calls marked «перезвонили» during the period by a console user
  whose name is the person's roster key or name. There is no callback queue with owners
  yet: a mark is all there is, made by a console user, who is matched to the roster by name;
  marks by users not in the roster are listed under the user's name.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.calllog.dashboard import Period
from callcenter.db.models import Call, DialLeg, Staff

ANSWERED = "accepted"
# A leg that rang out without the person taking the call.
MISSED = frozenset({"no-answer", "busy", "declined", "failed", "not-accepted"})


@dataclass
class SpecialistFigures:
    key: str  # the roster key; a number for legs outside the roster; a user's name
    name: str
    in_roster: bool = True
    offered: int = 0
    answered: int = 0
    missed: int = 0
    answer_seconds: list[float] = field(default_factory=list)
    callbacks: int = 0

    @property
    def median_answer_seconds(self) -> float | None:
        return statistics.median(self.answer_seconds) if self.answer_seconds else None


@dataclass
class _Offer:
    answered: bool = False
    missed: bool = False


def specialist_figures(session: Session, period: Period) -> list[SpecialistFigures]:
    """One row per person rung or calling back in the period: the roster's order of
    names (staff first, then numbers outside the roster, then other console users)."""
    staff = {s.key: s.name for s in session.scalars(select(Staff))}
    people: dict[str, SpecialistFigures] = {}
    offers: dict[tuple[str, int], _Offer] = defaultdict(_Offer)

    def person(key: str, name: str, in_roster: bool) -> SpecialistFigures:
        if key not in people:
            people[key] = SpecialistFigures(key, name, in_roster)
        return people[key]

    legs = session.execute(
        select(
            DialLeg.call_id,
            DialLeg.staff_key,
            DialLeg.staff_name,
            DialLeg.number,
            DialLeg.started_at,
            DialLeg.answered_at,
            DialLeg.result,
        )
        .join(Call, Call.id == DialLeg.call_id)
        .where(Call.started_at >= period.start, Call.started_at < period.end)
    ).all()
    for call_id, key, name, number, started, answered_at, result in legs:
        if key:
            who = person(key, staff.get(key) or name or key, True)
        else:
            who = person(number, name or number, False)
        offer = offers[(who.key, call_id)]
        if result == ANSWERED:
            offer.answered = True
            if answered_at is not None:
                who.answer_seconds.append(_seconds(started, answered_at))
        elif result in MISSED:
            offer.missed = True
    for (key, _), offer in offers.items():
        who = people[key]
        who.offered += 1
        who.answered += offer.answered
        who.missed += offer.missed and not offer.answered

    by_name = {name: key for key, name in staff.items()}
    marks = session.scalars(
        select(Call.called_back_by).where(
            Call.called_back_at >= period.start,
            Call.called_back_at < period.end,
            Call.called_back_by.is_not(None),
        )
    ).all()
    for user in marks:
        if user is None:
            continue
        key = user if user in staff else by_name.get(user)
        who = person(key, staff[key], True) if key else person(user, user, False)
        who.callbacks += 1

    return sorted(people.values(), key=lambda p: (not p.in_roster, p.name))


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
