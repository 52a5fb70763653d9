"""Canned responses (reply templates, personal and shared) and agents' names as the agents
service announces them (for the `{{agent_name}}` placeholder).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reply_templates",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False),
        sa.Column("owner_agent_id", sa.String(255), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_reply_templates_owner", "reply_templates", ["owner_agent_id", "name"])
    op.create_index(
        "ix_reply_templates_shared",
        "reply_templates",
        ["name"],
        postgresql_where=sa.text("shared"),
    )
    op.create_table(
        "agent_names",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_names")
    op.drop_table("reply_templates")
