"""The IVR's menus and paths, as data.

A `Menu` maps a keypad key, or words the caller may say instead, to a value; the step
engine (`callcenter.ivr.engine`) asks it what an answer means. A `Path` says what choosing a
main-menu item does: the call's category, its topic when the choice fixes one, and either
the first step of the path or where routing takes over.

Topics and products come from the regulation module (titles, spoken labels, menu order);
what is here is how a caller picks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from callcenter.ivr import prompts
from callcenter.ivr.spoken import spoken_digits, tokens
from callcenter.regulation import topics as regulation
from callcenter.vocabulary import CATEGORY_TOPICS, Category, Route, Step

REPEAT_KEY = "*"


@dataclass(frozen=True)
class Choice:
    key: str
    value: str | None
    # Said in the menu as "{label} — {key}." (None: the menu's text already says it).
    label: str | None = None
    # Word stems that pick this choice when said (matched against the start of each word).
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Menu:
    """A one-key menu. `match` answers REPEAT_KEY for "*", a Choice, or None (not a choice).

    Spoken answers are tried as a number first ("два" → 2), then by word stems in
    `priority` order (so "запланированные отчёты" is not taken for "системные отчёты").
    """

    name: str
    choices: tuple[Choice, ...]
    hints: tuple[str, ...]
    priority: tuple[str | None, ...] = ()

    def by_key(self) -> Mapping[str, Choice]:
        return {choice.key: choice for choice in self.choices}

    def match(self, digits: str | None, speech: str | None) -> Choice | str | None:
        if digits:
            if digits == REPEAT_KEY:
                return REPEAT_KEY
            return self.by_key().get(digits)
        if not speech:
            return None
        words = tokens(speech)
        if any(word.startswith("повтор") for word in words):
            return REPEAT_KEY
        said = spoken_digits(speech)
        if said and len(said) == 1 and said in self.by_key():
            return self.by_key()[said]
        ordered = sorted(
            self.choices,
            key=lambda c: self.priority.index(c.value) if c.value in self.priority else 99,
        )
        for choice in ordered:
            if any(word.startswith(stem) for stem in choice.words for word in words):
                return choice
        return None

    def options_text(self) -> str:
        return " ".join(
            prompts.MENU_OPTION.format(
                title=choice.label[:1].upper() + choice.label[1:], key=choice.key
            )
            for choice in self.choices
            if choice.label is not None
        )


# ------------------------------------------------------------------ main menu

CONSULTATION = "consultation"
NEW_PROBLEM = "new_problem"
CRITICAL = "critical"
STOLEN = "stolen"
STATUS = "status"
SPECIALIST = "specialist"

MAIN_MENU = Menu(
    name="main_menu",
    choices=(
        Choice("1", CONSULTATION, words=("консультац", "вопрос")),
        Choice("2", NEW_PROBLEM, words=("нов", "проблем", "неисправ", "ошибк")),
        # Not "сервер": «вопрос по серверу» is a consultation, not a night alarm.
        Choice("3", CRITICAL, words=("критич", "сбой", "авари")),
        Choice("4", STOLEN, words=("угон", "угна", "украл", "краж")),
        Choice("5", STATUS, words=("статус", "состояни", "узнать")),
        Choice("0", SPECIALIST, words=("специалист", "оператор", "человек", "сотрудник")),
    ),
    hints=(
        "консультация",
        "новая проблема",
        "критический сбой",
        "угон",
        "статус заявки",
        "специалист",
        "повторить",
    ),
    priority=(CRITICAL, STOLEN, STATUS, SPECIALIST, CONSULTATION, NEW_PROBLEM),
)


# Main-menu choices that wake the on-duty specialist: confirmed when said, not when keyed.
CONFIRMED_BY_VOICE = frozenset({CRITICAL, STOLEN})

YES = "yes"
NO = "no"
CONFIRM_MENU = Menu(
    name=Step.CONFIRM_URGENT,
    choices=(
        Choice("1", YES, words=("да", "верно", "подтвержда", "конечно", "угу")),
        Choice("2", NO, words=("нет", "не", "неверно", "отмен")),
    ),
    hints=("да", "нет"),
    priority=(NO, YES),
)

# The known incident's offer (before the main menu): 1 or «да» joins it.
JOIN = "join"
INCIDENT_MENU = Menu(
    name=Step.INCIDENT_OFFER,
    choices=(Choice("1", JOIN, words=("да", "присоедин", "этому", "конечно")),),
    hints=("да",),
)

# A repeat caller's first menu: keys 1, 2, 3 add to the offered tickets, newest first.
REPEAT_OFFER_MAX = 3
REPEAT_OFFER_HINTS = ("да", "дополнить", "один", "два", "три", "главное меню")
_REPEAT_YES = frozenset({"да", "дополнить", "дополню", "добавить", "конечно", "угу"})


def repeat_offer_key(digits: str | None, speech: str | None, offered: int) -> int | None:
    """Which offered ticket (0-based) the answer picks: its key (1 to `offered`), the key
    said as a number, or «да» when one ticket was offered; None for anything else."""
    if digits:
        said = digits
    elif speech:
        words = tokens(speech)
        if offered == 1 and any(word in _REPEAT_YES for word in words):
            return 0
        said = spoken_digits(speech)
    else:
        return None
    if len(said) == 1 and said.isdigit() and 1 <= int(said) <= offered:
        return int(said) - 1
    return None


# Navigation from every menu and free-answer step.
MAIN = "main_menu"
NAVIGATION_KEYS: Mapping[str, str] = {"0": SPECIALIST, "9": MAIN}
_SPECIALIST_WORDS = ("оператор", "специалист", "человек", "сотрудник")
_NO_WORDS = frozenset({"нет", "нету", "не", "отсутствует"})


def navigation(digits: str | None, speech: str | None) -> str | None:
    """SPECIALIST for 0 or «оператор», MAIN for 9 or «главное меню», else None."""
    if digits:
        return NAVIGATION_KEYS.get(digits)
    if not speech:
        return None
    words = tokens(speech)
    if any(word.startswith(stem) for stem in _SPECIALIST_WORDS for word in words):
        return SPECIALIST
    if any(word.startswith("главн") for word in words) and any(
        word.startswith("меню") for word in words
    ):
        return MAIN
    return None


def says_no(speech: str | None) -> bool:
    """«нет», «заявки нет», «нету»: a spoken no (a number said aloud is not)."""
    return bool(speech) and any(word in _NO_WORDS for word in tokens(speech or ""))


# The menus at the end of a path (ticket said, status said) understand speech too.
END_MENU_HINTS = ("повторить", "специалист", "другая заявка", "ещё раз", "главное меню")
_AGAIN_WORDS = ("друг", "ещ", "снова", "попроб")


def end_menu_key(digits: str | None, speech: str | None) -> str | None:
    """The key an end-menu answer stands for: "*" (repeat), "0", "9", "1" (another ticket,
    try again), or None (goodbye)."""
    if digits:
        return digits
    if not speech:
        return None
    where = navigation(None, speech)
    if where is not None:
        return "0" if where == SPECIALIST else "9"
    words = tokens(speech)
    if any(word.startswith("повтор") for word in words):
        return REPEAT_KEY
    if any(word.startswith(stem) for stem in _AGAIN_WORDS for word in words):
        return "1"
    said = spoken_digits(speech)
    return said if len(said) == 1 else None


# The status end menu of a solved ticket: 1 objects to the solution (the regulation's
# objection), 2 asks about another ticket.
SOLVED_MENU_HINTS = ("не согласен", "другая заявка", "повторить", "специалист", "главное меню")
OBJECT = "object"
ANOTHER = "another"


def solved_menu_answer(digits: str | None, speech: str | None) -> str | None:
    """OBJECT, ANOTHER, or what `end_menu_key` makes of the answer ("*", "0", "9", None)."""
    if digits == "1":
        return OBJECT
    if digits == "2":
        return ANOTHER
    if speech:
        words = tokens(speech)
        disagrees = "не" in words and any(word.startswith("соглас") for word in words)
        if disagrees or any(word.startswith(("возраж", "верн")) for word in words):
            return OBJECT
        if any(word.startswith(stem) for stem in _AGAIN_WORDS for word in words):
            return ANOTHER
        said = spoken_digits(speech)
        if said in ("1", "2"):
            return OBJECT if said == "1" else ANOTHER
    key = end_menu_key(digits, speech)
    return None if key == "1" else key


@dataclass(frozen=True)
class Path:
    """What a main-menu choice starts: the call's category and topic, then either the
    first step of the path or a hand-over to routing."""

    category: Category
    topic: str | None = None
    first_step: Step | None = None
    route: Route | None = None


PATHS: Mapping[str, Path] = {
    CONSULTATION: Path(category=Category.CONSULTATION, route=Route.CONSULTATION),
    SPECIALIST: Path(category=Category.CONSULTATION, route=Route.CONSULTATION),
    NEW_PROBLEM: Path(category=Category.INCIDENT, first_step=Step.TOPIC),
    CRITICAL: Path(
        category=Category.CRITICAL,
        topic=CATEGORY_TOPICS[Category.CRITICAL],
        first_step=Step.CRITICAL,
    ),
    STOLEN: Path(
        category=Category.STOLEN,
        topic=CATEGORY_TOPICS[Category.STOLEN],
        first_step=Step.STOLEN_VEHICLES,
    ),
    STATUS: Path(category=Category.STATUS, first_step=Step.STATUS_NUMBER),
}

# ------------------------------------------------------------------ topics and products

# Word stems per topic slug; the menu keys follow `regulation.NON_URGENT_TOPICS`.
TOPIC_WORDS: Mapping[str, tuple[str, ...]] = {
    "consultation": ("консульт", "вопрос", "оборудован", "программ"),
    "accounts_access": ("учетн", "доступ", "пароль", "логин", "прав"),
    "data_update": ("актуализ", "данны", "обновлен"),
    "system_reports": ("системн", "отчет"),
    "scheduled_reports": ("запланир", "уведомлен", "рассылк", "расписан"),
    "remote_diagnostics": ("диагност", "настро", "удален", "датчик", "трекер", "терминал"),
    "violations_check": ("нарушен", "штраф", "проверк", "корректн"),
}
TOPIC_PRIORITY = (
    "violations_check",
    "scheduled_reports",
    "system_reports",
    "accounts_access",
    "data_update",
    "remote_diagnostics",
    "consultation",
)
PRODUCT_WORDS: Mapping[str, tuple[str, ...]] = {
    "studio": ("студи", "studio"),
    "silver_studio": ("сильвер", "silver", "серебр"),
    "online": ("онлайн", "online"),
}
PRODUCT_UNKNOWN_WORDS = ("знаю", "незнаю", "никак", "друг")


@cache
def topic_menu() -> Menu:
    choices = tuple(
        Choice(str(n), topic.slug, topic.spoken, TOPIC_WORDS.get(topic.slug, ()))
        for n, topic in enumerate(regulation.NON_URGENT_TOPICS, start=1)
    )
    return Menu(
        name="topic",
        choices=choices,
        hints=tuple(topic.spoken for topic in regulation.NON_URGENT_TOPICS),
        priority=TOPIC_PRIORITY,
    )


@cache
def product_menu() -> Menu:
    products = list(regulation.PRODUCTS.values())
    choices = [
        Choice(str(n), product.slug, product.spoken, PRODUCT_WORDS.get(product.slug, ()))
        for n, product in enumerate(products, start=1)
    ]
    choices.append(
        Choice(str(len(products) + 1), None, prompts.PRODUCT_UNKNOWN, PRODUCT_UNKNOWN_WORDS)
    )
    return Menu(
        name="product",
        choices=tuple(choices),
        hints=(*(product.spoken for product in products), "не знаю"),
        # "Сильвер студио" names both; the longer name wins.
        priority=("silver_studio", None, "studio", "online"),
    )


# Speech hints for free answers: Google's class tokens for plates and ticket numbers.
PLATE_HINTS = ("$OOV_CLASS_ALPHANUMERIC_SEQUENCE", "номер", "регион")
NUMBER_HINTS = ("$OOV_CLASS_DIGIT_SEQUENCE",)
