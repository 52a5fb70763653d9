"""ai-proxy: outbox, processed events, last published intelligence per customer.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from quimbi_common.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_infrastructure_tables()
    op.create_table(
        "published_intelligence",
        sa.Column("customer_id", sa.String(255), primary_key=True),
        sa.Column("churn_risk", sa.Float, nullable=False),
        sa.Column("lifetime_value", sa.Float, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("published_intelligence")
    drop_infrastructure_tables()
