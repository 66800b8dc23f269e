"""What a caller hears when the service cannot serve a step (the IVR's or routing's): an
apology, the duty phone from the settings, and a voicemail if nobody answers — the one
emergency reply of the service, never a dead end.

These replies need nothing but the settings: no database, no Redis, no portal. They serve
Twilio's Voice fallback URL (Twilio calls it when the Voice URL fails or times out) and any
step that fails unexpectedly. What happened is kept afterwards by
`callcenter.ivr.spool.keep_fallback_event`, best-effort.
"""

from __future__ import annotations

from callcenter.ivr import prompts
from callcenter.ivr.reply import Dial, Hangup, Number, Record, Reply, Say
from callcenter.vocabulary import FALLBACK_DIAL_RESULT_PATH, FALLBACK_VOICEMAIL_PATH

DUTY_DIAL_TIMEOUT = 25
VOICEMAIL_MAX_SECONDS = 180
# DialCallStatus values that mean somebody talked to the caller.
ANSWERED = frozenset({"completed", "answered"})


def apology_reply(duty_phone: str | None) -> Reply:
    """Apology, then the duty phone; the dial's result decides about a voicemail. No duty
    phone set: the apology and the voicemail at once."""
    if not duty_phone:
        return (Say(prompts.APOLOGY_NO_DUTY_PHONE), *dial_result_reply(None))
    return (
        Say(prompts.APOLOGY),
        Dial((Number(duty_phone),), action=FALLBACK_DIAL_RESULT_PATH, timeout=DUTY_DIAL_TIMEOUT),
    )


def dial_result_reply(dial_status: str | None) -> Reply:
    if (dial_status or "").lower() in ANSWERED:
        return (Hangup(),)
    return (
        Say(prompts.FALLBACK_VOICEMAIL),
        Record(
            action=FALLBACK_VOICEMAIL_PATH,
            max_length=VOICEMAIL_MAX_SECONDS,
            finish_on_key="#",
            timeout=10,
        ),
        # Nothing recorded (silence): Twilio skips the action and comes here.
        Say(prompts.FALLBACK_THANKS),
        Hangup(),
    )


def voicemail_reply() -> Reply:
    return (Say(prompts.FALLBACK_THANKS), Hangup())
