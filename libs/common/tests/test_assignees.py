"""The assignee from agents' events (`assignees`): the tickets service's rule, whatever order
the events arrive in: a later assignment wins, a newer version of the same one wins, an ended
one leaves the holder as it is, and an assignment may arrive before anything else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from quimbi_common import assignees
from quimbi_common.db import create_engine
from quimbi_common.enums import AssignmentReason, AssignmentStatus
from quimbi_common.events import AssignmentData
from quimbi_common.settings import CommonSettings

pytestmark = pytest.mark.service
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def engine(settings: CommonSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    metadata = sa.MetaData()
    assignees.assignees_table(metadata)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


def _assignment(
    ticket_id: str,
    agent_id: str,
    *,
    assignment_id: str | None = None,
    seconds: int = 0,
    version: int = 1,
    active: bool = True,
) -> AssignmentData:
    return AssignmentData(
        id=assignment_id or str(uuid.uuid4()),
        ticket_id=ticket_id,
        agent_id=agent_id,
        reason=AssignmentReason.MANUAL,
        status=AssignmentStatus.PENDING if active else AssignmentStatus.TRANSFERRED,
        assigned_at=T0 + timedelta(seconds=seconds),
        is_active=active,
        version=version,
    )


async def _apply(engine: AsyncEngine, data: AssignmentData) -> str | None:
    """Apply one event in its own transaction; the ticket's holder afterwards."""
    async with engine.begin() as connection:
        session = AsyncSession(bind=connection)
        await assignees.apply_assignment(session, data)
        return await assignees.assigned_agent(session, data.ticket_id)


async def test_the_latest_assignment_holds_the_ticket_whatever_the_order(
    engine: AsyncEngine,
) -> None:
    ticket = f"ticket-{uuid.uuid4()}"
    first = _assignment(ticket, "agent-a", seconds=0)
    second = _assignment(ticket, "agent-b", seconds=5)
    first_ended = _assignment(
        ticket, "agent-a", assignment_id=first.id, seconds=0, version=2, active=False
    )
    # a transfer's new assignment first (no ticket known: it is kept all the same)
    assert await _apply(engine, second) == "agent-b"
    # then the older assignment, and its end: neither moves the ticket back
    assert await _apply(engine, first) == "agent-b"
    assert await _apply(engine, first_ended) == "agent-b"
    # a newer version of the holder's assignment (accepted) keeps it; a late, older copy too
    accepted = second.model_copy(update={"version": 2, "status": AssignmentStatus.ACCEPTED})
    assert await _apply(engine, accepted) == "agent-b"
    assert await _apply(engine, second) == "agent-b"
    # the holder's assignment ending (completed) leaves the holder as it is
    completed = second.model_copy(update={"version": 3, "is_active": False})
    assert await _apply(engine, completed) == "agent-b"
    # and a later assignment (reopened and given to someone else) moves it on
    third = _assignment(ticket, "agent-c", seconds=9)
    assert await _apply(engine, third) == "agent-c"


async def test_a_batch_gives_what_its_events_give_one_by_one(engine: AsyncEngine) -> None:
    """The same events for two tickets, one by one and as one batch: the same rows."""
    rows = []
    for batched in (False, True):
        ticket, other = f"ticket-{uuid.uuid4()}", f"ticket-{uuid.uuid4()}"
        first = _assignment(ticket, "agent-a", seconds=0)
        second = _assignment(ticket, "agent-b", seconds=5)
        first_ended = first.model_copy(update={"version": 2, "is_active": False})
        accepted = second.model_copy(update={"version": 2, "status": AssignmentStatus.ACCEPTED})
        completed = second.model_copy(update={"version": 3, "is_active": False})
        elsewhere = _assignment(other, "agent-x", seconds=1)
        later = _assignment(other, "agent-y", seconds=2)
        events = [second, elsewhere, first, first_ended, accepted, later, second, completed]
        async with engine.begin() as connection:
            session = AsyncSession(bind=connection)
            if batched:
                await assignees.apply_assignments(session, events)
            else:
                for data in events:
                    await assignees.apply_assignment(session, data)
            found = await session.execute(
                sa.text(
                    "SELECT agent_id, version FROM ticket_assignees WHERE ticket_id = ANY(:ids) "
                    "ORDER BY ticket_id = :ticket DESC"
                ),
                {"ids": [ticket, other], "ticket": ticket},
            )
            rows.append([tuple(row) for row in found])
    assert rows[0] == [("agent-b", 3), ("agent-y", 1)]
    assert rows[1] == rows[0]


async def test_an_assignment_that_changes_the_holder_wakes_its_waiters(
    engine: AsyncEngine,
) -> None:
    ticket = f"ticket-{uuid.uuid4()}"
    assignment = _assignment(ticket, "agent-a")
    async with engine.begin() as connection:
        session = AsyncSession(bind=connection)
        assert await assignees.apply_assignment(session, assignment) is True
        # the same event again changes nothing, so wakes nobody
        assert await assignees.apply_assignment(session, assignment) is False


def test_the_holder_is_the_assignment_else_the_tickets_own_field() -> None:
    assert assignees.holder("agent-b", "agent-a") == "agent-b"
    assert assignees.holder(None, "agent-a") == "agent-a"
    assert assignees.holder(None, None) is None
