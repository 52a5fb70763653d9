"""Every route against every role (ARCHITECTURE §3), plus no credentials and the integration key.

Each case sets up its own world: the caller (in department D), a colleague in D, an admin, a
ticket held by someone else ("theirs") and one held by the caller ("own").
"""

from __future__ import annotations

from typing import Any

import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import unique

pytestmark = pytest.mark.service

A, S, T, M, AD = Role.AGENT, Role.SENIOR_AGENT, Role.TEAM_LEAD, Role.MANAGER, Role.ADMIN
ROLES = [A, S, T, M, AD]


def new_agent_body(role: str) -> dict[str, Any]:
    return {
        "email": f"{unique('m-')}@quimbi.dev",
        "password": "a-good-password",
        "name": "M",
        "role": role,
    }


# (name, method, path, body, expected status for agent, senior, team lead, manager, admin)
ROUTES: list[tuple[str, str, str, Any, tuple[int, int, int, int, int]]] = [
    ("me", "GET", "/api/agents/me", None, (200, 200, 200, 200, 200)),
    ("status", "PATCH", "/api/agents/me/status", {"status": "away"}, (200, 200, 200, 200, 200)),
    ("logout", "POST", "/api/agents/logout", None, (204, 204, 204, 204, 204)),
    ("list", "GET", "/api/agents", None, (403, 403, 200, 200, 200)),
    ("read-colleague", "GET", "/api/agents/{colleague}", None, (403, 403, 200, 200, 200)),
    ("create-agent", "POST", "/api/agents", "agent", (403, 403, 403, 201, 201)),
    ("create-manager", "POST", "/api/agents", "manager", (403, 403, 403, 201, 201)),
    ("create-admin", "POST", "/api/agents", "admin", (403, 403, 403, 403, 201)),
    ("update-agent", "PATCH", "/api/agents/{colleague}", {"name": "N"}, (403, 403, 403, 200, 200)),
    ("update-admin", "PATCH", "/api/agents/{admin}", {"name": "N"}, (403, 403, 403, 403, 200)),
    (
        "promote-admin",
        "PATCH",
        "/api/agents/{colleague}",
        {"role": "admin"},
        (403, 403, 403, 403, 200),
    ),
    ("delete", "DELETE", "/api/agents/{colleague}", None, (403, 403, 403, 403, 204)),
    (
        "assign-theirs",
        "POST",
        "/api/tickets/{theirs}/assign",
        {"agent_id": "{colleague}"},
        (404, 201, 201, 201, 201),
    ),
    (
        "assign-own",
        "POST",
        "/api/tickets/{own}/assign",
        {"agent_id": "{colleague}"},
        (403, 201, 201, 201, 201),
    ),
    (
        "accept-theirs",
        "POST",
        "/api/tickets/{theirs}/assignment/accept",
        None,
        (404, 403, 403, 403, 403),
    ),
    ("accept-own", "POST", "/api/tickets/{own}/assignment/accept", None, (200, 200, 200, 200, 200)),
    ("history-theirs", "GET", "/api/tickets/{theirs}/assignments", None, (404, 200, 200, 200, 200)),
    ("history-own", "GET", "/api/tickets/{own}/assignments", None, (200, 200, 200, 200, 200)),
    ("jwks", "GET", "/.well-known/jwks.json", None, (200, 200, 200, 200, 200)),
]
PROTECTED = [r for r in ROUTES if r[0] != "jwks"]


async def world(h: Any, role: Role) -> dict[str, Any]:
    department = unique("dept-")
    caller, colleague, admin, holder = await h.agents_fast(
        {"role": role, "department": department},
        {"department": department},
        {"role": Role.ADMIN},
        {},
    )
    theirs = h.ticket(assigned_agent_id=holder["id"])
    own = h.ticket(assigned_agent_id=caller["id"])
    await h.apply(theirs)
    await h.apply(own)
    return {
        "caller": caller,
        "ids": {
            "colleague": colleague["id"],
            "admin": admin["id"],
            "theirs": theirs.id,
            "own": own.id,
        },
    }


def fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {k: fill(v, ids) for k, v in template.items()}
    return template


async def call(h: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    json_body = new_agent_body(body) if isinstance(body, str) else body
    return await h.client.request(method, path, json=json_body, headers=headers)


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
@pytest.mark.parametrize(
    ("name", "method", "path", "body", "expected"), ROUTES, ids=[r[0] for r in ROUTES]
)
async def test_role_matrix(
    h: Any, role: Role, name: str, method: str, path: str, body: Any, expected: tuple[int, ...]
) -> None:
    # given a caller of `role` and the world around it
    setup = await world(h, role)
    ids = setup["ids"]
    # when it calls the route
    response = await call(h, method, fill(path, ids), fill(body, ids), setup["caller"]["headers"])
    # then it gets what §3 allows
    assert response.status_code == expected[ROLES.index(role)], response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "expected"), PROTECTED, ids=[r[0] for r in PROTECTED]
)
async def test_no_credentials_is_401_and_the_integration_key_is_403(
    h: Any, name: str, method: str, path: str, body: Any, expected: tuple[int, ...]
) -> None:
    ids = {"colleague": "x", "admin": "y", "theirs": "t1", "own": "t2"}
    anonymous = await call(h, method, fill(path, ids), fill(body, ids), {})
    integration = await call(
        h,
        method,
        fill(path, ids),
        fill(body, ids),
        {"X-API-Key": h.settings.api_key.get_secret_value()},
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert integration.status_code == 403
