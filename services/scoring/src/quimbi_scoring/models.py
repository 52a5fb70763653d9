"""Scoring's own tables: projections of tickets, customers and messages (built from events
only), and one score row per ticket.

Each projection keeps the highest `version` it applied (customers: the newest `fetched_at`),
so replayed and out-of-order events leave the same state. Deleted tickets and messages stay
as tombstones so that a late, older event cannot bring them back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quimbi_common.assignees import assignees_table
from quimbi_common.outbox import infrastructure_tables

ID = sa.String(255)
TIMESTAMP = sa.DateTime(timezone=True)
# A ticket's bucket is the first byte of md5(id); the periodic recalculation works through
# RECALC_SLOTS slots, each a range of RECALC_BUCKETS // RECALC_SLOTS buckets.
RECALC_BUCKETS = 256
RECALC_SLOTS = 16
RECALC_BUCKET_EXPRESSION = "('x' || substr(md5(id), 1, 2))::bit(8)::int"
OPEN_TICKET = "NOT deleted AND status NOT IN ('resolved', 'closed')"


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    """What the score needs of a ticket, plus the conversation facts derived from messages."""

    __tablename__ = "tickets"
    __table_args__ = (
        sa.Index(
            "ix_tickets_open_recalc_bucket",
            "recalc_bucket",
            postgresql_where=sa.text(OPEN_TICKET),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ID, index=True)
    subject: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20))
    priority: Mapped[str] = mapped_column(sa.String(20))
    assigned_agent_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP)
    version: Mapped[int] = mapped_column(sa.Integer)
    deleted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    # Derived from the messages: None when an agent spoke last.
    waiting_since: Mapped[datetime | None] = mapped_column(TIMESTAMP)
    customer_sentiment: Mapped[float] = mapped_column(sa.Float, server_default="0.5")
    recalc_bucket: Mapped[int] = mapped_column(
        sa.SmallInteger, sa.Computed(RECALC_BUCKET_EXPRESSION, persisted=True)
    )


class Customer(Base):
    """Lifetime value and churn risk: seeded from ticket snapshots, then owned by intelligence.

    `fetched_at` is set by `customer.intelligence_updated` (newest wins); until then the newest
    ticket snapshot (`snapshot_at`, the ticket's `updated_at`) wins.
    """

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    lifetime_value: Mapped[float] = mapped_column(sa.Float)
    churn_risk: Mapped[float] = mapped_column(sa.Float)
    fetched_at: Mapped[datetime | None] = mapped_column(TIMESTAMP)
    snapshot_at: Mapped[datetime | None] = mapped_column(TIMESTAMP)


class Message(Base):
    """One message's authorship, time, sentiment and text (text for topic-alert matching)."""

    __tablename__ = "messages"
    __table_args__ = (sa.Index("ix_messages_ticket_created", "ticket_id", "created_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    ticket_id: Mapped[str] = mapped_column(ID)
    from_agent: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP)
    sentiment_score: Mapped[float | None] = mapped_column(sa.Float)
    content: Mapped[str] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    deleted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())


class TicketScore(Base):
    """The latest computation for a ticket. `version` counts its `ticket.scored` events;
    `revision` counts every write, so the bulk recalculation can skip a row an event handler
    rewrote since it was read (optimistic concurrency)."""

    __tablename__ = "ticket_scores"

    ticket_id: Mapped[str] = mapped_column(ID, primary_key=True)
    smart_score: Mapped[float] = mapped_column(sa.Float)
    parts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    computed_at: Mapped[datetime] = mapped_column(TIMESTAMP)
    version: Mapped[int] = mapped_column(sa.Integer)
    revision: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")


# `recalc_slots` (migration 0002) is read and written only by recalculation.py's SQL, so it has
# no ORM class here.


infrastructure_tables(Base.metadata)
ASSIGNEES = assignees_table(Base.metadata)  # who holds each ticket, from agents' events
