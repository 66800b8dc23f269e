"""The step engine: (stored state, event, context) → (new state, actions, reply).

Flask-free and database-free. The caller of `advance` (`callcenter.ivr.conversation`)
loads the call's row, builds the context (clock, calendar, what the call has collected,
lookups of tickets), applies the returned actions in the same transaction and renders the
reply as TwiML.

Idempotency: every `<Gather>`, `<Record>` and poll names its step and a turn number in its
action URL (`/webhooks/voice/step/main_menu?t=3`). A request whose step and turn are not the
call's current ones (a webhook Twilio retried, a duplicate, a stale page) is answered by
saying the current step again; it never advances the call twice.

Never stranding a caller: silence or an unusable answer is said so and asked again, twice;
after that the step's exhausted rule moves on (the main menu connects a specialist,
optional answers are skipped). Where silence has an obvious meaning it acts at once: no
ticket number on the critical path is "no ticket", no plate on a new problem is "no plate".
In every menu and free-answer step 0 (or «оператор») reaches a specialist and 9 (or
«главное меню») returns to the main menu.

What Twilio delivers (https://www.twilio.com/docs/voice/twiml/gather): the finish key is
never part of `Digits`, and the finish key pressed alone is no input at all — the same as
silence. No step asks for a key that Twilio does not deliver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from callcenter import vocabulary
from callcenter.ivr import flow, prompts
from callcenter.ivr.plates import parse_plates, spoken_plate
from callcenter.ivr.reply import (
    Gather,
    Hangup,
    Pause,
    Record,
    Redirect,
    Reply,
    Say,
    Verb,
)
from callcenter.ivr.spoken import spoken_digits
from callcenter.phones import callback_number
from callcenter.portal.protocol import TicketView
from callcenter.portal.tickets import CLOSED, SOLVED
from callcenter.regulation.speech import say_moment
from callcenter.vocabulary import Category, Route, Step

MAX_RETRIES = 2
POLL_PAUSE_SECONDS = 2
DESCRIPTION_MAX_SECONDS = 180
# A repeat caller's addition is short: what changed since the ticket was opened.
ADDITION_MAX_SECONDS = 120
# Ticket numbers are at most this long (the portal contract); longer input is a mistake.
MAX_TICKET_DIGITS = 12

# ------------------------------------------------------------------ values in and out


@dataclass
class CallState:
    """The IVR's per-call state, kept as JSON on `Call.state`."""

    step: str = "start"
    turn: int = 0
    retries: int = 0
    # Where routing took over (a `Route`), once it has.
    route: str | None = None
    # The path reached its ticket outcome (a ticket request, or a duplicated ticket).
    resolved: bool = False
    duplicate_of: str | None = None
    # Ticket polling after the description.
    wait_started: str | None = None
    polls: int = 0
    # Ticket number the caller asked about (status path), for "try again".
    asked_number: str | None = None
    # The ticket said on the status path is solved: its end menu offers the objection.
    status_solved: bool = False
    # A withheld caller's number to call back (E.164), typed on the keypad, and where the
    # call goes once it is asked: "description" or "consultation". The ticket intake reads
    # it under `vocabulary.CALLBACK_NUMBER_KEY`.
    callback_number: str | None = None
    callback_then: str | None = None
    # A main-menu choice recognised from speech, waiting for the caller's "yes".
    pending_choice: str | None = None
    # What the last announcement said, for "*" (repeat).
    announcement: list[str] = field(default_factory=list)
    # The known incident offered before the main menu (`Step.INCIDENT_OFFER`).
    incident_id: int | None = None
    # A repeat caller: the open tickets offered in the first menu (newest first), the one
    # the caller adds to, and the existing ticket this call is about (status, addition,
    # duplicate), for the call log.
    offered: list[str] = field(default_factory=list)
    addition_to: str | None = None
    related_ticket: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CallState:
        known = _STATE_FIELDS
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy is a measurable part of a webhook's CPU,
        # and every value here is a scalar or a list of strings.
        values = {name: getattr(self, name) for name in _STATE_FIELDS}
        values["announcement"] = list(self.announcement)
        values["offered"] = list(self.offered)
        return values


_STATE_FIELDS = tuple(f.name for f in fields(CallState))


@dataclass(frozen=True)
class RecordingRef:
    sid: str | None
    url: str
    duration: int | None = None


@dataclass(frozen=True)
class IvrEvent:
    """One webhook of the call, as the engine sees it.

    `digits` is None when Twilio sent no keys: silence (the `<Redirect>` after a `<Gather>`,
    or its empty result) and the finishing key pressed alone look the same.
    """

    kind: Literal["start", "step"]
    step: str | None = None
    turn: int | None = None
    digits: str | None = None
    speech: str | None = None
    confidence: float | None = None
    recording: RecordingRef | None = None

    @property
    def silent(self) -> bool:
        return not self.digits and not self.speech and self.recording is None


@dataclass(frozen=True)
class CallFacts:
    """What the call has collected and who the caller is, read from its row."""

    category: str | None = None
    topic: str | None = None
    vehicles: tuple[str, ...] = ()
    known_caller: bool = False
    organisation_id: int | None = None
    sms_reachable: bool = False
    # The caller ID is a number to call back; False: withheld (asked for one).
    has_number: bool = True


@dataclass(frozen=True)
class TicketLookup:
    outcome: Literal["found", "not_found", "unavailable"]
    view: TicketView | None = None


@dataclass(frozen=True)
class RequestedTicket:
    """The call's ticket request as it stands: its number once the portal gave one."""

    number: str | None
    failed: bool = False
    first_stage_due: datetime | None = None
    resolution_due: datetime | None = None


class Lookups(Protocol):
    def ticket(self, number: str) -> TicketLookup:
        """A portal ticket by number, within a short deadline."""
        ...

    def requested_ticket(self) -> RequestedTicket | None:
        """This call's ticket request, freshly read (None: there is none yet)."""
        ...

    def objection_recorded(self, number: str) -> bool:
        """Portal ticket `number` carries this call's objection to its solution (asked for
        with `RecordObjection`), as the portal says within a short deadline."""
        ...

    def open_tickets(self) -> tuple[TicketView, ...]:
        """The caller's open tickets (by directory contact or caller number), newest first,
        within a short deadline; none when the caller cannot be identified or the portal
        does not answer in time."""
        ...


