"""Point the hotline's Twilio numbers at this service's voice webhooks.

For each line in the settings (`LINES`, E.164 keys) the account's IncomingPhoneNumber with
exactly that number gets, all with POST:

    Voice URL         {PUBLIC_BASE_URL}/webhooks/voice/incoming
    Fallback URL      {PUBLIC_BASE_URL}/webhooks/voice/fallback
    Status callback   {PUBLIC_BASE_URL}/webhooks/voice/status

A number already set that way is left alone (no request), so running it twice is harmless.
A dry run only reads. Each line is handled on its own: a line that is not on the account,
or that Twilio refuses, is reported and the other line is still done. A number attached to
a TwiML App or a SIP trunk is updated too, but reported as a problem: Twilio sends its calls
there, not to the Voice URL, until it is detached in the Twilio console.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from callcenter.errors import ConfigurationError, TelephonyError, TelephonyNotConfigured
from callcenter.settings import Settings
from callcenter.telephony.client import IncomingNumber, Telephony
from callcenter.vocabulary import FALLBACK_PATH, INCOMING_PATH, STATUS_PATH

VOICE_PATHS = {
    "voice_url": INCOMING_PATH,
    "voice_fallback_url": FALLBACK_PATH,
    "status_callback": STATUS_PATH,
}
WEBHOOK_METHOD = "POST"

E164 = re.compile(r"\+[1-9][0-9]{6,14}")

# Field names as the Twilio console labels them, in the order a person reads them.
FIELD_LABELS = {
    "voice_url": "Voice URL",
    "voice_method": "Voice method",
    "voice_fallback_url": "Fallback URL",
    "voice_fallback_method": "Fallback method",
    "status_callback": "Status callback",
    "status_callback_method": "Status callback method",
}


@dataclass(frozen=True)
class NumberWebhooks:
    """Where a line's calls should go."""

    voice_url: str
    voice_fallback_url: str
    status_callback: str
    method: str = WEBHOOK_METHOD

    @classmethod
    def for_public_base(cls, public_base_url: str) -> NumberWebhooks:
        base = public_base_url_checked(public_base_url)
        return cls(
            voice_url=base + VOICE_PATHS["voice_url"],
            voice_fallback_url=base + VOICE_PATHS["voice_fallback_url"],
            status_callback=base + VOICE_PATHS["status_callback"],
        )

    def wanted(self) -> dict[str, str]:
        """Each IncomingNumber field and the value it should have."""
        return {
            "voice_url": self.voice_url,
            "voice_method": self.method,
            "voice_fallback_url": self.voice_fallback_url,
            "voice_fallback_method": self.method,
            "status_callback": self.status_callback,
            "status_callback_method": self.method,
        }


def public_base_url_checked(raw: str) -> str:
    """PUBLIC_BASE_URL without its trailing slash, or a clear error: Twilio must be able to
    reach it, so it is an absolute http(s) URL with a public host name."""
    text = raw.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"PUBLIC_BASE_URL must be an absolute URL like https://hotline.example.ru, got {raw!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"PUBLIC_BASE_URL must not have a query or fragment: {raw!r}")
    if _is_private_host(parts.hostname):
        raise ConfigurationError(
            f"PUBLIC_BASE_URL must be reachable by Twilio from the internet, got {raw!r}: "
            "use the public host name (a tunnel's, for a test set-up)"
        )
    return text.rstrip("/")


def _is_private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_unspecified


class Outcome(enum.Enum):
    UPDATED = "updated"
    UP_TO_DATE = "up to date"
    WOULD_UPDATE = "would update"
    NOT_FOUND = "not found"
    FAILED = "failed"

    @property
    def ok(self) -> bool:
        return self in (Outcome.UPDATED, Outcome.UP_TO_DATE, Outcome.WOULD_UPDATE)


@dataclass(frozen=True)
class FieldChange:
    field: str
    current: str | None
    new: str

    @property
    def label(self) -> str:
        return FIELD_LABELS.get(self.field, self.field)


@dataclass(frozen=True)
class LineResult:
    line: str
    label: str
    outcome: Outcome
    number: IncomingNumber | None = None
    changes: tuple[FieldChange, ...] = ()
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome.ok and self.problem is None


@dataclass(frozen=True)
class ProvisioningReport:
    dry_run: bool
    account_sid: str | None
    lines: tuple[LineResult, ...]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.lines)

    def render(self) -> str:
        """The report a person reads in a terminal."""
        out: list[str] = []
        if self.dry_run:
            out.append("Dry run: nothing is changed on Twilio.")
        for result in self.lines:
            out.extend(_render_line(result, self.account_sid))
        counts: dict[str, int] = {}
        for result in self.lines:
            counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        problems = sum(1 for result in self.lines if not result.ok)
        out.append(
            f"{len(self.lines)} line(s): {summary}"
            + (f"; {problems} need(s) attention" if problems else "")
            + "."
        )
        return "\n".join(out)


