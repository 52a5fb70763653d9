"""Tables: customers, tickets and messages (the seed's schema plus what the events need).

Beyond the seed: `version` on tickets and messages (bumped with every published change),
`assigned_agent_id` and `category` on tickets, the last applied score/assignment/SLA versions
(stale events are ignored), and indexes matching the inbox's ORDER BY.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from quimbi_common.enums import Channel, TicketPriority, TicketStatus
from quimbi_common.outbox import infrastructure_tables


class Base(DeclarativeBase):
    pass


infrastructure_tables(Base.metadata)

Timestamp = sa.DateTime(timezone=True)
Score = sa.Numeric(3, 2, asdecimal=False)  # 0.00-1.00


def _search_vector(column: str) -> Mapped[str]:
    """Full-text search (migration 0003): written by PostgreSQL, never loaded with the row."""
    computed = sa.Computed(f"to_tsvector('english'::regconfig, {column})", persisted=True)
    return mapped_column(TSVECTOR, computed, deferred=True)


def _one_of(column: str, values: type[TicketStatus | TicketPriority | Channel]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(255), unique=True)  # stored lower-case
    name: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    lifetime_value: Mapped[float] = mapped_column(
        sa.Numeric(12, 2, asdecimal=False), server_default="0"
    )
    total_orders: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    churn_risk_score: Mapped[float] = mapped_column(Score, server_default="0")
    churn_risk_level: Mapped[str | None] = mapped_column(sa.String(50))
    intelligence_fetched_at: Mapped[datetime | None] = mapped_column(Timestamp)

    @property
    def churn_risk(self) -> float:
        """The name the API and the events give it: schemas read a customer by attribute."""
        return self.churn_risk_score


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        sa.CheckConstraint(_one_of("status", TicketStatus), name="ck_tickets_status"),
        sa.CheckConstraint(_one_of("priority", TicketPriority), name="ck_tickets_priority"),
        sa.CheckConstraint(_one_of("channel", Channel), name="ck_tickets_channel"),
        # The inbox: ORDER BY smart_score DESC, created_at, id, optionally within a status
        # and/or an assignee, read straight off these indexes.
        sa.Index("ix_tickets_inbox", sa.text("smart_score DESC"), "created_at", "id"),
        sa.Index(
            "ix_tickets_status_inbox", "status", sa.text("smart_score DESC"), "created_at", "id"
        ),
        sa.Index(
            "ix_tickets_assignee_inbox",
            "assigned_agent_id",
            "status",
            sa.text("smart_score DESC"),
            "created_at",
            "id",
        ),
        sa.Index("ix_tickets_channel", "channel"),
        sa.Index("ix_tickets_created_at", sa.text("created_at DESC")),
        sa.Index("ix_tickets_customer", "customer_id", sa.text("created_at DESC")),
        sa.Index(
            "ix_tickets_subject_trgm",
            "subject",
            postgresql_using="gin",
            postgresql_ops={"subject": "gin_trgm_ops"},
        ),
        sa.Index("ix_tickets_search_document", "search_document", postgresql_using="gin"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(255), sa.ForeignKey("customers.id"))
    subject: Mapped[str] = mapped_column(sa.String(500))
    status: Mapped[str] = mapped_column(sa.String(50))
    priority: Mapped[str] = mapped_column(sa.String(50))
    channel: Mapped[str] = mapped_column(sa.String(50))
    category: Mapped[str | None] = mapped_column(sa.String(100))
    assigned_agent_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_by_agent_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    version: Mapped[int] = mapped_column(sa.Integer)

    customer_sentiment: Mapped[float] = mapped_column(Score, server_default="0.5")
    estimated_difficulty: Mapped[float] = mapped_column(Score, server_default="0.5")

    # From ticket.scored (scoring): not a change of the ticket, so no version bump.
    smart_score: Mapped[float] = mapped_column(
        sa.Numeric(6, 2, asdecimal=False), server_default="0"
    )
    score_version: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")

    # The assignment (agents) the assignee came from, to order ticket.assigned/assignment.updated.
    assignment_id: Mapped[str | None] = mapped_column(sa.String(255))
    assignment_version: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    assignment_assigned_at: Mapped[datetime | None] = mapped_column(Timestamp)

    # From sla.updated (sla): the summary shown on the ticket.
    sla_version: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    sla_first_response_status: Mapped[str | None] = mapped_column(sa.String(20))
    sla_first_response_deadline: Mapped[datetime | None] = mapped_column(Timestamp)
    sla_first_response_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sla_resolution_status: Mapped[str | None] = mapped_column(sa.String(20))
    sla_resolution_deadline: Mapped[datetime | None] = mapped_column(Timestamp)
    sla_resolved_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sla_is_paused: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    sla_total_paused_seconds: Mapped[int] = mapped_column(sa.Integer, server_default="0")

    # the subject (weight A) and every message, kept by search.document_of (migration 0007)
    search_document: Mapped[str] = mapped_column(TSVECTOR, server_default="", deferred=True)

    customer: Mapped[Customer] = relationship(lazy="raise")
    messages: Mapped[list[Message]] = relationship(
        lazy="raise",
        order_by="(Message.created_at, Message.id)",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        sa.Index("ix_messages_ticket_created", "ticket_id", "created_at", "id"),
        sa.Index("ix_messages_created_at", "created_at"),
        sa.Index(
            "ix_messages_content_trgm",
            "content",
            postgresql_using="gin",
            postgresql_ops={"content": "gin_trgm_ops"},
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("tickets.id", ondelete="CASCADE")
    )
    from_agent: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    author_agent_id: Mapped[str | None] = mapped_column(sa.String(255))
    content: Mapped[str] = mapped_column(sa.Text)
    from_name: Mapped[str | None] = mapped_column(sa.String(255))
    from_email: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    sentiment_score: Mapped[float | None] = mapped_column(Score)
    detected_intent: Mapped[str | None] = mapped_column(sa.String(100))
    version: Mapped[int] = mapped_column(sa.Integer)
    search_vector: Mapped[str] = _search_vector("content")

    # Loaded with every message (one IN query per load): the API and the events show them.
    attachments: Mapped[list[Attachment]] = relationship(
        lazy="selectin",
        order_by="(Attachment.created_at, Attachment.id)",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Attachment(Base):
    """A file uploaded to a ticket: pending (`message_id` null) until a message names it. The
    bytes are in the file storage under `storage_key`; the type is what the bytes said."""

    __tablename__ = "attachments"
    __table_args__ = (
        sa.Index("ix_attachments_ticket", "ticket_id", "created_at"),
        sa.Index("ix_attachments_message", "message_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("tickets.id", ondelete="CASCADE")
    )
    message_id: Mapped[str | None] = mapped_column(
        sa.String(255), sa.ForeignKey("messages.id", ondelete="CASCADE")
    )
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    storage_key: Mapped[str] = mapped_column(sa.String(512), unique=True)
    uploaded_by_agent_id: Mapped[str | None] = mapped_column(sa.String(255))  # null: the key
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class FileToDelete(Base):
    """A stored file to remove once `due_at` passes: written in the transaction that deletes
    its message or ticket (due at once), or before an upload (due when an unattached upload
    expires; attaching it removes the row). The sweeper deletes the file, then the row, so a
    failed or crashed deletion is retried and an upload whose transaction failed is no orphan."""

    __tablename__ = "files_to_delete"
    __table_args__ = (sa.Index("ix_files_to_delete_due", "due_at"),)

    storage_key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(Timestamp)


class ReplyTemplate(Base):
    """A canned response: personal (its owner's only) or shared (every agent's)."""

    __tablename__ = "reply_templates"
    __table_args__ = (
        sa.Index("ix_reply_templates_owner", "owner_agent_id", "name"),
        sa.Index("ix_reply_templates_shared", "name", postgresql_where=sa.text("shared")),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[str] = mapped_column(sa.Text)
    shared: Mapped[bool] = mapped_column(sa.Boolean)
    owner_agent_id: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    version: Mapped[int] = mapped_column(sa.Integer)


class AgentName(Base):
    """An agent's name as the agents service last announced it (agent.created/updated)."""

    __tablename__ = "agent_names"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[int] = mapped_column(sa.Integer)


class TicketRating(Base):
    """CSAT: the customer's rating of a resolved or closed ticket, at most one per ticket (the
    primary key is the ticket's id: a concurrent second rating cannot be stored)."""

    __tablename__ = "ticket_ratings"
    __table_args__ = (
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_ticket_ratings_rating"),
    )

    ticket_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(sa.String(255))
    rating: Mapped[int] = mapped_column(sa.SmallInteger)
    comment: Mapped[str | None] = mapped_column(sa.Text)
    agent_id: Mapped[str | None] = mapped_column(sa.String(255))  # the assignee when rated
    rated_at: Mapped[datetime] = mapped_column(Timestamp)
