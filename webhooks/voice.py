"""Twilio Voice webhooks (filled in by the IVR issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("voice", __name__, url_prefix="/webhooks/voice")
