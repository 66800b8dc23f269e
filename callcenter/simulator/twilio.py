"""A call simulator: a faithful Twilio stand-in that drives the running service over HTTP.

It does what Twilio does with a call to one of our numbers, and nothing else: a signed
form POST to the Voice URL (`/webhooks/voice/incoming`) with Twilio's parameters, then the
returned TwiML executed verb by verb —

* `<Say>`/`<Play>` are printed as the caller hears them, `<Pause>` is noted (virtual time;
  really sleeping is optional);
* `<Gather>` takes the script's next answer (keys → `Digits`, speech → `SpeechResult` and
  `Confidence`) and posts it to the `action` (resolved against the current URL, default the
  current URL, with the verb's method). The finish key is never part of `Digits`. No
  input — silence, or only the finish key — falls through to the verbs after the Gather,
  as Twilio does, unless `actionOnEmptyResult="true"` (then the action gets an empty
  result, no `Digits`: the same as silence);
  keys on a speech-only Gather (and speech on a keys-only one) are not heard;
* `<Record>` posts `RecordingUrl`, `RecordingSid`, `RecordingDuration` and `Digits` to its
  action and then the `recordingStatusCallback` (`RecordingStatus=completed`); an empty
  recording (0 s) posts nothing and falls through; a caller hanging up while recording
  still posts the action, with `Digits=hangup`;
* `<Redirect>` is followed; `<Hangup>`/`<Reject>` end the call;
* `<Dial>` rings its `<Number>`s (all at once, as Twilio does) and plays each dialled
  person from the script: whoever answers first hears the `<Number url>` whisper as a child
  call (`Direction=outbound-dial`, `ParentCallSid`) and reacts (`accepted` presses 1,
  `voicemail` never presses anything, `declined` hangs up), the `<Number statusCallback>`
  events are posted (or, with `late_callbacks`, held back and posted after the Dial
  action, newest first: Twilio does not promise their order), and then the Dial `action`
  with `DialCallStatus`, `DialCallSid`,
  `DialCallDuration` and `DialBridged`. A whisper that runs to its end without hanging up
  bridges the call — whoever answered, a voicemail included — exactly as on Twilio.

At the end (or when the caller hangs up mid-flow) it posts the call's final status callback
(`CallStatus=completed`, `CallDuration`, `SequenceNumber`, `Timestamp`) to
`/webhooks/voice/status`, and can fetch the resulting call record from `/api/calls`.

Every request is signed with `X-Twilio-Signature` over the URL the service will see: the
public base URL (`PUBLIC_BASE_URL`) when the service sits behind a proxy, else `base_url`.
The core is independent of click; `callcenter simulate` is a thin command over it.
"""

from __future__ import annotations

import math
import secrets
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlencode, urljoin

import phonenumbers
import requests
from twilio.request_validator import RequestValidator

from callcenter.clock import Clock, system_clock
from callcenter.errors import SimulationError
from callcenter.simulator.script import (
    ANSWERING_RESULTS,
    Answer,
    CallScript,
    DialResult,
    ScriptCursor,
)
from callcenter.vocabulary import FALLBACK_PATH, INCOMING_PATH, STATUS_PATH

API_VERSION = "2010-04-01"
# Any well-formed account works: the service only checks the signature (made with the
# auth token), and the SID's shape is what Twilio's own tools validate.
SIMULATOR_ACCOUNT_SID = "AC" + "c0ffee00" * 4
USER_AGENT = "TwilioProxy/1.1 (callcenter simulator)"
# Twilio's apology when our service answers with an error or not with TwiML.
TWILIO_APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
# A speaker reads about 14 characters a second: the virtual call clock and the speech figures.
CHARS_PER_SECOND = 14

Who = Literal["service", "caller", "whisper", "callee", "note", "error"]


@dataclass(frozen=True)
class Line:
    """One line of the conversation: who speaks or acts, and what."""

    who: Who
    text: str

    def render(self) -> str:
        if self.who == "service":
            return f"АВТООТВЕТЧИК: {self.text}"
        if self.who == "caller":
            return f"АБОНЕНТ: {self.text}"
        if self.who == "whisper":
            return f"    ШЁПОТ СОТРУДНИКУ {self.text}"
        if self.who == "callee":
            return f"    СОТРУДНИК {self.text}"
        if self.who == "error":
            return f"  ✖ {self.text}"
        return f"  · {self.text}"


@dataclass(frozen=True)
class SentRequest:
    """A request the simulator made, as the service received it."""

    # incoming, fallback, gather, record, recording-status, redirect, dial-action, status;
    # on a dialled person's leg: whisper, whisper-gather, whisper-redirect, number-status.
    kind: str
    method: str
    url: str  # the public URL, the one signed
    sent_to: str  # where it actually went (differs behind a proxy)
    params: dict[str, str]
    signature: str
    status: int
    body: str


