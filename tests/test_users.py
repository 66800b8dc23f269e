"""Console users: creating them (domain and `callcenter user`), passwords, login throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.security import check_password_hash

from callcenter.access.users import (
    authenticate,
    create_user,
    end_sessions,
    password_problem,
    set_password,
)
from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db import transaction
from callcenter.db.models import User
from callcenter.errors import (
    InvalidInput,
    LoginFailed,
    UnknownUser,
    UserNameTaken,
    WeakPassword,
)
from callcenter.services import Services
from tests.conftest import DEFAULT_NOW, MutableClock

GOOD = "correct horse battery"


def test_a_user_is_stored_with_a_salted_slow_hash_never_the_password(
    services: Services,
) -> None:
    with transaction(services.sessions) as session:
        create_user(session, "head", "supervisor", GOOD, now=DEFAULT_NOW)
        create_user(session, "ivanov", "specialist", GOOD, now=DEFAULT_NOW)
    with services.sessions() as session:
        head, ivanov = session.scalars(select(User).order_by(User.name)).all()
    assert (head.role, ivanov.role) == ("supervisor", "specialist")
    assert GOOD not in head.password_hash
    assert head.password_hash.startswith("scrypt:")
    assert head.password_hash != ivanov.password_hash  # salted
    assert check_password_hash(head.password_hash, GOOD)


@pytest.mark.parametrize(
    ("name", "role", "password", "error", "message"),
    [
        ("head", "admin", GOOD, InvalidInput, "role must be one of supervisor, specialist"),
        ("", "supervisor", GOOD, InvalidInput, "user name ''"),
        ("a b", "supervisor", GOOD, InvalidInput, "user name 'a b'"),
        ("head", "supervisor", "short", WeakPassword, "at least 10 characters"),
        ("head", "supervisor", "aaaaaaaaaaaa", WeakPassword, "too few different characters"),
        ("ivanova", "supervisor", "Ivanova-2025!", WeakPassword, "must not contain the user"),
        ("head", "supervisor", " padded password ", WeakPassword, "start or end with spaces"),
    ],
)
def test_unusable_names_roles_and_passwords_are_refused_with_the_reason(
    services: Services,
    name: str,
    role: str,
    password: str,
    error: type[Exception],
    message: str,
) -> None:
    with transaction(services.sessions) as session, pytest.raises(error, match=message):
        create_user(session, name, role, password, now=DEFAULT_NOW)
    with services.sessions() as session:
        assert session.scalars(select(User)).all() == []


def test_a_name_is_taken_once(services: Services) -> None:
    with transaction(services.sessions) as session:
        create_user(session, "head", "supervisor", GOOD, now=DEFAULT_NOW)
    with transaction(services.sessions) as session, pytest.raises(UserNameTaken):
        create_user(session, "head", "specialist", GOOD, now=DEFAULT_NOW)


def test_password_problem_accepts_a_decent_passphrase() -> None:
    assert password_problem("head", GOOD) is None
    assert password_problem("head", "Пароль-для-консоли") is None


def test_wrong_passwords_never_lock_the_account_out(services: Services) -> None:
    # A lock-out would tell an attacker the name exists and keep its owner out: the web
    # side's throttle slows guessing down instead (tests/test_security.py).
    now = DEFAULT_NOW
    with transaction(services.sessions) as session:
        create_user(session, "head", "supervisor", GOOD, now=now)
    for _ in range(20):
        with services.sessions() as session, pytest.raises(LoginFailed) as caught:
            authenticate(session, "head", "wrong password", now=now)
        assert str(caught.value) == "wrong user name or password"
    with services.sessions() as session:
        assert authenticate(session, "head", GOOD, now=now).name == "head"


def test_a_new_password_and_signing_out_everywhere_move_the_session_generation(
    services: Services,
) -> None:
    with transaction(services.sessions) as session:
        assert (
            create_user(session, "head", "supervisor", GOOD, now=DEFAULT_NOW).session_generation
            == 0
        )
    with transaction(services.sessions) as session:
        assert set_password(session, "head", "another good passphrase").session_generation == 1
    with transaction(services.sessions) as session:
        assert end_sessions(session, "head").session_generation == 2
    with transaction(services.sessions) as session, pytest.raises(UnknownUser):
        end_sessions(session, "nobody")


def test_an_unknown_name_fails_like_a_wrong_password(services: Services) -> None:
    with services.sessions() as session, pytest.raises(LoginFailed) as caught:
        authenticate(session, "nobody", GOOD, now=DEFAULT_NOW)
    assert type(caught.value) is LoginFailed
    assert str(caught.value) == "wrong user name or password"


def test_a_new_password_lifts_the_lock(services: Services) -> None:
    now = DEFAULT_NOW
    with transaction(services.sessions) as session:
        user = create_user(session, "head", "supervisor", GOOD, now=now)
        user.failed_logins, user.locked_until = 0, now + timedelta(minutes=15)
    with transaction(services.sessions) as session:
        set_password(session, "head", "another good passphrase")
    with services.sessions() as session:
        authenticate(session, "head", "another good passphrase", now=now)
    with transaction(services.sessions) as session, pytest.raises(UnknownUser):
        set_password(session, "nobody", "another good passphrase")


# ---------------------------------------------------------------- the CLI


def run(services: Services, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), obj=CliContext(services), input=stdin)
    return result.exit_code, result.output


def test_cli_creates_users_from_stdin_or_a_prompt_lists_and_changes_passwords(
    services: Services, clock: MutableClock
) -> None:
    code, out = run(
        services,
        "user",
        "create",
        "head",
        "--role",
        "supervisor",
        "--password-stdin",
        stdin=GOOD + "\n",
    )
    assert code == 0, out
    assert "console user head (supervisor) created" in out

    # The prompt asks twice and never echoes.
    code, out = run(
        services,
        "user",
        "create",
        "ivanov",
        "--role",
        "specialist",
        stdin="another good passphrase\nanother good passphrase\n",
    )
    assert code == 0, out
    assert "another good passphrase" not in out
    with services.sessions() as session:
        authenticate(session, "ivanov", "another good passphrase", now=clock())

    code, out = run(
        services,
        "user",
        "create",
        "head",
        "--role",
        "supervisor",
        "--password-stdin",
        stdin=GOOD + "\n",
    )
    assert code == 1
    assert "already exists" in out

    code, out = run(
        services,
        "user",
        "create",
        "petrov",
        "--role",
        "specialist",
        "--password-stdin",
        stdin="short\n",
    )
    assert code == 1
    assert "at least 10 characters" in out

    code, out = run(
        services,
        "user",
        "create",
        "petrov",
        "--role",
        "boss",
        "--password-stdin",
        stdin=GOOD + "\n",
    )
    assert code == 2
    assert "'boss' is not one of 'supervisor', 'specialist'" in out

    with transaction(services.sessions) as session:
        user = session.scalar(select(User).where(User.name == "ivanov"))
        assert user is not None
        user.locked_until = clock() + timedelta(minutes=15)
    code, out = run(services, "user", "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("head\tsupervisor\tcreated 2025-11-27 11:00\tactive")
    assert lines[1] == "ivanov\tspecialist\tcreated 2025-11-27 11:00\tlocked until 2025-11-27 11:15"

    code, out = run(
        services, "user", "passwd", "ivanov", "--password-stdin", stdin="brand new passphrase\n"
    )
    assert code == 0, out
    with services.sessions() as session:
        authenticate(session, "ivanov", "brand new passphrase", now=clock())
    code, out = run(services, "user", "passwd", "nobody", "--password-stdin", stdin=GOOD + "\n")
    assert code == 1
    assert "no console user named 'nobody'" in out


def test_cli_list_without_users_says_how_to_make_one(services: Services) -> None:
    code, out = run(services, "user", "list")
    assert code == 0
    assert "callcenter user create NAME --role supervisor" in out
