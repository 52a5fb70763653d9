"""docker-compose.yml: every service and server is there, healthy-checked, started after what it
needs, wired to the others by name, and the infrastructure honours the official images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = {"postgres", "redis", "kafka"}
PORTS = {
    "gateway": 8001,
    "tickets": 8101,
    "agents": 8102,
    "sla": 8103,
    "scoring": 8104,
    "ai-proxy": 8105,
    "standin": 8199,
}

# each service with a database also runs as `<name>-consume`: its consumers, relay and jobs
CONSUMERS = {"tickets", "agents", "sla", "scoring", "ai-proxy"}

pytestmark = pytest.mark.unit


def service_directories() -> set[str]:
    return {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    """The long-running services (one-shot jobs sit in profiles, started on demand)."""
    return {name: s for name, s in compose["services"].items() if "profiles" not in s}


def test_the_demo_data_job_seeds_through_the_gateway_once_it_is_healthy(compose) -> None:
    job = compose["services"]["demo-data"]
    assert job["profiles"] == ["demo"]
    assert job["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    assert job["restart"] == "no"
    assert "./deploy/local:/seed:ro" in job["volumes"]
    assert 'seed_demo_data("http://gateway:8001")' in job["command"][-1]


def kafka_version() -> str:
    pom = (ROOT / "deploy" / "local" / "kafka-pom.xml").read_text()
    return re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom).group(1)


def test_every_service_and_server_is_in_the_compose_file(services) -> None:
    # given the services in the repository
    expected = service_directories() | INFRASTRUCTURE
    # then each has exactly one compose service of the same name, and its consumers another
    assert set(services) == expected | {f"{name}-consume" for name in CONSUMERS}


def test_consumers_run_apart_from_the_api_in_the_same_image(services) -> None:
    for name in CONSUMERS:
        consume, serve = services[f"{name}-consume"], services[name]
        assert consume["image"] == serve["image"]
        assert consume["environment"]["PROCESS_ROLE"] == "consume"
        assert serve["environment"]["PROCESS_ROLE"] == "serve"
        # the healthcheck asks PORT: a consume container answers health there
        assert consume["environment"]["CONSUME_PORT"] == consume["environment"]["PORT"]
        assert consume["environment"]["DATABASE_URL"] == serve["environment"]["DATABASE_URL"]
        assert "ports" not in consume  # no API to publish
        assert "build" not in consume  # the image its API's container builds
    # the gateway reaches the APIs only
    assert not any(target.endswith("-consume") for target in services["gateway"]["depends_on"])


def test_servers_are_the_public_images_the_tests_name(services) -> None:
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_container_has_a_healthcheck(services) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test, name
        assert test[0] in ("CMD", "CMD-SHELL"), name


def test_each_service_image_is_built_from_the_one_dockerfile(services) -> None:
    for name in service_directories():
        service = services[name]
        assert service["image"] == f"quimbi/{name}:latest"
        assert service["build"]["context"] == "."
        dockerfile = ROOT / service["build"]["dockerfile"]
        assert dockerfile == ROOT / "services" / "Dockerfile"
        assert dockerfile.exists(), name
        # then the one Dockerfile is told which service, on the port the container serves
        args = service["build"]["args"]
        assert args["SERVICE"] == name
        assert args["PORT"] == str(PORTS[name])


def test_dependencies_exist_wait_for_health_and_form_no_cycle(services) -> None:
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends.items():
            # then each dependency exists, has a healthcheck, and is waited for until healthy
            assert target in services, (name, target)
            assert rule == {"condition": "service_healthy"}, (name, target)
        graph[name] = set(depends)
    order: list[str] = []
    while graph:
        ready = sorted(n for n, deps in graph.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(graph)}"
        order.extend(ready)
        for n in ready:
            del graph[n]


def test_services_with_a_database_start_after_the_servers_and_name_a_created_database(
    services,
) -> None:
    init_sql = "".join(
        p.read_text() for p in (ROOT / "deploy/containers/postgres-init").glob("*.sql")
    )
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql))
    for name in service_directories():
        env = services[name].get("environment", {})
        has_migrations = (ROOT / "services" / name / "migrations").is_dir()
        assert ("DATABASE_URL" in env) == has_migrations, name
        if has_migrations:
            database = env["DATABASE_URL"].rsplit("/", 1)[1]
            assert database in created, name
            assert env["DATABASE_URL"].startswith(
                "postgresql+asyncpg://quimbi:quimbi@postgres:5432/"
            )
            assert set(services[name]["depends_on"]) >= INFRASTRUCTURE, name


def test_services_reach_each_other_by_compose_name_and_port(services) -> None:
    env = services["gateway"]["environment"]
    for name, variable in [
        ("tickets", "TICKETS_URL"),
        ("agents", "AGENTS_URL"),
        ("sla", "SLA_URL"),
        ("scoring", "SCORING_URL"),
        ("ai-proxy", "AI_PROXY_URL"),
    ]:
        assert env[variable] == f"http://{name}:{PORTS[name]}"
    assert env["QUIMBI_BASE_URL"] == f"http://standin:{PORTS['standin']}"
    assert env["JWKS_URL"] == f"http://agents:{PORTS['agents']}/.well-known/jwks.json"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_each_service_listens_on_its_port_and_publishes_it_on_loopback(services) -> None:
    for name, port in PORTS.items():
        env = services[name]["environment"]
        assert str(port) in (env.get("PORT"), env.get("STANDIN_PORT")), name
        (published,) = services[name]["ports"]
        # "127.0.0.1:${GATEWAY_PORT:-8001}:8001"
        host_port, container_port = re.fullmatch(
            r"127\.0\.0\.1:\$\{\w+:-(\d+)\}:(\d+)", published
        ).groups()
        assert int(host_port) == port, name
        assert int(container_port) == port, name


def test_kafka_advertises_the_port_it_publishes_to_the_host(services) -> None:
    kafka = services["kafka"]
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    host_listener = re.search(r"HOST://127\.0\.0\.1:(\$\{[^}]+\})", advertised).group(1)
    (published,) = kafka["ports"]
    assert published == f"127.0.0.1:{host_listener}:29092"
    assert "HOST://0.0.0.0:29092" in kafka["environment"]["KAFKA_LISTENERS"]
