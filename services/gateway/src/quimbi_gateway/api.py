"""The gateway's own routes: combined health, the merged OpenAPI document (which the `/docs`
and `/redoc` pages of libs/common's `create_app` read) and the live inbox page (`/live`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse

from quimbi_common.runtime import provided

from .schemas import SuiteHealth
from .service import Suite

router = APIRouter()


SuiteDep = Annotated[Suite, Depends(provided(Suite))]
_LIVE_PAGE = (Path(__file__).parent / "static" / "live.html").read_bytes()


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


@router.get("/live", include_in_schema=False)
async def live_page() -> HTMLResponse:
    """The live inbox demo: logs in through the API and shows the stream of
    `GET /api/tickets/live` (the page is static; everything it shows comes from the API)."""
    return HTMLResponse(_LIVE_PAGE, headers={"Cache-Control": "no-cache"})
