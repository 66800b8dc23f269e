"""The support regulation as data: topics, products and their deadlines (section VI).

Every deadline is in business days of the production calendar, "unless the contract says
otherwise": an organisation's contract may set its own stage-one days and per-topic days,
and `deadlines()` uses them when the caller's organisation is given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from callcenter.clock import MOSCOW
from callcenter.errors import UnknownProduct, UnknownTopic
from callcenter.regulation.calendar import BusinessCalendar

__all__ = [
    "NON_URGENT_TOPICS",
    "PRODUCTS",
    "STAGE_ONE_DAYS",
    "TOPICS",
    "URGENT_TOPICS",
    "ContractTerms",
    "Deadlines",
    "Product",
    "Topic",
    "UnknownProduct",
    "UnknownTopic",
    "deadlines",
    "get_product",
    "get_topic",
]

log = logging.getLogger(__name__)

# Stage one: consult, ask the author for what is missing, give an estimate.
STAGE_ONE_DAYS = 1


@dataclass(frozen=True)
class Topic:
    slug: str
    # The topic's name in the regulation's table, word for word.
    title: str
    # Maximum business days for the whole ticket, all stages included.
    max_days: int
    # A short label the IVR speaks in its menu.
    spoken: str
    # The regulation requires a portal ticket on this topic to be duplicated by phone.
    phone_duplicate: bool = False
    # Goes straight to the on-duty specialist, with the escalation chain.
    urgent: bool = False
    # The deadline holds only up to this many vehicles; beyond it, it is agreed case by case.
    max_vehicles: int | None = None


TOPICS: dict[str, Topic] = {
    t.slug: t
    for t in (
        Topic(
            slug="critical_server_failure",
            title="Диагностика критического сбоя на сервере",
            max_days=1,
            spoken="критический сбой на сервере",
            phone_duplicate=True,
            urgent=True,
        ),
        Topic(
            slug="stolen_vehicle",
            title="Отслеживание угнанного ТС",
            max_days=1,
            spoken="угон транспортного средства",
            urgent=True,
        ),
        Topic(
            slug="accounts_access",
            title="Создание учётных записей и настройка прав доступа",
            max_days=2,
            spoken="учётные записи и права доступа",
        ),
        Topic(
            slug="data_update",
            title="Актуализация данных в системе",
            max_days=2,
            spoken="актуализация данных в системе",
        ),
        Topic(
            slug="system_reports",
            title="Построение системных отчётов",
            max_days=2,
            spoken="системные отчёты",
        ),
        Topic(
            slug="scheduled_reports",
            title="Создание и редактирование запланированных отчётов и уведомлений",
            max_days=2,
            spoken="запланированные отчёты и уведомления",
        ),
        Topic(
            slug="consultation",
            title="Консультирование по вопросам работы оборудования и программного обеспечения",
            max_days=5,
            spoken="консультация по оборудованию и программам",
        ),
        Topic(
            slug="remote_diagnostics",
            title="Удалённая диагностика и настройка оборудования",
            max_days=5,
            spoken="удалённая диагностика и настройка оборудования",
            max_vehicles=5,
        ),
        Topic(
            slug="violations_check",
            title="Проверка корректности зафиксированных нарушений или уведомлений",
            max_days=5,
            spoken="проверка нарушений и уведомлений",
        ),
    )
}

URGENT_TOPICS: tuple[Topic, ...] = tuple(t for t in TOPICS.values() if t.urgent)

# The IVR's menu order: the everyday question first, then the regulation's order.
NON_URGENT_TOPICS: tuple[Topic, ...] = tuple(
    TOPICS[slug]
    for slug in (
        "consultation",
        "accounts_access",
        "data_update",
        "system_reports",
        "scheduled_reports",
        "remote_diagnostics",
        "violations_check",
    )
)


@dataclass(frozen=True)
class Product:
    slug: str
    title: str
    # How the IVR says it ("SKAI" is read "скай").
    spoken: str


PRODUCTS: dict[str, Product] = {
    p.slug: p
    for p in (
        Product(slug="studio", title="SKAI-Studio", spoken="СКАЙ Студио"),
        Product(slug="silver_studio", title="SKAI-Silver Studio", spoken="СКАЙ Сильвер Студио"),
        Product(slug="online", title="SKAI-Online", spoken="СКАЙ Онлайн"),
    )
}


def get_topic(slug: str) -> Topic:
    try:
        return TOPICS[slug]
    except KeyError:
        raise UnknownTopic(f"unknown topic {slug!r}; known topics: {', '.join(TOPICS)}") from None


def get_product(slug: str) -> Product:
    try:
        return PRODUCTS[slug]
    except KeyError:
        raise UnknownProduct(
            f"unknown product {slug!r}; known products: {', '.join(PRODUCTS)}"
        ) from None


class ContractTerms(Protocol):
    """What a contract may override; `callcenter.db.models.Organisation` has both."""

    @property
    def stage_one_days(self) -> int | None: ...

    @property
    def topic_days(self) -> Mapping[str, int] | None: ...


@dataclass(frozen=True)
class Deadlines:
    topic: Topic
    # Moscow time.
    received: datetime
    first_stage_due: datetime
    # None: the regulation sets no deadline (e.g. remote diagnostics of more than 5
    # vehicles): it is agreed with the author.
    resolution_due: datetime | None
    stage_one_days: int
    resolution_days: int | None

    @property
    def by_agreement(self) -> bool:
        return self.resolution_due is None


def deadlines(
    topic: str | Topic,
    received: datetime,
    calendar: BusinessCalendar,
    organisation: ContractTerms | None = None,
    vehicles: int = 0,
) -> Deadlines:
    """Stage-one and resolution deadlines for a request on `topic` received at `received`.

    `vehicles` is how many vehicles the request concerns (0: not said). The contract's
    days, when the organisation has them, replace the regulation's. Stage one can never be
    due after the whole ticket, so it is capped at the resolution deadline.
    """
    t = get_topic(topic) if isinstance(topic, str) else topic
    if received.tzinfo is None or received.utcoffset() is None:
        raise ValueError("received must be a timezone-aware datetime")
    if vehicles < 0:
        raise ValueError(f"vehicles must not be negative, got {vehicles}")
    contract_stage_one = organisation.stage_one_days if organisation else None
    contract_topic = (organisation.topic_days or {}).get(t.slug) if organisation else None
    stage_one_days = (
        _contract_days(organisation, "stage_one_days", contract_stage_one) or STAGE_ONE_DAYS
    )
    resolution_days: int | None = (
        _contract_days(organisation, f"topic_days[{t.slug!r}]", contract_topic) or t.max_days
    )
    if t.max_vehicles is not None and vehicles > t.max_vehicles:
        resolution_days = None
    first = calendar.business_days_later(received, stage_one_days)
    resolution = (
        calendar.business_days_later(received, resolution_days)
        if resolution_days is not None
        else None
    )
    if resolution is not None and first > resolution:
        first = resolution
    return Deadlines(
        topic=t,
        received=received.astimezone(MOSCOW),
        first_stage_due=first,
        resolution_due=resolution,
        stage_one_days=stage_one_days,
        resolution_days=resolution_days,
    )


def _contract_days(organisation: object, field: str, value: object) -> int | None:
    """A contract's number of business days, or None to use the regulation's.

    Contract terms are entered by people; a nonsense value must not stop a caller's ticket,
    so it is logged and the regulation applies.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    log.warning(
        "ignoring contract %s=%r of organisation %s: not a positive whole number",
        field,
        value,
        getattr(organisation, "id", "?"),
    )
    return None
