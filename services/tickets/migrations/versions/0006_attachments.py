"""Attachments (files uploaded to a ticket, attached to messages) and the files to delete from
the file storage (after a deletion commits, or when an upload is never attached).

Revision ID: 0006_attachments
Revises: 0005_csat
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_attachments"
down_revision = "0005_csat"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column(
            "ticket_id",
            sa.String(255),
            sa.ForeignKey("tickets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("message_id", sa.String(255), sa.ForeignKey("messages.id", ondelete="CASCADE")),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False, unique=True),
        sa.Column("uploaded_by_agent_id", sa.String(255)),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_attachments_ticket", "attachments", ["ticket_id", "created_at"])
    op.create_index("ix_attachments_message", "attachments", ["message_id"])
    op.create_table(
        "files_to_delete",
        sa.Column("storage_key", sa.String(512), primary_key=True),
        sa.Column("due_at", Timestamp, nullable=False),
    )
    op.create_index("ix_files_to_delete_due", "files_to_delete", ["due_at"])


def downgrade() -> None:
    op.drop_table("files_to_delete")
    op.drop_table("attachments")
