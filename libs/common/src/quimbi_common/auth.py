"""Tokens and who may do what: RS256 JWTs verified against a JWKS, revocation in Redis,
the ordered roles of ARCHITECTURE §3, and the FastAPI dependencies routes use.

Revocation fails closed: when Redis cannot be asked, a token is not accepted (503), since a
revoked token must fail everywhere within a second.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import httpx
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, Request
from jose import JWTError, jwk, jwt
from jose.backends.base import Key
from redis.exceptions import RedisError

from .enums import Role
from .errors import ForbiddenError, ServiceUnavailableError, UnauthorizedError
from .settings import CommonSettings

log = logging.getLogger(__name__)
ALGORITHM = "RS256"
INTEGRATION: Literal["integration"] = "integration"


# --- keys and signing -------------------------------------------------------------------------


def generate_rsa_private_key_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@functools.lru_cache(maxsize=16)
def signing_key(private_pem: str) -> Key:
    """A private key parsed once: parsing a PEM runs RSA checks costing tens of milliseconds."""
    return jwk.construct(private_pem, ALGORITHM)


@functools.lru_cache(maxsize=64)
def public_jwk(private_or_public_pem: str, kid: str) -> dict[str, str]:
    """The public JWK (with `kid`, `use`, `alg`) for a PEM key."""
    pem = private_or_public_pem
    if "PRIVATE KEY" in pem:
        pem = public_key_pem(pem)
    data = jwk.construct(pem, ALGORITHM).to_dict()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": ALGORITHM,
        "n": data["n"],
        "e": data["e"],
    }


def issue_token(
    private_key: str | Key,
    kid: str,
    *,
    subject: str,
    email: str,
    role: Role | str,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    now: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign an access token; `iat` keeps milliseconds so "void before T" is exact."""
    issued = round(now if now is not None else time.time(), 3)
    claims: dict[str, Any] = {
        "sub": subject,
        "email": email,
        "role": str(role),
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "nbf": int(issued),
        "exp": int(issued) + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    key = signing_key(private_key) if isinstance(private_key, str) else private_key
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
    return token, claims


# --- key sets -----------------------------------------------------------------------------------


class KeySet(Protocol):
    async def key(self, kid: str) -> dict[str, str] | None: ...


class StaticKeySet:
    """Keys known up front (the agents service's own, or a test's)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = {k["kid"]: k for k in jwks.get("keys", [])}

    async def key(self, kid: str) -> dict[str, str] | None:
        return self._keys.get(kid)


class RemoteKeySet:
    """A JWKS fetched over HTTP, cached, and refetched on an unknown `kid` (at most every 5 s).

    The last good set is also kept in Redis (`auth:jwks:<url>`), so a service restarted while the
    agents service is down still checks tokens. A `kid` that cannot be looked up because the
    set cannot be fetched raises `ServiceUnavailableError` (503): a 401 would log the agent out
    for an outage that is not theirs."""

    def __init__(
        self,
        url: str,
        *,
        cache: aioredis.Redis | None = None,
        ttl_seconds: float = 300,
        min_refresh_seconds: float = 5,
    ) -> None:
        self.url = url
        self.cache = cache
        self.ttl = ttl_seconds
        self.min_refresh = min_refresh_seconds
        self._keys: dict[str, dict[str, str]] = {}
        self._fetched_at = -math.inf
        self._fetch_failed = False
        self._lock = asyncio.Lock()
        self._cache_key = f"auth:jwks:{url}"

    def _stale(self, kid: str) -> bool:
        age = time.monotonic() - self._fetched_at
        return age > self.ttl or (kid not in self._keys and age > self.min_refresh)

    async def key(self, kid: str) -> dict[str, str] | None:
        if self._stale(kid):
            async with self._lock:  # one fetch for a burst of requests
                if self._stale(kid):
                    await self._refresh()
        found = self._keys.get(kid)
        if found is None and self._fetch_failed:
            raise ServiceUnavailableError(
                "The token's signing key cannot be fetched right now", retry_after=5
            )
        return found

    async def _refresh(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                document = response.json()
                keys = {k["kid"]: k for k in document.get("keys", [])}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self._fetch_failed = True
            if not self._keys:
                self._keys = await self._cached_keys()
            log.warning(
                "could not fetch JWKS from %s (%s); using %d cached keys",
                self.url,
                exc,
                len(self._keys),
            )
        else:
            self._fetch_failed = False
            self._keys = keys
            await self._store(document)  # every time: Redis may have restarted empty
        finally:
            self._fetched_at = time.monotonic()

    async def _cached_keys(self) -> dict[str, dict[str, str]]:
        if self.cache is None:
            return {}
        try:
            raw = await self.cache.get(self._cache_key)
            return {k["kid"]: k for k in json.loads(raw).get("keys", [])} if raw else {}
        except (RedisError, ValueError, KeyError, TypeError) as exc:
            log.warning("could not read the cached JWKS: %s", exc)
            return {}

    async def _store(self, document: dict[str, Any]) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.set(self._cache_key, json.dumps(document))
        except RedisError as exc:
            log.warning("could not cache the JWKS: %s", exc)


def key_set_from_settings(settings: CommonSettings, cache: aioredis.Redis | None = None) -> KeySet:
    if settings.jwks_json:
        return StaticKeySet(json.loads(settings.jwks_json))
    return RemoteKeySet(settings.jwks_url, cache=cache)


# --- revocation ---------------------------------------------------------------------------------


class RevocationStore:
    """Revoked token ids, and per-agent "tokens issued before T are void" marks, in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    @staticmethod
    def jti_key(jti: str) -> str:
        return f"auth:revoked:{jti}"

    @staticmethod
    def void_key(agent_id: str) -> str:
        return f"auth:void-before:{agent_id}"

    @staticmethod
    def decide(revoked: object, void_before: bytes | str | None, issued_at: float) -> bool:
        """The rule, given the two keys' values: a revoked `jti`, or issued before the void mark."""
        return bool(revoked) or (void_before is not None and issued_at < float(void_before))

    async def revoke(self, jti: str, expires_at: float) -> None:
        ttl = max(1, int(expires_at - time.time()) + 1)
        await self.redis.set(self.jti_key(jti), "1", ex=ttl)

    async def void_agent_tokens(self, agent_id: str, *, max_token_ttl_seconds: int) -> None:
        """Every token of this agent issued until now stops working (`iat` is rounded to the
        millisecond, so the mark sits one millisecond past the current one)."""
        void_before = math.ceil(time.time() * 1000) / 1000 + 0.001
        await self.redis.set(
            self.void_key(agent_id), f"{void_before:.3f}", ex=max_token_ttl_seconds + 60
        )

    async def is_revoked(self, jti: str, agent_id: str, issued_at: float) -> bool:
        revoked, void_before = await self.redis.mget(self.jti_key(jti), self.void_key(agent_id))
        return revoked is not None or (void_before is not None and issued_at < float(void_before))


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is calling: an agent with a role, or the integration key."""

    kind: Literal["agent", "integration"]
    agent_id: str | None = None
    email: str | None = None
    role: Role | None = None
    jti: str | None = None
    issued_at: float = 0.0
    expires_at: float = 0.0
    token: str | None = None

    @property
    def is_agent(self) -> bool:
        return self.kind == "agent"

    def has_role(self, role: Role) -> bool:
        return self.role is not None and self.role.at_least(role)

    @property
    def sees_all_tickets(self) -> bool:
        """Senior agents and up see every ticket; the integration key creates tickets too."""
        return self.kind == INTEGRATION or self.has_role(Role.SENIOR_AGENT)


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        revocations: RevocationStore | None,
        *,
        issuer: str,
        audience: str,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self.cache_size = cache_size
        self._verified: dict[str, Principal] = {}

    async def verify(self, token: str) -> Principal:
        """A principal for a valid, unrevoked token; UnauthorizedError otherwise.

        Signature checks are cached per token (bounded); revocation is asked every time."""
        principal = self._verified.get(token)
        if principal is None or principal.expires_at <= time.time():
            principal = await self._check_signature(token)
            if len(self._verified) >= self.cache_size:
                self._verified.clear()
            self._verified[token] = principal
        if self.revocations is not None:
            try:
                revoked = await self.revocations.is_revoked(
                    principal.jti or "", principal.agent_id or "", principal.issued_at
                )
            except RedisError as exc:
                raise ServiceUnavailableError("Token revocation store unavailable") from exc
            if revoked:
                raise UnauthorizedError("Token has been revoked")
        return principal

    async def _check_signature(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise UnauthorizedError("Malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise UnauthorizedError("Token algorithm not accepted")
        key = await self.keys.key(str(header.get("kid", "")))
        if key is None:
            raise UnauthorizedError("Token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iat": True,
                    "require_sub": True,
                    "require_jti": True,
                },
            )
            role = Role(claims["role"])
        except (JWTError, KeyError, ValueError) as exc:
            raise UnauthorizedError(f"Invalid token: {exc}") from exc
        return Principal(
            kind="agent",
            agent_id=str(claims["sub"]),
            email=claims.get("email"),
            role=role,
            jti=str(claims["jti"]),
            issued_at=float(claims["iat"]),
            expires_at=float(claims["exp"]),
            token=token,
        )


# --- FastAPI dependencies -----------------------------------------------------------------------


@dataclass
class AuthConfig:
    """What the dependencies need, kept on `app.state.auth`. `authenticated` runs once a
    caller is known, before the route (read-your-writes: `consistency.catch_up`), so nothing
    it costs is paid for a caller that is not."""

    verifier: TokenVerifier
    api_key: str | None
    authenticated: Callable[[Request], Awaitable[None]] | None = None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def current_caller(request: Request) -> Principal:
    """An agent (Bearer token) or the integration (X-API-Key); then `authenticated`."""
    config: AuthConfig = request.app.state.auth
    token = bearer_token(request)
    if token:
        caller = await config.verifier.verify(token)
    else:
        api_key = request.headers.get("x-api-key")
        if not (api_key and config.api_key and secrets.compare_digest(api_key, config.api_key)):
            raise UnauthorizedError()
        caller = Principal(kind=INTEGRATION)
    if config.authenticated is not None:
        await config.authenticated(request)
    return caller


async def current_agent(caller: Annotated[Principal, Depends(current_caller)]) -> Principal:
    if not caller.is_agent:
        raise ForbiddenError(
            "The integration key may only create tickets, post customer messages and rate tickets"
        )
    return caller


def require_role(role: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting agents of `role` or above."""

    async def dependency(agent: Annotated[Principal, Depends(current_agent)]) -> Principal:
        if not agent.has_role(role):
            raise ForbiddenError(f"Requires role {role.value} or above")
        return agent

    return dependency


Caller = Annotated[Principal, Depends(current_caller)]
CurrentAgent = Annotated[Principal, Depends(current_agent)]
# The role gates routes declare, written once for every service.
TeamLead = Annotated[Principal, Depends(require_role(Role.TEAM_LEAD))]
Manager = Annotated[Principal, Depends(require_role(Role.MANAGER))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