@dataclass(frozen=True)
class IncidentNotice:
    """A known incident the caller hears of first (`callcenter.incidents`)."""

    incident_id: int
    product: str  # spoken: "СКАЙ Онлайн"
    # None while the portal is still making its ticket (detected a moment ago): the
    # announcement leaves the number out, and joining waits for it (`incidents.store`).
    ticket_number: str | None


class WorkingHours(Protocol):
    def is_working_time(self, at: datetime) -> bool: ...

    def next_window_start(self, at: datetime) -> datetime: ...


@dataclass(frozen=True)
class StepContext:
    now: datetime
    calendar: WorkingHours
    support_name: str
    ticket_wait_seconds: int
    call: CallFacts
    lookups: Lookups
    say_digits: Callable[[str], str]
    say_deadline: Callable[[datetime], str]
    # A moment in words, Moscow time ("в четверг, пятого ноября, в девять тридцать ...").
    say_moment: Callable[[datetime], str] = say_moment
    # The open incident announced at the start (at the offer: the one offered, while open).
    incident: IncidentNotice | None = None


# Actions: what the caller of `advance` must do to the call, in order.


@dataclass(frozen=True)
class Remember:
    field: Literal["category", "topic", "product", "vehicles", "caller_said_name"]
    value: Any


@dataclass(frozen=True)
class KeepRecording:
    recording: RecordingRef
    kind: Literal["description", "voicemail", "addition"] = "description"


@dataclass(frozen=True)
class OpenTicket:
    # A ticket number the caller typed that is not their organisation's (critical path).
    typed_number: str | None = None


@dataclass(frozen=True)
class MarkPhoneDuplicate:
    ticket_number: str


@dataclass(frozen=True)
class RecordObjection:
    """The caller objects to portal ticket `ticket_number`'s solution: recorded on the ticket
    once the step has committed (the portal may share the call's database)."""

    ticket_number: str


@dataclass(frozen=True)
class JoinIncident:
    """The caller joined the known incident: a phone duplicate on its ticket, no chain."""

    incident_id: int


@dataclass(frozen=True)
class AddToTicket:
    """The call's recorded addition goes onto an existing ticket (no new ticket)."""

    ticket_number: str
    topic: str | None = None  # the ticket's topic, as the portal said it


Action = (
    Remember
    | KeepRecording
    | OpenTicket
    | MarkPhoneDuplicate
    | RecordObjection
    | JoinIncident
    | AddToTicket
)


@dataclass(frozen=True)
class StepResult:
    state: CallState
    actions: tuple[Action, ...]
    reply: Reply
    # What the engine made of the event, for the call's event log.
    note: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ the entry point


def advance(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    """The call's next state, the actions to apply and the reply to the caller."""
    state = replace(state, announcement=list(state.announcement))
    if event.kind == "start":
        if state.step == "start":
            return _greet(state, ctx)
        # Twilio retried the incoming webhook: the caller is still at the start.
        if state.step == "main_menu" and state.retries == 0:
            return StepResult(
                state, (), _main_menu_prompt(state, ctx, greet=True), _event_note("repeated")
            )
        if state.step == Step.REPEAT_OFFER:
            reply = _repeat_offer_prompt(state, ctx, greet=True)
            return StepResult(state, (), reply, _event_note("repeated"))
        return StepResult(state, (), _prompt(state, ctx), _event_note("repeated"))
    if event.step != state.step or event.turn != state.turn:
        return StepResult(
            state, (), _prompt(state, ctx), {"result": "stale", "current": state.step}
        )
    handler = _HANDLERS.get(state.step)
    if handler is None:
        return StepResult(state, (), _prompt(state, ctx), _event_note("no_input_expected"))
    return handler(state, event, ctx)


def _has_ticket(ctx: StepContext) -> bool:
    return ctx.lookups.requested_ticket() is not None


def _event_note(result: str, **more: Any) -> dict[str, Any]:
    """What the engine made of the event, for the call's event log (`StepResult.note`)."""
    return {"result": result, **more}


# ------------------------------------------------------------------ prompts per step


def step_path(state: CallState) -> str:
    return vocabulary.step_path(state.step, state.turn)


def _gather(
    state: CallState,
    texts: list[str],
    *,
    num_digits: int | None = 1,
    speech: bool = True,
    finish_on_key: str | None = None,
    timeout: int = 5,
    hints: tuple[str, ...] = (),
) -> Reply:
    action = step_path(state)
    gather = Gather(
        action=action,
        prompt=tuple(Say(text) for text in texts),
        speech=speech,
        num_digits=num_digits,
        timeout=timeout,
        finish_on_key=finish_on_key,
        hints=hints,
    )
    # No answer: Twilio goes on to the next verb, which brings the call back here silent.
    return (gather, Redirect(action))


# Steps that take a free-form answer (ticket number or plates): their prompt, hints and
# whether the navigation keys are said (the critical path keeps its prompt short: 0 there
# goes straight to the on-duty specialist anyway).
_FREE_ANSWERS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    Step.CRITICAL: (prompts.CRITICAL_NUMBER, flow.NUMBER_HINTS, False),
    Step.STOLEN_VEHICLES: (prompts.STOLEN_VEHICLES, flow.PLATE_HINTS, False),
    Step.STATUS_NUMBER: (prompts.STATUS_NUMBER, flow.NUMBER_HINTS, True),
}


def _main_menu_prompt(state: CallState, ctx: StepContext, *, greet: bool = False) -> Reply:
    lead = _greeting(ctx) if greet else []
    return _gather(state, [*lead, prompts.MAIN_MENU], hints=flow.MAIN_MENU.hints)


