"""One unit of work: a session, the events the change raises (the outbox) and one commit.

A route, a consumer handler and a background job all write through a `UnitOfWork`, so one
service function serves them all: the route and the job get theirs from `UnitsOfWork.run`
(which commits, and runs the work again when PostgreSQL aborted it to break a deadlock or a
serialization conflict); the consumer opens one per batch and hands it to every handler.
Use cases never commit by themselves; what must wait for the commit is `after_commit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .events import Contract, EventType
from .outbox import add_events

T = TypeVar("T")

# SQLSTATEs after which the same work, run again in a new transaction, may well succeed.
SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
_RETRYABLE = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})


def is_retryable_conflict(exc: BaseException) -> bool:
    """Whether PostgreSQL aborted the transaction to break a deadlock or a serialization
    conflict (SQLAlchemy wraps the driver's error, so the cause chain is walked)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) in _RETRYABLE:
            return True
        if getattr(getattr(current, "orig", None), "sqlstate", None) in _RETRYABLE:
            return True
        current = current.__cause__ or current.__context__
    return False


class UnitOfWork:
    """A transaction in progress: the session to change rows with, and the outbox that the
    events of the change go to (published only if the transaction commits)."""

    def __init__(self, session: AsyncSession, source: str) -> None:
        self.session = session
        self.source = source  # the `source` of every event: the service's name, from settings
        self._after_commit: list[Callable[[], Awaitable[object]]] = []
        self._before_commit: dict[str, Callable[[], Awaitable[object]]] = {}

    def before_commit(self, key: str, step: Callable[[], Awaitable[object]]) -> None:
        """Do `step` once at the end of this unit, inside its transaction: work that several
        changes of one unit share is done once (scoring rescores the tickets a consumer batch
        touched with one statement, not per event). One step per `key` (the first kept)."""
        self._before_commit.setdefault(key, step)

    async def finish(self) -> None:
        """Run the before-commit steps (called by whoever commits, before the commit)."""
        while self._before_commit:
            steps, self._before_commit = self._before_commit, {}
            for step in steps.values():
                await step()

    def after_commit(self, step: Callable[[], Awaitable[object]]) -> None:
        """Do `step` once the change is durable (e.g. void tokens issued meanwhile, or start
        a follow-up unit); never if it rolls back."""
        self._after_commit.append(step)

    async def committed(self) -> None:
        """Run the after-commit steps, in order (called by whoever committed)."""
        steps, self._after_commit = self._after_commit, []
        for step in steps:
            await step()

    async def emit(self, topic: EventType, data: Contract) -> str:
        """Raise one event with this change; returns its id."""
        [event_id] = await add_events(self.session, [(topic, data)], source=self.source)
        return event_id

    async def emit_many(self, events: Sequence[tuple[EventType, Contract]]) -> list[str]:
        """Raise events with this change, in order (one statement); returns their ids."""
        return await add_events(self.session, events, source=self.source)


class UnitsOfWork:
    """Opens a service's units of work (one per route call or job step)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        source: str,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.02,
    ) -> None:
        self.sessions = sessions
        self.source = source
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self.sessions() as session, session.begin():
            unit = UnitOfWork(session, self.source)
            yield unit
            await unit.finish()

    async def run(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """`work` in a unit of work, committed; run again from the start (new transaction,
        fresh reads) when PostgreSQL aborted it for a deadlock or a serialization failure."""
        attempt = 1
        while True:
            try:
                async with self.begin() as unit:
                    result = await work(unit)
            except Exception as exc:
                if attempt >= self.attempts or not is_retryable_conflict(exc):
                    raise
            else:
                await unit.committed()  # outside the retry: the change is already durable
                return result
            # jitter: two transactions that deadlocked must not meet again in the same order
            await asyncio.sleep(self.backoff_seconds * attempt * (1 + random.random()))
            attempt += 1
