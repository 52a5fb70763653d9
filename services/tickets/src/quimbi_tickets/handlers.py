"""Kafka subscribers: what other services tell the tickets service.

Each handler runs in the consumer's unit of work (deduplicated by event id); the projections
ignore data older than what the ticket already holds.
"""

from __future__ import annotations

from quimbi_common.events import (
    AgentData,
    AssignmentData,
    CustomerIntelligenceData,
    Event,
    EventType,
    SlaTrackingData,
    TicketScoredData,
)
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitOfWork

from . import projections


def register(runtime: Runtime) -> None:
    events = runtime.events

    @events.handle_many(EventType.TICKET_SCORED)
    async def on_ticket_scored(unit: UnitOfWork, batch: list[Event[TicketScoredData]]) -> None:
        """Store the smart scores the inbox orders by (a batch in one statement)."""
        await projections.apply_scores(unit, [e.data for e in batch])

    @events.handle(EventType.TICKET_ASSIGNED)
    async def on_ticket_assigned(unit: UnitOfWork, event: Event[AssignmentData]) -> None:
        """The new assignee decides who sees the ticket; republished as ticket.updated."""
        await projections.apply_assignment(unit, event.data)

    @events.handle(EventType.ASSIGNMENT_UPDATED)
    async def on_assignment_updated(unit: UnitOfWork, event: Event[AssignmentData]) -> None:
        """Accepted, transferred or completed assignments (same rules as ticket.assigned)."""
        await projections.apply_assignment(unit, event.data)

    @events.handle_many(EventType.SLA_UPDATED)
    async def on_sla_updated(unit: UnitOfWork, batch: list[Event[SlaTrackingData]]) -> None:
        """Keep the SLA summary shown on the ticket (a batch in one statement)."""
        await projections.apply_slas(unit, [e.data for e in batch])

    @events.handle_many(EventType.CUSTOMER_INTELLIGENCE_UPDATED)
    async def on_customer_intelligence_updated(
        unit: UnitOfWork, batch: list[Event[CustomerIntelligenceData]]
    ) -> None:
        """Keep the customers' lifetime value and churn risk as last fetched (one statement)."""
        await projections.apply_customer_intelligence(unit, [e.data for e in batch])

    @events.handle(EventType.AGENT_CREATED)
    async def on_agent_created(unit: UnitOfWork, event: Event[AgentData]) -> None:
        """An agent's name, for `{{agent_name}}` in canned responses."""
        await projections.apply_agent_name(unit, event.data.id, event.data.name, event.data.version)

    @events.handle(EventType.AGENT_UPDATED)
    async def on_agent_updated(unit: UnitOfWork, event: Event[AgentData]) -> None:
        """A renamed agent (any newer version)."""
        await projections.apply_agent_name(unit, event.data.id, event.data.name, event.data.version)

    @events.handle(EventType.AGENT_DELETED)
    async def on_agent_deleted(unit: UnitOfWork, event: Event[AgentData]) -> None:
        """A deleted agent's name is forgotten (their email stands in)."""
        await projections.forget_agent_name(unit, event.data.id)
