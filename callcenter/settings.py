"""Settings: one typed object, read from the environment once.

Tests build `Settings(...)` directly; production reads `Settings.from_env()`.
With `CALLCENTER_ENV=production`, missing secrets stop start-up with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from callcenter.errors import ConfigurationError

DEFAULT_DATA_DIR = Path("var")

# Outside production, with no Twilio account configured, webhooks are signed with this
# well-known token so `callcenter simulate` works on a fresh clone. Production refuses to
# start without TWILIO_AUTH_TOKEN, so this can never guard a real line.
LOCAL_SIGNING_TOKEN = "local-simulator-token"

# Production refuses shorter secrets (SECRET_KEY, tokens): 32 random characters are out
# of reach of guessing; "x" or a word is not.
MIN_SECRET_LENGTH = 32

# The regulation's two lines (section II.3), E.164.
DEFAULT_LINES = {
    "+78002506077": "8 (800) 250-60-77",
    "+78126077741": "8 (812) 607-77-41",
}


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"expected a yes/no value, got {value!r}")


def _instant(env: Mapping[str, str], name: str) -> datetime | None:
    raw = _opt(env, name)
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ConfigurationError(
            f"{name} must be a moment with its UTC offset, e.g. 2026-11-03T17:30:00+03:00; "
            f"got {raw!r}"
        )
    return at


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None


def _opt(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip()


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR / 'callcenter.db'}"
    data_dir: Path = DEFAULT_DATA_DIR
    # None: jobs run in-process (embedded default); set: RQ on this Redis.
    redis_url: str | None = None
    queue_name: str = "callcenter"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    # None: Twilio's real API; set: e.g. a local Prism mock.
    twilio_api_base_url: str | None = None
    public_base_url: str | None = None
    # None: the built-in portal in this service's database.
    portal_url: str | None = None
    portal_token: str | None = None
    # Where a human opens a ticket of the customer's portal: a URL with `{number}`. Unset:
    # the console shows the number without a link (the REST URL is no page for a human).
    portal_ticket_url: str | None = None
    # Token the built-in portal's REST API accepts (for the customer's portal team's tests).
    builtin_portal_token: str | None = None
    secret_key: str = "dev-only-not-secret"
    production: bool = False
    # Checks X-Twilio-Signature; may only be off outside production (e.g. local curl).
    validate_signatures: bool = True
    # An operator's data file with a new year's decree (days off, working weekends, short days).
    calendar_overrides_file: Path | None = None
    tts_voice: str = "Polly.Tatyana"
    # Said by the TTS voice: "SKAI" in Cyrillic, as a person says it.
    support_name: str = "техподдержка Скай"
    # A person's phone: where a caller goes when the roster is empty or the database is
    # down. Unset (not allowed in production, nor one of LINES: a caller sent there would
    # come back to the IVR): such a caller leaves a voicemail and the call is flagged.
    duty_phone: str | None = None
    # Number SMS are sent from (one of ours).
    sms_from: str = "+78126077741"
    sms_foreign: bool = False
    lines: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LINES))
    # "download": fetch the recording with the account credentials; "link": attach its URL.
    recording_mode: str = "link"
    dial_leg_timeout: int = 20
    ticket_wait_seconds: int = 8
    # Known incidents: this many critical-failure calls from different organisations for
    # one product within the window (minutes) open an incident by themselves.
    incident_threshold: int = 3
    incident_window_minutes: int = 10
    # Working minutes within which a call back is due (see callcenter.callbacks).
    callback_sla_minutes: int = 30
    retention_days: int = 365
    # Seconds any one database call of a job may wait for PostgreSQL before its connection
    # is cut and the job fails (`DatabaseTimeout`): a hung database never holds a worker
    # until RQ's job timeout (minutes).
    job_db_deadline: float = 15.0
    # Seconds a job keeps trying to write down an SMS Twilio has taken while the database
    # is away (`callcenter.tickets.notifications`): longer than a database restart, less
    # than a job's timeout.
    sms_settle_seconds: float = 90.0
    # Minutes after which an SMS still `sending` (its process died between the claim and
    # writing Twilio's answer) is looked up in Twilio's message list by the sweep: found,
    # it is `sent`; not there, it is sent again (`callcenter.tickets.unsettled_sms`).
    sms_unsettled_minutes: int = 15
    log_json: bool = False
    # CALLCENTER_CLOCK: the service's clock starts at this instant and runs (demonstrations
    # and tests of a night, a holiday, a short day); never in production.
    clock_start: datetime | None = None
    # How many reverse proxies (load balancer, ingress) stand in front of the service: only
    # that many X-Forwarded-* hops are believed (client address, scheme, host); 0: none.
    trusted_proxies: int = 0

    def __post_init__(self) -> None:
        if self.callback_sla_minutes <= 0:
            raise ConfigurationError(
                f"CALLBACK_SLA_MINUTES must be positive, got {self.callback_sla_minutes}"
            )
        if self.recording_mode not in {"download", "link"}:
            raise ConfigurationError(
                f"RECORDING_MODE must be 'download' or 'link', got {self.recording_mode!r}"
            )
        if self.production:
            missing = [
                name
                for name, value in (
                    ("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                    ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                    ("PUBLIC_BASE_URL", self.public_base_url),
                    ("SECRET_KEY", None if self.secret_key == Settings.secret_key else "x"),
                    ("DATABASE_URL", None if self.database_url.startswith("sqlite") else "x"),
                    ("DUTY_PHONE", self.duty_phone),
                )
                if not value
            ]
            if self.portal_url and not self.portal_token:
                missing.append("PORTAL_TOKEN")
            if missing:
                raise ConfigurationError(
                    "production mode needs these settings: " + ", ".join(missing)
                )
            if not self.validate_signatures:
                raise ConfigurationError(
                    "VALIDATE_TWILIO_SIGNATURES cannot be switched off in production mode"
                )
            if self.duty_phone in self.lines:
                raise ConfigurationError(
                    f"DUTY_PHONE {self.duty_phone} is one of the hotline's own LINES: a caller "
                    "sent there would come back to the IVR; set a person's phone"
                )
            if self.clock_start is not None:
                raise ConfigurationError("CALLCENTER_CLOCK cannot be set in production mode")
            short = [
                name
                for name, value in (
                    ("SECRET_KEY", self.secret_key),
                    ("BUILTIN_PORTAL_TOKEN", self.builtin_portal_token),
                )
                if value is not None and len(value) < MIN_SECRET_LENGTH
            ]
            if short:
                raise ConfigurationError(
                    f"production mode needs secrets of at least {MIN_SECRET_LENGTH} characters: "
                    + ", ".join(short)
                    + " too short; generate one with: "
                    + 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
                )
        if not self.job_db_deadline > 0:
            raise ConfigurationError(
                f"JOB_DB_DEADLINE must be a positive number of seconds, got {self.job_db_deadline}"
            )
        if not self.sms_settle_seconds > 0:
            raise ConfigurationError(
                "SMS_SETTLE_SECONDS must be a positive number of seconds, "
                f"got {self.sms_settle_seconds}"
            )
        if self.sms_unsettled_minutes * 60 <= self.sms_settle_seconds:
            raise ConfigurationError(
                f"SMS_UNSETTLED_MINUTES ({self.sms_unsettled_minutes}) must be longer than "
                f"SMS_SETTLE_SECONDS ({self.sms_settle_seconds:g} s): a message still being "
                "written down is not unknown"
            )
        if self.trusted_proxies < 0:
            raise ConfigurationError(
                f"TRUSTED_PROXIES must be 0 or more, got {self.trusted_proxies}"
            )

    @property
    def webhook_signing_token(self) -> str | None:
        """The token X-Twilio-Signature is checked with."""
        if self.twilio_auth_token:
            return self.twilio_auth_token
        return None if self.production else LOCAL_SIGNING_TOKEN

    @property
    def sms_configured(self) -> bool:
        """A Twilio account is set, so SMS can be sent (else the offline telephony)."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def jobs_inline(self) -> bool:
        return self.redis_url is None

    @property
    def uses_builtin_portal(self) -> bool:
        return self.portal_url is None

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        data_dir = Path(e.get("CALLCENTER_DATA_DIR") or DEFAULT_DATA_DIR)
        production = (e.get("CALLCENTER_ENV") or "").strip().lower() == "production"
        overrides = _opt(e, "CALENDAR_OVERRIDES_FILE")
        lines = dict(DEFAULT_LINES)
        if _opt(e, "LINES"):
            # "E164=label,E164=label"
            lines = {}
            for part in (e["LINES"]).split(","):
                number, _, label = part.partition("=")
                lines[number.strip()] = label.strip() or number.strip()
        return cls(
            database_url=_opt(e, "DATABASE_URL") or f"sqlite:///{data_dir / 'callcenter.db'}",
            data_dir=data_dir,
            redis_url=_opt(e, "REDIS_URL"),
            queue_name=_opt(e, "QUEUE_NAME") or "callcenter",
            twilio_account_sid=_opt(e, "TWILIO_ACCOUNT_SID"),
            twilio_auth_token=_opt(e, "TWILIO_AUTH_TOKEN"),
            twilio_api_base_url=_opt(e, "TWILIO_API_BASE_URL"),
            public_base_url=_opt(e, "PUBLIC_BASE_URL"),
            portal_url=_opt(e, "PORTAL_URL"),
            portal_token=_opt(e, "PORTAL_TOKEN"),
            portal_ticket_url=_opt(e, "PORTAL_TICKET_URL"),
            builtin_portal_token=_opt(e, "BUILTIN_PORTAL_TOKEN"),
            secret_key=_opt(e, "SECRET_KEY") or cls.secret_key,
            production=production,
            validate_signatures=_bool(e.get("VALIDATE_TWILIO_SIGNATURES"), True),
            calendar_overrides_file=Path(overrides) if overrides else None,
            tts_voice=_opt(e, "TTS_VOICE") or cls.tts_voice,
            support_name=_opt(e, "SUPPORT_NAME") or cls.support_name,
            duty_phone=_opt(e, "DUTY_PHONE"),
            sms_from=_opt(e, "SMS_FROM") or cls.sms_from,
            sms_foreign=_bool(e.get("SMS_FOREIGN"), False),
            lines=lines,
            recording_mode=_opt(e, "RECORDING_MODE") or cls.recording_mode,
            dial_leg_timeout=_int(e, "DIAL_LEG_TIMEOUT", cls.dial_leg_timeout),
            ticket_wait_seconds=_int(e, "TICKET_WAIT_SECONDS", cls.ticket_wait_seconds),
            incident_threshold=_int(e, "INCIDENT_THRESHOLD", cls.incident_threshold),
            incident_window_minutes=_int(e, "INCIDENT_WINDOW", cls.incident_window_minutes),
            callback_sla_minutes=_int(e, "CALLBACK_SLA_MINUTES", cls.callback_sla_minutes),
            retention_days=_int(e, "RETENTION_DAYS", cls.retention_days),
            job_db_deadline=_seconds(e, "JOB_DB_DEADLINE", cls.job_db_deadline),
            sms_settle_seconds=_seconds(e, "SMS_SETTLE_SECONDS", cls.sms_settle_seconds),
            sms_unsettled_minutes=_int(e, "SMS_UNSETTLED_MINUTES", cls.sms_unsettled_minutes),
            log_json=_bool(e.get("LOG_JSON"), production),
            clock_start=_instant(e, "CALLCENTER_CLOCK"),
            trusted_proxies=_int(e, "TRUSTED_PROXIES", cls.trusted_proxies),
        )
