"""Rate limits in Redis per agent, per integration key and per client IP; and what happens
while Redis is down (limits fall back to each replica's memory, tokens get 503)."""

import pytest

from quimbi_common.testing import unique

pytestmark = pytest.mark.service

PROBLEM = "application/problem+json"
HOUR = 3600  # a long window, so a test never straddles two


def _quota(response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["ratelimit-limit"]), int(h["ratelimit-remaining"]), int(h["ratelimit-reset"])


async def test_agent_over_its_limit_gets_429_with_retry_after(start_gateway, keys) -> None:
    headers = keys.headers("agent")
    async with start_gateway(rate_limit_per_agent=3, rate_limit_window_seconds=HOUR) as gw:
        allowed = [await gw.client.get("/api/tickets", headers=headers) for _ in range(3)]
        refused = await gw.client.get("/api/tickets", headers=headers)
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [_quota(r)[:2] for r in allowed] == [(3, 2), (3, 1), (3, 0)]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    limit, remaining, reset = _quota(refused)
    assert (limit, remaining) == (3, 0)
    assert 0 < reset <= HOUR
    assert refused.headers["retry-after"] == str(reset)


async def test_each_agent_has_its_own_budget(start_gateway, keys) -> None:
    busy, other = keys.headers("agent"), keys.headers("agent")
    async with start_gateway(rate_limit_per_agent=1, rate_limit_window_seconds=HOUR) as gw:
        await gw.client.get("/api/tickets", headers=busy)
        busy_again = await gw.client.get("/api/tickets", headers=busy)
        others_first = await gw.client.get("/api/tickets", headers=other)
    assert busy_again.status_code == 429
    assert others_first.status_code == 200


async def test_requests_without_a_token_are_limited_per_ip(start_gateway) -> None:
    async with start_gateway(rate_limit_per_ip=3, rate_limit_window_seconds=HOUR) as gw:
        login = [await gw.client.post("/api/agents/login", json={"email": "x"}) for _ in range(2)]
        refused_credentials = await gw.client.get("/api/tickets")  # counts too
        over = await gw.client.post("/api/agents/login", json={"email": "x"})
    assert [r.status_code for r in login] == [200, 200]
    assert _quota(login[1])[:2] == (3, 1)
    assert refused_credentials.status_code == 401
    assert over.status_code == 429
    assert over.headers["content-type"] == PROBLEM


async def test_x_forwarded_for_from_an_untrusted_caller_changes_nothing(start_gateway) -> None:
    """Issue 13 item 5: by default no peer is a trusted proxy, so a caller cannot pick the
    address it is counted under, nor the one the services are told."""
    async with start_gateway(rate_limit_per_ip=2, rate_limit_window_seconds=HOUR) as gw:
        attempts = [
            await gw.client.post(
                "/api/agents/login", json={}, headers={"X-Forwarded-For": f"10.9.8.{i}"}
            )
            for i in range(3)
        ]
    assert [r.status_code for r in attempts] == [200, 200, 429]
    told = dict(attempts[0].json()["headers"])
    assert told["x-forwarded-for"] == "127.0.0.1"


async def test_x_forwarded_for_from_a_named_proxy_gives_the_client_address(start_gateway) -> None:
    async with start_gateway(
        rate_limit_per_ip=2, rate_limit_window_seconds=HOUR, forwarded_allow_ips="127.0.0.1"
    ) as gw:
        attempts = [
            await gw.client.post(
                "/api/agents/login",
                json={},
                headers={"X-Forwarded-For": f"203.0.113.9, 10.9.8.{i}"},
            )
            for i in range(3)
        ]
    assert [r.status_code for r in attempts] == [200, 200, 200]
    told = dict(attempts[2].json()["headers"])
    assert told["x-forwarded-for"] == "10.9.8.2"


async def test_failed_token_checks_count_against_the_ip(start_gateway) -> None:
    bad = {"Authorization": "Bearer forged"}
    async with start_gateway(rate_limit_per_ip=2, rate_limit_window_seconds=HOUR) as gw:
        attempts = [(await gw.client.get("/api/tickets", headers=bad)) for _ in range(3)]
    assert [r.status_code for r in attempts] == [401, 401, 429]


async def test_integration_key_has_its_own_budget(start_gateway) -> None:
    async with start_gateway(rate_limit_per_api_key=2, rate_limit_window_seconds=HOUR) as gw:
        key = {"X-API-Key": gw.settings.api_key.get_secret_value()}
        codes = [(await gw.client.post("/api/tickets", headers=key)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_replicas_share_the_counts_in_redis(start_gateway, keys) -> None:
    # given two gateway replicas on the same Redis key space
    headers = keys.headers("agent")
    shared = {
        "rate_limit_prefix": unique("test-gateway-rl:"),
        "rate_limit_per_agent": 2,
        "rate_limit_window_seconds": HOUR,
    }
    async with start_gateway(**shared) as first, start_gateway(**shared) as second:
        # when an agent spends its budget across both
        a = await first.client.get("/api/tickets", headers=headers)
        b = await second.client.get("/api/tickets", headers=headers)
        c = await first.client.get("/api/tickets", headers=headers)
    # then the third request is refused, whichever replica it reaches
    assert [a.status_code, b.status_code, c.status_code] == [200, 200, 429]


async def test_while_redis_is_down_limits_fail_open_to_local_memory_and_tokens_get_503(
    start_gateway, keys, dead_url
) -> None:
    # given a gateway whose Redis is unreachable
    redis_down = dead_url.replace("http://", "redis://") + "/0"
    async with start_gateway(
        redis_url=redis_down, rate_limit_per_ip=2, rate_limit_window_seconds=HOUR
    ) as gw:
        key = {"X-API-Key": gw.settings.api_key.get_secret_value()}
        # then logins are still limited, per replica
        logins = [
            (await gw.client.post("/api/agents/login", json={})).status_code for _ in range(3)
        ]
        # and the integration key still gets through
        integration = await gw.client.post("/api/tickets", headers=key)
        # but a token whose revocation cannot be checked is refused (fail closed)
        with_token = await gw.client.get("/api/tickets", headers=keys.headers("agent"))
    assert logins == [200, 200, 429]
    assert integration.status_code == 200
    assert "ratelimit-remaining" in integration.headers
    assert with_token.status_code == 503
    assert with_token.headers["content-type"] == PROBLEM
    assert with_token.headers["retry-after"] == "1"
