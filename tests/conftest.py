"""A whole suite on scratch databases, shared by the tiers that need one (e2e, contract).

The servers come from testcontainers when a Docker API is available (`DOCKER_HOST`), else from
`deploy/local` (the native PostgreSQL, Redis and Kafka `make test` starts). The services run as
the launcher runs them for `make run`, on offset ports, with their own databases, Redis
database and Kafka topic prefix, so a suite never touches a developer's `make run` data, nor
another suite's.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import pytest
import redis

from quimbi_common.testing import unique

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "deploy" / "local"), str(Path(__file__).parent / "e2e")]

from launcher import Options, Suite  # noqa: E402
from support import Servers  # noqa: E402

LaunchSuite = Callable[..., AbstractAsyncContextManager[Suite]]


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    if os.environ.get("E2E_GATEWAY_URL"):  # a running stack: only its Kafka is read directly
        yield Servers("", "", os.environ.get("E2E_KAFKA", "127.0.0.1:19092"))
        return
    if os.environ.get("DOCKER_HOST"):
        from containers import infrastructure_from_containers  # tests/e2e/containers.py

        with infrastructure_from_containers() as infra:
            yield Servers(infra.postgres_dsn, infra.redis_url, infra.kafka_bootstrap)
        return
    yield Servers(
        "postgresql://quimbi:quimbi@127.0.0.1:5432/postgres",
        "redis://127.0.0.1:6379/0",
        os.environ.get("E2E_KAFKA", "127.0.0.1:9092"),  # E2E_KAFKA: another Kafka than infra.sh's
    )


@pytest.fixture(scope="session")
def infra() -> Iterator[Servers]:
    with servers() as found:
        yield found


@pytest.fixture(scope="session")
def launch_suite(infra: Servers) -> LaunchSuite:
    """Start a whole suite: `async with launch_suite(name, port_offset=, redis_db=, env=)`
    (`split=True`: each service as a serve and a consume process, as `make run` runs it).

    Its Redis database is emptied first (login limits, caches, revocations); its PostgreSQL
    databases are dropped after it stops; its service logs stay under `.local/logs/<name>...`.
    """

    @contextlib.asynccontextmanager
    async def launch(
        name: str,
        *,
        port_offset: int,
        redis_db: int,
        env: dict[str, str],
        replicas: dict[str, int] | None = None,
        split: bool = False,
    ) -> AsyncIterator[Suite]:
        if not infra.postgres_dsn:
            raise RuntimeError(f"the {name} suite needs its own servers, not E2E_GATEWAY_URL's")
        redis_url = f"{infra.redis_url.rsplit('/', 1)[0]}/{redis_db}"
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        client.close()
        namespace = unique(f"_{name}")
        opts = Options(
            port_offset=port_offset,
            namespace=namespace,
            postgres_dsn=infra.postgres_dsn,
            redis_url=redis_url,
            kafka=infra.kafka_bootstrap,
            log_dir=ROOT / ".local" / "logs" / namespace.strip("_"),
            seed=False,
            echo_logs=False,
            extra_env={
                "AUTO_ASSIGN": "false",
                "CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
                "RATE_LIMIT_PER_AGENT": "100000",
                "RATE_LIMIT_PER_IP": "100000",
                **env,
            },
            replicas=replicas or {},
            split=split,
        )
        suite = Suite(opts)
        await suite.prepare_databases()
        await suite.start()
        try:
            await suite.wait_ready(timeout=180)
            yield suite
        finally:
            await suite.stop()
            conn = await asyncpg.connect(infra.postgres_dsn)
            try:
                for service in suite.services:
                    if service.database:
                        await conn.execute(
                            f'DROP DATABASE IF EXISTS "{service.database}" WITH (FORCE)'
                        )
            finally:
                await conn.close()

    return launch
