"""Kafka subscribers: a new message drops the ticket's drafts; a new ticket warms its customer."""

from __future__ import annotations

from quimbi_common.events import Event, EventType, MessageData, TicketData
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitOfWork

from . import service
from .service import AiProxy


def register(runtime: Runtime, proxy: AiProxy) -> None:
    @runtime.events.handle(EventType.MESSAGE_ADDED)
    async def on_message_added(unit: UnitOfWork, event: Event[MessageData]) -> None:
        """Drop the ticket's cached drafts: they answer a conversation that has moved on."""
        await service.forget_ticket_answers(proxy, event.data.ticket_id)

    @runtime.events.handle(EventType.TICKET_CREATED)
    async def on_ticket_created(unit: UnitOfWork, event: Event[TicketData]) -> None:
        """Warm the customer's intelligence in the background (never waits on Quimbi)."""
        proxy.warmer.schedule(event.data.customer_id)