def _prompt(state: CallState, ctx: StepContext) -> Reply:
    step = state.step
    if step in ("start", "main_menu"):
        return _main_menu_prompt(state, ctx)
    if step == Step.INCIDENT_OFFER:
        return _incident_offer_prompt(state, ctx, greet=False)
    if step == Step.CONFIRM_URGENT:
        text = (
            prompts.CONFIRM_STOLEN
            if state.pending_choice == flow.STOLEN
            else prompts.CONFIRM_CRITICAL
        )
        return _gather(state, [text], hints=flow.CONFIRM_MENU.hints)
    if step == "topic":
        menu = flow.topic_menu()
        text = prompts.TOPIC_MENU.format(options=menu.options_text())
        return _gather(state, [text, prompts.NAVIGATION], hints=menu.hints)
    if step == "product":
        menu = flow.product_menu()
        text = prompts.PRODUCT_MENU.format(options=menu.options_text())
        return _gather(state, [text, prompts.NAVIGATION], hints=menu.hints)
    if step == "vehicles":
        return _gather(
            state,
            [prompts.VEHICLES, prompts.NAVIGATION],
            num_digits=None,
            finish_on_key="#",
            timeout=7,
            hints=flow.PLATE_HINTS,
        )
    if step == "caller_name":
        return _gather(
            state, [prompts.CALLER_NAME, prompts.NAVIGATION], num_digits=None, finish_on_key="#"
        )
    if step == Step.CALLBACK_NUMBER:
        return _gather(
            state,
            [prompts.CALLBACK_NUMBER, prompts.NAVIGATION],
            num_digits=None,
            finish_on_key="#",
            timeout=7,
            hints=flow.NUMBER_HINTS,
        )
    if step == "description":
        action = step_path(state)
        return (
            Say(prompts.DESCRIPTION),
            Record(
                action=action,
                max_length=DESCRIPTION_MAX_SECONDS,
                finish_on_key="#",
                timeout=10,
                status_callback=vocabulary.recording_status_path("description"),
            ),
            # Nothing recorded: Twilio skips the action and goes on here.
            Redirect(action),
        )
    if step == "ticket_wait":
        return (Pause(POLL_PAUSE_SECONDS), Redirect(step_path(state)))
    if step in _FREE_ANSWERS:
        text, hints, navigation = _FREE_ANSWERS[step]
        texts = [text, prompts.NAVIGATION] if navigation else [text]
        # A number or plate of any length, ended with "#" (nothing typed: silence).
        return _gather(state, texts, num_digits=None, finish_on_key="#", timeout=5, hints=hints)
    if step == "ticket_done":
        menu_text = prompts.TICKET_DONE_MENU if state.resolved and state.announcement else ""
        texts = [*state.announcement, menu_text or prompts.CONNECTING_OPTION]
        return _gather(state, texts, hints=flow.END_MENU_HINTS)
    if step == "status_done":
        if state.status_solved:
            texts = [*state.announcement, prompts.STATUS_SOLVED_MENU]
            return _gather(state, texts, hints=flow.SOLVED_MENU_HINTS)
        texts = [*state.announcement, prompts.STATUS_DONE_MENU]
        return _gather(state, texts, hints=flow.END_MENU_HINTS)
    if step == Step.STATUS_OBJECTION:
        # No speech: the step comes straight back to learn whether the portal took it.
        return (Redirect(step_path(state)),)
    if step == Step.STATUS_UNKNOWN_CALLER:
        return _gather(state, [prompts.STATUS_UNKNOWN_CALLER], hints=flow.END_MENU_HINTS)
    if step == "status_unavailable":
        return _gather(state, [prompts.STATUS_UNAVAILABLE], hints=flow.END_MENU_HINTS)
    if step == Step.REPEAT_OFFER:
        return _repeat_offer_prompt(state, ctx)
    if step == Step.ADDITION:
        action = step_path(state)
        number = ctx.say_digits(state.addition_to or "")
        return (
            Say(prompts.ADDITION.format(number=number)),
            Record(
                action=action,
                max_length=ADDITION_MAX_SECONDS,
                finish_on_key="#",
                timeout=7,
                status_callback=vocabulary.recording_status_path("addition"),
            ),
            # Nothing recorded: Twilio skips the action and goes on here.
            Redirect(action),
        )
    if step == Step.ADDITION_DONE:
        texts = [*state.announcement, prompts.ADDITION_DONE_MENU]
        return _gather(state, texts, hints=flow.END_MENU_HINTS)
    if step == "routed":
        return (Redirect(vocabulary.route_path(state.route or Route.CONSULTATION)),)
    return (Hangup(),)


def _ask(state: CallState, step: str, ctx: StepContext, preface: tuple[Verb, ...] = ()) -> Reply:
    """Move to `step` (a new turn) and prompt for it."""
    if step != state.step:
        state.retries = 0
    state.step = step
    state.turn += 1
    return (*preface, *_prompt(state, ctx))


def _retry(
    state: CallState,
    event: IvrEvent,
    ctx: StepContext,
    exhausted: Callable[[CallState, StepContext], StepResult],
    *,
    message: str | None = None,
) -> StepResult:
    """Say what went wrong and ask again, twice; then the step's exhausted rule."""
    result = "silence" if event.silent else "invalid"
    if state.retries >= MAX_RETRIES:
        outcome = exhausted(state, ctx)
        return replace(outcome, note={**outcome.note, "exhausted": result})
    state.retries += 1
    state.turn += 1
    said = message or (prompts.NOT_HEARD if event.silent else prompts.NOT_UNDERSTOOD)
    return StepResult(
        state, (), (Say(said), *_prompt(state, ctx)), _event_note(result, retry=state.retries)
    )


def _route(state: CallState, route: str, preface: tuple[Verb, ...]) -> Reply:
    state.step = "routed"
    state.route = route
    state.turn += 1
    return (*preface, Redirect(vocabulary.route_path(route)))


def _goodbye(state: CallState) -> Reply:
    state.step = "ended"
    state.turn += 1
    return (Say(prompts.GOODBYE), Hangup())


# ------------------------------------------------------------------ greeting and main menu


def _greeting(ctx: StepContext) -> list[str]:
    said = [prompts.GREETING.format(support_name=ctx.support_name)]
    if not ctx.calendar.is_working_time(ctx.now):
        resumes = ctx.say_moment(ctx.calendar.next_window_start(ctx.now))
        said.append(prompts.AFTER_HOURS.format(resumes=resumes))
    return said


