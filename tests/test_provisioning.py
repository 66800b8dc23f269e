"""Provisioning the lines' numbers: the domain function, `callcenter provision` and
`scripts/provision_numbers.py`, through the real `twilio` client.

Prism (Twilio's own OpenAPI description) answers every IncomingPhoneNumbers list with the
spec's example number, whatever was asked: so a line set to that number is "on the
account" and any other line is not. What Prism cannot play (a number already configured,
one on a SIP trunk, Twilio refusing an update) a small real HTTP server plays, answering
with the spec's own example number adjusted for the case.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.wrappers import Request, Response

from callcenter.cli import main as callcenter_cli
from callcenter.cli.context import CliContext
from callcenter.errors import ConfigurationError
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.telephony.client import TwilioExchange, TwilioTelephony, build_telephony
from callcenter.telephony.provisioning import (
    NumberWebhooks,
    Outcome,
    provision_from_settings,
    provision_numbers,
)
from tests.conftest import (
    ROOT,
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_PUBLIC_BASE,
    TWILIO_SPEC,
)
from tests.test_telephony import StandIn, twilio_error

ACCOUNT_PATH = f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}"
LIST_PATH = f"{ACCOUNT_PATH}/IncomingPhoneNumbers.json"


def spec_example_list() -> dict[str, Any]:
    """The IncomingPhoneNumbers list example in Twilio's spec: what Prism answers."""
    spec = json.loads(TWILIO_SPEC.read_text())
    content = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json"]
    examples = content["get"]["responses"]["200"]["content"]["application/json"]["examples"]
    example: dict[str, Any] = next(iter(examples.values()))["value"]
    return example


EXAMPLE = spec_example_list()["incoming_phone_numbers"][0]
PRISM_NUMBER: str = EXAMPLE["phone_number"]
PRISM_SID: str = EXAMPLE["sid"]
MISSING_LINE = "+78002506077"

INCOMING = f"{TEST_PUBLIC_BASE}/webhooks/voice/incoming"
FALLBACK = f"{TEST_PUBLIC_BASE}/webhooks/voice/fallback"
STATUS = f"{TEST_PUBLIC_BASE}/webhooks/voice/status"
WANTED_FORM = {
    "VoiceUrl": INCOMING,
    "VoiceMethod": "POST",
    "VoiceFallbackUrl": FALLBACK,
    "VoiceFallbackMethod": "POST",
    "StatusCallback": STATUS,
    "StatusCallbackMethod": "POST",
}

# The line that is not on the account comes first: the other one must still be handled.
LINES = {MISSING_LINE: "8 (800) 250-60-77", PRISM_NUMBER: "Prism example line"}


@pytest.fixture
def make_twilio(exchanges: list[TwilioExchange]) -> Iterator[Callable[[str], TwilioTelephony]]:
    built: list[TwilioTelephony] = []

    def make(base_url: str) -> TwilioTelephony:
        telephony = TwilioTelephony(
            TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, base_url, on_exchange=exchanges.append
        )
        built.append(telephony)
        return telephony

    yield make
    for telephony in built:
        telephony.close()


