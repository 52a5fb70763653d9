"""SLA policies (seeded with the default targets), per-ticket tracking, early ticket facts.

Revision ID: 0001
Revises:
Create Date: 2025-12-01
"""

import uuid

import sqlalchemy as sa
from alembic import op

from quimbi_common.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

HOUR = 3600
DEFAULT_POLICIES = (  # priority, first response, resolution (ARCHITECTURE §6)
    ("low", 24 * HOUR, 7 * 24 * HOUR),
    ("normal", 8 * HOUR, 48 * HOUR),
    ("high", 2 * HOUR, 24 * HOUR),
    ("urgent", 30 * 60, 8 * HOUR),
)


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    create_infrastructure_tables()
    policies = op.create_table(
        "sla_policies",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("priority", sa.String(50), nullable=False, unique=True),
        sa.Column("first_response_target_seconds", sa.Integer, nullable=False),
        sa.Column("resolution_target_seconds", sa.Integer, nullable=False),
        sa.Column("warning_threshold_percent", sa.Integer, nullable=False, server_default="80"),
        sa.Column("business_hours_only", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_by", sa.String(255)),
        sa.CheckConstraint("first_response_target_seconds > 0", name="ck_policy_fr_positive"),
        sa.CheckConstraint(
            "resolution_target_seconds >= first_response_target_seconds",
            name="ck_policy_resolution_not_shorter",
        ),
        sa.CheckConstraint(
            "warning_threshold_percent BETWEEN 1 AND 100", name="ck_policy_warning_percent"
        ),
    )
    op.bulk_insert(
        policies,
        [
            {
                "id": str(uuid.uuid4()),
                "priority": priority,
                "first_response_target_seconds": first_response,
                "resolution_target_seconds": resolution,
                "warning_threshold_percent": 80,
                "business_hours_only": False,
            }
            for priority, first_response, resolution in DEFAULT_POLICIES
        ],
    )
    op.create_table(
        "sla_tracking",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("ticket_id", sa.String(255), nullable=False, unique=True),
        sa.Column("ticket_version", sa.Integer, nullable=False),
        _ts("ticket_created_at", nullable=False),
        sa.Column("ticket_status", sa.String(50), nullable=False),
        sa.Column("priority", sa.String(50), nullable=False),
        sa.Column("assigned_agent_id", sa.String(255)),
        _ts("deleted_at"),
        sa.Column("first_response_target_seconds", sa.Integer, nullable=False),
        sa.Column("resolution_target_seconds", sa.Integer, nullable=False),
        sa.Column("warning_threshold_percent", sa.Integer, nullable=False),
        sa.Column("business_hours_only", sa.Boolean, nullable=False),
        sa.Column("first_response_status", sa.String(50), nullable=False),
        _ts("first_response_deadline", nullable=False),
        _ts("first_response_at"),
        sa.Column("first_response_paused_seconds", sa.Float, nullable=False),
        sa.Column("first_response_warning_sent", sa.Boolean, nullable=False),
        sa.Column("first_response_breach_sent", sa.Boolean, nullable=False),
        sa.Column("resolution_status", sa.String(50), nullable=False),
        _ts("resolution_deadline", nullable=False),
        _ts("resolved_at"),
        sa.Column("resolution_paused_seconds", sa.Float, nullable=False),
        sa.Column("resolution_warning_sent", sa.Boolean, nullable=False),
        sa.Column("resolution_breach_sent", sa.Boolean, nullable=False),
        sa.Column("is_paused", sa.Boolean, nullable=False),
        _ts("paused_at"),
        sa.Column("total_paused_seconds", sa.Integer, nullable=False),
        _ts("next_check_at"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    # The scheduler's only query: due clocks. (The seed's indexes on the two deadlines would
    # be rewritten on every clock update and nothing reads by deadline, so they are left out.)
    op.create_index(
        "ix_sla_tracking_next_check_at",
        "sla_tracking",
        ["next_check_at"],
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.create_table(
        "ticket_facts",
        sa.Column("ticket_id", sa.String(255), primary_key=True),
        _ts("first_agent_message_at"),
        sa.Column("deleted_version", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("ticket_facts")
    op.drop_table("sla_tracking")
    op.drop_table("sla_policies")
    drop_infrastructure_tables()
