"""Kafka subscribers: the ticket and message events of a batch go to the projection together."""

from __future__ import annotations

from quimbi_common import assignees
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

from . import projections
from .settings import Settings


def register(runtime: Runtime, settings: Settings) -> None:
    calendar = settings.business_calendar
    events = runtime.events

    # Each handler queues its events; the batch's clocks are locked, read, moved and written
    # once, at the end of its unit of work (projections.queue).
    @events.handle_many(EventType.TICKET_CREATED)
    async def on_ticket_created(unit: UnitOfWork, batch: list[Event[TicketData]]) -> None:
        """Start the ticket's SLA clock under its priority's policy."""
        projections.queue(unit, [event.data for event in batch], calendar)

    @events.handle_many(EventType.TICKET_UPDATED)
    async def on_ticket_updated(unit: UnitOfWork, batch: list[Event[TicketUpdatedData]]) -> None:
        """Pause, resume, resolve, reopen, re-prioritize; follow the assignee."""
        projections.queue(unit, [event.data for event in batch], calendar)

    @events.handle_many(EventType.TICKET_DELETED)
    async def on_ticket_deleted(unit: UnitOfWork, batch: list[Event[TicketDeletedData]]) -> None:
        """Stop the clock for good."""
        projections.queue(unit, [event.data for event in batch], calendar)

    @events.handle_many(EventType.MESSAGE_ADDED)
    async def on_message_added(unit: UnitOfWork, batch: list[Event[MessageData]]) -> None:
        """An agent's first message answers; a customer's resumes a paused clock."""
        projections.queue(unit, [event.data for event in batch], calendar)

    # The assignee straight from agents (one hop): a follow-up to an assignment waits for
    # these events, not for the ticket.updated that tickets publishes after consuming them.
    assignees.follow_assignments(events)
