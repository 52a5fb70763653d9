"""The REST API: policies, a ticket's SLA, pausing by hand, and who may see what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from quimbi_common.enums import Role, TicketPriority
from quimbi_common.testing import SigningKeys, eventually, unique

pytestmark = pytest.mark.service


async def test_any_agent_reads_the_default_policies(
    client: httpx.AsyncClient, keys: SigningKeys
) -> None:
    response = await client.get("/api/sla/policies", headers=keys.headers(Role.AGENT))
    assert response.status_code == 200
    body = response.json()
    targets = {
        p["priority"]: (p["first_response_target_seconds"], p["resolution_target_seconds"])
        for p in body["policies"]
    }
    assert targets["normal"] == (8 * 3600, 48 * 3600)
    assert targets["high"] == (2 * 3600, 24 * 3600)
    assert targets["urgent"] == (1800, 8 * 3600)
    assert [p["priority"] for p in body["policies"]] == ["low", "normal", "high", "urgent"]
    assert {p["warning_threshold_percent"] for p in body["policies"]} == {80}
    assert body["business_hours"]["weekly_hours"]["mon"] == ["09:00-17:00"]
    assert body["business_hours"]["weekly_hours"]["sun"] == []


async def test_the_policies_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/sla/policies")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("role", [Role.AGENT, Role.SENIOR_AGENT, Role.TEAM_LEAD])
async def test_only_managers_and_admins_edit_policies(
    client: httpx.AsyncClient, keys: SigningKeys, role: Role
) -> None:
    response = await client.patch(
        "/api/sla/policies/high",
        json={"warning_threshold_percent": 70},
        headers=keys.headers(role),
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"first_response_target_seconds": 0},
        {"resolution_target_seconds": -5},
        {"warning_threshold_percent": 0},
        {"warning_threshold_percent": 101},
        {"first_response_target_seconds": 7 * 24 * 3600},  # longer than the resolution (48 h)
        {"resolution_target_seconds": 60},  # shorter than the first response (8 h)
        {"first_response_target_seconds": None},
        {"unknown_field": 1},
    ],
)
async def test_an_invalid_policy_edit_is_refused_with_422(
    client: httpx.AsyncClient, keys: SigningKeys, body: dict[str, Any]
) -> None:
    response = await client.patch(
        "/api/sla/policies/normal", json=body, headers=keys.headers(Role.MANAGER)
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    listed = await client.get("/api/sla/policies", headers=keys.headers(Role.MANAGER))
    normal = next(p for p in listed.json()["policies"] if p["priority"] == "normal")
    assert normal["first_response_target_seconds"] == 8 * 3600


async def test_an_unknown_priority_is_422(client: httpx.AsyncClient, keys: SigningKeys) -> None:
    response = await client.patch(
        "/api/sla/policies/critical",
        json={"warning_threshold_percent": 50},
        headers=keys.headers(Role.ADMIN),
    )
    assert response.status_code == 422


async def test_a_policy_edit_applies_to_tickets_created_afterwards(
    client: httpx.AsyncClient, keys: SigningKeys, tickets: Any, sla: Any, new_ticket: Any
) -> None:
    # given a low-priority ticket under the default policy (24 h, wall time)
    saturday = datetime(2025, 6, 7, 12, tzinfo=UTC)
    before = await tickets.created(new_ticket(priority=TicketPriority.LOW, created_at=saturday))
    await sla.updated(before.id)
    manager = keys.headers(Role.MANAGER)
    try:
        # when a manager makes "low" a 1-business-hour first response
        response = await client.patch(
            "/api/sla/policies/low",
            json={"first_response_target_seconds": 3600, "business_hours_only": True},
            headers=manager,
        )
        assert response.status_code == 200
        assert response.json()["business_hours_only"] is True
        after = await tickets.created(new_ticket(priority=TicketPriority.LOW, created_at=saturday))
        new = await sla.updated(after.id)
        # then the new ticket is due Monday 10:00 and the older one keeps its 24 h
        assert datetime.fromisoformat(new["first_response_deadline"]) == datetime(
            2025, 6, 9, 10, tzinfo=UTC
        )
        await tickets.updated(before, assigned_agent_id=unique("agent-"))
        old = (await client.get(f"/api/tickets/{before.id}/sla", headers=manager)).json()
        assert datetime.fromisoformat(old["first_response_deadline"]) == saturday + timedelta(
            hours=24
        )
    finally:
        await client.patch(
            "/api/sla/policies/low",
            json={"first_response_target_seconds": 24 * 3600, "business_hours_only": False},
            headers=manager,
        )


async def test_an_agent_sees_the_sla_of_tickets_assigned_to_them_only(
    client: httpx.AsyncClient, keys: SigningKeys, tickets: Any, sla: Any, new_ticket: Any
) -> None:
    owner, other = unique("agent-"), unique("agent-")
    ticket = await tickets.created(new_ticket(assigned_agent_id=owner))
    await sla.updated(ticket.id)
    url = f"/api/tickets/{ticket.id}/sla"
    assert (await client.get(url, headers=keys.headers(Role.AGENT, owner))).status_code == 200
    hidden = await client.get(url, headers=keys.headers(Role.AGENT, other))
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    assert (await client.get(url, headers=keys.headers(Role.SENIOR_AGENT))).status_code == 200
    # when the ticket is transferred, visibility follows the assignee
    await tickets.updated(ticket, assigned_agent_id=other)
    marker = await tickets.created(new_ticket())
    await sla.updated(marker.id)

    async def moved() -> None:
        assert (await client.get(url, headers=keys.headers(Role.AGENT, other))).status_code == 200

    await eventually(moved, timeout=10)
    assert (await client.get(url, headers=keys.headers(Role.AGENT, owner))).status_code == 404


async def test_an_unknown_ticket_is_404(client: httpx.AsyncClient, senior: dict[str, str]) -> None:
    response = await client.get(f"/api/tickets/{unique('nope-')}/sla", headers=senior)
    assert response.status_code == 404


async def test_the_integration_key_may_not_read_slas(client: httpx.AsyncClient) -> None:
    response = await client.get(
        f"/api/tickets/{unique('tkt-')}/sla", headers={"X-API-Key": "dev-integration-key"}
    )
    assert response.status_code == 403


async def test_pausing_and_resuming_by_hand_with_409_when_already_so(
    client: httpx.AsyncClient, keys: SigningKeys, tickets: Any, sla: Any, new_ticket: Any
) -> None:
    owner = unique("agent-")
    ticket = await tickets.created(new_ticket(assigned_agent_id=owner))
    first = await sla.updated(ticket.id)
    headers = keys.headers(Role.AGENT, owner)
    base = f"/api/tickets/{ticket.id}/sla"
    paused = await client.post(f"{base}/pause", headers=headers)
    assert paused.status_code == 200
    assert paused.json()["is_paused"] is True
    assert (await client.post(f"{base}/pause", headers=headers)).status_code == 409
    assert (await sla.updated(ticket.id, version=2))["is_paused"] is True
    resumed = await client.post(f"{base}/resume", headers=headers)
    assert resumed.status_code == 200
    assert resumed.json()["is_paused"] is False
    conflict = await client.post(f"{base}/resume", headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    after = await sla.updated(ticket.id, version=3)
    assert after["resolution_deadline"] >= first["resolution_deadline"]
    stranger = keys.headers(Role.AGENT, unique("agent-"))
    assert (await client.post(f"{base}/pause", headers=stranger)).status_code == 404
