"""The tickets service's app: the runtime, its event handlers and its routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from quimbi_common.runtime import Runtime, create_app

from . import api, handlers
from .settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)
    handlers.register(runtime)
    runtime.watch_projections()  # a ticket just assigned to the caller waits for ticket.assigned
    return create_app(
        runtime,
        title="Quimbi tickets",
        description="Customers, tickets and messages; the smart inbox list.",
        routers=[api.router],
    )
