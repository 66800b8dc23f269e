"""What the caller and the dialled people hear during routing, as a `Reply` (the one
renderer, `callcenter.ivr.twiml`, turns it into TwiML).

Every later request of the routing comes back to `webhooks.routing` through the paths
below:

    /dial?step=N               the <Dial> of step N ended (DialCallStatus, ...)
    /whisper?call=SID&leg=P    a dialled person answered leg P: what they hear first
    /whisper/answer?call&leg   their key press (1 accepts)
    /leg-status?call&leg       leg P's status callbacks (initiated ... completed)
    /voicemail                 the caller's message after nobody took the call
    /callback                  the answer to the call-back offer (a consultation, working hours)
    /kb                        the answer to the knowledge base offer (a consultation's end)
"""

from __future__ import annotations

from callcenter.ivr import prompts
from callcenter.ivr.plates import spoken_plate
from callcenter.ivr.reply import Dial, Gather, Hangup, Number, Record, Redirect, Reply, Say
from callcenter.regulation.speech import say_digits, say_ordinal, say_phone
from callcenter.routing import chain
from callcenter.routing.alerts import chain_topic_title
from callcenter.vocabulary import URGENT_CATEGORIES, recording_status_path, routing_path

LEG_EVENTS = "initiated ringing answered completed"
WHISPER_KEY_TIMEOUT = 6
KB_OFFER_TIMEOUT = 4
CALLBACK_KEY_TIMEOUT = 5
# Typing a whole number takes longer than one key.
CALLBACK_NUMBER_TIMEOUT = 7
RING_TONE = "ru"

HANG_UP: Reply = (Hangup(),)
CONNECTING: Reply = (Say(prompts.ROUTING_WHISPER_CONNECTING),)
# A leg's status callback needs no TwiML; an empty document is what Twilio expects.
NOTHING: Reply = ()

_GOODBYES = {
    "connected": prompts.GOODBYE,
    "voicemail": prompts.ROUTING_MESSAGE_THANKS,
    "no_message": prompts.ROUTING_NO_MESSAGE,
}


def decision_reply(decision: chain.Decision, call_sid: str) -> Reply:
    """What the caller hears for one routing decision."""
    if isinstance(decision, chain.DialLegs):
        dial = Dial(
            numbers=tuple(
                Number(
                    leg.number,
                    whisper=routing_path("/whisper", call=call_sid, leg=leg.position),
                    status_callback=routing_path("/leg-status", call=call_sid, leg=leg.position),
                    status_events=LEG_EVENTS,
                )
                for leg in decision.legs
            ),
            action=routing_path("/dial", step=decision.step),
            timeout=decision.timeout,
            ring_tone=RING_TONE,
        )
        return (Say(prompts.ROUTING_NEXT_LEG), dial) if decision.moving_on else (dial,)
    if isinstance(decision, chain.OfferVoicemail) and (
        decision.callback is not None or decision.announced
    ):
        return _callback_offer(decision)
    if isinstance(decision, chain.OfferVoicemail):
        if decision.nobody_on_duty:
            text = prompts.ROUTING_NOBODY_ON_DUTY
        elif decision.kind == chain.URGENT:
            text = prompts.ROUTING_NOBODY_ACCEPTED
            if decision.sms_alerts:
                text += " " + prompts.ROUTING_NOBODY_ACCEPTED_SMS
        else:
            text = prompts.ROUTING_NO_ANSWER
        if decision.kind == chain.URGENT and decision.ticket_number:
            text += " " + prompts.ROUTING_TICKET_NUMBER.format(
                number=_say_digits(decision.ticket_number)
            )
        return (Say(text + " " + prompts.ROUTING_LEAVE_MESSAGE), *_RECORD_VOICEMAIL)
    if isinstance(decision, chain.CallbackBooked):
        booked = prompts.ROUTING_CALLBACK_BOOKED.format(number=say_phone(decision.number))
        return (Say(booked), *_goodbye(prompts.GOODBYE, offer_kb=decision.offer_kb))
    return _goodbye(_GOODBYES.get(decision.reason), offer_kb=decision.offer_kb)


_RECORD_VOICEMAIL: Reply = (
    Record(
        action=routing_path("/voicemail"),
        max_length=chain.VOICEMAIL_MAX_SECONDS,
        finish_on_key="#",
        timeout=10,
        # The IVR's recording callback keeps it even if this action is never reached.
        status_callback=recording_status_path("voicemail"),
    ),
    # An empty recording is not posted; Twilio goes on to here.
    Redirect(routing_path("/voicemail")),
)


