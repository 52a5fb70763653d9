"""Bulk assignment: one agent for many tickets, per-ticket results, the same events as single
assignments, senior_agent and up."""

from __future__ import annotations

from typing import Any

import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import EventProbe

pytestmark = pytest.mark.service


async def test_bulk_assign_reports_each_ticket_and_publishes_each_assignment(
    h: Any, probe: EventProbe
) -> None:
    # given a held ticket, an unheld one, a closed one, one already the target's, and an
    # id nobody knows
    holder, senior, target = await h.agents_fast({}, {"role": Role.SENIOR_AGENT}, {})
    held = h.ticket(assigned_agent_id=holder["id"])
    unheld = h.ticket()
    closed = h.ticket(status="closed")
    theirs = h.ticket(assigned_agent_id=target["id"])
    for ticket in (held, unheld, closed, theirs):
        await h.apply(ticket)
    ids = [held.id, "ticket-unknown", unheld.id, closed.id, theirs.id, held.id]
    # when a senior agent gives them all to the target
    response = await h.client.post(
        "/api/tickets/bulk/assign",
        headers=senior["headers"],
        json={"ticket_ids": ids, "agent_id": target["id"]},
    )
    # then each has its own result, in request order, repeats dropped
    assert response.status_code == 200, response.text
    body = response.json()
    outcomes = [(r["id"], r["outcome"], r["status"]) for r in body["results"]]
    assert outcomes == [
        (held.id, "assigned", 201),
        ("ticket-unknown", "not_found", 404),
        (unheld.id, "assigned", 201),
        (closed.id, "conflict", 409),
        (theirs.id, "conflict", 409),
    ]
    assert (body["requested"], body["assigned"], body["failed"]) == (5, 2, 3)
    # and the two assignments are stored and published as single ones are (a transfer, a new)
    for ticket, reason in ((held, "transfer"), (unheld, "manual")):
        active = await h.active(ticket.id)
        assert active is not None
        assert active.agent_id == target["id"]
        assert active.reason == reason
        [result] = [r for r in body["results"] if r["id"] == ticket.id]
        assert result["assignment_id"] == active.id
        await probe.wait_for("ticket.assigned", lambda e, a=active: e["data"]["id"] == a.id)
    assert response.headers["x-consistency-token"].count("ticket.assigned/") == 2
    # and the failures left their tickets as they were
    still = await h.active(theirs.id)
    assert still is not None
    assert still.reason != "transfer"


async def test_bulk_assign_needs_a_senior_agent_and_an_active_assignee(h: Any) -> None:
    agent, senior = await h.agents_fast({}, {"role": Role.SENIOR_AGENT})
    ticket = h.ticket()
    await h.apply(ticket)
    body = {"ticket_ids": [ticket.id], "agent_id": agent["id"]}
    forbidden = await h.client.post("/api/tickets/bulk/assign", headers=agent["headers"], json=body)
    assert forbidden.status_code == 403, forbidden.text
    unknown = {"ticket_ids": [ticket.id], "agent_id": "nobody"}
    response = await h.client.post(
        "/api/tickets/bulk/assign", headers=senior["headers"], json=unknown
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await h.active(ticket.id) is None


@pytest.mark.parametrize(
    "body",
    [
        {"agent_id": "a"},
        {"ticket_ids": [], "agent_id": "a"},
        {"ticket_ids": [f"t{i}" for i in range(501)], "agent_id": "a"},
        {"ticket_ids": ["t"], "agent_id": "a", "colour": "red"},
        {"ticket_ids": [""], "agent_id": "a"},
    ],
)
async def test_bad_bulk_assign_bodies_are_422(h: Any, body: dict[str, Any]) -> None:
    [senior] = await h.agents_fast({"role": Role.SENIOR_AGENT})
    response = await h.client.post("/api/tickets/bulk/assign", headers=senior["headers"], json=body)
    assert response.status_code == 422, response.text
