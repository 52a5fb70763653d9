"""Response models of the gateway's own routes (the proxied ones are the services')."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class Check(BaseModel):
    ok: bool
    detail: str | None = None


class ServiceReadiness(BaseModel):
    """A service's answer to GET /health/ready (its own checks included when it answered)."""

    ok: bool
    status_code: int | None = None
    latency_ms: float | None = None
    detail: str | None = None
    checks: dict[str, Any] | None = None


class SuiteHealth(BaseModel):
    status: Literal["ok", "unavailable"]
    service: str
    checks: dict[str, Check]
    services: dict[str, ServiceReadiness]
