"""The simulator's HTTP, served by a WSGI app in this process.

`callcenter demo seed` plays calls through the real webhooks without a server: each
request the simulator makes goes to the app as werkzeug would deliver it over a socket
(the same environ, the same signature check). Before a request, an optional hook moves
the clock the app runs on (`before_request`), so a call in the past takes the time it
would have taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from werkzeug.test import EnvironBuilder

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WsgiResponse:
    """What the simulator reads of a response (the part of `requests.Response` it uses)."""

    def __init__(self, status: str, content: bytes, headers: dict[str, str]) -> None:
        self.status_code = int(status.split()[0])
        self.content = content
        self.headers = headers


class WsgiHttp:
    """A stand-in for `requests.Session` that calls `app` in this thread."""

    def __init__(
        self,
        app: WsgiApp,
        base_url: str,
        *,
        before_request: Callable[[str, dict[str, str]], None] | None = None,
        after_response: Callable[[WsgiResponse], None] | None = None,
    ) -> None:
        self.app = app
        self.base_url = base_url.rstrip("/")
        self.before_request = before_request
        self.after_response = after_response

    def request(
        self,
        method: str,
        url: str,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> WsgiResponse:
        if self.before_request is not None:
            self.before_request(url, data or {})
        parts = urlsplit(url)
        environ = EnvironBuilder(
            path=parts.path,
            query_string=parts.query,
            method=method,
            data=data,
            base_url=self.base_url,
            headers=list((headers or {}).items()),
        ).get_environ()
        statuses: list[str] = []
        reply_headers: dict[str, str] = {}

        def start_response(status: str, hdrs: list[tuple[str, str]], exc: Any = None) -> None:
            statuses.append(status)
            reply_headers.update(hdrs)

        body = self.app(environ, start_response)
        try:
            content = b"".join(body)
        finally:
            # As a WSGI server does: the app's after-response work runs here.
            close = getattr(body, "close", None)
            if close is not None:
                close()
        response = WsgiResponse(statuses[0] if statuses else "500", content, reply_headers)
        if self.after_response is not None:
            self.after_response(response)
        return response
