"""Read-your-writes waits against real PostgreSQL: a request for an id the projection is about
to learn is answered once the projection's transaction commits, whichever connection (process,
replica) commits it; an unknown id is a 404 within the bound, at once when the id is old."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common import ids
from quimbi_common.catchup import ProjectionWatch, notify_applied
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.errors import NotFoundError
from quimbi_common.settings import CommonSettings

BOUND = 1.0


@contextlib.asynccontextmanager
async def _watching(settings: CommonSettings) -> AsyncIterator[ProjectionWatch]:
    watch = ProjectionWatch(settings.database_url, bound_seconds=BOUND)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(watch.listening.wait(), 10)  # before the test writes
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _finder(session: AsyncSession, note_id: str):  # type: ignore[no-untyped-def]
    async def find() -> str:
        query = sa.text("SELECT id FROM notes WHERE id = :id")
        found = await session.scalar(query, {"id": note_id})
        if found is None:
            raise NotFoundError(f"{note_id} not found")
        return str(found)

    return find


async def _project_later(settings: CommonSettings, note_id: str, delay: float) -> None:
    """What a consumer (another process) does: apply the event and notify, in one transaction."""
    await asyncio.sleep(delay)
    engine = create_engine(settings)
    async with create_sessionmaker(engine)() as session, session.begin():
        await session.execute(sa.text("INSERT INTO notes (id) VALUES (:id)"), {"id": note_id})
        await notify_applied(session, note_id)
    await engine.dispose()


@pytest.mark.unit
def test_uuid7_ids_carry_their_creation_time() -> None:
    before = time.time()
    made = ids.new_id("ticket")
    born = ids.created_at(made)
    assert made.startswith("ticket_")
    assert len(made) == len("ticket_") + 32
    assert born is not None
    assert before - 0.002 <= born.timestamp() <= time.time() + 0.002
    assert ids.created_at(str(ids.uuid7())) is not None
    assert ids.created_at(f"ticket_{uuid.uuid4().hex}") is None
    assert ids.is_uuid_shaped(f"ticket_{uuid.uuid4().hex}")
    assert not ids.is_uuid_shaped("nonexistent")
    assert ids.created_at("nonexistent") is None


@pytest.mark.unit
def test_wait_budget_follows_the_ids_age() -> None:
    watch = ProjectionWatch("postgresql+asyncpg://unused/db", bound_seconds=2.0)
    old = f"ticket_{ids.uuid7(now_ms=int(time.time() * 1000) - 60_000).hex}"
    assert watch.wait_budget(old) == 0.0
    assert watch.wait_budget(ids.new_id("ticket")) == 2.0
    nine_seconds_old = f"ticket_{ids.uuid7(now_ms=int(time.time() * 1000) - 9_000).hex}"
    assert watch.wait_budget(nine_seconds_old) == 2.0  # a slow create leaves the whole wait
    assert watch.wait_budget(f"ticket_{uuid.uuid4().hex}") == 2.0  # issued before UUIDv7
    assert watch.wait_budget("not-an-id-anyone-issued") == 0.0
    future = f"ticket_{ids.uuid7(now_ms=int(time.time() * 1000) + 3_600_000).hex}"
    assert watch.wait_budget(future) == 2.0  # a forged future id still waits only the bound


@pytest.mark.service
async def test_a_request_waits_for_the_projection_and_is_answered_on_its_commit(
    settings: CommonSettings,
) -> None:
    note_id = ids.new_id("note")
    engine = create_engine(settings)
    async with _watching(settings) as watch, create_sessionmaker(engine)() as session:
        writer = asyncio.create_task(_project_later(settings, note_id, delay=0.2))
        started = time.monotonic()
        found = await watch.until_found(note_id, _finder(session, note_id), session)
        waited = time.monotonic() - started
        await writer
    await engine.dispose()
    assert found == note_id
    assert 0.15 < waited < BOUND  # woken by the commit, not by the deadline


@pytest.mark.service
async def test_a_known_id_is_answered_at_once_and_an_unknown_one_is_404_within_the_bound(
    settings: CommonSettings,
) -> None:
    known = ids.new_id("note")
    await _project_later(settings, known, delay=0)
    fresh_unknown = ids.new_id("note")
    old_unknown = f"note_{ids.uuid7(now_ms=int(time.time() * 1000) - 60_000).hex}"
    engine = create_engine(settings)
    async with _watching(settings) as watch, create_sessionmaker(engine)() as session:
        assert await watch.until_found(known, _finder(session, known), session) == known

        started = time.monotonic()
        with pytest.raises(NotFoundError):
            await watch.until_found(fresh_unknown, _finder(session, fresh_unknown), session)
        fresh_took = time.monotonic() - started

        started = time.monotonic()
        with pytest.raises(NotFoundError):
            await watch.until_found(old_unknown, _finder(session, old_unknown), session)
        old_took = time.monotonic() - started
    await engine.dispose()
    assert fresh_took <= BOUND + 0.3
    assert old_took < 0.2  # no longer new: its event would have arrived by now
    assert not watch._waiters  # nothing left behind


@pytest.mark.service
async def test_waiters_look_again_after_the_listen_connection_comes_back(
    settings: CommonSettings,
) -> None:
    """A NOTIFY sent while the LISTEN connection was down is lost; the reconnect wakes every
    waiter, so the row committed meanwhile is still found within the bound."""
    note_id = f"note_{uuid.uuid4().hex}"  # not UUIDv7: the whole bound
    engine = create_engine(settings)
    async with _watching(settings) as watch, create_sessionmaker(engine)() as session:
        waiting = asyncio.create_task(
            watch.until_found(note_id, _finder(session, note_id), session)
        )
        await asyncio.sleep(0.1)
        async with create_sessionmaker(engine)() as other, other.begin():  # a NOTIFY never heard
            await other.execute(sa.text("INSERT INTO notes (id) VALUES (:id)"), {"id": note_id})
        await asyncio.sleep(0.1)
        assert not waiting.done()
        assert watch._connection is not None
        watch._connection.terminate()  # the listener drops, and comes back
        assert await asyncio.wait_for(waiting, BOUND) == note_id
    await engine.dispose()
