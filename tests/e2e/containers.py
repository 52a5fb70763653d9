"""PostgreSQL, Redis and Kafka in containers, for the end-to-end suite's testcontainers mode.

    with infrastructure_from_containers() as infra:
        infra.postgres_dsn      # postgresql://quimbi:quimbi@127.0.0.1:<port>/postgres
        infra.redis_url         # redis://127.0.0.1:<port>/0
        infra.kafka_bootstrap   # 127.0.0.1:<port>

The images are the public `postgres:16`, `redis:7` and `apache/kafka:<deploy/local's version>`.
Any Docker API serves (DOCKER_HOST; else podman's or Docker's default socket). On this project's
machines the API is podman's (`deploy/containers/setup.sh`), where no registry is reachable: the
images are then the local stand-ins, built on first use by `deploy/containers/images.sh`.
Kafka advertises the host-mapped port (a free port chosen up front and bound to the same number),
so clients on the host reach the broker through the address the broker hands out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
PODMAN_SOCKET = Path("/run/podman/podman.sock")
DOCKER_SOCKET = Path("/var/run/docker.sock")
PG_USER = PG_PASSWORD = "quimbi"
STARTUP_TIMEOUT = float(os.environ.get("CONTAINERS_STARTUP_TIMEOUT", "120"))
T = TypeVar("T")


def kafka_version() -> str:
    """The broker version the native setup pins, so both modes run the same Kafka."""
    pom = (ROOT / "deploy" / "local" / "kafka-pom.xml").read_text()
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert found, "deploy/local/kafka-pom.xml names no kafka.version"
    return found.group(1)


POSTGRES_IMAGE = "postgres:16"
REDIS_IMAGE = "redis:7"
KAFKA_IMAGE = f"apache/kafka:{kafka_version()}"


@dataclass(frozen=True)
class Infrastructure:
    postgres_dsn: str
    redis_url: str
    kafka_bootstrap: str


def docker_host() -> str | None:
    """The Docker API to use: DOCKER_HOST, else a podman or Docker socket that exists."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    for path in (PODMAN_SOCKET, DOCKER_SOCKET):
        if path.is_socket():
            return f"unix://{path}"
    return None


def docker_api_unavailable_reason() -> str | None:
    """None when a Docker API answers; otherwise why not (for a test's skip reason)."""
    host = docker_host()
    if host is None:
        return "no Docker API: DOCKER_HOST is unset and no podman/Docker socket exists"
    try:
        client = _docker_client(host)
        client.ping()
        client.close()
    except Exception as exc:  # any failure means the same thing here: no usable API
        return f"the Docker API at {host} does not answer: {exc}"
    return None


def _docker_client(host: str) -> Any:
    import docker

    return docker.DockerClient(base_url=host, timeout=30)


def _configure_testcontainers(host: str) -> None:
    """What MACHINE.md prescribes; read by testcontainers when it is first imported."""
    os.environ["DOCKER_HOST"] = host
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")


def _ensure_images(host: str) -> None:
    """On podman with no registry, build the local stand-ins for images that are missing."""
    client = _docker_client(host)
    try:
        missing = []
        for image in (POSTGRES_IMAGE, REDIS_IMAGE, KAFKA_IMAGE):
            try:
                client.images.get(image)
            except Exception:
                missing.append(image)
        engine = " ".join(c.get("Name", "") for c in client.version().get("Components", []))
    finally:
        client.close()
    if missing and "Podman" in engine:
        subprocess.run(
            [str(ROOT / "deploy" / "containers" / "images.sh"), "postgres", "redis", "kafka"],
            check=True,
            env={**os.environ, "SKIP_SETUP": "1"},
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from any context, even inside a running event loop."""

    async def main() -> T:
        return await coroutine_factory()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _wait(what: str, check: Callable[[], None], container: Any) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            check()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                logs = b"".join(container.get_logs()).decode(errors="replace")[-3000:]
                raise TimeoutError(
                    f"{what} not ready in {STARTUP_TIMEOUT:.0f}s: {exc}\n{logs}"
                ) from exc
            time.sleep(0.5)


def _postgres_ready(dsn: str) -> None:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.fetchval("SELECT 1")
        await conn.close()

    _run(probe)


def _redis_ready(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        assert client.ping()
    finally:
        client.close()


def _kafka_ready(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        await admin.start()
        try:
            await admin.describe_cluster()
        finally:
            await admin.close()

    _run(probe)


def kafka_environment(host_port: int) -> dict[str, str]:
    """A single-node KRaft broker (the apache/kafka image's variables) that advertises
    127.0.0.1:<host_port> to clients and talks to itself on an internal listener."""
    return {
        "CLUSTER_ID": "MkU3OEVBNTcwNTJENDM2Qk",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{host_port},BROKER://localhost:9093",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
        ),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "10",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "3",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true",
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx512m",
        "KAFKA_LOG4J_ROOT_LOGLEVEL": "WARN",
    }


@contextlib.contextmanager
def infrastructure_from_containers() -> Iterator[Infrastructure]:
    """Start the three servers (in parallel), wait until each answers, yield their addresses,
    and remove the containers afterwards."""
    host = docker_host()
    if host is None:
        raise RuntimeError("no Docker API: set DOCKER_HOST (see deploy/containers/setup.sh)")
    _configure_testcontainers(host)
    _ensure_images(host)
    from testcontainers.core.container import DockerContainer

    postgres_port, redis_port, kafka_port = free_port(), free_port(), free_port()
    postgres = (
        DockerContainer(POSTGRES_IMAGE)
        .with_env("POSTGRES_USER", PG_USER)
        .with_env("POSTGRES_PASSWORD", PG_PASSWORD)
        .with_env("POSTGRES_DB", "postgres")
        .with_command("postgres -c max_connections=400 -c fsync=off")
        .with_bind_ports(5432, postgres_port)
    )
    redis_server = DockerContainer(REDIS_IMAGE).with_bind_ports(6379, redis_port)
    kafka = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, kafka_port)
    for name, value in kafka_environment(kafka_port).items():
        kafka = kafka.with_env(name, value)

    started: list[Any] = []
    try:
        for container in (kafka, postgres, redis_server):  # Kafka first: it is the slowest
            container.start()
            started.append(container)
        infra = Infrastructure(
            postgres_dsn=f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{postgres_port}/postgres",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        )
        _wait("PostgreSQL", lambda: _postgres_ready(infra.postgres_dsn), postgres)
        _wait("Redis", lambda: _redis_ready(infra.redis_url), redis_server)
        _wait("Kafka", lambda: _kafka_ready(infra.kafka_bootstrap), kafka)
        yield infra
    finally:
        for container in reversed(started):
            _remove(container, host)


def _remove(container: Any, host: str) -> None:
    """Remove the container and its anonymous volumes (podman's API keeps them otherwise)."""
    volumes: list[str] = []
    with contextlib.suppress(Exception):
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        volumes = [m["Name"] for m in wrapped.attrs.get("Mounts", []) if m.get("Type") == "volume"]
    with contextlib.suppress(Exception):
        container.stop()
    if volumes:
        client = _docker_client(host)
        try:
            for name in volumes:
                with contextlib.suppress(Exception):
                    client.volumes.get(name).remove(force=True)
        finally:
            client.close()
