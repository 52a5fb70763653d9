"""Kafka subscribers: decode the ticket and message events, call the service."""

from __future__ import annotations

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

    @runtime.events.handle("ticket.created")
    async def on_ticket_created(session: AsyncSession, event: Event[Any]) -> None:
        """Start the ticket's SLA clock under its priority's policy."""
        await service.apply_ticket(session, event.data, settings.business_calendar)

    @runtime.events.handle("ticket.updated", when=TICKET_FIELDS_HELD)
    async def on_ticket_updated(session: AsyncSession, event: Event[Any]) -> None:
        """Pause, resume, resolve, reopen, re-prioritize; follow the assignee."""
        await service.apply_ticket(session, event.data, settings.business_calendar)

    @runtime.events.handle("ticket.deleted")
    async def on_ticket_deleted(session: AsyncSession, event: Event[Any]) -> None:
        """Stop the clock for good."""
        await service.delete_ticket(session, event.data)

    @runtime.events.handle("message.added")
    async def on_message_added(session: AsyncSession, event: Event[Any]) -> None:
        """An agent's first message answers; a customer's resumes a paused clock."""
        await service.apply_message(session, event.data, settings.business_calendar)
