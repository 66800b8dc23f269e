"""Twilio's REST API: SMS, recordings, calls, number provisioning."""
