"""Merging OpenAPI documents, as a pure function over dicts."""

import pytest

from quimbi_gateway.domain import OPEN_ROUTES, route
from quimbi_gateway.openapi import merge_openapi

pytestmark = pytest.mark.unit


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(schema_ref: dict, operation_id: str, tags: list[str] | None = None) -> dict:
    operation = {
        "operationId": operation_id,
        "responses": {"200": {"content": {"application/json": {"schema": schema_ref}}}},
        "security": [{"HTTPBearer": []}],
    }
    if tags is not None:
        operation["tags"] = tags
    return operation


def _merge(services: dict, own: dict | None = None) -> dict:
    return merge_openapi(
        services,
        own=own or {"paths": {}},
        routes_to=route,
        open_operations=OPEN_ROUTES,
        title="t",
    )


TICKETS = {
    "paths": {
        "/api/tickets": {"get": _op(_ref("Page"), "list")},
        "/api/tickets/{id}/assign": {"post": _op(_ref("Page"), "not_mine")},
    },
    "components": {
        "schemas": {
            "Page": {"type": "object", "properties": {"items": {"items": _ref("Ticket")}}},
            "Ticket": {"type": "object", "properties": {"subject": {"type": "string"}}},
            "Problem": {"type": "object", "properties": {"status": {"type": "integer"}}},
        }
    },
}
AGENTS = {
    "paths": {
        "/api/agents/login": {"post": _op(_ref("Ticket"), "list", tags=["auth"])},
        "/api/tickets/{id}/assign": {
            "parameters": [{"name": "id", "in": "path"}],
            "post": _op(_ref("Problem"), "assign"),
        },
    },
    "components": {
        "schemas": {
            "Ticket": {"type": "object", "properties": {"agent_id": {"type": "string"}}},
            "Problem": {"type": "object", "properties": {"status": {"type": "integer"}}},
        }
    },
}


def test_same_named_schemas_with_different_content_are_renamed_with_refs_rewritten() -> None:
    spec = _merge({"tickets": TICKETS, "agents": AGENTS})
    schemas = spec["components"]["schemas"]
    assert "Ticket" not in schemas
    assert "subject" in schemas["tickets.Ticket"]["properties"]
    assert "agent_id" in schemas["agents.Ticket"]["properties"]
    # refs inside a service's own schemas follow the rename too
    assert schemas["Page"]["properties"]["items"]["items"] == _ref("tickets.Ticket")
    login = spec["paths"]["/api/agents/login"]["post"]
    assert login["responses"]["200"]["content"]["application/json"]["schema"] == _ref(
        "agents.Ticket"
    )


def test_identical_schemas_are_kept_once_under_their_name() -> None:
    spec = _merge({"tickets": TICKETS, "agents": AGENTS})
    schemas = spec["components"]["schemas"]
    assert "Problem" in schemas
    assert "tickets.Problem" not in schemas


def test_a_path_comes_only_from_the_service_it_is_routed_to() -> None:
    spec = _merge({"tickets": TICKETS, "agents": AGENTS})
    assign = spec["paths"]["/api/tickets/{id}/assign"]
    assert assign["post"]["operationId"] == "assign"
    assert assign["post"]["x-service"] == "agents"
    assert assign["parameters"] == [{"name": "id", "in": "path"}]


def test_operation_ids_stay_unique() -> None:
    spec = _merge({"tickets": TICKETS, "agents": AGENTS})
    assert spec["paths"]["/api/tickets"]["get"]["operationId"] == "list"
    assert spec["paths"]["/api/agents/login"]["post"]["operationId"] == "agents.list"


def test_services_security_is_replaced_by_the_gateways_and_open_routes_need_none() -> None:
    spec = _merge({"tickets": TICKETS, "agents": AGENTS})
    assert "security" not in spec["paths"]["/api/tickets"]["get"]
    assert spec["paths"]["/api/agents/login"]["post"]["security"] == []
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyAuth"}


def test_tags_are_named_for_the_service() -> None:
    spec = _merge({"tickets": TICKETS, "agents": AGENTS})
    assert spec["paths"]["/api/tickets"]["get"]["tags"] == ["tickets"]
    assert spec["paths"]["/api/agents/login"]["post"]["tags"] == ["agents · auth"]
    assert [tag["name"] for tag in spec["tags"]] == ["tickets", "agents", "agents · auth"]


def test_an_operation_is_listed_under_its_most_specific_tag_only() -> None:
    tickets = {
        "paths": {
            "/api/tickets/{id}/messages": {
                "get": _op(_ref("Page"), "m", tags=["tickets", "messages"])
            }
        },
        "components": TICKETS["components"],
    }
    spec = _merge({"tickets": tickets})
    assert spec["paths"]["/api/tickets/{id}/messages"]["get"]["tags"] == ["tickets · messages"]


def test_every_ref_in_the_merged_spec_resolves() -> None:
    spec = _merge({"tickets": TICKETS, "agents": AGENTS})
    refs: list[str] = []

    def collect(value) -> None:
        if isinstance(value, dict):
            refs.extend(v for k, v in value.items() if k == "$ref")
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(spec)
    assert refs
    for ref in refs:
        _, _, section, name = ref.split("/")
        assert name in spec["components"][section], ref


def test_gateways_own_routes_are_included_and_open() -> None:
    own = {"paths": {"/health": {"get": {"operationId": "health", "responses": {}}}}}
    spec = _merge({"tickets": TICKETS}, own=own)
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/health"]["get"]["tags"] == ["gateway"]


def test_inputs_are_not_modified() -> None:
    before = repr(TICKETS)
    _merge({"tickets": TICKETS, "agents": AGENTS})
    assert repr(TICKETS) == before
