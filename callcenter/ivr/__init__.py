"""The Russian-language IVR: the flow as data, the prompts, the step engine, TwiML.

prompts.py        every text the caller hears (an operator edits this one file)
flow.py           menus (key / words → value) and the main menu's paths
engine.py         the Flask-free step engine: (state, event, context) → (state, actions, reply)
reply.py          the reply as small verb values; twiml.py renders them as TwiML
spoken.py         numbers in ru-RU speech; plates.py Russian licence plates
webhook_params.py Twilio's parameters read into typed events (MalformedWebhook)
conversation.py   one webhook in one transaction: lock the call, step, apply, log
fallback.py       the replies that need no database: apology, duty phone, voicemail
spool.py          keeping fallback events when the database is down
"""
