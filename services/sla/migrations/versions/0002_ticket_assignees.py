"""Who holds each ticket, from agents' assignment events (one hop: issue 14's two-hop gap).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

from quimbi_common.assignees import create_assignees_table

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_assignees_table()


def downgrade() -> None:
    op.drop_table("ticket_assignees")
