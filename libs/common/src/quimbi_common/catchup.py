"""Read-your-writes for projections: a request about an id this service has not heard of yet
waits, bounded, for its consumer to apply the event, instead of answering 404.

The consumer's transaction calls `notify_applied(session, key)`; PostgreSQL delivers the NOTIFY
when that transaction commits, to every process LISTENing on the service's database, so it
works whichever replica or process consumed the event. Each API process holds one LISTEN
connection (`ProjectionWatch.run`, a runtime background task) and wakes its own waiters; there
is no polling. The bound (`read_your_writes_wait_seconds`, 2 s) caps every wait, counted from
the request. Ticket ids are UUIDv7, so the id tells its age: an unknown id made in the last
`read_your_writes_new_id_seconds` (10 s) may wait, an older one is answered at once (its event
would have arrived by now), other UUIDs (from before UUIDv7) may wait, and an id no service
could have issued is answered at once. Known ids never wait: the first lookup finds them.
A ticket the projection knows but the caller may not see (`NotVisibleYet`) waits the whole
bound whatever its age: a transfer to the caller may be on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import ids
from .backoff import Backoff
from .db import asyncpg_dsn
from .errors import NotFoundError
from .observability import PROJECTION_WAITS

log = logging.getLogger(__name__)
CHANNEL = "quimbi_projection"
CONSUMED_KEY = "*"  # sent by every consumer transaction that applied events (consistency tokens)
_PING_INTERVAL_SECONDS = 30.0
_PING_TIMEOUT_SECONDS = 5.0
T = TypeVar("T")

_NOTIFY = sa.text("SELECT pg_notify(:channel, :key)")


class NotVisibleYet(NotFoundError):
    """A 404 for a ticket this service knows but the caller may not see (yet): an assignment
    to the caller may still be on its way, so `until_found` waits the whole bound for it."""


async def notify_applied(session: AsyncSession, key: str) -> None:
    """Inside a projection's transaction: whoever waits for `key` looks again once it commits."""
    await session.execute(_NOTIFY, {"channel": CHANNEL, "key": key})


class ProjectionWatch:
    """One LISTEN connection per process, waking the requests that wait for a key."""

    def __init__(
        self, database_url: str, *, bound_seconds: float, new_id_seconds: float = 10.0
    ) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.bound_seconds = bound_seconds
        self.new_id_seconds = new_id_seconds
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._connection: asyncpg.Connection | None = None
        self.listening = asyncio.Event()  # set while NOTIFYs are heard

    def wait_budget(self, key: str) -> float:
        """How long a request for an unknown `key` may wait: the bound for an id made in the
        last `new_id_seconds` (or one from before UUIDv7), nothing for an older one or for
        anything no service could have issued. Counted from the request, not from the id's
        birth: a slow create (a loaded database) must not eat its follow-up's wait."""
        if not ids.is_uuid_shaped(key):
            return 0.0
        born = ids.created_at(key)
        if born is None:
            return self.bound_seconds
        age = time.time() - born.timestamp()
        return self.bound_seconds if age < self.new_id_seconds else 0.0

    async def until_found(
        self,
        key: str,
        attempt: Callable[[], Awaitable[T]],
        session: AsyncSession | None = None,
        *,
        owner: bool = False,
    ) -> T:
        """Run `attempt`; while it raises NotFoundError and the budget lasts, wait for `key` to
        be applied and run it again. The session's transaction is ended before each wait, so
        a waiting request holds no connection and no lock. `owner`: this service creates the
        id itself, so an unknown one never arrives and only `NotVisibleYet` waits."""
        deadline: float | None = None  # from the first miss, never past `started` + the bound
        event = asyncio.Event()
        waiting = self._waiters.setdefault(key, set())
        waiting.add(event)
        started = time.monotonic()
        try:
            while True:
                event.clear()
                try:
                    result = await attempt()
                except NotFoundError as exc:
                    now = time.monotonic()
                    if isinstance(exc, NotVisibleYet):
                        budget = self.bound_seconds
                    else:
                        budget = 0.0 if owner else self.wait_budget(key)
                    deadline = max(deadline or started, started + budget)
                    if now >= deadline:
                        PROJECTION_WAITS.labels("not_found").observe(now - started)
                        raise
                    if session is not None:
                        await session.rollback()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(deadline - now):
                            await event.wait()
                    continue
                if deadline is not None:
                    PROJECTION_WAITS.labels("found").observe(time.monotonic() - started)
                return result
        finally:
            waiting.discard(event)
            if not waiting and self._waiters.get(key) is waiting:
                del self._waiters[key]

    async def until_true(self, key: str, check: Callable[[], Awaitable[bool]]) -> bool:
        """Run `check` until it is true, again each time `key` is notified; False once the
        bound (from now) passes first. Registered before the first check: no lost wake-up."""
        event = asyncio.Event()
        waiting = self._waiters.setdefault(key, set())
        waiting.add(event)
        started = time.monotonic()
        deadline = started + self.bound_seconds
        try:
            while True:
                event.clear()
                if await check():
                    PROJECTION_WAITS.labels("caught_up").observe(time.monotonic() - started)
                    return True
                now = time.monotonic()
                if now >= deadline:
                    PROJECTION_WAITS.labels("behind").observe(now - started)
                    return False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await event.wait()
        finally:
            waiting.discard(event)
            if not waiting and self._waiters.get(key) is waiting:
                del self._waiters[key]

    def _wake(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()

    def _on_notify(self, _connection: object, _pid: int, _channel: str, key: str) -> None:
        self._wake(key)

    async def _until_lost(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection closes, or stops answering a periodic ping."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PING_INTERVAL_SECONDS):
                    await lost.wait()
            if lost.is_set():
                return
            try:
                async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
                    await connection.execute("SELECT 1")
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return

    async def run(self) -> None:
        """Keep the LISTEN connection open (a runtime background task); after a reconnect every
        waiter looks again, since a NOTIFY sent meanwhile was lost."""
        backoff = Backoff()
        while True:
            try:
                connection = await asyncpg.connect(self.dsn, timeout=_PING_TIMEOUT_SECONDS)
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                log.warning("projection watch: cannot connect (%s); retrying", exc)
                await backoff.sleep()
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(_setter(lost))
            try:
                await connection.add_listener(CHANNEL, self._on_notify)
                self._connection = connection
                self.listening.set()
                self._wake_all()
                backoff.reset()
                await self._until_lost(connection, lost)
            finally:
                self.listening.clear()
                self._connection = None
                connection.terminate()
            log.warning("projection watch: connection lost; reconnecting")


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _connection: event.set()
