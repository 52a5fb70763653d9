"""The ai-proxy app: Runtime + QuimbiClient + ticket reader + cache, handlers and routes."""

from __future__ import annotations

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
    assert runtime.units is not None
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
        units=runtime.units,
    )
    runtime.provide(proxy)
    handlers.register(runtime, proxy)
    app = create_app(
        runtime,
        title="Quimbi Support: AI proxy",
        description="Drafts, next best actions and customer intelligence from Quimbi, cached.",
        routers=[api.router],
    )
    runtime.on_shutdown.append(proxy.aclose)
    return app
