"""Issue #13 through the gateway: hostile input is a 4xx problem, customer intelligence follows
customer visibility, and the merged spec documents the problems."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import Agent
from test_journeys import create_ticket

from quimbi_common.testing import assert_problem, unique

pytestmark = pytest.mark.e2e

NUL = "\u0000"


async def test_nul_anywhere_is_a_422_in_every_service(
    gateway: httpx.AsyncClient, admin: Agent, make_agent: Any
) -> None:
    ticket = await create_ticket(gateway, admin)
    tid = ticket["id"]
    # JSON fields (tickets, agents) and a JSONB array (specializations)
    for path, body in [
        (
            "/api/tickets",
            {"customer": {"email": "n@example.com"}, "subject": NUL, "channel": "email"},
        ),
        (f"/api/tickets/{tid}/messages", {"content": f"hi{NUL}"}),
        (
            "/api/agents",
            {
                "email": f"{unique('n-')}@example.com",
                "password": "a-long-password",
                "name": "N",
                "specializations": [f"bill{NUL}ing"],
            },
        ),
        (f"/api/tickets/{tid}/assign", {"agent_id": f"a{NUL}"}),
        (f"/api/ai/tickets/{tid}/regenerate-draft", {"include_details": [NUL]}),
    ]:
        assert_problem(await gateway.post(path, json=body, headers=admin.headers), 422)
    assert_problem(
        await gateway.patch("/api/sla/policies/low", json={"x": NUL}, headers=admin.headers), 422
    )
    # path segments and query values, whichever service the path goes to
    for url in [
        "/api/tickets/a%00b",
        "/api/customers/a%00b",
        "/api/tickets/a%00b/sla",
        "/api/tickets/a%00b/score-breakdown",
        "/api/tickets/a%00b/assignments",
        "/api/agents/a%00b",
        "/api/ai/customers/a%00b/intelligence",
        "/api/tickets?topic_alerts=a%00",
        f"/api/tickets/{tid}/score-breakdown?topic_alerts=%00",
    ]:
        assert_problem(await gateway.get(url, headers=admin.headers), 422)


async def test_a_nul_password_is_422_to_set_and_401_to_log_in(
    gateway: httpx.AsyncClient, admin: Agent, make_agent: Any
) -> None:
    created = await gateway.post(
        "/api/agents",
        json={
            "email": f"{unique('p-')}@example.com",
            "password": f"twelve-chars{NUL}!",
            "name": "P",
        },
        headers=admin.headers,
    )
    assert_problem(created, 422)
    agent = await make_agent("agent")
    wrong = await gateway.post(
        "/api/agents/login", json={"email": agent.email, "password": f"e2e-password{NUL}123"}
    )
    assert_problem(wrong, 401)


async def test_huge_pages_are_422(gateway: httpx.AsyncClient, admin: Agent) -> None:
    for url in ["/api/agents?page=10000000000000000000", "/api/tickets?page=10000000000000000000"]:
        assert_problem(await gateway.get(url, headers=admin.headers), 422)


async def test_customer_intelligence_follows_customer_visibility(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    owner, other, senior = (
        await make_agent("agent"),
        await make_agent("agent"),
        await make_agent("senior_agent"),
    )
    ticket = await create_ticket(gateway, owner)
    url = f"/api/ai/customers/{ticket['customer_id']}/intelligence"
    for agent, status in [(owner, 200), (other, 404), (senior, 200)]:
        customer = await gateway.get(
            f"/api/customers/{ticket['customer_id']}", headers=agent.headers
        )
        intelligence = await gateway.get(url, headers=agent.headers)
        assert customer.status_code == intelligence.status_code == status, intelligence.text
    made_up = await gateway.get(
        f"/api/ai/customers/{unique('made-up-')}/intelligence", headers=senior.headers
    )
    assert_problem(made_up, 404)


async def test_the_merged_spec_documents_problems(gateway: httpx.AsyncClient) -> None:
    spec = (await gateway.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    create = spec["paths"]["/api/tickets"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "422", "429"} <= set(create)
    assert create["422"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    assert "Retry-After" in create["429"]["headers"]
