"""Many outbox events in one statement, for the scheduler's batches.

`quimbi_common.outbox.add_event` costs two round trips per event (insert + NOTIFY); a tick
settling a thousand clocks writes two thousand events. This writes the same rows (same
columns, envelope, key and correlation header) with one multi-row insert and one NOTIFY.
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
    "SELECT event_id, topic, key, payload, headers FROM unnest("
    "CAST(:event_ids AS uuid[]), CAST(:topics AS text[]), CAST(:keys AS text[]), "
    "CAST(:payloads AS jsonb[]), CAST(:headers AS jsonb[])) "
    "WITH ORDINALITY AS e(event_id, topic, key, payload, headers, n) ORDER BY n"
)


async def add_events(
    session: AsyncSession, events: Sequence[tuple[str, Contract]], *, source: str
) -> None:
    """Store events in the caller's transaction, in order; published only if it commits."""
    if not events:
        return
    columns: dict[str, list[str]] = {
        "event_ids": [],
        "topics": [],
        "keys": [],
        "payloads": [],
        "headers": [],
    }
    for topic, data in events:
        key, event = build_event(topic, data, source=source, correlation_id=correlation_id.get())
        columns["event_ids"].append(str(event.id))
        columns["topics"].append(topic)
        columns["keys"].append(key)
        columns["payloads"].append(event.model_dump_json())
        columns["headers"].append(json.dumps({"correlation_id": event.correlationid or ""}))
    await session.execute(_INSERT_MANY, columns)
    await session.execute(sa.text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"))
