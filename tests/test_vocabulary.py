"""The shared vocabulary: categories and what follows from them, outcomes, step URLs, and
the one rule for who may get an SMS."""

from __future__ import annotations

import pytest
from flask import Flask

from callcenter.app import twilio_app_of
from callcenter.ivr.engine import STEPS
from callcenter.phones import classify
from callcenter.vocabulary import (
    CATEGORY_RULES,
    CATEGORY_TOPICS,
    FALLBACK_DIAL_RESULT_PATH,
    FALLBACK_PATH,
    FALLBACK_VOICEMAIL_PATH,
    INCOMING_PATH,
    ROUTING_ACTIONS,
    STATUS_PATH,
    TICKETED_CATEGORIES,
    UNTICKETED_CATEGORIES,
    URGENT_CATEGORIES,
    URGENT_PRIORITIES,
    Category,
    Outcome,
    Route,
    Step,
    recording_status_path,
    route_path,
    routing_path,
    sms_reach,
    step_path,
)

# ------------------------------------------------------------- categories


def test_every_category_has_its_rules() -> None:
    assert set(CATEGORY_RULES) == set(Category)


def test_the_stored_words_are_unchanged() -> None:
    # What the database holds today: a new spelling would need a data migration.
    assert [c.value for c in Category] == [
        "consultation",
        "incident",
        "critical",
        "stolen",
        "status",
        "addition",
        "abandoned",
    ]
    assert [o.value for o in Outcome] == [
        "in_progress",
        "completed",
        "interrupted",
        "abandoned",
        "failed",
    ]


def test_what_follows_from_a_category() -> None:
    assert URGENT_CATEGORIES == ("critical", "stolen")
    assert TICKETED_CATEGORIES == ("incident", "critical", "stolen")
    assert UNTICKETED_CATEGORIES == ("status", "addition", "abandoned")
    assert dict(CATEGORY_TOPICS) == {
        "consultation": "consultation",
        "critical": "critical_server_failure",
        "stolen": "stolen_vehicle",
    }
    assert URGENT_PRIORITIES == {"critical", "high"}


# ------------------------------------------------------------- URLs


def test_the_vocabulary_names_every_step_the_ivr_serves() -> None:
    assert STEPS == set(Step)


def test_every_url_the_vocabulary_names_is_a_twilio_webhook(app: Flask) -> None:
    urls = twilio_app_of(app).url_map.bind("hotline.example")
    paths = [
        INCOMING_PATH,
        STATUS_PATH,
        FALLBACK_PATH,
        FALLBACK_DIAL_RESULT_PATH,
        FALLBACK_VOICEMAIL_PATH,
        recording_status_path("description"),
        step_path(Step.MAIN_MENU, 1),
        *(route_path(route) for route in Route),
        *(routing_path(action) for action in ROUTING_ACTIONS),
    ]
    for path in paths:
        endpoint, _ = urls.match(path.split("?")[0], method="POST")
        assert endpoint.split(".")[0] in ("voice", "routing"), path


def test_step_and_routing_urls() -> None:
    assert step_path("main_menu", 3) == "/webhooks/voice/step/main_menu?t=3"
    assert route_path(Route.URGENT) == "/webhooks/voice/route/urgent"
    assert route_path("consultation") == "/webhooks/voice/route/consultation"
    assert routing_path("/whisper", call="CA1", leg=2) == (
        "/webhooks/voice/route/whisper?call=CA1&leg=2"
    )
    assert recording_status_path("voicemail") == ("/webhooks/voice/recording-status?kind=voicemail")
    with pytest.raises(ValueError):
        route_path("somewhere")


# ------------------------------------------------------------- SMS reachability


@pytest.mark.parametrize(
    ("raw", "sms_foreign", "ok", "reason"),
    [
        ("+79161234567", False, True, "Russian mobile"),
        ("8 (916) 123-45-67", False, True, "Russian mobile"),
        ("+78126077741", False, False, "landline"),
        ("+78002506077", False, False, "toll-free"),
        ("anonymous", False, False, "withheld"),
        ("+266696687", False, False, "withheld"),
        (None, False, False, "withheld"),
        ("sip:alice@pbx.example", False, False, "sip caller without a phone number"),
        ("client:agent-7", False, False, "client caller without a phone number"),
        ("sip:+79161234567@trunk.example", False, True, "Russian mobile"),
        ("sip:+78126077741@trunk.example", False, False, "landline"),
        ("+4915112345678", False, False, "SMS_FOREIGN is off"),
        ("+4915112345678", True, True, "SMS_FOREIGN is on"),
        ("+77012345678", True, True, "SMS_FOREIGN is on"),  # Kazakhstan shares +7
        ("+493012345678", True, False, "foreign landline"),
        ("12", False, False, "not a valid phone number"),
    ],
)
def test_sms_reach(raw: str | None, sms_foreign: bool, ok: bool, reason: str) -> None:
    caller = classify(raw)
    decision = sms_reach(caller.kind, caller.e164, sms_foreign=sms_foreign)
    assert decision.ok is ok
    assert reason in decision.reason
    allowed, why = decision  # a plain (ok, reason) pair for callers that unpack it
    assert (allowed, why) == (ok, decision.reason)
