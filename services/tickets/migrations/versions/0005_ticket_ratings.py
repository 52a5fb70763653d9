"""CSAT: one rating (1-5, optional comment) per resolved or closed ticket, keyed by the ticket
(a second rating cannot be stored, even by a concurrent request); deleted with its ticket.

Revision ID: 0005_csat
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_csat"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ticket_ratings",
        sa.Column(
            "ticket_id",
            sa.String(255),
            sa.ForeignKey("tickets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("agent_id", sa.String(255)),
        sa.Column("rated_at", Timestamp, nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_ticket_ratings_rating"),
    )


def downgrade() -> None:
    op.drop_table("ticket_ratings")
