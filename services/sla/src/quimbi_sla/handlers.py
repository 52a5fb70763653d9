"""Kafka subscribers: decode the ticket and message events, call the projections."""

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

    @runtime.events.handle(EventType.TICKET_CREATED)
    async def on_ticket_created(unit: UnitOfWork, event: Event[TicketData]) -> None:
        """Start the ticket's SLA clock under its priority's policy."""
        await projections.apply_ticket(unit, event.data, calendar)

    @runtime.events.handle(EventType.TICKET_UPDATED)
    async def on_ticket_updated(unit: UnitOfWork, event: Event[TicketUpdatedData]) -> None:
        """Pause, resume, resolve, reopen, re-prioritize; follow the assignee."""
        await projections.apply_ticket(unit, event.data, calendar)

    @runtime.events.handle(EventType.TICKET_DELETED)
    async def on_ticket_deleted(unit: UnitOfWork, event: Event[TicketDeletedData]) -> None:
        """Stop the clock for good."""
        await projections.apply_ticket_deleted(unit, event.data)

    @runtime.events.handle(EventType.MESSAGE_ADDED)
    async def on_message_added(unit: UnitOfWork, event: Event[MessageData]) -> None:
        """An agent's first message answers; a customer's resumes a paused clock."""
        await projections.apply_message(unit, event.data, calendar)

    # The assignee straight from agents (one hop): a follow-up to an assignment waits for
    # these events, not for the ticket.updated that tickets publishes after consuming them.
    assignees.follow_assignments(runtime.events)
