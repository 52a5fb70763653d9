"""The gateway's own routes: the suite's readiness combined, and one OpenAPI document (and
Swagger UI) for every service behind it."""

import asyncio

import pytest

from quimbi_common.testing import assert_docs_served_offline

pytestmark = pytest.mark.service


async def test_health_is_200_when_every_service_and_redis_are_ready(gateway) -> None:
    response = await gateway.client.get("/health")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ok"
    assert report["checks"]["redis"] == {"ok": True}
    assert set(report["services"]) == {"tickets", "agents", "sla", "scoring", "ai-proxy"}
    assert all(service["ok"] for service in report["services"].values())
    assert report["services"]["tickets"]["checks"] == {"database": {"ok": True}}


async def test_health_is_503_naming_the_service_not_ready_or_unreachable(
    start_gateway, sick_upstream, dead_url
) -> None:
    async with start_gateway(sla_url=sick_upstream.url, scoring_url=dead_url) as gw:
        response = await gw.client.get("/health")
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unavailable"
    services = report["services"]
    assert services["sla"]["ok"] is False
    assert services["sla"]["status_code"] == 503
    assert services["sla"]["checks"] == {"database": {"ok": False}}
    assert services["scoring"]["ok"] is False
    assert "unreachable" in services["scoring"]["detail"]
    assert services["tickets"]["ok"] is True


async def test_health_answers_within_its_timeout_when_a_service_hangs(
    start_gateway, silent_url
) -> None:
    async with start_gateway(ai_proxy_url=silent_url, health_timeout_seconds=0.3) as gw:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await gw.client.get("/health")
        elapsed = loop.time() - started
    assert response.status_code == 503
    assert "no answer" in response.json()["services"]["ai-proxy"]["detail"]
    assert elapsed < 2


async def test_health_is_503_while_redis_is_down(start_gateway, dead_url) -> None:
    redis_down = dead_url.replace("http://", "redis://") + "/0"
    async with start_gateway(redis_url=redis_down) as gw:
        response = await gw.client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


async def test_openapi_merges_the_paths_each_service_is_routed(gateway) -> None:
    response = await gateway.client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    # each path comes from the service the gateway sends it to
    assert paths["/api/tickets/{ticket_id}"]["get"]["x-service"] == "tickets"
    assert paths["/api/tickets/{ticket_id}/sla"]["get"]["x-service"] == "sla"
    assert paths["/api/sla/policies"]["get"]["x-service"] == "sla"
    assert paths["/api/agents/login"]["post"]["x-service"] == "agents"
    assert paths["/health"]["get"]["x-service"] == "gateway"
    # the services' own health and test paths are not public routes
    assert "/health/ready" not in paths or paths["/health/ready"]["get"]["x-service"] == "gateway"
    assert not [path for path in paths if "_test" in path]
    assert spec["x-upstreams"] == dict.fromkeys(
        ["tickets", "agents", "sla", "scoring", "ai-proxy"], "ok"
    )


async def test_openapi_renames_colliding_schemas_and_keeps_identical_ones_once(gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    # TicketSummary differs between tickets and sla: both kept, each under its service
    assert "TicketSummary" not in schemas
    assert set(schemas["tickets.TicketSummary"]["properties"]) == {"id", "subject"}
    assert set(schemas["sla.TicketSummary"]["properties"]) == {"id", "first_response_status"}
    sla_ok = spec["paths"]["/api/tickets/{ticket_id}/sla"]["get"]["responses"]["200"]
    assert sla_ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/sla.TicketSummary"
    }
    # Problem is the same everywhere: one copy, refs untouched
    assert "Problem" in schemas
    assert not [name for name in schemas if name.endswith(".Problem")]


async def test_openapi_offers_bearer_and_api_key_and_opens_login(gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["apiKeyAuth"] == {**schemes["apiKeyAuth"], "in": "header", "name": "X-API-Key"}
    assert spec["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert spec["paths"]["/api/agents/login"]["post"]["security"] == []
    assert "security" not in spec["paths"]["/api/tickets/{ticket_id}"]["get"]


async def test_openapi_tags_name_the_service(gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    assert spec["paths"]["/api/tickets/{ticket_id}"]["get"]["tags"] == ["tickets"]
    assert spec["paths"]["/api/sla/policies"]["get"]["tags"] == ["sla · policies"]
    assert spec["paths"]["/api/tickets/{ticket_id}/sla"]["get"]["tags"] == ["sla"]
    tag_names = [tag["name"] for tag in spec["tags"]]
    assert tag_names.index("tickets") < tag_names.index("sla")


async def test_openapi_leaves_out_a_service_that_is_down_and_says_so(
    start_gateway, dead_url
) -> None:
    async with start_gateway(sla_url=dead_url) as gw:
        response = await gw.client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["x-upstreams"]["sla"] == "unavailable"
    assert "/api/sla/policies" not in spec["paths"]
    assert "/api/tickets/{ticket_id}" in spec["paths"]
    assert "sla" in spec["info"]["description"]


async def test_openapi_keeps_the_last_document_of_a_service_that_went_down(
    start_gateway, start_upstream
) -> None:
    # given a gateway that has seen the sla service's document
    sla_running = start_upstream("sla")
    sla = await sla_running.__aenter__()
    async with start_gateway(sla_url=sla.url) as gw:
        before = (await gw.client.get("/openapi.json")).json()
        # when the sla service stops
        await sla_running.__aexit__(None, None, None)
        after = (await gw.client.get("/openapi.json")).json()
    # then its endpoints stay documented, marked stale
    assert before["x-upstreams"]["sla"] == "ok"
    assert after["x-upstreams"]["sla"] == "stale"
    assert "/api/sla/policies" in after["paths"]


async def test_docs_serve_swagger_ui_on_the_merged_spec(gateway) -> None:
    response = await gateway.client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text
    await assert_docs_served_offline(gateway.client)
