"""What the IVR answers, before it becomes TwiML: a tuple of small verb values.

The step engine returns these (easy to compare in tests, no XML in the domain);
`callcenter.ivr.twiml.render` turns them into Twilio's TwiML. Links are paths of this
service (`/webhooks/voice/...`, with a query string where needed); the renderer makes them
absolute with `PUBLIC_BASE_URL`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Pause:
    seconds: int


@dataclass(frozen=True)
class Gather:
    """Collect keypad digits and/or speech; Twilio posts the answer to `action`."""

    action: str
    prompt: tuple[Say | Pause, ...]
    speech: bool = True  # input="dtmf speech" (ru-RU) or "dtmf" only
    num_digits: int | None = None
    timeout: int = 5
    finish_on_key: str | None = None
    hints: tuple[str, ...] = ()
    speech_timeout: int = 2


@dataclass(frozen=True)
class Record:
    action: str
    max_length: int
    finish_on_key: str = "#"
    timeout: int = 10
    status_callback: str | None = None


@dataclass(frozen=True)
class Redirect:
    path: str


@dataclass(frozen=True)
class Number:
    """One phone of a `<Dial>`. `whisper`: what the answering person hears before being
    bridged (`<Number url>`); `status_callback`: where this leg's progress is posted, for
    `status_events` (space-separated, as Twilio spells them)."""

    number: str
    whisper: str | None = None
    status_callback: str | None = None
    status_events: str | None = None


@dataclass(frozen=True)
class Dial:
    """Ring `numbers` at once; the first to answer takes the call, and Twilio posts the
    result to `action`. None: Twilio goes on with the next verb of the document."""

    numbers: tuple[Number, ...]
    action: str | None
    timeout: int
    ring_tone: str | None = None
    # The number the dialled party sees (Twilio's `callerId`); None: the caller's own.
    caller_id: str | None = None
    # Record the bridged conversation (`record="record-from-answer-dual"`) and post the
    # recording to `recording_status_callback`.
    recording_status_callback: str | None = None


@dataclass(frozen=True)
class Hangup:
    pass


Verb = Say | Pause | Gather | Record | Redirect | Dial | Hangup
Reply = tuple[Verb, ...]
