"""The step engine on its own: state, event and context in; state, actions and reply out.
No Flask, no database: the context carries the real calendar and speech functions and a
small in-memory ticket lookup."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from callcenter.ivr import prompts
from callcenter.ivr.engine import (
    AddToTicket,
    CallFacts,
    CallState,
    IvrEvent,
    KeepRecording,
    MarkPhoneDuplicate,
    OpenTicket,
    RecordingRef,
    RecordObjection,
    Remember,
    RequestedTicket,
    StepContext,
    TicketLookup,
    advance,
)
from callcenter.ivr.reply import Gather, Hangup, Pause, Record, Redirect, Say
from callcenter.portal.protocol import TicketView
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.regulation.speech import say_deadline, say_digits

NOW = datetime.fromisoformat("2025-11-27T11:00:00+03:00")
DUE = datetime.fromisoformat("2025-12-01T18:00:00+03:00")


class Tickets:
    """The engine's ticket lookups over a dict (the portal's answer) and a request."""

    def __init__(
        self,
        portal: dict[str, TicketView] | None = None,
        requested: RequestedTicket | None = None,
        unavailable: bool = False,
    ) -> None:
        self.portal = portal or {}
        self.requested = requested
        self.unavailable = unavailable
        self.asked: list[str] = []
        self.objections: list[str] = []
        # The caller's open tickets, newest first (a repeat caller).
        self.open: tuple[TicketView, ...] = ()

    def ticket(self, number: str) -> TicketLookup:
        self.asked.append(number)
        if self.unavailable:
            return TicketLookup("unavailable")
        view = self.portal.get(number)
        return TicketLookup("found", view) if view else TicketLookup("not_found")

    def requested_ticket(self) -> RequestedTicket | None:
        return self.requested

    def objection_recorded(self, number: str) -> bool:
        return not self.unavailable and number in self.objections

    def open_tickets(self) -> tuple[TicketView, ...]:
        return self.open


def view(
    number: str, organisation_id: int | None, status: str = "В работе", due: datetime = DUE
) -> TicketView:
    return TicketView(
        number=number,
        topic="system_reports",
        status=status,
        priority="normal",
        organisation_id=organisation_id,
        organisation_name=None,
        first_stage_due=due,
        resolution_due=due,
        created_at=NOW,
    )


def context(tickets: Tickets | None = None, now: datetime = NOW, **facts: object) -> StepContext:
    return StepContext(
        now=now,
        calendar=BusinessCalendar.shipped(),
        support_name="техподдержка Скай",
        ticket_wait_seconds=8,
        call=CallFacts(**facts),  # type: ignore[arg-type]
        lookups=tickets or Tickets(),
        say_digits=say_digits,
        say_deadline=lambda due: say_deadline(due, now),
    )


def at(step: str, turn: int = 1, **changes: object) -> CallState:
    return replace(CallState(step=step, turn=turn), **changes)  # type: ignore[arg-type]


def press(state: CallState, digits: str | None) -> IvrEvent:
    return IvrEvent("step", step=state.step, turn=state.turn, digits=digits)


def speak(state: CallState, text: str) -> IvrEvent:
    return IvrEvent("step", step=state.step, turn=state.turn, speech=text, confidence=0.8)


def silence(state: CallState) -> IvrEvent:
    return IvrEvent("step", step=state.step, turn=state.turn)


def gather_of(reply: tuple[object, ...]) -> Gather:
    [gather] = [verb for verb in reply if isinstance(verb, Gather)]
    return gather


def test_the_start_greets_and_asks_the_main_menu() -> None:
    result = advance(CallState(), IvrEvent("start"), context())

    assert result.state.step == "main_menu" and result.state.turn == 1
    gather = gather_of(result.reply)
    # The greeting is inside the <Gather>: a key pressed during it already acts.
    assert result.reply[0] is gather
    assert gather.prompt[0] == Say(prompts.GREETING.format(support_name="техподдержка Скай"))
    assert (gather.action, gather.num_digits, gather.speech) == (
        "/webhooks/voice/step/main_menu?t=1",
        1,
        True,
    )
    assert result.reply[-1] == Redirect("/webhooks/voice/step/main_menu?t=1")
    assert result.actions == ()


def test_on_a_holiday_the_greeting_adds_the_working_hours() -> None:
    holiday = datetime.fromisoformat("2026-01-05T12:00:00+03:00")
    result = advance(CallState(), IvrEvent("start"), context(now=holiday))
    # 5 January 2026 is a holiday: work resumes on Monday the 12th.
    resumes = "в понедельник, двенадцатого января, в девять тридцать по московскому времени"
    said = Say(prompts.AFTER_HOURS.format(resumes=resumes))
    assert said in gather_of(result.reply).prompt
    assert result.note["after_hours"] is True


@pytest.mark.parametrize(
    ("answer", "category", "next_step"),
    [
        (("2", None), "incident", "topic"),
        (("3", None), "critical", "critical"),
        (("4", None), "stolen", "stolen_vehicles"),
        (("5", None), "status", "status_number"),
        ((None, "хочу узнать статус заявки"), "status", "status_number"),
        ((None, "два"), "incident", "topic"),
    ],
)
def test_main_menu_paths(
    answer: tuple[str | None, str | None], category: str, next_step: str
) -> None:
    state = at("main_menu")
    digits, speech = answer
    event = IvrEvent("step", step="main_menu", turn=1, digits=digits, speech=speech)
    result = advance(state, event, context(organisation_id=7))

    assert result.state.step == next_step and result.state.turn == 2
    assert Remember("category", category) in result.actions
    assert gather_of(result.reply).action == f"/webhooks/voice/step/{next_step}?t=2"


def test_a_request_for_another_step_or_turn_only_repeats_the_current_step() -> None:
    state = at("topic", turn=4)
    for event in (
        IvrEvent("step", step="main_menu", turn=1, digits="3"),
        IvrEvent("step", step="topic", turn=3, digits="2"),
        IvrEvent("step", step="no_such_step", turn=4, digits="2"),
    ):
        result = advance(state, event, context())
        assert result.state == state
        assert result.actions == ()
        assert gather_of(result.reply).action == "/webhooks/voice/step/topic?t=4"
        assert result.note == {"result": "stale", "current": "topic"}


def test_optional_answers_are_skipped_after_two_retries() -> None:
    state = at("product", turn=3)
    for expected_turn in (4, 5):
        result = advance(state, silence(state), context())
        assert result.reply[0] == Say(prompts.NOT_HEARD)
        state = result.state
        assert state.turn == expected_turn
    result = advance(state, silence(state), context())
    assert result.state.step == "vehicles"
    assert result.actions == ()
    assert result.note == {"result": "product_unknown", "exhausted": "silence"}


def test_a_topic_never_chosen_is_left_to_the_ticket_pipeline() -> None:
    state = at("topic", turn=2, retries=2)
    result = advance(state, press(state, "8"), context())
    assert result.state.step == "product"
    assert not any(isinstance(a, Remember) and a.field == "topic" for a in result.actions)


@pytest.mark.parametrize(
    ("said", "product"),
    [
        ("сильвер студио", "silver_studio"),
        ("студио", "studio"),
        ("онлайн", "online"),
        ("не знаю", None),
    ],
)
def test_products_by_voice(said: str, product: str | None) -> None:
    state = at("product", turn=3)
    result = advance(state, speak(state, said), context())
    assert result.actions == (Remember("product", product),)


def test_the_description_recording_opens_the_ticket_and_starts_waiting() -> None:
    state = at("description", turn=6)
    recording = RecordingRef("RE" + "a" * 32, "https://api.twilio.com/x/Recordings/RE1", 42)
    event = IvrEvent("step", step="description", turn=6, digits="hangup", recording=recording)
    result = advance(state, event, context(known_caller=True))

    assert result.actions == (KeepRecording(recording, "description"), OpenTicket())
    assert result.reply == (
        Say(prompts.REGISTERING),
        Redirect("/webhooks/voice/step/ticket_wait?t=7"),
    )
    assert (result.state.resolved, result.state.wait_started) == (True, NOW.isoformat())
    assert result.note["hangup"] is True


def test_an_already_opened_ticket_is_not_opened_twice() -> None:
    state = at("description", turn=6)
    recording = RecordingRef("RE" + "a" * 32, "https://example.test/r", None)
    event = IvrEvent("step", step="description", turn=6, digits="#", recording=recording)
    result = advance(state, event, context(Tickets(requested=RequestedTicket(None))))
    assert result.actions == (KeepRecording(recording, "description"),)


def test_the_wait_announces_the_number_and_deadlines_once_it_exists() -> None:
    tickets = Tickets(requested=RequestedTicket("1042", first_stage_due=DUE, resolution_due=None))
    state = at("ticket_wait", turn=7, wait_started=NOW.isoformat(), resolved=True)
    result = advance(state, silence(state), context(tickets, sms_reachable=False))

    gather = gather_of(result.reply)
    assert [say.text for say in gather.prompt if isinstance(say, Say)] == [
        prompts.TICKET_NUMBER.format(number="один ноль четыре два"),
        "Специалист ответит вам до восемнадцати часов по московскому времени, "
        "в понедельник, первого декабря.",
        prompts.RESOLUTION_BY_AGREEMENT,
        prompts.TICKET_DONE_MENU,
    ]
    # End menus understand speech as the main menu does.
    assert (gather.speech, gather.num_digits) == (True, 1)


def test_the_wait_is_bounded_by_the_pauses_even_when_the_clock_stands_still() -> None:
    state = at("ticket_wait", turn=7, wait_started=NOW.isoformat(), resolved=True)
    ctx = context(Tickets(requested=RequestedTicket(None)), sms_reachable=True)
    paused = 0
    result = advance(state, silence(state), ctx)
    while Pause(2) in result.reply:
        paused += 2
        state = result.state
        result = advance(state, silence(state), ctx)
    assert paused == 8
    assert result.reply[0] == Say(prompts.NUMBER_BY_SMS)


def test_a_failed_ticket_request_stops_the_wait_at_once() -> None:
    state = at("ticket_wait", turn=7, wait_started=NOW.isoformat(), resolved=True)
    ctx = context(Tickets(requested=RequestedTicket(None, failed=True)), sms_reachable=False)
    result = advance(state, silence(state), ctx)
    assert result.reply[0] == Say(prompts.NUMBER_LATER)


def test_the_critical_path_with_a_known_ticket_duplicates_it_and_goes_urgent() -> None:
    tickets = Tickets(portal={"1042": view("1042", 7)})
    state = at("critical", turn=2)
    result = advance(state, press(state, "1042"), context(tickets, organisation_id=7))

    assert result.actions == (MarkPhoneDuplicate("1042"),)
    assert result.reply[-1] == Redirect("/webhooks/voice/route/urgent")
    assert (result.state.step, result.state.route, result.state.resolved) == (
        "routed",
        "urgent",
        True,
    )


def test_the_critical_path_accepts_a_number_when_the_portal_is_slow() -> None:
    state = at("critical", turn=2)
    result = advance(state, press(state, "1042"), context(Tickets(unavailable=True)))
    assert result.actions == (MarkPhoneDuplicate("1042"),)
    assert result.note["portal"] == "unavailable"


def test_a_number_too_long_for_a_ticket_is_asked_again_without_a_lookup() -> None:
    tickets = Tickets()
    state = at("critical", turn=2)
    result = advance(state, press(state, "1" * 13), context(tickets))
    assert (result.reply[0], result.actions, tickets.asked) == (Say(prompts.NOT_UNDERSTOOD), (), [])


def test_the_critical_path_opens_a_ticket_when_the_caller_never_answers() -> None:
    state = at("critical", turn=4, retries=2)
    result = advance(state, silence(state), context())
    assert result.actions == (OpenTicket(),)
    assert result.reply[-1] == Redirect("/webhooks/voice/route/urgent")


def test_status_is_only_told_to_the_tickets_organisation() -> None:
    tickets = Tickets(portal={"1042": view("1042", 7)})
    state = at("status_number", turn=2)
    mine = advance(state, press(state, "1042"), context(tickets, organisation_id=7))
    theirs = advance(state, press(state, "1042"), context(tickets, organisation_id=8))
    nobody = advance(state, press(state, "1042"), context(tickets, organisation_id=None))

    assert gather_of(mine.reply).prompt[0] == Say("Заявка один ноль четыре два. Статус: В работе.")
    for refused in (theirs, nobody):
        assert gather_of(refused.reply).prompt[0] == Say(prompts.STATUS_REFUSED)


def test_an_overdue_ticket_is_said_to_be_overdue() -> None:
    late = datetime.fromisoformat("2025-11-26T18:00:00+03:00")
    tickets = Tickets(portal={"1042": view("1042", 7, due=late)})
    state = at("status_number", turn=2)
    result = advance(state, press(state, "1042"), context(tickets, organisation_id=7))

    assert gather_of(result.reply).prompt[1] == Say(
        "Заявка просрочена: срок решения был до восемнадцати часов по московскому времени, "
        "в среду, двадцать шестого ноября."
    )
    assert result.note["overdue"] is True


def test_a_solved_ticket_closes_in_two_working_days_and_1_objects() -> None:
    """The regulation (section IV): a solved ticket closes automatically after two working
    days; its author may object, which sends it back into work — recorded on the ticket."""
    tickets = Tickets(portal={"1042": view("1042", 7, status="Решена")})
    state = at("status_number", turn=2)
    said = advance(state, press(state, "1042"), context(tickets, organisation_id=7))

    gather = gather_of(said.reply)
    assert gather.prompt == (
        Say("Заявка один ноль четыре два. Статус: Решена."),
        Say(prompts.STATUS_SOLVED),
        Say(prompts.STATUS_SOLVED_MENU),
    )
    assert "не согласен" in gather.hints
    objecting = advance(said.state, press(said.state, "1"), context(tickets, organisation_id=7))
    # Recorded after the step commits; the redirect back asks the portal whether it was.
    assert objecting.actions == (RecordObjection("1042"),)
    assert objecting.reply == (Redirect("/webhooks/voice/step/status_objection?t=4"),)
    tickets.objections.append("1042")
    recorded = advance(
        objecting.state, silence(objecting.state), context(tickets, organisation_id=7)
    )
    assert gather_of(recorded.reply).prompt == (
        Say(prompts.STATUS_OBJECTION_RECORDED),
        Say(prompts.STATUS_DONE_MENU),
    )
    # By voice too; when the portal did not take it, a specialist, not a false "recorded".
    by_voice = advance(
        said.state,
        speak(said.state, "я не согласен с решением"),
        context(tickets, organisation_id=7),
    )
    assert by_voice.actions == (RecordObjection("1042"),)
    tickets.unavailable = True
    failed = advance(by_voice.state, silence(by_voice.state), context(tickets, organisation_id=7))
    assert failed.reply[0] == Say(prompts.STATUS_OBJECTION_FAILED)
    assert failed.reply[-1] == Redirect("/webhooks/voice/route/consultation")
    another = advance(said.state, press(said.state, "2"), context(tickets, organisation_id=7))
    assert another.state.step == "status_number"


@pytest.mark.parametrize("facts", [{}, {"known_caller": True}])
def test_a_caller_not_tied_to_an_organisation_is_offered_a_specialist_for_a_status(
    facts: dict[str, object],
) -> None:
    """Withheld or not in the directory (or a contact without an organisation): never told
    a ticket is another organisation's; a specialist tells the status (9: main menu)."""
    state = at("main_menu")
    asked = advance(state, press(state, "5"), context(**facts))

    assert asked.state.step == "status_unknown_caller"
    assert Remember("category", "status") in asked.actions
    assert gather_of(asked.reply).prompt == (Say(prompts.STATUS_UNKNOWN_CALLER),)
    connected = advance(asked.state, silence(asked.state), context(**facts))
    assert connected.reply[-1] == Redirect("/webhooks/voice/route/consultation")
    back = advance(asked.state, speak(asked.state, "главное меню"), context(**facts))
    assert back.state.step == "main_menu"


