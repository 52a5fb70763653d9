"""agents, ticket assignments, ticket projection, response clocks, outbox

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

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_infrastructure_tables()
    op.create_table(
        "agents",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("hashed_password", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(50), nullable=False, server_default="agent"),
        sa.Column("status", sa.String(50), nullable=False, server_default="offline"),
        sa.Column("department", sa.String(100)),
        sa.Column("specializations", JSONB, nullable=False, server_default=sa.text("'[]'")),
        sa.Column("max_concurrent_tickets", sa.Integer, nullable=False, server_default="10"),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("tickets_resolved_today", sa.Integer, nullable=False, server_default="0"),
        sa.Column("resolved_count_date", sa.Date),
        sa.Column("avg_response_time_seconds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("response_time_samples", sa.Integer, nullable=False, server_default="0"),
        sa.Column("response_time_total_seconds", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("customer_satisfaction_score", sa.Float, nullable=False, server_default="0"),
        sa.Column("last_login_at", TZ),
        sa.Column("last_assigned_at", TZ),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("deleted_at", TZ),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.CheckConstraint(
            "role IN ('agent', 'senior_agent', 'team_lead', 'manager', 'admin')",
            name="ck_agents_role",
        ),
        sa.CheckConstraint(
            "status IN ('online', 'away', 'busy', 'offline')", name="ck_agents_status"
        ),
        sa.CheckConstraint("max_concurrent_tickets >= 0", name="ck_agents_capacity"),
    )
    op.create_index(
        "uq_agents_email_live",
        "agents",
        ["email"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("ix_agents_status", "agents", ["status"])
    op.create_index("ix_agents_department", "agents", ["department"])

    op.create_table(
        "ticket_assignments",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("ticket_id", sa.String(255), nullable=False),
        sa.Column("agent_id", sa.String(255), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("status", sa.String(50), nullable=False, server_default="pending"),
        sa.Column("reason", sa.String(50), nullable=False),
        sa.Column("assigned_at", TZ, nullable=False),
        sa.Column("accepted_at", TZ),
        sa.Column("completed_at", TZ),
        sa.Column("previous_agent_id", sa.String(255), sa.ForeignKey("agents.id")),
        sa.Column("transfer_reason", sa.Text),
        sa.Column("time_to_accept_seconds", sa.Integer),
        sa.Column("time_to_complete_seconds", sa.Integer),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'in_progress', 'completed', 'transferred')",
            name="ck_ticket_assignments_status",
        ),
        sa.CheckConstraint(
            "reason IN ('manual', 'auto_route', 'escalation', 'transfer')",
            name="ck_ticket_assignments_reason",
        ),
    )
    op.create_index(
        "uq_ticket_assignments_active",
        "ticket_assignments",
        ["ticket_id"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    op.create_index(
        "ix_ticket_assignments_ticket", "ticket_assignments", ["ticket_id", "assigned_at"]
    )
    op.create_index(
        "ix_ticket_assignments_agent_active",
        "ticket_assignments",
        ["agent_id"],
        postgresql_where=sa.text("is_active"),
    )
    op.create_index("ix_ticket_assignments_status", "ticket_assignments", ["status"])

    op.create_table(
        "ticket_projection",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("priority", sa.String(50), nullable=False),
        sa.Column("category", sa.String(100)),
        sa.Column("assigned_agent_id", sa.String(255)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("deleted_at", TZ),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_ticket_projection_waiting",
        "ticket_projection",
        ["created_at"],
        postgresql_where=sa.text(
            "deleted_at IS NULL AND assigned_agent_id IS NULL "
            "AND status NOT IN ('resolved', 'closed')"
        ),
    )

    op.create_table(
        "response_clocks",
        sa.Column("ticket_id", sa.String(255), primary_key=True),
        sa.Column("awaiting_since", TZ),
    )


def downgrade() -> None:
    op.drop_table("response_clocks")
    op.drop_table("ticket_projection")
    op.drop_table("ticket_assignments")
    op.drop_table("agents")
    drop_infrastructure_tables()
