"""`HttpPortal`: the customer's portal over the REST contract in `openapi.yaml`.

Every create carries the draft's idempotency key (the CallSid) in `Idempotency-Key`, so a
job retried after a timeout gets the ticket the first try made, never a second one.

How answers become exceptions (the job decides retry vs. failed from the class alone):

    connection refused/reset, DNS, timeouts      → PortalUnavailable   (retry)
    5xx, 408 Request Timeout, 429 Too Many       → PortalUnavailable   (retry)
    a 2xx whose body is not a ticket             → PortalUnavailable   (retry)
    404 on a ticket's own URL                    → TicketNotFound
    409                                          → InvalidStatusChange (PortalRejected)
    422 with field errors                        → InvalidTicketData   (PortalRejected)
    any other 3xx/4xx (401, 403, 404 on create…) → PortalRejected      (failed, visible)

The adapter never retries by itself: the job that calls it owns the retry policy
(backoff, last try, `failed`), so one place decides how long a ticket may wait.

A malformed 2xx is treated as transient on purpose: it is what a proxy in trouble or a
half-deployed portal sends, and repeating is harmless because creates are idempotent; a
portal that keeps doing it exhausts the job's retries and the request turns `failed`
with the reason. Rejections carry the portal's own message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from callcenter.clock import as_utc
from callcenter.errors import (
    InvalidStatusChange,
    InvalidTicketData,
    PortalRejected,
    PortalUnavailable,
    TicketNotFound,
)
from callcenter.portal import wire
from callcenter.portal.protocol import (
    AffectedOrganisation,
    IncidentLink,
    TicketDraft,
    TicketView,
)

USER_AGENT = "callcenter-portal-client/1"
_TRANSIENT_4XX = {408, 425, 429}
T = TypeVar("T")


class HttpPortal:
    """`Portal` over HTTP. `base_url` is the API root, e.g. `https://portal/api/v1`."""

    reads_own_database = False

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: tuple[float, float] = (3.05, 10),
        session: requests.Session | None = None,
        *,
        ticket_url_template: str | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"portal base_url must be an http(s) URL, got {base_url!r}")
        connect, read = timeout
        if connect <= 0 or read <= 0:
            raise ValueError(f"portal timeouts must be positive seconds, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token
        if ticket_url_template is not None and "{number}" not in ticket_url_template:
            raise ValueError(
                f"the portal's ticket page URL needs a {{number}}, got {ticket_url_template!r}"
            )
        self._ticket_url_template = ticket_url_template
        self._owns_session = session is None
        self._session = session or requests.Session()

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # ------------------------------------------------------------ the Portal protocol

    def create_ticket(self, draft: TicketDraft) -> TicketView:
        return self._call(
            "POST",
            "/tickets",
            body=wire.draft_to_json(draft),
            idempotency_key=draft.idempotency_key,
        )

    def get_ticket(self, number: str, *, history: bool = True) -> TicketView:
        # The contract's ticket always carries its history: `history` changes nothing here.
        return self._call("GET", self._ticket_path(number), ticket=number)

    def add_entry(
        self,
        number: str,
        *,
        text: str | None = None,
        attachment_url: str | None = None,
        attachment_name: str | None = None,
        author: str | None = None,
        dedup_key: str | None = None,
    ) -> TicketView:
        body = {
            "text": text,
            "attachment_url": attachment_url,
            "attachment_name": attachment_name,
            "author": author,
        }
        return self._call(
            "POST",
            self._ticket_path(number) + "/entries",
            body={k: v for k, v in body.items() if v is not None},
            idempotency_key=dedup_key,
            ticket=number,
        )

    def record_phone_duplicate(
        self, number: str, *, at: datetime, caller: str | None, call_ref: str | None
    ) -> TicketView:
        body = {"at": wire.time_to_json(as_utc(at)), "caller": caller, "call_ref": call_ref}
        return self._call(
            "POST",
            self._ticket_path(number) + "/phone-duplicates",
            body={k: v for k, v in body.items() if v is not None},
            ticket=number,
        )

    def open_tickets(
        self,
        *,
        contact_id: int | None = None,
        caller: str | None = None,
        limit: int = 3,
        history: bool = True,
    ) -> tuple[TicketView, ...]:
        if contact_id is None and caller is None:
            return ()
        query: dict[str, str] = {"status": "open", "limit": str(limit)}
        if contact_id is not None:
            query["contact_id"] = str(contact_id)
        if caller is not None:
            query["caller"] = caller
        return self._list("/tickets", query)

    def add_affected_organisations(
        self,
        number: str,
        organisations: Sequence[AffectedOrganisation],
        *,
        author: str | None = None,
    ) -> TicketView:
        return self._call(
            "POST",
            self._ticket_path(number) + "/affected-organisations",
            body=wire.affected_to_json(list(organisations), author),
            ticket=number,
        )

    def link_incident(
        self, number: str, link: IncidentLink, *, author: str | None = None
    ) -> TicketView:
        return self._call(
            "POST",
            self._ticket_path(number) + "/incidents",
            body=wire.incident_to_json(link, author),
            ticket=number,
        )

    def ticket_url(self, number: str) -> str | None:
        """The ticket's page for a human (PORTAL_TICKET_URL), or None: the REST resource
        under PORTAL_URL is JSON behind a token, no page to link to."""
        if self._ticket_url_template is None:
            return None
        return self._ticket_url_template.replace("{number}", quote(number, safe=""))

    # ------------------------------------------------------------ the wire

    @staticmethod
    def _ticket_path(number: str) -> str:
        return f"/tickets/{quote(number, safe='')}"

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        ticket: str | None = None,
    ) -> TicketView:
        return self._exchange(
            method,
            path,
            wire.view_from_json,
            "a ticket",
            body=body,
            idempotency_key=idempotency_key,
            ticket=ticket,
        )

    def _list(self, path: str, params: dict[str, str]) -> tuple[TicketView, ...]:
        return self._exchange("GET", path, wire.views_from_json, "a list of tickets", params=params)

    def _exchange(
        self,
        method: str,
        path: str,
        parse: Callable[[object], T],
        shape: str,
        *,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        ticket: str | None = None,
        params: dict[str, str] | None = None,
    ) -> T:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        url = self.base_url + path
        where = f"{method} {url}"
        try:
            response = self._session.request(
                method,
                url,
                json=body,
                params=params,
                headers=headers,
                timeout=self.timeout,
                # A redirected POST turns into a GET: refuse rather than follow.
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise PortalUnavailable(f"{where}: no answer within {self.timeout}s") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            raise PortalRejected(f"{where}: unusable portal URL ({exc})") from exc
        except requests.RequestException as exc:
            raise PortalUnavailable(f"{where}: {exc.__class__.__name__}: {exc}") from exc
        with response:
            return self._answer(response, where, ticket, parse, shape)

    def _answer(
        self,
        response: requests.Response,
        where: str,
        ticket: str | None,
        parse: Callable[[object], T],
        shape: str,
    ) -> T:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return parse(response.json())
            except (ValueError, wire.MalformedTicket) as exc:
                raise PortalUnavailable(
                    f"{where}: {status} but the body is not {shape} ({exc}): " + _excerpt(response)
                ) from exc
        message = _error_message(response)
        said = f"{where}: {status}: {message}"
        if status >= 500 or status in _TRANSIENT_4XX:
            raise PortalUnavailable(said)
        if status == 404 and ticket is not None:
            raise TicketNotFound(f"ticket {ticket} not found ({message})")
        if status == 409:
            raise InvalidStatusChange(said)
        if status == 422:
            fields = _error_fields(response)
            if fields:
                raise InvalidTicketData(fields, said)
        if 300 <= status < 400:
            location = response.headers.get("Location", "?")
            raise PortalRejected(f"{said} (redirected to {location}; check PORTAL_URL)")
        raise PortalRejected(said)


def _error_body(response: requests.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error: dict[str, Any] = data["error"]
        return error
    return None


def _error_message(response: requests.Response) -> str:
    error = _error_body(response)
    if error is not None and isinstance(error.get("message"), str):
        return str(error["message"])
    return _excerpt(response) or response.reason or "no message"


def _error_fields(response: requests.Response) -> dict[str, str]:
    error = _error_body(response)
    fields = error.get("fields") if error else None
    if not isinstance(fields, dict):
        return {}
    return {str(k): str(v) for k, v in fields.items()}


def _excerpt(response: requests.Response) -> str:
    return " ".join(response.text[:200].split())
