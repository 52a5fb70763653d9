"""Hostile input (issue #13): NUL characters and huge integers are a 4xx, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import assert_problem, unique

pytestmark = pytest.mark.service

NUL = "\u0000"


def new_agent(**fields: Any) -> dict[str, Any]:
    return {
        "email": f"{unique('nul-')}@quimbi.dev",
        "password": "a-good-password",
        "name": "New Agent",
        **fields,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"name": f"Ann{NUL}"},
        {"department": f"sup{NUL}port"},
        {"specializations": ["billing", f"re{NUL}funds"]},
        {"password": f"a-good-pass{NUL}word"},
        {"email": f"a{NUL}b@quimbi.dev"},
    ],
    ids=lambda bad: next(iter(bad)),
)
async def test_a_nul_in_any_field_of_a_new_agent_is_422(h: Any, bad: dict[str, Any]) -> None:
    # when a manager sends a new agent with a NUL in one field
    response = await h.client.post("/api/agents", headers=h.admin, json=new_agent(**bad))
    # then it is refused as a field error, naming the field
    problem = assert_problem(response, 422)
    assert any(next(iter(bad)) in error["loc"] for error in problem["errors"]), problem


async def test_a_nul_in_an_update_is_422(h: Any) -> None:
    agent = await h.agent()
    for body in ({"department": f"x{NUL}"}, {"specializations": [NUL]}, {"name": NUL}):
        response = await h.client.patch(f"/api/agents/{agent['id']}", headers=h.admin, json=body)
        assert_problem(response, 422)


async def test_a_nul_in_a_login_password_is_a_wrong_password(h: Any) -> None:
    # given an agent
    agent = await h.agent()
    # when someone logs in with its password plus a NUL, or a NUL in the middle
    for password in (f"{agent['password']}{NUL}", f"correct{NUL}horse-battery"):
        response = await h.login(agent["email"], password)
        # then it is a 401 like any wrong password
        assert_problem(response, 401)
    # and the right password still works
    assert (await h.login(agent["email"])).status_code == 200


async def test_a_nul_in_a_login_email_is_refused_without_a_500(h: Any) -> None:
    response = await h.login(f"a{NUL}@quimbi.dev")
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "path",
    [
        "/api/agents/a%00b",
        "/api/tickets/a%00b/assignments",
        "/api/tickets/a%00b/assignment/accept",
    ],
)
async def test_a_nul_in_a_path_segment_is_422(h: Any, path: str) -> None:
    method = h.client.post if path.endswith("accept") else h.client.get
    response = await method(path, headers=h.admin)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["path"]


async def test_a_nul_in_a_query_value_is_422(h: Any) -> None:
    for query in ("department=a%00", "topic_alerts=a%00", "role=%00"):
        response = await h.client.get(f"/api/agents?{query}", headers=h.admin)
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["loc"] == ["query"]


@pytest.mark.parametrize(
    "query",
    ["page=10000000000000000000", "page=100001", "limit=10000000000000000000", "limit=201"],
)
async def test_pages_beyond_the_bounds_are_422(h: Any, query: str) -> None:
    response = await h.client.get(f"/api/agents?{query}", headers=h.admin)
    assert_problem(response, 422)


async def test_the_largest_page_is_an_empty_page(h: Any) -> None:
    response = await h.client.get("/api/agents?page=100000", headers=h.admin)
    assert response.status_code == 200, response.text
    assert response.json()["agents"] == []


@pytest.mark.parametrize(
    "bad",
    ['"max_concurrent_tickets": 10000000000000000000', '"customer_satisfaction_score": 1e309'],
)
async def test_huge_numbers_in_a_body_are_422(h: Any, bad: str) -> None:
    body = json.dumps(new_agent())[:-1] + ", " + bad + "}"
    response = await h.client.post(
        "/api/agents", headers={**h.admin, "Content-Type": "application/json"}, content=body
    )
    assert_problem(response, 422)


async def test_a_body_that_is_not_json_is_400(h: Any) -> None:
    response = await h.client.post(
        "/api/agents",
        headers={**h.admin, "Content-Type": "application/json"},
        content=b'{"email": ',
    )
    assert_problem(response, 400)


async def test_a_nul_in_an_assignment_is_422(h: Any) -> None:
    lead = h.headers({"id": unique("lead-"), "role": Role.ADMIN})
    response = await h.client.post(
        f"/api/tickets/{unique('t-')}/assign",
        headers=lead,
        json={"agent_id": f"a{NUL}", "transfer_reason": NUL},
    )
    assert_problem(response, 422)
