"""Managers' reports through the gateway: tickets created, answered and resolved by an agent
show up in the manager's report, built by agents from the event stream."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest
from support import Agent

from quimbi_common.testing import eventually, unique

pytestmark = pytest.mark.e2e


async def test_a_managers_report_shows_what_an_agent_handled(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    team = unique("e2e-team-")
    agent: Agent = await make_agent("agent", department=team)
    manager: Agent = await make_agent("manager")
    ids = []
    for priority in ("normal", "urgent", "high"):
        created = await gateway.post(
            "/api/tickets",
            json={
                "customer": {"email": f"{unique('cust-')}@example.com", "name": "Ann Customer"},
                "subject": "Where is my order?",
                "priority": priority,
                "channel": "email",
                "message": {"content": "It has not arrived", "from_agent": False},
            },
            headers=agent.headers,
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for ticket_id in ids[:2]:  # answered and resolved; the third (high) stays open
        reply = await gateway.post(
            f"/api/tickets/{ticket_id}/messages",
            json={"content": "On its way, sorry!", "from_agent": True},
            headers=agent.headers,
        )
        assert reply.status_code == 201, reply.text
        resolved = await gateway.patch(
            f"/api/tickets/{ticket_id}", json={"status": "resolved"}, headers=agent.headers
        )
        assert resolved.status_code == 200, resolved.text

    async def reported() -> dict[str, Any]:
        response = await gateway.get(
            "/api/reports/agents", params={"department": team}, headers=manager.headers
        )
        assert response.status_code == 200, response.text
        (row,) = response.json()["agents"]
        assert row["agent_id"] == agent.id
        assert row["tickets_handled"] == 2
        assert row["first_response"]["count"] == 2
        assert row["sla"]["first_response"]["met"] == 2
        assert row["sla"]["resolution"]["met"] == 2
        assert row["backlog"]["high"] == 1
        return row

    row = await eventually(reported, timeout=60, interval=0.5)
    assert row["resolution"]["count"] == 2
    assert row["resolution"]["median_seconds"] >= 0
    assert row["sla"]["first_response"]["attainment_percent"] == 100.0
    assert row["backlog"]["total"] == 1

    teams = await gateway.get(
        "/api/reports/teams", params={"department": team, "format": "csv"}, headers=manager.headers
    )
    assert teams.status_code == 200, teams.text
    assert teams.headers["content-type"].startswith("text/csv")
    header, line = list(csv.reader(io.StringIO(teams.text)))
    cells = dict(zip(header, line, strict=True))
    assert (cells["department"], cells["agents"], cells["tickets_handled"]) == (team, "1", "2")

    denied = await gateway.get("/api/reports/agents", headers=agent.headers)
    assert denied.status_code == 403
    spec = (await gateway.get("/openapi.json")).json()
    assert "/api/reports/agents" in spec["paths"]
    assert "/api/reports/teams" in spec["paths"]
