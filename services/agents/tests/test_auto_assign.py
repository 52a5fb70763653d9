"""Auto-assignment (§7) in a database of each test's own, since the policy looks at every
online agent: who is chosen, waiting tickets, freed capacity, and capacity under concurrency."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from quimbi_agents.main import build_app
from quimbi_agents.models import Agent, TicketAssignment
from quimbi_agents.settings import Settings
from quimbi_common.testing import eventually, running_app

pytestmark = pytest.mark.service


@pytest.fixture
async def world(
    fresh_database: str, make: Any, http_only: Any, harness_for: Any
) -> AsyncIterator[Any]:
    """A Harness on a fresh database, with HTTP served by an app without Kafka."""
    settings: Settings = make(fresh_database)
    async with http_only(settings) as (app, client):
        yield harness_for(client, app.state.runtime.sessions, settings)


async def assigned_to(h: Any, ticket_id: str) -> str | None:
    active = await h.active(ticket_id)
    return active.agent_id if active is not None else None


async def test_the_ticket_goes_to_an_online_agent_skilled_in_its_category(world: Any) -> None:
    h = world
    _offline, _away, _busy, billing, _shipping = await h.agents_fast(
        {"status": "offline", "specializations": ["billing"]},
        {"status": "away", "specializations": ["billing"]},
        {"status": "busy", "specializations": ["billing"]},
        {"status": "online", "specializations": ["billing"]},
        {"status": "online", "specializations": ["shipping"]},
    )
    ticket = h.ticket(category="Billing")
    await h.apply(ticket)
    assert await assigned_to(h, ticket.id) == billing["id"]
    assert (await h.active(ticket.id)).reason == "auto_route"


async def test_a_ticket_without_category_goes_to_any_online_agent(world: Any) -> None:
    h = world
    (online,) = await h.agents_fast({"status": "online", "specializations": ["returns"]})
    ticket = h.ticket(category=None)
    await h.apply(ticket)
    assert await assigned_to(h, ticket.id) == online["id"]


async def test_inactive_agents_get_nothing(world: Any) -> None:
    h = world
    (agent,) = await h.agents_fast({"status": "online"})
    await h.client.patch(f"/api/agents/{agent['id']}", headers=h.admin, json={"is_active": False})
    async with h.sessions() as session, session.begin():  # even if its status still said online
        await session.execute(
            sa.update(Agent).where(Agent.id == agent["id"]).values(status="online")
        )
    ticket = h.ticket(category=None)
    await h.apply(ticket)
    assert await h.active(ticket.id) is None


async def test_fewest_open_tickets_then_satisfaction_then_longest_idle(world: Any) -> None:
    h = world
    # given three online agents: a star, a good one, and an equal good one
    star, good, twin = await h.agents_fast(
        {"status": "online", "score": 4.9},
        {"status": "online", "score": 4.0},
        {"status": "online", "score": 4.0},
    )
    # when six tickets arrive one after another
    winners = []
    for _ in range(6):
        ticket = h.ticket(category=None)
        await h.apply(ticket)
        winners.append(await assigned_to(h, ticket.id))
    # then each round goes to the star first (best score among the least loaded), then the
    # longer idle of the two equal agents, then the other — so work spreads evenly
    assert winners[0] == star["id"]
    assert set(winners[1:3]) == {good["id"], twin["id"]}
    assert winners[3] == star["id"]
    assert winners[4] == winners[1]  # the one served earlier in round one is idler now
    assert Counter(winners) == {star["id"]: 2, good["id"]: 2, twin["id"]: 2}


async def test_agents_at_capacity_are_passed_over_and_then_the_ticket_waits(world: Any) -> None:
    h = world
    small, large = await h.agents_fast(
        {"status": "online", "max_concurrent_tickets": 1, "score": 5.0},
        {"status": "online", "max_concurrent_tickets": 2},
    )
    tickets = [h.ticket(category=None) for _ in range(4)]
    for ticket in tickets:
        await h.apply(ticket)
    owners = [await assigned_to(h, t.id) for t in tickets]
    assert Counter(owners) == {small["id"]: 1, large["id"]: 2, None: 1}


async def test_auto_assign_off_leaves_new_tickets_unassigned(world: Any) -> None:
    h = world
    await h.agents_fast({"status": "online"})
    ticket = h.ticket(category=None)
    await h.apply(ticket, h.settings.model_copy(update={"auto_assign": False}))
    assert await h.active(ticket.id) is None


async def test_waiting_tickets_are_picked_up_when_an_agent_comes_online(world: Any) -> None:
    h = world
    # given waiting tickets of mixed priority and age, and nobody online
    now = datetime.now(UTC)
    old_low = h.ticket(category=None, priority="low", created_at=now - timedelta(hours=3))
    new_urgent = h.ticket(category=None, priority="urgent", created_at=now)
    old_urgent = h.ticket(category=None, priority="urgent", created_at=now - timedelta(hours=1))
    normal = h.ticket(category=None, priority="normal", created_at=now - timedelta(hours=2))
    for ticket in (old_low, new_urgent, old_urgent, normal):
        await h.apply(ticket)
    assert all([await h.active(t.id) is None for t in (old_low, new_urgent, old_urgent, normal)])
    # when an agent with room for three comes online
    agent = await h.agent(max_concurrent_tickets=3)
    response = await h.client.patch(
        "/api/agents/me/status", headers=agent["headers"], json={"status": "online"}
    )
    assert response.status_code == 200
    # then it gets the urgent ones, oldest first, then the normal one; the low one waits
    async with h.sessions() as session:
        rows = await session.scalars(
            sa.select(TicketAssignment)
            .where(TicketAssignment.agent_id == agent["id"])
            .order_by(TicketAssignment.assigned_at)
        )
        assert [r.ticket_id for r in rows] == [old_urgent.id, new_urgent.id, normal.id]
    assert await h.active(old_low.id) is None


async def test_a_resolved_ticket_frees_room_for_a_waiting_one(world: Any) -> None:
    h = world
    (agent,) = await h.agents_fast({"status": "online", "max_concurrent_tickets": 1})
    first, second = h.ticket(category=None), h.ticket(category=None)
    await h.apply(first)
    await h.apply(second)
    assert await assigned_to(h, second.id) is None
    await h.apply(h.updated(first, status="resolved", assigned_agent_id=agent["id"]))
    assert await assigned_to(h, second.id) == agent["id"]


async def test_concurrent_arrivals_never_exceed_capacity(world: Any) -> None:
    h = world
    # given two online agents with room for five tickets each
    first, second = await h.agents_fast(
        {"status": "online", "max_concurrent_tickets": 5},
        {"status": "online", "max_concurrent_tickets": 5},
    )
    # when thirty tickets arrive at the same moment, each in its own transaction
    tickets = [h.ticket(category=None) for _ in range(30)]
    await asyncio.gather(*(h.apply(ticket) for ticket in tickets))
    # then exactly ten are assigned, five each, and twenty wait
    assert await h.open_count(first["id"]) == 5
    assert await h.open_count(second["id"]) == 5
    owners = Counter([await assigned_to(h, t.id) for t in tickets])
    assert owners == {first["id"]: 5, second["id"]: 5, None: 20}


async def test_two_replicas_consuming_together_respect_capacity(
    fresh_database: str, make: Any, harness_for: Any, publish: Any
) -> None:
    # given two replicas of the service sharing one database and one consumer group
    settings: Settings = make(fresh_database)
    apps = [build_app(settings) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(running_app(app)) for app in apps]

        async def both_consuming() -> None:
            assert all(app.state.runtime.kafka_connected for app in apps)

        await eventually(both_consuming, timeout=30)
        h = harness_for(clients[0], apps[0].state.runtime.sessions, settings)
        first, second = await h.agents_fast(
            {"status": "online", "max_concurrent_tickets": 4},
            {"status": "online", "max_concurrent_tickets": 4},
        )
        # when twenty tickets are published at once
        tickets = [h.ticket(category=None) for _ in range(20)]
        await asyncio.gather(*(publish("ticket.created", t, settings) for t in tickets))

        # then all are projected, eight are assigned, four each
        async def all_seen() -> None:
            async with h.sessions() as session:
                count = await session.scalar(sa.text("SELECT count(*) FROM ticket_projection"))
                assert count == 20

        await eventually(all_seen, timeout=30)
        assert await h.open_count(first["id"]) == 4
        assert await h.open_count(second["id"]) == 4
