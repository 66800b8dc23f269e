"""Demo data: weeks of past calls, played through the real webhooks on a moved clock.

`callcenter demo seed --days 30` gives a new installation something to look back on. The
plan (`plan_calls`) is made from the production calendar and a seeded random generator:
more calls inside the working window (09:30–18:00, 17:00 on a short pre-holiday day), a
few in the evening and at night, a few on days off and holidays; both lines; every IVR
path — consultation (answered, or a voicemail), a new problem, a critical failure and a
stolen vehicle (accepted along the chain, or nobody: a voicemail), a ticket's status, a
specialist, calls abandoned at the menu or after a choice — and a failure or two: the
portal down for one ticket (made later by the outbox's retry) and a ticket the portal
refuses (a failed ticket, as a supervisor would see one).

`play_calls` plays each planned call with the Twilio simulator against the service's own
WSGI app in this process: every request is signed, every webhook step runs as it would
for Twilio, and the service's clock (`MovedClock`) stands at the call's moment and moves
with the call's virtual time (speech, rings, talk). The ticket jobs run on the service's
own in-process runner; the clock moves on only once they are done.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as day_time
from typing import Literal

from callcenter.clock import MOSCOW, as_utc
from callcenter.errors import PortalRejected, PortalUnavailable, SimulationError
from callcenter.portal.builtin import BuiltinPortal
from callcenter.portal.protocol import TicketDraft, TicketView
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.simulator.script import Answer, CallScript, DialResult
from callcenter.simulator.twilio import Simulator, Transcript

# The two SKAI lines and how their calls split.
HOTLINE = "+78002506077"  # 8 800 250-60-77
CITY_LINE = "+78126077741"  # 8 812 607-77-41
LINES = (HOTLINE, CITY_LINE)
LINE_SHARES = (2, 1)

Path = Literal[
    "consultation",
    "consultation_voicemail",
    "new_problem",
    "critical",
    "critical_unanswered",
    "stolen",
    "status",
    "specialist",
    "abandoned",
    "abandoned_after_choice",
]
PATHS: tuple[Path, ...] = (
    "consultation",
    "consultation_voicemail",
    "new_problem",
    "critical",
    "critical_unanswered",
    "stolen",
    "status",
    "specialist",
    "abandoned",
    "abandoned_after_choice",
)
# How often each path comes, inside the working window and outside it (nights, days off).
WORKING_WEIGHTS: dict[Path, int] = {
    "consultation": 30,
    "consultation_voicemail": 8,
    "new_problem": 26,
    "critical": 4,
    "critical_unanswered": 1,
    "stolen": 3,
    "status": 8,
    "specialist": 8,
    "abandoned": 7,
    "abandoned_after_choice": 4,
}
OFF_HOURS_WEIGHTS: dict[Path, int] = {
    "consultation": 12,
    "consultation_voicemail": 10,
    "new_problem": 18,
    "critical": 14,
    "critical_unanswered": 4,
    "stolen": 12,
    "status": 5,
    "specialist": 6,
    "abandoned": 8,
    "abandoned_after_choice": 3,
}
# Paths whose calls end with a ticket (the portal failures pick among them).
TICKETED: frozenset[Path] = frozenset(
    {"consultation_voicemail", "new_problem", "critical", "critical_unanswered", "stolen"}
)
PortalMood = Literal["up", "down", "rejects"]

# Calls on a working day inside the window, after it, and on a day off (inclusive ranges).
WORKING_WINDOW_CALLS = (5, 9)
EVENING_CALLS = (0, 2)
DAY_OFF_CALLS = (1, 3)
# Calls never overlap: the next one starts at least this long after the previous began.
MIN_GAP = timedelta(minutes=12)

PLATES = ("А123ВС77", "В456ОР178", "Е777КХ98", "К001МР77", "М350ТТ47", "Н808АУ199")
UNKNOWN_NAMES = (
    "Ольга Кузнецова, Балтийские перевозки",
    "Дмитрий Орлов, ТрансАвто",
    "Сергей Волков, Северный путь",
    "Марина Лебедева, Логистик Плюс",
)


@dataclass(frozen=True)
class PlannedCall:
    at: datetime  # UTC: when the caller dials
    path: Path
    line: str
    caller: str
    portal: PortalMood = "up"


class MovedClock:
    """The service's clock during a seed: stands where it is put, moves only forward."""

    def __init__(self, at: datetime) -> None:
        self.at = as_utc(at)

    def __call__(self) -> datetime:
        return self.at

    def move_to(self, at: datetime) -> None:
        self.at = max(self.at, as_utc(at))


