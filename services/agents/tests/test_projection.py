"""What ticket and message events do: the projection, following the assignee, completing
assignments, metrics; and the same through Kafka end to end."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from quimbi_agents.models import Agent, TicketAssignment, TicketProjection
from quimbi_agents.projections import (
    apply_message_added,
    apply_messages_added,
    apply_ticket_deleted,
    apply_tickets_created,
)
from quimbi_common.enums import Role
from quimbi_common.events import TicketDeletedData
from quimbi_common.testing import EventProbe, eventually, message_data

pytestmark = pytest.mark.service


async def history(h: Any, ticket_id: str) -> list[TicketAssignment]:
    async with h.sessions() as session:
        rows = await session.scalars(
            sa.select(TicketAssignment)
            .where(TicketAssignment.ticket_id == ticket_id)
            .order_by(TicketAssignment.assigned_at)
        )
        return list(rows.all())


async def test_a_ticket_created_with_an_assignee_records_that_assignment(
    h: Any, probe: EventProbe
) -> None:
    # given an agent, when a ticket it created arrives naming it as assignee
    (agent,) = await h.agents_fast({})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket)
    # then it holds an active manual assignment, and ticket.assigned is published
    active = await h.active(ticket.id)
    assert active is not None
    assert (active.agent_id, active.reason, active.status) == (agent["id"], "manual", "pending")
    events = await probe.wait_for("ticket.assigned", lambda e: e["data"]["ticket_id"] == ticket.id)
    assert events[0]["data"]["agent_id"] == agent["id"]


async def test_a_batch_of_new_tickets_is_projected_as_one_event_at_a_time_would(
    h: Any, probe: EventProbe
) -> None:
    # given an agent, and a ticket whose ticket.updated (v2, now pending) came first
    (agent,) = await h.agents_fast({})
    overtaken = h.ticket()
    await h.apply(h.updated(overtaken, status="pending"))
    unassigned, assigned = h.ticket(), h.ticket(assigned_agent_id=agent["id"])
    # when a batch brings the three tickets' ticket.created (one of them twice)
    async with h.units.begin() as unit:
        await apply_tickets_created(unit, h.settings, [unassigned, overtaken, assigned, unassigned])
    # then each is projected once, the later version kept, and the assignee recorded
    async with h.sessions() as session:
        rows = await session.scalars(
            sa.select(TicketProjection).where(
                TicketProjection.id.in_([unassigned.id, overtaken.id, assigned.id])
            )
        )
        by_id = {row.id: (row.status, row.version, row.assigned_agent_id) for row in rows}
    assert by_id == {
        unassigned.id: ("open", 1, None),
        overtaken.id: ("pending", 2, None),
        assigned.id: ("open", 1, agent["id"]),
    }
    assert await h.active(unassigned.id) is None
    active = await h.active(assigned.id)
    assert active is not None
    assert active.agent_id == agent["id"]
    await probe.wait_for("ticket.assigned", lambda e: e["data"]["ticket_id"] == assigned.id)


async def test_an_unknown_assignee_is_not_an_error(h: Any) -> None:
    ticket = h.ticket(assigned_agent_id=f"ghost-{uuid.uuid4()}")
    await h.apply(ticket)
    assert await h.active(ticket.id) is None


async def test_our_own_assignment_coming_back_changes_nothing(h: Any) -> None:
    (agent,) = await h.agents_fast({})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket)
    await h.apply(h.updated(ticket, priority="high"))
    assert len(await history(h, ticket.id)) == 1


async def test_late_echoes_of_our_transfers_do_not_undo_them(h: Any) -> None:
    # given a ticket moved twice in quick succession, A → B → C
    a, b, c, senior = await h.agents_fast({}, {}, {}, {"role": Role.SENIOR_AGENT})
    ticket = h.ticket(assigned_agent_id=a["id"])
    await h.apply(ticket)
    for target in (b, c):
        response = await h.client.post(
            f"/api/tickets/{ticket.id}/assign",
            headers=senior["headers"],
            json={"agent_id": target["id"]},
        )
        assert response.status_code == 201
    # when the tickets service's echoes arrive afterwards (assignee B, then C)
    echo_b = h.updated(ticket, assigned_agent_id=b["id"])
    await h.apply(echo_b)
    await h.apply(h.updated(echo_b, assigned_agent_id=c["id"]))
    # then C still holds it, and nothing new was assigned
    assert (await h.active(ticket.id)).agent_id == c["id"]
    assert [x.agent_id for x in await history(h, ticket.id)] == [a["id"], b["id"], c["id"]]


async def test_the_projected_assignee_shows_who_holds_a_ticket_we_never_assigned(h: Any) -> None:
    # given a ticket whose assignee we could not record (an agent unknown here)
    (senior,) = await h.agents_fast({"role": Role.SENIOR_AGENT})
    ghost = f"ghost-{uuid.uuid4()}"
    ticket = h.ticket(assigned_agent_id=ghost)
    await h.apply(ticket)
    # then the history is empty but the ticket is still visible to seniors
    response = await h.client.get(
        f"/api/tickets/{ticket.id}/assignments", headers=senior["headers"]
    )
    assert response.json() == {"ticket_id": ticket.id, "assignments": []}


async def test_resolving_completes_the_assignment_and_counts_for_the_agent(
    h: Any, probe: EventProbe
) -> None:
    # given an agent holding a ticket
    (agent,) = await h.agents_fast({})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket)
    # when the ticket is resolved, then closed
    resolved = h.updated(ticket, status="resolved")
    await h.apply(resolved)
    await h.apply(h.updated(resolved, status="closed"))
    # then the assignment is completed with its duration, published, and counted once
    (assignment,) = await history(h, ticket.id)
    assert (assignment.status, assignment.is_active) == ("completed", False)
    assert assignment.time_to_complete_seconds is not None
    await probe.wait_for(
        "assignment.updated",
        lambda e: e["data"]["id"] == assignment.id and e["data"]["status"] == "completed",
    )
    me = await h.client.get("/api/agents/me", headers=agent["headers"])
    assert me.json()["tickets_resolved_today"] == 1


async def test_a_reopened_ticket_goes_back_to_its_last_holder(h: Any) -> None:
    (agent,) = await h.agents_fast({})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket)
    resolved = h.updated(ticket, status="resolved")
    await h.apply(resolved)
    await h.apply(h.updated(resolved, status="open"))
    active = await h.active(ticket.id)
    assert active is not None
    assert active.agent_id == agent["id"]
    assert await h.open_count(agent["id"]) == 1


async def test_resolved_today_is_zero_on_a_new_day(h: Any) -> None:
    # given an agent whose count was made yesterday
    (agent,) = await h.agents_fast({})
    async with h.sessions() as session, session.begin():
        await session.execute(
            sa.update(Agent)
            .where(Agent.id == agent["id"])
            .values(tickets_resolved_today=9, resolved_count_date=date.today() - timedelta(days=2))
        )
    me = await h.client.get("/api/agents/me", headers=agent["headers"])
    assert me.json()["tickets_resolved_today"] == 0
    # when it resolves a ticket today, the count starts again from one
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket)
    await h.apply(h.updated(ticket, status="resolved"))
    me = await h.client.get("/api/agents/me", headers=agent["headers"])
    assert me.json()["tickets_resolved_today"] == 1


async def test_the_resolution_day_is_the_support_teams_local_day(h: Any) -> None:
    (agent,) = await h.agents_fast({})
    los_angeles = h.settings.model_copy(update={"support_timezone": "America/Los_Angeles"})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket, los_angeles)
    evening_in_la = datetime(2025, 12, 2, 5, 0, tzinfo=UTC)
    await h.apply(h.updated(ticket, status="resolved", updated_at=evening_in_la), los_angeles)
    assert (await h.row(agent["id"])).resolved_count_date == date(2025, 12, 1)


async def test_older_versions_are_ignored(h: Any) -> None:
    ticket = h.ticket()
    off = h.settings.model_copy(update={"auto_assign": False})
    v2 = h.updated(ticket, priority="high")
    v3 = h.updated(v2, status="pending")
    await h.apply(ticket, off)
    await h.apply(v3, off)
    await h.apply(v2, off)  # late
    async with h.sessions() as session:
        row = await session.get(TicketProjection, ticket.id)
        assert row is not None
        assert (row.version, row.status, row.priority) == (3, "pending", "high")


async def test_an_update_seen_before_its_creation_stands(h: Any) -> None:
    (agent,) = await h.agents_fast({})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(h.updated(ticket, priority="urgent"))
    await h.apply(ticket)
    assert len(await history(h, ticket.id)) == 1
    async with h.sessions() as session:
        row = await session.get(TicketProjection, ticket.id)
        assert row is not None
        assert row.priority == "urgent"


async def test_a_deleted_ticket_ends_its_assignment_and_disappears(h: Any) -> None:
    # given a ticket held by an agent
    (agent, senior) = await h.agents_fast({}, {"role": Role.SENIOR_AGENT})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket)
    # when it is deleted (and a late update arrives afterwards)
    deleted = TicketDeletedData(id=ticket.id, version=2, deleted_at=datetime.now(UTC))
    async with h.units.begin() as unit:
        await apply_ticket_deleted(unit, h.settings, deleted)
    await h.apply(h.updated(ticket, priority="high"))
    # then the agent's workload drops and the ticket is gone from the API
    assert await h.active(ticket.id) is None
    assert await h.open_count(agent["id"]) == 0
    history_response = await h.client.get(
        f"/api/tickets/{ticket.id}/assignments", headers=senior["headers"]
    )
    assert history_response.status_code == 404


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "one_batch"])
async def test_response_time_runs_from_the_customer_to_the_next_agent_message(
    h: Any, batched: bool
) -> None:
    # given an agent and a ticket
    (agent,) = await h.agents_fast({})
    ticket_id = f"ticket-{uuid.uuid4()}"
    t0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
    thread = [
        message_data(ticket_id, t0, from_agent=False),
        message_data(ticket_id, t0 + timedelta(seconds=30), from_agent=False),  # still waiting
        message_data(ticket_id, t0 + timedelta(seconds=60), from_agent=True, author=agent["id"]),
        message_data(ticket_id, t0 + timedelta(seconds=90), from_agent=True, author=agent["id"]),
        message_data(ticket_id, t0 + timedelta(seconds=200), from_agent=False),
        message_data(ticket_id, t0 + timedelta(seconds=320), from_agent=True, author=agent["id"]),
    ]
    # when the messages arrive, each alone or all in one consumer batch
    if batched:
        async with h.units.begin() as unit:
            await apply_messages_added(unit, thread)
    for item in [] if batched else thread:
        async with h.units.begin() as unit:
            await apply_message_added(unit, item)
    # then the mean of 60 s and 120 s is kept
    me = await h.client.get("/api/agents/me", headers=agent["headers"])
    assert me.json()["avg_response_time_seconds"] == 90


async def test_an_unsigned_agent_reply_counts_for_the_assignee(h: Any) -> None:
    (agent,) = await h.agents_fast({})
    ticket = h.ticket(assigned_agent_id=agent["id"])
    await h.apply(ticket)
    t0 = datetime.now(UTC)
    for item in (
        message_data(ticket.id, t0, from_agent=False),
        message_data(ticket.id, t0 + timedelta(seconds=40), from_agent=True),
    ):
        async with h.units.begin() as unit:
            await apply_message_added(unit, item)
    assert (await h.row(agent["id"])).avg_response_time_seconds == 40


async def test_events_from_kafka_reach_the_projection_and_assignments_go_out(
    h: Any, probe: EventProbe, publish: Any
) -> None:
    # given an online agent skilled in a category of its own
    category = f"cat-{uuid.uuid4().hex[:8]}"
    (agent,) = await h.agents_fast({"status": "online", "specializations": [category]})
    # when the tickets service publishes a new unassigned ticket in that category
    ticket = h.ticket(category=category)
    await publish("ticket.created", ticket)
    # then the service auto-assigns it and says so on Kafka
    events = await probe.wait_for("ticket.assigned", lambda e: e["data"]["ticket_id"] == ticket.id)
    assert events[0]["data"]["agent_id"] == agent["id"]
    assert events[0]["data"]["reason"] == "auto_route"
    # and when the ticket is resolved, the assignment is completed
    await publish(
        "ticket.updated", h.updated(ticket, status="resolved", assigned_agent_id=agent["id"])
    )
    await probe.wait_for(
        "assignment.updated",
        lambda e: e["data"]["ticket_id"] == ticket.id and e["data"]["status"] == "completed",
    )
    # and a customer message followed by the agent's reply feeds its response time
    t0 = datetime.now(UTC)
    await publish("message.added", message_data(ticket.id, t0, from_agent=False))
    await publish(
        "message.added",
        message_data(ticket.id, t0 + timedelta(seconds=75), from_agent=True, author=agent["id"]),
    )

    async def measured() -> None:
        assert (await h.row(agent["id"])).avg_response_time_seconds == 75

    await eventually(measured)
