"""API tokens: created by name and shown once, stored as a hash, revocable; and the CLI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from callcenter.access.tokens import (
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from callcenter.cli.context import CliContext
from callcenter.cli.tokens import token as token_command
from callcenter.db import transaction
from callcenter.db.models import ApiToken
from callcenter.errors import InvalidInput, TokenNameTaken, UnknownApiToken
from callcenter.services import Services
from tests.conftest import DEFAULT_NOW


def test_a_token_is_shown_once_and_stored_only_as_its_hash(services: Services) -> None:
    with transaction(services.sessions) as session:
        issued = create_token(session, "grafana", now=DEFAULT_NOW)

    assert issued.secret.startswith("cc_") and len(issued.secret) > 40
    with services.sessions() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.name == "grafana"
        assert row.token_hash == hash_token(issued.secret)
        assert issued.secret not in row.token_hash
        assert row.created_at == DEFAULT_NOW
        assert verify_token(session, issued.secret) is not None
        assert verify_token(session, issued.secret + "x") is None
        assert verify_token(session, "") is None
        assert verify_token(session, None) is None


def test_two_tokens_are_different_and_each_verifies_as_itself(services: Services) -> None:
    with transaction(services.sessions) as session:
        first = create_token(session, "first", now=DEFAULT_NOW)
        second = create_token(session, "second", now=DEFAULT_NOW)
    assert first.secret != second.secret
    with services.sessions() as session:
        found = verify_token(session, second.secret)
        assert found is not None and found.name == "second"


def test_a_name_is_one_token_forever(services: Services) -> None:
    with transaction(services.sessions) as session:
        create_token(session, "grafana", now=DEFAULT_NOW)
        revoke_token(session, "grafana", now=DEFAULT_NOW)
    with pytest.raises(TokenNameTaken, match="grafana.*revoked"):
        with transaction(services.sessions) as session:
            create_token(session, "grafana", now=DEFAULT_NOW)


def test_unusable_names_are_refused(services: Services) -> None:
    for name in ["", " ", "has space", "-dash-first", "x" * 121, "имя"]:
        with pytest.raises(InvalidInput, match="token name"):
            with transaction(services.sessions) as session:
                create_token(session, name, now=DEFAULT_NOW)
    with services.sessions() as session:
        assert list_tokens(session) == []


def test_a_revoked_token_never_authenticates_again(services: Services) -> None:
    with transaction(services.sessions) as session:
        issued = create_token(session, "ivanov", now=DEFAULT_NOW)
    later = DEFAULT_NOW + timedelta(hours=1)
    with transaction(services.sessions) as session:
        revoke_token(session, "ivanov", now=later)
    with transaction(services.sessions) as session:
        # Revoking twice keeps the first time.
        token = revoke_token(session, "ivanov", now=later + timedelta(days=1))
        assert token.revoked_at == later
    with services.sessions() as session:
        assert verify_token(session, issued.secret) is None
        assert [t.name for t in list_tokens(session)] == ["ivanov"]


def test_revoking_an_unknown_name_says_so(services: Services) -> None:
    with pytest.raises(UnknownApiToken, match="nobody"):
        with transaction(services.sessions) as session:
            revoke_token(session, "nobody", now=DEFAULT_NOW)


def test_the_command_prints_the_token_once_lists_and_revokes(services: Services) -> None:
    runner = CliRunner()
    obj = CliContext(services)

    created = runner.invoke(token_command, ["create", "grafana"], obj=obj)
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("cc_")
    assert "shown only now" in created.stderr
    with services.sessions() as session:
        assert verify_token(session, secret) is not None

    again = runner.invoke(token_command, ["create", "grafana"], obj=obj)
    assert again.exit_code == 1
    assert "already exists" in again.output

    listed = runner.invoke(token_command, ["list"], obj=obj)
    assert listed.exit_code == 0
    assert "grafana\tcreated 2025-11-27 11:00\tactive" in listed.output
    assert secret not in listed.output

    revoked = runner.invoke(token_command, ["revoke", "grafana"], obj=obj)
    assert revoked.exit_code == 0
    assert "revoked" in revoked.output
    with services.sessions() as session:
        assert verify_token(session, secret) is None
    assert "revoked 2025-11-27 11:00" in runner.invoke(token_command, ["list"], obj=obj).output

    unknown = runner.invoke(token_command, ["revoke", "nobody"], obj=obj)
    assert unknown.exit_code == 1
    assert "no API token named 'nobody'" in unknown.output