def test_status_unavailable_then_try_again() -> None:
    tickets = Tickets(unavailable=True)
    state = at("status_number", turn=2)
    result = advance(state, press(state, "1042"), context(tickets))
    assert result.state.step == "status_unavailable"
    tickets.unavailable = False
    tickets.portal["1042"] = view("1042", 7)
    again = advance(result.state, press(result.state, "1"), context(tickets, organisation_id=7))
    assert again.state.step == "status_done"
    assert tickets.asked == ["1042", "1042"]


def test_after_the_ticket_silence_says_goodbye_and_hangs_up() -> None:
    state = at("ticket_done", turn=9, announcement=["x"], resolved=True)
    result = advance(state, silence(state), context())
    assert result.reply == (Say(prompts.GOODBYE), Hangup())
    assert result.state.step == "ended"


def test_the_description_prompt_records_up_to_three_minutes() -> None:
    state = at("caller_name", turn=5)
    result = advance(state, speak(state, "Иван, ООО Вектор"), context())
    [record] = [verb for verb in result.reply if isinstance(verb, Record)]
    assert record == Record(
        action="/webhooks/voice/step/description?t=6",
        max_length=180,
        finish_on_key="#",
        timeout=10,
        status_callback="/webhooks/voice/recording-status?kind=description",
    )
    assert result.actions == (Remember("caller_said_name", "Иван, ООО Вектор"),)


