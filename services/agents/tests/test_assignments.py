"""Assigning, transferring and accepting by hand; the history; bad input; the database's
one-active-assignment rule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from quimbi_agents.models import TicketAssignment
from quimbi_common.enums import Role
from quimbi_common.testing import EventProbe, unique

pytestmark = pytest.mark.service


async def held_ticket(h: Any) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A ticket held by `holder`, a senior agent, and another agent to move it to."""
    holder, senior, other = await h.agents_fast({}, {"role": Role.SENIOR_AGENT}, {})
    ticket = h.ticket(assigned_agent_id=holder["id"])
    await h.apply(ticket)
    return ticket, holder, senior, other


async def test_a_transfer_ends_the_old_assignment_and_records_the_previous_agent(
    h: Any, probe: EventProbe
) -> None:
    # given a ticket held by one agent
    ticket, holder, senior, other = await held_ticket(h)
    # when a senior agent moves it to another, saying why
    response = await h.client.post(
        f"/api/tickets/{ticket.id}/assign",
        headers=senior["headers"],
        json={"agent_id": other["id"], "transfer_reason": "needs billing expertise"},
    )
    # then the new assignment is a transfer from the holder, pending acceptance
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["agent_id"] == other["id"]
    assert new["previous_agent_id"] == holder["id"]
    assert new["reason"] == "transfer"
    assert new["transfer_reason"] == "needs billing expertise"
    assert new["status"] == "pending"
    assert new["is_active"] is True
    # and the history shows the old one ended as transferred
    history = await h.client.get(f"/api/tickets/{ticket.id}/assignments", headers=senior["headers"])
    old, latest = history.json()["assignments"]
    assert (old["agent_id"], old["status"], old["is_active"]) == (
        holder["id"],
        "transferred",
        False,
    )
    assert old["completed_at"] is not None
    assert latest["id"] == new["id"]
    # and both changes were published, the ending before the new assignment
    ended = await probe.wait_for("assignment.updated", lambda e: e["data"]["id"] == old["id"])
    assigned = await probe.wait_for("ticket.assigned", lambda e: e["data"]["id"] == new["id"])
    assert ended[-1]["data"]["status"] == "transferred"
    assert assigned[0]["data"]["previous_agent_id"] == holder["id"]
    keys = {k for _, k, b, _ in probe.received if b.get("data", {}).get("ticket_id") == ticket.id}
    assert keys == {ticket.id}  # keyed by ticket: per-ticket order within each topic


async def test_an_explicit_reason_is_kept(h: Any) -> None:
    ticket, _, senior, other = await held_ticket(h)
    response = await h.client.post(
        f"/api/tickets/{ticket.id}/assign",
        headers=senior["headers"],
        json={"agent_id": other["id"], "reason": "escalation"},
    )
    assert response.json()["reason"] == "escalation"


async def test_assigning_an_unheld_ticket_is_manual(h: Any) -> None:
    senior, agent = await h.agents_fast({"role": Role.SENIOR_AGENT}, {})
    ticket = h.ticket()
    await h.apply(ticket, h.settings.model_copy(update={"auto_assign": False}))
    response = await h.client.post(
        f"/api/tickets/{ticket.id}/assign",
        headers=senior["headers"],
        json={"agent_id": agent["id"]},
    )
    assert response.status_code == 201
    assert response.json()["reason"] == "manual"
    assert response.json()["previous_agent_id"] is None


async def test_the_assignee_accepts_once_and_the_wait_is_recorded(
    h: Any, probe: EventProbe
) -> None:
    # given a ticket freshly assigned to an agent
    ticket, holder, _, _ = await held_ticket(h)
    # when the agent accepts it
    response = await h.client.post(
        f"/api/tickets/{ticket.id}/assignment/accept", headers=holder["headers"]
    )
    # then the assignment is accepted with the time it took, and that is published
    assert response.status_code == 200
    accepted = response.json()
    assert accepted["status"] == "accepted"
    assert accepted["accepted_at"] is not None
    assert accepted["time_to_accept_seconds"] >= 0
    events = await probe.wait_for(
        "assignment.updated",
        lambda e: e["data"]["id"] == accepted["id"] and e["data"]["status"] == "accepted",
    )
    assert events[0]["data"]["version"] == 2
    # and accepting again is a conflict
    again = await h.client.post(
        f"/api/tickets/{ticket.id}/assignment/accept", headers=holder["headers"]
    )
    assert again.status_code == 409


