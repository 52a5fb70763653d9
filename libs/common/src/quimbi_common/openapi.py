"""A service's OpenAPI tells the truth about its errors: every 4xx it can answer is listed, as
`application/problem+json` with the real problem schema, instead of FastAPI's
`HTTPValidationError` on 422 alone.

Most statuses follow from what a route is made of, so routes declare only what is theirs:
every route can answer 422 (`inputs.nul_problem` refuses a NUL in any path or query); a JSON
body adds 400 (not JSON) and 422; a credential dependency adds 401 (and 503: auth fails closed); the
agent-only dependency adds 403; a path parameter adds 404 (unknown, or not visible). The rest
(409, a 403 decided in a use case, a 404 without a path parameter, 429…) a route names with
`responses=problems(409)`. `create_app` installs this on every app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from .auth import current_agent, current_caller
from .errors import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/Problem"
SCHEMAS: dict[str, Any] = {
    "Problem": {
        "title": "Problem",
        "description": "RFC 9457 problem details; may carry more members (e.g. `max_bytes`).",
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "description": "A URI naming the kind of problem"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "The field errors (400 and 422)",
                "items": {"$ref": "#/components/schemas/FieldError"},
            },
        },
        "additionalProperties": True,
    },
    "FieldError": {
        "title": "FieldError",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Where: `body`, `query`, `path` or `header`, then the field",
            },
            "msg": {"type": "string"},
            "type": {"type": "string", "description": "A stable error code, e.g. `string_nul`"},
        },
    },
}
_REPLACED_SCHEMAS = ("HTTPValidationError", "ValidationError")
RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_DESCRIPTIONS = {
    400: "Malformed request (a body that is not JSON)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Not allowed for this caller's role or credential",
    404: "Unknown, or not visible to the caller",
    422: "A parameter or field breaks a rule (see `errors`)",
    503: "A dependency is unavailable; try again",
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response object of a problem+json answer."""
    response: dict[str, Any] = {
        "description": description or _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status in (429, 503):
        response["headers"] = dict(RETRY_AFTER)
    return response


def problems(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """For a route's `responses=`: the statuses its use case can answer beyond the ones its
    shape implies, e.g. `problems(409)` or `problems(**{"409": "Already paused"})`."""
    declared: dict[int | str, dict[str, Any]] = {
        status: {"description": HTTPStatus(status).phrase} for status in statuses
    }
    for status, description in described.items():
        declared[int(status)] = {"description": description}
    return declared


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any] | None]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def route_statuses(route: Any) -> dict[int, str | None]:
    """Every problem status (4xx, and 503 of fail-closed auth) the route can answer, with the
    route's own description if any; a status whose `responses=` entry has its own content or
    model is left to FastAPI."""
    calls = set(_calls(route.dependant))
    statuses: dict[int, str | None] = {422: None}
    if route.body_field is not None:
        statuses[400] = None
    if current_caller in calls:
        statuses.update({401: None, 503: None})
    if current_agent in calls:
        statuses[403] = None
    if route.dependant.path_params:
        statuses[404] = None
    for code, response in route.responses.items():
        if str(code).isdigit() and int(code) >= 400:
            if "content" in response or "model" in response:
                statuses.pop(int(code), None)  # the route describes this answer itself
            else:
                statuses[int(code)] = response.get("description")
    return statuses


def truthful_openapi(spec: dict[str, Any], routes: Iterable[Any]) -> dict[str, Any]:
    """Rewrite FastAPI's spec in place: problem+json for every error status each route can
    answer, and the problem schema in place of HTTPValidationError."""
    # FastAPI keeps included routers nested; their contexts read like APIRoutes (full path,
    # the router's and the route's `responses` merged).
    for route in iter_route_contexts(list(routes)):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        item = spec.get("paths", {}).get(route.path_format, {})
        statuses = route_statuses(route)
        for method in route.methods or ():
            operation = item.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in sorted(statuses.items()):
                responses[str(status)] = problem_response(status, description)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in _REPLACED_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    return spec


def install_truthful_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and `/openapi.json`) return the rewritten spec, built once."""
    generate = app.openapi
    rewritten: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        spec = generate()  # FastAPI's, cached until the routes change
        if not rewritten or rewritten[0] is not spec:
            rewritten[:] = [truthful_openapi(spec, app.routes)]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
