"""The ai-proxy app: Runtime + QuimbiClient + ticket reader + cache, handlers and routes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

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
    runtime.on_shutdown.append(proxy.aclose)
    runtime.on_shutdown.append(_insist_on_cancelling(runtime))
    return app


def _insist_on_cancelling(runtime: Runtime) -> Callable[[], Awaitable[None]]:
    """Workaround while `Runtime.stop()` runs: on Python 3.11 the outbox relay's
    `asyncio.wait_for` sleep can swallow a cancellation (it comes out as a TimeoutError), so the
    relay polls on and `stop()` waits forever. Cancel what still runs again until it ends."""

    async def insist_on_cancelling() -> None:
        tasks = list(runtime._tasks)

        async def cancel_until_done() -> None:
            while any(not task.done() for task in tasks):
                await asyncio.sleep(0.5)
                for task in tasks:
                    if not task.done():
                        task.cancel()

        guard = asyncio.create_task(cancel_until_done(), name="cancel-until-done")
        _guards.add(guard)
        guard.add_done_callback(_guards.discard)

    return insist_on_cancelling


_guards: set[asyncio.Task[None]] = set()
