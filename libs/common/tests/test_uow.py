"""The unit of work against real PostgreSQL: one commit for rows and events, nothing on error,
and a deadlock victim run again rather than reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.events import TicketDeletedData
from quimbi_common.settings import CommonSettings
from quimbi_common.uow import UnitOfWork, UnitsOfWork, is_retryable_conflict

pytestmark = pytest.mark.service


@pytest.fixture
async def units(settings: CommonSettings) -> AsyncIterator[UnitsOfWork]:
    engine = create_engine(settings)
    yield UnitsOfWork(create_sessionmaker(engine), settings.service_name)
    await engine.dispose()


def _deleted(ticket_id: str) -> TicketDeletedData:
    return TicketDeletedData(id=ticket_id, version=1, deleted_at=datetime.now(UTC))


async def _note(unit: UnitOfWork, note_id: str) -> None:
    await unit.session.execute(sa.text("INSERT INTO notes (id) VALUES (:id)"), {"id": note_id})


async def _stored(units: UnitsOfWork) -> tuple[list[str], list[tuple[str, str]]]:
    """The notes, and the outbox's (key, source) pairs, as another transaction sees them."""
    async with units.begin() as unit:
        notes = list((await unit.session.scalars(sa.text("SELECT id FROM notes"))).all())
        rows = await unit.session.execute(
            sa.text("SELECT key, payload->>'source' FROM outbox ORDER BY id")
        )
        return sorted(notes), [(row[0], row[1]) for row in rows]


async def test_rows_and_events_commit_together_with_the_service_as_source(
    units: UnitsOfWork,
) -> None:
    # given a use case that writes a row and raises an event
    async def use_case(unit: UnitOfWork) -> str:
        await _note(unit, "n1")
        return await unit.emit("ticket.deleted", _deleted("t1"))

    # when it runs in a unit of work
    event_id = await units.run(use_case)

    # then both are committed, the event stamped with the service's name
    notes, events = await _stored(units)
    assert notes == ["n1"]
    assert events == [("t1", f"/services/{units.source}")]
    assert event_id


async def test_an_error_rolls_back_rows_and_events(units: UnitsOfWork) -> None:
    async def failing(unit: UnitOfWork) -> None:
        await _note(unit, "n1")
        await unit.emit_many([("ticket.deleted", _deleted("t1"))])
        raise ValueError("the use case refuses")

    with pytest.raises(ValueError, match="refuses"):
        await units.run(failing)

    assert await _stored(units) == ([], [])


async def test_events_are_invisible_until_the_unit_commits(units: UnitsOfWork) -> None:
    async with units.begin() as unit:
        await unit.emit("ticket.deleted", _deleted("t1"))
        assert await _stored(units) == ([], [])  # another transaction sees nothing yet
    assert await _stored(units) == ([], [("t1", f"/services/{units.source}")])


async def test_a_bug_is_not_retried(units: UnitsOfWork) -> None:
    attempts = 0

    async def duplicate(unit: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await _note(unit, "same")
        await _note(unit, "same")

    with pytest.raises(IntegrityError):
        await units.run(duplicate)
    assert attempts == 1
    assert await _stored(units) == ([], [])


async def test_the_deadlock_victim_runs_again_and_both_changes_land(units: UnitsOfWork) -> None:
    # given two rows, and two use cases locking them in opposite orders
    async with units.begin() as unit:
        await _note(unit, "a")
        await _note(unit, "b")
    holding = {"a": asyncio.Event(), "b": asyncio.Event()}
    attempts = {"a": 0, "b": 0}

    def locking(first: str, second: str) -> object:
        async def use_case(unit: UnitOfWork) -> str:
            attempts[first] += 1
            lock = sa.text("SELECT id FROM notes WHERE id = :id FOR UPDATE")
            await unit.session.execute(lock, {"id": first})
            if attempts[first] == 1:  # only the first attempts meet head-on
                holding[first].set()
                await holding[second].wait()
            await unit.session.execute(lock, {"id": second})
            await unit.emit("ticket.deleted", _deleted(f"{first}{second}"))
            return first

        return use_case

    # when both run at once, PostgreSQL aborts one of them (40P01)
    done = await asyncio.wait_for(
        asyncio.gather(units.run(locking("a", "b")), units.run(locking("b", "a"))),  # type: ignore[arg-type]
        timeout=30,
    )

    # then the victim ran again and both committed their events
    assert sorted(done) == ["a", "b"]
    assert sorted(attempts.values()) == [1, 2]
    _, events = await _stored(units)
    assert sorted(key for key, _ in events) == ["ab", "ba"]


async def test_deadlock_and_serialization_failures_are_recognised_through_wrappers() -> None:
    class Driver(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = Driver("40001")
    assert is_retryable_conflict(wrapped)
    assert is_retryable_conflict(Driver("40P01"))
    assert not is_retryable_conflict(Driver("23505"))  # unique violation: a bug or a conflict
    assert not is_retryable_conflict(ValueError())


async def test_after_commit_steps_run_once_the_change_is_durable_and_never_on_rollback(
    units: UnitsOfWork,
) -> None:
    seen: list[list[str]] = []

    async def use_case(unit: UnitOfWork, fail: bool) -> None:
        await _note(unit, "kept" if not fail else "dropped")

        async def look() -> None:
            seen.append((await _stored(units))[0])  # what another transaction sees by then

        unit.after_commit(look)
        if fail:
            raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await units.run(lambda unit: use_case(unit, fail=True))
    await units.run(lambda unit: use_case(unit, fail=False))

    assert seen == [["kept"]]


async def test_before_commit_steps_run_once_per_key_inside_the_transaction(
    units: UnitsOfWork,
) -> None:
    """What several changes of a unit share (scoring's rescoring of a consumer batch) is done
    once, at the end, and commits or rolls back with the unit."""
    ran: list[str] = []

    async def use_case(unit: UnitOfWork, fail: bool) -> None:
        for note_id in ("a", "b"):  # two changes register the same shared step
            await _note(unit, f"{note_id}-{fail}")

            async def shared() -> None:
                ran.append("shared")
                await _note(unit, f"shared-{fail}")

            unit.before_commit("shared", shared)
        assert ran == []  # not before the unit ends
        if fail:
            raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await units.run(lambda unit: use_case(unit, fail=True))
    await units.run(lambda unit: use_case(unit, fail=False))

    assert ran == ["shared"]
    assert (await _stored(units))[0] == ["a-False", "b-False", "shared-False"]
