from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from quimbi_common.db import create_engine
from quimbi_common.outbox import infrastructure_tables
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import KAFKA, REDIS_URL, create_database, drop_database, unique


@pytest.fixture
async def settings() -> AsyncIterator[CommonSettings]:
    """A database holding only the outbox tables, and a Kafka topic prefix of its own."""
    name = unique("test_common_")
    url = await create_database(name)
    settings = CommonSettings(
        service_name=unique("svc-"),
        database_url=url,
        redis_url=REDIS_URL,
        kafka_bootstrap_servers=KAFKA,
        kafka_topic_prefix=f"{unique('t')}.",
        kafka_topic_partitions=1,
        outbox_poll_interval_seconds=0.5,
        consumer_retry_backoff_seconds=0.01,
    )
    engine = create_engine(settings)
    metadata = sa.MetaData()
    infrastructure_tables(metadata)
    sa.Table("notes", metadata, sa.Column("id", sa.String, primary_key=True))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    yield settings
    await drop_database(name)
