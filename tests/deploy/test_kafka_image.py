"""The Kafka stand-in's configure script turns the apache/kafka image's environment variables
into server.properties the way the official image does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CONFIGURE = Path(__file__).resolve().parents[2] / "deploy" / "containers" / "kafka" / "configure"

pytestmark = pytest.mark.unit


def configure(env: dict[str, str], config_dir: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    output = subprocess.run(
        ["bash", str(CONFIGURE), str(config_dir)],
        env={**clean, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [line for line in output.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_without_variables_it_is_the_official_single_node_broker(tmp_path) -> None:
    properties = configure({}, tmp_path)
    assert properties["process.roles"] == "broker,controller"
    assert properties["node.id"] == "1"
    assert properties["controller.quorum.voters"] == "1@localhost:29093"
    assert "PLAINTEXT_HOST://0.0.0.0:9092" in properties["listeners"]
    assert properties["advertised.listeners"] == (
        "PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092"
    )
    assert properties["offsets.topic.replication.factor"] == "1"


def test_variable_names_map_to_property_names(tmp_path) -> None:
    properties = configure(
        {
            "KAFKA_NUM_PARTITIONS": "3",
            "KAFKA_LISTENER_NAME_INTERNAL_SSL_KEY_PASSWORD": "x",
            "KAFKA_LOG_RETENTION__MS": "1000",
            "KAFKA_CONFLUENT___SUPPORT_METRICS": "y",
        },
        tmp_path,
    )
    assert properties["num.partitions"] == "3"
    assert properties["listener.name.internal.ssl.key.password"] == "x"
    assert properties["log.retention_ms"] == "1000"
    assert properties["confluent-support.metrics"] == "y"


def test_jvm_and_logging_variables_are_not_properties(tmp_path) -> None:
    properties = configure(
        {"KAFKA_HEAP_OPTS": "-Xmx1g", "KAFKA_OPTS": "-Dx", "KAFKA_LOG4J_ROOT_LOGLEVEL": "WARN"},
        tmp_path,
    )
    assert not {"heap.opts", "opts", "log4j.root.loglevel"} & set(properties)


def test_listeners_follow_the_advertised_listeners_when_unset(tmp_path) -> None:
    properties = configure(
        {"KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://127.0.0.1:41234,BROKER://kafka:9093"},
        tmp_path,
    )
    assert properties["listeners"] == "PLAINTEXT://0.0.0.0:41234,BROKER://0.0.0.0:9093"


def test_a_mounted_server_properties_is_the_base_and_defaults_stay_out(tmp_path) -> None:
    (tmp_path / "server.properties").write_text("node.id=7\nlog.dirs=/data\n")
    properties = configure({"KAFKA_NUM_PARTITIONS": "5"}, tmp_path)
    assert properties == {"node.id": "7", "log.dirs": "/data", "num.partitions": "5"}
