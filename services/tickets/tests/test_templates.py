"""Canned responses: CRUD, personal vs shared, safe placeholders, use from the message route."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from quimbi_common.enums import AgentStatus, Role
from quimbi_common.events import AgentData
from quimbi_common.testing import unique

if TYPE_CHECKING:
    from conftest import Actor, World

pytestmark = pytest.mark.service
BASE = "/api/canned-responses"


async def _create(world: World, actor: Actor, **body: Any) -> Any:
    return await world.client.post(BASE, json=body, headers=actor.headers)


async def _names(world: World, actor: Actor, **params: Any) -> set[str]:
    response = await world.client.get(BASE, params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    return {t["name"] for t in response.json()["templates"]}


async def test_personal_and_shared_templates_and_who_may_change_them(world: World) -> None:
    # given an agent with a personal template and a team lead with a shared one
    agent, other, lead = world.agent(), world.agent(), world.agent(Role.TEAM_LEAD)
    mine_name, shared_name = unique("mine "), unique("shared ")
    mine = await _create(world, agent, name=mine_name, body="Hi {{customer_name}}")
    assert mine.status_code == 201, mine.text
    assert mine.json()["shared"] is False
    assert mine.json()["owner_agent_id"] == agent.agent_id
    shared = await _create(world, lead, name=shared_name, body="Thanks!", shared=True)
    assert shared.status_code == 201, shared.text
    # then the agent sees both, the other agent only the shared one
    assert {mine_name, shared_name} <= await _names(world, agent)
    assert shared_name in await _names(world, other)
    assert mine_name not in await _names(world, other)
    assert mine_name not in await _names(world, agent, shared="true")
    assert shared_name not in await _names(world, agent, shared="false")
    mine_url, shared_url = f"{BASE}/{mine.json()['id']}", f"{BASE}/{shared.json()['id']}"
    world.problem(await world.client.get(mine_url, headers=other.headers), 404)
    world.problem(
        await world.client.patch(mine_url, json={"name": "x"}, headers=other.headers), 404
    )
    # and an agent may neither create, change, nor delete shared ones, nor share their own
    world.problem(await _create(world, agent, name="n", body="b", shared=True), 403)
    world.problem(
        await world.client.patch(shared_url, json={"body": "x"}, headers=agent.headers), 403
    )
    world.problem(await world.client.delete(shared_url, headers=agent.headers), 403)
    world.problem(
        await world.client.patch(mine_url, json={"shared": True}, headers=agent.headers), 403
    )
    # but may change and delete their own
    changed = await world.client.patch(
        mine_url, json={"body": "Hello {{ customer_name }}"}, headers=agent.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    assert (await world.client.delete(mine_url, headers=agent.headers)).status_code == 204
    world.problem(await world.client.get(mine_url, headers=agent.headers), 404)
    # and the team lead changes the shared one
    edited = await world.client.patch(shared_url, json={"name": "Thanks"}, headers=lead.headers)
    assert edited.status_code == 200
    assert edited.json()["name"] == "Thanks"


async def test_a_template_becomes_a_message_rendered_safely_for_the_ticket(world: World) -> None:
    # given an agent whose name the agents service announced, and a ticket for a customer
    # whose name looks like a placeholder
    agent = world.agent()
    assert agent.agent_id is not None
    announced = AgentData(
        id=agent.agent_id,
        email=f"{agent.agent_id}@example.com",
        name="Ada Agent",
        role=Role.AGENT,
        status=AgentStatus.ONLINE,
        max_concurrent_tickets=5,
        is_active=True,
        version=1,
    )
    await world.processed(await world.publish("agent.created", announced))
    ticket = await world.create_ticket(
        agent,
        customer={"email": f"{unique('c')}@example.com", "name": "{{ticket_id}} {0}"},
        subject="Lost parcel",
    )
    body = "Hi {{customer_name}}, about {{ ticket_id }} ({{ticket_subject}}): {0}. {{agent_name}}"
    template = (await _create(world, agent, name=unique("t"), body=body)).json()
    # when they preview it and post it as a message
    preview = await world.client.post(
        f"{BASE}/{template['id']}/preview",
        json={"ticket_id": ticket["id"]},
        headers=agent.headers,
    )
    posted = await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"template_id": template["id"]},
        headers=agent.headers,
    )
    # then both are the body filled in once (the customer's name is not expanded again)
    expected = f"Hi {{{{ticket_id}}}} {{0}}, about {ticket['id']} (Lost parcel): {{0}}. Ada Agent"
    assert preview.status_code == 200, preview.text
    assert preview.json()["content"] == expected
    assert posted.status_code == 201, posted.text
    message = posted.json()
    assert message["content"] == expected
    assert message["from_agent"] is True
    assert message["author_agent_id"] == agent.agent_id
    # and it is announced as any message
    added = await world.event("message.added", id=message["id"])
    assert added["data"]["content"] == expected


async def test_agent_name_falls_back_to_the_email(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    template = (await _create(world, agent, name="sig", body="-- {{agent_name}}")).json()
    posted = await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"template_id": template["id"]},
        headers=agent.headers,
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["content"].startswith("-- ")
    assert "@" in posted.json()["content"]


async def test_unusable_templates_and_bad_bodies_are_4xx(world: World) -> None:
    agent, other = world.agent(), world.agent()
    ticket = await world.create_ticket(agent)
    others = (await _create(world, other, name="theirs", body="x")).json()
    messages = f"/api/tickets/{ticket['id']}/messages"
    # another agent's personal template, or none at all: 422 on the message
    for template_id in (others["id"], "tmpl_missing"):
        response = await world.client.post(
            messages, json={"template_id": template_id}, headers=agent.headers
        )
        assert world.problem(response, 422)["errors"][0]["loc"] == ["body", "template_id"]
    # both or neither of content and template_id
    mine = (await _create(world, agent, name="mine", body="x")).json()
    for body in ({}, {"content": "hi", "template_id": mine["id"]}):
        world.problem(await world.client.post(messages, json=body, headers=agent.headers), 422)
    # a template as a customer message, or by the integration key
    response = await world.client.post(
        messages, json={"template_id": mine["id"], "from_agent": False}, headers=agent.headers
    )
    world.problem(response, 422)
    response = await world.client.post(
        messages, json={"template_id": mine["id"]}, headers=world.integration.headers
    )
    world.problem(response, 403)
    # unknown placeholders, on create and on update
    bad = await _create(world, agent, name="bad", body="Hi {{customer.__class__}} {{first}}")
    problem = world.problem(bad, 422)
    assert "customer.__class__" in problem["detail"]
    assert "first" in problem["detail"]
    response = await world.client.patch(
        f"{BASE}/{mine['id']}", json={"body": "{{nope}}"}, headers=agent.headers
    )
    world.problem(response, 422)
    # blank names and bodies, nulls, unknown fields
    for body in (
        {"name": " ", "body": "x"},
        {"name": "n", "body": " "},
        {"name": "n", "body": "x", "colour": "red"},
    ):
        world.problem(await world.client.post(BASE, json=body, headers=agent.headers), 422)
    response = await world.client.patch(
        f"{BASE}/{mine['id']}", json={"name": None}, headers=agent.headers
    )
    world.problem(response, 422)
    # preview for a ticket the caller may not see
    foreign = await world.create_ticket(other)
    response = await world.client.post(
        f"{BASE}/{mine['id']}/preview", json={"ticket_id": foreign["id"]}, headers=agent.headers
    )
    world.problem(response, 422)
    # and the integration key has no business here
    world.problem(await world.client.get(BASE, headers=world.integration.headers), 403)
    world.problem(await world.client.get(BASE), 401)