def test_state_survives_json() -> None:
    state = at("status_done", turn=3, announcement=["a", "b"], asked_number="1042")
    assert CallState.from_json(state.to_json()) == state
    assert CallState.from_json({"step": "topic", "unknown_key": 1}) == CallState(step="topic")


# ---------------------------------------------------------------- issue 12: acting at once


def test_a_critical_choice_said_aloud_is_confirmed_keys_are_not() -> None:
    state = at("main_menu")
    said = advance(state, speak(state, "критический сбой сервера"), context())
    assert said.state.step == "confirm_urgent" and said.actions == ()
    assert gather_of(said.reply).prompt == (Say(prompts.CONFIRM_CRITICAL),)

    confirmed = advance(said.state, press(said.state, "1"), context())
    assert confirmed.state.step == "critical"
    assert Remember("category", "critical") in confirmed.actions

    denied = advance(said.state, speak(said.state, "нет"), context())
    assert denied.state.step == "main_menu" and denied.actions == ()


def test_a_question_about_the_server_is_a_consultation_not_an_alarm() -> None:
    state = at("main_menu")
    result = advance(state, speak(state, "вопрос по серверу"), context())
    assert result.state.route == "consultation"
    assert Remember("category", "consultation") in result.actions


@pytest.mark.parametrize("answer", [None, "нет", "заявки нет", "нету", "оператор", "0"])
def test_no_ticket_on_the_critical_path_goes_urgent_at_once(answer: str | None) -> None:
    """Silence — and "#" alone, which Twilio delivers as nothing
    (https://www.twilio.com/docs/voice/twiml/gather) — or a spoken no: no re-prompt."""
    state = at("critical", turn=2)
    event = press(state, answer) if answer in (None, "0") else speak(state, answer or "")
    result = advance(state, event, context())
    assert result.actions == (OpenTicket(),)
    assert result.reply == (
        Say(prompts.CONNECTING_URGENT),
        Redirect("/webhooks/voice/route/urgent"),
    )


