"""Kafka subscribers: decode the event, hand it to the projection with the current time."""

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

    @events.handle(EventType.TICKET_CREATED)
    async def on_ticket_created(unit: UnitOfWork, event: Event[TicketData]) -> None:
        """Project the ticket and its customer snapshot; publish its first score."""
        await projections.apply_ticket(unit, event.data, settings, utcnow())

    @events.handle(EventType.TICKET_UPDATED)
    async def on_ticket_updated(unit: UnitOfWork, event: Event[TicketUpdatedData]) -> None:
        """Priority, status, assignee or customer snapshot may have changed: rescore."""
        await projections.apply_ticket(unit, event.data, settings, utcnow())

    @events.handle(EventType.TICKET_DELETED)
    async def on_ticket_deleted(unit: UnitOfWork, event: Event[TicketDeletedData]) -> None:
        """Forget the ticket (a tombstone keeps late events from reviving it)."""
        await projections.apply_ticket_deleted(unit, event.data)

    @events.handle(EventType.MESSAGE_ADDED)
    async def on_message_added(unit: UnitOfWork, event: Event[MessageData]) -> None:
        """Waiting time and customer sentiment follow the conversation."""
        await projections.apply_message(unit, event.data, settings, utcnow())

    @events.handle(EventType.MESSAGE_UPDATED)
    async def on_message_updated(unit: UnitOfWork, event: Event[MessageUpdatedData]) -> None:
        """An edit can change a message's sentiment (and its text, for topic alerts)."""
        await projections.apply_message(unit, event.data, settings, utcnow())

    @events.handle(EventType.MESSAGE_DELETED)
    async def on_message_deleted(unit: UnitOfWork, event: Event[MessageData]) -> None:
        """A deleted message no longer counts for waiting time, sentiment or topic alerts."""
        now = utcnow()
        await projections.apply_message(unit, event.data, settings, now, deleted=True)

    @events.handle_many(EventType.CUSTOMER_INTELLIGENCE_UPDATED)
    async def on_customer_intelligence_updated(
        unit: UnitOfWork, batch: list[Event[CustomerIntelligenceData]]
    ) -> None:
        """New lifetime value and churn risk rescore every ticket of the customer (a batch of
        customers at once)."""
        data = [event.data for event in batch]
        await projections.apply_customer_intelligence(unit, data, settings, utcnow())

    # The assignee straight from agents (one hop): a follow-up to an assignment waits for
    # these events, not for the ticket.updated that tickets publishes after consuming them.
    assignees.follow_assignments(events)
