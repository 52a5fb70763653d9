"""`/health/live` (the process answers) and `/health/ready` (what it depends on answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

Check = Callable[[], Awaitable[object]]


class Degraded(Exception):
    """Raised by a check whose dependency is out but the service still does its job (Kafka:
    writes go on, their events wait in the outbox): `/health/ready` answers 200 "degraded"."""


def health_router(service: str, checks: Mapping[str, Check], timeout: float = 2.0) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get(
        "/health/ready",
        responses={
            503: {
                "description": "A dependency does not answer (the same document, status "
                "`unavailable`)",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def ready() -> JSONResponse:
        async def run(check: Check) -> dict[str, object]:
            try:
                async with asyncio.timeout(timeout):
                    result = await check()
            except Degraded as exc:
                return {"ok": False, "degraded": True, "detail": str(exc)[:300]}
            except Exception as exc:
                return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
            if result is False:
                return {"ok": False, "detail": "not connected"}
            return {"ok": True}

        names = list(checks)
        results = await asyncio.gather(*(run(checks[name]) for name in names))
        detail = dict(zip(names, results, strict=True))
        failed = [r for r in results if not r["ok"]]
        serving = all(r.get("degraded") for r in failed)
        status = "unavailable" if not serving else "degraded" if failed else "ok"
        return JSONResponse(
            {"status": status, "service": service, "checks": detail},
            status_code=200 if serving else 503,
        )

    return router
