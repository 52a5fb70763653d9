"""The report projection's Kafka subscribers, registered beside the service's own handlers
(their names make their consumer ids, so they are distinct from `handlers.py`'s)."""

from __future__ import annotations

from quimbi_common.events import (
    Event,
    EventType,
    MessageData,
    SlaAlertData,
    SlaTrackingData,
    TicketData,
    TicketDeletedData,
    TicketRatedData,
    TicketUpdatedData,
)
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitOfWork

from ..satisfaction import record_rating
from . import projection


def register(runtime: Runtime) -> None:
    """One call per topic per consumer batch (set-based: one upsert for the batch)."""
    many = runtime.events.handle_many

    @many(EventType.TICKET_CREATED)
    async def report_tickets_created(unit: UnitOfWork, batch: list[Event[TicketData]]) -> None:
        await projection.apply_tickets(unit.session, [e.data for e in batch])

    @many(EventType.TICKET_UPDATED)  # sentiment-only updates never get here (producer-only)
    async def report_tickets_updated(
        unit: UnitOfWork, batch: list[Event[TicketUpdatedData]]
    ) -> None:
        await projection.apply_tickets(unit.session, [e.data for e in batch])

    @many(EventType.TICKET_DELETED)
    async def report_tickets_deleted(
        unit: UnitOfWork, batch: list[Event[TicketDeletedData]]
    ) -> None:
        await projection.apply_deletions(unit.session, [e.data for e in batch])

    @many(EventType.MESSAGE_ADDED)
    async def report_messages_added(unit: UnitOfWork, batch: list[Event[MessageData]]) -> None:
        await projection.apply_messages(unit.session, [e.data for e in batch])

    @many(EventType.SLA_UPDATED)
    async def report_slas_updated(unit: UnitOfWork, batch: list[Event[SlaTrackingData]]) -> None:
        await projection.apply_slas(unit.session, [e.data for e in batch])

    @many(EventType.SLA_BREACHED)
    async def report_slas_breached(unit: UnitOfWork, batch: list[Event[SlaAlertData]]) -> None:
        await projection.apply_slas(unit.session, [e.data for e in batch])

    @runtime.events.handle(EventType.TICKET_RATED)
    async def on_ticket_rated(unit: UnitOfWork, event: Event[TicketRatedData]) -> None:
        """CSAT: store the rating once, recompute the agent's satisfaction score."""
        await record_rating(unit, event.data)
