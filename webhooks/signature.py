"""`@twilio_signed`: every Twilio webhook proves it comes from Twilio.

Twilio signs each request with the account's auth token over the full URL it requested and
the POST parameters (`X-Twilio-Signature`); `twilio.request_validator.RequestValidator`
checks it. The URL must be the one Twilio used, not the one this process sees behind a
proxy or tunnel:

- with `PUBLIC_BASE_URL` set: that base + the request's path + its query string;
- without it: the request URL as the app sees it. The `X-Forwarded-*` headers count only
  through the `TRUSTED_PROXIES` hops the app's ProxyFix believes (see `callcenter.web`);
  with none configured they are ignored, so a client cannot claim the URL another
  host's signature was made for.

A missing or wrong signature gets 403 and a log line. `VALIDATE_TWILIO_SIGNATURES=false`
turns the check off for local experiments; the settings refuse that in production mode.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Request, Response, request
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from callcenter.web import services

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def public_url(req: Request, public_base_url: str | None) -> str:
    """The URL Twilio requested (and signed) for `req`."""
    if public_base_url:
        url = public_base_url.rstrip("/") + req.path
        query = req.query_string.decode("latin-1")
        return f"{url}?{query}" if query else url
    return req.url


def signature_problem(req: Request) -> str | None:
    """Why `req` is not a valid Twilio request, or None when it is (or checks are off)."""
    settings = services().settings
    if not settings.validate_signatures:
        return None
    signature = req.headers.get(SIGNATURE_HEADER)
    if not signature:
        return "missing X-Twilio-Signature"
    token = settings.webhook_signing_token
    if not token:
        return "TWILIO_AUTH_TOKEN is not set: cannot check X-Twilio-Signature"
    url = public_url(req, settings.public_base_url)
    algorithm = get_signature_algorithm(req.headers.get(SIGNATURE_SETTINGS_HEADER))
    validator = _validator(token)
    if _signed_for(validator, url, req.form, signature, algorithm):
        return None
    # The validator also tries the URL with and without its default port (Twilio's own
    # signing is inconsistent there); only a request that did not match the URL as we
    # know it pays for those.
    if not validator.validate(url, req.form, signature, algorithm):
        return f"X-Twilio-Signature does not match {url}"
    return None


@functools.lru_cache(maxsize=4)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def _signed_for(
    validator: RequestValidator, url: str, form: Any, signature: str, algorithm: str | None
) -> bool:
    """Whether `signature` is the one for exactly `url` and `form` (one HMAC)."""
    try:
        expected = validator.compute_signature(url, form, algorithm)
    except ValueError:  # an algorithm this twilio does not know: `validate` says why
        return False
    return hmac.compare_digest(expected.encode(), signature.encode())


def _has_nul(req: Request) -> bool:
    if "\x00" in req.path:
        return True
    # The query string decoded (`?call=%00` is a NUL once parsed), then the form.
    return any(
        "\x00" in key or "\x00" in value
        for params in (req.args, req.form)
        for key, value in params.items(multi=True)
    )


def twilio_signed(view: F) -> F:
    """Refuse (403) a request that does not carry Twilio's valid signature."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        problem = signature_problem(request)
        if problem is not None:
            log.warning(
                "refused %s %s from %s: %s",
                request.method,
                request.path,
                request.remote_addr,
                problem,
                extra={"call_sid": request.form.get("CallSid")},
            )
            return Response("Forbidden: invalid Twilio signature\n", 403, mimetype="text/plain")
        if _has_nul(request):
            # Twilio never sends NUL; PostgreSQL cannot store it. Refuse, do not half-store.
            log.warning("refused %s %s: NUL byte in the parameters", request.method, request.path)
            return Response("Bad Request: NUL byte in the parameters\n", 400, mimetype="text/plain")
        return view(*args, **kwargs)

    return cast(F, checked)
