"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from callcenter.db import Base
from callcenter.db.migrate import alembic_config, upgrade
from tests.conftest import PG_ADMIN_URL


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    name = f"cc_migr_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_head_matches_models(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    # Running it again is a no-op, as `callcenter serve` does on every start.
    upgrade(empty_database_url)


def test_upgrade_gives_each_owner_of_call_state_its_own_column(empty_database_url: str) -> None:
    """Calls stored while routing and the recording list lived inside `calls.state` keep
    both, each in its own column, and the IVR's state keeps the rest."""
    upgrade(empty_database_url, "0001")
    engine = create_engine(empty_database_url)
    routing = {"kind": "urgent", "steps": [], "step": 1, "phase": "voicemail"}
    merged = {"step": "ended", "turn": 1, "routing": routing, "recording_sids": ["RE1"]}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO calls (call_sid, caller_kind, vehicles, state, outcome, interrupted,"
                " flagged, started_at, updated_at) VALUES ('CA1', 'mobile', '[]', :state,"
                " 'completed', false, false, :at, :at)"
            ),
            {"state": json.dumps(merged), "at": "2026-12-01 10:00:00+00:00"},
        )
    upgrade(empty_database_url)
    with engine.connect() as conn:
        state, routing_state, sids = conn.execute(
            text("SELECT state, routing_state, recording_sids FROM calls")
        ).one()
    engine.dispose()
    loaded = [
        value if not isinstance(value, str) else json.loads(value)
        for value in (state, routing_state, sids)
    ]
    assert loaded == [{"step": "ended", "turn": 1}, routing, ["RE1"]]


def test_upgrade_links_each_stored_sms_to_the_call_its_key_names(empty_database_url: str) -> None:
    """SMS sent before `0007_sms_delivery` get their call from their key (a chain alert or
    the missed-call SMS by CallSid, a ticket follow-up by its request, a call-back alert by
    its item); the others (an incident's digest, a call no longer there) stay without one.
    Downgrading drops the new columns and keeps every message."""
    upgrade(empty_database_url, "0006")
    engine = create_engine(empty_database_url)
    at = "2026-12-01 10:00:00+00:00"
    with engine.begin() as conn:
        for sid in ("CA1", "CA2"):
            conn.execute(
                text(
                    "INSERT INTO calls (call_sid, caller_kind, vehicles, state, recording_sids,"
                    " outcome, interrupted, flagged, started_at, updated_at) VALUES (:sid,"
                    " 'mobile', '[]', '{}', '[]', 'completed', false, false, :at, :at)"
                ),
                {"sid": sid, "at": at},
            )
        conn.execute(
            text(
                "INSERT INTO ticket_requests (call_id, idempotency_key, draft, status, attempts,"
                " followups, created_at, updated_at) VALUES (2, 'CA2', '{}', 'done', 1, '{}',"
                " :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO callback_items (call_id, reason, status, waiting_since, due_at,"
                " attempts, created_at, updated_at) VALUES (1, 'voicemail', 'open', :at, :at, 0,"
                " :at, :at)"
            ),
            {"at": at},
        )
        keys = [
            "chain-alert:CA1:+79123456701",
            "missed-urgent:CA2",
            "kb-link:CA1",
            "ticket-request:1:caller",
            "ticket-request:1:alert:+79123456709",
            "callback-sla:1",
            "incident:1:digest:3",
            "chain-alert:CA9:+79123456701",
        ]
        for key in keys:
            conn.execute(
                text(
                    'INSERT INTO sms_messages (key, "to", body, status, twilio_sid, created_at)'
                    " VALUES (:key, '+79123456701', 'SKAI', 'sent', 'SM1', :at)"
                ),
                {"key": key, "at": at},
            )
    upgrade(empty_database_url)
    with engine.connect() as conn:
        linked = conn.execute(
            text("SELECT key, call_id, delivery, recipient FROM sms_messages ORDER BY id")
        ).all()
    assert [tuple(row) for row in linked] == [
        ("chain-alert:CA1:+79123456701", 1, None, None),
        ("missed-urgent:CA2", 2, None, None),
        ("kb-link:CA1", 1, None, None),
        ("ticket-request:1:caller", 2, None, None),
        ("ticket-request:1:alert:+79123456709", 2, None, None),
        ("callback-sla:1", 1, None, None),
        ("incident:1:digest:3", None, None, None),
        ("chain-alert:CA9:+79123456701", None, None, None),
    ]

    command.downgrade(alembic_config(empty_database_url), "0006")
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("sms_messages")}
        count = conn.execute(text("SELECT count(*) FROM sms_messages")).scalar_one()
    engine.dispose()
    assert "call_id" not in columns and "delivery" not in columns
    assert count == len(keys)
