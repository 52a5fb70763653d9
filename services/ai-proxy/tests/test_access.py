"""Who may ask: agents only, and only about tickets the tickets service lets them see."""

from __future__ import annotations

import pytest

from quimbi_common.enums import Role

pytestmark = pytest.mark.service

PATHS = ["draft-response", "recommendation"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_ticket_the_agent_may_not_see_is_404(proxy_app, tickets, standin, path) -> None:
    # given a ticket assigned to someone else
    ticket = tickets.add(assigned_agent_id="agent-owner")
    async with proxy_app() as proxy:
        # when another plain agent asks about it
        response = await proxy.client.get(
            f"/api/ai/tickets/{ticket['id']}/{path}",
            headers=proxy.headers(Role.AGENT, "agent-intruder"),
        )
    # then it does not exist for them, and Quimbi was never asked
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert await standin.calls() == {"analyze": 0, "message": 0, "actions": 0}


async def test_the_callers_token_is_forwarded_to_tickets(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id="agent-owner-2")
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.SENIOR_AGENT, "senior-1")
        response = await proxy.client.get(
            f"/api/ai/tickets/{ticket['id']}/draft-response", headers=headers
        )
    # then a senior agent sees any ticket, because tickets saw the senior's own token
    assert response.status_code == 200, response.text
    assert headers["Authorization"] in tickets.authorizations


async def test_regenerating_a_hidden_ticket_is_404(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id="agent-owner-3")
    async with proxy_app() as proxy:
        response = await proxy.client.post(
            f"/api/ai/tickets/{ticket['id']}/regenerate-draft",
            json={"tone": "friendly", "length": "short"},
            headers=proxy.headers(Role.AGENT, "agent-other-3"),
        )
    assert response.status_code == 404


async def test_an_unknown_ticket_is_404(proxy_app, standin) -> None:
    async with proxy_app() as proxy:
        response = await proxy.client.get(
            "/api/ai/tickets/tkt-does-not-exist/draft-response",
            headers=proxy.headers(Role.ADMIN),
        )
    assert response.status_code == 404


async def test_tickets_service_down_is_503(proxy_app, standin) -> None:
    async with proxy_app(tickets_url="http://127.0.0.1:9") as proxy:
        response = await proxy.client.get(
            "/api/ai/tickets/tkt-any/recommendation", headers=proxy.headers(Role.ADMIN)
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path",
    [
        "/api/ai/tickets/tkt-x/draft-response",
        "/api/ai/tickets/tkt-x/recommendation",
        "/api/ai/customers/cust-x/intelligence",
    ],
)
async def test_callers_without_an_agent_token_are_refused(proxy_app, standin, path) -> None:
    async with proxy_app() as proxy:
        anonymous = await proxy.client.get(path)
        integration = await proxy.client.get(
            path, headers={"X-API-Key": proxy.settings.api_key.get_secret_value()}
        )
    assert anonymous.status_code == 401
    assert integration.status_code == 403
    assert await standin.calls() == {"analyze": 0, "message": 0, "actions": 0}
