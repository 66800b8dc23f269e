"""portal_tickets: the organisations a ticket's problem affects, and the incidents it tracks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 17:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portal_tickets") as batch:
        batch.add_column(sa.Column("affected_organisations", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("incidents", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("portal_tickets") as batch:
        batch.drop_column("incidents")
        batch.drop_column("affected_organisations")
