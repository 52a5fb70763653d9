"""Many events into the outbox in one statement: a batched `quimbi_common.outbox.add_event`.

A recalculation pass can change thousands of scores in one transaction; one INSERT and one
NOTIFY per event would cost two round trips each. The envelope is built by the shared
`build_event`, and the rows are the ones the shared `OutboxRelay` publishes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.events import Contract, build_event
from quimbi_common.observability import correlation_id
from quimbi_common.outbox import NOTIFY_CHANNEL

_INSERT_MANY = sa.text(
    "INSERT INTO outbox (event_id, topic, key, payload, headers) "
    "SELECT event_id, :topic, key, payload::jsonb, CAST(:headers AS jsonb) "
    "FROM unnest(CAST(:event_ids AS uuid[]), CAST(:keys AS text[]), CAST(:payloads AS text[])) "
    "AS e(event_id, key, payload)"
)
_NOTIFY = sa.text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")


async def add_events(
    session: AsyncSession, topic: str, items: Sequence[Contract], *, source: str
) -> int:
    """Store one event per item in the caller's transaction; returns how many."""
    if not items:
        return 0
    correlation = correlation_id.get()
    event_ids, keys, payloads = [], [], []
    for item in items:
        key, event = build_event(topic, item, source=source, correlation_id=correlation)
        event_ids.append(event.id)
        keys.append(key)
        payloads.append(event.model_dump_json())
    await session.execute(
        _INSERT_MANY,
        {
            "topic": topic,
            "headers": json.dumps({"correlation_id": correlation or ""}),
            "event_ids": event_ids,
            "keys": keys,
            "payloads": payloads,
        },
    )
    await session.execute(_NOTIFY)
    return len(items)
