from __future__ import annotations

import pytest

from callcenter.errors import ConfigurationError
from callcenter.settings import Settings


def test_defaults_are_the_embedded_service() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///var/callcenter.db"
    assert s.jobs_inline and s.uses_builtin_portal
    assert s.twilio_api_base_url is None
    assert s.production is False


def test_environment_is_read() -> None:
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://u@h/db",
            "REDIS_URL": "redis://r:6379/2",
            "TWILIO_API_BASE_URL": "http://127.0.0.1:4010",
            "PORTAL_URL": "https://portal.example",
            "PORTAL_TOKEN": "t",
            "DIAL_LEG_TIMEOUT": "25",
        }
    )
    assert s.redis_url == "redis://r:6379/2" and not s.jobs_inline
    assert s.portal_url == "https://portal.example" and not s.uses_builtin_portal
    assert s.dial_leg_timeout == 25


def test_production_refuses_to_start_without_secrets() -> None:
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env({"CALLCENTER_ENV": "production"})
    message = str(err.value)
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "SECRET_KEY"):
        assert name in message


def test_signature_check_cannot_be_switched_off_in_production() -> None:
    env = {
        "CALLCENTER_ENV": "production",
        "TWILIO_ACCOUNT_SID": "AC1",
        "TWILIO_AUTH_TOKEN": "x",
        "PUBLIC_BASE_URL": "https://h",
        "SECRET_KEY": "s",
        "DATABASE_URL": "postgresql+psycopg://u@h/db",
        "VALIDATE_TWILIO_SIGNATURES": "no",
    }
    with pytest.raises(ConfigurationError, match="cannot be switched off"):
        Settings.from_env(env)


def test_bad_number_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="DIAL_LEG_TIMEOUT"):
        Settings.from_env({"DIAL_LEG_TIMEOUT": "twenty"})


def test_a_fresh_clone_signs_webhooks_with_the_local_token_production_never() -> None:
    from callcenter.settings import LOCAL_SIGNING_TOKEN

    assert Settings.from_env({}).webhook_signing_token == LOCAL_SIGNING_TOKEN
    assert Settings(twilio_auth_token="real").webhook_signing_token == "real"
    env = {
        "CALLCENTER_ENV": "production",
        "TWILIO_ACCOUNT_SID": "AC1",
        "TWILIO_AUTH_TOKEN": "real-token",
        "PUBLIC_BASE_URL": "https://h",
        "SECRET_KEY": "s" * 32,
        "DATABASE_URL": "postgresql+psycopg://u@h/db",
    }
    assert Settings.from_env(env).webhook_signing_token == "real-token"
