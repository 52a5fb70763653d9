"""Recalculate by slots: a slot per ticket (from its id), a due time per slot, and a write
counter on scores; per-ticket due times go.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECALC_SLOTS = 256
SLOT = "('x' || substr(md5(id), 1, 2))::bit(8)::int"
OPEN_TICKET = "NOT deleted AND status NOT IN ('resolved', 'closed')"
FIRST_INTERVAL_SECONDS = 300  # the default SCORING_RECALCULATION_INTERVAL, to spread slots


def upgrade() -> None:
    op.add_column(
        "tickets",
        sa.Column("recalc_slot", sa.SmallInteger, sa.Computed(SLOT, persisted=True)),
    )
    op.create_index(
        "ix_tickets_open_recalc_slot",
        "tickets",
        ["recalc_slot"],
        postgresql_where=sa.text(OPEN_TICKET),
    )
    op.drop_index("ix_ticket_scores_recalc_due", table_name="ticket_scores")
    op.drop_column("ticket_scores", "recalc_due_at")
    op.add_column(
        "ticket_scores",
        sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "recalc_slots",
        sa.Column("slot", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.get_bind().execute(
        sa.text(
            "INSERT INTO recalc_slots (slot, due_at) "
            "SELECT g, now() + make_interval(secs => g * CAST(:spread AS float8)) "
            "FROM generate_series(0, :last) AS g"
        ),
        {"spread": FIRST_INTERVAL_SECONDS / RECALC_SLOTS, "last": RECALC_SLOTS - 1},
    )


def downgrade() -> None:
    op.drop_table("recalc_slots")
    op.drop_column("ticket_scores", "revision")
    op.add_column(
        "ticket_scores",
        sa.Column("recalc_due_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_ticket_scores_recalc_due",
        "ticket_scores",
        ["recalc_due_at"],
        postgresql_where=sa.text("recalc_due_at IS NOT NULL"),
    )
    op.drop_index("ix_tickets_open_recalc_slot", table_name="tickets")
    op.drop_column("tickets", "recalc_slot")
