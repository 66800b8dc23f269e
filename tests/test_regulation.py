"""The regulation's topics, products and deadlines, contract overrides included."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from callcenter.clock import MOSCOW
from callcenter.db.models import Organisation
from callcenter.errors import InvalidInput, UnknownProduct, UnknownTopic
from callcenter.regulation.calendar import BusinessCalendar
from callcenter.regulation.topics import (
    NON_URGENT_TOPICS,
    PRODUCTS,
    STAGE_ONE_DAYS,
    TOPICS,
    URGENT_TOPICS,
    deadlines,
    get_product,
    get_topic,
)
from tests.conftest import SHARED

CAL = BusinessCalendar.shipped()
REGULATION_TEXT = (SHARED / "regulation" / "skai-support-regulation.ru.txt").read_text("utf-8")


def msk(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MOSCOW)


def test_topics_carry_the_regulations_days_and_flags() -> None:
    table = {
        slug: (t.max_days, t.phone_duplicate, t.urgent, t.max_vehicles)
        for slug, t in TOPICS.items()
    }
    assert table == {
        "critical_server_failure": (1, True, True, None),
        "stolen_vehicle": (1, False, True, None),
        "accounts_access": (2, False, False, None),
        "data_update": (2, False, False, None),
        "system_reports": (2, False, False, None),
        "scheduled_reports": (2, False, False, None),
        "consultation": (5, False, False, None),
        "remote_diagnostics": (5, False, False, 5),
        "violations_check": (5, False, False, None),
    }
    assert STAGE_ONE_DAYS == 1


@pytest.mark.parametrize("slug", sorted(TOPICS))
def test_each_topic_title_is_the_regulations_own_words(slug: str) -> None:
    topic = TOPICS[slug]
    assert topic.slug == slug
    assert topic.title in REGULATION_TEXT
    assert topic.spoken and topic.spoken == topic.spoken.lower()


def test_products_are_the_regulations() -> None:
    assert [(p.slug, p.title) for p in PRODUCTS.values()] == [
        ("studio", "SKAI-Studio"),
        ("silver_studio", "SKAI-Silver Studio"),
        ("online", "SKAI-Online"),
    ]
    for product in PRODUCTS.values():
        assert product.title in REGULATION_TEXT
        assert product.spoken.startswith("СКАЙ ")
    assert get_product("online").title == "SKAI-Online"
    with pytest.raises(UnknownProduct, match="known products: studio"):
        get_product("offline")


def test_the_menu_offers_the_seven_non_urgent_topics_once_each() -> None:
    slugs = [t.slug for t in NON_URGENT_TOPICS]
    assert slugs == [
        "consultation",
        "accounts_access",
        "data_update",
        "system_reports",
        "scheduled_reports",
        "remote_diagnostics",
        "violations_check",
    ]
    assert {t.slug for t in URGENT_TOPICS} == {"critical_server_failure", "stolen_vehicle"}
    assert set(slugs) | {t.slug for t in URGENT_TOPICS} == set(TOPICS)


def test_an_unknown_topic_is_a_named_error() -> None:
    with pytest.raises(UnknownTopic, match="unknown topic 'printer'; known topics: critical"):
        get_topic("printer")
    with pytest.raises(InvalidInput):
        deadlines("printer", msk("2025-12-01T11:00"), CAL)


def test_consultation_received_monday_morning() -> None:
    due = deadlines("consultation", msk("2025-12-01T11:00"), CAL)
    assert due.first_stage_due == msk("2025-12-02T11:00")
    assert due.resolution_due == msk("2025-12-08T11:00")
    assert (due.stage_one_days, due.resolution_days) == (1, 5)
    assert due.received == msk("2025-12-01T11:00") and not due.by_agreement


def test_received_on_sunday_counts_from_mondays_opening() -> None:
    due = deadlines("accounts_access", msk("2025-11-30T10:00"), CAL)
    assert due.first_stage_due == msk("2025-12-01T18:00")
    assert due.resolution_due == msk("2025-12-02T18:00")


def test_a_one_day_topic_has_both_stages_due_together() -> None:
    due = deadlines("critical_server_failure", msk("2025-12-30T10:00"), CAL)
    assert due.first_stage_due == due.resolution_due == msk("2026-01-12T10:00")


def test_received_in_utc_is_answered_in_moscow_time() -> None:
    due = deadlines("stolen_vehicle", datetime(2025, 12, 1, 8, 0, tzinfo=UTC), CAL)
    assert due.received.isoformat() == "2025-12-01T11:00:00+03:00"
    assert due.resolution_due is not None
    assert due.resolution_due.isoformat() == "2025-12-02T11:00:00+03:00"


@pytest.mark.parametrize(
    ("vehicles", "by_agreement"), [(0, False), (1, False), (5, False), (6, True)]
)
def test_remote_diagnostics_beyond_five_vehicles_is_by_agreement(
    vehicles: int, by_agreement: bool
) -> None:
    due = deadlines("remote_diagnostics", msk("2025-12-01T11:00"), CAL, vehicles=vehicles)
    assert due.by_agreement is by_agreement
    assert due.resolution_due == (None if by_agreement else msk("2025-12-08T11:00"))
    # Stage one is due whatever the vehicle count.
    assert due.first_stage_due == msk("2025-12-02T11:00")


def test_vehicles_do_not_matter_for_other_topics() -> None:
    due = deadlines("violations_check", msk("2025-12-01T11:00"), CAL, vehicles=40)
    assert due.resolution_due == msk("2025-12-08T11:00")


def test_the_contract_overrides_the_regulation() -> None:
    org = Organisation(name="ООО «Ромашка»", stage_one_days=2, topic_days={"consultation": 10})
    due = deadlines("consultation", msk("2025-12-01T11:00"), CAL, organisation=org)
    assert due.first_stage_due == msk("2025-12-03T11:00")
    assert due.resolution_due == msk("2025-12-15T11:00")
    # A topic the contract does not name keeps the regulation's days.
    other = deadlines("data_update", msk("2025-12-01T11:00"), CAL, organisation=org)
    assert other.resolution_due == msk("2025-12-03T11:00")


def test_an_organisation_without_terms_gets_the_regulation() -> None:
    org = Organisation(name="ООО «Лютик»", stage_one_days=None, topic_days={})
    due = deadlines("consultation", msk("2025-12-01T11:00"), CAL, organisation=org)
    assert due.first_stage_due == msk("2025-12-02T11:00")
    assert due.resolution_due == msk("2025-12-08T11:00")


def test_stage_one_is_never_due_after_the_whole_ticket() -> None:
    org = Organisation(name="ООО «Василёк»", stage_one_days=3, topic_days={})
    due = deadlines("stolen_vehicle", msk("2025-12-01T11:00"), CAL, organisation=org)
    assert due.first_stage_due == due.resolution_due == msk("2025-12-02T11:00")


def test_nonsense_contract_days_fall_back_to_the_regulation_and_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    org = Organisation(
        id=7, name="ООО «Одуванчик»", stage_one_days=0, topic_days={"consultation": "ten"}
    )
    with caplog.at_level(logging.WARNING, logger="callcenter.regulation.topics"):
        due = deadlines("consultation", msk("2025-12-01T11:00"), CAL, organisation=org)
    assert due.first_stage_due == msk("2025-12-02T11:00")
    assert due.resolution_due == msk("2025-12-08T11:00")
    assert "stage_one_days=0 of organisation 7" in caplog.text
    assert "topic_days['consultation']='ten' of organisation 7" in caplog.text


def test_a_naive_receipt_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        deadlines("consultation", datetime(2025, 12, 1, 11, 0), CAL)


def test_a_negative_vehicle_count_is_refused() -> None:
    with pytest.raises(ValueError, match="vehicles"):
        deadlines("remote_diagnostics", msk("2025-12-01T11:00"), CAL, vehicles=-1)
