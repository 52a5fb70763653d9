"""CSAT through the gateway (issue 19 item 6): an agent resolves a ticket, the integration key
rates it on the customer's behalf, the agent reads the rating back, and the agents service
counts it in the agent's satisfaction score."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import Agent
from test_journeys import create_ticket, get_ok

pytestmark = pytest.mark.e2e

INTEGRATION = {"X-API-Key": "dev-integration-key"}


async def test_a_resolved_ticket_is_rated_by_the_key_and_read_back(
    gateway: httpx.AsyncClient, make_agent: Any, admin: Agent
) -> None:
    agent = await make_agent("agent")
    ticket = await create_ticket(gateway, agent, message="My parcel is late")
    path = f"/api/tickets/{ticket['id']}/csat"
    # an open ticket is not rated yet
    early = await gateway.post(path, json={"rating": 5}, headers=INTEGRATION)
    assert early.status_code == 409, early.text
    assert early.headers["content-type"].startswith("application/problem+json")
    resolved = await gateway.patch(
        f"/api/tickets/{ticket['id']}", json={"status": "resolved"}, headers=agent.headers
    )
    assert resolved.status_code == 200, resolved.text
    # the agent cannot rate their own ticket; the key can, once
    refused = await gateway.post(path, json={"rating": 5}, headers=agent.headers)
    assert refused.status_code == 403, refused.text
    rated = await gateway.post(path, json={"rating": 4, "comment": "Thanks!"}, headers=INTEGRATION)
    assert rated.status_code == 201, rated.text
    assert rated.json()["agent_id"] == agent.id
    again = await gateway.post(path, json={"rating": 1}, headers=INTEGRATION)
    assert again.status_code == 409, again.text
    # and the agent reads it back
    read = await get_ok(gateway, path, agent)
    assert (read["rating"], read["comment"], read["agent_id"]) == (4, "Thanks!", agent.id)
    # and the agents service, given the rating's token, shows it as the agent's CSAT score
    scored = await gateway.get(
        f"/api/agents/{agent.id}",
        headers={**admin.headers, "X-Consistency-Token": rated.headers["x-consistency-token"]},
    )
    assert scored.status_code == 200, scored.text
    assert scored.json()["customer_satisfaction_score"] == 4
