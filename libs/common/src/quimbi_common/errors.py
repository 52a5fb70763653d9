"""Errors as application/problem+json (RFC 9457): one shape for every 4xx/5xx, never a trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .db import OUTAGE_CANDIDATES, is_database_outage

PROBLEM_JSON = "application/problem+json"
RETRY_SOON = {"Retry-After": "2"}
log = logging.getLogger(__name__)


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    status = 400
    title: str | None = None

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status or self.status
        self.title = title or self.title or HTTPStatus(self.status).phrase
        self.headers = headers
        self.extra = extra


class UnauthorizedError(ProblemError):
    status = 401

    def __init__(self, detail: str = "Missing or invalid credentials", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class ForbiddenError(ProblemError):
    status = 403


class NotFoundError(ProblemError):
    status = 404


class ConflictError(ProblemError):
    status = 409


class PayloadTooLargeError(ProblemError):
    status = 413


class UnprocessableError(ProblemError):
    status = 422


class TooManyRequestsError(ProblemError):
    status = 429


class ServiceUnavailableError(ProblemError):
    """A dependency is briefly out: the caller should retry (`Retry-After`), not give up."""

    status = 503

    def __init__(self, detail: str, *, retry_after: int = 2, **kw: Any) -> None:
        kw["headers"] = {"Retry-After": str(retry_after), **(kw.get("headers") or {})}
        super().__init__(detail, **kw)


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The one way to build a problem+json response."""
    body = {
        "type": f"https://quimbi.dev/problems/{status}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


def install_problem_handlers(app: FastAPI) -> None:
    """Every error a FastAPI app can raise leaves it as problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, title=exc.title, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        # A body that is not JSON at all is malformed (400); JSON that breaks a rule is a 422.
        status = 400 if any(e["type"] == "json_invalid" for e in errors) else 422
        return problem_response(status, detail or "Invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    async def _outage(request: Request, exc: Exception) -> JSONResponse:
        if not is_database_outage(exc):
            raise exc  # a bug, not an outage: the 500 handler below logs it
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            503, "The database is briefly unavailable; retry shortly", headers=RETRY_SOON
        )

    for error in OUTAGE_CANDIDATES:  # here, not in the 500 handler, which always re-raises
        app.add_exception_handler(error, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # uvicorn closes the connection after an unhandled error; saying so keeps a keep-alive
        # client (the gateway) from sending its next request on a connection about to close.
        return problem_response(
            500, "An unexpected error occurred", headers={"Connection": "close"}
        )
