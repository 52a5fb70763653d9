"""Customers, tickets and messages, with the inbox's indexes; the outbox tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 17:35:08.982859
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quimbi_common.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_infrastructure_tables()
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")  # topic-alert ILIKE via GIN indexes
    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "lifetime_value", sa.Numeric(precision=12, scale=2), server_default="0", nullable=False
        ),
        sa.Column("total_orders", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "churn_risk_score", sa.Numeric(precision=3, scale=2), server_default="0", nullable=False
        ),
        sa.Column("churn_risk_level", sa.String(length=50), nullable=True),
        sa.Column("intelligence_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=50), nullable=False),
        sa.Column("priority", sa.String(length=50), nullable=False),
        sa.Column("channel", sa.String(length=50), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("assigned_agent_id", sa.String(length=255), nullable=True),
        sa.Column("created_by_agent_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "customer_sentiment",
            sa.Numeric(precision=3, scale=2),
            server_default="0.5",
            nullable=False,
        ),
        sa.Column(
            "estimated_difficulty",
            sa.Numeric(precision=3, scale=2),
            server_default="0.5",
            nullable=False,
        ),
        sa.Column(
            "smart_score", sa.Numeric(precision=6, scale=2), server_default="0", nullable=False
        ),
        sa.Column("score_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("assignment_id", sa.String(length=255), nullable=True),
        sa.Column("assignment_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("assignment_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("sla_first_response_status", sa.String(length=20), nullable=True),
        sa.Column("sla_first_response_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_resolution_status", sa.String(length=20), nullable=True),
        sa.Column("sla_resolution_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_is_paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sla_total_paused_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'chat', 'phone', 'sms', 'form')", name="ck_tickets_channel"
        ),
        sa.CheckConstraint(
            "priority IN ('low', 'normal', 'high', 'urgent')", name="ck_tickets_priority"
        ),
        sa.CheckConstraint(
            "status IN ('open', 'in_progress', 'pending', 'resolved', 'closed')",
            name="ck_tickets_status",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_tickets_assignee_inbox",
        "tickets",
        ["assigned_agent_id", "status", sa.literal_column("smart_score DESC"), "created_at", "id"],
        unique=False,
    )
    op.create_index("ix_tickets_channel", "tickets", ["channel"], unique=False)
    op.create_index(
        "ix_tickets_created_at", "tickets", [sa.literal_column("created_at DESC")], unique=False
    )
    op.create_index(
        "ix_tickets_customer",
        "tickets",
        ["customer_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_tickets_inbox",
        "tickets",
        [sa.literal_column("smart_score DESC"), "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_status_inbox",
        "tickets",
        ["status", sa.literal_column("smart_score DESC"), "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_subject_trgm",
        "tickets",
        ["subject"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"subject": "gin_trgm_ops"},
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("ticket_id", sa.String(length=255), nullable=False),
        sa.Column("from_agent", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("author_agent_id", sa.String(length=255), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("from_name", sa.String(length=255), nullable=True),
        sa.Column("from_email", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sentiment_score", sa.Numeric(precision=3, scale=2), nullable=True),
        sa.Column("detected_intent", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_messages_content_trgm",
        "messages",
        ["content"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"content": "gin_trgm_ops"},
    )
    op.create_index("ix_messages_created_at", "messages", ["created_at"], unique=False)
    op.create_index(
        "ix_messages_ticket_created", "messages", ["ticket_id", "created_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_messages_ticket_created", table_name="messages")
    op.drop_index("ix_messages_created_at", table_name="messages")
    op.drop_index(
        "ix_messages_content_trgm",
        table_name="messages",
        postgresql_using="gin",
        postgresql_ops={"content": "gin_trgm_ops"},
    )
    op.drop_table("messages")
    op.drop_index(
        "ix_tickets_subject_trgm",
        table_name="tickets",
        postgresql_using="gin",
        postgresql_ops={"subject": "gin_trgm_ops"},
    )
    op.drop_index("ix_tickets_status_inbox", table_name="tickets")
    op.drop_index("ix_tickets_inbox", table_name="tickets")
    op.drop_index("ix_tickets_customer", table_name="tickets")
    op.drop_index("ix_tickets_created_at", table_name="tickets")
    op.drop_index("ix_tickets_channel", table_name="tickets")
    op.drop_index("ix_tickets_assignee_inbox", table_name="tickets")
    op.drop_table("tickets")
    op.drop_table("customers")
    drop_infrastructure_tables()
