"""Login, tokens, logout and revocation, password rules, throttling, the bootstrap admin, keys
and what production refuses, against the real PostgreSQL and Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from jose import jwt
from pydantic import SecretStr

from quimbi_agents.keys import dev_private_key, load_keyring, parse_additional_keys
from quimbi_agents.main import build_app
from quimbi_agents.service.agents import Context, bootstrap_admin
from quimbi_agents.settings import DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD
from quimbi_common.auth import public_jwk
from quimbi_common.enums import Role
from quimbi_common.testing import SigningKeys, unique

pytestmark = pytest.mark.service


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_returns_a_signed_token_and_the_agent(h: Any) -> None:
    # given an agent
    agent = await h.agent(Role.SENIOR_AGENT)
    # when it logs in
    response = await h.login(agent["email"])
    # then it gets an RS256 token with the agreed claims, and its profile without a hash
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 24 * 3600
    assert body["agent"]["id"] == agent["id"]
    assert "hashed_password" not in body["agent"]
    assert body["agent"]["last_login_at"] is not None
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "RS256"
    jwks = (await h.client.get("/.well-known/jwks.json")).json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        body["access_token"],
        key,
        algorithms=["RS256"],
        audience=h.settings.jwt_audience,
        issuer=h.settings.jwt_issuer,
    )
    assert claims["sub"] == agent["id"]
    assert claims["email"] == agent["email"]
    assert claims["role"] == "senior_agent"
    assert claims["jti"]
    assert claims["exp"] - int(claims["iat"]) == 24 * 3600
    me = await h.client.get("/api/agents/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == agent["id"]


async def test_login_email_is_case_insensitive(h: Any) -> None:
    agent = await h.agent()
    response = await h.login(agent["email"].upper())
    assert response.status_code == 200


async def test_wrong_password_and_unknown_email_look_the_same_and_cost_the_same(
    h: Any, app: Any
) -> None:
    # given a known agent, and a count of bcrypt verifications
    agent = await h.agent()
    passwords = app.state.runtime.provided(Context).passwords
    calls: list[str] = []
    original = passwords.context.verify

    def counting_verify(secret: str, hashed: str) -> bool:
        calls.append(hashed.split("$")[2])  # the bcrypt cost of the hash checked
        return bool(original(secret, hashed))

    passwords.context.verify = counting_verify
    try:
        # when one login has a wrong password and another an unknown email
        wrong = await h.login(agent["email"], "not-the-password")
        unknown = await h.login(f"{unique('nobody-')}@quimbi.dev", "not-the-password")
    finally:
        del passwords.context.verify
    # then both get the same 401, each after one bcrypt check of the same cost
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["content-type"] == "application/problem+json"
    assert calls == ["04", "04"]


async def test_an_inactive_agent_cannot_log_in(h: Any) -> None:
    agent = await h.agent()
    await h.client.patch(f"/api/agents/{agent['id']}", headers=h.admin, json={"is_active": False})
    response = await h.login(agent["email"])
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid email or password"


async def test_logout_revokes_that_token_only(h: Any) -> None:
    agent = await h.agent()
    first = (await h.login(agent["email"])).json()["access_token"]
    second = (await h.login(agent["email"])).json()["access_token"]
    assert (await h.client.post("/api/agents/logout", headers=bearer(first))).status_code == 204
    assert (await h.client.get("/api/agents/me", headers=bearer(first))).status_code == 401
    assert (await h.client.get("/api/agents/me", headers=bearer(second))).status_code == 200


@pytest.mark.parametrize(
    "change",
    [{"role": "senior_agent"}, {"is_active": False}, {"password": "a-brand-new-password"}],
    ids=["role", "deactivation", "password"],
)
async def test_changing_role_activity_or_password_voids_the_agents_tokens(
    h: Any, change: dict[str, Any]
) -> None:
    # given an agent holding a token
    agent = await h.agent()
    token = (await h.login(agent["email"])).json()["access_token"]
    assert (await h.client.get("/api/agents/me", headers=bearer(token))).status_code == 200
    # when a manager changes it
    manager = await h.agent(Role.MANAGER)
    response = await h.client.patch(
        f"/api/agents/{agent['id']}", headers=manager["headers"], json=change
    )
    assert response.status_code == 200, response.text
    # then the old token no longer works
    assert (await h.client.get("/api/agents/me", headers=bearer(token))).status_code == 401


async def test_after_a_role_change_a_new_login_carries_the_new_role(h: Any) -> None:
    agent = await h.agent()
    await h.client.patch(f"/api/agents/{agent['id']}", headers=h.admin, json={"role": "team_lead"})
    token = (await h.login(agent["email"])).json()["access_token"]
    assert jwt.get_unverified_claims(token)["role"] == "team_lead"
    assert (await h.client.get("/api/agents", headers=bearer(token))).status_code == 200


async def test_deleting_an_agent_voids_its_tokens_and_its_login(h: Any) -> None:
    agent = await h.agent()
    token = (await h.login(agent["email"])).json()["access_token"]
    deleted = await h.client.delete(f"/api/agents/{agent['id']}", headers=h.admin)
    assert deleted.status_code == 204
    assert (await h.client.get("/api/agents/me", headers=bearer(token))).status_code == 401
    assert (await h.login(agent["email"])).status_code == 401


@pytest.mark.parametrize(
    ("password", "status"),
    [("short-pass1", 422), ("twelve-chars", 201), ("p" * 72, 201), ("p" * 73, 422)],
    ids=["11-chars", "12-chars", "72-bytes", "73-bytes"],
)
async def test_new_passwords_need_12_characters_and_fit_in_bcrypts_72_bytes(
    h: Any, password: str, status: int
) -> None:
    response = await h.client.post(
        "/api/agents",
        headers=h.admin,
        json={"email": f"{unique('pw-')}@quimbi.dev", "password": password, "name": "P"},
    )
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["errors"][0]["loc"] == ["body", "password"]


async def test_a_72_byte_password_logs_in_and_a_longer_one_is_refused_not_truncated(
    h: Any,
) -> None:
    # given an agent whose password uses all 72 bytes bcrypt reads
    password = "k" * 72
    agent = await h.agent(password=password)
    # then it logs in with it, and the same password with more bytes appended does not
    assert (await h.login(agent["email"], password)).status_code == 200
    assert (await h.login(agent["email"], password + "extra")).status_code == 401


async def test_multibyte_passwords_are_measured_in_bytes(h: Any) -> None:
    response = await h.client.patch(
        f"/api/agents/{(await h.agent())['id']}", headers=h.admin, json={"password": "é" * 37}
    )
    assert response.status_code == 422


async def test_the_bootstrap_admin_exists_and_logs_in(h: Any) -> None:
    response = await h.login(DEFAULT_ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD)
    assert response.status_code == 200
    assert response.json()["agent"]["role"] == "admin"


async def test_bootstrap_does_nothing_when_an_admin_exists(h: Any, app: Any) -> None:
    context = app.state.runtime.provided(Context)
    assert await context.units.run(lambda unit: bootstrap_admin(unit, context)) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, "BOOTSTRAP_ADMIN_PASSWORD is the development default"),
        ({"bootstrap_admin_password": "a-real-secret-1"}, "JWT_PRIVATE_KEY is not set"),
        (
            {"bootstrap_admin_password": "a-real-secret-1", "jwt_private_key": "PEM"},
            "API_KEY is the development default",
        ),
    ],
    ids=["default-admin-password", "generated-key", "default-api-key"],
)
def test_production_refuses_to_start_on_development_secrets(
    overrides: dict[str, Any], reason: str, tmp_path: Path, make: Any
) -> None:
    values = {"environment": "production", "jwt_private_key": None, "jwt_keys_dir": tmp_path}
    settings = make("postgresql+asyncpg://unused/none", **{**values, **overrides})
    with pytest.raises(RuntimeError, match=reason):
        build_app(settings)
    assert list(tmp_path.iterdir()) == []  # and it generated no key on the way


def test_production_starts_with_real_secrets(make: Any) -> None:
    keys = SigningKeys()
    settings = make(
        "postgresql+asyncpg://unused/none",
        environment="production",
        bootstrap_admin_password=SecretStr("a-real-secret-1"),
        jwt_private_key=SecretStr(keys.private_pem),
        jwt_key_id="prod-1",
        api_key=SecretStr("a-real-integration-key"),
    )
    app = build_app(settings)
    assert app.state.runtime.provided(Context).keyring.kid == "prod-1"


def test_a_weak_bootstrap_password_is_refused_in_any_environment(make: Any) -> None:
    settings = make("postgresql+asyncpg://unused/none", bootstrap_admin_password="short")
    with pytest.raises(RuntimeError, match="at least 12"):
        build_app(settings)


def test_development_generates_one_key_and_reuses_it(tmp_path: Path) -> None:
    first = load_keyring(None, None, None, tmp_path)
    second = load_keyring(None, None, None, tmp_path)
    assert first.generated
    assert first.private_pem == second.private_pem
    assert first.kid == second.kid
    assert (tmp_path / "agents-jwt-private.pem").stat().st_mode & 0o777 == 0o600
    assert dev_private_key(tmp_path) == first.private_pem


def test_the_jwks_publishes_the_current_and_the_previous_key_for_rotation() -> None:
    old, new = SigningKeys(), SigningKeys()
    previous = json.dumps({"keys": [public_jwk(old.private_pem, "old-key")]})
    ring = load_keyring(new.private_pem, "new-key", previous, Path("/nonexistent"))
    assert [k["kid"] for k in ring.jwks["keys"]] == ["new-key", "old-key"]
    assert all("d" not in k for k in ring.jwks["keys"])  # public parts only
    with pytest.raises(ValueError, match="JWKS"):
        parse_additional_keys('[{"kty": "RSA"}]')


async def test_tokens_signed_by_a_rotated_out_key_still_verify(
    database_url: str, http_only: Any, make: Any
) -> None:
    # given a service signing with a new key and still publishing the previous one
    old, new = SigningKeys(), SigningKeys()
    settings = make(
        database_url,
        jwt_private_key=SecretStr(new.private_pem),
        jwt_key_id=new.kid,
        jwt_additional_public_keys=json.dumps({"keys": old.jwks["keys"]}),
    )
    async with http_only(settings) as (_, client):
        # then a token from the old key is accepted, and one from an unknown key is not
        agent_token = old.token(Role.MANAGER)
        ok = await client.get("/api/agents", headers=bearer(agent_token))
        stranger = await client.get(
            "/api/agents", headers=bearer(SigningKeys().token(Role.MANAGER))
        )
    assert ok.status_code == 200
    assert stranger.status_code == 401


async def test_jwks_is_public_and_cacheable(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json()["keys"][0]["alg"] == "RS256"
    assert "max-age" in response.headers["cache-control"]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@quimbi.dev"},
        {"password": "whatever-pass"},
        {"email": "", "password": "whatever-pass"},
        {"email": "a@quimbi.dev", "password": ""},
        {"email": "a@quimbi.dev", "password": 123456789012},
        {"email": "a@quimbi.dev", "password": "whatever-pass", "remember_me": True},
    ],
    ids=["no-password", "no-email", "empty-email", "empty-password", "number", "unknown-field"],
)
async def test_bad_login_bodies_are_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/api/agents/login", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_non_json_login_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/agents/login", content=b"email=a&password=b", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422
