"""Console users: supervisors and specialists, their passwords, and login throttling.

    supervisor   everything: the log, actions on calls, directory and roster editing
    specialist   reads the log and the pages around it; changes nothing

Passwords are stored as werkzeug's scrypt hashes (salted, slow on purpose). A login is
refused with the same `LoginFailed` whether the name or the password was wrong, and an
unknown name costs the same hashing time as a known one, so the answer and its timing do
not tell an attacker which names exist.

Throttling is the web side's (Flask-Limiter, see `callcenter.console.auth`): it counts
failed attempts per submitted name and per client address alike, whether the name exists
or not, and slows an attacker down for a short window instead of locking the user out.

Sessions are revocable: `User.session_generation` is carried by every console session and
checked on every request; `end_sessions` (logout, "sign out everywhere") and
`set_password` bump it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from callcenter.db.models import User
from callcenter.errors import (
    InvalidInput,
    LoginFailed,
    UnknownUser,
    UserNameTaken,
    WeakPassword,
)

SUPERVISOR = "supervisor"
SPECIALIST = "specialist"
ROLES = (SUPERVISOR, SPECIALIST)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200

PASSWORD_METHOD = "scrypt"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,119}")


@dataclass(frozen=True)
class ConsoleUser:
    """Who is logged in, as the console needs it (no hash, no ORM row)."""

    id: int
    name: str
    role: str

    @property
    def can_edit(self) -> bool:
        return self.role == SUPERVISOR

    @classmethod
    def of(cls, user: User) -> ConsoleUser:
        return cls(id=user.id, name=user.name, role=user.role)


@cache
def _dummy_hash() -> str:
    """Compared against when the name is unknown, so that case costs one scrypt too."""
    return generate_password_hash("not-a-password-of-anyone", method=PASSWORD_METHOD)


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


def password_problem(name: str, password: str) -> str | None:
    """Why `password` is unusable for user `name`, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password must have at most {MAX_PASSWORD_LENGTH} characters"
    if password.strip() != password:
        return "the password must not start or end with spaces"
    if len(set(password)) < 4:
        return "the password repeats too few different characters"
    if name.casefold() in password.casefold():
        return "the password must not contain the user name"
    return None


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"user name {name!r}: use 1-120 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def _check_password(name: str, password: str) -> None:
    why = password_problem(name, password)
    if why is not None:
        raise WeakPassword(why)


def get_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name.strip()))


def create_user(session: Session, name: str, role: str, password: str, *, now: datetime) -> User:
    """A new console user. Raises InvalidInput (name, role), WeakPassword, UserNameTaken."""
    name = _check_name(name)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    _check_password(name, password)
    if get_user(session, name) is not None:
        raise UserNameTaken(f"a console user named {name!r} already exists")
    user = User(
        name=name,
        role=role,
        password_hash=hash_password(password),
        created_at=now,
        failed_logins=0,
        locked_until=None,
        session_generation=0,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, name: str, password: str) -> User:
    """A new password for `name`; also lifts a lock (the operator vouches for the user).

    Every session of the user ends (its session generation moves on).
    """
    user = get_user(session, name)
    if user is None:
        raise UnknownUser(f"no console user named {name!r}")
    _check_password(user.name, password)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.session_generation = (user.session_generation or 0) + 1
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.name)).all()


def authenticate(session: Session, name: str, password: str, *, now: datetime) -> User:
    """The user whose name and password these are. Raises `LoginFailed` for a wrong name
    or password alike (and an unknown name costs one scrypt too, so timing tells nothing).

    No account is ever locked: a lock-out would tell an attacker the name exists and keep
    its owner out; attempts are slowed down by the web side's throttle instead.
    """
    user = get_user(session, name) if name.strip() else None
    if user is None:
        check_password_hash(_dummy_hash(), password)
        raise LoginFailed("wrong user name or password")
    if not check_password_hash(user.password_hash, password):
        raise LoginFailed("wrong user name or password")
    return user


def end_sessions(session: Session, name: str) -> User:
    """Sign `name` out everywhere: every session signed in before this ends."""
    user = get_user(session, name)
    if user is None:
        raise UnknownUser(f"no console user named {name!r}")
    user.session_generation = (user.session_generation or 0) + 1
    return user
