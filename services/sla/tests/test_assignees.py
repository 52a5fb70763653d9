"""The holder of a ticket from agents' own events (issue 14's two-hop gap): an `agent` given a
ticket opens its SLA right after the assignment's 2xx, with the assignment's consistency
token, before the tickets service has republished anything as ticket.updated."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from quimbi_common.consistency import HEADER
from quimbi_common.enums import AssignmentStatus, Role
from quimbi_common.events import AssignmentData, build_event
from quimbi_common.testing import SigningKeys, assignment_data, unique

pytestmark = pytest.mark.service


async def _from_agents(tickets: Any, topic: str, data: AssignmentData) -> str:
    """Publish as the agents service would; the entry its write's token names."""
    key, event = build_event(topic, data, source="agents")
    await tickets.producer.send_and_wait(
        tickets.settings.topic(topic), value=event.model_dump_json().encode(), key=key.encode()
    )
    return f"{topic}/{event.id}"


async def test_a_transfer_is_seen_by_its_new_holder_before_tickets_republishes_it(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, keys: SigningKeys
) -> None:
    # given a ticket its first holder (an agent) can see
    first, second = unique("agent-"), unique("agent-")
    ticket = await tickets.created(new_ticket(assigned_agent_id=first))
    await sla.updated(ticket.id)
    path = f"/api/tickets/{ticket.id}/sla"
    assert (await client.get(path, headers=keys.headers(Role.AGENT, first))).status_code == 200
    # when agents transfers it to the second (its events only: tickets emits nothing)
    held = assignment_data(ticket.id, first, assigned_at=ticket.created_at)
    ended = held.model_copy(
        update={"version": 2, "is_active": False, "status": AssignmentStatus.TRANSFERRED}
    )
    token = ",".join(
        [
            await _from_agents(tickets, "assignment.updated", ended),
            await _from_agents(tickets, "ticket.assigned", assignment_data(ticket.id, second)),
        ]
    )
    # then the new holder reads and pauses it at once with the transfer's token
    headers = {**keys.headers(Role.AGENT, second), HEADER: token}
    read = await client.get(path, headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["ticket_id"] == ticket.id
    paused = await client.post(f"{path}/pause", headers=headers)
    assert paused.status_code == 200, paused.text
    # and the former holder no longer sees it
    former = await client.get(path, headers={**keys.headers(Role.AGENT, first), HEADER: token})
    assert former.status_code == 404, former.text


async def test_an_assignment_that_overtakes_its_ticket_is_kept(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, keys: SigningKeys
) -> None:
    # given an auto-assignment whose event arrives before the ticket's own
    agent = unique("agent-")
    ticket = new_ticket()
    entry = await _from_agents(tickets, "ticket.assigned", assignment_data(ticket.id, agent))
    # when the ticket (no assignee of its own) arrives after it
    await tickets.created(ticket)
    await sla.updated(ticket.id)
    # then its holder sees it with the assignment's token
    headers = {**keys.headers(Role.AGENT, agent), HEADER: entry}
    response = await client.get(f"/api/tickets/{ticket.id}/sla", headers=headers)
    assert response.status_code == 200, response.text
