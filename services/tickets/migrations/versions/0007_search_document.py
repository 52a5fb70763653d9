"""Full-text search over one document per ticket: its subject (weight A) and every message.

A ticket is searched as one document, so its words and the list filters are looked up in one
row: PostgreSQL combines the document's GIN index with the filters' indexes (a bitmap AND),
where matching messages first and their tickets after read every match of a word to find the
few that pass a filter. The document is kept by the tickets service in the transaction that
changes the subject or a message (`search.document_of`), built from the messages' stored
vectors with `tsvector_concat_agg` (no text parsed again). The subject-only and message-only
GIN indexes are no longer read by the search: dropped (each write updated them), and the
subject's own vector with them.

Revision ID: 0007_search_document
Revises: 0006_attachments
"""

from __future__ import annotations

from alembic import op

revision = "0007_search_document"
down_revision = "0006_attachments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE AGGREGATE tsvector_concat_agg(tsvector) "
        "(SFUNC = tsvector_concat, STYPE = tsvector, INITCOND = '')"
    )
    op.execute("ALTER TABLE tickets ADD COLUMN search_document tsvector NOT NULL DEFAULT ''")
    op.execute(
        "UPDATE tickets t SET search_document = "
        "setweight(to_tsvector('english'::regconfig, t.subject), 'A') "
        "|| coalesce((SELECT tsvector_concat_agg(m.search_vector ORDER BY m.created_at, m.id) "
        "FROM messages m WHERE m.ticket_id = t.id), '')"
    )
    op.execute("CREATE INDEX ix_tickets_search_document ON tickets USING gin (search_document)")
    op.execute("DROP INDEX ix_tickets_search")
    op.execute("DROP INDEX ix_messages_search")
    op.execute("ALTER TABLE tickets DROP COLUMN search_vector")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE tickets ADD COLUMN search_vector tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, subject)) STORED"
    )
    op.execute("CREATE INDEX ix_tickets_search ON tickets USING gin (search_vector)")
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search_vector)")
    op.execute("DROP INDEX ix_tickets_search_document")
    op.execute("ALTER TABLE tickets DROP COLUMN search_document")
    op.execute("DROP AGGREGATE tsvector_concat_agg(tsvector)")
