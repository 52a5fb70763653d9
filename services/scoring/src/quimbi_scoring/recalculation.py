"""The periodic recomputation: every open ticket at least every SCORING_RECALCULATION_INTERVAL.

Each ticket carries its own due time (last computation + interval - poll), so the work spreads
over the interval instead of arriving as one burst. A batch is one transaction that claims due
tickets with FOR UPDATE SKIP LOCKED: several replicas split the work, and a ticket an event
handler is rescoring right now is simply left to that handler.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from quimbi_common.runtime import Runtime

from . import service
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassResult:
    computed: int
    published: int
    batches: int


async def recalculate_due_tickets(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> PassResult:
    """Recompute due tickets batch by batch until none is due (or the rest are held)."""
    computed = published = batches = 0
    while True:
        async with sessions() as session, session.begin():
            batch = await service.recalculate_due(session, settings, datetime.now(UTC))
        computed += batch.computed
        published += batch.published
        batches += 1
        if batch.computed < settings.scoring_recalc_batch_size:
            return PassResult(computed, published, batches)


def register(runtime: Runtime) -> None:
    settings = runtime.settings
    sessions = runtime.sessions
    assert isinstance(settings, Settings)
    assert sessions is not None

    async def recalculate_scores() -> None:
        """Background loop: drain the due tickets, then look again after a poll period."""
        while True:
            result = await recalculate_due_tickets(sessions, settings)
            if result.computed:
                log.info("recalculated %d scores (%d changed)", result.computed, result.published)
            await asyncio.sleep(settings.scoring_recalc_poll_seconds)

    runtime.background.append(recalculate_scores)
