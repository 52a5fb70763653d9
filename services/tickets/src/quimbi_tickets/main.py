"""The tickets service's app: the runtime, its event handlers and its routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from quimbi_common.runtime import Runtime, create_app

from . import api, handlers
from .attachments import routes as attachment_routes
from .attachments.service import Sweeper, storage_from
from .live import feed, hub, routes
from .settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)
    handlers.register(runtime)
    runtime.watch_projections()  # a ticket just assigned to the caller waits for ticket.assigned
    _live_inbox(runtime, settings)
    assert runtime.units is not None
    sweeper = Sweeper(runtime.units, storage_from(settings), settings)
    runtime.provide(sweeper)
    runtime.alongside_api(sweeper.run)  # with the routes that upload and delete the files
    return create_app(
        runtime,
        title="Quimbi tickets",
        description="Customers, tickets and messages; the smart inbox list.",
        routers=[
            routes.router,
            api.router,
            attachment_routes.router,
        ],  # /api/tickets/live before /api/tickets/{id}
    )


def _live_inbox(runtime: Runtime, settings: Settings) -> None:
    """Kafka → the live log (feed), the live log → this process's streams (hub)."""
    assert runtime.engine is not None
    assert runtime.broker is not None
    assert runtime.sessions is not None
    key = feed.live_log_key(settings)
    live_hub = hub.LiveHub(settings, key, runtime.revocations)
    runtime.provide(live_hub)
    runtime.alongside_consumers(
        feed.LiveFeed(settings, runtime.engine, runtime.redis, runtime.broker, runtime.sessions).run
    )
    runtime.alongside_api(live_hub.run)
    runtime.alongside_api(live_hub.watch_tokens)
    runtime.on_shutdown.append(live_hub.aclose)