@dataclass
class SpeechCount:
    """How much the caller had to listen to: characters of `<Say>` on the caller's leg.

    `before_ring`: from the first word to the first `<Dial>` (None: nothing was dialled).
    `blind`: each stretch of speech heard outside a `<Gather>`, when no key or word could
    act, counted up to the next chance to answer (or the end of the call).
    """

    total: int = 0
    before_ring: int | None = None
    blind: list[int] = field(default_factory=list)
    _stretch: int = 0

    def count(self, chars: int, *, can_act: bool) -> None:
        self.total += chars
        if not can_act:
            self._stretch += chars

    def may_act(self) -> None:
        if self._stretch:
            self.blind.append(self._stretch)
        self._stretch = 0

    def ring(self) -> None:
        if self.before_ring is None:
            self.before_ring = self.total

    def close(self) -> None:
        self.may_act()

    @staticmethod
    def seconds(chars: int) -> float:
        return chars / CHARS_PER_SECOND

    def summary(self) -> list[str]:
        """The figures in a few Russian lines for the terminal."""
        out = [f"Речь автоответчика: {self.total} символов (~{self.seconds(self.total):.0f} с)"]
        if self.before_ring is not None:
            out.append(
                f"  до первого гудка: {self.before_ring} символов "
                f"(~{self.seconds(self.before_ring):.0f} с)"
            )
        blind = " + ".join(f"{self.seconds(n):.0f} с" for n in self.blind) or "0 с"
        out.append(
            f"  речь, когда ответить было нельзя: {blind}, всего "
            f"~{self.seconds(sum(self.blind)):.0f} с"
        )
        return out


