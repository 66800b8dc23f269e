"""`@twilio_signed`: Twilio's X-Twilio-Signature over the public URL, checked with the
`twilio` library's RequestValidator; anything else is refused with 403 and a log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from callcenter.app import create_app
from callcenter.errors import ConfigurationError
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import TEST_AUTH_TOKEN, TEST_PUBLIC_BASE, MutableClock
from tests.twilio_requests import fixture, signature, signed_post

INCOMING = "/webhooks/voice/incoming"


@pytest.fixture
def make_app(tmp_path: Path, clock: MutableClock) -> Any:
    """An app on a fresh SQLite file, with some settings changed."""
    built: list[Services] = []

    def make(**changes: Any) -> Flask:
        from callcenter.db import Base

        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'sig.db'}",
            data_dir=tmp_path,
            twilio_auth_token=TEST_AUTH_TOKEN,
            public_base_url=TEST_PUBLIC_BASE,
        ).with_(**changes)
        services = Services.from_settings(settings, clock=clock)
        Base.metadata.create_all(services.engine)
        built.append(services)
        return create_app(services=services)

    yield make
    for services in built:
        services.close()


def test_a_correctly_signed_request_is_served(make_app: Any) -> None:
    response = signed_post(make_app().test_client(), INCOMING, fixture("incoming_call"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"


def test_a_forged_signature_is_refused_and_logged(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app().test_client()
    with caplog.at_level(logging.WARNING, logger="webhooks.signature"):
        response = signed_post(client, INCOMING, fixture("incoming_call"), token="not-the-token")

    assert response.status_code == 403
    assert "invalid Twilio signature" in response.get_data(as_text=True)
    [record] = [r for r in caplog.records if r.name == "webhooks.signature"]
    assert "does not match https://hotline.example.test/webhooks/voice/incoming" in record.message
    assert record.call_sid == fixture("incoming_call")["CallSid"]  # type: ignore[attr-defined]


def test_a_missing_signature_is_refused(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = make_app().test_client()
    with caplog.at_level(logging.WARNING, logger="webhooks.signature"):
        response = client.post(INCOMING, data=fixture("incoming_call"))
    assert response.status_code == 403
    assert "missing X-Twilio-Signature" in caplog.text


def test_changed_parameters_break_the_signature(make_app: Any) -> None:
    client = make_app().test_client()
    params = fixture("incoming_call")
    sig = signature(TEST_PUBLIC_BASE + INCOMING, params)
    params["From"] = "+79990000000"
    response = client.post(INCOMING, data=params, headers={"X-Twilio-Signature": sig})
    assert response.status_code == 403


def test_the_query_string_is_part_of_the_signed_url(make_app: Any) -> None:
    client = make_app().test_client()
    path = "/webhooks/voice/step/main_menu?t=1"
    params = fixture("gather_digits")
    wrong = signature(TEST_PUBLIC_BASE + "/webhooks/voice/step/main_menu", params)
    assert client.post(path, data=params, headers={"X-Twilio-Signature": wrong}).status_code == 403
    assert signed_post(client, path, params).status_code == 200


def test_repeated_parameters_are_signed_as_twilio_sends_them(make_app: Any) -> None:
    client = make_app().test_client()
    params = fixture("incoming_call")
    pairs = [*params.items(), ("StirPassportToken", "a"), ("StirPassportToken", "b")]
    from werkzeug.datastructures import MultiDict

    form = MultiDict(pairs)
    from twilio.request_validator import RequestValidator

    sig = RequestValidator(TEST_AUTH_TOKEN).compute_signature(TEST_PUBLIC_BASE + INCOMING, form)
    response = client.post(INCOMING, data=form, headers={"X-Twilio-Signature": sig})
    assert response.status_code == 200


def test_without_a_public_base_url_the_proxy_headers_give_the_signed_url(make_app: Any) -> None:
    # One reverse proxy (the tunnel) is configured: its X-Forwarded-* headers count.
    client = make_app(public_base_url=None, trusted_proxies=1).test_client()
    params = fixture("incoming_call")
    public = "https://tunnel.example.org"
    sig = signature(public + INCOMING, params)
    headers = {
        "X-Twilio-Signature": sig,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "tunnel.example.org",
    }
    assert client.post(INCOMING, data=params, headers=headers).status_code == 200
    # Without the headers the app sees http://localhost/...: not what Twilio signed.
    assert (
        client.post(INCOMING, data=params, headers={"X-Twilio-Signature": sig}).status_code == 403
    )


def test_only_the_last_proxy_hop_is_trusted(make_app: Any) -> None:
    client = make_app(public_base_url=None, trusted_proxies=1).test_client()
    params = fixture("incoming_call")
    sig = signature("https://evil.example" + INCOMING, params)
    headers = {
        "X-Twilio-Signature": sig,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example, tunnel.example.org",
    }
    assert client.post(INCOMING, data=params, headers=headers).status_code == 403


def test_every_twilio_webhook_is_guarded(make_app: Any) -> None:
    client = make_app().test_client()
    for path in (
        INCOMING,
        "/webhooks/voice/step/main_menu?t=1",
        "/webhooks/voice/status",
        "/webhooks/voice/recording-status?kind=description",
        "/webhooks/voice/fallback",
        "/webhooks/voice/fallback/dial-result",
        "/webhooks/voice/fallback/voicemail",
        "/webhooks/sms/status?m=1",
    ):
        response = client.post(path, data=fixture("incoming_call"))
        assert response.status_code == 403, path


def test_no_auth_token_means_nothing_is_accepted(make_app: Any) -> None:
    client = make_app(twilio_auth_token=None).test_client()
    assert signed_post(client, INCOMING, fixture("incoming_call")).status_code == 403


def test_checks_can_be_switched_off_outside_production_only(make_app: Any) -> None:
    client = make_app(validate_signatures=False).test_client()
    assert client.post(INCOMING, data=fixture("incoming_call")).status_code == 200
    with pytest.raises(ConfigurationError, match="cannot be switched off in production"):
        Settings(
            production=True,
            validate_signatures=False,
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="t",
            public_base_url=TEST_PUBLIC_BASE,
            secret_key="s",
            database_url="postgresql+psycopg://x@127.0.0.1/x",
            duty_phone="+79110000001",
        )
