"""What the gateway says about the suite behind it: combined readiness and the merged OpenAPI.
Both fan out to every service concurrently, tolerate any of them being down, and are cached
briefly so that polling them does not multiply load on the services."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis.asyncio as aioredis

from .domain import OPEN_ROUTES, route
from .openapi import merge_openapi
from .settings import Settings
from .upstreams import Upstreams

TITLE = "Quimbi Support API"
DESCRIPTION = (
    "Every endpoint of the Quimbi Support suite, served through the gateway. "
    "Log in with `POST /api/agents/login`, then **Authorize** with the `access_token` "
    "(Bearer). Errors are `application/problem+json`; every routed response carries "
    "`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`."
)
_INCOMPLETE_SPEC_TTL_SECONDS = 5.0


class Suite:
    def __init__(
        self,
        upstreams: Upstreams,
        redis: aioredis.Redis,
        settings: Settings,
        own_openapi: Callable[[], dict[str, Any]],
    ) -> None:
        self.upstreams = upstreams
        self.redis = redis
        self.settings = settings
        self.own_openapi = own_openapi
        self._health: tuple[float, bool, dict[str, Any]] | None = None
        self._health_lock = asyncio.Lock()
        self._documents: dict[str, dict[str, Any]] = {}
        self._spec: tuple[float, dict[str, Any]] | None = None
        self._spec_lock = asyncio.Lock()

    # --- readiness --------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Every service's /health/ready and the gateway's Redis, asked at once."""
        cached = self._health
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1], cached[2]
        async with self._health_lock:
            cached = self._health
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1], cached[2]
            names = list(self.upstreams.urls)
            redis_check, *service_checks = await asyncio.gather(
                self._check_redis(), *(self._check_service(name) for name in names)
            )
            services = dict(zip(names, service_checks, strict=True))
            healthy = redis_check["ok"] and all(check["ok"] for check in service_checks)
            report = {
                "status": "ok" if healthy else "unavailable",
                "service": self.settings.service_name,
                "checks": {"redis": redis_check},
                "services": services,
            }
            self._health = (time.monotonic() + self.settings.health_cache_seconds, healthy, report)
            return healthy, report

    async def _check_service(self, name: str) -> dict[str, Any]:
        timeout = self.settings.health_timeout_seconds
        started = time.perf_counter()
        try:
            response = await self.upstreams[name].get("/health/ready", timeout=timeout)
        except httpx.TimeoutException:
            return {"ok": False, "detail": f"no answer within {timeout:g} s"}
        except httpx.TransportError as exc:
            return {"ok": False, "detail": f"unreachable ({type(exc).__name__})"}
        result: dict[str, Any] = {
            "ok": response.status_code == 200,
            "status_code": response.status_code,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("checks"), dict):
            result["checks"] = body["checks"]
        return result

    async def _check_redis(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.redis.ping(), self.settings.health_timeout_seconds)
        except Exception as exc:
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
        return {"ok": True}

    # --- OpenAPI ----------------------------------------------------------------------------

    async def openapi(self) -> dict[str, Any]:
        """The merged spec; a service that is down keeps its last document (or is left out)."""
        cached = self._spec
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        async with self._spec_lock:
            cached = self._spec
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            names = list(self.upstreams.urls)
            fetched = await asyncio.gather(*(self._fetch_document(name) for name in names))
            status = dict(zip(names, fetched, strict=True))
            documents = {name: self._documents[name] for name in names if name in self._documents}
            spec = merge_openapi(
                documents,
                own=self.own_openapi(),
                routes_to=route,
                open_operations=OPEN_ROUTES,
                title=TITLE,
                description=self._description(status),
            )
            spec["x-upstreams"] = status
            ttl = self.settings.openapi_cache_seconds
            if any(state != "ok" for state in status.values()):
                ttl = min(ttl, _INCOMPLETE_SPEC_TTL_SECONDS)
            self._spec = (time.monotonic() + ttl, spec)
            return spec

    async def _fetch_document(self, name: str) -> str:
        try:
            response = await self.upstreams[name].get(
                "/openapi.json", timeout=self.settings.openapi_timeout_seconds
            )
            response.raise_for_status()
            document = response.json()
            if not isinstance(document, dict) or "paths" not in document:
                raise ValueError("not an OpenAPI document")
        except (httpx.HTTPError, ValueError):
            return "stale" if name in self._documents else "unavailable"
        self._documents[name] = document
        return "ok"

    @staticmethod
    def _description(status: dict[str, str]) -> str:
        missing = [name for name, state in status.items() if state == "unavailable"]
        stale = [name for name, state in status.items() if state == "stale"]
        notes = []
        if missing:
            notes.append(f"Unreachable now, their endpoints are missing: {', '.join(missing)}.")
        if stale:
            notes.append(f"Not reachable now, shown as last seen: {', '.join(stale)}.")
        return DESCRIPTION + ("\n\n" + " ".join(notes) if notes else "")
