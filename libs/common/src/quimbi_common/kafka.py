"""Kafka plumbing: the broker, the producer settings, and topic creation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from .events import TOPICS, dead_letter_topic
from .settings import CommonSettings

log = logging.getLogger(__name__)


def create_broker(settings: CommonSettings) -> KafkaBroker:
    """The FastStream broker a service consumes with (and publishes dead letters through)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.service_name,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        logger=logging.getLogger(f"{settings.service_name}.kafka"),
        log_level=logging.DEBUG,  # "Received"/"Processed" per message: not for INFO logs
    )


def create_producer(settings: CommonSettings) -> AIOKafkaProducer:
    """An idempotent producer (acks=all) for the outbox relay."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-outbox",
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        request_timeout_ms=10_000,
    )


def all_topic_names(settings: CommonSettings) -> list[str]:
    """Every event topic and its dead-letter topic, with the configured prefix."""
    names = [settings.topic(t.name) for t in TOPICS.values()]
    return names + [dead_letter_topic(name) for name in names]


async def ensure_topics(settings: CommonSettings, names: Iterable[str] | None = None) -> None:
    """Create the topics a service uses (idempotent), so consumers never race auto-creation."""
    wanted = sorted(set(names or all_topic_names(settings)))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=settings.kafka_topic_partitions, replication_factor=1)
            for name in wanted
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica was first
                await admin.create_topics(missing)
            log.info("created %d topics", len(missing))
    finally:
        await admin.close()
