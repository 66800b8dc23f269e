"""`callcenter token create NAME | list | revoke NAME`: bearer tokens for `/api/calls`."""

from __future__ import annotations

import sys

import click

from callcenter.access.tokens import create_token, list_tokens, revoke_token
from callcenter.cli.context import CliContext, pass_cli
from callcenter.clock import to_moscow
from callcenter.db import transaction
from callcenter.errors import InvalidInput


@click.group()
def token() -> None:
    """API tokens for /api/calls (Authorization: Bearer <token>)."""


@token.command("create")
@click.argument("name")
@pass_cli
def token_create(cli: CliContext, name: str) -> None:
    """Create a token called NAME and print it (it is shown only this once)."""
    services = cli.services
    try:
        with transaction(services.sessions) as session:
            issued = create_token(session, name, now=services.clock())
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    # Exactly as issued: never through the number mask of the command's output.
    click.echo(issued.secret, file=getattr(sys.stdout, "unmasked", sys.stdout))
    click.echo(
        f"API token {issued.name!r} created. It is shown only now: store it safely.\n"
        f"Use it as:  curl -H 'Authorization: Bearer {issued.secret}' "
        "http://127.0.0.1:8000/api/calls",
        err=True,
    )


@token.command("list")
@pass_cli
def token_list(cli: CliContext) -> None:
    """List tokens (names and dates; the tokens themselves are not stored)."""
    with cli.services.sessions() as session:
        tokens = list_tokens(session)
    if not tokens:
        click.echo("no API tokens (create one with: callcenter token create NAME)")
        return
    for t in tokens:
        created = to_moscow(t.created_at).strftime("%Y-%m-%d %H:%M")
        state = (
            "revoked " + to_moscow(t.revoked_at).strftime("%Y-%m-%d %H:%M")
            if t.revoked_at is not None
            else "active"
        )
        click.echo(f"{t.name}\tcreated {created}\t{state}")


@token.command("revoke")
@click.argument("name")
@pass_cli
def token_revoke(cli: CliContext, name: str) -> None:
    """Revoke the token called NAME; requests using it get 401 from now on."""
    services = cli.services
    try:
        with transaction(services.sessions) as session:
            revoke_token(session, name, now=services.clock())
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"API token {name!r} revoked")


commands: list[click.Command] = [token]
