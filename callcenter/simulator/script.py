"""What the simulated people do: the caller's answers and the dialled staff's reactions.

A `CallScript` is data: who calls which line, the answers given to each `<Gather>` in
order (keys, speech, silence, a hang-up), how long each `<Record>` lasts, and how each
dialled person reacts (`accepted`, `no-answer`, `busy`, `voicemail`, `declined`, `failed`).

`parse_answer_tokens` reads the command line's answer words in the order they were typed:

    --press 2 1 3              three keypad answers: "2", then "1", then "3"
    --press 1042#              one answer: digits 1042 ended with the # key
    --say "А123ВС77"           one spoken answer
    --silence                  one answer of silence (the <Gather> times out)
    --hangup                   the caller hangs up at the next question
    --answers 2 1 "А123ВС77" - hangup    mixed: keys, speech, "-" = silence, "hangup"
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from callcenter.errors import InvalidInput

AnswerKind = Literal["digits", "speech", "silence", "hangup"]

# How a dialled person reacts to the ringing phone:
#   accepted   answers, hears the whisper and presses 1
#   voicemail  a voicemail (or a person in a pocket) answers and never presses anything
#   declined   answers, hears the whisper and hangs up without pressing 1
#   no-answer  rings until the <Dial> timeout
#   busy       the line is busy
#   failed     the number cannot be reached
DialResult = Literal["accepted", "voicemail", "declined", "no-answer", "busy", "failed"]
DIAL_RESULTS: tuple[DialResult, ...] = (
    "accepted",
    "voicemail",
    "declined",
    "no-answer",
    "busy",
    "failed",
)
# The dialled person picks up the phone (Twilio sees an answered child call).
ANSWERING_RESULTS: frozenset[str] = frozenset({"accepted", "voicemail", "declined"})

_KEYS = re.compile(r"[0-9*#]+")


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    value: str = ""

    @classmethod
    def press(cls, keys: str) -> Answer:
        if not _KEYS.fullmatch(keys):
            raise InvalidInput(f"--press {keys!r}: keys are 0-9, * and #")
        return cls("digits", keys)

    @classmethod
    def say(cls, text: str) -> Answer:
        text = text.strip()
        if not text:
            raise InvalidInput("--say needs the words the caller says")
        return cls("speech", text)

    @classmethod
    def silence(cls) -> Answer:
        return cls("silence")

    @classmethod
    def hangup(cls) -> Answer:
        return cls("hangup")

    def describe(self) -> str:
        """What the caller does, as the transcript says it (Russian, like the call)."""
        if self.kind == "digits":
            return f"нажимает {' '.join(self.value)}"
        if self.kind == "speech":
            return f"говорит «{self.value}»"
        if self.kind == "silence":
            return "молчит"
        return "кладёт трубку"


@dataclass(frozen=True)
class CallScript:
    from_number: str = "+79161234567"
    to_number: str = "+78002506077"
    answers: tuple[Answer, ...] = ()
    # One result per dialled number, in the order the service dials them; when the list
    # runs out, the next person accepts (a call with no script reaches somebody).
    dial_results: tuple[DialResult, ...] = ()
    # Seconds spoken into each <Record> in turn; the last value repeats. 0 = silence.
    record_seconds: tuple[int, ...] = (20,)
    # How long the caller talks with a person who accepted the call.
    talk_seconds: int = 60
    # How long a dialled person's phone rings before they pick it up.
    ring_seconds: int = 5
    # The caller hangs up at the first question after this many requests for the call.
    hangup_after: int | None = None
    speech_confidence: float = 0.9
    # Dialled numbers' status callbacks arrive after the Dial's action, newest first.
    late_callbacks: bool = False

    def __post_init__(self) -> None:
        for result in self.dial_results:
            if result not in DIAL_RESULTS:
                raise InvalidInput(f"dial result {result!r}: one of {', '.join(DIAL_RESULTS)}")
        if not self.record_seconds or any(s < 0 for s in self.record_seconds):
            raise InvalidInput("record seconds must be 0 or more")
        if self.talk_seconds < 0:
            raise InvalidInput("talk seconds must be 0 or more")
        if self.ring_seconds < 0:
            raise InvalidInput("ring seconds must be 0 or more")
        if self.hangup_after is not None and self.hangup_after < 1:
            raise InvalidInput("--hangup-after must be 1 or more")
        if not 0.0 <= self.speech_confidence <= 1.0:
            raise InvalidInput("speech confidence is between 0 and 1")


@dataclass
class ScriptCursor:
    """The script being played: what has been used so far."""

    script: CallScript
    answer_index: int = 0
    dial_index: int = 0
    record_index: int = 0
    used: list[str] = field(default_factory=list)

    def peek_answer(self) -> Answer | None:
        if self.answer_index < len(self.script.answers):
            return self.script.answers[self.answer_index]
        return None

    def next_answer(self) -> Answer:
        """The caller's next answer; silence once the script has run out."""
        answer = self.peek_answer()
        if answer is None:
            return Answer.silence()
        self.answer_index += 1
        return answer

    def next_dial_result(self) -> DialResult:
        if self.dial_index < len(self.script.dial_results):
            result = self.script.dial_results[self.dial_index]
            self.dial_index += 1
            return result
        return "accepted"

    def next_record_seconds(self) -> int:
        seconds = self.script.record_seconds
        value = seconds[min(self.record_index, len(seconds) - 1)]
        self.record_index += 1
        return value

    @property
    def unused_answers(self) -> tuple[Answer, ...]:
        return self.script.answers[self.answer_index :]


