"""The built-in portal's REST API (filled in by the ticket issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("portal_api", __name__, url_prefix="/portal/api/v1")
