"""Credentials at the edge: JWTs verified with libs/common (revocation included), the
integration key, and the routes open without either."""

import time

import pytest
import redis.asyncio as aioredis
from jose import jwt

from quimbi_common.auth import RevocationStore
from quimbi_common.testing import REDIS_URL, SigningKeys, unique

pytestmark = pytest.mark.service

PROBLEM = "application/problem+json"


@pytest.fixture
async def revocations():
    redis = aioredis.from_url(REDIS_URL)
    yield RevocationStore(redis)
    await redis.aclose()


def _claims(token: str) -> dict:
    return jwt.get_unverified_claims(token)


async def test_request_without_credentials_is_refused_at_the_edge(gateway) -> None:
    response = await gateway.client.get("/api/tickets")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert "ratelimit-limit" in response.headers


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz"],
)
async def test_malformed_or_foreign_credentials_are_refused(gateway, authorization) -> None:
    response = await gateway.client.get("/api/tickets", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


async def test_token_signed_by_an_unknown_key_is_refused(gateway) -> None:
    stranger = SigningKeys()
    response = await gateway.client.get("/api/tickets", headers=stranger.headers("admin"))
    assert response.status_code == 401


async def test_expired_token_is_refused(gateway, keys) -> None:
    token = keys.token("agent", ttl_seconds=60, now=time.time() - 3600)
    response = await gateway.client.get(
        "/api/tickets", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


async def test_token_for_another_audience_is_refused(gateway, keys) -> None:
    token = keys.token("agent", audience="someone-else")
    response = await gateway.client.get(
        "/api/tickets", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


async def test_valid_token_passes_and_is_forwarded_unchanged(gateway, keys) -> None:
    token = keys.token("senior_agent")
    response = await gateway.client.get(
        "/api/sla/policies/urgent", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert dict(response.json()["headers"])["authorization"] == f"Bearer {token}"


async def test_revoked_token_is_refused_at_the_edge(gateway, keys, revocations) -> None:
    # given a token that works
    token = keys.token("agent")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await gateway.client.get("/api/tickets", headers=headers)).status_code == 200
    # when it is revoked (logout)
    claims = _claims(token)
    await revocations.revoke(claims["jti"], claims["exp"])
    # then the next request with it is refused, although its signature check is cached
    response = await gateway.client.get("/api/tickets", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "Token has been revoked"


async def test_tokens_issued_before_an_agents_void_mark_are_refused(
    gateway, keys, revocations
) -> None:
    # given an agent with a token in use
    agent_id = unique("agent-")
    old = {"Authorization": f"Bearer {keys.token('agent', agent_id)}"}
    assert (await gateway.client.get("/api/tickets", headers=old)).status_code == 200
    # when the agent is deactivated (all its tokens so far void)
    await revocations.void_agent_tokens(agent_id, max_token_ttl_seconds=3600)
    # then the old token fails, and one issued afterwards works (after the old token's request:
    # the mark sits up to 2 ms ahead, as `iat` has millisecond precision)
    assert (await gateway.client.get("/api/tickets", headers=old)).status_code == 401
    new = {"Authorization": f"Bearer {keys.token('agent', agent_id)}"}
    assert (await gateway.client.get("/api/tickets", headers=new)).status_code == 200


async def test_integration_key_passes_to_the_services(gateway) -> None:
    key = gateway.settings.api_key.get_secret_value()
    response = await gateway.client.post(
        "/api/tickets", headers={"X-API-Key": key}, json={"subject": "from the shop"}
    )
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["upstream"] == "tickets"
    assert dict(echoed["headers"])["x-api-key"] == key


async def test_wrong_integration_key_is_refused_at_the_edge(gateway) -> None:
    response = await gateway.client.post("/api/tickets", headers={"X-API-Key": "guess"})
    assert response.status_code == 401


async def test_login_is_open_and_ignores_a_stale_token(gateway, keys) -> None:
    stale = keys.token("agent", ttl_seconds=60, now=time.time() - 3600)
    response = await gateway.client.post(
        "/api/agents/login",
        headers={"Authorization": f"Bearer {stale}"},
        json={"email": "a@example.com", "password": "x"},
    )
    assert response.status_code == 200
    assert response.json()["login"] is True


async def test_jwks_is_open_and_served_by_agents(gateway, keys) -> None:
    response = await gateway.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == keys.jwks


async def test_logout_is_not_open(gateway) -> None:
    response = await gateway.client.post("/api/agents/logout")
    assert response.status_code == 401


async def test_gateway_verifies_against_the_jwks_fetched_from_agents(
    start_gateway, upstreams, keys
) -> None:
    # given a gateway with no static keys, pointed at the (test) agents' JWKS endpoint
    jwks_url = f"{upstreams['agents'].url}/.well-known/jwks.json"
    async with start_gateway(jwks_json=None, jwks_url=jwks_url) as gw:
        # then tokens signed with that key pass, and others do not
        good = await gw.client.get("/api/tickets", headers=keys.headers("agent"))
        bad = await gw.client.get("/api/tickets", headers=SigningKeys().headers("agent"))
    assert good.status_code == 200
    assert bad.status_code == 401
