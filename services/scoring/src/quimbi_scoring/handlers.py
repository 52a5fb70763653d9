"""Kafka subscribers: each topic's events of a consumer batch go to the projection together;
the batch is applied and rescored once, when its unit of work ends (projections.py)."""

from __future__ import annotations

from quimbi_common import assignees
from quimbi_common.clock import utcnow
from quimbi_common.events import (
    CustomerIntelligenceData,
    Event,
    EventType,
    MessageData,
    MessageUpdatedData,
    TicketData,
    TicketDeletedData,
    TicketUpdatedData,
)
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitOfWork

from . import projections
from .settings import Settings


def register(runtime: Runtime, settings: Settings) -> None:
    events = runtime.events

    @events.handle_many(EventType.TICKET_CREATED)
    async def on_ticket_created(unit: UnitOfWork, batch: list[Event[TicketData]]) -> None:
        """Project the tickets and their customer snapshots; publish their first scores."""
        projections.queue_tickets(unit, (e.data for e in batch), settings, utcnow())

    @events.handle_many(EventType.TICKET_UPDATED)
    async def on_ticket_updated(unit: UnitOfWork, batch: list[Event[TicketUpdatedData]]) -> None:
        """Priority, status, assignee or customer snapshot may have changed: rescore."""
        projections.queue_tickets(unit, (e.data for e in batch), settings, utcnow())

    @events.handle_many(EventType.TICKET_DELETED)
    async def on_ticket_deleted(unit: UnitOfWork, batch: list[Event[TicketDeletedData]]) -> None:
        """Forget the tickets (a tombstone keeps late events from reviving them)."""
        projections.queue_ticket_deletions(unit, (e.data for e in batch), settings, utcnow())

    @events.handle_many(EventType.MESSAGE_ADDED)
    async def on_message_added(unit: UnitOfWork, batch: list[Event[MessageData]]) -> None:
        """Waiting time and customer sentiment follow the conversation."""
        projections.queue_messages(unit, (e.data for e in batch), settings, utcnow())

    @events.handle_many(EventType.MESSAGE_UPDATED)
    async def on_message_updated(unit: UnitOfWork, batch: list[Event[MessageUpdatedData]]) -> None:
        """An edit can change a message's sentiment (and its text, for topic alerts)."""
        projections.queue_messages(unit, (e.data for e in batch), settings, utcnow())

    @events.handle_many(EventType.MESSAGE_DELETED)
    async def on_message_deleted(unit: UnitOfWork, batch: list[Event[MessageData]]) -> None:
        """A deleted message no longer counts for waiting time, sentiment or topic alerts."""
        data = (e.data for e in batch)
        projections.queue_messages(unit, data, settings, utcnow(), deleted=True)

    @events.handle_many(EventType.CUSTOMER_INTELLIGENCE_UPDATED)
    async def on_customer_intelligence_updated(
        unit: UnitOfWork, batch: list[Event[CustomerIntelligenceData]]
    ) -> None:
        """New lifetime value and churn risk rescore every ticket of the customer."""
        data = (e.data for e in batch)
        projections.queue_customer_intelligence(unit, data, settings, utcnow())

    # The assignee straight from agents (one hop): a follow-up to an assignment waits for
    # these events, not for the ticket.updated that tickets publishes after consuming them.
    assignees.follow_assignments(events)
