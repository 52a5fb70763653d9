"""Login throttling (issue 13, item 6), rule by rule, against the real Redis: growing delays per
(account, address) and per account, a per-address ceiling an office can live with, and a
correct password from a known-good address let through."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from quimbi_agents.service.agents import Context
from quimbi_agents.settings import Settings
from quimbi_common.testing import unique

pytestmark = pytest.mark.service

PROBLEM = "application/problem+json"


def new_address() -> str:
    return "10." + ".".join(str(b) for b in uuid.uuid4().bytes[:3])


class Caller:
    """Logins to one app from one client address."""

    def __init__(self, app: FastAPI, address: str) -> None:
        self.address = address
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://agents")

    async def login(self, email: str, password: str) -> httpx.Response:
        return await self.client.post(
            "/api/agents/login", json={"email": email, "password": password}
        )


@pytest.fixture
def throttled(database_url: str, http_only: Any, make: Any) -> Any:
    """`async with throttled(**settings) as (app, caller):` an app with these throttle settings;
    `caller(address)` logs in from an address."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[tuple[FastAPI, Any]]:
        settings: Settings = make(
            database_url, login_throttle_prefix=unique("test-login:"), **overrides
        )
        async with http_only(settings) as (app, _):
            callers: list[Caller] = []

            def caller(address: str) -> Caller:
                callers.append(Caller(app, address))
                return callers[-1]

            try:
                yield app, caller
            finally:
                for each in callers:
                    await each.client.aclose()

    return start


async def _wait_is_over(app: FastAPI, key: str) -> None:
    """As if the current delay had passed (rather than sleeping through it)."""
    await app.state.runtime.redis.hset(key, "until", 0)


async def test_failures_for_one_account_from_one_address_meet_growing_delays(
    h: Any, throttled: Any
) -> None:
    # given an agent, and a service allowing two free failures per (account, address)
    agent = await h.agent()
    async with throttled(
        login_free_failures_per_account_address=2,
        login_free_failures_per_account=100,
        login_delay_base_seconds=10,
    ) as (app, caller):
        guesser, office = caller(new_address()), caller(new_address())
        # when a third wrong password comes from one address
        for _ in range(3):
            assert (await guesser.login(agent["email"], "wrong-password-x")).status_code == 401
        # then even the right password from there must wait the first delay
        first = await guesser.login(agent["email"], agent["password"])
        assert first.status_code == 429
        assert first.headers["content-type"] == PROBLEM
        assert 9 <= int(first.headers["retry-after"]) <= 10
        # and after that wait, one more failure doubles it
        throttle = app.state.runtime.provided(Context).throttle
        pair_key = throttle.keys(agent["email"].lower(), guesser.address).pair
        await _wait_is_over(app, pair_key)
        assert (await guesser.login(agent["email"], "wrong-password-x")).status_code == 401
        second = await guesser.login(agent["email"], agent["password"])
        assert second.status_code == 429
        assert 19 <= int(second.headers["retry-after"]) <= 20
        # while the same account from another address is not held up
        assert (await office.login(agent["email"], agent["password"])).status_code == 200


async def test_a_successful_login_clears_the_accounts_failures(h: Any) -> None:
    agent = await h.agent()
    free = h.settings.login_free_failures_per_account_address
    for _ in range(free - 1):
        assert (await h.login(agent["email"], "wrong-password-x")).status_code == 401
    assert (await h.login(agent["email"])).status_code == 200
    for _ in range(free):
        assert (await h.login(agent["email"], "wrong-password-x")).status_code == 401
    assert (await h.login(agent["email"])).status_code == 200


async def test_an_account_guessed_at_from_many_addresses_waits_but_its_agent_gets_in(
    h: Any, throttled: Any
) -> None:
    # given an agent who has logged in from the office before
    agent = await h.agent()
    async with throttled(
        login_free_failures_per_account=3,
        login_free_failures_per_account_address=100,
        login_delay_base_seconds=60,
    ) as (_, caller):
        office = caller(new_address())
        assert (await office.login(agent["email"], agent["password"])).status_code == 200
        # when four addresses each fail once on that account
        for _ in range(4):
            response = await caller(new_address()).login(agent["email"], "wrong-password-x")
            assert response.status_code == 401
        # then the account waits, even for the right password from a new address
        stranger = await caller(new_address()).login(agent["email"], agent["password"])
        assert stranger.status_code == 429
        assert 59 <= int(stranger.headers["retry-after"]) <= 60
        # a wrong password from the office is still refused with the wait
        assert (await office.login(agent["email"], "wrong-password-x")).status_code == 429
        # but the right password from the office gets in
        assert (await office.login(agent["email"], agent["password"])).status_code == 200


async def test_one_addresses_typos_do_not_lock_out_a_colleague(h: Any, throttled: Any) -> None:
    """Issue 13: ~20 failures from one address used to lock every account out of it."""
    default_ceiling = Settings.model_fields["login_max_failures_per_ip"].default
    assert default_ceiling >= 100  # hundreds: an office behind one NAT
    colleague = await h.agent()
    async with throttled(login_max_failures_per_ip=default_ceiling) as (_, caller):
        office = caller(new_address())
        # given 25 failed logins from the office's one address, over several accounts
        for i in range(25):
            response = await office.login(f"{unique('typo-')}-{i}@quimbi.dev", "wrong-password")
            assert response.status_code == 401
        # then a colleague who never logged in from there still gets in
        response = await office.login(colleague["email"], colleague["password"])
    assert response.status_code == 200


async def test_the_per_address_ceiling_lets_only_known_good_correct_passwords_through(
    h: Any, throttled: Any
) -> None:
    regular, newcomer = await h.agent(), await h.agent()
    async with throttled(login_max_failures_per_ip=3) as (_, caller):
        office = caller(new_address())
        # given an agent who logged in from this address before
        assert (await office.login(regular["email"], regular["password"])).status_code == 200
        # when the address reaches its ceiling of failures
        for _ in range(3):
            response = await office.login(f"{unique('x-')}@quimbi.dev", "whatever-pass")
            assert response.status_code == 401
        # then an account new to this address is refused before any password check
        refused = await office.login(newcomer["email"], newcomer["password"])
        assert refused.status_code == 429
        assert refused.headers["content-type"] == PROBLEM
        assert 0 < int(refused.headers["retry-after"]) <= 900
        # and the known-good account gets in with its password, not with a guess
        assert (await office.login(regular["email"], "wrong-password-x")).status_code == 429
        assert (await office.login(regular["email"], regular["password"])).status_code == 200
        # from another address the newcomer is not affected
        elsewhere = await caller(new_address()).login(newcomer["email"], newcomer["password"])
    assert elsewhere.status_code == 200
