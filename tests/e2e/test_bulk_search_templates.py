"""Issue #19 items 1, 4, 5 through the gateway: search, a bulk change whose per-ticket token
another service honours, a bulk assignment (agents), and a canned response signed with the
agent's announced name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from test_journeys import create_ticket, get_ok

from quimbi_common.testing import eventually, unique

pytestmark = pytest.mark.e2e


async def test_search_then_bulk_change_then_reply_with_a_canned_response(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    # given an agent with two tickets mentioning a word of our own
    agent = await make_agent("agent")
    word = unique("omega")
    first = await create_ticket(gateway, agent, subject=f"Parcel {word} lost")
    second = await create_ticket(gateway, agent, message=f"My {word} never came")
    # when they search for it: both, the subject match first, with marked snippets
    found = await get_ok(gateway, "/api/tickets/search", agent, q=word)
    assert [t["id"] for t in found["tickets"]] == [first["id"], second["id"]]
    assert f"<mark>{word}</mark>" in found["tickets"][1]["highlight"]["message"]
    # and raise both to urgent in one request
    response = await gateway.post(
        "/api/tickets/bulk",
        json={"ticket_ids": [first["id"], second["id"]], "changes": {"priority": "urgent"}},
        headers=agent.headers,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["outcome"] for r in results] == ["updated", "updated"]
    # then the SLA service, given a ticket's token, answers only once it has the new priority
    token = results[1]["consistency_token"]
    sla = await gateway.get(
        f"/api/tickets/{second['id']}/sla",
        headers={**agent.headers, "X-Consistency-Token": token},
    )
    assert sla.status_code == 200, sla.text
    assert sla.json()["priority"] == "urgent"
    # and a senior agent hands the first to a colleague in bulk (agents' route, via the
    # gateway), who, sending the answer's token, sees it at once
    senior, colleague = await make_agent("senior_agent"), await make_agent("agent")
    moved = await gateway.post(
        "/api/tickets/bulk/assign",
        json={"ticket_ids": [first["id"], "ticket_unknown"], "agent_id": colleague.id},
        headers=senior.headers,
    )
    assert moved.status_code == 200, moved.text
    assert [r["outcome"] for r in moved.json()["results"]] == ["assigned", "not_found"]
    token = moved.headers["x-consistency-token"]
    seen = await gateway.get(
        f"/api/tickets/{first['id']}",
        headers={**colleague.headers, "X-Consistency-Token": token},
    )
    assert seen.status_code == 200, seen.text
    assert seen.json()["assigned_agent_id"] == colleague.id
    # and a canned response becomes a reply signed with the name the agents service announced
    template = await gateway.post(
        "/api/canned-responses",
        json={"name": "sorry", "body": "Sorry {{customer_name}}, re {{ticket_id}}. {{agent_name}}"},
        headers=agent.headers,
    )
    assert template.status_code == 201, template.text
    template_id = template.json()["id"]

    async def signed() -> None:
        preview = await gateway.post(
            f"/api/canned-responses/{template_id}/preview",
            json={"ticket_id": second["id"]},
            headers=agent.headers,
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["content"].endswith("E2E agent")

    await eventually(signed, timeout=30)
    reply = await gateway.post(
        f"/api/tickets/{second['id']}/messages",
        json={"template_id": template_id},
        headers=agent.headers,
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["content"] == f"Sorry Jane Customer, re {second['id']}. E2E agent"
