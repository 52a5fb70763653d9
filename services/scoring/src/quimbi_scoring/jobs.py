"""Background jobs: the periodic work a service does on its own, each step one unit of work."""

from __future__ import annotations

import asyncio
import logging

from quimbi_common.runtime import Runtime

from . import service
from .settings import Settings

log = logging.getLogger(__name__)


def register(runtime: Runtime, settings: Settings) -> None:
    units = runtime.units
    assert units is not None, "scoring runs with a database"

    async def recalculate_scores() -> None:
        """Drain the due slots, then look again after a poll period."""
        await units.run(lambda unit: service.pull_in_slots(unit, settings))
        while True:
            result = await service.recalculate_due_slots(units, settings)
            if result.slots:
                log.debug("recalculated %d slots, %d changed", result.slots, result.published)
            await asyncio.sleep(settings.scoring_recalc_poll_seconds)

    runtime.alongside_consumers(recalculate_scores)
