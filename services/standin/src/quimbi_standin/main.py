"""Quimbi Intelligence stand-in: the three endpoints ai-proxy calls, plus fault injection.

Run with `uv run uvicorn quimbi_standin.main:app --port 8199` (single worker: fault state and
call counters live in memory).
"""

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from quimbi_standin.faults import (
    Endpoint,
    Fault,
    FaultState,
    FaultTriggered,
    Mode,
    Target,
    parse_fail_endpoints,
)
from quimbi_standin.generation import Length, Tone, analyze_customer, generate_message
from quimbi_standin.generation import recommend_actions as build_actions


@dataclass(frozen=True)
class Settings:
    """Startup configuration, read from the environment by `from_env`."""

    api_key: str = "dev-quimbi-key"
    admin_key: str = "standin-admin"
    latency_ms: int = 0
    fail_endpoints: str = ""
    timeout_s: float = 120.0

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        return cls(
            api_key=env.get("QUIMBI_API_KEY", cls.api_key),
            admin_key=env.get("STANDIN_ADMIN_KEY", cls.admin_key),
            latency_ms=int(env.get("STANDIN_LATENCY_MS", cls.latency_ms)),
            fail_endpoints=env.get("STANDIN_FAIL_ENDPOINTS", cls.fail_endpoints),
            timeout_s=float(env.get("STANDIN_TIMEOUT_S", cls.timeout_s)),
        )


class ProblemError(Exception):
    """An error to send as application/problem+json."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """RFC 9457 body, the same error shape every Quimbi Support service uses."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Turn(BaseModel):
    from_agent: bool = False
    content: str = ""
    from_name: str | None = None


class AnalyzeRequest(BaseModel):
    customer_id: str = Field(min_length=1)
    context: dict[str, Any] | None = None


class MessageRequest(BaseModel):
    customer_profile: dict[str, Any] = Field(default_factory=dict)
    goal: str = "resolve_issue"
    conversation: list[Turn] = Field(default_factory=list)
    channel: str = "email"
    tone: Tone = "empathetic"
    length: Length = "medium"


class ActionsRequest(BaseModel):
    customer_profile: dict[str, Any] = Field(default_factory=dict)
    ticket: dict[str, Any] = Field(default_factory=dict)
    conversation: list[Turn] = Field(default_factory=list)


class FaultRequest(BaseModel):
    mode: Mode = "ok"
    status: int = Field(default=500, ge=400, le=599)
    latency_ms: int = Field(default=0, ge=0)
    count: int | None = Field(default=None, ge=1)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an app with its own fault state, so each test can start from a clean one."""
    settings = settings or Settings.from_env()
    faults = FaultState(base_latency_ms=settings.latency_ms, timeout_s=settings.timeout_s)
    faults.faults.update(parse_fail_endpoints(settings.fail_endpoints))

    app = FastAPI(title="Quimbi Intelligence stand-in", version="0.1.0")
    app.state.settings = settings
    app.state.faults = faults

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.detail)

    @app.exception_handler(FaultTriggered)
    async def _fault(_: Request, exc: FaultTriggered) -> JSONResponse:
        return problem(exc.status, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return problem(422, "request validation failed", errors=errors)

    def guarded(endpoint: Endpoint) -> Any:
        """Check the API key, then count the call and apply any injected fault."""

        async def guard(x_api_key: Annotated[str | None, Header()] = None) -> None:
            if not _same(x_api_key, settings.api_key):
                raise ProblemError(401, "missing or invalid X-API-Key header")
            await faults.apply(endpoint)

        return Depends(guard)

    @app.post("/api/intelligence/analyze", dependencies=[guarded("analyze")])
    async def analyze(body: AnalyzeRequest) -> dict[str, Any]:
        return analyze_customer(body.customer_id)

    @app.post("/api/generation/message", dependencies=[guarded("message")])
    async def message(body: MessageRequest) -> dict[str, Any]:
        return generate_message(
            body.customer_profile,
            body.goal,
            [t.model_dump() for t in body.conversation],
            body.channel,
            body.tone,
            body.length,
        )

    @app.post("/api/generation/actions", dependencies=[guarded("actions")])
    async def actions(body: ActionsRequest) -> dict[str, Any]:
        turns = [t.model_dump() for t in body.conversation]
        return {"actions": build_actions(body.customer_profile, body.ticket, turns)}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    async def admin_only(x_admin_key: Annotated[str | None, Header()] = None) -> None:
        if settings.admin_key and not _same(x_admin_key, settings.admin_key):
            raise ProblemError(401, "missing or invalid X-Admin-Key header")

    admin = APIRouter(prefix="/_admin", tags=["admin"], dependencies=[Depends(admin_only)])

    @admin.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return faults.snapshot()

    @admin.put("/faults/{endpoint}")
    async def put_fault(endpoint: Target, body: FaultRequest) -> dict[str, Any]:
        faults.set(endpoint, Fault(**body.model_dump()))
        return faults.snapshot()

    @admin.delete("/faults")
    async def delete_faults() -> dict[str, Any]:
        faults.reset_faults()
        return faults.snapshot()

    @admin.get("/calls")
    async def get_calls() -> dict[str, int]:
        return {str(name): count for name, count in faults.calls.items()}

    @admin.delete("/calls")
    async def delete_calls() -> dict[str, int]:
        faults.reset_calls()
        return {str(name): count for name, count in faults.calls.items()}

    app.include_router(admin)
    return app


app = create_app()


def run() -> None:
    """Console entry point: `quimbi-standin` (STANDIN_HOST / STANDIN_PORT, default 8199)."""
    import uvicorn

    host = os.environ.get("STANDIN_HOST", "0.0.0.0")
    uvicorn.run(app, host=host, port=int(os.environ.get("STANDIN_PORT", "8199")))
