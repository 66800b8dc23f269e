"""Twilio webhooks of on-duty routing (filled in by the routing issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("routing", __name__, url_prefix="/webhooks/voice/route")
