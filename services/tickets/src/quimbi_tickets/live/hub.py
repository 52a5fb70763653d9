"""The live log → this process's connections: one Redis reader per process, fanned out in
memory to the streams it serves, each filtered by the visibility rule.

Each entry is framed once (SSE bytes) and handed to the connections that may see it; a
connection holds only its own queue. A connection that falls `live_queue_max` frames behind is
ended (`reset`-free: its client reconnects with `Last-Event-ID` and resumes from the log), so a
slow reader never grows this process's memory. Tokens are re-checked for revocation once a
second for all connections in one Redis round trip; a revoked one ends its stream.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from quimbi_common.auth import Principal, RevocationStore

from ..settings import Settings
from .items import frame, may_see, stream_key

log = logging.getLogger(__name__)

LIVE_CONNECTIONS = Gauge("live_connections", "Open live inbox streams in this process")
LIVE_FRAMES = Counter("live_frames_total", "Live log entries read by this process's hub")
LIVE_ENDED = Counter("live_streams_ended_total", "Live streams ended by the server", ["reason"])

Frame = tuple[tuple[int, int], bytes]
_BLOCK_MS = 5000


@dataclass(eq=False)
class Subscriber:
    """One open stream: who, and the frames waiting to be sent to them."""

    principal: Principal
    queue: asyncio.Queue[Frame | None]
    ended: str | None = None
    sees_all: bool = field(init=False)

    def __post_init__(self) -> None:
        self.sees_all = self.principal.sees_all_tickets

    def offer(self, item: Frame) -> None:
        if self.ended is not None:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.end("overflow")

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            LIVE_ENDED.labels(reason).inc()
            # room for the sentinel even when full: drop what it could not keep up with
            while self.queue.full():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class LiveHub:
    """Reads the live log (`XREAD BLOCK`), hands each entry to the subscribers that may see it."""

    def __init__(self, settings: Settings, key: str, revocations: RevocationStore) -> None:
        self.settings = settings
        self.key = key
        self.revocations = revocations
        # Its own connection: XREAD blocks longer than the runtime client's 1 s socket timeout.
        self.redis = aioredis.from_url(
            settings.redis_url, socket_timeout=_BLOCK_MS / 1000 + 5, socket_connect_timeout=1.0
        )
        self.subscribers: set[Subscriber] = set()
        self._per_agent: collections.Counter[str] = collections.Counter()

    def streams_of(self, agent_id: str) -> int:
        """How many streams this process serves `agent_id` now."""
        return self._per_agent[agent_id]

    def subscribe(self, principal: Principal) -> Subscriber:
        subscriber = Subscriber(principal, asyncio.Queue(self.settings.live_queue_max))
        self.subscribers.add(subscriber)
        self._per_agent[principal.agent_id or ""] += 1
        LIVE_CONNECTIONS.set(len(self.subscribers))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            agent_id = subscriber.principal.agent_id or ""
            self._per_agent[agent_id] -= 1
            if self._per_agent[agent_id] <= 0:
                del self._per_agent[agent_id]
        LIVE_CONNECTIONS.set(len(self.subscribers))

    async def tail(self) -> str:
        """The id of the log's newest entry ("0-0" for an empty log)."""
        newest: Any = await self.redis.xrevrange(self.key, count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def trimmed_past(self, entry_id: str) -> bool:
        """Whether entries after `entry_id` have been trimmed already (a resume would miss them):
        Redis 7 keeps the greatest id it ever deleted."""
        try:
            info = await self.redis.xinfo_stream(self.key)
        except RedisError as exc:
            if "no such key" in str(exc).lower():
                return entry_id != "0-0"  # nothing there: an id from elsewhere cannot resume
            raise
        deleted = info.get("max-deleted-entry-id") or b"0-0"
        deleted = deleted.decode() if isinstance(deleted, bytes) else str(deleted)
        last = info.get("last-generated-id") or b"0-0"
        last = last.decode() if isinstance(last, bytes) else str(last)
        if stream_key(entry_id) > stream_key(last):
            return True  # an id this log never gave (another Redis, or flushed)
        return stream_key(entry_id) < stream_key(deleted)

    async def since(self, entry_id: str, count: int = 500) -> list[tuple[str, dict[bytes, bytes]]]:
        """Entries after `entry_id` (exclusive), oldest first, at most `count`."""
        entries: Any = await self.redis.xrange(self.key, min=f"({entry_id}", count=count)
        return [(raw_id.decode(), fields) for raw_id, fields in entries]

    async def run(self) -> None:
        """Read the log for as long as the service runs (a background task)."""
        backoff = self.settings.backoff()
        last: str | None = None
        while True:
            try:
                if last is None:
                    last = await self.tail()
                answer: Any = await self.redis.xread({self.key: last}, count=500, block=_BLOCK_MS)
                backoff.reset()
            except RedisError as exc:
                log.warning("live hub: Redis unavailable (%s); retrying", exc)
                await backoff.sleep()
                continue
            for _, entries in answer or ():
                for raw_id, fields in entries:
                    last = raw_id.decode()
                    self.dispatch(last, fields)

    def dispatch(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        LIVE_FRAMES.inc()
        assignee = fields.get(b"a", b"").decode()
        previous = fields.get(b"p", b"").decode()
        data: Frame | None = None
        for subscriber in self.subscribers:
            principal = subscriber.principal
            if may_see(principal.agent_id, subscriber.sees_all, assignee, previous):
                if data is None:
                    topic = fields.get(b"t", b"").decode()
                    data = (stream_key(entry_id), frame(entry_id, topic, fields[b"d"].decode()))
                subscriber.offer(data)

    async def watch_tokens(self) -> None:
        """End the streams whose token was revoked (logout, role change, deactivation): one
        `MGET` a second for all of this process's connections."""
        interval = self.settings.live_auth_check_seconds
        while True:
            await asyncio.sleep(interval)
            subscribers = [s for s in self.subscribers if s.ended is None]
            if not subscribers:
                continue
            keys: list[str] = []
            for subscriber in subscribers:
                principal = subscriber.principal
                keys.append(self.revocations.jti_key(principal.jti or ""))
                keys.append(self.revocations.void_key(principal.agent_id or ""))
            try:
                values = await self.revocations.redis.mget(keys)
            except RedisError as exc:  # the hub cannot read either: nothing is sent meanwhile
                log.warning("live hub: cannot check revocations (%s)", exc)
                continue
            for n, subscriber in enumerate(subscribers):
                revoked, void_before = values[2 * n], values[2 * n + 1]
                if RevocationStore.decide(revoked, void_before, subscriber.principal.issued_at):
                    subscriber.end("revoked")

    async def aclose(self) -> None:
        for subscriber in list(self.subscribers):
            subscriber.end("shutdown")
        await self.redis.aclose()
