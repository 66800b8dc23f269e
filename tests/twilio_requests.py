"""Posting Twilio webhooks the way Twilio does: captured payloads, signed with the account's
auth token by `twilio.request_validator.RequestValidator` over the public URL.

- `fixture(name, **changes)` loads `tests/fixtures/twilio/<name>.json` (real-shaped
  payloads: incoming call, gather with Digits or SpeechResult, record action, recording and
  call status callbacks, dial action, fallback).
- `signature(url, params)` and `signed_post(client, path, params)` sign and post to the Flask
  test client; `signed_http_post(base_url, path, params)` does it over real HTTP.
- `TwilioCall` follows our TwiML like Twilio: answers the current `<Gather>`, `<Record>`
  or `<Redirect>` and keeps the parsed reply (`xml.etree.ElementTree`).
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from tests.conftest import TEST_AUTH_TOKEN, TEST_PUBLIC_BASE

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "twilio"


def fixture(name: str, **changes: str | None) -> dict[str, str]:
    """A captured payload with some parameters changed (None removes one)."""
    params: dict[str, str] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


def signature(url: str, params: Mapping[str, str], token: str = TEST_AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def _path_of(url_or_path: str) -> str:
    parts = urlsplit(url_or_path)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def signed_post(
    client: Any,
    url_or_path: str,
    params: Mapping[str, str],
    *,
    token: str = TEST_AUTH_TOKEN,
    public_base: str = TEST_PUBLIC_BASE,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """POST `params` to the Flask test client, signed for `public_base` + path."""
    path = _path_of(url_or_path)
    all_headers = {"X-Twilio-Signature": signature(public_base + path, params, token)}
    all_headers.update(headers or {})
    return client.post(path, data=dict(params), headers=all_headers)


def signed_http_post(
    session: Any,
    base_url: str,
    url_or_path: str,
    params: Mapping[str, str],
    *,
    token: str = TEST_AUTH_TOKEN,
    public_base: str | None = None,
    timeout: float = 10,
) -> Any:
    """POST over real HTTP (a `requests.Session`) to `base_url` + path, signed for
    `public_base` (default: `base_url`)."""
    path = _path_of(url_or_path)
    sig = signature((public_base or base_url) + path, params, token)
    return session.post(
        base_url + path, data=dict(params), headers={"X-Twilio-Signature": sig}, timeout=timeout
    )


def parse_twiml(response: Any) -> ET.Element:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    body = response.get_data()
    response.close()  # as a WSGI server does: runs the view's after-response work
    root = ET.fromstring(body)
    assert root.tag == "Response"
    return root


def said(root: ET.Element) -> str:
    """Everything the caller hears in a reply, `<Say>` texts joined by spaces."""
    return " ".join((el.text or "") for el in root.iter("Say"))


class TwilioCall:
    """One caller, driven through the IVR the way Twilio would."""

    def __init__(
        self,
        client: Any,
        *,
        caller: str = "+79161234567",
        line: str = "+78002506077",
        call_sid: str | None = None,
        token: str = TEST_AUTH_TOKEN,
    ) -> None:
        self.client = client
        self.token = token
        self.call_sid = call_sid or new_call_sid()
        self.caller = caller
        self.line = line
        self.twiml: ET.Element | None = None
        self.heard: list[str] = []

    def params(self, name: str, **changes: str | None) -> dict[str, str]:
        return fixture(
            name,
            CallSid=self.call_sid,
            From=self.caller,
            Caller=self.caller,
            To=self.line,
            Called=self.line,
            **changes,
        )

    def _post(self, path: str, params: Mapping[str, str]) -> ET.Element:
        response = signed_post(self.client, path, params, token=self.token)
        self.twiml = parse_twiml(response)
        self.heard.append(said(self.twiml))
        return self.twiml

    def start(self) -> ET.Element:
        return self._post("/webhooks/voice/incoming", self.params("incoming_call"))

    def _only(self, tag: str) -> ET.Element:
        assert self.twiml is not None
        found = self.twiml.find(tag)
        assert found is not None, f"no <{tag}> in {ET.tostring(self.twiml, encoding='unicode')}"
        return found

    def gather_action(self) -> str:
        return self._only("Gather").attrib["action"]

    def press(self, keys: str) -> ET.Element:
        """Answer the current `<Gather>` with keys, as Twilio's <Gather> documents
        (https://www.twilio.com/docs/voice/twiml/gather): input ends at the finish key
        (default "#"), which is never part of `Digits`, or once `numDigits` keys are in;
        no digits at all (only the finish key) is no input — Twilio goes on to the next
        verb, or with `actionOnEmptyResult="true"` posts an empty result to the action."""
        gather = self._only("Gather")
        finish = gather.attrib.get("finishOnKey", "#")
        limit = int(gather.attrib.get("numDigits", "0"))
        digits, finished_on = "", ""
        for key in keys:
            if finish and key in finish:
                finished_on = key
                break
            digits += key
            if limit and len(digits) >= limit:
                break
        if not digits:
            if gather.attrib.get("actionOnEmptyResult") == "true":
                empty = self.params("gather_digits", Digits=None, FinishedOnKey=None)
                return self._post(gather.attrib["action"], empty)
            return self.silence()
        params = self.params("gather_digits", Digits=digits, FinishedOnKey=finished_on)
        return self._post(gather.attrib["action"], params)

    def say(self, text: str, confidence: str = "0.87") -> ET.Element:
        action = self.gather_action()
        params = self.params("gather_speech", SpeechResult=text, Confidence=confidence)
        return self._post(action, params)

    def silence(self) -> ET.Element:
        """No answer: Twilio goes on to the `<Redirect>` after the `<Gather>`/`<Record>`."""
        return self.follow_redirect()

    def follow_redirect(self) -> ET.Element:
        redirect = self._only("Redirect")
        assert redirect.attrib.get("method") == "POST"
        return self._post(redirect.text or "", self.params("redirect"))

    def record(
        self, *, sid: str | None = None, duration: str = "42", digits: str = "#"
    ) -> ET.Element:
        action = self._only("Record").attrib["action"]
        recording_sid = sid or "RE" + uuid.uuid4().hex
        url = f"https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/{recording_sid}"
        params = self.params(
            "record_action",
            RecordingSid=recording_sid,
            RecordingUrl=url,
            RecordingDuration=duration,
            Digits=digits,
        )
        return self._post(action, params)

    def status(self, status: str, sequence: int, **changes: str | None) -> Any:
        name = {"ringing": "status_ringing", "in-progress": "status_in_progress"}.get(
            status, "status_completed"
        )
        params = self.params(name, CallStatus=status, SequenceNumber=str(sequence), **changes)
        return signed_post(self.client, "/webhooks/voice/status", params, token=self.token)

    def hang_up(self, sequence: int = 2, duration: str = "95") -> Any:
        return self.status("completed", sequence, CallDuration=duration)
