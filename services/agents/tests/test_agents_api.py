"""Managing agents: create, list, read, update, delete, own status — shapes, rules, events and
bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quimbi_agents.service.agents import Context, bootstrap_admin
from quimbi_common.enums import Role
from quimbi_common.testing import EventProbe, SigningKeys, unique

pytestmark = pytest.mark.service

AGENT_FIELDS = {
    "id",
    "email",
    "name",
    "role",
    "status",
    "department",
    "specializations",
    "max_concurrent_tickets",
    "is_active",
    "tickets_resolved_today",
    "avg_response_time_seconds",
    "customer_satisfaction_score",
    "last_login_at",
    "created_at",
}


def new_agent(**fields: Any) -> dict[str, Any]:
    return {
        "email": f"{unique('new-')}@quimbi.dev",
        "password": "a-good-password",
        "name": "New Agent",
        **fields,
    }


async def test_a_manager_creates_an_agent_and_agent_created_is_published(
    h: Any, probe: EventProbe
) -> None:
    # given a manager
    manager = await h.agent(Role.MANAGER)
    # when it creates an agent
    body = new_agent(
        role="senior_agent",
        department="Billing Team",
        specializations=["Billing", "billing ", "Refunds"],
        max_concurrent_tickets=7,
    )
    response = await h.client.post("/api/agents", headers=manager["headers"], json=body)
    # then the agent exists with normalised fields and no password hash anywhere
    assert response.status_code == 201, response.text
    agent = response.json()
    assert set(agent) == AGENT_FIELDS
    assert agent["email"] == body["email"]
    assert agent["role"] == "senior_agent"
    assert agent["status"] == "offline"
    assert agent["specializations"] == ["billing", "refunds"]
    assert agent["max_concurrent_tickets"] == 7
    assert agent["is_active"] is True
    events = await probe.wait_for("agent.created", lambda e: e["data"]["id"] == agent["id"])
    data = events[0]["data"]
    assert data["version"] == 1
    assert data["role"] == "senior_agent"
    assert "hashed_password" not in data
    assert "password" not in str(events[0])


async def test_capacity_defaults_from_settings(h: Any) -> None:
    response = await h.client.post("/api/agents", headers=h.admin, json=new_agent())
    assert response.json()["max_concurrent_tickets"] == h.settings.default_max_concurrent_tickets


async def test_duplicate_email_is_a_conflict_whatever_its_case(h: Any) -> None:
    agent = await h.agent()
    response = await h.client.post(
        "/api/agents", headers=h.admin, json=new_agent(email=agent["email"].upper())
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "overlord"},
        {"status": "sleeping"},
        {"email": "not-an-email"},
        {"name": ""},
        {"max_concurrent_tickets": -1},
        {"customer_satisfaction_score": 5.5},
        {"specializations": "billing"},
        {"favourite_colour": "teal"},
        {"hashed_password": "$2b$12$injected"},
    ],
    ids=lambda bad: next(iter(bad)),
)
async def test_bad_fields_on_create_are_422(h: Any, bad: dict[str, Any]) -> None:
    response = await h.client.post("/api/agents", headers=h.admin, json=new_agent(**bad))
    assert response.status_code == 422
    assert response.json()["errors"]


async def test_missing_fields_on_create_are_422(h: Any) -> None:
    response = await h.client.post("/api/agents", headers=h.admin, json={"name": "x"})
    assert response.status_code == 422
    missing = {e["loc"][-1] for e in response.json()["errors"]}
    assert missing == {"email", "password"}


async def test_a_manager_cannot_create_an_admin_but_an_admin_can(h: Any) -> None:
    manager = await h.agent(Role.MANAGER)
    refused = await h.client.post(
        "/api/agents", headers=manager["headers"], json=new_agent(role="admin")
    )
    assert refused.status_code == 403
    allowed = await h.client.post("/api/agents", headers=h.admin, json=new_agent(role="admin"))
    assert allowed.status_code == 201


async def test_update_changes_fields_and_publishes_the_changes(h: Any, probe: EventProbe) -> None:
    # given an agent
    agent = await h.agent(department="north")
    # when a manager renames it, moves it, and changes its skills
    manager = await h.agent(Role.MANAGER)
    response = await h.client.patch(
        f"/api/agents/{agent['id']}",
        headers=manager["headers"],
        json={"name": "Renamed", "department": None, "specializations": ["Returns"]},
    )
    # then the agent reads back changed and agent.updated lists old and new values
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    assert response.json()["department"] is None
    assert response.json()["specializations"] == ["returns"]
    events = await probe.wait_for("agent.updated", lambda e: e["data"]["id"] == agent["id"])
    changes = events[0]["data"]["changes"]
    assert changes["name"] == {"old": "Test Agent", "new": "Renamed"}
    assert changes["department"] == {"old": "north", "new": None}
    assert changes["specializations"] == {"old": [], "new": ["returns"]}
    assert events[0]["data"]["version"] == 2


async def test_a_manager_cannot_edit_an_admin_or_promote_to_admin(h: Any) -> None:
    manager = await h.agent(Role.MANAGER)
    admin = await h.agent(Role.ADMIN)
    agent = await h.agent()
    edit_admin = await h.client.patch(
        f"/api/agents/{admin['id']}", headers=manager["headers"], json={"name": "x"}
    )
    promote = await h.client.patch(
        f"/api/agents/{agent['id']}", headers=manager["headers"], json={"role": "admin"}
    )
    assert edit_admin.status_code == 403
    assert promote.status_code == 403
    assert (await h.row(agent["id"])).role == "agent"


async def test_a_manager_can_promote_up_to_manager(h: Any) -> None:
    manager = await h.agent(Role.MANAGER)
    agent = await h.agent()
    response = await h.client.patch(
        f"/api/agents/{agent['id']}", headers=manager["headers"], json={"role": "manager"}
    )
    assert response.status_code == 200
    assert response.json()["role"] == "manager"


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "overlord"},
        {"status": "asleep"},
        {"is_active": "maybe"},
        {"name": None},
        {"email": None},
        {"max_concurrent_tickets": 10_000},
        {"password": "short"},
        {"unknown": 1},
    ],
    ids=lambda bad: f"{next(iter(bad))}={next(iter(bad.values()))}",
)
async def test_bad_fields_on_update_are_422(h: Any, bad: dict[str, Any]) -> None:
    agent = await h.agent()
    response = await h.client.patch(f"/api/agents/{agent['id']}", headers=h.admin, json=bad)
    assert response.status_code == 422


async def test_updating_an_email_to_a_taken_one_is_409(h: Any) -> None:
    first, second = await h.agent(), await h.agent()
    response = await h.client.patch(
        f"/api/agents/{second['id']}", headers=h.admin, json={"email": first["email"]}
    )
    assert response.status_code == 409


async def test_unknown_agents_are_404_on_read_update_and_delete(h: Any) -> None:
    missing = f"/api/agents/{unique('missing-')}"
    assert (await h.client.get(missing, headers=h.admin)).status_code == 404
    assert (await h.client.patch(missing, headers=h.admin, json={"name": "x"})).status_code == 404
    assert (await h.client.delete(missing, headers=h.admin)).status_code == 404
    too_long = f"/api/agents/{'x' * 256}"
    assert (await h.client.get(too_long, headers=h.admin)).status_code == 422


async def test_delete_hides_the_agent_frees_its_email_and_publishes(
    h: Any, probe: EventProbe
) -> None:
    agent = await h.agent()
    assert (await h.client.delete(f"/api/agents/{agent['id']}", headers=h.admin)).status_code == 204
    assert (await h.client.get(f"/api/agents/{agent['id']}", headers=h.admin)).status_code == 404
    listed = await h.client.get("/api/agents", headers=h.admin, params={"limit": 200})
    assert agent["id"] not in {a["id"] for a in listed.json()["agents"]}
    again = await h.client.post(
        "/api/agents", headers=h.admin, json=new_agent(email=agent["email"])
    )
    assert again.status_code == 201
    deleted = await probe.wait_for("agent.deleted", lambda e: e["data"]["id"] == agent["id"])
    assert deleted[0]["data"]["is_active"] is False


async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(
    fresh_database: str, http_only: Any, make: Any, keys: SigningKeys
) -> None:
    # given a fresh service whose only admin is the bootstrap admin
    async with http_only(make(fresh_database)) as (app, client):
        context = app.state.runtime.provided(Context)
        admin = await context.units.run(lambda unit: bootstrap_admin(unit, context))
        assert admin is not None
        headers = keys.headers(Role.ADMIN, admin.id)
        # when it tries to stop being an admin, it is refused
        for change in ({"role": "manager"}, {"is_active": False}):
            refused = await client.patch(f"/api/agents/{admin.id}", headers=headers, json=change)
            assert refused.status_code == 409, change
        # and once a second admin exists, it may
        second = await client.post("/api/agents", headers=headers, json=new_agent(role="admin"))
        assert second.status_code == 201
        allowed = await client.patch(
            f"/api/agents/{admin.id}", headers=headers, json={"role": "manager"}
        )
        assert allowed.status_code == 200


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    fresh_database: str, http_only: Any, make: Any, keys: SigningKeys
) -> None:
    # given a fresh service with exactly two admins
    async with http_only(make(fresh_database)) as (app, client):
        context = app.state.runtime.provided(Context)
        first = await context.units.run(lambda unit: bootstrap_admin(unit, context))
        assert first is not None
        created = await client.post(
            "/api/agents", headers=keys.headers(Role.ADMIN, first.id), json=new_agent(role="admin")
        )
        second = created.json()["id"]
        # when each demotes the other at the same moment
        responses = await asyncio.gather(
            client.patch(
                f"/api/agents/{second}",
                headers=keys.headers(Role.ADMIN, first.id),
                json={"role": "manager"},
            ),
            client.patch(
                f"/api/agents/{first.id}",
                headers=keys.headers(Role.ADMIN, second),
                json={"role": "manager"},
            ),
        )
    # then one succeeds and the other is refused: an admin remains
    assert sorted(r.status_code for r in responses) == [200, 409]


async def test_an_admin_cannot_delete_itself(h: Any) -> None:
    admin = await h.agent(Role.ADMIN)
    response = await h.client.delete(f"/api/agents/{admin['id']}", headers=admin["headers"])
    assert response.status_code == 409


async def test_me_and_own_status(h: Any, probe: EventProbe) -> None:
    # given an offline agent
    agent = await h.agent()
    me = await h.client.get("/api/agents/me", headers=agent["headers"])
    assert me.json()["status"] == "offline"
    # when it goes online
    response = await h.client.patch(
        "/api/agents/me/status", headers=agent["headers"], json={"status": "online"}
    )
    # then its profile and agent.updated say so
    assert response.status_code == 200
    assert response.json()["status"] == "online"
    events = await probe.wait_for(
        "agent.updated",
        lambda e: e["data"]["id"] == agent["id"] and "status" in e["data"]["changes"],
    )
    assert events[0]["data"]["changes"]["status"] == {"old": "offline", "new": "online"}


@pytest.mark.parametrize("body", [{"status": "asleep"}, {}, {"status": "online", "role": "admin"}])
async def test_bad_status_updates_are_422(h: Any, body: dict[str, Any]) -> None:
    agent = await h.agent()
    response = await h.client.patch("/api/agents/me/status", headers=agent["headers"], json=body)
    assert response.status_code == 422


async def test_a_token_for_an_agent_that_does_not_exist_gets_401_on_me(
    h: Any, keys: SigningKeys
) -> None:
    response = await h.client.get("/api/agents/me", headers=keys.headers(Role.AGENT))
    assert response.status_code == 401


async def test_list_paginates_and_filters(h: Any) -> None:
    department = unique("dept-")
    for _ in range(3):
        await h.agent(department=department)
    await h.agent(Role.SENIOR_AGENT, department=department, status="online")
    page1 = await h.client.get(
        "/api/agents", headers=h.admin, params={"department": department, "limit": 2}
    )
    body = page1.json()
    assert body["pagination"] == {
        "page": 1,
        "limit": 2,
        "total": 4,
        "has_next": True,
        "has_prev": False,
    }
    page2 = await h.client.get(
        "/api/agents", headers=h.admin, params={"department": department, "limit": 2, "page": 2}
    )
    assert page2.json()["pagination"]["has_prev"] is True
    assert len({a["id"] for a in body["agents"] + page2.json()["agents"]}) == 4
    seniors = await h.client.get(
        "/api/agents",
        headers=h.admin,
        params={"department": department, "role": "senior_agent", "status": "online"},
    )
    assert [a["role"] for a in seniors.json()["agents"]] == ["senior_agent"]


@pytest.mark.parametrize(
    "params", [{"role": "overlord"}, {"status": "asleep"}, {"page": 0}, {"limit": 1000}]
)
async def test_bad_list_parameters_are_422(h: Any, params: dict[str, Any]) -> None:
    response = await h.client.get("/api/agents", headers=h.admin, params=params)
    assert response.status_code == 422


async def test_a_team_lead_lists_only_its_department(h: Any) -> None:
    department = unique("dept-")
    lead = await h.agent(Role.TEAM_LEAD, department=department)
    colleague = await h.agent(department=department)
    outsider = await h.agent(department=unique("other-"))
    listed = await h.client.get("/api/agents", headers=lead["headers"], params={"limit": 200})
    ids = {a["id"] for a in listed.json()["agents"]}
    assert ids == {lead["id"], colleague["id"]}
    assert (
        await h.client.get(f"/api/agents/{colleague['id']}", headers=lead["headers"])
    ).status_code == 200
    assert (
        await h.client.get(f"/api/agents/{outsider['id']}", headers=lead["headers"])
    ).status_code == 404
