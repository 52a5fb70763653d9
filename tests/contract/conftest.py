"""The contract tier's own suite: fuzzing deletes agents, edits policies and reuses every id it
sees, so it never shares a suite (nor a Redis database) with the e2e tier."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from launcher import Suite


# Module scope: stopped when the tier is done, before the e2e suite starts in the same session.
@pytest.fixture(scope="module")
async def contract_suite(launch_suite) -> AsyncIterator[Suite]:  # type: ignore[no-untyped-def]
    e2e_offset = int(os.environ.get("E2E_PORT_OFFSET", "10000"))
    e2e_redis_db = int(os.environ.get("E2E_REDIS_DB", "2"))
    async with launch_suite(
        "contract",
        # The ports span 8001..8199: +500 never overlaps an e2e suite started alongside.
        port_offset=int(os.environ.get("CONTRACT_PORT_OFFSET", str(e2e_offset + 500))),
        redis_db=int(os.environ.get("CONTRACT_REDIS_DB", str(e2e_redis_db + 1))),
        env={"RATE_LIMIT_PER_API_KEY": "100000", "LOGIN_MAX_FAILURES_PER_IP": "100000"},
    ) as suite:
        yield suite