def test_the_plate_step_skips_on_silence_and_never_stores_keys_or_failures() -> None:
    state = at("vehicles", turn=5)
    skipped = advance(state, silence(state), context())
    assert skipped.actions == (Remember("vehicles", []),)
    assert skipped.reply[0] == Say(prompts.VEHICLES_SKIPPED)

    repeat = advance(state, press(state, "*"), context())
    assert repeat.state.step == "vehicles" and repeat.actions == ()

    misheard = advance(state, speak(state, "н е з н а ю"), context())
    assert misheard.reply[0] == Say(prompts.NOT_UNDERSTOOD) and misheard.actions == ()
    state = misheard.state
    for _ in range(2):
        state = advance(state, speak(state, "н е з н а ю"), context()).state
    assert state.step == "caller_name"


@pytest.mark.parametrize("step", ["topic", "product", "vehicles", "caller_name", "status_number"])
def test_zero_reaches_a_specialist_and_nine_the_main_menu_everywhere(step: str) -> None:
    state = at(step, turn=3)
    for event in (press(state, "0"), speak(state, "соедините с оператором")):
        result = advance(replace(state), event, context(category="incident"))
        assert (result.state.step, result.state.route) == ("routed", "consultation")
        assert result.reply[0] == Say(prompts.CONNECTING)
    for event in (press(state, "9"), speak(state, "главное меню")):
        result = advance(replace(state), event, context())
        assert result.state.step == "main_menu"
        assert gather_of(result.reply).prompt == (Say(prompts.MAIN_MENU),)
    assert (
        Say(prompts.NAVIGATION)
        in gather_of(advance(state, IvrEvent("start"), context()).reply).prompt
    )


