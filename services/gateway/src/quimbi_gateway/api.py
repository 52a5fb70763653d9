"""The gateway's own routes: combined health and the merged OpenAPI document (which the
`/docs` and `/redoc` pages of libs/common's `create_app` read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from quimbi_common.runtime import provided

from .schemas import SuiteHealth
from .service import Suite

router = APIRouter()


SuiteDep = Annotated[Suite, Depends(provided(Suite))]


@router.get(
    "/health",
    tags=["health"],
    response_model=SuiteHealth,
    responses={503: {"model": SuiteHealth, "description": "A service or Redis is not ready"}},
    summary="Readiness of the whole suite",
)
async def suite_health(suite: SuiteDep) -> JSONResponse:
    healthy, report = await suite.readiness()
    return JSONResponse(report, status_code=200 if healthy else 503)


@router.get("/openapi.json", include_in_schema=False)
async def merged_openapi(suite: SuiteDep) -> JSONResponse:
    return JSONResponse(await suite.openapi())
