"""Kafka subscribers: a new ticket warms its customer's intelligence.

`message.added` is not consumed: cached drafts and recommendations carry their conversation's
fingerprint and are never served for another, so dropping them on every message changed
nothing a reader could see (it was half of this service's consumed events, issue 15).
"""

from __future__ import annotations

from quimbi_common.events import Event, EventType, TicketData
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitOfWork

from .service import AiProxy


def register(runtime: Runtime, proxy: AiProxy) -> None:
    @runtime.events.handle_many(EventType.TICKET_CREATED)
    async def on_ticket_created(unit: UnitOfWork, batch: list[Event[TicketData]]) -> None:
        """Warm the customers' intelligence in the background (never waits on Quimbi; one
        warm-up per customer at a time, so a batch's repeats cost nothing)."""
        proxy.warmer.schedule_many(event.data.customer_id for event in batch)