def _render_line(result: LineResult, account_sid: str | None) -> list[str]:
    name = f"{result.line} ({result.label})" if result.label != result.line else result.line
    number = result.number
    if result.outcome is Outcome.NOT_FOUND:
        where = f"Twilio account {account_sid}" if account_sid else "the Twilio account"
        return [
            f"{name}: NOT FOUND on {where}: buy or port the number into the account, "
            "or correct LINES"
        ]
    if result.outcome is Outcome.FAILED:
        sid = f" {number.sid}" if number else ""
        return [f"{name}{sid}: FAILED: {result.problem}"]
    assert number is not None
    out = [f"{name} {number.sid}: {result.outcome.value}"]
    width = max((len(change.label) for change in result.changes), default=0)
    for change in result.changes:
        current = change.current if change.current is not None else "(none)"
        out.append(f"    {change.label.ljust(width)}  {current} → {change.new}")
    if result.problem:
        out.append(f"    WARNING: {result.problem}")
    return out


def planned_changes(number: IncomingNumber, webhooks: NumberWebhooks) -> tuple[FieldChange, ...]:
    changes = []
    for name, new in webhooks.wanted().items():
        current: str | None = getattr(number, name)
        same = current is not None and (
            current.upper() == new if name.endswith("method") else current == new
        )
        if not same:
            changes.append(FieldChange(name, current, new))
    return tuple(changes)


def _override_problem(number: IncomingNumber) -> str | None:
    if number.trunk_sid:
        return (
            f"the number is on SIP trunk {number.trunk_sid}: Twilio routes its calls to the "
            "trunk, not to the Voice URL; detach it in the Twilio console"
        )
    if number.voice_application_sid:
        return (
            f"the number uses TwiML App {number.voice_application_sid}: Twilio sends its "
            "calls to the App's URLs, not to the Voice URL; detach it in the Twilio console"
        )
    return None


def provision_line(
    telephony: Telephony, line: str, label: str, webhooks: NumberWebhooks, *, dry_run: bool
) -> LineResult:
    """Find one line's number on the account and point it at our webhooks."""
    if not E164.fullmatch(line):
        return LineResult(
            line, label, Outcome.FAILED, problem="not an E.164 number (e.g. +78002506077)"
        )
    try:
        found = telephony.list_incoming_numbers(phone_number=line)
    except TelephonyNotConfigured:
        raise
    except TelephonyError as exc:
        return LineResult(line, label, Outcome.FAILED, problem=str(exc))
    if not found:
        return LineResult(line, label, Outcome.NOT_FOUND)
    number = found[0]
    changes = planned_changes(number, webhooks)
    problem = _override_problem(number)
    if not changes:
        return LineResult(line, label, Outcome.UP_TO_DATE, number, problem=problem)
    if dry_run:
        return LineResult(line, label, Outcome.WOULD_UPDATE, number, changes, problem)
    try:
        telephony.update_incoming_number(
            number.sid,
            voice_url=webhooks.voice_url,
            voice_fallback_url=webhooks.voice_fallback_url,
            status_callback=webhooks.status_callback,
            voice_method=webhooks.method,
        )
    except TelephonyNotConfigured:
        raise
    except TelephonyError as exc:
        return LineResult(line, label, Outcome.FAILED, number, changes, str(exc))
    return LineResult(line, label, Outcome.UPDATED, number, changes, problem)


def provision_numbers(
    telephony: Telephony,
    lines: Mapping[str, str],
    public_base_url: str,
    *,
    dry_run: bool,
    account_sid: str | None = None,
) -> ProvisioningReport:
    """Every line, each on its own; see the module docstring."""
    webhooks = NumberWebhooks.for_public_base(public_base_url)
    if not lines:
        raise ConfigurationError("no lines to provision: LINES is empty")
    results = tuple(
        provision_line(telephony, line, label, webhooks, dry_run=dry_run)
        for line, label in lines.items()
    )
    return ProvisioningReport(dry_run, account_sid, results)


def provision_from_settings(
    settings: Settings, telephony: Telephony, *, dry_run: bool
) -> ProvisioningReport:
    """`callcenter provision`: check the settings it needs first, then provision."""
    missing = [
        name
        for name, value in (
            ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
            ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
            ("PUBLIC_BASE_URL", settings.public_base_url),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError("provisioning needs these settings: " + ", ".join(missing))
    assert settings.public_base_url is not None
    return provision_numbers(
        telephony,
        settings.lines,
        settings.public_base_url,
        dry_run=dry_run,
        account_sid=settings.twilio_account_sid,
    )
