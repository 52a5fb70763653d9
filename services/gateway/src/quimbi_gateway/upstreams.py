"""The services behind the gateway, each reached two ways, both made once and shared: a lean
keep-alive pool for proxied requests (the hot path, see http1.py) and an httpx client for the
gateway's own calls (readiness, OpenAPI documents)."""

from __future__ import annotations

import ssl

import httpx

from .http1 import UpstreamPool
from .settings import Settings


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        self.urls = settings.upstream_urls()
        self.timeouts = {name: settings.upstream_timeout(name) for name in self.urls}
        self.pools = {
            name: UpstreamPool(
                url,
                max_connections=settings.upstream_max_connections,
                max_idle=settings.upstream_max_keepalive_connections,
                keepalive_expiry=settings.upstream_keepalive_expiry_seconds,
                connect_timeout=settings.upstream_connect_timeout_seconds,
                timeout=self.timeouts[name],
            )
            for name, url in self.urls.items()
        }
        tls = ssl.create_default_context()  # one for all clients: each costs ~20 ms to build
        self.clients = {
            name: httpx.AsyncClient(
                base_url=url,
                timeout=httpx.Timeout(
                    self.timeouts[name], connect=settings.upstream_connect_timeout_seconds
                ),
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=5),
                trust_env=False,
                verify=tls,
            )
            for name, url in self.urls.items()
        }

    def __getitem__(self, name: str) -> httpx.AsyncClient:
        return self.clients[name]

    async def aclose(self) -> None:
        for pool in self.pools.values():
            pool.close()
        for client in self.clients.values():
            await client.aclose()
