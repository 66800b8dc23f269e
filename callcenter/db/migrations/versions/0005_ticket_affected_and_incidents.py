"""portal_tickets: the organisations a ticket's problem affects, the incidents it tracks,
and indexes for a caller's open tickets (contact, caller number)

Revision ID: 0005
Revises: 0004_incidents
Create Date: 2026-12-06 17:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portal_tickets") as batch:
        batch.add_column(sa.Column("affected_organisations", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("incidents", sa.JSON(), nullable=True))
    op.create_index("ix_portal_tickets_contact_id", "portal_tickets", ["contact_id"])
    op.create_index("ix_portal_tickets_caller", "portal_tickets", ["caller"])


def downgrade() -> None:
    op.drop_index("ix_portal_tickets_caller", table_name="portal_tickets")
    op.drop_index("ix_portal_tickets_contact_id", table_name="portal_tickets")
    with op.batch_alter_table("portal_tickets") as batch:
        batch.drop_column("incidents")
        batch.drop_column("affected_organisations")
