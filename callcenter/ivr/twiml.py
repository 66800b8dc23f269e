"""Turn a `Reply` (the IVR's, routing's, the fallback's) into TwiML with
`twilio.twiml.voice_response`: the one TwiML renderer of the service.

Every `<Say>` and every speech `<Gather>` carries `language="ru-RU"`; the voice is the
`TTS_VOICE` setting. Every action and redirect is a POST to an absolute URL under
`PUBLIC_BASE_URL` when it is set (a path otherwise, which Twilio resolves against the URL
it requested).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from callcenter.ivr.reply import (
    Dial,
    Gather,
    Hangup,
    Number,
    Pause,
    Record,
    Redirect,
    Reply,
    Say,
)

LANGUAGE = "ru-RU"
CONTENT_TYPE = "text/xml; charset=utf-8"


def absolute(path: str, public_base_url: str | None) -> str:
    """`path` under the public base URL, or `path` itself when there is none."""
    if not public_base_url or "://" in path:
        return path
    return public_base_url.rstrip("/") + path


def render(reply: Reply, *, voice: str, public_base_url: str | None) -> str:
    """The TwiML document (a str with the XML declaration) for `reply`.

    A pure function of immutable arguments, and the same few replies (the greeting, the
    menus at their first turns) are rendered for every caller: cached, since building and
    serialising the element tree is a tenth of a webhook's CPU."""
    return _render(reply, voice, public_base_url)


@functools.lru_cache(maxsize=2048)
def _render(reply: Reply, voice: str, public_base_url: str | None) -> str:
    response = VoiceResponse()

    def url(path: str) -> str:
        return absolute(path, public_base_url)

    def say(parent: Any, verb: Say | Pause) -> None:
        if isinstance(verb, Say):
            parent.say(verb.text, voice=voice, language=LANGUAGE)
        else:
            parent.pause(length=verb.seconds)

    for verb in reply:
        if isinstance(verb, Say | Pause):
            say(response, verb)
        elif isinstance(verb, Gather):
            attrs: dict[str, Any] = {
                "input": "dtmf speech" if verb.speech else "dtmf",
                "action": url(verb.action),
                "method": "POST",
                "timeout": verb.timeout,
            }
            if verb.num_digits is not None:
                attrs["num_digits"] = verb.num_digits
            if verb.finish_on_key is not None:
                attrs["finish_on_key"] = verb.finish_on_key
                # Nothing typed (silence, or "#" alone: Twilio never delivers the finish
                # key) comes to the action at once, with no Digits: the step sees silence.
                attrs["action_on_empty_result"] = True
            if verb.speech:
                attrs["language"] = LANGUAGE
                attrs["speech_timeout"] = verb.speech_timeout
                if verb.hints:
                    attrs["hints"] = ", ".join(verb.hints)
            gather = response.gather(**attrs)
            for inner in verb.prompt:
                say(gather, inner)
        elif isinstance(verb, Record):
            record_attrs: dict[str, Any] = {
                "action": url(verb.action),
                "method": "POST",
                "max_length": verb.max_length,
                "finish_on_key": verb.finish_on_key,
                "timeout": verb.timeout,
                "play_beep": True,
            }
            if verb.status_callback is not None:
                record_attrs["recording_status_callback"] = url(verb.status_callback)
                record_attrs["recording_status_callback_method"] = "POST"
            response.record(**record_attrs)
        elif isinstance(verb, Redirect):
            response.redirect(url(verb.path), method="POST")
        elif isinstance(verb, Dial):
            _dial(response, verb, url)
        elif isinstance(verb, Hangup):
            response.hangup()
    return str(response.to_xml())


def _dial(response: VoiceResponse, verb: Dial, url: Callable[[str], str]) -> None:
    attrs: dict[str, Any] = {}
    if verb.action is not None:
        attrs.update(action=url(verb.action), method="POST")
    attrs["timeout"] = verb.timeout
    if verb.ring_tone is not None:
        attrs["ring_tone"] = verb.ring_tone
    if verb.caller_id is not None:
        attrs["caller_id"] = verb.caller_id
    if verb.recording_status_callback is not None:
        attrs.update(
            record="record-from-answer-dual",
            recording_status_callback=url(verb.recording_status_callback),
            recording_status_callback_method="POST",
        )
    plain = len(verb.numbers) == 1 and verb.numbers[0] == Number(verb.numbers[0].number)
    if plain:
        # One phone with nothing of its own: `<Dial>+7...</Dial>`, as Twilio's examples.
        response.dial(verb.numbers[0].number, **attrs)
        return
    dial = response.dial(**attrs)
    for number in verb.numbers:
        number_attrs: dict[str, Any] = {}
        if number.whisper is not None:
            number_attrs.update(url=url(number.whisper), method="POST")
        if number.status_callback is not None:
            number_attrs.update(
                status_callback=url(number.status_callback),
                status_callback_event=number.status_events,
                status_callback_method="POST",
            )
        dial.number(number.number, **number_attrs)
