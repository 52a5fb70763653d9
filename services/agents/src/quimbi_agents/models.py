"""Tables of the agents database: agents, their assignments, and the ticket facts we project."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quimbi_common.outbox import infrastructure_tables


class Base(DeclarativeBase):
    pass


class Agent(Base):
    """A support team member. Deleting keeps the row (history points at it) with `deleted_at`."""

    __tablename__ = "agents"
    __table_args__ = (
        sa.Index(
            "uq_agents_email_live",
            "email",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
        sa.Index("ix_agents_status", "status"),
        sa.Index("ix_agents_department", "department"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(255))
    hashed_password: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(50), default="agent")
    status: Mapped[str] = mapped_column(sa.String(50), default="offline")
    department: Mapped[str | None] = mapped_column(sa.String(100))
    specializations: Mapped[list[str]] = mapped_column(JSONB, default=list)
    max_concurrent_tickets: Mapped[int] = mapped_column(sa.Integer, default=10)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)

    tickets_resolved_today: Mapped[int] = mapped_column(sa.Integer, default=0)
    resolved_count_date: Mapped[date | None] = mapped_column(sa.Date)
    avg_response_time_seconds: Mapped[int] = mapped_column(sa.Integer, default=0)
    response_time_samples: Mapped[int] = mapped_column(sa.Integer, default=0)
    response_time_total_seconds: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    customer_satisfaction_score: Mapped[float] = mapped_column(sa.Float, default=0.0)

    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_assigned_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    deleted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    version: Mapped[int] = mapped_column(sa.Integer, default=1)


class TicketAssignment(Base):
    """Who holds a ticket. At most one active row per ticket, enforced by a partial unique index."""

    __tablename__ = "ticket_assignments"
    __table_args__ = (
        sa.Index(
            "uq_ticket_assignments_active",
            "ticket_id",
            unique=True,
            postgresql_where=sa.text("is_active"),
        ),
        sa.Index("ix_ticket_assignments_ticket", "ticket_id", "assigned_at"),
        sa.Index(
            "ix_ticket_assignments_agent_active",
            "agent_id",
            postgresql_where=sa.text("is_active"),
        ),
        sa.Index("ix_ticket_assignments_status", "status"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(sa.String(255))
    agent_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("agents.id"))
    status: Mapped[str] = mapped_column(sa.String(50), default="pending")
    reason: Mapped[str] = mapped_column(sa.String(50))
    assigned_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    previous_agent_id: Mapped[str | None] = mapped_column(
        sa.String(255), sa.ForeignKey("agents.id")
    )
    transfer_reason: Mapped[str | None] = mapped_column(sa.Text)
    time_to_accept_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    time_to_complete_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)


class TicketProjection(Base):
    """The ticket facts assignment needs, kept from ticket.* events (highest version wins)."""

    __tablename__ = "ticket_projection"
    __table_args__ = (
        sa.Index(
            "ix_ticket_projection_waiting",
            "created_at",
            postgresql_where=sa.text(
                "deleted_at IS NULL AND assigned_agent_id IS NULL "
                "AND status NOT IN ('resolved', 'closed')"
            ),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(50))
    priority: Mapped[str] = mapped_column(sa.String(50))
    category: Mapped[str | None] = mapped_column(sa.String(100))
    assigned_agent_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    version: Mapped[int] = mapped_column(sa.Integer)


class ResponseClock(Base):
    """Per ticket: since when a customer has been waiting for an agent's reply (for metrics).

    Kept apart from the ticket projection because message.* and ticket.* are different topics
    and may arrive in either order.
    """

    __tablename__ = "response_clocks"

    ticket_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    awaiting_since: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


outbox, processed_events = infrastructure_tables(Base.metadata)
