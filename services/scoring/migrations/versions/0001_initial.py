"""Projections (tickets, customers, messages), scores, and the outbox/processed-events tables.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from quimbi_common.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(255)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_infrastructure_tables()
    op.create_table(
        "tickets",
        sa.Column("id", ID, primary_key=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("assigned_agent_id", ID, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("waiting_since", TIMESTAMP, nullable=True),
        sa.Column("customer_sentiment", sa.Float, nullable=False, server_default="0.5"),
    )
    op.create_index("ix_tickets_customer_id", "tickets", ["customer_id"])
    op.create_table(
        "customers",
        sa.Column("id", ID, primary_key=True),
        sa.Column("lifetime_value", sa.Float, nullable=False),
        sa.Column("churn_risk", sa.Float, nullable=False),
        sa.Column("fetched_at", TIMESTAMP, nullable=True),
        sa.Column("snapshot_at", TIMESTAMP, nullable=True),
    )
    op.create_table(
        "messages",
        sa.Column("id", ID, primary_key=True),
        sa.Column("ticket_id", ID, nullable=False),
        sa.Column("from_agent", sa.Boolean, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sentiment_score", sa.Float, nullable=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_messages_ticket_created", "messages", ["ticket_id", "created_at"])
    op.create_table(
        "ticket_scores",
        sa.Column("ticket_id", ID, primary_key=True),
        sa.Column("smart_score", sa.Float, nullable=False),
        sa.Column("parts", JSONB, nullable=False),
        sa.Column("inputs", JSONB, nullable=False),
        sa.Column("computed_at", TIMESTAMP, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("recalc_due_at", TIMESTAMP, nullable=True),
    )
    op.create_index(
        "ix_ticket_scores_recalc_due",
        "ticket_scores",
        ["recalc_due_at"],
        postgresql_where=sa.text("recalc_due_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("ticket_scores")
    op.drop_table("messages")
    op.drop_table("customers")
    op.drop_table("tickets")
    drop_infrastructure_tables()
