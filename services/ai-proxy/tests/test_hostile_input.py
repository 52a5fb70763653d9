"""Hostile input (issue #13) and customer visibility: a 4xx, never a 500, and never a call to
Quimbi about what the caller may not see."""

from __future__ import annotations

import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import assert_problem, unique

pytestmark = pytest.mark.service

NO_CALLS = {"analyze": 0, "message": 0, "actions": 0}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/ai/tickets/a%00b/draft-response"),
        ("POST", "/api/ai/tickets/a%00b/regenerate-draft"),
        ("GET", "/api/ai/tickets/%00/recommendation"),
        ("GET", "/api/ai/customers/a%00b/intelligence"),
    ],
)
async def test_a_nul_in_a_path_segment_is_422(proxy_app, standin, method, path) -> None:
    async with proxy_app() as proxy:
        response = await proxy.client.request(
            method, path, headers=proxy.headers(Role.ADMIN), json={}
        )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["path"]
    assert await standin.calls() == NO_CALLS


async def test_a_nul_in_a_query_value_is_422(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id="agent-q")
    async with proxy_app() as proxy:
        response = await proxy.client.get(
            f"/api/ai/tickets/{ticket['id']}/draft-response?tone=a%00",
            headers=proxy.headers(Role.AGENT, "agent-q"),
        )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query"]


@pytest.mark.parametrize(
    "body",
    [{"include_details": ["order\u0000number"]}, {"include_details": ["x" * 101]}],
    ids=["nul", "too-long"],
)
async def test_a_bad_regenerate_body_is_422(proxy_app, tickets, standin, body) -> None:
    ticket = tickets.add(assigned_agent_id="agent-b")
    async with proxy_app() as proxy:
        response = await proxy.client.post(
            f"/api/ai/tickets/{ticket['id']}/regenerate-draft",
            json=body,
            headers=proxy.headers(Role.AGENT, "agent-b"),
        )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"][:2] == ["body", "include_details"]
    assert await standin.calls() == NO_CALLS


async def test_a_body_that_is_not_json_is_400(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id="agent-j")
    async with proxy_app() as proxy:
        response = await proxy.client.post(
            f"/api/ai/tickets/{ticket['id']}/regenerate-draft",
            content=b'{"tone": ',
            headers={**proxy.headers(Role.AGENT, "agent-j"), "Content-Type": "application/json"},
        )
    assert_problem(response, 400)


async def test_intelligence_of_an_unknown_customer_is_404(proxy_app, tickets, standin) -> None:
    async with proxy_app() as proxy:
        response = await proxy.client.get(
            f"/api/ai/customers/{unique('made-up-')}/intelligence",
            headers=proxy.headers(Role.ADMIN),
        )
    assert_problem(response, 404)
    assert await standin.calls() == NO_CALLS


async def test_an_agent_gets_intelligence_only_through_their_own_tickets(
    proxy_app, tickets, standin
) -> None:
    # given a customer with a ticket of agent A, and a customer with no ticket at all
    ticket = tickets.add(assigned_agent_id="agent-a")
    url = f"/api/ai/customers/{ticket['customer_id']}/intelligence"
    lonely = f"/api/ai/customers/{tickets.add_customer()}/intelligence"
    async with proxy_app() as proxy:
        # when agent B, agent A and a senior agent ask
        agent_b = proxy.headers(Role.AGENT, "agent-b")
        other = await proxy.client.get(url, headers=agent_b)
        mine = await proxy.client.get(url, headers=proxy.headers(Role.AGENT, "agent-a"))
        senior = await proxy.client.get(url, headers=proxy.headers(Role.SENIOR_AGENT))
        senior_lonely = await proxy.client.get(lonely, headers=proxy.headers(Role.SENIOR_AGENT))
        agent_lonely = await proxy.client.get(lonely, headers=proxy.headers(Role.AGENT, "agent-a"))
    # then B gets a 404, A and the senior the intelligence; a customer without tickets is
    # visible to seniors only
    assert_problem(other, 404)
    assert mine.status_code == 200, mine.text
    assert senior.status_code == 200, senior.text
    assert senior_lonely.status_code == 200, senior_lonely.text
    assert_problem(agent_lonely, 404)
    # and it was the tickets service that decided, on the caller's own token
    assert agent_b["Authorization"] in tickets.authorizations
    assert (await standin.calls())["analyze"] == 2
