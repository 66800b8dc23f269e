"""`/api/calls`: the call log as JSON, behind a bearer token (filled in by the IVR issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")
