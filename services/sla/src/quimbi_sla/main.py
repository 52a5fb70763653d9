"""The SLA service's app: runtime, event handlers, the scheduler and the routes."""

from __future__ import annotations

from fastapi import FastAPI

from quimbi_common.runtime import Runtime, create_app

from . import handlers
from .api import router
from .jobs import sla_scheduler
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)
    handlers.register(runtime, settings)
    runtime.watch_projections()  # per-ticket routes wait for a ticket that was just created
    runtime.alongside_consumers(sla_scheduler(runtime, settings))
    return create_app(
        runtime,
        title="Quimbi SLA",
        description="SLA policies and per-ticket clocks, warnings and breaches.",
        routers=[router],
    )
