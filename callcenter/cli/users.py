"""`callcenter user create NAME --role supervisor|specialist | list | passwd NAME | sign-out NAME`.

Console accounts. The password is asked twice at the terminal (never echoed), or read from
standard input with `--password-stdin` for scripts (`printf '%s\\n' "$PW" | callcenter user
create head --role supervisor --password-stdin`): never from the command line, where it
would end up in the shell history and the process list.
"""

from __future__ import annotations

import sys

import click

from callcenter.access.users import (
    MIN_PASSWORD_LENGTH,
    ROLES,
    create_user,
    end_sessions,
    list_users,
    set_password,
)
from callcenter.cli.context import CliContext, pass_cli
from callcenter.clock import to_moscow
from callcenter.db import transaction
from callcenter.errors import InvalidInput


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.ClickException("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    password: str = click.prompt(
        f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
        hide_input=True,
        confirmation_prompt="Repeat the password",
    )
    return password


@click.group()
def user() -> None:
    """Console users: supervisors (everything) and specialists (read-only log)."""


@user.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
    help="supervisor: everything; specialist: reads the log, changes nothing.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@pass_cli
def user_create(cli: CliContext, name: str, role: str, password_stdin: bool) -> None:
    """Create console user NAME (the first one: --role supervisor)."""
    services = cli.services
    password = _read_password(password_stdin)
    try:
        with transaction(services.sessions) as session:
            created = create_user(session, name, role, password, now=services.clock())
            shown = f"{created.name} ({created.role})"
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"console user {shown} created; log in at /console/login")


@user.command("list")
@pass_cli
def user_list(cli: CliContext) -> None:
    """List console users, their roles and whether they are locked out."""
    services = cli.services
    now = services.clock()
    with services.sessions() as session:
        users = list_users(session)
        if not users:
            click.echo(
                "no console users (create one with: callcenter user create NAME --role supervisor)"
            )
            return
        for u in users:
            created = to_moscow(u.created_at).strftime("%Y-%m-%d %H:%M")
            state = "active"
            if u.locked_until is not None and u.locked_until > now:
                state = "locked until " + to_moscow(u.locked_until).strftime("%Y-%m-%d %H:%M")
            click.echo(f"{u.name}\t{u.role}\tcreated {created}\t{state}")


@user.command("passwd")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@pass_cli
def user_passwd(cli: CliContext, name: str, password_stdin: bool) -> None:
    """Set a new password for NAME (also lifts a lock-out; signs out its sessions)."""
    services = cli.services
    password = _read_password(password_stdin)
    try:
        with transaction(services.sessions) as session:
            set_password(session, name, password)
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} changed; its open sessions are signed out")


@user.command("sign-out")
@click.argument("name")
@pass_cli
def user_sign_out(cli: CliContext, name: str) -> None:
    """End every console session of NAME (a lost laptop, a leaver)."""
    try:
        with transaction(cli.services.sessions) as session:
            end_sessions(session, name)
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"every console session of {name} is signed out")


commands: list[click.Command] = [user]
