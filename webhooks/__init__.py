"""Twilio-facing Flask blueprints: verify the signature, parse, one domain step, TwiML."""
