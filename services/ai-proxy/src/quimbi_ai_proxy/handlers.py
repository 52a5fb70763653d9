"""Kafka subscribers: a new message drops the ticket's drafts; a new ticket warms its customer."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.events import Event
from quimbi_common.runtime import Runtime

from . import service
from .service import AiProxy


def register(runtime: Runtime, proxy: AiProxy) -> None:
    @runtime.events.handle("message.added")
    async def on_message_added(session: AsyncSession, event: Event[Any]) -> None:
        """Drop the ticket's cached drafts: they answer a conversation that has moved on."""
        await service.forget_ticket_answers(proxy, event.data.ticket_id)

    @runtime.events.handle("ticket.created")
    async def on_ticket_created(session: AsyncSession, event: Event[Any]) -> None:
        """Warm the customer's intelligence in the background (never waits on Quimbi)."""
        proxy.warmer.schedule(event.data.customer_id)
