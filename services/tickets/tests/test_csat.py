"""CSAT: the integration key rates a resolved or closed ticket once; agents who see it read it;
`ticket.rated` is emitted once, naming the assignee."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from quimbi_common.enums import Role

if TYPE_CHECKING:
    from conftest import Actor, World

pytestmark = pytest.mark.service


async def _ticket_in(world: World, status: str) -> tuple[Actor, dict[str, Any]]:
    """A ticket of a new agent (theirs from creation), moved to `status`."""
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    if status != "open":
        response = await world.client.patch(
            f"/api/tickets/{ticket['id']}", json={"status": status}, headers=agent.headers
        )
        assert response.status_code == 200, response.text
    return agent, ticket


async def _rate(world: World, actor: Actor, ticket_id: str, **body: Any) -> Any:
    return await world.client.post(
        f"/api/tickets/{ticket_id}/csat", json=body, headers=actor.headers
    )


async def _rated_events(world: World, ticket_id: str) -> int:
    """ticket.rated events the service stored for the ticket (its outbox: what it will publish)."""
    found: int = await world.db.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1 AND key = $2", "ticket.rated", ticket_id
    )
    return found


@pytest.mark.parametrize("status", ["resolved", "closed"])
async def test_the_key_rates_a_resolved_or_closed_ticket_and_it_is_announced_once(
    world: World, status: str
) -> None:
    agent, ticket = await _ticket_in(world, status)
    response = await _rate(world, world.integration, ticket["id"], rating=4, comment=" Quick! ")
    assert response.status_code == 201, response.text
    rating = response.json()
    assert rating["ticket_id"] == ticket["id"]
    assert rating["customer_id"] == ticket["customer"]["id"]
    assert (rating["rating"], rating["comment"], rating["agent_id"]) == (
        4,
        "Quick!",
        agent.agent_id,
    )
    assert response.headers["x-consistency-token"].startswith("ticket.rated/")
    event = await world.event("ticket.rated", ticket_id=ticket["id"])
    assert event["data"]["agent_id"] == agent.agent_id
    assert event["data"]["rating"] == 4
    assert event["data"]["comment"] == "Quick!"
    assert event["data"]["customer_id"] == ticket["customer"]["id"]
    assert event["subject"] == ticket["id"]
    # the assignee reads it back
    read = await world.client.get(f"/api/tickets/{ticket['id']}/csat", headers=agent.headers)
    assert read.status_code == 200, read.text
    assert read.json() == rating
    assert await _rated_events(world, ticket["id"]) == 1


@pytest.mark.parametrize("status", ["open", "in_progress", "pending"])
async def test_a_ticket_not_resolved_is_not_rated(world: World, status: str) -> None:
    agent, ticket = await _ticket_in(world, status)
    problem = world.problem(await _rate(world, world.integration, ticket["id"], rating=5), 409)
    assert problem["ticket_status"] == status
    assert problem["allowed_statuses"] == ["resolved", "closed"]
    assert "resolved or closed" in problem["detail"]
    missing = await world.client.get(f"/api/tickets/{ticket['id']}/csat", headers=agent.headers)
    world.problem(missing, 404)
    assert await _rated_events(world, ticket["id"]) == 0


@pytest.mark.parametrize("role", [Role.AGENT, Role.SENIOR_AGENT, Role.ADMIN])
async def test_an_agent_token_cannot_rate(world: World, role: Role) -> None:
    agent, ticket = await _ticket_in(world, "resolved")
    actor = agent if role is Role.AGENT else world.agent(role)
    problem = world.problem(await _rate(world, actor, ticket["id"], rating=5), 403)
    assert "integration key" in problem["detail"]
    world.problem(
        await world.client.get(f"/api/tickets/{ticket['id']}/csat", headers=agent.headers), 404
    )


async def test_a_rating_is_recorded_once_and_an_identical_retry_is_answered_again(
    world: World,
) -> None:
    _, ticket = await _ticket_in(world, "resolved")
    first = await _rate(world, world.integration, ticket["id"], rating=2, comment="slow")
    assert first.status_code == 201, first.text
    retry = await _rate(world, world.integration, ticket["id"], rating=2, comment="slow")
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert "x-consistency-token" not in retry.headers  # nothing new was written
    problem = world.problem(await _rate(world, world.integration, ticket["id"], rating=5), 409)
    assert problem["rating"] == 2
    assert "already rated" in problem["detail"]
    # reopened and resolved again, it is still rated once
    agent_headers = world.keys.headers(Role.SENIOR_AGENT, "csat-senior")
    for status in ("open", "resolved"):
        moved = await world.client.patch(
            f"/api/tickets/{ticket['id']}", json={"status": status}, headers=agent_headers
        )
        assert moved.status_code == 200, moved.text
    world.problem(await _rate(world, world.integration, ticket["id"], rating=5), 409)
    assert await _rated_events(world, ticket["id"]) == 1


async def test_concurrent_ratings_record_one(world: World) -> None:
    _, ticket = await _ticket_in(world, "closed")
    answers = await asyncio.gather(
        *(_rate(world, world.integration, ticket["id"], rating=r) for r in range(1, 6))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 409, 409, 409, 409], [a.text for a in answers]
    stored = await world.db.fetch(
        "SELECT rating FROM ticket_ratings WHERE ticket_id = $1", ticket["id"]
    )
    [winner] = [a.json() for a in answers if a.status_code == 201]
    assert [r["rating"] for r in stored] == [winner["rating"]]
    assert await _rated_events(world, ticket["id"]) == 1


async def test_who_reads_a_rating(world: World) -> None:
    agent, ticket = await _ticket_in(world, "resolved")
    assert (await _rate(world, world.integration, ticket["id"], rating=3)).status_code == 201
    path = f"/api/tickets/{ticket['id']}/csat"
    senior = await world.client.get(path, headers=world.agent(Role.SENIOR_AGENT).headers)
    assert senior.status_code == 200, senior.text
    assert senior.json()["comment"] is None
    world.problem(await world.client.get(path, headers=world.agent().headers), 404)  # not theirs
    world.problem(await world.client.get(path, headers=world.integration.headers), 403)
    world.problem(await world.client.get(path), 401)
    unknown = "/api/tickets/ticket_unknown/csat"
    world.problem(await world.client.get(unknown, headers=agent.headers), 404)
    world.problem(await _rate(world, world.integration, "ticket_unknown", rating=3), 404)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"rating": 0},
        {"rating": 6},
        {"rating": "5"},
        {"rating": True},
        {"rating": 4.5},
        {"rating": None},
        {"rating": 5, "comment": "x" * 2001},
        {"rating": 5, "comment": "nul \u0000 here"},
        {"rating": 5, "stars": 5},
    ],
)
async def test_bad_ratings_are_a_422(world: World, body: dict[str, Any]) -> None:
    _, ticket = await _ticket_in(world, "resolved")
    world.problem(await _rate(world, world.integration, ticket["id"], **body), 422)
    assert await _rated_events(world, ticket["id"]) == 0


@pytest.mark.parametrize("comment", ["   ", None])
async def test_a_blank_or_null_comment_is_no_comment_and_the_longest_is_kept(
    world: World, comment: str | None
) -> None:
    _, blank = await _ticket_in(world, "resolved")
    response = await _rate(world, world.integration, blank["id"], rating=5, comment=comment)
    assert response.status_code == 201, response.text
    assert response.json()["comment"] is None
    _, longest = await _ticket_in(world, "resolved")
    comment = "é" * 2000
    response = await _rate(world, world.integration, longest["id"], rating=5, comment=comment)
    assert response.status_code == 201, response.text
    assert response.json()["comment"] == comment


async def test_deleting_the_ticket_deletes_its_rating(world: World) -> None:
    _, ticket = await _ticket_in(world, "resolved")
    assert (await _rate(world, world.integration, ticket["id"], rating=3)).status_code == 201
    admin = world.agent(Role.ADMIN)
    deleted = await world.client.delete(f"/api/tickets/{ticket['id']}", headers=admin.headers)
    assert deleted.status_code == 204, deleted.text
    left = await world.db.fetchval(
        "SELECT count(*) FROM ticket_ratings WHERE ticket_id = $1", ticket["id"]
    )
    assert left == 0
