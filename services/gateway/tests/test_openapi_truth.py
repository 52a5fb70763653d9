"""The merged spec of the real services tells the truth (issue #13): every error is
problem+json with the problem schema, every operation lists the statuses it can answer, and
the enforced constraints (bounds, lengths, nullability, oneOf, keyword caps) are in it.

The services' apps are built in-process (nothing is started) and merged as the gateway merges
them, so a route that loses its problem statuses, or an integer without a bound, fails here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from quimbi_agents.main import build_app as build_agents
from quimbi_ai_proxy.main import build_app as build_ai_proxy
from quimbi_gateway.domain import OPEN_ROUTES, route
from quimbi_gateway.main import build_app as build_gateway
from quimbi_gateway.openapi import HTTP_METHODS, merge_openapi
from quimbi_scoring.main import build_app as build_scoring
from quimbi_sla.main import build_app as build_sla
from quimbi_tickets.main import build_app as build_tickets

pytestmark = pytest.mark.unit

PROBLEM = {"$ref": "#/components/schemas/Problem"}
BUILDERS = {
    "tickets": build_tickets,
    "agents": build_agents,
    "sla": build_sla,
    "scoring": build_scoring,
    "ai-proxy": build_ai_proxy,
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    documents = {name: build().openapi() for name, build in BUILDERS.items()}
    return merge_openapi(
        documents,
        own=build_gateway().openapi(),
        routes_to=route,
        open_operations=OPEN_ROUTES,
        title="Quimbi Support API",
    )


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("x-service") != "gateway"
    ]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _walk(spec: dict[str, Any], schema: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    """Every subschema reachable from `schema` (refs followed once)."""
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return []
        seen.add(schema["$ref"])
        schema = _resolve(spec, schema)
    found = [schema]
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key, []):
            found += _walk(spec, sub, seen)
    for sub in schema.get("properties", {}).values():
        found += _walk(spec, sub, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _walk(spec, schema[key], seen)
    return found


def _property(spec: dict[str, Any], schema_name: str, field: str) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    name = next(n for n in schemas if n == schema_name or n.endswith(f".{schema_name}"))
    prop: dict[str, Any] = schemas[name]["properties"][field]
    return prop


def test_the_problem_schema_replaces_fastapis_validation_error(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert not [name for name in schemas if "ValidationError" in name]
    problem = schemas["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert set(schemas["FieldError"]["required"]) == {"loc", "msg", "type"}


def test_the_gateways_health_keeps_its_own_503_document(spec: dict[str, Any]) -> None:
    unavailable = spec["paths"]["/health"]["get"]["responses"]["503"]
    assert unavailable["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/SuiteHealth"}}
    }


def test_every_error_of_every_operation_is_problem_json(spec: dict[str, Any]) -> None:
    wrong = [
        (method, path, status)
        for method, path, operation in _operations(spec)
        for status, response in operation["responses"].items()
        if int(status) >= 400
        and response.get("content") != {"application/problem+json": {"schema": PROBLEM}}
    ]
    assert wrong == []


def test_every_operation_lists_the_statuses_it_can_answer(spec: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in _operations(spec):
        statuses = set(operation["responses"])
        expected = {"422", "429", "502", "503", "504"}
        if "requestBody" in operation:
            expected |= {"400", "408", "413"}
        if (method.upper(), path) not in OPEN_ROUTES:
            expected |= {"401"}
        if "{" in path:
            expected |= {"404"}
        if not expected <= statuses:
            missing.append((method, path, sorted(expected - statuses)))
        assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert missing == []


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("post", "/api/agents/login", {"401", "429"}),
        ("get", "/api/agents/me", {"401", "403"}),
        ("post", "/api/agents", {"403", "409"}),
        ("post", "/api/tickets", {"403", "409"}),
        ("patch", "/api/tickets/{ticket_id}", {"403", "404", "409"}),
        ("post", "/api/tickets/{ticket_id}/messages", {"403", "409"}),
        ("post", "/api/tickets/{ticket_id}/assign", {"403", "409"}),
        ("post", "/api/tickets/{ticket_id}/sla/pause", {"409"}),
        ("patch", "/api/sla/policies/{priority}", {"403"}),
        ("get", "/api/ai/customers/{customer_id}/intelligence", {"403", "404", "502"}),
    ],
)
def test_route_specific_statuses_are_listed(
    spec: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    assert statuses <= set(spec["paths"][path][method]["responses"])


def test_every_integer_a_client_sends_has_an_upper_bound(spec: dict[str, Any]) -> None:
    unbounded = []
    for method, path, operation in _operations(spec):
        schemas = [p["schema"] for p in operation.get("parameters", [])]
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            schemas.append(body["schema"])
        for schema in schemas:
            for sub in _walk(spec, schema, set()):
                if sub.get("type") == "integer" and "maximum" not in sub:
                    unbounded.append((method, path, sub.get("title")))
    assert unbounded == []
    page = next(p for p in spec["paths"]["/api/agents"]["get"]["parameters"] if p["name"] == "page")
    assert page["schema"]["maximum"] == 100_000


def test_enforced_constraints_are_in_the_schemas(spec: dict[str, Any]) -> None:
    # password length (a new one; the login takes any text)
    assert _property(spec, "AgentCreate", "password")["minLength"] == 12
    # fields that refuse null are not nullable; those that clear on null are
    assert "anyOf" not in _property(spec, "TicketUpdate", "subject")
    assert {"type": "null"} in _property(spec, "TicketUpdate", "category")["anyOf"]
    assert "anyOf" not in _property(spec, "AgentUpdate", "name")
    assert {"type": "null"} in _property(spec, "AgentUpdate", "department")["anyOf"]
    assert "anyOf" not in _property(spec, "PolicyUpdate", "resolution_target_seconds")
    # exactly one of customer_id and customer
    schemas = spec["components"]["schemas"]
    one_of = schemas["TicketCreate"]["oneOf"]
    assert sorted(tuple(branch["required"]) for branch in one_of) == [
        ("customer",),
        ("customer_id",),
    ]
    # lengths
    assert _property(spec, "TicketCreate", "subject")["maxLength"] == 500
    assert _property(spec, "AgentCreate", "specializations")["maxItems"] == 50


@pytest.mark.parametrize("path", ["/api/tickets", "/api/tickets/{ticket_id}/score-breakdown"])
def test_topic_alerts_caps_are_in_the_schema(spec: dict[str, Any], path: str) -> None:
    [param] = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "topic_alerts"]
    pattern = re.compile(param["schema"]["pattern"])
    assert pattern.fullmatch(",".join(["refund"] * 20))
    assert not pattern.fullmatch(",".join(["refund"] * 21))
    assert not pattern.fullmatch("x" * 101)
