"""The fault suite's stack: its own PostgreSQL, Redis and Kafka (started here, killed by the
tests), fault proxies in front of PostgreSQL and Kafka, and the services run by the launcher
(as `make run` runs them, plus a second scoring replica) on ports offset by 14000."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from quimbi_common.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "deploy" / "local"), str(Path(__file__).parent)]

from harness import OFFSET, PrivateInfra, Stack  # noqa: E402
from launcher import Options, Suite  # noqa: E402

NAMESPACE = "_faults"
ADMIN = {"email": "admin@example.com", "password": "admin-change-me"}


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    infra = PrivateInfra()
    if infra.local.exists():  # a fresh broker and database every run
        await _stop_quietly(infra)
        shutil.rmtree(infra.local)
    infra.local.mkdir(parents=True)
    await infra.start()
    try:
        async with (
            FaultProxy(("127.0.0.1", infra.pg_port)) as pg_proxy,
            FaultProxy(("127.0.0.1", infra.kafka_port), port=infra.kafka_advertised_port) as kp,
        ):
            opts = Options(
                port_offset=OFFSET,
                namespace=NAMESPACE,
                postgres_dsn=f"postgresql://quimbi:quimbi@127.0.0.1:{pg_proxy.port}/postgres",
                redis_url=f"redis://127.0.0.1:{infra.redis_port}/0",
                kafka=f"127.0.0.1:{infra.kafka_advertised_port}",
                log_dir=infra.local / "logs" / "services",
                seed=False,
                echo_logs=False,
                extra_env={
                    "AUTO_ASSIGN": "false",
                    "CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
                    "RATE_LIMIT_PER_AGENT": "1000000",
                    "RATE_LIMIT_PER_IP": "1000000",
                    "RATE_LIMIT_PER_API_KEY": "1000000",
                },
                replicas={"scoring": 2},
            )
            suite = Suite(opts)
            await suite.prepare_databases()
            await suite.start()
            try:
                await suite.wait_ready(timeout=240)
                token, agent_ids = await _people(suite.gateway_url)
                yield Stack(infra, suite, pg_proxy, kp, token, agent_ids)
            finally:
                await suite.stop()
    finally:
        await _stop_quietly(infra)


async def _stop_quietly(infra: PrivateInfra) -> None:
    try:
        await infra.stop()
    except RuntimeError as exc:
        print(f"stopping the fault suite's servers: {exc}")


async def _people(gateway: str) -> tuple[str, list[str]]:
    """The bootstrap admin's token and two agents to assign tickets to."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        login = await client.post("/api/agents/login", json=ADMIN)
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        ids = []
        for n in range(2):
            created = await client.post(
                "/api/agents",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "email": f"fault-agent-{n}@example.com",
                    "password": "fault-password-123",
                    "name": f"Fault agent {n}",
                    "role": "agent",
                    "department": "support",
                    "specializations": ["billing"],
                    "max_concurrent_tickets": 50,
                },
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
    return token, ids
