"""A stand-in for Twilio that plays calls against the service, behaving as Twilio's
documentation says Twilio behaves."""
