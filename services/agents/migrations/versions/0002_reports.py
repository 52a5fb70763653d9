"""reports: the report projection (report_tickets) and customer ratings (ticket_ratings)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
ID = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "report_tickets",
        sa.Column("ticket_id", ID, primary_key=True),
        sa.Column("created_at", TZ),
        sa.Column("deleted_at", TZ),
        sa.Column("resolved_at", TZ),
        sa.Column("resolved_by", ID),
        sa.Column("resolution_version", sa.Integer),
        sa.Column("first_response_at", TZ),
        sa.Column("first_response_by", ID),
        sa.Column("sla_version", sa.Integer),
        sa.Column("first_response_status", sa.String(20)),
        sa.Column("first_response_decided_at", TZ),
        sa.Column("resolution_status", sa.String(20)),
        sa.Column("resolution_decided_at", TZ),
    )
    op.create_index("ix_report_tickets_resolved", "report_tickets", ["resolved_at"])
    op.create_index("ix_report_tickets_first_response", "report_tickets", ["first_response_at"])
    for metric in ("first_response", "resolution"):
        op.create_index(
            f"ix_report_tickets_{metric}_decided", "report_tickets", [f"{metric}_decided_at"]
        )
    op.create_table(
        "ticket_ratings",
        sa.Column("ticket_id", ID, primary_key=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("agent_id", ID),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("rated_at", TZ, nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_ticket_ratings_rating"),
    )
    op.create_index("ix_ticket_ratings_agent", "ticket_ratings", ["agent_id", "rated_at"])
    op.create_index("ix_ticket_ratings_rated_at", "ticket_ratings", ["rated_at"])


def downgrade() -> None:
    op.drop_table("ticket_ratings")
    op.drop_table("report_tickets")
