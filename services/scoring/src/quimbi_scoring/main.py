"""The scoring app: runtime, Kafka handlers, the recalculation job, and the routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from quimbi_common.runtime import Runtime, create_app

from . import api, handlers, jobs
from .settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)
    handlers.register(runtime, settings)
    runtime.watch_projections()  # the breakdown waits for a ticket that was just created
    jobs.register(runtime, settings)
    return create_app(
        runtime,
        title="Quimbi Scoring",
        description="The smart inbox score: computed from events, explained on request.",
        routers=[api.router],
    )
