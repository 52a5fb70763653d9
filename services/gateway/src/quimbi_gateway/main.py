"""The gateway app: the common runtime (Redis only, no database, no Kafka), its own routes, and
the proxy on every routed path."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from quimbi_common.auth import TokenVerifier
from quimbi_common.runtime import Runtime, create_app

from . import api
from .edge import EdgeGuard, RateLimiter
from .proxy import Proxy
from .service import Suite
from .settings import Settings
from .upstreams import Upstreams

# FastAPI's own document describes only the gateway; ours is the merged one (the docs read it).
_OWN_OPENAPI_PATH = "/openapi.json"


class _ProxyRoute(Route):
    """A plain route that names itself in the scope, as FastAPI's own routes do, so the
    request metrics label proxied requests by their route instead of `unmatched`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings, database=False, kafka=False)
    upstreams = Upstreams(settings)
    # Revocation is read in the rate limiter's Redis call, so this verifier checks signatures.
    tokens = TokenVerifier(
        runtime.verifier.keys,
        None,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        cache_size=settings.token_cache_size,
    )
    guard = EdgeGuard(tokens, RateLimiter(runtime.redis, settings), settings)
    proxy = Proxy(
        upstreams,
        guard,
        settings.max_request_body_bytes,
        stream_idle_seconds=settings.upstream_stream_idle_seconds,
        max_upload_body_bytes=settings.max_upload_body_bytes,
    )

    app = create_app(
        runtime,
        title="Quimbi Support gateway",
        description="The public edge: JWT, routing, rate limits, CORS and the merged docs.",
        cors=True,
    )
    app.router.routes[:] = [
        r for r in app.router.routes if getattr(r, "path", None) != _OWN_OPENAPI_PATH
    ]
    app.include_router(api.router)
    # First in line: nearly every request is proxied, and the router tries routes in order.
    app.router.routes[:0] = [
        _ProxyRoute("/api/{path:path}", proxy, include_in_schema=False),
        _ProxyRoute("/.well-known/jwks.json", proxy, include_in_schema=False),
    ]
    runtime.provide(Suite(upstreams, runtime.redis, settings, app.openapi))
    runtime.on_shutdown.append(upstreams.aclose)
    return app
