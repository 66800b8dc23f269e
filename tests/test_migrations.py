"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from callcenter.db import Base
from callcenter.db.migrate import upgrade
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
