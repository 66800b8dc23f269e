"""state per owner: routing's state and the recording SIDs move out of calls.state

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 04:30:00

`calls.state` was written by three owners (the IVR, routing, intake's recording list),
each merging its keys into the others'. Routing's state and the recording SIDs get
columns of their own; `calls.state` keeps the IVR's `CallState` alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_calls = sa.table(
    'calls',
    sa.column('id', sa.Integer()),
    sa.column('state', sa.JSON()),
    sa.column('routing_state', sa.JSON()),
    sa.column('recording_sids', sa.JSON()),
)
_MOVED = ('routing', 'recording_sids')


def upgrade() -> None:
    with op.batch_alter_table('calls') as batch:
        batch.add_column(sa.Column('routing_state', sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column('recording_sids', sa.JSON(), nullable=False, server_default='[]')
        )
    connection = op.get_bind()
    for call_id, state in connection.execute(sa.select(_calls.c.id, _calls.c.state)).all():
        if not isinstance(state, dict) or not any(key in state for key in _MOVED):
            continue
        connection.execute(
            _calls.update()
            .where(_calls.c.id == call_id)
            .values(
                state={k: v for k, v in state.items() if k not in _MOVED},
                routing_state=state.get('routing'),
                recording_sids=list(state.get('recording_sids') or []),
            )
        )


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_calls.c.id, _calls.c.state, _calls.c.routing_state, _calls.c.recording_sids)
    ).all()
    for call_id, state, routing, sids in rows:
        if routing is None and not sids:
            continue
        merged: dict[str, Any] = dict(state or {})
        if routing is not None:
            merged['routing'] = routing
        if sids:
            merged['recording_sids'] = sids
        connection.execute(
            _calls.update().where(_calls.c.id == call_id).values(state=merged)
        )
    with op.batch_alter_table('calls') as batch:
        batch.drop_column('recording_sids')
        batch.drop_column('routing_state')
