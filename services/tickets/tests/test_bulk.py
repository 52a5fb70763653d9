"""Bulk changes: per-ticket results, the same events as single changes, visibility, limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import unique

if TYPE_CHECKING:
    from conftest import Actor, World

pytestmark = pytest.mark.service


async def _bulk(world: World, actor: Actor, body: dict[str, Any]) -> Any:
    return await world.client.post("/api/tickets/bulk", json=body, headers=actor.headers)


async def test_bulk_status_change_reports_each_ticket_and_publishes_each_change(
    world: World,
) -> None:
    # given a senior agent, two open tickets, a closed one and an id that does not exist
    senior = world.agent(Role.SENIOR_AGENT)
    first, second, closed = [await world.create_ticket(senior) for _ in range(3)]
    patched = await world.client.patch(
        f"/api/tickets/{closed['id']}", json={"status": "closed"}, headers=senior.headers
    )
    assert patched.status_code == 200
    missing = "ticket_does_not_exist"
    # when they resolve all four (one id twice)
    ids = [first["id"], missing, closed["id"], second["id"], first["id"]]
    response = await _bulk(world, senior, {"ticket_ids": ids, "changes": {"status": "resolved"}})
    # then each ticket has its own result, in request order, repeats dropped
    assert response.status_code == 200, response.text
    body = response.json()
    outcomes = [(r["id"], r["outcome"], r["status"]) for r in body["results"]]
    assert outcomes == [
        (first["id"], "updated", 200),
        (missing, "not_found", 404),
        (closed["id"], "conflict", 409),
        (second["id"], "updated", 200),
    ]
    assert (body["requested"], body["updated"], body["unchanged"], body["failed"]) == (4, 2, 0, 2)
    assert body["results"][2]["allowed"] == []
    # and the two changes are stored, and published as a single PATCH would publish them
    for ticket in (first, second):
        detail = await world.client.get(f"/api/tickets/{ticket['id']}", headers=senior.headers)
        assert detail.json()["status"] == "resolved"
        assert detail.json()["version"] == 2
        event = await world.event("ticket.updated", id=ticket["id"], version=2)
        assert event["data"]["changes"] == {"status": {"old": "open", "new": "resolved"}}
        [result] = [r for r in body["results"] if r["id"] == ticket["id"]]
        assert result["version"] == 2
        assert result["consistency_token"] == f"ticket.updated/{event['id']}"
    # and the response's token names both events
    token = response.headers["x-consistency-token"].split(",")
    assert sorted(token) == sorted(
        r["consistency_token"] for r in body["results"] if r["consistency_token"]
    )
    # and the closed ticket is untouched
    untouched = await world.client.get(f"/api/tickets/{closed['id']}", headers=senior.headers)
    assert untouched.json()["status"] == "closed"


async def test_an_agent_changes_only_their_own_tickets_in_bulk(world: World) -> None:
    # given an agent with a ticket, and another agent's ticket
    agent, other = world.agent(), world.agent()
    own = await world.create_ticket(agent)
    foreign = await world.create_ticket(other)
    # when the agent raises the priority of both
    response = await _bulk(
        world, agent, {"ticket_ids": [own["id"], foreign["id"]], "changes": {"priority": "high"}}
    )
    # then theirs changes; the other is reported as not found and left as it was
    assert response.status_code == 200, response.text
    assert [r["outcome"] for r in response.json()["results"]] == ["updated", "not_found"]
    seen = await world.client.get(f"/api/tickets/{foreign['id']}", headers=other.headers)
    assert seen.json()["priority"] == "normal"
    changed = await world.client.get(f"/api/tickets/{own['id']}", headers=agent.headers)
    assert changed.json()["priority"] == "high"
    # a priority change re-derives the difficulty, as a PATCH does
    event = await world.event("ticket.updated", id=own["id"], version=2)
    assert event["data"]["changes"]["priority"] == {"old": "normal", "new": "high"}


async def test_bulk_by_filter_changes_the_matching_visible_tickets(world: World) -> None:
    # given a customer with three tickets, one of them already in category "billing"
    senior = world.agent(Role.SENIOR_AGENT)
    email = f"{unique('bulk')}@example.com"
    tickets = [await world.create_ticket(senior, customer={"email": email}) for _ in range(2)]
    tickets.append(await world.create_ticket(senior, customer={"email": email}, category="billing"))
    customer_id = tickets[0]["customer_id"]
    # when every ticket of that customer gets category "Billing"
    response = await _bulk(
        world,
        senior,
        {"filter": {"customer_id": customer_id}, "changes": {"category": " Billing "}},
    )
    # then two change and one already was so
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(r["id"] for r in body["results"]) == sorted(t["id"] for t in tickets)
    assert (body["updated"], body["unchanged"], body["failed"]) == (2, 1, 0)
    # and a filter that matches nothing changes nothing
    empty = await _bulk(
        world,
        senior,
        {"filter": {"customer_id": customer_id, "status": "closed"}, "changes": {"category": None}},
    )
    assert empty.status_code == 200
    assert empty.json()["results"] == []
    assert "x-consistency-token" not in empty.headers


async def test_a_filter_matching_more_than_500_tickets_is_refused(world: World) -> None:
    # given a customer with 501 tickets (written straight to the database: only the count matters)
    customer_id = unique("cust_many")
    await world.db.execute(
        "INSERT INTO customers (id, email, created_at, updated_at) VALUES ($1, $2, now(), now())",
        customer_id,
        f"{customer_id}@example.com",
    )
    await world.db.execute(
        "INSERT INTO tickets (id, customer_id, subject, status, priority, channel, created_at,"
        " updated_at, version) SELECT $1 || '_' || i, $1, 'Many', 'open', 'normal', 'email',"
        " now(), now(), 1 FROM generate_series(1, 501) AS i",
        customer_id,
    )
    senior = world.agent(Role.SENIOR_AGENT)
    # when a bulk change selects them all
    response = await _bulk(
        world, senior, {"filter": {"customer_id": customer_id}, "changes": {"priority": "low"}}
    )
    # then it is refused as a whole, and nothing changed
    problem = world.problem(response, 422)
    assert problem["errors"][0]["loc"] == ["body", "filter"]
    low = await world.db.fetchval(
        "SELECT count(*) FROM tickets WHERE customer_id = $1 AND priority = 'low'", customer_id
    )
    assert low == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ticket_ids": ["t1"], "changes": {"assigned_agent_id": "a1"}}, "changes"),
        ({"ticket_ids": ["t1"], "changes": {}}, "changes"),
        ({"ticket_ids": ["t1"], "changes": {"status": None}}, "status"),
        ({"ticket_ids": ["t1"], "changes": {"status": "shelved"}}, "status"),
        ({"changes": {"status": "open"}}, None),
        ({"ticket_ids": ["t1"], "filter": {}, "changes": {"status": "open"}}, None),
        ({"ticket_ids": [], "changes": {"status": "open"}}, "ticket_ids"),
        ({"ticket_ids": [f"t{i}" for i in range(501)], "changes": {"status": "open"}}, None),
        ({"filter": {"colour": "red"}, "changes": {"status": "open"}}, "colour"),
    ],
)
async def test_bad_bulk_bodies_are_422(world: World, body: dict[str, Any], field: str) -> None:
    response = await _bulk(world, world.agent(Role.SENIOR_AGENT), body)
    problem = world.problem(response, 422)
    if field is not None:
        assert any(field in e["loc"] for e in problem["errors"]), problem


async def test_bulk_needs_an_agent(world: World) -> None:
    body = {"ticket_ids": ["t1"], "changes": {"status": "open"}}
    world.problem(await world.client.post("/api/tickets/bulk", json=body), 401)
    world.problem(await _bulk(world, world.integration, body), 403)