def _greet(state: CallState, ctx: StepContext) -> StepResult:
    after_hours = not ctx.calendar.is_working_time(ctx.now)
    if ctx.incident is None:
        # No incident to announce: a caller with open tickets hears them first.
        offer = repeat_caller_offer(state, ctx, after_hours=after_hours)
        if offer is not None:
            return offer
    state.retries = 0
    state.turn += 1
    if ctx.incident is not None:
        # A known incident comes first, in the same <Gather> as the greeting.
        state.step = Step.INCIDENT_OFFER
        state.incident_id = ctx.incident.incident_id
        reply = _incident_offer_prompt(state, ctx, greet=True)
        note = _event_note("greeted", after_hours=after_hours, incident_id=ctx.incident.incident_id)
        return StepResult(state, (), reply, note)
    state.step = "main_menu"
    reply = _main_menu_prompt(state, ctx, greet=True)
    return StepResult(state, (), reply, _event_note("greeted", after_hours=after_hours))


def _incident_offer_prompt(state: CallState, ctx: StepContext, *, greet: bool) -> Reply:
    incident = ctx.incident
    if incident is None:
        # Closed meanwhile: the main menu, as a caller who stayed on the line hears it.
        return _main_menu_prompt(state, ctx, greet=greet)
    lead = _greeting(ctx) if greet else []
    if incident.ticket_number is None:
        said = prompts.INCIDENT_ANNOUNCEMENT_UNNUMBERED.format(product=incident.product)
    else:
        said = prompts.INCIDENT_ANNOUNCEMENT.format(
            product=incident.product, number=ctx.say_digits(incident.ticket_number)
        )
    offer = prompts.INCIDENT_OFFER_SMS if ctx.call.sms_reachable else prompts.INCIDENT_OFFER_NO_SMS
    return _gather(state, [*lead, said, offer], timeout=3, hints=flow.INCIDENT_MENU.hints)


def _incident_offer(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    """1 or «да»: join the incident. Silence («оставайтесь на линии»): the main menu at
    once. Anything else is a main-menu answer (a caller who knows the menu need not wait)."""
    choice = flow.INCIDENT_MENU.match(event.digits, event.speech)
    incident = ctx.incident
    if choice == flow.REPEAT_KEY and incident is not None:
        return StepResult(state, (), _ask(state, Step.INCIDENT_OFFER, ctx), _event_note("repeat"))
    if isinstance(choice, flow.Choice) and incident is not None:
        state.pending_choice = None
        return _join_incident(state, ctx, incident)
    if state.pending_choice == flow.CRITICAL:
        # Offered on the critical path: anything but joining is what the caller chose.
        state.pending_choice = None
        return _critical_new(state, ctx)
    state.step = Step.MAIN_MENU
    state.retries = 0
    if event.silent or choice is not None:
        # Silence, or 1 for an incident closed meanwhile: the main menu, at once.
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("not_joined"))
    return _main_menu(state, event, ctx)


def _join_incident(state: CallState, ctx: StepContext, incident: IncidentNotice) -> StepResult:
    state.resolved = True
    state.duplicate_of = incident.ticket_number
    actions: tuple[Action, ...] = (
        Remember("category", Category.CRITICAL),
        Remember("topic", vocabulary.CRITICAL_TOPIC),
        JoinIncident(incident.incident_id),
    )
    if incident.ticket_number is None:
        joined = prompts.INCIDENT_JOINED_UNNUMBERED
    else:
        joined = prompts.INCIDENT_JOINED.format(number=ctx.say_digits(incident.ticket_number))
    sms = prompts.INCIDENT_JOINED_SMS if ctx.call.sms_reachable else prompts.INCIDENT_JOINED_NO_SMS
    state.step = "ended"
    state.turn += 1
    reply = (
        Say(joined),
        Say(sms),
        Say(prompts.GOODBYE),
        Hangup(),
    )
    note = _event_note("joined_incident", incident_id=incident.incident_id)
    return StepResult(state, actions, reply, note)


def _navigate(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult | None:
    """0 / «оператор» → a specialist, 9 / «главное меню» → the main menu; else None."""
    where = flow.navigation(event.digits, event.speech)
    if where == flow.SPECIALIST:
        actions: tuple[Action, ...] = ()
        if ctx.call.category is None:
            actions = (Remember("category", Category.CONSULTATION),)
        reply = _route(state, Route.CONSULTATION, (Say(prompts.CONNECTING),))
        return StepResult(state, actions, reply, _event_note("to_specialist", by="navigation"))
    if where == flow.MAIN:
        state.pending_choice = None
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("main_menu"))
    return None


def _to_specialist(state: CallState, ctx: StepContext) -> StepResult:
    actions: tuple[Action, ...] = ()
    if ctx.call.category is None:
        actions = (Remember("category", Category.CONSULTATION),)
    reply = _route(state, Route.CONSULTATION, (Say(prompts.TOO_MANY_TRIES),))
    return StepResult(state, actions, reply, _event_note("to_specialist"))


def _main_menu(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    choice = flow.MAIN_MENU.match(event.digits, event.speech)
    if choice == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("repeat"))
    if not isinstance(choice, flow.Choice) or choice.value is None:
        return _retry(state, event, ctx, _to_specialist)
    if choice.value in flow.CONFIRMED_BY_VOICE and not event.digits:
        # Recognised from speech: a misheard word must not wake the on-duty specialist.
        state.pending_choice = choice.value
        reply = _ask(state, Step.CONFIRM_URGENT, ctx)
        return StepResult(state, (), reply, _event_note("confirm", choice=choice.value))
    return _choose(state, choice.value, ctx)


def _confirm_urgent(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    answer = flow.CONFIRM_MENU.match(event.digits, event.speech)
    if answer == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, Step.CONFIRM_URGENT, ctx), _event_note("repeat"))
    if isinstance(answer, flow.Choice) and answer.value == flow.YES and state.pending_choice:
        choice, state.pending_choice = state.pending_choice, None
        return _choose(state, choice, ctx)
    if isinstance(answer, flow.Choice) and answer.value == flow.NO:
        state.pending_choice = None
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("not_confirmed"))
    return _retry(state, event, ctx, _to_specialist)


