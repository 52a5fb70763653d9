"""The report projection's Kafka subscribers for the topics only it reads (the ticket and
message topics reach it through the service's own handlers, `handlers.py`, so each event is
consumed once by this service); their names make their consumer ids."""

from __future__ import annotations

from quimbi_common.events import (
    Event,
    EventType,
    SlaTrackingData,
    TicketRatedData,
)
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitOfWork

from ..satisfaction import record_rating
from . import projection


def register(runtime: Runtime) -> None:
    """One call per topic per consumer batch (set-based: one upsert for the batch)."""
    many = runtime.events.handle_many

    @many(EventType.SLA_DECIDED)
    async def report_slas_decided(unit: UnitOfWork, batch: list[Event[SlaTrackingData]]) -> None:
        """Only outcomes count (met or breached, when): not every move of a pending clock."""
        await projection.apply_slas(unit.session, [e.data for e in batch])

    @runtime.events.handle(EventType.TICKET_RATED)
    async def on_ticket_rated(unit: UnitOfWork, event: Event[TicketRatedData]) -> None:
        """CSAT: store the rating once, recompute the agent's satisfaction score."""
        await record_rating(unit, event.data)
