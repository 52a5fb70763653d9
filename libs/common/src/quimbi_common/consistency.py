"""Consistency tokens: no stale 200 for what a 2xx just changed (read-your-writes, issue 14).

A write answers, besides its body, `X-Consistency-Token: <topic>/<event id>,...`: the events
its transaction stored in the outbox (`outbox.add_events` notes them). A client that sends the
token back on a follow-up (any service, through the gateway, which forwards both headers as
they are) makes that service wait, bounded, until its consumer has applied those of the events
it consumes (their ids are in its `processed_events`; the consumer's commit wakes the waiter
with a NOTIFY, see `catchup`). Events of topics the service does not consume cost nothing,
requests without the header cost nothing, and an event still unapplied after the bound is a
503 + `Retry-After` (never a stale 200). Entries that are not `<topic>/<uuid>` are ignored: the
token is a hint about freshness, not data.

The wait runs once the caller is authenticated (`catch_up`, the `authenticated` hook of
`auth.current_caller`), never before: a request with a forged or missing credential is a 401
at once, however many events its token names.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.requests import Request

from .catchup import CONSUMED_KEY
from .errors import ServiceUnavailableError

if TYPE_CHECKING:
    from .runtime import Runtime

HEADER = "X-Consistency-Token"
_HEADER = HEADER.lower().encode()
MAX_ENTRIES = 32  # more than any write stores; a longer header is cut, not waited for
_written: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "consistency_written", default=None
)

_APPLIED = sa.text(
    "SELECT count(*) FROM processed_events "
    "WHERE (consumer, event_id) IN "
    "(SELECT * FROM unnest(CAST(:consumers AS text[]), CAST(:ids AS uuid[])))"
)


def note_written(session: AsyncSession, topics: Sequence[str], event_ids: Sequence[str]) -> None:
    """Called by the outbox: these events are part of this request's write once `session`
    commits (a rolled-back attempt, e.g. one retried after a deadlock, names none)."""
    written = _written.get()
    if written is not None:
        entries = [f"{t}/{e}" for t, e in zip(topics, event_ids, strict=True)]
        session.sync_session.info.setdefault(_PENDING, []).append((written, entries))


_PENDING = "consistency_pending"


@sa.event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for written, entries in session.info.pop(_PENDING, ()):
        written.extend(entries)


@sa.event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def parse(value: str) -> list[tuple[str, uuid.UUID]]:
    """`(topic, event id)` of each well-formed entry, at most MAX_ENTRIES."""
    entries = []
    for raw in value.split(",")[:MAX_ENTRIES]:
        topic, _, event_id = raw.strip().rpartition("/")
        try:
            entries.append((topic, uuid.UUID(event_id)))
        except ValueError:
            continue
    return entries


async def catch_up(request: Request) -> None:
    """After authentication: wait, bounded, until this service has applied the events the
    request's token names that it consumes; past the bound a 503 + `Retry-After`."""
    token = request.headers.get(HEADER)
    if token is not None and not await _caught_up(request.app.state.runtime, token):
        bound = request.app.state.runtime.settings.read_your_writes_wait_seconds
        raise ServiceUnavailableError(
            f"This service has not yet applied the write named by {HEADER} "
            f"(waited {bound:g} s); retry shortly",
            retry_after=1,
        )


def _consumers(runtime: Runtime) -> dict[str, list[str]]:
    """Topic -> the consumer names that record its events in processed_events."""
    consumer = runtime.consumer
    if consumer is None or not runtime.watches_projections:
        return {}
    names: dict[str, list[str]] = {}
    for subscriptions in consumer.subscriptions.values():
        for subscription in subscriptions:
            names.setdefault(subscription.topic, []).append(subscription.name)
    return names


async def _caught_up(runtime: Runtime, token: str) -> bool:
    """True once every event of the token that this service consumes is applied (at once
    when there is none), False when the bound passes first."""
    names = _consumers(runtime)
    wanted = {
        (name, str(event_id)) for topic, event_id in parse(token) for name in names.get(topic, ())
    }
    if not wanted:
        return True
    consumers, event_ids = (list(column) for column in zip(*wanted, strict=True))
    engine = runtime.engine
    assert engine is not None

    async def applied() -> bool:
        async with engine.connect() as connection:
            found = await connection.scalar(_APPLIED, {"consumers": consumers, "ids": event_ids})
        return found == len(consumers)

    return await runtime.projections.until_true(CONSUMED_KEY, applied)


def collect() -> tuple[list[str], contextvars.Token[list[str] | None]]:
    """Start noting the events this request's writes store (the request layer calls it); the
    list fills as `note_written`'s sessions commit. Give the token back to `stop_collecting`."""
    written: list[str] = []
    return written, _written.set(written)


def stop_collecting(reset: contextvars.Token[list[str] | None]) -> None:
    _written.reset(reset)


def token_header(written: list[str]) -> tuple[bytes, bytes]:
    """The `X-Consistency-Token` header a 2xx write answers with."""
    return _HEADER, ",".join(written[:MAX_ENTRIES]).encode("latin-1")
