"""Kafka subscribers: what other services tell the tickets service.

Each handler runs in the consumer's transaction (deduplicated by event id); the `apply_*`
use cases also ignore data older than what the ticket already holds.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.events import (
    AssignmentData,
    CustomerIntelligenceData,
    Event,
    SlaTrackingData,
    TicketScoredData,
)
from quimbi_common.runtime import Runtime

from . import service
from .settings import Settings


def register(runtime: Runtime) -> None:
    settings = cast(Settings, runtime.settings)
    events = runtime.events

    @events.handle_many("ticket.scored")
    async def on_ticket_scored(session: AsyncSession, batch: list[Event[Any]]) -> None:
        """Store the smart scores the inbox orders by (a batch in one statement)."""
        await service.apply_scores(session, [cast(TicketScoredData, e.data) for e in batch])

    @events.handle("ticket.assigned")
    async def on_ticket_assigned(session: AsyncSession, event: Event[Any]) -> None:
        """The new assignee decides who sees the ticket; republished as ticket.updated."""
        await service.apply_assignment(session, settings, cast(AssignmentData, event.data))

    @events.handle("assignment.updated")
    async def on_assignment_updated(session: AsyncSession, event: Event[Any]) -> None:
        """Accepted, transferred or completed assignments (same rules as ticket.assigned)."""
        await service.apply_assignment(session, settings, cast(AssignmentData, event.data))

    @events.handle_many("sla.updated")
    async def on_sla_updated(session: AsyncSession, batch: list[Event[Any]]) -> None:
        """Keep the SLA summary shown on the ticket (a batch in one statement)."""
        await service.apply_slas(session, [cast(SlaTrackingData, e.data) for e in batch])

    @events.handle("customer.intelligence_updated")
    async def on_customer_intelligence_updated(session: AsyncSession, event: Event[Any]) -> None:
        """Keep the customer's lifetime value and churn risk as last fetched."""
        await service.apply_customer_intelligence(
            session, cast(CustomerIntelligenceData, event.data)
        )
