"""Kafka subscribers: decode the event, call the projection in the consumer's unit of work.

Each topic has one handler, which also feeds the managers' report projection (`reports/`):
one `processed_events` row per event, not one per projection (issue 15)."""

from __future__ import annotations

from quimbi_common.events import (
    Event,
    EventType,
    MessageData,
    TicketData,
    TicketDeletedData,
    TicketUpdatedData,
)
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitOfWork

from .projections import (
    apply_messages_added,
    apply_ticket_deleted,
    apply_ticket_event,
    apply_tickets_created,
)
from .reports import projection as reports
from .settings import Settings


def register(runtime: Runtime, settings: Settings) -> None:
    @runtime.events.handle_many(EventType.TICKET_CREATED)
    async def on_ticket_created(unit: UnitOfWork, batch: list[Event[TicketData]]) -> None:
        """Project the tickets (a batch at once); record each one's assignee, or auto-assign
        it (AUTO_ASSIGN)."""
        tickets = [event.data for event in batch]
        await apply_tickets_created(unit, settings, tickets)
        for data in tickets:
            reports.stage(unit, reports.apply_tickets, data)

    @runtime.events.handle(EventType.TICKET_UPDATED)
    async def on_ticket_updated(unit: UnitOfWork, event: Event[TicketUpdatedData]) -> None:
        """Follow assignee and status; a resolved or closed ticket completes its assignment
        (and counts as a resolution in the reports)."""
        await apply_ticket_event(unit, settings, event.data)
        reports.stage(unit, reports.apply_tickets, event.data)

    @runtime.events.handle(EventType.TICKET_DELETED)
    async def on_ticket_deleted(unit: UnitOfWork, event: Event[TicketDeletedData]) -> None:
        """Tombstone the ticket and end its active assignment; it leaves the reports."""
        await apply_ticket_deleted(unit, settings, event.data)
        reports.stage(unit, reports.apply_deletions, event.data)

    @runtime.events.handle_many(EventType.MESSAGE_ADDED)
    async def on_message_added(unit: UnitOfWork, batch: list[Event[MessageData]]) -> None:
        """Response-time metric: customer message → next agent message (a batch at once); the
        first agent message is the report's first response."""
        messages = [event.data for event in batch]
        await apply_messages_added(unit, messages)
        await reports.apply_messages(unit.session, messages)