async def test_after_a_transfer_the_previous_holder_no_longer_sees_the_ticket(h: Any) -> None:
    ticket, holder, senior, other = await held_ticket(h)
    await h.client.post(
        f"/api/tickets/{ticket.id}/assign",
        headers=senior["headers"],
        json={"agent_id": other["id"]},
    )
    history_old = await h.client.get(
        f"/api/tickets/{ticket.id}/assignments", headers=holder["headers"]
    )
    history_new = await h.client.get(
        f"/api/tickets/{ticket.id}/assignments", headers=other["headers"]
    )
    assert history_old.status_code == 404
    assert history_new.status_code == 200


async def test_unknown_tickets_are_404_on_every_assignment_route(h: Any) -> None:
    senior, agent = await h.agents_fast({"role": Role.SENIOR_AGENT}, {})
    missing = unique("no-ticket-")
    assign = await h.client.post(
        f"/api/tickets/{missing}/assign", headers=senior["headers"], json={"agent_id": agent["id"]}
    )
    accept = await h.client.post(
        f"/api/tickets/{missing}/assignment/accept", headers=senior["headers"]
    )
    history = await h.client.get(f"/api/tickets/{missing}/assignments", headers=senior["headers"])
    assert (assign.status_code, accept.status_code, history.status_code) == (404, 404, 404)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"agent_id": ""},
        {"agent_id": "x", "reason": "because"},
        {"agent_id": "x", "transfer_reason": "r" * 2001},
        {"agent_id": "x", "priority": "high"},
        {"agent_id": 42},
    ],
    ids=[
        "missing-agent",
        "empty-agent",
        "unknown-reason",
        "long-reason",
        "unknown-field",
        "number",
    ],
)
async def test_bad_assign_bodies_are_422(h: Any, body: dict[str, Any]) -> None:
    ticket, _, senior, _ = await held_ticket(h)
    response = await h.client.post(
        f"/api/tickets/{ticket.id}/assign", headers=senior["headers"], json=body
    )
    assert response.status_code == 422


async def test_assigning_to_an_unknown_or_inactive_agent_is_422(h: Any) -> None:
    ticket, _, senior, other = await held_ticket(h)
    await h.client.patch(f"/api/agents/{other['id']}", headers=h.admin, json={"is_active": False})
    for agent_id in (unique("ghost-"), other["id"]):
        response = await h.client.post(
            f"/api/tickets/{ticket.id}/assign",
            headers=senior["headers"],
            json={"agent_id": agent_id},
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "agent_id"]


async def test_assigning_to_the_current_holder_or_a_closed_ticket_is_409(h: Any) -> None:
    ticket, holder, senior, other = await held_ticket(h)
    same = await h.client.post(
        f"/api/tickets/{ticket.id}/assign",
        headers=senior["headers"],
        json={"agent_id": holder["id"]},
    )
    assert same.status_code == 409
    await h.apply(h.updated(ticket, status="closed"))
    closed = await h.client.post(
        f"/api/tickets/{ticket.id}/assign",
        headers=senior["headers"],
        json={"agent_id": other["id"]},
    )
    assert closed.status_code == 409


async def test_accepting_without_an_active_assignment_is_409(h: Any) -> None:
    (senior,) = await h.agents_fast({"role": Role.SENIOR_AGENT})
    ticket = h.ticket()
    await h.apply(ticket, h.settings.model_copy(update={"auto_assign": False}))
    response = await h.client.post(
        f"/api/tickets/{ticket.id}/assignment/accept", headers=senior["headers"]
    )
    assert response.status_code == 409


async def test_the_database_refuses_a_second_active_assignment(h: Any) -> None:
    # given a ticket with an active assignment
    ticket, holder, _, other = await held_ticket(h)
    # when another active row is written for it directly
    with pytest.raises(IntegrityError, match="uq_ticket_assignments_active"):
        async with h.sessions() as session, session.begin():
            session.add(
                TicketAssignment(
                    id=str(uuid.uuid4()),
                    ticket_id=ticket.id,
                    agent_id=other["id"],
                    reason="manual",
                    status="pending",
                    assigned_at=datetime.now(UTC),
                    is_active=True,
                    version=1,
                )
            )
    # then only the first stays active
    async with h.sessions() as session:
        active = await session.scalars(
            sa.select(TicketAssignment.agent_id).where(
                TicketAssignment.ticket_id == ticket.id, TicketAssignment.is_active
            )
        )
        assert active.all() == [holder["id"]]
