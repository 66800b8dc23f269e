"""Console users: supervisors and specialists, their passwords, and login throttling.

    supervisor   everything: the log, actions on calls, directory and roster editing
    specialist   reads the log and the pages around it; changes nothing

Passwords are stored as werkzeug's scrypt hashes (salted, slow on purpose). A login is
refused with the same `LoginFailed` whether the name or the password was wrong, and an
unknown name costs the same hashing time as a known one, so the answer and its timing do
not tell an attacker which names exist.

Throttling, two counters:
- per user, in the database (`User.failed_logins`, `locked_until`): `MAX_USER_FAILURES`
  wrong passwords in a row lock the account for `LOCK_DURATION`; while locked, even the
  right password is refused without being checked. Shared by every web process.
- per client address, in memory (`AddressThrottle`): `MAX_ADDRESS_FAILURES` failures within
  `LOCK_DURATION` lock the address for as long. This one is per process (gunicorn workers
  each count their own), which only makes it more lenient; its limit is higher than the
  per-user one because an office behind one NAT address shares it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from callcenter.clock import as_utc
from callcenter.db.models import User
from callcenter.errors import (
    InvalidInput,
    LoginFailed,
    LoginLocked,
    UnknownUser,
    UserNameTaken,
    WeakPassword,
)

SUPERVISOR = "supervisor"
SPECIALIST = "specialist"
ROLES = (SUPERVISOR, SPECIALIST)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
MAX_USER_FAILURES = 5
MAX_ADDRESS_FAILURES = 20
LOCK_DURATION = timedelta(minutes=15)

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
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, name: str, password: str) -> User:
    """A new password for `name`; also lifts a lock (the operator vouches for the user).

    Sessions signed in with the old password end: the console checks the hash they carry.
    """
    user = get_user(session, name)
    if user is None:
        raise UnknownUser(f"no console user named {name!r}")
    _check_password(user.name, password)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.name)).all()


def authenticate(session: Session, name: str, password: str, *, now: datetime) -> User:
    """The user whose name and password these are, in the caller's transaction (commit it
    whatever happens: the failure counters are part of the answer).

    Raises `LoginLocked` while the account is locked (the password is not checked), else
    `LoginFailed` for a wrong name or password.
    """
    user = get_user(session, name) if name.strip() else None
    if user is None:
        check_password_hash(_dummy_hash(), password)
        raise LoginFailed("wrong user name or password")
    if user.locked_until is not None and as_utc(user.locked_until) > now:
        raise LoginLocked(as_utc(user.locked_until))
    if not check_password_hash(user.password_hash, password):
        user.failed_logins = (user.failed_logins or 0) + 1
        if user.failed_logins >= MAX_USER_FAILURES:
            # A fresh count after the lock: the next lock needs as many failures again.
            user.failed_logins = 0
            user.locked_until = now + LOCK_DURATION
            raise LoginLocked(user.locked_until)
        raise LoginFailed("wrong user name or password")
    user.failed_logins = 0
    user.locked_until = None
    return user


def password_stamp(user: User) -> str:
    """A short fingerprint of the stored hash: a session carrying an older one is void."""
    return hashlib.sha256(user.password_hash.encode("utf-8")).hexdigest()[:16]


class AddressThrottle:
    """Failed logins per client address within a sliding `LOCK_DURATION` window.

    Thread-safe; in memory, per process (see the module docstring).
    """

    def __init__(
        self, max_failures: int = MAX_ADDRESS_FAILURES, window: timedelta = LOCK_DURATION
    ) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, got {max_failures}")
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def check(self, address: str, now: datetime) -> None:
        """Raise `LoginLocked` when `address` has used up its failures."""
        with self._lock:
            recent = self._recent(address, now)
            if len(recent) >= self.max_failures:
                raise LoginLocked(recent[-self.max_failures] + self.window)

    def failed(self, address: str, now: datetime) -> None:
        with self._lock:
            self._recent(address, now).append(now)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str, now: datetime) -> deque[datetime]:
        recent = self._failures.setdefault(address, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        # Forget quiet addresses, so the table cannot grow without bound.
        if len(self._failures) > 10_000:
            for key in [k for k, v in self._failures.items() if not v and k != address]:
                del self._failures[key]
        return recent
