"""incidents and incident_calls: known incidents, announced to callers, joined by them

Revision ID: 0004_incidents
Revises: 0003
Create Date: 2026-12-06 17:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import callcenter.db

revision: str = "0004_incidents"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product", sa.String(length=20), nullable=False),
        sa.Column("open_product", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("ticket_number", sa.String(length=40), nullable=True),
        sa.Column("ticket_request_id", sa.Integer(), nullable=True),
        sa.Column("detected", sa.Boolean(), nullable=False),
        sa.Column("opened_at", callcenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=120), nullable=True),
        sa.Column("closed_at", callcenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=120), nullable=True),
        sa.Column("closing_message", sa.Text(), nullable=True),
        sa.Column("alerted_at", callcenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("followups_done_at", callcenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("digest_at", callcenter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("digest_joined", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_request_id"], ["ticket_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_product"),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_table(
        "incident_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("at", callcenter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "call_id"),
    )
    op.create_index("ix_incident_calls_incident_id", "incident_calls", ["incident_id"])
    op.create_index("ix_incident_calls_call_id", "incident_calls", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_incident_calls_call_id", table_name="incident_calls")
    op.drop_index("ix_incident_calls_incident_id", table_name="incident_calls")
    op.drop_table("incident_calls")
    op.drop_index("ix_incidents_status", table_name="incidents")
    op.drop_table("incidents")
