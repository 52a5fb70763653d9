"""`GET /api/tickets/live`: the live inbox as Server-Sent Events (see the service README)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from quimbi_common.auth import CurrentAgent, Principal
from quimbi_common.errors import ServiceUnavailableError, TooManyRequestsError
from quimbi_common.openapi import problems
from quimbi_common.runtime import provided

from ..api import SettingsDep
from ..settings import Settings
from .hub import LiveHub, Subscriber
from .items import HEARTBEAT, STREAM_ID, control, frame, may_see, stream_key

router = APIRouter(tags=["live"])

HubDep = Annotated[LiveHub, Depends(provided(LiveHub))]
_ID_PATTERN = STREAM_ID.pattern
_REPLAY_PAGE = 500

DESCRIPTION = """Server-Sent Events: what changes among the tickets the caller may see (the same
visibility as `GET /api/tickets`). Events: `ticket.created`, `ticket.updated`, `ticket.deleted`,
`message.added`, `ticket.scored` (the list order moves; `score.parts` is the breakdown),
`sla.warning`, `sla.breached`, each `data` one JSON object with `ticket_id` and
`assigned_agent_id`. The stream's own events: `ready` (first, `data.cursor` = where it starts),
`reset` (the resume point is older than what is kept: reload the list), `end` (`data.reason`:
`expired`, `revoked`, `overflow`, `shutdown`, `unavailable`; the server closes the stream).
Every event has an `id`: reconnect with `Last-Event-ID` (or `?since=`) to get everything after
it, without gaps, for `LIVE_RETENTION_SECONDS`. A comment line every `LIVE_HEARTBEAT_SECONDS`
keeps proxies from closing an idle stream."""


@router.get(
    "/api/tickets/live",
    summary="The live inbox (Server-Sent Events)",
    description=DESCRIPTION,
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problems(
            **{
                "429": "The agent has `LIVE_MAX_STREAMS_PER_AGENT` streams open here already",
                "503": "This process serves `LIVE_MAX_STREAMS` streams already: retry",
            }
        ),
    },
)
async def live_inbox(
    agent: CurrentAgent,
    hub: HubDep,
    settings: SettingsDep,
    since: Annotated[str | None, Query(pattern=_ID_PATTERN, max_length=41)] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=_ID_PATTERN, max_length=41)
    ] = None,
) -> StreamingResponse:
    _admit(hub, agent, settings)
    return StreamingResponse(
        _stream(hub, agent, last_event_id or since, settings),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _admit(hub: LiveHub, agent: Principal, settings: Settings) -> None:
    """Bound what one process holds open: in all, and per agent (a leaked tab, a reconnect loop).
    Counted when a stream opens; two opened at the same instant may both pass."""
    if len(hub.subscribers) >= settings.live_max_streams:
        raise ServiceUnavailableError(
            "This service holds as many live streams as it may; retry shortly", retry_after=5
        )
    if hub.streams_of(agent.agent_id or "") >= settings.live_max_streams_per_agent:
        raise TooManyRequestsError(
            f"At most {settings.live_max_streams_per_agent} live streams per agent are open "
            "at a time; close one first",
            headers={"Retry-After": "5"},
        )


async def _stream(
    hub: LiveHub, agent: Principal, resume: str | None, settings: Settings
) -> AsyncIterator[bytes]:
    subscriber = hub.subscribe(agent)  # before reading the log: nothing falls in between
    try:
        yield b"retry: 2000\n\n"
        if resume is not None and await hub.trimmed_past(resume):
            yield control("reset", {"reason": "too old", "since": resume})
            resume = None
        if resume is None:
            cursor = await hub.tail()
        else:
            cursor = resume
            async for entry_id, chunk in _replay(hub, agent, subscriber, resume):
                cursor = entry_id
                yield chunk
        yield control("ready", {"cursor": cursor}, cursor)
        async for chunk in _live(subscriber, agent, stream_key(cursor), settings):
            yield chunk
    except RedisError:  # the log cannot be read: end cleanly, the client comes back later
        yield control("end", {"reason": "unavailable"})
    finally:
        hub.unsubscribe(subscriber)


async def _replay(
    hub: LiveHub, agent: Principal, subscriber: Subscriber, after: str
) -> AsyncIterator[tuple[str, bytes]]:
    """What the log holds after `after`, in order, filtered like the live frames."""
    while True:
        entries = await hub.since(after, _REPLAY_PAGE)
        for entry_id, fields in entries:
            after = entry_id
            assignee = fields.get(b"a", b"").decode()
            previous = fields.get(b"p", b"").decode()
            if may_see(agent.agent_id, subscriber.sees_all, assignee, previous):
                topic = fields.get(b"t", b"").decode()
                yield entry_id, frame(entry_id, topic, fields[b"d"].decode())
        if len(entries) < _REPLAY_PAGE:
            return


async def _live(
    subscriber: Subscriber, agent: Principal, sent: tuple[int, int], settings: Settings
) -> AsyncIterator[bytes]:
    """Frames as the hub hands them over (skipping what the replay sent), heartbeats while
    idle, and the end: token expiry, revocation, overflow or shutdown."""
    heartbeat = settings.live_heartbeat_seconds
    while True:
        left = agent.expires_at - time.time()
        if left <= 0:
            subscriber.end("expired")
            yield control("end", {"reason": subscriber.ended})
            return
        try:
            item = await asyncio.wait_for(subscriber.queue.get(), timeout=min(heartbeat, left))
        except TimeoutError:
            yield HEARTBEAT
            continue
        if item is None:
            yield control("end", {"reason": subscriber.ended})
            return
        key, chunk = item
        if key > sent:
            sent = key
            yield chunk