def _callback_offer(decision: chain.OfferVoicemail) -> Reply:
    """The call-back queue offered inside a `<Gather>`, the voicemail after it: Twilio goes
    on to the next verb when nothing was pressed (silence, or "#" alone: no input), as
    https://www.twilio.com/docs/voice/twiml/gather says. Declined: the voicemail alone."""
    leave: Reply = (Say(prompts.ROUTING_LEAVE_MESSAGE), *_RECORD_VOICEMAIL)
    offer = decision.callback
    if offer is None:
        return leave
    if offer.invalid_number:
        said = [prompts.CALLBACK_NUMBER_INVALID]
    elif decision.nobody_on_duty:
        said = [prompts.ROUTING_NOBODY_FREE]
    else:
        said = [prompts.ROUTING_ALL_BUSY]
    ordinal = say_ordinal(offer.position)
    if offer.number is not None:
        said.append(prompts.ROUTING_CALLBACK_OFFER.format(ordinal=ordinal))
        gather = Gather(
            action=routing_path("/callback"),
            prompt=(Say(" ".join(said)),),
            speech=False,
            num_digits=1,
            timeout=CALLBACK_KEY_TIMEOUT,
        )
    else:
        # Twilio's own finishOnKey ("#") ends the number; none given, so no input at all
        # falls through to the voicemail instead of posting an empty answer.
        said.append(prompts.ROUTING_CALLBACK_OFFER_TYPE.format(ordinal=ordinal))
        gather = Gather(
            action=routing_path("/callback"),
            prompt=(Say(" ".join(said)),),
            speech=False,
            timeout=CALLBACK_NUMBER_TIMEOUT,
        )
    return (gather, *leave)


def _goodbye(goodbye: str | None, *, offer_kb: bool) -> Reply:
    said: Reply = ((Say(goodbye),) if goodbye else ()) + HANG_UP
    if offer_kb:
        # No answer: Twilio goes on with the goodbye after the <Gather>.
        offer = Gather(
            action=routing_path("/kb"),
            prompt=(Say(prompts.KB_OFFER),),
            speech=True,
            num_digits=1,
            timeout=KB_OFFER_TIMEOUT,
            hints=("да", "отправить"),
        )
        return (offer, *said)
    return said


def kb_reply(queued: bool | None) -> Reply:
    """After the knowledge base offer: the SMS queued, not queued, or not wanted (None)."""
    if queued is None:
        return (Say(prompts.GOODBYE), *HANG_UP)
    return (Say(prompts.KB_LINK_QUEUED if queued else prompts.KB_LINK_FAILED), *HANG_UP)


def whisper_reply(said: chain.Whisper | None, call_sid: str, position: int) -> Reply:
    """What the person answering a leg hears: the announcement and "press 1", said twice;
    then the leg is hung up, as silence (a voicemail, a pocket) is not an answer."""
    if said is None:
        return HANG_UP
    gather = Gather(
        action=routing_path("/whisper/answer", call=call_sid, leg=position),
        prompt=(Say(whisper_text(said)),),
        speech=False,
        num_digits=1,
        timeout=WHISPER_KEY_TIMEOUT,
    )
    return (gather, gather, *HANG_UP)


def whisper_text(said: chain.Whisper) -> str:
    if said.ticket_number:
        ticket = prompts.ROUTING_TICKET.format(number=said.ticket_number)
    elif said.topic in URGENT_CATEGORIES:
        ticket = prompts.ROUTING_TICKET_PENDING
    else:
        # A consultation opens no ticket: "pending" would send the specialist looking.
        ticket = prompts.ROUTING_TICKET_NONE
    text = prompts.ROUTING_WHISPER.format(
        topic=chain_topic_title(said.topic),
        ticket=ticket,
        client=said.client or prompts.ROUTING_CLIENT_UNKNOWN,
    )
    if said.vehicles:
        plates = "; ".join(map(spoken_plate, said.vehicles))
        text += " " + prompts.ROUTING_WHISPER_VEHICLES.format(plates=plates)
    return text + " " + prompts.ROUTING_WHISPER_PRESS_1


def _say_digits(number: str) -> str:
    try:
        return say_digits(number)
    except ValueError:
        return number