@pytest.fixture
def stand_in() -> Iterator[Callable[[Callable[[Request], Response]], StandIn]]:
    started: list[StandIn] = []

    def start(answer: Callable[[Request], Response]) -> StandIn:
        started.append(StandIn(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


def account_with(*numbers: dict[str, Any], refuse: str | None = None) -> Callable[..., Response]:
    """A stand-in for Twilio holding `numbers`: it filters the list by PhoneNumber as
    Twilio does, and answers an update with the number (or an error for `refuse`)."""

    def answer(request: Request) -> Response:
        if request.method == "GET" and request.path == LIST_PATH:
            wanted = request.args.get("PhoneNumber", "")
            page = spec_example_list()
            page["incoming_phone_numbers"] = [n for n in numbers if wanted in n["phone_number"]]
            return Response(json.dumps(page), content_type="application/json")
        for number in numbers:
            if request.method == "POST" and request.path.endswith(f"/{number['sid']}.json"):
                if number["sid"] == refuse:
                    return twilio_error(400, 21402, "Url is not a valid URL: webhooks")
                return Response(json.dumps(number), content_type="application/json")
        return twilio_error(404, 20404, "The requested resource was not found")

    return answer


def number(phone: str, sid_digit: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = copy.deepcopy(EXAMPLE)
    record.update(phone_number=phone, sid="PN" + sid_digit * 32, **fields)
    return record


def requests_made(exchanges: list[TwilioExchange]) -> list[tuple[str, str]]:
    return [(e.method, e.path) for e in exchanges]


# ------------------------------------------------------------ the domain


def test_dry_run_prints_current_and_new_values_and_changes_nothing(
    prism_url: str, make_twilio: Callable[[str], TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    report = provision_numbers(
        make_twilio(prism_url), LINES, TEST_PUBLIC_BASE, dry_run=True, account_sid=TEST_ACCOUNT_SID
    )

    assert report.render().splitlines() == [
        "Dry run: nothing is changed on Twilio.",
        f"{MISSING_LINE} (8 (800) 250-60-77): NOT FOUND on Twilio account {TEST_ACCOUNT_SID}: "
        "buy or port the number into the account, or correct LINES",
        f"{PRISM_NUMBER} (Prism example line) {PRISM_SID}: would update",
        f"    Voice URL        (none) → {INCOMING}",
        f"    Fallback URL     (none) → {FALLBACK}",
        f"    Status callback  (none) → {STATUS}",
        "2 line(s): 1 not found, 1 would update; 1 need(s) attention.",
    ]
    assert not report.ok
    # Only the two look-ups, both valid for Twilio; no update.
    assert [(e.method, e.path, e.query, e.status) for e in exchanges] == [
        ("GET", LIST_PATH, {"PhoneNumber": MISSING_LINE}, 200),
        ("GET", LIST_PATH, {"PhoneNumber": PRISM_NUMBER}, 200),
    ]


def test_provisioning_posts_the_three_urls_to_the_number_found(
    prism_url: str, make_twilio: Callable[[str], TwilioTelephony], exchanges: list[TwilioExchange]
) -> None:
    report = provision_numbers(make_twilio(prism_url), LINES, TEST_PUBLIC_BASE, dry_run=False)

    assert [(r.line, r.outcome) for r in report.lines] == [
        (MISSING_LINE, Outcome.NOT_FOUND),
        (PRISM_NUMBER, Outcome.UPDATED),
    ]
    assert not report.ok
    updates = [e for e in exchanges if e.method == "POST"]
    assert [(e.path, e.form, e.auth_user, e.status) for e in updates] == [
        (
            f"{ACCOUNT_PATH}/IncomingPhoneNumbers/{PRISM_SID}.json",
            WANTED_FORM,
            TEST_ACCOUNT_SID,
            200,
        )
    ]
    assert f"{PRISM_NUMBER} (Prism example line) {PRISM_SID}: updated" in report.render()


def test_a_number_already_pointing_at_us_is_left_alone(
    stand_in: Callable[..., StandIn],
    make_twilio: Callable[[str], TwilioTelephony],
    exchanges: list[TwilioExchange],
) -> None:
    done = number(
        "+78126077741",
        "1",
        voice_url=INCOMING,
        voice_method="POST",
        voice_fallback_url=FALLBACK,
        voice_fallback_method="post",  # Twilio's answer is case-insensitive
        status_callback=STATUS,
        status_callback_method="POST",
    )
    twilio = stand_in(account_with(done))

    report = provision_numbers(
        make_twilio(twilio.url),
        {"+78126077741": "8 (812) 607-77-41"},
        TEST_PUBLIC_BASE + "/",
        dry_run=False,
    )

    assert report.ok
    assert report.render().splitlines() == [
        f"+78126077741 (8 (812) 607-77-41) {done['sid']}: up to date",
        "1 line(s): 1 up to date.",
    ]
    assert requests_made(exchanges) == [("GET", LIST_PATH)]


def test_a_number_on_a_sip_trunk_is_updated_but_flagged(
    stand_in: Callable[..., StandIn], make_twilio: Callable[[str], TwilioTelephony]
) -> None:
    trunked = number("+78126077741", "2", trunk_sid="TK" + "3" * 32)
    twilio = stand_in(account_with(trunked))

    report = provision_numbers(
        make_twilio(twilio.url),
        {"+78126077741": "8 (812) 607-77-41"},
        TEST_PUBLIC_BASE,
        dry_run=False,
    )

    [result] = report.lines
    assert result.outcome is Outcome.UPDATED and not report.ok
    assert f"WARNING: the number is on SIP trunk TK{'3' * 32}" in report.render()
    assert [s.form for s in twilio.requests if s.method == "POST"] == [WANTED_FORM]


def test_a_refused_update_is_reported_and_the_other_line_still_done(
    stand_in: Callable[..., StandIn], make_twilio: Callable[[str], TwilioTelephony]
) -> None:
    first = number("+78002506077", "4")
    second = number("+78126077741", "5")
    twilio = stand_in(account_with(first, second, refuse=first["sid"]))

    report = provision_numbers(
        make_twilio(twilio.url),
        {"+78002506077": "8-800", "+78126077741": "8-812", "8-812-607": "typo"},
        TEST_PUBLIC_BASE,
        dry_run=False,
    )

    assert [(r.line, r.outcome) for r in report.lines] == [
        ("+78002506077", Outcome.FAILED),
        ("+78126077741", Outcome.UPDATED),
        ("8-812-607", Outcome.FAILED),
    ]
    text = report.render()
    assert "Url is not a valid URL: webhooks" in text and "Twilio error 21402" in text
    assert "8-812-607 (typo): FAILED: not an E.164 number" in text
    assert [s.path for s in twilio.requests if s.method == "POST"] == [
        f"{ACCOUNT_PATH}/IncomingPhoneNumbers/{first['sid']}.json",
        f"{ACCOUNT_PATH}/IncomingPhoneNumbers/{second['sid']}.json",
    ]


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("hotline.example.ru", "absolute URL"),
        ("http://127.0.0.1:8000", "reachable by Twilio"),
        ("https://localhost", "reachable by Twilio"),
        ("https://10.0.0.5", "reachable by Twilio"),
        ("https://hotline.example.ru/?x=1", "query"),
    ],
)
def test_public_base_url_must_be_reachable_by_twilio(base: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        NumberWebhooks.for_public_base(base)


def test_missing_settings_are_named() -> None:
    with pytest.raises(ConfigurationError) as caught:
        provision_from_settings(Settings(), build_telephony(Settings()), dry_run=True)
    assert str(caught.value) == (
        "provisioning needs these settings: TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL"
    )


# ------------------------------------------------------ the command line


@pytest.fixture
def cli_services(tmp_path: Path, prism_url: str) -> Iterator[Callable[..., Services]]:
    built: list[Services] = []

    def make(telephony: TwilioTelephony | None = None, **changes: Any) -> Services:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'cc.db'}",
            data_dir=tmp_path,
            twilio_account_sid=TEST_ACCOUNT_SID,
            twilio_auth_token=TEST_AUTH_TOKEN,
            twilio_api_base_url=prism_url,
            public_base_url=TEST_PUBLIC_BASE,
            lines=LINES,
        ).with_(**changes)
        services = Services.from_settings(settings)
        if telephony is not None:
            # Prime the lazily built adapter with one that reports its requests.
            services.__dict__["telephony"] = telephony
        built.append(services)
        return services

    yield make
    for services in built:
        services.close()


def run_cli(services: Services, *args: str) -> Any:
    # Our own lines' numbers in full (the command's output is masked by default).
    return CliRunner().invoke(
        callcenter_cli, ["--unmasked", "provision", *args], obj=CliContext(services)
    )


def test_cli_dry_run_reports_and_sends_no_update(
    prism_url: str,
    cli_services: Callable[..., Services],
    make_twilio: Callable[[str], TwilioTelephony],
    exchanges: list[TwilioExchange],
) -> None:
    result = run_cli(cli_services(make_twilio(prism_url)), "--dry-run")

    assert result.exit_code == 1  # a line is not on the account
    assert "Dry run: nothing is changed on Twilio." in result.stdout
    assert f"{MISSING_LINE} (8 (800) 250-60-77): NOT FOUND" in result.stdout
    assert f"    Voice URL        (none) → {INCOMING}" in result.stdout
    assert [e.method for e in exchanges] == ["GET", "GET"]


def test_cli_real_run_succeeds_when_every_line_is_found(
    prism_url: str,
    cli_services: Callable[..., Services],
    make_twilio: Callable[[str], TwilioTelephony],
    exchanges: list[TwilioExchange],
) -> None:
    services = cli_services(make_twilio(prism_url), lines={PRISM_NUMBER: "Prism example line"})

    result = run_cli(services)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "1 line(s): 1 updated."
    assert [(e.method, e.form) for e in exchanges if e.method == "POST"] == [("POST", WANTED_FORM)]


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"public_base_url": None}, "PUBLIC_BASE_URL"),
        ({"twilio_account_sid": None, "twilio_auth_token": None}, "TWILIO_ACCOUNT_SID"),
    ],
)
def test_cli_without_settings_exits_2_and_says_what_is_missing(
    cli_services: Callable[..., Services], changes: dict[str, Any], missing: str
) -> None:
    result = run_cli(cli_services(**changes))

    assert result.exit_code == 2
    assert "provisioning needs these settings" in result.stderr and missing in result.stderr
    assert result.stdout == ""


def test_script_is_the_same_command(prism_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "LINES"))}
    env.update(
        CALLCENTER_DATA_DIR=str(tmp_path),
        TWILIO_ACCOUNT_SID=TEST_ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=TEST_AUTH_TOKEN,
        TWILIO_API_BASE_URL=prism_url,
        PUBLIC_BASE_URL=TEST_PUBLIC_BASE,
        LINES=f"{MISSING_LINE}=8-800,{PRISM_NUMBER}=Prism",
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "provision_numbers.py"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1, done.stderr
    assert f"{PRISM_NUMBER} (Prism) {PRISM_SID}: would update" in done.stdout
    assert f"{MISSING_LINE} (8-800): NOT FOUND" in done.stdout