@pytest.mark.parametrize(("caller_organisation", "retries"), [(8, 0), (None, 0), (7, 1)])
def test_a_ticket_number_that_is_not_the_callers_opens_a_new_critical_ticket(
    caller_organisation: int | None, retries: int
) -> None:
    """Another organisation's ticket, an unknown caller, or a number still not found on the
    second try: a new critical ticket naming the typed number; nothing is duplicated."""
    tickets = Tickets(portal={"1042": view("1042", 7)})
    state = at("critical", turn=2, retries=retries)
    number = "1042" if retries == 0 else "5555"
    result = advance(
        state, press(state, number), context(tickets, organisation_id=caller_organisation)
    )
    assert result.actions == (OpenTicket(typed_number=number),)
    assert result.reply == (
        Say(prompts.CONNECTING_URGENT),
        Redirect("/webhooks/voice/route/urgent"),
    )


@pytest.mark.parametrize(
    ("said", "step", "route"),
    [
        ("соедините со специалистом", "routed", "consultation"),
        ("повторите", "ticket_done", None),
        ("главное меню", "main_menu", None),
        ("нет, спасибо", "ended", None),
    ],
)
def test_the_end_menu_understands_speech(said: str, step: str, route: str | None) -> None:
    state = at("ticket_done", turn=9, resolved=True, announcement=["Номер заявки: один."])
    result = advance(state, speak(state, said), context())
    assert (result.state.step, result.state.route) == (step, route)


