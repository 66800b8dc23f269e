"""callback_items: the call-back queue; dial_legs.purpose: chain or call-back legs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 17:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from callcenter.db import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callback_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("waiting_since", UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=120), nullable=True),
        sa.Column("taken_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(length=20), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("specialist_call_sid", sa.String(length=64), nullable=True),
        sa.Column("bridge_status", sa.String(length=20), nullable=True),
        sa.Column("done_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_by", sa.String(length=120), nullable=True),
        sa.Column("sla_alerted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_id"),
        sa.UniqueConstraint("specialist_call_sid"),
    )
    op.create_index("ix_callback_items_status", "callback_items", ["status"])
    op.create_index("ix_callback_items_waiting_since", "callback_items", ["waiting_since"])
    with op.batch_alter_table("dial_legs") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(length=20), nullable=False, server_default="chain")
        )


def downgrade() -> None:
    with op.batch_alter_table("dial_legs") as batch:
        batch.drop_column("purpose")
    op.drop_index("ix_callback_items_waiting_since", table_name="callback_items")
    op.drop_index("ix_callback_items_status", table_name="callback_items")
    op.drop_table("callback_items")
