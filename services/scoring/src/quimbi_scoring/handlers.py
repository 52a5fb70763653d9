"""Kafka subscribers: decode the event, hand it to the use case with the current time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.consumer import changes_beyond
from quimbi_common.events import Event
from quimbi_common.runtime import Runtime

from . import service
from .settings import Settings

# Sentiment and difficulty are the tickets service's own estimates; this service does not hold
# them, so a ticket.updated that changes only those is not consumed.
TICKET_FIELDS_HELD = changes_beyond("customer_sentiment", "estimated_difficulty")


def register(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    events = runtime.events

    @events.handle("ticket.created")
    async def on_ticket_created(session: AsyncSession, event: Event[Any]) -> None:
        """Project the ticket and its customer snapshot; publish its first score."""
        await service.apply_ticket(session, event.data, settings, datetime.now(UTC))

    @events.handle("ticket.updated", when=TICKET_FIELDS_HELD)
    async def on_ticket_updated(session: AsyncSession, event: Event[Any]) -> None:
        """Priority, status, assignee or customer snapshot may have changed: rescore."""
        await service.apply_ticket(session, event.data, settings, datetime.now(UTC))

    @events.handle("ticket.deleted")
    async def on_ticket_deleted(session: AsyncSession, event: Event[Any]) -> None:
        """Forget the ticket (a tombstone keeps late events from reviving it)."""
        await service.apply_ticket_deleted(session, event.data)

    @events.handle("message.added")
    async def on_message_added(session: AsyncSession, event: Event[Any]) -> None:
        """Waiting time and customer sentiment follow the conversation."""
        await service.apply_message(session, event.data, settings, datetime.now(UTC))

    @events.handle("message.updated")
    async def on_message_updated(session: AsyncSession, event: Event[Any]) -> None:
        """An edit can change a message's sentiment (and its text, for topic alerts)."""
        await service.apply_message(session, event.data, settings, datetime.now(UTC))

    @events.handle("message.deleted")
    async def on_message_deleted(session: AsyncSession, event: Event[Any]) -> None:
        """A deleted message no longer counts for waiting time, sentiment or topic alerts."""
        await service.apply_message(session, event.data, settings, datetime.now(UTC), deleted=True)

    @events.handle("customer.intelligence_updated")
    async def on_customer_intelligence_updated(session: AsyncSession, event: Event[Any]) -> None:
        """New lifetime value and churn risk rescore every ticket of the customer."""
        await service.apply_customer_intelligence(session, event.data, settings, datetime.now(UTC))