def test_the_status_end_menu_takes_another_ticket_by_voice() -> None:
    state = at("status_done", turn=3, announcement=["Заявка один."])
    result = advance(state, speak(state, "другую заявку"), context())
    assert result.state.step == "status_number"


# ------------------------------------------------------------------ repeat callers


def repeat_caller(*numbers: str, status: str = "В работе") -> Tickets:
    tickets = Tickets(portal={n: replace(view(n, 3), status=status) for n in numbers})
    tickets.open = tuple(tickets.portal[n] for n in numbers)
    return tickets


def test_a_caller_with_an_open_ticket_is_offered_to_add_to_it_in_the_first_gather() -> None:
    result = advance(CallState(), IvrEvent("start"), context(repeat_caller("1042")))

    assert result.state.step == "repeat_offer" and result.state.offered == ["1042"]
    gather = gather_of(result.reply)
    assert result.reply[0] is gather
    assert [say.text for say in gather.prompt] == [  # type: ignore[attr-defined]
        prompts.GREETING.format(support_name="техподдержка Скай"),
        "У вас открыта заявка номер один ноль четыре два, статус — в работе. "
        "Чтобы дополнить её, нажмите 1.",
        "По другим вопросам оставайтесь на линии.",
    ]
    assert (gather.action, gather.num_digits) == ("/webhooks/voice/step/repeat_offer?t=1", 1)
    assert result.note == {"result": "repeat_offer", "tickets": ["1042"], "after_hours": False}


def test_without_open_tickets_the_main_menu_is_the_first_gather() -> None:
    result = advance(CallState(), IvrEvent("start"), context(Tickets()))
    assert result.state.step == "main_menu"


