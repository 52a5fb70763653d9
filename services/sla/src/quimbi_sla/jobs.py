"""Background jobs: the scheduler that moves clocks to at_risk and breached as time passes."""

from __future__ import annotations

import asyncio
import logging
import time

from quimbi_common.runtime import BackgroundTask, Runtime

from .service import run_scheduler_tick
from .settings import Settings

log = logging.getLogger(__name__)


def sla_scheduler(runtime: Runtime, settings: Settings) -> BackgroundTask:
    """A Runtime background task: one tick every SLA_SCHEDULER_INTERVAL_SECONDS."""
    units = runtime.units
    assert units is not None, "sla runs with a database"

    async def sla_scheduler() -> None:
        interval = settings.sla_scheduler_interval_seconds
        while True:
            started = time.monotonic()
            try:
                settled = await run_scheduler_tick(
                    units,
                    settings.business_calendar,
                    batch_size=settings.sla_scheduler_batch_size,
                )
                if settled:
                    log.info("sla scheduler settled %d clocks", settled)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage: try again next tick
                log.exception("sla scheduler tick failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    return sla_scheduler
