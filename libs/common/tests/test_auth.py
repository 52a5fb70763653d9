"""Token verification refuses every forged, stale or misdirected token (no I/O: keys are static)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from jose import jwt

from quimbi_common.auth import RevocationStore, StaticKeySet, TokenVerifier, public_key_pem
from quimbi_common.enums import Role
from quimbi_common.errors import UnauthorizedError
from quimbi_common.testing import TEST_AUDIENCE, TEST_ISSUER, SigningKeys

pytestmark = pytest.mark.unit
KEYS = SigningKeys()


def _verifier(keys: SigningKeys = KEYS) -> TokenVerifier:
    return TokenVerifier(StaticKeySet(keys.jwks), None, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_valid_token_gives_the_agent_and_role() -> None:
    principal = await _verifier().verify(KEYS.token(Role.MANAGER, agent_id="a-1"))
    assert principal.agent_id == "a-1"
    assert principal.role is Role.MANAGER
    assert principal.has_role(Role.TEAM_LEAD)
    assert not principal.has_role(Role.ADMIN)


async def test_alg_none_is_refused() -> None:
    claims = jwt.get_unverified_claims(KEYS.token())
    token = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': KEYS.kid})}.{_b64(claims)}."
    with pytest.raises(UnauthorizedError):
        await _verifier().verify(token)


async def test_hs256_signed_with_the_public_key_is_refused() -> None:
    claims = jwt.get_unverified_claims(KEYS.token())
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': KEYS.kid})}.{_b64(claims)}"
    secret = public_key_pem(KEYS.private_pem).encode()
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(UnauthorizedError):
        await _verifier().verify(forged)


async def test_expired_token_is_refused() -> None:
    token = KEYS.token(ttl_seconds=10, now=time.time() - 3600)
    with pytest.raises(UnauthorizedError):
        await _verifier().verify(token)


@pytest.mark.parametrize(("field", "value"), [("issuer", "someone-else"), ("audience", "other")])
async def test_wrong_issuer_or_audience_is_refused(field: str, value: str) -> None:
    with pytest.raises(UnauthorizedError):
        await _verifier().verify(KEYS.token(**{field: value}))


async def test_tampered_token_is_refused() -> None:
    header, _, signature = KEYS.token(Role.AGENT).split(".")
    claims = jwt.get_unverified_claims(KEYS.token(Role.AGENT))
    claims["role"] = "admin"
    with pytest.raises(UnauthorizedError):
        await _verifier().verify(f"{header}.{_b64(claims)}.{signature}")


async def test_token_from_an_unknown_key_is_refused() -> None:
    with pytest.raises(UnauthorizedError):
        await _verifier().verify(SigningKeys().token())


async def test_unknown_role_is_refused() -> None:
    with pytest.raises(UnauthorizedError):
        await _verifier().verify(KEYS.token("overlord"))


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.at_least(Role.MANAGER)
    assert Role.SENIOR_AGENT.at_least(Role.AGENT)
    assert not Role.TEAM_LEAD.at_least(Role.MANAGER)


def test_revocation_rule() -> None:
    assert RevocationStore.decide(b"1", None, issued_at=100.0)
    assert RevocationStore.decide(None, b"100.5", issued_at=100.0)
    assert not RevocationStore.decide(None, b"100.5", issued_at=100.6)
    assert not RevocationStore.decide(0, None, issued_at=100.0)
