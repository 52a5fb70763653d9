"""Full-text search: a stored tsvector on ticket subjects and message contents, GIN-indexed.

Stored (generated) rather than an expression index, so ranking (`ts_rank`) and the best message
of a ticket read the vector instead of parsing the text again for every matching row. English
configuration (stemming: "refunds" finds "refund").

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE tickets ADD COLUMN search_vector tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, subject)) STORED"
    )
    op.execute("CREATE INDEX ix_tickets_search ON tickets USING gin (search_vector)")
    op.execute(
        "ALTER TABLE messages ADD COLUMN search_vector tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED"
    )
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search_vector)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_messages_search")
    op.execute("ALTER TABLE messages DROP COLUMN search_vector")
    op.execute("DROP INDEX ix_tickets_search")
    op.execute("ALTER TABLE tickets DROP COLUMN search_vector")
