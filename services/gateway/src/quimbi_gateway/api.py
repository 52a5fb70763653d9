"""The gateway's own routes: combined health, the merged OpenAPI document and its Swagger UI."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from .schemas import SuiteHealth
from .service import TITLE, Suite

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


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} — Swagger UI",
        swagger_ui_parameters={
            "persistAuthorization": True,
            "displayRequestDuration": True,
            "docExpansion": "none",
            "filter": True,
        },
    )


@router.get("/redoc", include_in_schema=False)
async def redoc() -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=f"{TITLE} — ReDoc")
