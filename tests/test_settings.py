from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callcenter.clock import running_clock
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
        "DUTY_PHONE": "+79110000001",
        "VALIDATE_TWILIO_SIGNATURES": "no",
    }
    with pytest.raises(ConfigurationError, match="cannot be switched off"):
        Settings.from_env(env)


def test_bad_number_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="DIAL_LEG_TIMEOUT"):
        Settings.from_env({"DIAL_LEG_TIMEOUT": "twenty"})


def test_a_jobs_database_deadline_is_a_positive_number_of_seconds() -> None:
    assert Settings.from_env({}).job_db_deadline == 15.0
    assert Settings.from_env({"JOB_DB_DEADLINE": "7.5"}).job_db_deadline == 7.5
    for raw in ("soon", "0", "-3", "nan"):
        with pytest.raises(ConfigurationError, match="JOB_DB_DEADLINE"):
            Settings.from_env({"JOB_DB_DEADLINE": raw})


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
        "DUTY_PHONE": "+79110000001",
    }
    assert Settings.from_env(env).webhook_signing_token == "real-token"


def test_callcenter_clock_starts_the_services_clock_at_that_instant_and_lets_it_run(
    tmp_path: Path,
) -> None:
    from callcenter.services import Services

    env = {
        "CALLCENTER_CLOCK": "2026-11-03T17:30:00+03:00",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
    }
    settings = Settings.from_env(env)
    assert settings.clock_start == datetime(2026, 11, 3, 14, 30, tzinfo=UTC)
    services = Services.from_settings(settings)
    try:
        first = services.clock()
        assert timedelta(0) <= first - settings.clock_start < timedelta(seconds=5)
        deadline = time.monotonic() + 5
        while services.clock() == first and time.monotonic() < deadline:
            time.sleep(0.01)
        assert services.clock() > first  # it runs
    finally:
        services.close()
    assert Settings.from_env({}).clock_start is None


def test_a_running_clock_moves_with_the_monotonic_time() -> None:
    ticks = [100.0]
    clock = running_clock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC), monotonic=lambda: ticks[0])
    assert clock() == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    ticks[0] += 90.5
    assert clock() == datetime(2026, 1, 5, 9, 1, 30, 500000, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["2026-11-03T17:30:00", "tomorrow"])
def test_callcenter_clock_needs_a_moment_with_its_offset(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="CALLCENTER_CLOCK"):
        Settings.from_env({"CALLCENTER_CLOCK": raw})


def test_callcenter_clock_is_refused_in_production() -> None:
    with pytest.raises(ConfigurationError, match="CALLCENTER_CLOCK cannot be set in production"):
        Settings(
            production=True,
            twilio_account_sid="AC1",
            twilio_auth_token="t",
            public_base_url="https://x",
            secret_key="s",
            database_url="postgresql+psycopg://u@h/db",
            duty_phone="+79110000001",
            clock_start=datetime(2026, 11, 3, 14, 30, tzinfo=UTC),
        )


def test_production_refuses_a_duty_phone_left_unset_or_one_of_the_hotlines_own_lines() -> None:
    """A caller sent to one of our own lines comes back to the IVR: production needs a
    person's DUTY_PHONE, not one of LINES."""
    env = {
        "CALLCENTER_ENV": "production",
        "TWILIO_ACCOUNT_SID": "AC1",
        "TWILIO_AUTH_TOKEN": "real-token",
        "PUBLIC_BASE_URL": "https://h",
        "SECRET_KEY": "s" * 32,
        "DATABASE_URL": "postgresql+psycopg://u@h/db",
    }
    with pytest.raises(
        ConfigurationError, match="production mode needs these settings: DUTY_PHONE"
    ):
        Settings.from_env(env)
    with pytest.raises(ConfigurationError, match="DUTY_PHONE \\+78002506077 is one of the hotline"):
        Settings.from_env({**env, "DUTY_PHONE": "+78002506077"})
    with pytest.raises(ConfigurationError, match="DUTY_PHONE \\+74950000001 is one of the hotline"):
        Settings.from_env({**env, "DUTY_PHONE": "+74950000001", "LINES": "+74950000001"})
    assert Settings.from_env({**env, "DUTY_PHONE": "+79110000001"}).duty_phone == "+79110000001"
    # Outside production it may stay unset (no default pointing at our own lines): a caller
    # nobody is on duty for leaves a voicemail (tests/test_routing_webhooks.py).
    assert Settings.from_env({}).duty_phone is None
