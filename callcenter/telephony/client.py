"""Twilio's REST API behind one small interface: SMS, outgoing calls, call recordings,
incoming numbers.

    Telephony              the Protocol the jobs and provisioning use
    ├── TwilioTelephony    the real adapter: the `twilio` client (and `requests` for media)
    └── OfflineTelephony   the embedded default when no Twilio account is configured

The embedded default does *not* pretend to send. A fresh clone has no Twilio account, and an
SMS that silently "succeeds" would tell a supervisor the caller was informed when nobody
was. So every `OfflineTelephony` call raises `TelephonyNotConfigured`: the SMS job records
the message as skipped ("Twilio is not configured"), recording downloads fall back to the
link, and `callcenter provision` says it needs credentials. Nothing is lost: the ticket
itself never depends on Twilio's REST API.

Failure policy (see `callcenter.errors`):

- `TelephonyUnavailable`: connection refused, timeouts, HTTP 5xx and 429, and a recording
  that is not there *yet* — Twilio documents that the media behind a `<Record>` action's
  `RecordingUrl` may take a moment to appear. Jobs retry these with backoff.
- `TelephonyRejected`: any other 4xx. Twilio's own message and error code are kept so the
  failed job shows a supervisor why; retrying the same request would not help.

`TWILIO_API_BASE_URL` (e.g. a Prism mock of Twilio's OpenAPI description) sends every
`*.twilio.com` request — REST and recording media alike — to that base URL instead, path
and query kept. The account's credentials are only ever sent to Twilio's hosts or to that
base URL, never to whatever host a recording URL names.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from callcenter.errors import (
    ConfigurationError,
    TelephonyError,
    TelephonyNotConfigured,
    TelephonyRejected,
    TelephonyUnavailable,
)
from callcenter.settings import Settings

ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")

# Twilio refuses longer bodies (error 21617); a Cyrillic SMS is 70 characters a segment.
SMS_MAX_CHARS = 1600

# Seconds to connect and to wait for an answer; a stuck request must not hold a worker.
DEFAULT_TIMEOUT = 10.0

NOT_CONFIGURED = "Twilio is not configured"

# `find_sms` reads the messages to a number newest first, a page at a time, until it is
# past the time asked about; more pages than this and it gives up rather than guess.
FIND_SMS_PAGE_SIZE = 100
FIND_SMS_MAX_PAGES = 10


@dataclass(frozen=True)
class IncomingNumber:
    """One of the account's phone numbers and where Twilio sends its calls.

    Empty strings from Twilio are `None` here: "not set" has one spelling.
    `voice_application_sid` or `trunk_sid`, when set, override the Voice URL on Twilio's
    side (the call goes to the TwiML App or the SIP trunk instead).
    """

    sid: str
    phone_number: str
    friendly_name: str | None = None
    voice_url: str | None = None
    voice_method: str | None = None
    voice_fallback_url: str | None = None
    voice_fallback_method: str | None = None
    status_callback: str | None = None
    status_callback_method: str | None = None
    voice_application_sid: str | None = None
    trunk_sid: str | None = None


class Telephony(Protocol):
    """What the service asks of Twilio's REST API."""

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        """Send an SMS to an E.164 number; returns Twilio's Message SID. With
        `status_callback` (an absolute URL), Twilio posts each later change of the
        message's status there (queued → sent → delivered / undelivered, or failed)."""
        ...

    def find_sms(
        self, to: str, body: str, *, created_since: datetime, created_before: datetime
    ) -> list[str]:
        """The SIDs of the outbound messages to `to` with exactly `body` that Twilio
        created between `created_since` and `created_before` (aware datetimes), oldest
        first: how a message whose create request got no answer is found again. Raises
        `TelephonyError` when the account's messages to `to` are too many to read through,
        or when one with this text carries no creation time."""
        ...

    def fetch_recording(self, recording_url: str) -> tuple[bytes, str]:
        """Download a call recording (as MP3): the bytes and their content type."""
        ...

    def place_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        timeout: int = 30,
    ) -> str:
        """Start an outgoing call (Calls API): Twilio fetches TwiML from `url` when it is
        answered and posts the call's progress to `status_callback`; returns the CallSid."""
        ...

    def list_incoming_numbers(self, phone_number: str | None = None) -> list[IncomingNumber]:
        """The account's incoming numbers, exactly `phone_number` when given."""
        ...

    def update_incoming_number(
        self,
        sid: str,
        *,
        voice_url: str,
        voice_fallback_url: str,
        status_callback: str,
        voice_method: str = "POST",
    ) -> IncomingNumber:
        """Point a number's calls at our webhooks (all three with `voice_method`)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class TwilioExchange:
    """One HTTP request the adapter made to Twilio (or its stand-in), and the answer.

    Handed to the `on_exchange` hook: tests assert on what Twilio would have received,
    operators can log it. `status` is None when no answer came (refused, timed out).
    """

    method: str
    url: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    auth_user: str | None
    status: int | None
    error: str | None = None


ExchangeHook = Callable[[TwilioExchange], None]


def _is_twilio_host(host: str | None) -> bool:
    return host is not None and (host == "twilio.com" or host.endswith(".twilio.com"))


def route_url(url: str, base: SplitResult | None) -> str:
    """Where a request for `url` really goes: a Twilio URL is moved onto `base` (keeping
    its path, after any path of `base`, and its query); any other URL is left alone."""
    parts = urlsplit(url)
    if base is None or not _is_twilio_host(parts.hostname):
        return url
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))


TWILIO_API_HOST = "api.twilio.com"
_RECORDING_PATH = re.compile(
    r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Recordings/(RE[0-9a-fA-F]{32})(\.mp3|\.wav)?"
)
# What `requests`/urllib3 read differently from `urlsplit` (a backslash ends the host for
# them), or what has no place in a URL Twilio sends: such a URL is refused, not repaired.
_UNSAFE_URL_CHARS = re.compile(r"[\\\x00-\x20\x7f]")

log = logging.getLogger(__name__)


def credentialed_recording_url(url: str, account_sid: str) -> str:
    """The URL of a recording's media that may carry the account's credentials, rebuilt
    from its checked parts: `https://api.twilio.com/2010-04-01/Accounts/<this account>/
    Recordings/RE…(.mp3|.wav)`. Anything else (another host or account, userinfo, a
    backslash, control characters, a query) raises `TelephonyRejected` and is logged.

    The host may only be Twilio's: a configured `TWILIO_API_BASE_URL` is applied after this
    (`route_url`), so a URL naming the stand-in's host is never trusted from a webhook.
    """

    def refuse(why: str) -> TelephonyRejected:
        log.warning("recording URL refused, credentials not sent (%s): %r", why, url[:200])
        return TelephonyRejected(
            f"not a Twilio recording URL of this account ({why}), credentials not sent: "
            f"{url[:200]!r}"
        )

    if _UNSAFE_URL_CHARS.search(url):
        raise refuse("backslash, space or control character")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise refuse("not https")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise refuse("user information in the host part")
    try:
        port = parts.port
    except ValueError:
        raise refuse("bad port") from None
    if parts.hostname != TWILIO_API_HOST or port not in (None, 443):
        raise refuse("host is not api.twilio.com")
    if parts.query or parts.fragment:
        raise refuse("query or fragment")
    found = _RECORDING_PATH.fullmatch(parts.path)
    if found is None:
        raise refuse("path is not a recording")
    if found.group(1) != account_sid:
        raise refuse("another account")
    suffix = found.group(3) or ".mp3"
    return urlunsplit(
        (
            "https",
            TWILIO_API_HOST,
            f"/2010-04-01/Accounts/{account_sid}/Recordings/{found.group(2)}{suffix}",
            "",
            "",
        )
    )


def _parse_base_url(api_base_url: str | None) -> SplitResult | None:
    if api_base_url is None:
        return None
    base = urlsplit(api_base_url.strip())
    if base.scheme not in ("http", "https") or not base.hostname:
        raise ConfigurationError(
            f"TWILIO_API_BASE_URL must be an http(s) URL like http://127.0.0.1:4010, "
            f"got {api_base_url!r}"
        )
    if base.query or base.fragment:
        raise ConfigurationError(
            f"TWILIO_API_BASE_URL must not have a query or fragment, got {api_base_url!r}"
        )
    return base


def _flatten(values: dict[str, object] | None) -> dict[str, str]:
    if not values:
        return {}
    return {
        key: ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        for key, value in values.items()
    }


class _RoutedHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
    """The `twilio` client's own HTTP client, moved onto `base` when one is set, with a
    timeout, reporting every exchange to `on_exchange`, and keeping the last error body
    per thread (Twilio's client drops it, but it holds the reason a supervisor needs)."""

    def __init__(
        self, *, base: SplitResult | None, timeout: float, on_exchange: ExchangeHook | None
    ) -> None:
        super().__init__(timeout=timeout)
        self._base = base
        self._on_exchange = on_exchange
        self._local = threading.local()

    @property
    def last_error_body(self) -> str | None:
        body: str | None = getattr(self._local, "error_body", None)
        return body

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        target = route_url(url, self._base)
        self._local.error_body = None
        try:
            response = super().request(
                method,
                target,
                params=params,
                data=data,
                headers=headers,
                auth=auth,
                timeout=timeout,
                allow_redirects=allow_redirects,
            )
        except requests.RequestException as exc:
            self._report(method, target, params, data, auth, None, str(exc))
            raise
        status = int(response.status_code)
        if status >= 400:
            self._local.error_body = str(response.text)
        self._report(method, target, params, data, auth, status, None)
        return response

    def _report(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None,
        data: dict[str, object] | None,
        auth: tuple[str, str] | None,
        status: int | None,
        error: str | None,
    ) -> None:
        if self._on_exchange is None:
            return
        self._on_exchange(
            TwilioExchange(
                method=method.upper(),
                url=url,
                path=urlsplit(url).path,
                query=_flatten(params),
                form=_flatten(data),
                auth_user=auth[0] if auth else None,
                status=status,
                error=error,
            )
        )


def _digits(number: object) -> str:
    """A number's digits: `+7 916 123-45-67` and `+79161234567` are one number."""
    return "".join(ch for ch in str(number or "") if ch.isdigit())


def _none_if_blank(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _incoming_number(record: Any) -> IncomingNumber:
    return IncomingNumber(
        sid=str(record.sid),
        phone_number=str(record.phone_number),
        friendly_name=_none_if_blank(record.friendly_name),
        voice_url=_none_if_blank(record.voice_url),
        voice_method=_none_if_blank(record.voice_method),
        voice_fallback_url=_none_if_blank(record.voice_fallback_url),
        voice_fallback_method=_none_if_blank(record.voice_fallback_method),
        status_callback=_none_if_blank(record.status_callback),
        status_callback_method=_none_if_blank(record.status_callback_method),
        voice_application_sid=_none_if_blank(record.voice_application_sid),
        trunk_sid=_none_if_blank(record.trunk_sid),
    )


def _problem_detail(body: str | None) -> str | None:
    """The reason in an error body: Twilio's `message`, or an RFC 9457 problem's detail and
    validation messages (what Prism answers for a request against the spec)."""
    if not body:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return body.strip()[:300] or None
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("message"), str):
        return str(payload["message"])
    messages = [
        str(item["message"])
        for item in payload.get("validation") or []
        if isinstance(item, dict) and item.get("message")
    ]
    if messages:
        return "; ".join(messages)
    detail = payload.get("detail") or payload.get("title")
    return str(detail) if detail else None


@dataclass(eq=False)
class TwilioTelephony:
    """The real adapter: Twilio's REST API through the official `twilio` client.

    `api_base_url` (settings `TWILIO_API_BASE_URL`) moves every request to a stand-in such
    as Prism; `sms_from` is an E.164 number of ours or a Messaging Service SID (`MG…`);
    `on_exchange` sees every request made (tests, diagnostics).
    """

    account_sid: str
    auth_token: str = field(repr=False)
    api_base_url: str | None = None
    sms_from: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    on_exchange: ExchangeHook | None = None

    def __post_init__(self) -> None:
        if not ACCOUNT_SID.fullmatch(self.account_sid):
            raise ConfigurationError(
                "TWILIO_ACCOUNT_SID must be 'AC' and 32 hex digits, "
                f"got {self.account_sid[:6]!r}… ({len(self.account_sid)} characters)"
            )
        if not self.auth_token:
            raise ConfigurationError("TWILIO_AUTH_TOKEN is empty")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        self._base = _parse_base_url(self.api_base_url)
        self._http = _RoutedHttpClient(
            base=self._base, timeout=self.timeout, on_exchange=self.on_exchange
        )
        self._client = Client(self.account_sid, self.auth_token, http_client=self._http)
        # Recording media is binary; the twilio client's responses are text only.
        self._media = requests.Session()

    def close(self) -> None:
        """Release the pooled connections (a worker keeps one adapter for its life)."""
        self._media.close()
        if self._http.session is not None:
            self._http.session.close()

    # ------------------------------------------------------------------ SMS

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        if len(body) > SMS_MAX_CHARS:
            raise TelephonyRejected(
                f"SMS body is {len(body)} characters; Twilio accepts at most {SMS_MAX_CHARS}"
            )
        options: dict[str, str] = {}
        if self.sms_from and MESSAGING_SERVICE_SID.fullmatch(self.sms_from):
            options["messaging_service_sid"] = self.sms_from
        elif self.sms_from:
            options["from_"] = self.sms_from
        if status_callback:
            # Twilio posts the message's later statuses there (our /webhooks/sms/status).
            options["status_callback"] = status_callback
        # A blank number is no number to Twilio (error 21604, "A 'To' phone number is
        # required"): leave the field out so the request says what it means.
        recipient = to.strip() or None
        message = self._call(
            "send an SMS", lambda: self._client.messages.create(to=recipient, body=body, **options)
        )
        sid = getattr(message, "sid", None)
        if not sid:
            raise TelephonyError("Twilio accepted the SMS but returned no Message SID")
        return str(sid)

    def find_sms(
        self, to: str, body: str, *, created_since: datetime, created_before: datetime
    ) -> list[str]:
        # Twilio's Message list, filtered by To, newest first by DateSent
        # (https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources).
        # Page by page (`list()` would read every page there is) until a page holds a
        # message sent before `created_since`: every later page was sent before it, so
        # created before it too. (A page may hold messages created long ago and sent
        # after ours, scheduled ones: their creation times say nothing of what follows.
        # Where Twilio lists a message never sent is not documented; ours, if never sent,
        # may be missed and sent again.) Every field is compared here as well, the filter
        # included: the answer is only trusted for what it says about each message.
        digits = _digits(to)
        found: list[tuple[datetime, str]] = []
        page = self._call(
            f"look up the SMS sent to {to}",
            lambda: self._client.messages.page(to=to, page_size=FIND_SMS_PAGE_SIZE),
        )
        for read in range(1, FIND_SMS_MAX_PAGES + 1):
            oldest_sent: datetime | None = None
            for message in page:
                ours = (
                    message.sid
                    and _digits(message.to) == digits
                    and message.body == body
                    and str(message.direction or "").startswith("outbound")
                )
                sent = message.date_sent
                if isinstance(sent, datetime):
                    oldest_sent = sent if oldest_sent is None else min(oldest_sent, sent)
                created = message.date_created
                if not isinstance(created, datetime):
                    if ours:
                        raise TelephonyError(
                            f"a message to {to} with this text ({message.sid}) has no "
                            "creation time: whether it is this one cannot be told"
                        )
                    continue
                if ours and created_since <= created <= created_before:
                    found.append((created, str(message.sid)))
            if (oldest_sent is not None and oldest_sent < created_since) or not page.next_page_url:
                return [sid for _, sid in sorted(found)]
            if read < FIND_SMS_MAX_PAGES:
                page = self._call(f"look up the SMS sent to {to}", page.next_page)
        raise TelephonyError(
            f"more than {FIND_SMS_MAX_PAGES * FIND_SMS_PAGE_SIZE} messages to {to} since "
            f"{created_since:%Y-%m-%d %H:%M} UTC: not read through"
        )

    # ---------------------------------------------------------------- calls

    def place_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        timeout: int = 30,
    ) -> str:
        call = self._call(
            "place a call",
            lambda: self._client.calls.create(
                to=to,
                from_=from_,
                url=url,
                method="POST",
                status_callback=status_callback,
                status_callback_method="POST",
                # Twilio's default StatusCallbackEvent: `completed` only — how the leg
                # ended (completed, busy, no-answer, failed, canceled); its answer shows
                # as the request for `url`.
                timeout=timeout,
            ),
        )
        sid = getattr(call, "sid", None)
        if not sid:
            raise TelephonyError("Twilio accepted the call but returned no Call SID")
        return str(sid)

    # ------------------------------------------------------------ recordings

    def fetch_recording(self, recording_url: str) -> tuple[bytes, str]:
        url = route_url(credentialed_recording_url(recording_url, self.account_sid), self._base)
        auth = (self.account_sid, self.auth_token)
        try:
            # A redirect would carry the credentials on to wherever it points: never followed.
            response = self._media.get(url, auth=auth, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            self._report_media(url, None, str(exc))
            raise TelephonyUnavailable(f"could not download the recording: {exc}") from exc
        self._report_media(url, response.status_code, None)
        status = response.status_code
        if 300 <= status < 400:
            raise TelephonyRejected(
                f"the recording URL redirected (HTTP {status}); not followed with credentials",
                status=status,
            )
        if status == 404 or status == 429 or status >= 500:
            raise TelephonyUnavailable(
                f"recording not available (HTTP {status}); Twilio may still be processing it"
                if status == 404
                else f"Twilio could not serve the recording (HTTP {status})"
            )
        if status >= 400:
            detail = _problem_detail(response.text) or response.reason
            raise TelephonyRejected(
                f"Twilio refused the recording download: {detail} (HTTP {status})", status=status
            )
        content_type = response.headers.get("Content-Type", "audio/mpeg").split(";")[0].strip()
        if not (content_type.startswith("audio/") or content_type == "application/octet-stream"):
            raise TelephonyRejected(
                f"the recording URL answered {content_type!r}, not audio", status=status
            )
        if not response.content:
            raise TelephonyUnavailable("the recording is empty; Twilio may still be processing it")
        return response.content, content_type

    def _report_media(self, url: str, status: int | None, error: str | None) -> None:
        if self.on_exchange is not None:
            self.on_exchange(
                TwilioExchange(
                    method="GET",
                    url=url,
                    path=urlsplit(url).path,
                    query={},
                    form={},
                    auth_user=self.account_sid,
                    status=status,
                    error=error,
                )
            )

    # ------------------------------------------------------- incoming numbers

    def list_incoming_numbers(self, phone_number: str | None = None) -> list[IncomingNumber]:
        if phone_number is None:
            records = self._call(
                "list the incoming numbers", lambda: self._client.incoming_phone_numbers.list()
            )
        else:
            records = self._call(
                f"look up {phone_number}",
                lambda: self._client.incoming_phone_numbers.list(phone_number=phone_number),
            )
        numbers = [_incoming_number(record) for record in records]
        if phone_number is None:
            return numbers
        # Twilio's PhoneNumber filter matches a pattern (part of a number will do).
        return [n for n in numbers if n.phone_number == phone_number]

    def update_incoming_number(
        self,
        sid: str,
        *,
        voice_url: str,
        voice_fallback_url: str,
        status_callback: str,
        voice_method: str = "POST",
    ) -> IncomingNumber:
        record = self._call(
            f"update {sid}",
            lambda: self._client.incoming_phone_numbers(sid).update(
                voice_url=voice_url,
                voice_method=voice_method,
                voice_fallback_url=voice_fallback_url,
                voice_fallback_method=voice_method,
                status_callback=status_callback,
                status_callback_method=voice_method,
            ),
        )
        return _incoming_number(record)

    # ------------------------------------------------------------- plumbing

    def _call(self, what: str, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except requests.Timeout as exc:
            raise TelephonyUnavailable(f"Twilio did not answer in time to {what}: {exc}") from exc
        except requests.RequestException as exc:
            raise TelephonyUnavailable(f"could not reach Twilio to {what}: {exc}") from exc
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._translate(what, exc) from exc
        except TwilioException as exc:
            raise TelephonyError(f"Twilio client error while trying to {what}: {exc}") from exc

    def _translate(
        self, what: str, exc: TwilioRestException | TwilioServiceException
    ) -> TelephonyError:
        status = int(exc.status)
        code = exc.code if isinstance(exc.code, int) else None
        detail = _problem_detail(self._http.last_error_body)
        if isinstance(exc, TwilioServiceException):
            detail = detail or exc.detail or exc.title
        reason = detail or str(getattr(exc, "msg", "")) or "no reason given"
        suffix = f"HTTP {status}" + (f", Twilio error {code}" if code and code != status else "")
        message = f"Twilio refused to {what}: {reason} ({suffix})"
        if status == 429 or status >= 500:
            return TelephonyUnavailable(message)
        return TelephonyRejected(message, status=status, code=code)


@dataclass(frozen=True)
class OfflineTelephony:
    """The embedded default with no Twilio account: refuses, loudly and by name."""

    hint: str = "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"

    def _refuse(self) -> TelephonyNotConfigured:
        return TelephonyNotConfigured(f"{NOT_CONFIGURED} ({self.hint})")

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        raise self._refuse()

    def find_sms(
        self, to: str, body: str, *, created_since: datetime, created_before: datetime
    ) -> list[str]:
        raise self._refuse()

    def fetch_recording(self, recording_url: str) -> tuple[bytes, str]:
        raise self._refuse()

    def place_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        timeout: int = 30,
    ) -> str:
        raise self._refuse()

    def list_incoming_numbers(self, phone_number: str | None = None) -> list[IncomingNumber]:
        raise self._refuse()

    def update_incoming_number(
        self,
        sid: str,
        *,
        voice_url: str,
        voice_fallback_url: str,
        status_callback: str,
        voice_method: str = "POST",
    ) -> IncomingNumber:
        raise self._refuse()

    def close(self) -> None:
        """Nothing to release."""


def build_telephony(settings: Settings, *, on_exchange: ExchangeHook | None = None) -> Telephony:
    """The real adapter when the account is configured, else the embedded default."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if not sid and not token:
        return OfflineTelephony()
    if not sid or not token:
        missing = "TWILIO_AUTH_TOKEN" if sid else "TWILIO_ACCOUNT_SID"
        raise ConfigurationError(
            f"TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN go together; {missing} is not set"
        )
    return TwilioTelephony(
        sid,
        token,
        settings.twilio_api_base_url,
        sms_from=settings.sms_from,
        on_exchange=on_exchange,
    )
