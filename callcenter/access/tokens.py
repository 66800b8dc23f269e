"""API tokens for `/api/calls`: created by name, shown once, stored only as a hash.

A token is `cc_` + 32 random bytes (URL-safe base64). With that much entropy a plain
SHA-256 is enough to store it: there is nothing to brute-force, and a lookup by hash is a
single indexed query on every request. Revoking keeps the row (and its name) for the audit
trail; a revoked token never authenticates again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.db.models import ApiToken
from callcenter.errors import InvalidInput, TokenNameTaken, UnknownApiToken

TOKEN_PREFIX = "cc_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,119}")


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: `secret` exists only here, never in the database."""

    name: str
    secret: str
    created_at: datetime


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, *, now: datetime) -> IssuedToken:
    """Issue a new token called `name` (a person or system: "grafana", "ivanov").

    Raises InvalidInput for an unusable name and TokenNameTaken when the name exists, even
    revoked: a name identifies one token forever in the audit trail.
    """
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"token name {name!r}: use 1-120 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    existing = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if existing is not None:
        state = "revoked" if existing.revoked_at is not None else "active"
        raise TokenNameTaken(f"an API token named {name!r} already exists ({state})")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(secret), created_at=now))
    session.flush()
    return IssuedToken(name=name, secret=secret, created_at=now)


def verify_token(session: Session, presented: str | None) -> ApiToken | None:
    """The active token matching `presented`, or None (missing, unknown or revoked)."""
    if not presented or not presented.startswith(TOKEN_PREFIX) or len(presented) > 200:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(presented)))
    if token is None or token.revoked_at is not None:
        return None
    return token


def revoke_token(session: Session, name: str, *, now: datetime) -> ApiToken:
    """Revoke the token called `name` (idempotent: revoking twice keeps the first time)."""
    token = session.scalar(select(ApiToken).where(ApiToken.name == name.strip()))
    if token is None:
        raise UnknownApiToken(f"no API token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = now
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)))
