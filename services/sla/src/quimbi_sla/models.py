"""Tables: SLA policies, one tracking row (clock) per ticket, and facts that arrived early."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quimbi_common.assignees import assignees_table
from quimbi_common.outbox import infrastructure_tables


class Base(DeclarativeBase):
    pass


infrastructure_tables(Base.metadata)
ASSIGNEES = assignees_table(Base.metadata)  # who holds each ticket, from agents' events


def _uuid() -> str:
    return str(uuid.uuid4())


class SlaPolicy(Base):
    """Targets per priority; a tracking row snapshots them when its clock starts."""

    __tablename__ = "sla_policies"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True, default=_uuid)
    priority: Mapped[str] = mapped_column(sa.String(50), unique=True)
    first_response_target_seconds: Mapped[int]
    resolution_target_seconds: Mapped[int]
    warning_threshold_percent: Mapped[int] = mapped_column(default=80, server_default="80")
    business_hours_only: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    updated_by: Mapped[str | None] = mapped_column(sa.String(255))

    __table_args__ = (
        sa.CheckConstraint("first_response_target_seconds > 0", name="ck_policy_fr_positive"),
        sa.CheckConstraint(
            "resolution_target_seconds >= first_response_target_seconds",
            name="ck_policy_resolution_not_shorter",
        ),
        sa.CheckConstraint(
            "warning_threshold_percent BETWEEN 1 AND 100", name="ck_policy_warning_percent"
        ),
    )


class SlaTracking(Base):
    """One ticket's SLA clock, with the ticket facts it needs (a projection of ticket.*)."""

    __tablename__ = "sla_tracking"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True, default=_uuid)
    ticket_id: Mapped[str] = mapped_column(sa.String(255), unique=True)

    # projection of the ticket (from ticket.created / ticket.updated / ticket.deleted)
    ticket_version: Mapped[int]
    ticket_created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    ticket_status: Mapped[str] = mapped_column(sa.String(50))
    priority: Mapped[str] = mapped_column(sa.String(50))
    assigned_agent_id: Mapped[str | None] = mapped_column(sa.String(255))
    deleted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    # the policy in force when the clock started (or the priority last changed)
    first_response_target_seconds: Mapped[int]
    resolution_target_seconds: Mapped[int]
    warning_threshold_percent: Mapped[int]
    business_hours_only: Mapped[bool]

    first_response_status: Mapped[str] = mapped_column(sa.String(50), default="pending")
    first_response_deadline: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    first_response_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    first_response_paused_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    first_response_warning_sent: Mapped[bool] = mapped_column(default=False)
    first_response_breach_sent: Mapped[bool] = mapped_column(default=False)

    resolution_status: Mapped[str] = mapped_column(sa.String(50), default="pending")
    resolution_deadline: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    resolution_paused_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    resolution_warning_sent: Mapped[bool] = mapped_column(default=False)
    resolution_breach_sent: Mapped[bool] = mapped_column(default=False)

    is_paused: Mapped[bool] = mapped_column(default=False)
    paused_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    total_paused_seconds: Mapped[int] = mapped_column(default=0)

    # when the scheduler must look at this clock next (NULL: no status change can come by time)
    next_check_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), onupdate=sa.func.now()
    )

    __table_args__ = (
        sa.Index(
            "ix_sla_tracking_next_check_at",
            "next_check_at",
            postgresql_where=sa.text("next_check_at IS NOT NULL"),
        ),
    )


class TicketFacts(Base):
    """What arrived before a ticket's clock existed (events of different topics race)."""

    __tablename__ = "ticket_facts"

    ticket_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    first_agent_message_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    deleted_version: Mapped[int | None]


@dataclass(slots=True)
class ClockRow:
    """An `sla_tracking` row as a plain value (its columns but the timestamps of the row
    itself): the consumer reads and writes a batch's clocks with set statements, without the
    ORM's per-row bookkeeping (issue 15). The clock functions of `service` take either."""

    id: str
    ticket_id: str
    ticket_version: int
    ticket_created_at: datetime
    ticket_status: str
    priority: str
    assigned_agent_id: str | None
    deleted_at: datetime | None
    first_response_target_seconds: int
    resolution_target_seconds: int
    warning_threshold_percent: int
    business_hours_only: bool
    first_response_status: str
    first_response_deadline: datetime
    first_response_at: datetime | None
    first_response_paused_seconds: float
    first_response_warning_sent: bool
    first_response_breach_sent: bool
    resolution_status: str
    resolution_deadline: datetime
    resolved_at: datetime | None
    resolution_paused_seconds: float
    resolution_warning_sent: bool
    resolution_breach_sent: bool
    is_paused: bool
    paused_at: datetime | None
    total_paused_seconds: int
    next_check_at: datetime | None
    version: int


Clock = SlaTracking | ClockRow  # what the clock functions work on
