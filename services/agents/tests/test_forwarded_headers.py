"""Issue 13, item 5: X-Forwarded-For is believed only from the peers FORWARDED_ALLOW_IPS names
(for this service, the gateway), so a caller cannot step out of its own login throttle by
claiming another address, neither on the agents port nor through the gateway. Real uvicorn
servers, with the options `python -m quimbi_agents` / `quimbi_gateway` use."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from quimbi_agents.main import build_app
from quimbi_common.runtime import forwarded_header_options
from quimbi_common.testing import REDIS_URL, served_app, unique
from quimbi_gateway.main import build_app as build_gateway
from quimbi_gateway.settings import Settings as GatewaySettings

pytestmark = pytest.mark.service

LOGIN = "/api/agents/login"
SPOOFED = {"X-Forwarded-For": "10.9.8.7"}
GATEWAY_ADDRESS = "127.0.0.2"  # a loopback address of its own, so the test can be "the gateway"


@contextlib.asynccontextmanager
async def agents_trusting(make: Any, database_url: str, trusted: str) -> AsyncIterator[str]:
    """The agents service on a real port, believing X-Forwarded-For from `trusted` only, with a
    per-address ceiling of three failed logins."""
    settings = make(
        database_url,
        forwarded_allow_ips=trusted,
        login_max_failures_per_ip=3,
        login_throttle_prefix=unique("test-login:"),
    )
    async with served_app(build_app(settings), **forwarded_header_options(settings)) as url:
        yield url


@contextlib.asynccontextmanager
async def gateway_to(agents_url: str, trusted: str = "") -> AsyncIterator[str]:
    settings = GatewaySettings(
        environment="test",
        redis_url=REDIS_URL,
        agents_url=agents_url,
        jwks_url=f"{agents_url}/.well-known/jwks.json",
        forwarded_allow_ips=trusted,
        rate_limit_per_ip=100_000,
        rate_limit_prefix=unique("test-gateway-rl:"),
        log_json=False,
        log_level="WARNING",
    )
    async with served_app(build_gateway(settings), **forwarded_header_options(settings)) as url:
        yield url


async def _reach_the_ceiling(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        response = await client.post(
            LOGIN, json={"email": f"{unique('nobody-')}@quimbi.dev", "password": "wrong-pass-x"}
        )
        assert response.status_code == 401


async def test_directly_on_agents_a_forwarded_address_from_a_caller_is_ignored(
    h: Any, make: Any, database_url: str
) -> None:
    newcomer = await h.agent()
    credentials = {"email": newcomer["email"], "password": newcomer["password"]}
    async with agents_trusting(make, database_url, GATEWAY_ADDRESS) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as caller:
            # given a caller whose address has reached its ceiling of failed logins
            await _reach_the_ceiling(caller)
            # when it claims to be someone else
            spoofed = await caller.post(LOGIN, json=credentials, headers=SPOOFED)
        # while the gateway's address is believed (the control: the header does work from it)
        gateway = httpx.AsyncHTTPTransport(local_address=GATEWAY_ADDRESS)
        async with httpx.AsyncClient(base_url=url, transport=gateway) as from_gateway:
            relayed = await from_gateway.post(
                LOGIN, json=credentials, headers={"X-Forwarded-For": "10.9.8.8"}
            )
    # then the caller is still held to its own address
    assert spoofed.status_code == 429
    assert "retry-after" in spoofed.headers
    assert relayed.status_code == 200


async def test_through_the_gateway_a_forwarded_address_from_a_caller_is_ignored(
    h: Any, make: Any, database_url: str
) -> None:
    newcomer = await h.agent()
    credentials = {"email": newcomer["email"], "password": newcomer["password"]}
    # given agents believing the gateway (here on 127.0.0.1), and a gateway believing nobody
    async with (
        agents_trusting(make, database_url, "127.0.0.1") as agents_url,
        gateway_to(agents_url) as gateway_url,
        httpx.AsyncClient(base_url=gateway_url, trust_env=False) as caller,
    ):
        # when a caller at its ceiling logs in through the gateway claiming another address
        await _reach_the_ceiling(caller)
        spoofed = await caller.post(LOGIN, json=credentials, headers=SPOOFED)
        # (the control: a gateway told to believe this caller as a proxy passes the address on)
        async with (
            gateway_to(agents_url, trusted="127.0.0.1") as trusting_url,
            httpx.AsyncClient(base_url=trusting_url, trust_env=False) as behind_a_proxy,
        ):
            relayed = await behind_a_proxy.post(LOGIN, json=credentials, headers=SPOOFED)
    # then it is still held to its own address
    assert spoofed.status_code == 429
    assert spoofed.headers["content-type"] == "application/problem+json"
    assert relayed.status_code == 200
