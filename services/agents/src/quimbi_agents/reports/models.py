"""The report projection's tables: one row per ticket with the moments the figures are made
of, and one per customer rating (which also feeds each agent's satisfaction score)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..models import Base


class ReportTicket(Base):
    """What reports need of a ticket, from events of four topics that arrive in any order:
    every column is nullable and written by its own event, each guarded by its own version."""

    __tablename__ = "report_tickets"
    __table_args__ = (
        sa.Index("ix_report_tickets_resolved", "resolved_at"),
        sa.Index("ix_report_tickets_first_response", "first_response_at"),
        sa.Index("ix_report_tickets_first_response_decided", "first_response_decided_at"),
        sa.Index("ix_report_tickets_resolution_decided", "resolution_decided_at"),
    )

    ticket_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    created_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # the latest resolution (status became resolved/closed), from the ticket.updated saying so
    resolved_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(sa.String(255))
    resolution_version: Mapped[int | None] = mapped_column(sa.Integer)
    # the earliest agent message
    first_response_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    first_response_by: Mapped[str | None] = mapped_column(sa.String(255))
    # the SLA clock as of its highest version: each metric's status and, once met or
    # breached, when that was decided (met: when met; breached: at its deadline)
    sla_version: Mapped[int | None] = mapped_column(sa.Integer)
    first_response_status: Mapped[str | None] = mapped_column(sa.String(20))
    first_response_decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    resolution_status: Mapped[str | None] = mapped_column(sa.String(20))
    resolution_decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class TicketRating(Base):
    """A customer's rating of a resolved ticket (CSAT): at most one per ticket."""

    __tablename__ = "ticket_ratings"
    __table_args__ = (
        sa.Index("ix_ticket_ratings_agent", "agent_id", "rated_at"),
        sa.Index("ix_ticket_ratings_rated_at", "rated_at"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_ticket_ratings_rating"),
    )

    ticket_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(255))
    agent_id: Mapped[str | None] = mapped_column(sa.String(255))
    rating: Mapped[int] = mapped_column(sa.SmallInteger)
    comment: Mapped[str | None] = mapped_column(sa.Text)
    rated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
