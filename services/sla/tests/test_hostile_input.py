"""Hostile input (issue #13): NUL characters and huge integers are a 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import SigningKeys, assert_problem

pytestmark = pytest.mark.service


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/tickets/a%00b/sla"),
        ("POST", "/api/tickets/a%00b/sla/pause"),
        ("POST", "/api/tickets/%00/sla/resume"),
        ("PATCH", "/api/sla/policies/%00"),
    ],
)
async def test_a_nul_in_a_path_segment_is_422(
    client: httpx.AsyncClient, keys: SigningKeys, method: str, path: str
) -> None:
    response = await client.request(
        method, path, headers=keys.headers(Role.ADMIN), json={"business_hours_only": True}
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["path"]


async def test_a_nul_in_a_query_value_is_422(client: httpx.AsyncClient, keys: SigningKeys) -> None:
    response = await client.get(
        "/api/sla/policies?topic_alerts=a%00", headers=keys.headers(Role.AGENT)
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"first_response_target_seconds": 10000000000000000000}',
        b'{"resolution_target_seconds": 2147483648}',
        b'{"first_response_target_seconds": 60, "resolution_target_seconds": 31708800}',
        b'{"warning_threshold_percent": 99999999999999999999999}',
    ],
)
async def test_huge_targets_are_422_and_change_nothing(
    client: httpx.AsyncClient, keys: SigningKeys, body: bytes
) -> None:
    manager = {**keys.headers(Role.MANAGER), "Content-Type": "application/json"}
    response = await client.patch("/api/sla/policies/low", content=body, headers=manager)
    assert_problem(response, 422)
    listed = await client.get("/api/sla/policies", headers=manager)
    low = next(p for p in listed.json()["policies"] if p["priority"] == "low")
    assert low["resolution_target_seconds"] == 7 * 24 * 3600


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient, keys: SigningKeys) -> None:
    response = await client.patch(
        "/api/sla/policies/low",
        content=b"{not json",
        headers={**keys.headers(Role.MANAGER), "Content-Type": "application/json"},
    )
    assert_problem(response, 400)
