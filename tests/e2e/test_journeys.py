"""The users' journeys, through the gateway, against the real running suite."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import Agent

from quimbi_common.testing import eventually, unique

pytestmark = pytest.mark.e2e


async def create_ticket(
    gateway: httpx.AsyncClient, agent: Agent, *, message: str | None = None, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": {"email": f"{unique('cust-')}@example.com", "name": "Jane Customer"},
        "subject": "Payment not processing",
        "priority": "normal",
        "channel": "email",
        **fields,
    }
    if message:
        body["message"] = {"content": message, "from_agent": False}
    response = await gateway.post("/api/tickets", json=body, headers=agent.headers)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def get_ok(gateway: httpx.AsyncClient, path: str, agent: Agent, **params: Any) -> Any:
    response = await gateway.get(path, headers=agent.headers, params=params)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    return response.json()


async def test_every_role_logs_in_and_sees_itself(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    for role in ("agent", "senior_agent", "team_lead", "manager"):
        agent = await make_agent(role)
        me = await get_ok(gateway, "/api/agents/me", agent)
        assert (me["role"], me["email"]) == (role, agent.email)
        assert "hashed_password" not in me
    wrong = await gateway.post(
        "/api/agents/login", json={"email": agent.email, "password": "not-the-password"}
    )
    assert wrong.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_a_new_ticket_gets_a_score_and_an_sla_clock(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    agent = await make_agent("agent")
    ticket = await create_ticket(gateway, agent, priority="urgent", message="Where is my order?")
    assert ticket["assigned_agent_id"] == agent.id

    async def scored() -> dict[str, Any]:
        found = await get_ok(gateway, f"/api/tickets/{ticket['id']}", agent)
        assert found["smart_score"] >= 4.0  # urgent alone is worth 4 points
        return found

    await eventually(scored)
    breakdown = await get_ok(gateway, f"/api/tickets/{ticket['id']}/score-breakdown", agent)
    assert breakdown["parts"]["priority"]["points"] == 4.0 or breakdown["parts"]["priority"] == 4.0

    async def clock() -> dict[str, Any]:
        return await get_ok(gateway, f"/api/tickets/{ticket['id']}/sla", agent)

    sla = await eventually(clock)
    assert sla["priority"] == "urgent"
    assert sla["first_response_status"] == "pending"


async def test_messages_carry_sentiment_and_an_agent_reply_meets_first_response(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    agent = await make_agent("agent")
    ticket = await create_ticket(
        gateway, agent, message="This is terrible, I am furious and want a refund now!"
    )
    messages = await get_ok(gateway, f"/api/tickets/{ticket['id']}/messages", agent)
    [complaint] = messages if isinstance(messages, list) else messages["messages"]
    assert complaint["sentiment_score"] < 0.5
    assert complaint["detected_intent"] in ("refund_request", "complaint")
    reply = await gateway.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "I'm sorry, I've refunded you.", "from_agent": True},
        headers=agent.headers,
    )
    assert reply.status_code == 201, reply.text

    async def first_response_met() -> None:
        sla = await get_ok(gateway, f"/api/tickets/{ticket['id']}/sla", agent)
        assert sla["first_response_status"] == "met"

    await eventually(first_response_met)
    detail = await get_ok(gateway, f"/api/tickets/{ticket['id']}", agent)
    assert detail["customer_sentiment"] < 0.5


async def test_pending_pauses_the_clock_and_a_customer_reply_reopens_and_resumes(
    gateway: httpx.AsyncClient, make_agent: Any, admin: Agent
) -> None:
    agent = await make_agent("agent")
    ticket = await create_ticket(gateway, agent, message="My parcel is late")
    await eventually(lambda: get_ok(gateway, f"/api/tickets/{ticket['id']}/sla", agent))
    pending = await gateway.patch(
        f"/api/tickets/{ticket['id']}", json={"status": "pending"}, headers=agent.headers
    )
    assert pending.status_code == 200, pending.text

    async def paused() -> None:
        assert (await get_ok(gateway, f"/api/tickets/{ticket['id']}/sla", agent))["is_paused"]

    await eventually(paused)
    customer = await gateway.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "Any news?", "from_agent": False},
        headers={"X-API-Key": "dev-integration-key"},
    )
    assert customer.status_code == 201, customer.text
    assert (await get_ok(gateway, f"/api/tickets/{ticket['id']}", agent))["status"] == "open"

    async def resumed() -> None:
        sla = await get_ok(gateway, f"/api/tickets/{ticket['id']}/sla", agent)
        assert not sla["is_paused"]
        assert sla["total_paused_seconds"] >= 0

    await eventually(resumed)


async def test_assign_and_transfer_change_what_agents_see(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    senior = await make_agent("senior_agent")
    first, second = await make_agent("agent"), await make_agent("agent")
    ticket = await create_ticket(gateway, senior, assigned_agent_id=senior.id)
    path = f"/api/tickets/{ticket['id']}"
    assert (await gateway.get(path, headers=first.headers)).status_code == 404

    async def assign(to: Agent, **extra: Any) -> None:
        response = await gateway.post(
            f"{path}/assign", json={"agent_id": to.id, **extra}, headers=senior.headers
        )
        assert response.status_code == 201, response.text

    async def visible_to(agent: Agent) -> None:
        assert (await gateway.get(path, headers=agent.headers)).status_code == 200
        listed = await get_ok(gateway, "/api/tickets", agent, limit=100)
        assert ticket["id"] in {t["id"] for t in listed["tickets"]}

    async def agents_know_the_ticket() -> None:  # it learns of tickets from ticket.created
        assert (await gateway.get(f"{path}/assignments", headers=senior.headers)).status_code == 200

    await eventually(agents_know_the_ticket)
    await assign(first, reason="manual")
    await eventually(lambda: visible_to(first))
    await assign(second, transfer_reason="needs billing expertise")
    await eventually(lambda: visible_to(second))

    async def hidden_from_first() -> None:
        assert (await gateway.get(path, headers=first.headers)).status_code == 404

    await eventually(hidden_from_first)
    history = await get_ok(gateway, f"{path}/assignments", senior)
    latest = [a for a in history["assignments"] if a["is_active"]]
    assert [a["agent_id"] for a in latest] == [second.id]
    assert latest[0]["previous_agent_id"] == first.id
    assert latest[0]["transfer_reason"] == "needs billing expertise"


async def test_topic_alerts_move_matching_tickets_up(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    senior = await make_agent("senior_agent")
    keyword = unique("chargeback")
    customer = {"email": f"{unique('alerts-')}@example.com", "name": "Alert Customer"}
    quiet = await create_ticket(
        gateway, senior, priority="low", subject=f"About {keyword} fees", customer=customer
    )
    loud = await create_ticket(
        gateway, senior, priority="urgent", subject="Site is down", customer=customer
    )
    inbox = {"limit": 100, "status": "open", "customer_id": quiet["customer_id"]}

    async def scored_in_priority_order() -> None:
        plain = await get_ok(gateway, "/api/tickets", senior, **inbox)
        assert [t["id"] for t in plain["tickets"]] == [loud["id"], quiet["id"]]
        assert plain["tickets"][0]["smart_score"] >= 4.0

    await eventually(scored_in_priority_order)

    async def alert_reorders() -> None:
        # Eventually, since the customer's intelligence (same for both) may land in between.
        alerted = await get_ok(gateway, "/api/tickets", senior, **inbox, topic_alerts=keyword)
        assert [t["id"] for t in alerted["tickets"]] == [quiet["id"], loud["id"]]
        assert alerted["topic_alerts_active"] == [keyword]
        assert alerted["matches"] == 1
        assert [t["matches_topic_alert"] for t in alerted["tickets"]] == [True, False]

    await eventually(alert_reorders)


async def test_ai_draft_is_cached_and_a_new_message_drops_it(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    agent = await make_agent("agent")
    ticket = await create_ticket(gateway, agent, message="I was charged twice, please help")
    path = f"/api/ai/tickets/{ticket['id']}/draft-response"
    first = await get_ok(gateway, path, agent)
    assert first["ticket_id"] == ticket["id"]
    assert first["draft_content"]
    assert {"tone", "channel", "personalization_applied", "customer_dna", "churn_risk"} <= set(
        first
    )
    assert not first.get("cached")

    async def served_from_cache() -> None:
        # The draft is cached for this conversation; a new message makes the next one new.
        assert (await get_ok(gateway, path, agent)).get("cached") is True

    await eventually(served_from_cache)
    await gateway.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "Also my invoice is wrong", "from_agent": False},
        headers=agent.headers,
    )

    async def dropped() -> None:
        assert not (await get_ok(gateway, path, agent)).get("cached")

    await eventually(dropped)
    outsider = await make_agent("agent")
    assert (await gateway.get(path, headers=outsider.headers)).status_code == 404


async def test_logout_makes_the_token_fail_on_every_route(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    agent = await make_agent("manager")
    ticket = await create_ticket(gateway, agent)
    assert (await gateway.post("/api/agents/logout", headers=agent.headers)).status_code in (
        200,
        204,
    )
    for path in (
        "/api/agents/me",
        "/api/tickets",
        f"/api/tickets/{ticket['id']}",
        f"/api/tickets/{ticket['id']}/sla",
        f"/api/tickets/{ticket['id']}/score-breakdown",
        f"/api/tickets/{ticket['id']}/assignments",
        "/api/sla/policies",
        f"/api/ai/tickets/{ticket['id']}/recommendation",
    ):
        response = await gateway.get(path, headers=agent.headers)
        assert response.status_code == 401, path


async def test_only_an_admin_deletes_a_ticket(
    gateway: httpx.AsyncClient, make_agent: Any, admin: Agent
) -> None:
    manager = await make_agent("manager")
    ticket = await create_ticket(gateway, manager)
    path = f"/api/tickets/{ticket['id']}"
    assert (await gateway.delete(path, headers=manager.headers)).status_code == 403
    assert (await gateway.delete(path, headers=admin.headers)).status_code == 204
    assert (await gateway.get(path, headers=admin.headers)).status_code == 404


async def test_bad_input_gets_problem_json(gateway: httpx.AsyncClient, make_agent: Any) -> None:
    agent = await make_agent("agent")
    bad = await gateway.post(
        "/api/tickets",
        json={"customer": {"email": "not-an-email"}, "subject": "x" * 501, "channel": "fax"},
        headers=agent.headers,
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(bad.json())
    assert (
        await gateway.get("/api/tickets", params={"limit": 1000}, headers=agent.headers)
    ).status_code == 422
    assert (await gateway.get("/api/tickets/nope", headers=agent.headers)).status_code == 404
    assert (await gateway.get("/api/tickets")).status_code == 401
