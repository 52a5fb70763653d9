"""The services behind the gateway, each reached two ways, both made once and shared: a lean
keep-alive pool for proxied requests (the hot path, see http1.py) and an httpx client for the
gateway's own calls (readiness, OpenAPI documents).

A service URL may list replicas, comma-separated (`AGENTS_URL=http://a:8102,http://b:8102`):
proxied requests then go to each in turn, per request rather than per connection; the
gateway's own calls go to the first."""

from __future__ import annotations

import itertools
import ssl
from collections.abc import AsyncIterator

import httpx

from .http1 import UpstreamPool, UpstreamResponse
from .settings import Settings


class Replicas:
    """Several replicas of one service, each request to the next one in turn."""

    def __init__(self, pools: list[UpstreamPool]) -> None:
        self.pools = pools
        self._next = itertools.cycle(pools)

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes] | None = None,
        *,
        chunked: bool = False,
    ) -> UpstreamResponse:
        return await next(self._next).request(method, target, headers, body, chunked=chunked)

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        replicas = {
            name: [url.strip() for url in urls.split(",") if url.strip()]
            for name, urls in settings.upstream_urls().items()
        }
        self.urls = {name: urls[0] for name, urls in replicas.items()}
        self.timeouts = {name: settings.upstream_timeout(name) for name in self.urls}
        self.pools = {
            name: self._pool(settings, urls, self.timeouts[name]) for name, urls in replicas.items()
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

    @staticmethod
    def _pool(settings: Settings, urls: list[str], read_timeout: float) -> UpstreamPool | Replicas:
        pools = [
            UpstreamPool(
                url,
                max_connections=settings.upstream_max_connections,
                max_idle=settings.upstream_max_keepalive_connections,
                keepalive_expiry=settings.upstream_keepalive_expiry_seconds,
                connect_timeout=settings.upstream_connect_timeout_seconds,
                timeout=read_timeout,
            )
            for url in urls
        ]
        return pools[0] if len(pools) == 1 else Replicas(pools)

    def __getitem__(self, name: str) -> httpx.AsyncClient:
        return self.clients[name]

    async def aclose(self) -> None:
        for pool in self.pools.values():
            pool.close()
        for client in self.clients.values():
            await client.aclose()
