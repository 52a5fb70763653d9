"""The ai-proxy app: Runtime + QuimbiClient + ticket reader + cache, handlers and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI

from quimbi_common.runtime import Runtime, create_app

from . import api, handlers
from .cache import Cache
from .quimbi import QuimbiClient
from .service import AiProxy
from .settings import Settings
from .tickets import HttpTicketReader, TicketReader


def build_app(settings: Settings | None = None, *, tickets: TicketReader | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)
    assert runtime.sessions is not None
    proxy = AiProxy(
        settings=settings,
        quimbi=QuimbiClient(settings),
        tickets=tickets or HttpTicketReader(settings),
        cache=Cache(
            aioredis.from_url(
                settings.cache_redis,
                socket_timeout=settings.cache_redis_timeout,
                socket_connect_timeout=settings.cache_redis_timeout,
            )
        ),
        sessions=runtime.sessions,
    )
    handlers.register(runtime, proxy)
    app = create_app(
        runtime,
        title="Quimbi Support: AI proxy",
        description="Drafts, next best actions and customer intelligence from Quimbi, cached.",
        routers=[api.router],
    )
    app.state.proxy = proxy
    _close_on_shutdown(app, runtime, proxy)
    return app


def _close_on_shutdown(app: FastAPI, runtime: Runtime, proxy: AiProxy) -> None:
    """Runtime has no shutdown hook for our own clients, so wrap the app's lifespan: warm-ups
    stop before the runtime (they use its database), the clients after its consumers."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        guard: asyncio.Task[None] | None = None
        try:
            async with inner(app):
                try:
                    yield
                finally:
                    await proxy.warmer.aclose()
                    guard = asyncio.create_task(_cancel_until_done(runtime))
        finally:
            if guard is not None:
                guard.cancel()
            await proxy.aclose()

    app.router.lifespan_context = lifespan


async def _cancel_until_done(runtime: Runtime, every: float = 0.5) -> None:
    """Workaround while `Runtime.stop()` runs: on Python 3.11 the outbox relay's
    `asyncio.wait_for` sleep can swallow a cancellation (it becomes a TimeoutError), so the relay
    polls on and `stop()` waits forever. Cancel whatever is still running again until it ends."""
    tasks = list(runtime._tasks)
    while any(not task.done() for task in tasks):
        await asyncio.sleep(every)
        for task in tasks:
            if not task.done():
                task.cancel()