class DemoPortal(BuiltinPortal):
    """The built-in portal, which can be down (`PortalUnavailable`) or refuse a ticket
    (`PortalRejected`) while one planned call is played."""

    mood: PortalMood = "up"

    def create_ticket(self, draft: TicketDraft) -> TicketView:
        if self.mood == "down":
            raise PortalUnavailable("демонстрация: портал недоступен")
        if self.mood == "rejects":
            raise PortalRejected("демонстрация: портал отклонил заявку")
        return super().create_ticket(draft)


# ---------------------------------------------------------------- the plan


def plan_calls(
    calendar: BusinessCalendar,
    *,
    last_day: date,
    days: int,
    rng: random.Random,
    known_callers: Sequence[str],
    not_after: datetime,
) -> list[PlannedCall]:
    """The calls of `days` days ending with `last_day` (Moscow dates), in time order, none
    later than `not_after`. The first ones take every path once; two ticketed calls, a
    third and two thirds of the way through, meet a portal that is down and one that
    refuses."""
    if days < 1:
        raise ValueError("days must be 1 or more")
    moments: list[tuple[datetime, bool]] = []
    for offset in range(days - 1, -1, -1):
        moments += _day_moments(calendar, last_day - timedelta(days=offset), rng)
    moments = [(at, working) for at, working in sorted(moments) if at <= as_utc(not_after)]
    spaced: list[tuple[datetime, bool]] = []
    for at, working in moments:
        if spaced and at < spaced[-1][0] + MIN_GAP:
            at = spaced[-1][0] + MIN_GAP
        if at <= as_utc(not_after):
            spaced.append((at, working))
    first_paths = list(PATHS)
    rng.shuffle(first_paths)
    unknown = [_unknown_mobile(rng) for _ in range(max(4, len(spaced) // 6))]
    calls: list[PlannedCall] = []
    for i, (at, working) in enumerate(spaced):
        if i < len(first_paths):
            path = first_paths[i]
        else:
            weights = WORKING_WEIGHTS if working else OFF_HOURS_WEIGHTS
            path = rng.choices(list(weights), weights=list(weights.values()))[0]
        line = rng.choices(LINES, weights=LINE_SHARES)[0]
        pool = list(known_callers) if known_callers and rng.random() < 0.6 else unknown
        calls.append(PlannedCall(at, path, line, rng.choice(pool)))
    return _with_failures(calls)


def _day_moments(
    calendar: BusinessCalendar, day: date, rng: random.Random
) -> list[tuple[datetime, bool]]:
    """(moment, inside the working window) for one day's calls."""
    midnight = datetime.combine(day, day_time(0, 0), tzinfo=MOSCOW)
    window = calendar.window(day)
    out: list[tuple[datetime, bool]] = []
    if window is None:
        for _ in range(rng.randint(*DAY_OFF_CALLS)):
            out.append((as_utc(midnight + timedelta(minutes=rng.randrange(24 * 60))), False))
        return out
    opens, closes = (as_utc(t) for t in window)
    span = int((closes - opens).total_seconds() // 60) - 20
    for _ in range(rng.randint(*WORKING_WINDOW_CALLS)):
        out.append((opens + timedelta(minutes=rng.randrange(span)), True))
    # Evening and night: after the close, or before the next morning's opening.
    night_minutes = int((opens - as_utc(midnight)).total_seconds() // 60)
    for _ in range(rng.randint(*EVENING_CALLS)):
        if rng.random() < 0.6:
            at = closes + timedelta(minutes=20 + rng.randrange(5 * 60))
            if at.astimezone(MOSCOW).date() != day:
                at = closes + timedelta(minutes=20)
        else:
            at = as_utc(midnight) + timedelta(minutes=rng.randrange(max(1, night_minutes - 30)))
        out.append((at, False))
    return out


def _with_failures(calls: list[PlannedCall]) -> list[PlannedCall]:
    ticketed = [i for i, call in enumerate(calls) if call.path in TICKETED]
    if len(ticketed) < 2:
        return calls
    moods: list[PortalMood] = ["down", "rejects"]
    for share, mood in zip((1 / 3, 2 / 3), moods, strict=True):
        i = ticketed[min(len(ticketed) - 1, int(len(ticketed) * share))]
        calls[i] = PlannedCall(calls[i].at, calls[i].path, calls[i].line, calls[i].caller, mood)
    return calls


def _unknown_mobile(rng: random.Random) -> str:
    return "+79" + "".join(str(rng.randrange(10)) for _ in range(9))


# ---------------------------------------------------------------- the scripts


def call_script(
    call: PlannedCall,
    rng: random.Random,
    *,
    known_callers: Sequence[str],
    tickets_of: dict[str, str],
) -> CallScript:
    """What the caller of `call` presses and says, and how the people rung react."""
    known = call.caller in known_callers
    answers: list[Answer] = []
    dials: tuple[DialResult, ...] = ()
    nobody: tuple[DialResult, ...] = ("no-answer",) * 8
    press, say = Answer.press, Answer.say
    if call.path == "consultation":
        answers = [press("1")]
        dials = rng.choice([("accepted",), ("no-answer", "accepted"), ("busy", "accepted")])
    elif call.path == "consultation_voicemail":
        answers = [press("1")]
        dials = nobody
    elif call.path == "new_problem":
        answers = [press("2"), press(str(rng.randint(1, 7))), press(str(rng.randint(1, 4)))]
        plate = rng.choice(PLATES)
        how = rng.random()
        if how < 0.6:
            answers.append(say(plate))
        elif how < 0.8:
            answers.append(press("".join(ch for ch in plate if ch.isdigit())[:3] + "#"))
        else:
            answers.append(Answer.silence())
        if not known:
            answers.append(say(rng.choice(UNKNOWN_NAMES)))
    elif call.path in ("critical", "critical_unanswered"):
        answers = [press("3"), press("#")]
        dials = nobody if call.path == "critical_unanswered" else _chain_reactions(rng)
    elif call.path == "stolen":
        answers = [press("4"), say(rng.choice(PLATES))]
        dials = _chain_reactions(rng)
    elif call.path == "status":
        number = tickets_of.get(call.caller) or str(rng.randint(1001, 1010))
        answers = [press("5"), press(number + "#")]
    elif call.path == "specialist":
        answers = [press("0")]
        dials = rng.choice([("accepted",), ("no-answer", "accepted"), nobody])
    elif call.path == "abandoned":
        answers = [Answer.hangup()]
    elif call.path == "abandoned_after_choice":
        answers = [press(rng.choice(["2", "4"])), Answer.hangup()]
    return CallScript(
        from_number=call.caller,
        to_number=call.line,
        answers=tuple(answers),
        dial_results=dials,
        record_seconds=(rng.randint(8, 50),),
        talk_seconds=rng.randint(40, 420),
        ring_seconds=rng.choice((3, 4, 5, 6, 8, 10, 12, 15)),
    )


def _chain_reactions(rng: random.Random) -> tuple[DialResult, ...]:
    """The urgent chain, one person at a time: who picks up and presses 1."""
    return rng.choice(
        [
            ("accepted",),
            ("accepted",),
            ("no-answer", "accepted"),
            ("voicemail", "accepted"),
            ("busy", "no-answer", "accepted"),
        ]
    )


# ---------------------------------------------------------------- playing


@dataclass
class SeedReport:
    calls: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    by_line: Counter[str] = field(default_factory=Counter)
    days: set[date] = field(default_factory=set)
    seconds: float = 0.0


def play_calls(
    plan: Sequence[PlannedCall],
    simulator: Simulator,
    clock: MovedClock,
    portal: DemoPortal,
    rng: random.Random,
    *,
    known_callers: Sequence[str],
    ticket_of_call: Callable[[str], str | None],
    settle: Callable[[], None],
    on_call: Callable[[PlannedCall, Transcript], None] | None = None,
) -> SeedReport:
    """Play `plan` in order. `settle` runs the jobs a call left behind (before and after
    it); `ticket_of_call` reads a call's ticket number, for a later status call."""
    report = SeedReport()
    tickets_of: dict[str, str] = {}
    started = time.monotonic()
    for call in plan:
        clock.move_to(call.at)
        # What was due by now (a retry after the portal's outage) runs at this moment.
        settle()
        portal.mood = call.portal
        try:
            transcript = simulator.run(
                call_script(call, rng, known_callers=known_callers, tickets_of=tickets_of)
            )
        finally:
            portal.mood = "up"
        settle()
        if transcript.errors:
            raise SimulationError(
                f"the demo call at {call.at.astimezone(MOSCOW):%d.%m.%Y %H:%M} ({call.path}) "
                f"failed: {'; '.join(transcript.errors)}"
            )
        number = ticket_of_call(transcript.call_sid)
        if number:
            tickets_of[call.caller] = number
        report.calls += 1
        report.by_path[call.path] += 1
        report.by_line[call.line] += 1
        report.days.add(call.at.astimezone(MOSCOW).date())
        if on_call is not None:
            on_call(call, transcript)
    report.seconds = time.monotonic() - started
    return report


def moscow_today(now: datetime) -> date:
    return as_utc(now).astimezone(MOSCOW).date()


__all__ = [
    "CITY_LINE",
    "HOTLINE",
    "PATHS",
    "DemoPortal",
    "MovedClock",
    "PlannedCall",
    "SeedReport",
    "call_script",
    "moscow_today",
    "plan_calls",
    "play_calls",
]