def _choose(state: CallState, value: str, ctx: StepContext) -> StepResult:
    choice_value = value
    path = flow.PATHS[choice_value]
    actions: list[Action] = [Remember("category", path.category)]
    if path.topic is not None:
        actions.append(Remember("topic", path.topic))
    if path.route == Route.CONSULTATION and not ctx.call.has_number:
        # A consultation nobody answers becomes a callback: ask a withheld caller where to.
        state.callback_then = Route.CONSULTATION
        reply = _ask(state, Step.CALLBACK_NUMBER, ctx)
    elif path.route is not None:
        reply = _route(state, path.route, (Say(prompts.CONNECTING),))
    elif choice_value == flow.STATUS and ctx.call.organisation_id is None:
        # Withheld or not in the directory: whose tickets they may hear about is unknown.
        reply = _ask(state, Step.STATUS_UNKNOWN_CALLER, ctx)
    else:
        reply = _ask(state, path.first_step or "main_menu", ctx)
    return StepResult(state, tuple(actions), reply, _event_note("chose", choice=choice_value))


# ------------------------------------------------------------------ new problem


def _topic(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    choice = flow.topic_menu().match(event.digits, event.speech)
    if choice == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, "topic", ctx), _event_note("repeat"))
    if not isinstance(choice, flow.Choice) or choice.value is None:

        def fallback(state: CallState, ctx: StepContext) -> StepResult:
            # No topic: the ticket pipeline files it under its "unchosen" topic.
            return StepResult(state, (), _ask(state, "product", ctx), _event_note("topic_unchosen"))

        return _retry(state, event, ctx, fallback)
    reply = _ask(state, "product", ctx)
    return StepResult(
        state, (Remember("topic", choice.value),), reply, _event_note("chose", topic=choice.value)
    )


def _product(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    choice = flow.product_menu().match(event.digits, event.speech)
    if choice == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, "product", ctx), _event_note("repeat"))
    if not isinstance(choice, flow.Choice):

        def unknown(state: CallState, ctx: StepContext) -> StepResult:
            return StepResult(
                state, (), _ask(state, "vehicles", ctx), _event_note("product_unknown")
            )

        return _retry(state, event, ctx, unknown)
    reply = _ask(state, "vehicles", ctx)
    return StepResult(
        state,
        (Remember("product", choice.value),),
        reply,
        _event_note("chose", product=choice.value),
    )


def _read_vehicles(event: IvrEvent) -> list[str] | None:
    """Plates from the answer; None when nothing usable was typed or said.

    Only digits typed on the keypad count ("*" or "0" alone are keys, not a plate), and
    only what reads as a plate when spoken: a failed recognition is never stored."""
    if event.digits:
        digits = "".join(ch for ch in event.digits if ch in "0123456789")
        return [digits] if digits.strip("0") else None
    if event.speech:
        return parse_plates(event.speech) or None
    return None


def _noted(plates: list[str]) -> tuple[Verb, ...]:
    if not plates:
        return (Say(prompts.VEHICLES_SKIPPED),)
    return (Say(prompts.VEHICLES_NOTED.format(plates="; ".join(map(spoken_plate, plates)))),)


def _after_vehicles(state: CallState, ctx: StepContext, preface: tuple[Verb, ...]) -> Reply:
    if ctx.call.known_caller:
        return _to_description(state, ctx, preface)
    return _ask(state, "caller_name", ctx, preface)


def _to_description(state: CallState, ctx: StepContext, preface: tuple[Verb, ...] = ()) -> Reply:
    """The description, after asking a withheld caller for a number to call back."""
    if not ctx.call.has_number and state.callback_then is None:
        state.callback_then = Step.DESCRIPTION
        return _ask(state, Step.CALLBACK_NUMBER, ctx, preface)
    return _ask(state, Step.DESCRIPTION, ctx, preface)


def _after_callback_number(
    state: CallState, ctx: StepContext, preface: tuple[Verb, ...], note: dict[str, Any]
) -> StepResult:
    if state.callback_then == Route.CONSULTATION:
        reply = _route(state, Route.CONSULTATION, (*preface, Say(prompts.CONNECTING)))
    else:
        reply = _ask(state, Step.DESCRIPTION, ctx, preface)
    return StepResult(state, (), reply, note)


def _callback_number(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    if event.digits == flow.REPEAT_KEY:
        reply = _ask(state, Step.CALLBACK_NUMBER, ctx)
        return StepResult(state, (), reply, _event_note("repeat"))
    if event.silent:
        # The prompt says "not needed: just wait".
        return _after_callback_number(state, ctx, (), _event_note("callback_skipped"))
    typed = event.digits or spoken_digits(event.speech or "")
    number = callback_number(typed)
    if number is None:

        def skip(state: CallState, ctx: StepContext) -> StepResult:
            return _after_callback_number(state, ctx, (), _event_note("callback_unparsed"))

        return _retry(state, event, ctx, skip, message=prompts.CALLBACK_NUMBER_INVALID)
    state.callback_number = number
    noted = (Say(prompts.CALLBACK_NUMBER_NOTED.format(digits=ctx.say_digits(typed))),)
    return _after_callback_number(state, ctx, noted, _event_note("callback_number"))


def _vehicles(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    if event.digits == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, "vehicles", ctx), _event_note("repeat"))
    if event.silent:
        # The prompt says "if no number is needed, just wait": silence is the answer.
        reply = _after_vehicles(state, ctx, _noted([]))
        return StepResult(
            state, (Remember("vehicles", []),), reply, _event_note("vehicles", plates=[])
        )
    plates = _read_vehicles(event)
    if plates is None:

        def without_plate(state: CallState, ctx: StepContext) -> StepResult:
            reply = _after_vehicles(state, ctx, _noted([]))
            return StepResult(state, (), reply, _event_note("unparsed"))

        return _retry(state, event, ctx, without_plate)
    reply = _after_vehicles(state, ctx, _noted(plates))
    return StepResult(
        state, (Remember("vehicles", plates),), reply, _event_note("vehicles", plates=plates)
    )