def test_several_open_tickets_are_offered_by_number_each_with_its_key() -> None:
    tickets = repeat_caller("1044", "1043", "1042")
    result = advance(CallState(), IvrEvent("start"), context(tickets))
    texts = [say.text for say in gather_of(result.reply).prompt]  # type: ignore[attr-defined]
    assert texts[1:] == [
        "У вас открыты заявки.",
        "Заявка номер один ноль четыре четыре, статус — в работе: чтобы дополнить её, нажмите 1.",
        "Заявка номер один ноль четыре три, статус — в работе: чтобы дополнить её, нажмите 2.",
        "Заявка номер один ноль четыре два, статус — в работе: чтобы дополнить её, нажмите 3.",
        "По другим вопросам оставайтесь на линии.",
    ]
    state = result.state
    picked = advance(state, press(state, "2"), context(tickets))
    assert picked.state.addition_to == "1043" and picked.state.step == "addition"
    assert picked.actions == (Remember("category", "addition"),)


def test_silence_or_another_key_after_the_offer_goes_to_the_main_menu_at_once() -> None:
    tickets = repeat_caller("1042")
    offered = advance(CallState(), IvrEvent("start"), context(tickets)).state
    quiet = advance(offered, silence(offered), context(tickets))
    assert quiet.state.step == "main_menu" and quiet.state.retries == 0
    assert quiet.actions == ()
    assert [say.text for say in gather_of(quiet.reply).prompt] == [  # type: ignore[attr-defined]
        prompts.MAIN_MENU
    ]
    offered = advance(CallState(), IvrEvent("start"), context(tickets)).state
    other = advance(offered, press(offered, "7"), context(tickets))
    assert other.state.step == "main_menu" and other.state.addition_to is None
    assert other.note == {"result": "other"}
    # A main-menu key a returning caller knows acts at once.
    offered = advance(CallState(), IvrEvent("start"), context(tickets)).state
    problem = advance(offered, press(offered, "2"), context(tickets))
    assert problem.state.step == "topic" and problem.state.addition_to is None
    assert problem.actions == (Remember("category", "incident"),)
    offered = advance(CallState(), IvrEvent("start"), context(tickets)).state
    person = advance(offered, press(offered, "0"), context(tickets))
    assert person.state.step == "routed"


def test_pressing_1_records_an_addition_then_says_status_and_deadline() -> None:
    tickets = repeat_caller("1042")
    offered = advance(CallState(), IvrEvent("start"), context(tickets)).state
    yes = advance(offered, speak(offered, "да"), context(tickets))
    state = yes.state
    assert state.step == "addition" and state.related_ticket == "1042"
    assert yes.reply[0] == Say(
        "После сигнала коротко расскажите, что добавить к заявке номер один ноль четыре два. "
        "Когда закончите, нажмите решётку."
    )
    [record] = [verb for verb in yes.reply if isinstance(verb, Record)]
    assert record.action == "/webhooks/voice/step/addition?t=2"
    assert record.status_callback == "/webhooks/voice/recording-status?kind=addition"

    recording = RecordingRef("RE42", "https://api.twilio.com/rec/RE42", 12)
    event = IvrEvent("step", step="addition", turn=state.turn, recording=recording)
    done = advance(state, event, context(tickets))

    assert done.actions == (
        KeepRecording(recording, "addition"),
        AddToTicket("1042", topic="system_reports"),
    )
    assert not any(isinstance(a, OpenTicket) for a in done.actions)
    assert done.state.step == "addition_done"
    texts = [say.text for say in gather_of(done.reply).prompt]  # type: ignore[attr-defined]
    assert texts == [
        "Спасибо, ваше дополнение будет приложено к заявке номер один ноль четыре два.",
        "Статус заявки — в работе.",
        "Срок решения — в понедельник, первого декабря, в восемнадцать часов "
        "по московскому времени.",
        prompts.ADDITION_DONE_MENU,
    ]
    bye = advance(done.state, silence(done.state), context(tickets))
    assert bye.state.step == "ended"


def test_no_addition_recorded_asks_once_more_then_goes_to_the_main_menu() -> None:
    tickets = repeat_caller("1042")
    state = at("addition", addition_to="1042", offered=["1042"])
    again = advance(state, silence(state), context(tickets))
    assert again.state.step == "addition" and again.reply[0] == Say(prompts.ADDITION_EMPTY)
    menu = advance(again.state, silence(again.state), context(tickets))
    assert menu.state.step == "main_menu" and menu.actions == ()