_ANSWER_OPTIONS = ("--press", "--say", "--silence", "--hangup", "--answers")


def parse_answer_tokens(tokens: Sequence[str]) -> tuple[Answer, ...]:
    """Read `--press 2 1 --say "…" --silence --hangup --answers …` in the typed order."""
    answers: list[Answer] = []
    mode: str | None = None
    for token in tokens:
        value = token
        if token.startswith("--"):
            name, eq, inline = token.partition("=")
            if name not in _ANSWER_OPTIONS:
                raise InvalidInput(
                    f"unknown option {name!r}; answers are given with " + ", ".join(_ANSWER_OPTIONS)
                )
            mode = name
            if name == "--silence":
                answers.append(Answer.silence())
            elif name == "--hangup":
                answers.append(Answer.hangup())
            if not eq:
                continue
            value = inline
        if mode is None:
            raise InvalidInput(f"{token!r}: say what it is (--press {token} or --say {token!r})")
        if mode == "--press":
            answers.append(Answer.press(value))
        elif mode == "--say":
            answers.append(Answer.say(value))
        elif mode == "--answers":
            answers.append(_mixed(value))
        else:
            raise InvalidInput(f"{mode} takes no value, got {value!r}")
    return tuple(answers)


def _mixed(value: str) -> Answer:
    lowered = value.strip().lower()
    if lowered in ("-", "silence"):
        return Answer.silence()
    if lowered == "hangup":
        return Answer.hangup()
    if _KEYS.fullmatch(value.strip()):
        return Answer.press(value.strip())
    return Answer.say(value)


def parse_dial_results(text: str) -> tuple[DialResult, ...]:
    """`no-answer,accepted` → ("no-answer", "accepted")."""
    results: list[DialResult] = []
    for part in text.split(","):
        word = part.strip().lower().replace("_", "-")
        if not word:
            continue
        if word not in DIAL_RESULTS:
            raise InvalidInput(f"--dial-result {part.strip()!r}: one of {', '.join(DIAL_RESULTS)}")
        results.append(word)
    return tuple(results)


def parse_record_seconds(text: str) -> tuple[int, ...]:
    """`20` or `20,0` (the second recording is silent)."""
    values: list[int] = []
    for part in text.split(","):
        try:
            values.append(int(part.strip()))
        except ValueError:
            raise InvalidInput(
                f"--record-seconds {text!r}: whole seconds, e.g. 20 or 20,0"
            ) from None
    return tuple(values)