def _caller_name(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    if event.speech:
        reply = _to_description(state, ctx, (Say(prompts.CALLER_NAME_THANKS),))
        return StepResult(state, (Remember("caller_said_name", event.speech.strip()),), reply)

    def skip(state: CallState, ctx: StepContext) -> StepResult:
        return StepResult(state, (), _to_description(state, ctx), _event_note("name_skipped"))

    return _retry(state, event, ctx, skip)


def _open_and_wait(
    state: CallState, ctx: StepContext, actions: tuple[Action, ...], note: dict[str, Any]
) -> StepResult:
    if not _has_ticket(ctx):
        actions = (*actions, OpenTicket())
    state.resolved = True
    state.wait_started = ctx.now.isoformat()
    state.polls = 0
    state.step = "ticket_wait"
    state.retries = 0
    state.turn += 1
    reply = (Say(prompts.REGISTERING), Redirect(step_path(state)))
    return StepResult(state, actions, reply, note)


def _description(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    if event.recording is not None:
        keep = (KeepRecording(event.recording, "description"),)
        return _open_and_wait(
            state, ctx, keep, _event_note("recorded", hangup=event.digits == "hangup" or None)
        )

    def without(state: CallState, ctx: StepContext) -> StepResult:
        return _open_and_wait(state, ctx, (), _event_note("no_description"))

    if state.retries >= 1:
        return without(state, ctx)
    return _retry(state, event, ctx, without, message=prompts.DESCRIPTION_EMPTY)


def _announce(state: CallState, ctx: StepContext, ticket: RequestedTicket | None) -> list[str]:
    if ticket is None or ticket.number is None:
        return [prompts.NUMBER_BY_SMS if ctx.call.sms_reachable else prompts.NUMBER_LATER]
    said = [prompts.TICKET_NUMBER.format(number=ctx.say_digits(ticket.number))]
    if ticket.first_stage_due is not None:
        said.append(
            prompts.FIRST_STAGE_DEADLINE.format(deadline=ctx.say_deadline(ticket.first_stage_due))
        )
    if ticket.resolution_due is not None:
        said.append(
            prompts.RESOLUTION_DEADLINE.format(deadline=ctx.say_deadline(ticket.resolution_due))
        )
    else:
        said.append(prompts.RESOLUTION_BY_AGREEMENT)
    if ctx.call.sms_reachable:
        said.append(prompts.SMS_TOO)
    return said


def _ticket_wait(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    ticket = ctx.lookups.requested_ticket()
    started = datetime.fromisoformat(state.wait_started) if state.wait_started else ctx.now
    waited = (ctx.now - started).total_seconds()
    # Bounded by the clock and by the number of pauses, so dead air never exceeds the wait.
    budget_spent = (
        waited >= ctx.ticket_wait_seconds
        or (state.polls + 1) * POLL_PAUSE_SECONDS > ctx.ticket_wait_seconds
    )
    if ticket is not None and ticket.number is not None:
        state.announcement = _announce(state, ctx, ticket)
        reply = _ask(state, "ticket_done", ctx)
        return StepResult(state, (), reply, _event_note("ticket_number", number=ticket.number))
    if (ticket is not None and ticket.failed) or budget_spent:
        state.announcement = []
        message = _announce(state, ctx, None)
        reply = _ask(state, "ticket_done", ctx, tuple(Say(text) for text in message))
        return StepResult(state, (), reply, _event_note("ticket_pending", polls=state.polls))
    state.polls += 1
    state.turn += 1
    return StepResult(state, (), _prompt(state, ctx), _event_note("waiting", polls=state.polls))


def _ticket_done(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    key = flow.end_menu_key(event.digits, event.speech)
    if key == "9":
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("main_menu"))
    if key == flow.REPEAT_KEY and state.announcement:
        return StepResult(state, (), _ask(state, "ticket_done", ctx), _event_note("repeat"))
    if key == "0":
        return StepResult(state, (), _route(state, Route.CONSULTATION, (Say(prompts.CONNECTING),)))
    return StepResult(state, (), _goodbye(state), _event_note("goodbye"))


# ------------------------------------------------------------------ critical failure


def _number_from(event: IvrEvent) -> str | None:
    """A ticket number from keys or speech; None when there is none or it cannot be one."""
    if event.digits:
        number = "".join(ch for ch in event.digits if ch in "0123456789")
    elif event.speech:
        number = spoken_digits(event.speech)
    else:
        return None
    return number if 0 < len(number) <= MAX_TICKET_DIGITS else None


def _urgent(state: CallState, said: tuple[Verb, ...]) -> Reply:
    return _route(state, Route.URGENT, (*said, Say(prompts.CONNECTING_URGENT)))


def _critical_new(state: CallState, ctx: StepContext) -> StepResult:
    if ctx.incident is not None and state.incident_id is None:
        # An incident became known after this caller's greeting (a surge's first minutes):
        # offered once before anyone is woken; staying on the line goes on to the chain.
        state.incident_id = ctx.incident.incident_id
        state.pending_choice = flow.CRITICAL
        state.retries = 0
        reply = _ask(state, Step.INCIDENT_OFFER, ctx)
        return StepResult(state, (), reply, _event_note("incident_offered"))
    state.resolved = True
    actions: tuple[Action, ...] = () if _has_ticket(ctx) else (OpenTicket(),)
    return StepResult(state, actions, _urgent(state, ()), _event_note("new_ticket"))


def _critical(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    # Silence ("#" alone is silence to Twilio), 0, «нет», «заявки нет»: no ticket, at once.
    wants_person = flow.navigation(event.digits, event.speech) == flow.SPECIALIST
    if event.silent or wants_person or flow.says_no(event.speech):
        return _critical_new(state, ctx)
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    number = _number_from(event)
    if number is None:
        return _retry(state, event, ctx, _critical_new)
    lookup = ctx.lookups.ticket(number)
    if lookup.outcome == "not_found" and state.retries == 0:
        # A typing slip is likely: one more try, then a new ticket naming the number.
        message = prompts.CRITICAL_NOT_FOUND.format(number=ctx.say_digits(number))
        return _retry(state, event, ctx, _critical_new, message=message)
    mine = (
        lookup.view is not None
        and ctx.call.organisation_id is not None
        and lookup.view.organisation_id == ctx.call.organisation_id
    )
    if lookup.outcome != "unavailable" and not mine:
        # Only the caller's own organisation's ticket is duplicated; otherwise a new
        # critical ticket, with the number the caller typed in its description.
        state.resolved = True
        actions = () if _has_ticket(ctx) else (OpenTicket(typed_number=number),)
        note = _event_note("new_ticket", typed=number, found=lookup.view is not None)
        return StepResult(state, actions, _urgent(state, ()), note)
    # Theirs, or the portal is slow: the job checks the number when it records the duplicate.
    state.resolved = True
    state.duplicate_of = number
    state.related_ticket = number
    said = (Say(prompts.CRITICAL_DUPLICATED.format(number=ctx.say_digits(number))),)
    return StepResult(
        state,
        (MarkPhoneDuplicate(number),),
        _urgent(state, said),
        _event_note("duplicate", number=number, portal=lookup.outcome),
    )


# ------------------------------------------------------------------ stolen vehicle


def _stolen_vehicles(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    if flow.navigation(event.digits, event.speech) == flow.SPECIALIST:
        # A specialist: on this path, the on-duty one, at once.
        return _stolen_open(state, ctx, [])
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    if event.digits == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, "stolen_vehicles", ctx), _event_note("repeat"))
    plates = _read_vehicles(event)
    if plates is None:
        return _retry(state, event, ctx, lambda s, c: _stolen_open(s, c, []))
    return _stolen_open(state, ctx, plates)


def _stolen_open(state: CallState, ctx: StepContext, plates: list[str]) -> StepResult:
    state.resolved = True
    actions: list[Action] = [Remember("vehicles", plates)] if plates else []
    if not _has_ticket(ctx):
        actions.append(OpenTicket())
    reply = _urgent(state, (*_noted(plates), Say(prompts.STOLEN_NEW)))
    return StepResult(state, tuple(actions), reply, _event_note("vehicles", plates=plates))


# ------------------------------------------------------------------ ticket status


def _status_answer(state: CallState, ctx: StepContext, number: str) -> StepResult:
    state.asked_number = number
    lookup = ctx.lookups.ticket(number)
    if lookup.outcome == "unavailable":
        return StepResult(
            state, (), _ask(state, "status_unavailable", ctx), _event_note("unavailable")
        )
    view = lookup.view
    mine = (
        view is not None
        and ctx.call.organisation_id is not None
        and view.organisation_id == ctx.call.organisation_id
    )
    state.status_solved = False
    if view is None or not mine:
        # Not found and not theirs sound the same: a caller learns nothing about others.
        state.announcement = [prompts.STATUS_REFUSED]
        note = _event_note("refused", number=number, found=view is not None)
    else:
        said = [prompts.STATUS_ANSWER.format(number=ctx.say_digits(number), status=view.status)]
        overdue = False
        if view.status == SOLVED:
            state.status_solved = True
            said.append(prompts.STATUS_SOLVED)
        elif view.status == CLOSED:
            pass
        elif view.resolution_due is None:
            said.append(prompts.RESOLUTION_BY_AGREEMENT)
        else:
            deadline = ctx.say_deadline(view.resolution_due)
            overdue = view.resolution_due < ctx.now
            text = prompts.STATUS_OVERDUE if overdue else prompts.RESOLUTION_DEADLINE
            said.append(text.format(deadline=deadline))
        state.announcement = said
        state.related_ticket = number
        note = _event_note("status", number=number, status=view.status, overdue=overdue or None)
    return StepResult(state, (), _ask(state, "status_done", ctx), note)


def _status_number(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    navigated = _navigate(state, event, ctx)
    if navigated is not None:
        return navigated
    number = _number_from(event)
    if number is None:
        return _retry(state, event, ctx, _to_specialist)
    return _status_answer(state, ctx, number)


def _status_done(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    if state.status_solved:
        answer = flow.solved_menu_answer(event.digits, event.speech)
        if answer == flow.OBJECT and state.asked_number:
            return _object_to_solution(state, ctx, state.asked_number)
        if answer == flow.ANOTHER:
            return StepResult(state, (), _ask(state, "status_number", ctx), _event_note("another"))
        key = answer
    else:
        key = flow.end_menu_key(event.digits, event.speech)
    if key == "9":
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("main_menu"))
    if key == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, "status_done", ctx), _event_note("repeat"))
    if key == "1":
        return StepResult(state, (), _ask(state, "status_number", ctx), _event_note("another"))
    if key == "0":
        return StepResult(state, (), _route(state, Route.CONSULTATION, (Say(prompts.CONNECTING),)))
    return StepResult(state, (), _goodbye(state), _event_note("goodbye"))


def _object_to_solution(state: CallState, ctx: StepContext, number: str) -> StepResult:
    """The regulation's objection to a solution: recorded on the ticket after this step
    commits; the next step (a redirect) says whether the portal took it."""
    state.step = Step.STATUS_OBJECTION
    state.turn += 1
    reply = (Redirect(step_path(state)),)
    return StepResult(state, (RecordObjection(number),), reply, _event_note("objecting"))


def _status_objection(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    number = state.asked_number or ""
    if number and ctx.lookups.objection_recorded(number):
        state.status_solved = False
        state.announcement = [prompts.STATUS_OBJECTION_RECORDED]
        reply = _ask(state, "status_done", ctx)
        return StepResult(state, (), reply, _event_note("objection", number=number))
    said = (Say(prompts.STATUS_OBJECTION_FAILED), Say(prompts.CONNECTING))
    reply = _route(state, Route.CONSULTATION, said)
    return StepResult(state, (), reply, _event_note("objection_failed", number=number))


def _status_unknown_caller(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    if flow.navigation(event.digits, event.speech) == flow.MAIN:
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("main_menu"))
    # Silence, 0, 1, anything: the specialist tells the status.
    reply = _route(state, Route.CONSULTATION, (Say(prompts.CONNECTING),))
    return StepResult(state, (), reply, _event_note("to_specialist", by="unknown_caller"))


def _status_unavailable(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    if flow.end_menu_key(event.digits, event.speech) == "1" and state.asked_number:
        return _status_answer(state, ctx, state.asked_number)
    # "0", silence or anything else: a person answers; the caller is never left alone.
    return StepResult(state, (), _route(state, Route.CONSULTATION, (Say(prompts.CONNECTING),)))


# ------------------------------------------------------------------ repeat callers


def repeat_caller_offer(
    state: CallState, ctx: StepContext, *, after_hours: bool = False
) -> StepResult | None:
    """The first `<Gather>` for a caller with open tickets: the greeting, then each of the
    latest three by number and status, each with its key. None when the caller has none
    (or cannot be identified, or the portal is slow): the main menu is played instead.

    A known-incident announcement, when one is played, goes first and this is not offered.
    """
    tickets = ctx.lookups.open_tickets()[: flow.REPEAT_OFFER_MAX]
    if not tickets:
        return None
    if len(tickets) == 1:
        ticket = tickets[0]
        said = [
            prompts.REPEAT_ONE.format(
                number=ctx.say_digits(ticket.number), status=ticket.status.lower()
            )
        ]
    else:
        said = [prompts.REPEAT_SEVERAL]
        said += [
            prompts.REPEAT_EACH.format(
                number=ctx.say_digits(ticket.number), status=ticket.status.lower(), key=key
            )
            for key, ticket in enumerate(tickets, start=1)
        ]
    said.append(prompts.REPEAT_OTHERWISE)
    state.offered = [ticket.number for ticket in tickets]
    state.announcement = said
    state.step = Step.REPEAT_OFFER
    state.retries = 0
    state.turn += 1
    reply = _repeat_offer_prompt(state, ctx, greet=True)
    note = _event_note("repeat_offer", tickets=list(state.offered), after_hours=after_hours)
    return StepResult(state, (), reply, note)


def _repeat_offer_prompt(state: CallState, ctx: StepContext, *, greet: bool = False) -> Reply:
    lead = _greeting(ctx) if greet else []
    return _gather(state, [*lead, *state.announcement], hints=flow.REPEAT_OFFER_HINTS)


def _repeat_offer(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    picked = flow.repeat_offer_key(event.digits, event.speech, len(state.offered))
    if picked is None:
        navigated = _navigate(state, event, ctx)
        if navigated is not None:
            return navigated
        if isinstance(flow.MAIN_MENU.match(event.digits, event.speech), flow.Choice):
            # A main-menu choice a returning caller knows by heart ("2", «угон»): it acts.
            state.step = Step.MAIN_MENU
            return _main_menu(state, event, ctx)
        # Silence or another answer: the caller called about something else; the main
        # menu at once.
        result = "silence" if event.silent else "other"
        return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note(result))
    number = state.offered[picked]
    state.addition_to = number
    state.related_ticket = number
    reply = _ask(state, Step.ADDITION, ctx)
    return StepResult(
        state,
        (Remember("category", Category.ADDITION),),
        reply,
        _event_note("add_to", number=number),
    )


def _addition(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    number = state.addition_to
    if number is None:  # pragma: no cover - the step is only reached with a ticket
        return _to_specialist(state, ctx)
    if event.recording is None:

        def without(state: CallState, ctx: StepContext) -> StepResult:
            return StepResult(state, (), _ask(state, "main_menu", ctx), _event_note("no_addition"))

        if state.retries >= 1:
            return without(state, ctx)
        return _retry(state, event, ctx, without, message=prompts.ADDITION_EMPTY)
    lookup = ctx.lookups.ticket(number)
    said = [prompts.ADDITION_TAKEN.format(number=ctx.say_digits(number))]
    view = lookup.view
    if view is not None:
        said.append(prompts.ADDITION_STATUS.format(status=view.status.lower()))
        if view.resolution_due is not None:
            said.append(
                prompts.ADDITION_DEADLINE.format(moment=ctx.say_moment(view.resolution_due))
            )
        else:
            said.append(prompts.RESOLUTION_BY_AGREEMENT)
    state.announcement = said
    state.resolved = True
    actions: tuple[Action, ...] = (
        KeepRecording(event.recording, "addition"),
        AddToTicket(number, topic=view.topic if view is not None else None),
    )
    reply = _ask(state, Step.ADDITION_DONE, ctx)
    note = _event_note(
        "addition",
        number=number,
        status=view.status if view is not None else None,
        portal=lookup.outcome,
        hangup=event.digits == "hangup" or None,
    )
    return StepResult(state, actions, reply, note)


def _addition_done(state: CallState, event: IvrEvent, ctx: StepContext) -> StepResult:
    # No way back to the main menu from here: the call's one ticket request is the addition
    # (a new problem is a new call).
    key = flow.end_menu_key(event.digits, event.speech)
    if key == flow.REPEAT_KEY:
        return StepResult(state, (), _ask(state, Step.ADDITION_DONE, ctx), _event_note("repeat"))
    if key == "0":
        return StepResult(state, (), _route(state, Route.CONSULTATION, (Say(prompts.CONNECTING),)))
    return StepResult(state, (), _goodbye(state), _event_note("goodbye"))


_HANDLERS: dict[str, Callable[[CallState, IvrEvent, StepContext], StepResult]] = {
    Step.INCIDENT_OFFER: _incident_offer,
    Step.MAIN_MENU: _main_menu,
    Step.CONFIRM_URGENT: _confirm_urgent,
    Step.TOPIC: _topic,
    Step.PRODUCT: _product,
    Step.VEHICLES: _vehicles,
    Step.CALLER_NAME: _caller_name,
    Step.DESCRIPTION: _description,
    Step.TICKET_WAIT: _ticket_wait,
    Step.TICKET_DONE: _ticket_done,
    Step.CRITICAL: _critical,
    Step.STOLEN_VEHICLES: _stolen_vehicles,
    Step.STATUS_NUMBER: _status_number,
    Step.STATUS_DONE: _status_done,
    Step.STATUS_UNAVAILABLE: _status_unavailable,
    Step.STATUS_UNKNOWN_CALLER: _status_unknown_caller,
    Step.STATUS_OBJECTION: _status_objection,
    Step.CALLBACK_NUMBER: _callback_number,
    Step.REPEAT_OFFER: _repeat_offer,
    Step.ADDITION: _addition,
    Step.ADDITION_DONE: _addition_done,
}

STEPS = frozenset({Step.START, *_HANDLERS, Step.ROUTED, Step.ENDED})
