"""sms_messages: the call each SMS is about, its recipient, Twilio's delivery report

Revision ID: 0007_sms_delivery
Revises: 0006
Create Date: 2026-12-06 20:40:00

Messages stored before this revision get their call from their key, where the key names
one: `chain-alert:{CallSid}:…`, `missed-urgent:{CallSid}`, `kb-link:{CallSid}`,
`ticket-request:{id}:…` (that request's call) and `callback-sla:{item}` (that item's call).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from callcenter.db import UTCDateTime

revision: str = "0007_sms_delivery"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_messages") as batch:
        batch.add_column(sa.Column("call_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("recipient", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("delivery", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("error_code", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("updated_at", UTCDateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_sms_messages_call_id_calls", "calls", ["call_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_sms_messages_call_id", ["call_id"])
        batch.create_index("ix_sms_messages_twilio_sid", ["twilio_sid"])
    _link_existing_messages()


def _link_existing_messages() -> None:
    """Each stored message whose key names a call, a ticket request or a call-back item
    gets that call (the ledger is small: read once, written per message)."""
    conn = op.get_bind()
    calls = dict(conn.execute(sa.text("SELECT call_sid, id FROM calls")).all())
    requests = dict(
        conn.execute(
            sa.text("SELECT id, call_id FROM ticket_requests WHERE call_id IS NOT NULL")
        ).all()
    )
    items = dict(conn.execute(sa.text("SELECT id, call_id FROM callback_items")).all())
    update = sa.text("UPDATE sms_messages SET call_id = :call_id WHERE id = :id")
    for message_id, key in conn.execute(sa.text("SELECT id, key FROM sms_messages")).all():
        kind, _, rest = str(key).partition(":")
        ref = rest.split(":", 1)[0]
        call_id = None
        if kind in ("chain-alert", "missed-urgent", "kb-link"):
            call_id = calls.get(ref)
        elif kind == "ticket-request" and ref.isdigit():
            call_id = requests.get(int(ref))
        elif kind == "callback-sla" and ref.isdigit():
            call_id = items.get(int(ref))
        if call_id is not None:
            conn.execute(update, {"call_id": call_id, "id": message_id})


def downgrade() -> None:
    with op.batch_alter_table("sms_messages") as batch:
        batch.drop_index("ix_sms_messages_twilio_sid")
        batch.drop_index("ix_sms_messages_call_id")
        batch.drop_constraint("fk_sms_messages_call_id_calls", type_="foreignkey")
        batch.drop_column("updated_at")
        batch.drop_column("error_code")
        batch.drop_column("delivery")
        batch.drop_column("recipient")
        batch.drop_column("call_id")
