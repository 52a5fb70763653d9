"""Revocation in real Redis, and what every service app answers (errors, health, metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, Field

from quimbi_common.auth import CurrentAgent, Principal, StaticKeySet, require_role
from quimbi_common.enums import Role
from quimbi_common.errors import ConflictError
from quimbi_common.runtime import Runtime, create_app
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import (
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    SigningKeys,
    assert_docs_served_offline,
    running_app,
    served_app,
    unique,
)

pytestmark = pytest.mark.service
KEYS = SigningKeys()


class Note(BaseModel):
    text: str = Field(max_length=5)


router = APIRouter()


@router.get("/me")
async def me(agent: CurrentAgent) -> dict[str, str | None]:
    return {"agent_id": agent.agent_id}


@router.post("/notes")
async def add_note(note: Note) -> Note:
    if note.text == "dup":
        raise ConflictError("A note with this text exists")
    return note


@router.get("/admin-only")
async def admin_only(
    agent: Annotated[Principal, Depends(require_role(Role.ADMIN))],
) -> dict[str, str]:
    return {"ok": "yes"}


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("a bug")


def probe_app() -> tuple[Runtime, FastAPI]:
    settings = CommonSettings(
        service_name="probe",
        redis_url=REDIS_URL,
        jwt_issuer=TEST_ISSUER,
        jwt_audience=TEST_AUDIENCE,
    )
    runtime = Runtime(settings, database=False, kafka=False, keys=StaticKeySet(KEYS.jwks))
    return runtime, create_app(runtime, title="probe", routers=[router])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    runtime, app = probe_app()
    async with running_app(app) as client:
        client.app_runtime = runtime  # type: ignore[attr-defined]
        yield client


async def test_logout_revokes_the_token_and_no_other(client: httpx.AsyncClient) -> None:
    agent = unique("a-")
    token, other = KEYS.token(agent_id=agent), KEYS.token(agent_id=agent)
    runtime: Runtime = client.app_runtime  # type: ignore[attr-defined]
    principal = await runtime.verifier.verify(token)
    await runtime.revocations.revoke(principal.jti or "", principal.expires_at)
    revoked = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401
    assert revoked.headers["content-type"] == "application/problem+json"
    assert (
        await client.get("/me", headers={"Authorization": f"Bearer {other}"})
    ).status_code == 200


async def test_voiding_an_agents_tokens_refuses_older_and_accepts_newer(
    client: httpx.AsyncClient,
) -> None:
    agent = unique("a-")
    old = KEYS.token(agent_id=agent)
    runtime: Runtime = client.app_runtime  # type: ignore[attr-defined]
    await runtime.revocations.void_agent_tokens(agent, max_token_ttl_seconds=3600)
    assert (await client.get("/me", headers={"Authorization": f"Bearer {old}"})).status_code == 401
    new = KEYS.token(agent_id=agent)
    assert (await client.get("/me", headers={"Authorization": f"Bearer {new}"})).status_code == 200


async def test_errors_are_problem_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/me")
    assert missing.status_code == 401
    assert missing.json()["title"] == "Unauthorized"
    invalid = await client.post("/notes", json={"text": "far too long"})
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["status"] == 422
    assert body["errors"][0]["loc"] == ["body", "text"]
    conflict = await client.post("/notes", json={"text": "dup"})
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == "A note with this text exists"
    unknown = await client.get("/nowhere")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_an_unhandled_error_is_a_500_that_says_the_connection_closes() -> None:
    """uvicorn closes a connection after an unhandled error; the 500 says so, so a keep-alive
    client (the gateway) does not send its next request on it (issue 13, item 4)."""
    _, app = probe_app()
    async with served_app(app) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /boom HTTP/1.1\r\nhost: probe\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)  # read() ends when the server closes
        writer.close()
    assert answer.startswith(b"HTTP/1.1 500")
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert b"application/problem+json" in answer


async def test_roles_below_the_required_one_get_403(client: httpx.AsyncClient) -> None:
    manager = {"Authorization": f"Bearer {KEYS.token(Role.MANAGER)}"}
    admin = {"Authorization": f"Bearer {KEYS.token(Role.ADMIN)}"}
    assert (await client.get("/admin-only", headers=manager)).status_code == 403
    assert (await client.get("/admin-only", headers=admin)).status_code == 200


async def test_health_metrics_and_request_ids(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json()["status"] == "ok"
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"]["ok"] is True
    traced = await client.get("/health/live", headers={"X-Request-ID": "req-42"})
    assert traced.headers["x-request-id"] == "req-42"
    metrics = await client.get("/metrics")
    assert "http_requests_total" in metrics.text


async def test_docs_need_no_cdn(client: httpx.AsyncClient) -> None:
    await assert_docs_served_offline(client)


async def test_red_metrics_carry_route_templates_and_bounded_methods(
    client: httpx.AsyncClient,
) -> None:
    """One series per route template whatever the path, and an unknown method is `_OTHER`."""
    for i in range(3):
        await client.get(f"/nowhere/{unique('id-')}")
        await client.request(f"X{i}PURGE", "/me")
    await client.get("/me")
    text = (await client.get("/metrics")).text
    series = [
        line
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and 'service="probe"' in line
    ]
    assert not [line for line in series if "id-" in line or "PURGE" in line], series
    assert any('route="unmatched"' in line for line in series)
    assert any('method="_OTHER",route="/me"' in line for line in series)
    assert any('method="GET",route="/me"' in line for line in series)
