"""The report projection's Kafka subscribers, registered beside the service's own handlers
(their names make their consumer ids, so they are distinct from `handlers.py`'s)."""

from __future__ import annotations

from quimbi_common.consumer import TICKET_FIELDS_HELD
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
    handle = runtime.events.handle

    @handle(EventType.TICKET_CREATED)
    async def report_ticket_created(unit: UnitOfWork, event: Event[TicketData]) -> None:
        await projection.apply_ticket(unit.session, event.data)

    @handle(EventType.TICKET_UPDATED, when=TICKET_FIELDS_HELD)
    async def report_ticket_updated(unit: UnitOfWork, event: Event[TicketUpdatedData]) -> None:
        await projection.apply_ticket(unit.session, event.data)

    @handle(EventType.TICKET_DELETED)
    async def report_ticket_deleted(unit: UnitOfWork, event: Event[TicketDeletedData]) -> None:
        await projection.apply_ticket_deleted(unit.session, event.data)

    @handle(EventType.MESSAGE_ADDED)
    async def report_message_added(unit: UnitOfWork, event: Event[MessageData]) -> None:
        await projection.apply_message(unit.session, event.data)

    @handle(EventType.SLA_UPDATED)
    async def report_sla_updated(unit: UnitOfWork, event: Event[SlaTrackingData]) -> None:
        await projection.apply_sla(unit.session, event.data)

    @handle(EventType.SLA_BREACHED)
    async def report_sla_breached(unit: UnitOfWork, event: Event[SlaAlertData]) -> None:
        await projection.apply_sla(unit.session, event.data)

    @handle(EventType.TICKET_RATED)
    async def on_ticket_rated(unit: UnitOfWork, event: Event[TicketRatedData]) -> None:
        """CSAT: store the rating once, recompute the agent's satisfaction score."""
        await record_rating(unit, event.data)
