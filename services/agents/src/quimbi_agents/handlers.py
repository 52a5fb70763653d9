"""Kafka subscribers: decode the event, call the use case (inside the consumer's transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.consumer import changes_beyond
from quimbi_common.events import Event
from quimbi_common.runtime import Runtime

from .projection import apply_message_added, apply_ticket_deleted, apply_ticket_event
from .settings import Settings

# Sentiment and difficulty are the tickets service's own estimates; this service does not hold
# them, so a ticket.updated that changes only those is not consumed.
TICKET_FIELDS_HELD = changes_beyond("customer_sentiment", "estimated_difficulty")


def register(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)

    @runtime.events.handle("ticket.created")
    async def on_ticket_created(session: AsyncSession, event: Event[Any]) -> None:
        """Project the ticket; record its assignee, or auto-assign it (AUTO_ASSIGN)."""
        await apply_ticket_event(session, settings, event.data)

    @runtime.events.handle("ticket.updated", when=TICKET_FIELDS_HELD)
    async def on_ticket_updated(session: AsyncSession, event: Event[Any]) -> None:
        """Follow assignee and status; a resolved or closed ticket completes its assignment."""
        await apply_ticket_event(session, settings, event.data)

    @runtime.events.handle("ticket.deleted")
    async def on_ticket_deleted(session: AsyncSession, event: Event[Any]) -> None:
        """Tombstone the ticket and end its active assignment."""
        await apply_ticket_deleted(session, settings, event.data)

    @runtime.events.handle("message.added")
    async def on_message_added(session: AsyncSession, event: Event[Any]) -> None:
        """Response-time metric: customer message → next agent message."""
        await apply_message_added(session, settings, event.data)
