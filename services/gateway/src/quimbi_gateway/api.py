"""The gateway's own routes: combined health and the merged OpenAPI document (which the
`/docs` and `/redoc` pages of libs/common's `create_app` read)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .schemas import SuiteHealth
from .service import Suite

router = APIRouter()


def _suite(request: Request) -> Suite:
    suite: Suite = request.app.state.suite
    return suite


@router.get(
    "/health",
    tags=["health"],
    response_model=SuiteHealth,
    responses={503: {"model": SuiteHealth, "description": "A service or Redis is not ready"}},
    summary="Readiness of the whole suite",
)
async def suite_health(request: Request) -> JSONResponse:
    healthy, report = await _suite(request).readiness()
    return JSONResponse(report, status_code=200 if healthy else 503)


@router.get("/openapi.json", include_in_schema=False)
async def merged_openapi(request: Request) -> JSONResponse:
    return JSONResponse(await _suite(request).openapi())