@dataclass
class Transcript:
    call_sid: str
    lines: list[Line] = field(default_factory=list)
    requests: list[SentRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # How the caller's leg ended: hangup (TwiML), caller-hangup, ended (TwiML ran out),
    # rejected, error.
    ended_by: str = ""
    duration_seconds: int = 0
    # The call record from the call log (see `CallLogReader`), when fetched.
    call: dict[str, Any] | None = None
    speech: SpeechCount = field(default_factory=lambda: SpeechCount())

    @property
    def heard(self) -> list[str]:
        """What the caller heard from the service, in order."""
        return [line.text for line in self.lines if line.who == "service"]

    def requests_of(self, kind: str) -> list[SentRequest]:
        return [r for r in self.requests if r.kind == kind]

    def text(self) -> str:
        return "\n".join(line.render() for line in self.lines)


class HttpResponse(Protocol):
    """What the simulator reads of an HTTP response."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class HttpSession(Protocol):
    """How the simulator sends a request: `requests.Session`, or a WSGI app in this
    process (`callcenter.simulator.wsgi.WsgiHttp`)."""

    def request(
        self,
        method: str,
        url: str,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse: ...


class CallLogReader(Protocol):
    def fetch(self, call_sid: str) -> dict[str, Any] | None:
        """The call's JSON (as `/api/calls/<CallSid>` returns it), or None if unknown."""
        ...


class HttpCallLog:
    """Reads a call from the running service's `/api/calls/<CallSid>` with a bearer token."""

    def __init__(self, base_url: str, token: str, http: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = http or requests.Session()

    def fetch(self, call_sid: str) -> dict[str, Any] | None:
        url = f"{self.base_url}/api/calls/{call_sid}"
        try:
            response = self.http.get(
                url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
            )
        except requests.RequestException as exc:
            raise SimulationError(f"cannot read {url}: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code == 401:
            raise SimulationError(
                "the call log refused the API token (401): create one with "
                "`callcenter token create NAME` and pass it with --api-token"
            )
        if response.status_code != 200:
            raise SimulationError(f"GET {url} answered {response.status_code}")
        data: dict[str, Any] = response.json()
        return data


def wait_for_call(
    reader: CallLogReader,
    call_sid: str,
    *,
    wait_seconds: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any] | None:
    """The call's record once its ticket is no longer pending, or the latest one seen when
    `wait_seconds` have passed (the ticket job may still be queued behind others)."""
    deadline = monotonic() + wait_seconds
    while True:
        call = reader.fetch(call_sid)
        if call is not None and call.get("ticket_state") != "pending":
            return call
        if monotonic() >= deadline:
            return call
        sleep(0.2)


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def recording_url(account_sid: str, recording_sid: str) -> str:
    return f"https://api.twilio.com/{API_VERSION}/Accounts/{account_sid}/Recordings/{recording_sid}"


class Simulator:
    """Plays calls against the service at `base_url` the way Twilio would."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        http: HttpSession | None = None,
        public_base_url: str | None = None,
        *,
        account_sid: str = SIMULATOR_ACCOUNT_SID,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] | None = None,
        on_line: Callable[[Line], None] | None = None,
        on_moment: Callable[[datetime], None] | None = None,
        voice_path: str = INCOMING_PATH,
        status_path: str = STATUS_PATH,
        fallback_path: str | None = FALLBACK_PATH,
        max_requests: int = 300,
        request_timeout: float = 30.0,
    ) -> None:
        if not auth_token:
            raise SimulationError("the simulator needs the Twilio auth token to sign requests")
        self.base_url = base_url.rstrip("/")
        self.public_base_url = (public_base_url or base_url).rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.http = http or requests.Session()
        self.account_sid = account_sid
        self.clock = clock
        # Real sleeping for <Pause> is optional: the transcript keeps virtual time.
        self.sleep = sleep
        self.on_line = on_line
        # Told the call's virtual moment before each request: a seed of past calls moves
        # the service's clock with it, so the service sees the call take its time.
        self.on_moment = on_moment
        self.voice_path = voice_path
        self.status_path = status_path
        self.fallback_path = fallback_path
        self.max_requests = max_requests
        self.request_timeout = request_timeout

    def run(
        self,
        script: CallScript,
        *,
        call_log: CallLogReader | None = None,
        wait_seconds: float = 10.0,
    ) -> Transcript:
        """Play one call. With `call_log`, the call's record is fetched into `.call`."""
        transcript = _CallRun(self, script).play()
        if call_log is not None:
            transcript.call = wait_for_call(
                call_log, transcript.call_sid, wait_seconds=wait_seconds
            )
        return transcript

    # ---------------------------------------------------------------- URLs

    def public_url(self, path: str) -> str:
        return self.public_base_url + "/" + path.lstrip("/")

    def transport_url(self, public_url: str) -> str:
        """Where a public URL really goes: the proxy's job, done by hand."""
        if public_url == self.public_base_url or public_url.startswith(self.public_base_url + "/"):
            return self.base_url + public_url[len(self.public_base_url) :]
        return public_url


# ---------------------------------------------------------------- one call


@dataclass
class _Leg:
    """A party the simulator plays: the caller, or a dialled person on a child call."""

    role: Literal["caller", "callee"]
    call_sid: str
    params: dict[str, str]
    number: str = ""
    reaction: DialResult | None = None
    requests: int = 0


@dataclass
class _Document:
    url: str
    verbs: list[ET.Element]


@dataclass(frozen=True)
class _Stop:
    reason: str  # hangup, caller-hangup, callee-hangup, rejected, error


_Step = _Document | _Stop | None


class _CallRun:
    def __init__(self, sim: Simulator, script: CallScript) -> None:
        self.sim = sim
        self.script = script
        self.cursor = ScriptCursor(script)
        self.started = sim.clock()
        self.elapsed = 0.0
        call_sid = new_sid("CA")
        self.transcript = Transcript(call_sid=call_sid)
        self.caller = _Leg("caller", call_sid, self._caller_params(call_sid))
        self.final_status = "completed"
        # Status callbacks the script makes arrive late (`CallScript.late_callbacks`).
        self.late: list[tuple[_Leg, str, str, str, dict[str, str]]] = []

    # ------------------------------------------------------------ the call

    def play(self) -> Transcript:
        self.note(
            f"звонок {self.script.from_number} → {self.script.to_number}, "
            f"CallSid {self.caller.call_sid}"
        )
        voice_url = self.sim.public_url(self.sim.voice_path)
        first = self.fetch(self.caller, "incoming", voice_url, "POST", {"CallStatus": "ringing"})
        if isinstance(first, _Stop) and self.sim.fallback_path:
            # Twilio's Voice fallback URL: asked when the Voice URL fails, with the error.
            first = self.fetch(
                self.caller,
                "fallback",
                self.sim.public_url(self.sim.fallback_path),
                "POST",
                {"CallStatus": "ringing", "ErrorCode": "11200", "ErrorUrl": voice_url},
            )
        ended = self.execute(self.caller, first) if isinstance(first, _Document) else first
        if ended.reason == "error":
            self.say(TWILIO_APPLICATION_ERROR)
        self.transcript.ended_by = ended.reason
        self.transcript.speech.close()
        self.post_final_status()
        return self.transcript

    def execute(self, leg: _Leg, doc: _Document) -> _Stop:
        """Run a TwiML document and whatever it leads to, until the leg ends."""
        queue = deque(doc.verbs)
        current = doc.url
        while queue:
            verb = queue.popleft()
            step = self.verb(leg, verb, current)
            if isinstance(step, _Stop):
                return step
            if isinstance(step, _Document):
                queue = deque(step.verbs)
                current = step.url
        # A document that runs out ends the call, as on Twilio; on a dialled person's leg
        # it ends the whisper and connects the two parties.
        if leg.role == "caller":
            self.note("документ TwiML закончился — Twilio завершает звонок")
        else:
            self.note("шёпот закончился", leg)
        return _Stop("ended")

    def verb(self, leg: _Leg, verb: ET.Element, current: str) -> _Step:
        name = verb.tag
        if name == "Say":
            self.play_say(leg, verb)
        elif name == "Play":
            self.play_play(leg, verb)
        elif name == "Pause":
            self.play_pause(leg, verb)
        elif name == "Gather":
            return self.gather(leg, verb, current)
        elif name == "Record":
            return self.record(leg, verb, current)
        elif name == "Redirect":
            return self.redirect(leg, verb, current)
        elif name == "Dial":
            return self.dial(leg, verb, current)
        elif name == "Hangup":
            self.note("<Hangup/> — сервис кладёт трубку", leg)
            return _Stop("hangup")
        elif name == "Reject":
            self.note(f"<Reject reason={verb.get('reason', 'rejected')}> — звонок отклонён", leg)
            self.final_status = "busy"
            return _Stop("rejected")
        else:
            self.warn(f"<{name}> is not simulated; skipped")
        return None

    # ------------------------------------------------------------ what is heard

    def play_say(self, leg: _Leg, verb: ET.Element, *, can_act: bool = False) -> None:
        text = " ".join((verb.text or "").split())
        loops = _int(verb.get("loop"), 1)
        shown = text if loops == 1 else f"{text} (×{loops if loops > 0 else '∞'})"
        self.hear(leg, shown)
        if leg.role == "caller":
            self.transcript.speech.count(len(text) * max(loops, 1), can_act=can_act)
        self.elapsed += max(1, len(text) // CHARS_PER_SECOND) * max(loops, 1)

    def play_play(self, leg: _Leg, verb: ET.Element) -> None:
        if verb.get("digits"):
            self.note(f"<Play digits={verb.get('digits')}>", leg)
        else:
            self.hear(leg, f"♪ {(verb.text or '').strip()}")
        self.elapsed += 3

    def play_pause(self, leg: _Leg, verb: ET.Element) -> None:
        length = _int(verb.get("length"), 1)
        self.note(f"пауза {length} с", leg)
        self.elapsed += length
        if self.sim.sleep is not None:
            self.sim.sleep(min(length, 10))

    # ------------------------------------------------------------ Gather

    def gather(self, leg: _Leg, verb: ET.Element, current: str) -> _Step:
        for child in verb:
            if child.tag == "Say":
                # Inside a <Gather> a key pressed or a word said interrupts the prompt.
                self.play_say(leg, child, can_act=True)
            elif child.tag == "Play":
                self.play_play(leg, child)
            elif child.tag == "Pause":
                self.play_pause(leg, child)
        if leg.role == "caller":
            self.transcript.speech.may_act()
        answer = self.next_input(leg)
        if answer.kind == "hangup":
            # A hang-up during a Gather ends the call: Twilio requests no action.
            return _Stop(f"{leg.role}-hangup")
        inputs = (verb.get("input") or "dtmf").split()
        timeout = _int(verb.get("timeout"), 5)
        params: dict[str, str] = {"msg": "Gather End"}
        empty = True
        if answer.kind == "digits" and "dtmf" in inputs:
            digits, finished_on, dropped = _collect_digits(
                answer.value, verb.get("finishOnKey", "#"), _int(verb.get("numDigits"), 0)
            )
            if dropped:
                self.note(f"клавиши {dropped} после конца ввода не учтены", leg)
            # The finish key is never part of Digits, and a finish key pressed alone is
            # no input at all: nothing distinguishes it from silence.
            if digits:
                params["Digits"] = digits
                params["FinishedOnKey"] = finished_on
            elif finished_on:
                self.note(f"только {finished_on} — для Twilio это пустой ввод", leg)
            empty = digits == ""
        elif answer.kind == "speech" and "speech" in inputs:
            params["SpeechResult"] = answer.value
            params["Confidence"] = str(self.script.speech_confidence)
            empty = False
        elif answer.kind != "silence":
            heard = "клавиши" if answer.kind == "digits" else "речь"
            self.note(f'{heard} не принимаются этим <Gather input="{" ".join(inputs)}">', leg)
        self.elapsed += 2 if not empty else timeout
        if empty and verb.get("actionOnEmptyResult", "false").lower() != "true":
            self.note("ввода нет — Twilio переходит к следующему глаголу", leg)
            return None
        action = urljoin(current, verb.get("action") or current)
        return self.fetch(leg, "gather", action, verb.get("method", "POST"), params)

    def next_input(self, leg: _Leg) -> Answer:
        """What this party does when asked: the script's answer, or the callee's reaction."""
        if leg.role == "callee":
            if leg.reaction == "accepted":
                answer = Answer.press("1")
            elif leg.reaction == "declined":
                answer = Answer.hangup()
            else:
                answer = Answer.silence()
            self.line("callee", f"({leg.number}): {answer.describe()}")
            return answer
        if self.caller_hangs_up_now():
            answer = Answer.hangup()
        else:
            answer = self.cursor.next_answer()
        self.line("caller", answer.describe())
        return answer

    def caller_hangs_up_now(self) -> bool:
        """The script's hang-up: `hangup` as the next answer, or `hangup_after` reached."""
        limit = self.script.hangup_after
        if limit is not None and self.caller.requests >= limit:
            return True
        upcoming = self.cursor.peek_answer()
        if upcoming is not None and upcoming.kind == "hangup":
            self.cursor.next_answer()
            return True
        return False

    # ------------------------------------------------------------ Record

    def record(self, leg: _Leg, verb: ET.Element, current: str) -> _Step:
        if leg.role == "callee":
            self.warn("<Record> on a dialled person's leg is not simulated; skipped")
            return None
        hangs_up = self.caller_hangs_up_now()
        if verb.get("playBeep", "true").lower() != "false":
            self.note("сигнал записи", leg)
        seconds = self.cursor.next_record_seconds()
        max_length = _int(verb.get("maxLength"), 3600) or 3600
        duration = min(seconds, max_length)
        if duration == 0:
            self.line("caller", "молчит (запись пуста)" if not hangs_up else "кладёт трубку")
            if hangs_up:
                return _Stop("caller-hangup")
            self.elapsed += _int(verb.get("timeout"), 5)
            # Twilio requests no action for an empty recording and goes on.
            self.note("запись пуста — Twilio переходит к следующему глаголу", leg)
            return None
        self.elapsed += duration
        finish = verb.get("finishOnKey", "1234567890*#")
        params: dict[str, str] = {}
        if hangs_up:
            self.line("caller", f"говорит {duration} с и кладёт трубку")
            params["Digits"] = "hangup"
            params["CallStatus"] = "completed"
        else:
            self.line(
                "caller", f"говорит {duration} с" + (" и нажимает #" if "#" in finish else "")
            )
            if seconds < max_length and finish:
                params["Digits"] = "#" if "#" in finish else finish[0]
        recording_sid = new_sid("RE")
        rec_url = recording_url(self.sim.account_sid, recording_sid)
        params.update(
            RecordingUrl=rec_url, RecordingSid=recording_sid, RecordingDuration=str(duration)
        )
        action = urljoin(current, verb.get("action") or current)
        step = self.fetch(leg, "record", action, verb.get("method", "POST"), params)
        callback = verb.get("recordingStatusCallback")
        events = (verb.get("recordingStatusCallbackEvent") or "completed").split()
        if callback and "completed" in events:
            self.post(
                leg,
                "recording-status",
                urljoin(current, callback),
                verb.get("recordingStatusCallbackMethod", "POST"),
                {
                    "AccountSid": self.sim.account_sid,
                    "CallSid": leg.call_sid,
                    "RecordingSid": recording_sid,
                    "RecordingUrl": rec_url,
                    "RecordingStatus": "completed",
                    "RecordingDuration": str(duration),
                    "RecordingChannels": "1",
                    "RecordingStartTime": self.timestamp(-duration),
                    "RecordingSource": "RecordVerb",
                },
                with_base=False,
            )
        if hangs_up:
            # Twilio still asks the action when the caller hangs up; the answer is ignored.
            return _Stop("caller-hangup")
        return step

    # ------------------------------------------------------------ Redirect

    def redirect(self, leg: _Leg, verb: ET.Element, current: str) -> _Step:
        if leg.role == "caller" and self.caller_hangs_up_now():
            self.line("caller", "кладёт трубку")
            return _Stop("caller-hangup")
        target = urljoin(current, (verb.text or "").strip() or current)
        return self.fetch(leg, "redirect", target, verb.get("method", "POST"), {})

    # ------------------------------------------------------------ Dial

    def dial(self, leg: _Leg, verb: ET.Element, current: str) -> _Step:
        if leg.role == "callee":
            self.warn("<Dial> on a dialled person's leg is not simulated; skipped")
            return None
        targets = [child for child in verb if child.tag in ("Number", "Client", "Sip")]
        if not targets and (verb.text or "").strip():
            plain = ET.Element("Number")
            plain.text = (verb.text or "").strip()
            targets = [plain]
        unsupported = [child.tag for child in verb if child.tag not in ("Number", "Client", "Sip")]
        if unsupported or not targets:
            self.warn(f"<Dial> with {', '.join(unsupported) or 'nothing to dial'} is not simulated")
            return None
        timeout = _int(verb.get("timeout"), 30)
        self.transcript.speech.ring()
        caller_id = verb.get("callerId") or self.script.from_number
        hangs_up = self.caller_hangs_up_now()
        legs: list[_DialledLeg] = []
        for noun in targets:
            number = (noun.text or "").strip()
            reaction: DialResult = "no-answer" if hangs_up else self.cursor.next_dial_result()
            child_sid = new_sid("CA")
            child = _Leg(
                "callee",
                child_sid,
                self._child_params(child_sid, number, caller_id),
                number=number,
                reaction=reaction,
            )
            legs.append(_DialledLeg(noun, number, reaction, child, current))
        for d in legs:
            script = "" if hangs_up else f" (по сценарию: {d.reaction})"
            self.note(f"набор {d.number}{script}", leg)
            self.leg_event(d, "initiated", "initiated")
            if d.reaction != "failed":
                self.leg_event(d, "ringing", "ringing")
        winner = next((d for d in legs if d.reaction in ANSWERING_RESULTS), None)
        for d in legs:
            if d.reaction in ("busy", "failed"):
                self.leg_event(d, "completed", d.reaction)
        bridged = False
        dial_duration = 0
        if hangs_up:
            self.line("caller", "кладёт трубку, не дождавшись ответа")
            self.elapsed += 5
            for d in legs:
                if d.reaction not in ("busy", "failed"):
                    self.leg_event(d, "completed", "canceled")
            status = "canceled"
        elif winner is not None:
            self.elapsed += self.script.ring_seconds
            answered_at = self.elapsed
            self.line("callee", f"({winner.number}): снимает трубку")
            self.leg_event(winner, "answered", "in-progress")
            for d in legs:
                if d is not winner and d.reaction not in ("busy", "failed"):
                    # Twilio hangs up the other legs as soon as one answers.
                    self.leg_event(d, "completed", "canceled")
            bridged = self.whisper(winner)
            if bridged:
                talk = self.script.talk_seconds
                self.line("note", f"СОЕДИНЕНО с {winner.number}: разговор {talk} с")
                self.elapsed += talk
                self.line("callee", f"({winner.number}): завершает разговор")
            dial_duration = max(1, round(self.elapsed - answered_at))
            self.leg_event(winner, "completed", "completed", duration=dial_duration)
            status = "completed"
        else:
            self.elapsed += timeout
            for d in legs:
                if d.reaction == "no-answer":
                    self.leg_event(d, "completed", "no-answer")
            reactions = {d.reaction for d in legs}
            status = (
                "no-answer"
                if "no-answer" in reactions
                else "busy"
                if "busy" in reactions
                else "failed"
            )
        last = winner or legs[-1]
        self.note(f"итог набора: DialCallStatus={status}" + (", соединено" if bridged else ""), leg)
        action = verb.get("action")
        if not action:
            self.post_late_callbacks()
            return _Stop("caller-hangup") if hangs_up else None
        params = {
            "DialCallStatus": status,
            "DialCallSid": last.leg.call_sid,
            "DialCallDuration": str(dial_duration),
            "DialBridged": "true" if bridged else "false",
        }
        if hangs_up:
            params["CallStatus"] = "completed"
        step = self.fetch(
            leg, "dial-action", urljoin(current, action), verb.get("method", "POST"), params
        )
        self.post_late_callbacks()
        return _Stop("caller-hangup") if hangs_up else step

    def whisper(self, d: _DialledLeg) -> bool:
        """Play the `<Number url>` to the dialled person; True when the call is bridged."""
        url = d.noun.get("url")
        if not url:
            if d.reaction == "declined":
                self.line("callee", f"({d.number}): кладёт трубку")
                return False
            return True
        doc = self.fetch(
            d.leg, "whisper", urljoin(d.current, url), d.noun.get("method", "POST"), {}
        )
        if not isinstance(doc, _Document):
            return False
        ended = self.execute(d.leg, doc)
        # A whisper that runs to its end connects the parties; a hang-up on either side
        # (TwiML <Hangup/>, or the callee putting the phone down) does not.
        return ended.reason == "ended"

    def leg_event(self, d: _DialledLeg, event: str, status: str, duration: int = 0) -> None:
        """Post a `<Number statusCallback>` event if the noun asked for it."""
        callback = d.noun.get("statusCallback")
        if not callback:
            return
        wanted = (d.noun.get("statusCallbackEvent") or "completed").split()
        if event not in wanted:
            return
        params = {
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(d.sequence),
            "Timestamp": self.timestamp(),
        }
        d.sequence += 1
        if event == "completed":
            params["CallDuration"] = str(duration)
            params["Duration"] = str(math.ceil(duration / 60))
        request = (
            d.leg,
            "number-status",
            urljoin(d.current, callback),
            d.noun.get("statusCallbackMethod", "POST"),
            params,
        )
        if self.script.late_callbacks:
            self.late.append(request)
        else:
            self.post(*request)

    def post_late_callbacks(self) -> None:
        """Callbacks held back by the script: after the Dial's action, newest first
        (Twilio sends them asynchronously; only SequenceNumber tells their order)."""
        late, self.late = self.late, []
        for request in reversed(late):
            self.post(*request)

    # ------------------------------------------------------------ the end

    def post_final_status(self) -> None:
        duration = math.ceil(self.elapsed)
        self.transcript.duration_seconds = duration
        self.note(f"звонок окончен ({self.transcript.ended_by}), {duration} с")
        self.post(
            self.caller,
            "status",
            self.sim.public_url(self.sim.status_path),
            "POST",
            {
                "CallStatus": self.final_status,
                "CallDuration": str(duration),
                "Duration": str(math.ceil(duration / 60)),
                "SequenceNumber": "0",
                "Timestamp": self.timestamp(),
                "CallbackSource": "call-progress-events",
            },
        )

    # ------------------------------------------------------------ HTTP

    def fetch(
        self, leg: _Leg, kind: str, url: str, method: str, extra: dict[str, str]
    ) -> _Document | _Stop:
        """Ask the service for TwiML; an error ends the leg as Twilio would."""
        response = self.post(leg, kind, url, method, extra)
        if response is None:
            return _Stop("error")
        body = response.body.strip()
        try:
            root = ET.fromstring(body.encode("utf-8")) if body else None
        except ET.ParseError as exc:
            self.error(f"{kind} {url}: the answer is not TwiML ({exc})")
            return _Stop("error")
        if root is None or root.tag != "Response":
            self.error(f"{kind} {url}: the answer is not a TwiML <Response>")
            return _Stop("error")
        return _Document(url, list(root))

    def post(
        self,
        leg: _Leg,
        kind: str,
        url: str,
        method: str,
        extra: dict[str, str],
        *,
        with_base: bool = True,
    ) -> SentRequest | None:
        """Send one signed webhook request; None (and an error line) unless it got a 2xx."""
        if leg.role == "callee" and kind in ("gather", "redirect"):
            kind = f"whisper-{kind}"
        if len(self.transcript.requests) >= self.sim.max_requests:
            self.error(f"more than {self.sim.max_requests} requests in one call: a loop?")
            return None
        params = dict(leg.params) if with_base else {}
        if with_base:
            params.setdefault("CallStatus", "in-progress")
        params.update(extra)
        method = method.upper()
        if method == "GET":
            sep = "&" if "?" in url else "?"
            signed_url = url + sep + urlencode(params)
            signature = self.sim.validator.compute_signature(signed_url, {})
            body_params: dict[str, str] | None = None
        else:
            signed_url = url
            signature = self.sim.validator.compute_signature(url, params)
            body_params = params
        target = self.sim.transport_url(signed_url)
        if self.sim.on_moment is not None:
            self.sim.on_moment(self.started + timedelta(seconds=self.elapsed))
        headers = {"X-Twilio-Signature": signature, "User-Agent": USER_AGENT}
        try:
            response = self.sim.http.request(
                method,
                target,
                data=body_params,
                headers=headers,
                timeout=self.sim.request_timeout,
            )
        except requests.RequestException as exc:
            raise SimulationError(
                f"cannot reach the service at {target}: {exc} (is `callcenter serve` running?)"
            ) from exc
        if leg.role == "caller" and with_base and kind not in ("status",):
            leg.requests += 1
        sent = SentRequest(
            kind=kind,
            method=method,
            url=signed_url,
            sent_to=target,
            params=params,
            signature=signature,
            status=response.status_code,
            body=response.content.decode("utf-8", errors="replace"),
        )
        self.transcript.requests.append(sent)
        if not 200 <= response.status_code < 300:
            hint = ""
            if response.status_code == 403:
                hint = (
                    " — the service refused the Twilio signature: --auth-token must be the "
                    "service's TWILIO_AUTH_TOKEN and --public-url its PUBLIC_BASE_URL"
                )
            self.error(f"{kind} {method} {url} answered {response.status_code}{hint}")
            return None
        content_type = response.headers.get("Content-Type", "")
        if kind not in ("status", "recording-status", "number-status") and (
            "xml" not in content_type or "charset" not in content_type.lower()
        ):
            self.warn(
                f"{kind} {url}: Content-Type {content_type!r}, expected text/xml; charset=utf-8"
            )
        return sent

    # ------------------------------------------------------------ parameters

    def _caller_params(self, call_sid: str) -> dict[str, str]:
        caller, line = self.script.from_number, self.script.to_number
        params = {
            "AccountSid": self.sim.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call_sid,
            "Direction": "inbound",
            "From": caller,
            "Caller": caller,
            "To": line,
            "Called": line,
        }
        for prefix, number in (
            ("From", caller),
            ("Caller", caller),
            ("To", line),
            ("Called", line),
        ):
            params.update(_geography(prefix, number))
        return params

    def _child_params(self, call_sid: str, number: str, caller_id: str) -> dict[str, str]:
        params = {
            "AccountSid": self.sim.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call_sid,
            "ParentCallSid": self.caller.call_sid,
            "Direction": "outbound-dial",
            "From": caller_id,
            "Caller": caller_id,
            "To": number,
            "Called": number,
        }
        for prefix, value in (("From", caller_id), ("To", number), ("Called", number)):
            params.update(_geography(prefix, value))
        return params

    def timestamp(self, offset: float = 0.0) -> str:
        """RFC 2822, as Twilio writes `Timestamp` (virtual call time)."""
        at: datetime = self.started + timedelta(seconds=self.elapsed + offset)
        return format_datetime(at)

    # ------------------------------------------------------------ transcript

    def line(self, who: Who, text: str) -> None:
        line = Line(who, text)
        self.transcript.lines.append(line)
        if self.sim.on_line is not None:
            self.sim.on_line(line)

    def hear(self, leg: _Leg, text: str) -> None:
        if leg.role == "caller":
            self.line("service", text)
        else:
            self.line("whisper", f"({leg.number}): {text}")

    def say(self, text: str) -> None:
        self.line("service", text)

    def note(self, text: str, leg: _Leg | None = None) -> None:
        prefix = f"[{leg.number}] " if leg is not None and leg.role == "callee" else ""
        self.line("note", prefix + text)

    def warn(self, text: str) -> None:
        self.transcript.warnings.append(text)
        self.line("note", f"⚠ {text}")

    def error(self, text: str) -> None:
        self.transcript.errors.append(text)
        self.line("error", text)


@dataclass
class _DialledLeg:
    noun: ET.Element
    number: str
    reaction: DialResult
    leg: _Leg
    current: str
    sequence: int = 0


# ---------------------------------------------------------------- helpers


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None and raw.strip() else default
    except ValueError:
        return default


def _collect_digits(keys: str, finish_on_key: str, num_digits: int) -> tuple[str, str, str]:
    """What Twilio's Gather takes from the keys pressed: (Digits, FinishedOnKey, ignored).

    Input ends at the finish key (not part of Digits) or once `numDigits` are in.
    """
    digits = ""
    for i, key in enumerate(keys):
        if finish_on_key and key in finish_on_key:
            return digits, key, keys[i + 1 :]
        digits += key
        if num_digits and len(digits) >= num_digits:
            return digits, "", keys[i + 1 :]
    return digits, "", ""


def _geography(prefix: str, number: str) -> dict[str, str]:
    """Twilio's FromCountry/FromCity/... (country only: cities are not ours to guess)."""
    country = ""
    try:
        parsed = phonenumbers.parse(number, None)
        country = phonenumbers.region_code_for_number(parsed) or ""
    except phonenumbers.NumberParseException:
        pass
    return {
        f"{prefix}Country": country,
        f"{prefix}State": "",
        f"{prefix}City": "",
        f"{prefix}Zip": "",
    }


def format_call_summary(call: dict[str, Any]) -> list[str]:
    """The call record and its ticket, in a few Russian lines for the terminal."""
    out = [
        f"Звонок {call.get('call_sid')}: категория {call.get('category') or '—'}, "
        f"исход {call.get('outcome') or '—'}",
    ]
    who = call.get("contact") or {}
    org = call.get("organisation") or {}
    out.append(
        f"  абонент {call.get('caller') or call.get('caller_raw') or 'номер скрыт'}"
        + (f", {who.get('name')}" if who else "")
        + (f" ({org.get('name')})" if org else "")
    )
    if call.get("topic") or call.get("product") or call.get("vehicles"):
        vehicles = ", ".join(call.get("vehicles") or []) or "—"
        out.append(
            f"  тема {call.get('topic') or '—'}, продукт {call.get('product') or '—'}, "
            f"ТС {vehicles}"
        )
    related = call.get("related_ticket")
    if related and call.get("category") == "addition":
        state = call.get("ticket_state")
        out.append(f"  дополнение к заявке № {related} ({state}), новая заявка не открыта")
    elif call.get("ticket_number"):
        out.append(f"  заявка № {call['ticket_number']} ({call.get('ticket_state')})")
    elif call.get("ticket_state"):
        error = call.get("ticket_error")
        out.append(f"  заявка: {call['ticket_state']}" + (f" — {error}" if error else ""))
    else:
        out.append("  заявки нет")
    for leg in call.get("legs") or []:
        out.append(
            f"  набор {leg.get('position')}: {leg.get('name') or ''} {leg.get('number')} → "
            f"{leg.get('result')}"
        )
    if call.get("routing_outcome"):
        out.append(f"  маршрутизация: {call['routing_outcome']}")
    if call.get("flagged"):
        out.append(f"  ⚑ отмечен для руководителя: {call.get('flag_reason') or ''}")
    return out
