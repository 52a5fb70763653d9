"""Messages: posting, what they do to the ticket, and who may edit or delete them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from quimbi_common.enums import Role

if TYPE_CHECKING:
    from conftest import Actor, World

pytestmark = pytest.mark.service


async def _post(world: World, actor: Actor, ticket_id: str, **body: object) -> dict[str, object]:
    response = await world.client.post(
        f"/api/tickets/{ticket_id}/messages", json=body, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    message: dict[str, object] = response.json()
    return message


async def _set_status(world: World, actor: Actor, ticket_id: str, status: str) -> None:
    response = await world.client.patch(
        f"/api/tickets/{ticket_id}", json={"status": status}, headers=actor.headers
    )
    assert response.status_code == 200, response.text


async def test_agent_reply_is_authored_by_the_agent(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    reply = await _post(world, agent, ticket["id"], content="Happy to help, checking now.")
    assert reply["from_agent"] is True
    assert reply["author_agent_id"] == agent.agent_id
    assert reply["from_email"] == f"{agent.agent_id}@example.com"
    assert reply["ticket_status"] == "open"
    assert reply["version"] == 1
    event = await world.event("message.added", id=reply["id"])
    assert event["data"]["author_agent_id"] == agent.agent_id


@pytest.mark.parametrize("waiting", ["pending", "resolved"])
async def test_customer_message_reopens_a_waiting_ticket(world: World, waiting: str) -> None:
    # given a ticket waiting on the customer (or resolved)
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    await _set_status(world, agent, ticket["id"], waiting)
    # when the customer writes (through the integration key)
    message = await _post(world, world.integration, ticket["id"], content="Still broken!")
    # then the ticket is open again, and both events say so
    assert message["ticket_status"] == "open"
    detail = await world.client.get(f"/api/tickets/{ticket['id']}", headers=agent.headers)
    assert detail.json()["status"] == "open"
    added = await world.event("message.added", id=message["id"])
    assert added["data"]["ticket_status"] == "open"
    updated = await world.event("ticket.updated", id=ticket["id"], status="open")
    assert updated["data"]["changes"]["status"] == {"old": waiting, "new": "open"}


async def test_agent_message_leaves_a_pending_ticket_pending(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    await _set_status(world, agent, ticket["id"], "pending")
    reply = await _post(world, agent, ticket["id"], content="Any update on your side?")
    assert reply["ticket_status"] == "pending"


@pytest.mark.parametrize("from_agent", [True, False])
async def test_closed_ticket_refuses_messages(world: World, from_agent: bool) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    await _set_status(world, agent, ticket["id"], "closed")
    response = await world.client.post(
        f"/api/tickets/{ticket['id']}/messages",
        json={"content": "hello again", "from_agent": from_agent},
        headers=agent.headers,
    )
    world.problem(response, 409)


async def test_customer_sentiment_is_the_mean_of_the_last_three_customer_messages(
    world: World,
) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    scores = []
    for text in [
        "I love this, wonderful!",
        "This is terrible and awful.",
        "The parcel is in the box.",
        "I am furious, worst service ever!",
    ]:
        message = await _post(world, world.integration, ticket["id"], content=text)
        scores.append(message["sentiment_score"])
    await _post(world, agent, ticket["id"], content="I am so happy to help, great!")
    detail = (await world.client.get(f"/api/tickets/{ticket['id']}", headers=agent.headers)).json()
    assert detail["customer_sentiment"] == pytest.approx(round(sum(scores[-3:]) / 3, 2))
    messages = await world.client.get(
        f"/api/tickets/{ticket['id']}/messages", headers=agent.headers
    )
    assert [m["content"][:4] for m in messages.json()["messages"]] == [
        "I lo",
        "This",
        "The ",
        "I am",
        "I am",
    ]


async def test_new_customer_sentiment_is_published_as_a_ticket_change(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    await _post(world, world.integration, ticket["id"], content="This is awful, I am furious.")
    event = await world.event("ticket.updated", id=ticket["id"], version=2)
    assert event["data"]["changes"]["customer_sentiment"]["old"] == 0.5
    assert event["data"]["customer_sentiment"] < 0.5


async def test_agent_edits_and_deletes_their_own_message(world: World) -> None:
    # given an agent's reply
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    reply = await _post(world, agent, ticket["id"], content="We will refund you.")
    url = f"/api/tickets/{ticket['id']}/messages/{reply['id']}"
    # when the agent edits it
    edited = await world.client.patch(
        url, json={"content": "Thanks, great news!"}, headers=agent.headers
    )
    # then the content, analysis and version change and message.updated says so
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["content"], body["version"], body["detected_intent"]) == (
        "Thanks, great news!",
        2,
        "praise",
    )
    event = await world.event("message.updated", id=reply["id"])
    assert event["data"]["changes"]["content"] == {
        "old": "We will refund you.",
        "new": "Thanks, great news!",
    }
    # when the agent deletes it
    deleted = await world.client.delete(url, headers=agent.headers)
    # then it is gone and message.deleted carries the next version
    assert deleted.status_code == 204
    messages = await world.client.get(
        f"/api/tickets/{ticket['id']}/messages", headers=agent.headers
    )
    assert messages.json()["messages"] == []
    gone = await world.event("message.deleted", id=reply["id"])
    assert gone["data"]["version"] == 3
    world.problem(await world.client.delete(url, headers=agent.headers), 404)


async def test_only_an_admin_changes_someone_elses_or_a_customers_message(world: World) -> None:
    # given a customer message and an agent's reply on a ticket
    owner = world.agent()
    ticket = await world.create_ticket(owner, message={"content": "Hello?", "from_agent": False})
    customer_message = ticket["messages"][0]
    reply = await _post(world, owner, ticket["id"], content="Hi there")
    base = f"/api/tickets/{ticket['id']}/messages"
    senior = world.agent(Role.MANAGER)
    # then neither the owner (customer message) nor a manager (someone else's reply) may edit
    for actor, message in [(owner, customer_message), (senior, reply), (senior, customer_message)]:
        response = await world.client.patch(
            f"{base}/{message['id']}", json={"content": "changed"}, headers=actor.headers
        )
        world.problem(response, 403)
        world.problem(
            await world.client.delete(f"{base}/{message['id']}", headers=actor.headers), 403
        )
    # while an admin may
    admin = world.agent(Role.ADMIN)
    response = await world.client.patch(
        f"{base}/{customer_message['id']}", json={"content": "Hello."}, headers=admin.headers
    )
    assert response.status_code == 200
    assert (
        await world.client.delete(f"{base}/{reply['id']}", headers=admin.headers)
    ).status_code == 204


async def test_message_of_another_ticket_is_a_404(world: World) -> None:
    agent = world.agent()
    one = await world.create_ticket(agent, message={"content": "first", "from_agent": True})
    two = await world.create_ticket(agent)
    response = await world.client.patch(
        f"/api/tickets/{two['id']}/messages/{one['messages'][0]['id']}",
        json={"content": "moved"},
        headers=agent.headers,
    )
    world.problem(response, 404)


@pytest.mark.parametrize(
    "body",
    [{"content": ""}, {"content": "  \n "}, {"content": "x" * (64 * 1024 + 1)}, {"text": "hi"}],
)
async def test_bad_message_is_a_422(world: World, body: dict[str, object]) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    response = await world.client.post(
        f"/api/tickets/{ticket['id']}/messages", json=body, headers=agent.headers
    )
    world.problem(response, 422)
