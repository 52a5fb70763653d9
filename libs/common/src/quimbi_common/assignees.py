"""Who holds a ticket, straight from agents' assignment events (read-your-writes, issue 14).

A service that decides visibility by the assignee (an `agent` sees only its own tickets) and
learned it only from tickets' `ticket.updated` was two hops behind an assignment (agents →
tickets → here): a follow-up to a transfer could not wait for anything it consumes. Such a
service consumes `ticket.assigned` and `assignment.updated` itself and keeps the current
assignment in `ticket_assignees` (declared on its own metadata, like the outbox), whether or
not it knows the ticket yet (topics race). The rule is the tickets service's: a newer version
of the same assignment, or a later assignment, wins; an ended assignment leaves the assignee as
it is (its successor's event moves it on). The assignee is this row's agent when there is one,
else the ticket's own `assigned_agent_id` (the creator's choice in `ticket.created`, until
agents' assignment for it arrives): `holder(...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .catchup import CHANNEL, notify_applied
from .events import AssignmentData, Event, EventType

if TYPE_CHECKING:
    from .consumer import EventConsumer
    from .uow import UnitOfWork


def assignees_table(metadata: sa.MetaData) -> sa.Table:
    """The current assignment of each ticket, declared on a service's own metadata."""
    return sa.Table(
        "ticket_assignees",
        metadata,
        sa.Column("ticket_id", sa.String(255), primary_key=True),
        sa.Column("assignment_id", sa.String(255), nullable=False),
        sa.Column("agent_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )


def create_assignees_table() -> None:
    """For a service's migration: the table `assignees_table` declares."""
    from alembic import op

    assignees_table(sa.MetaData()).create(op.get_bind())


# One statement: an active assignment replaces the row if it is newer by the rule above; an
# ended one only records its version (so a late, older copy of it changes nothing).
_APPLY_ACTIVE = sa.text(
    "INSERT INTO ticket_assignees AS a (ticket_id, assignment_id, agent_id, version, assigned_at) "
    "VALUES (:ticket_id, :assignment_id, :agent_id, :version, :assigned_at) "
    "ON CONFLICT (ticket_id) DO UPDATE SET assignment_id = excluded.assignment_id,"
    "  agent_id = excluded.agent_id, version = excluded.version,"
    "  assigned_at = excluded.assigned_at "
    "WHERE CASE WHEN a.assignment_id = excluded.assignment_id THEN excluded.version > a.version"
    "  ELSE excluded.assigned_at >= a.assigned_at END "
    "RETURNING 1"
)
_APPLY_ENDED = sa.text(
    "UPDATE ticket_assignees SET version = :version "
    "WHERE ticket_id = :ticket_id AND assignment_id = :assignment_id AND version < :version"
)
_HOLDER = sa.text("SELECT agent_id FROM ticket_assignees WHERE ticket_id = :ticket_id")


async def apply_assignment(session: AsyncSession, data: AssignmentData) -> bool:
    """ticket.assigned / assignment.updated, in the consumer's transaction; True when the
    ticket's assignee may have changed (then requests waiting to see it look again)."""
    params = {"ticket_id": data.ticket_id, "assignment_id": data.id, "version": data.version}
    if not data.is_active:
        await session.execute(_APPLY_ENDED, params)
        return False
    applied = await session.execute(
        _APPLY_ACTIVE, {**params, "agent_id": data.agent_id, "assigned_at": data.assigned_at}
    )
    if applied.first() is None:
        return False
    await notify_applied(session, data.ticket_id)
    return True


# The same two rules for many tickets at once (each ticket at most once per statement).
_APPLY_ACTIVE_MANY = sa.text(
    "INSERT INTO ticket_assignees AS a (ticket_id, assignment_id, agent_id, version, assigned_at) "
    "SELECT * FROM unnest(CAST(:ticket_ids AS text[]), CAST(:assignment_ids AS text[]),"
    "  CAST(:agent_ids AS text[]), CAST(:versions AS int[]), CAST(:assigned_at AS timestamptz[])) "
    "ON CONFLICT (ticket_id) DO UPDATE SET assignment_id = excluded.assignment_id,"
    "  agent_id = excluded.agent_id, version = excluded.version,"
    "  assigned_at = excluded.assigned_at "
    "WHERE CASE WHEN a.assignment_id = excluded.assignment_id THEN excluded.version > a.version"
    "  ELSE excluded.assigned_at >= a.assigned_at END "
    "RETURNING pg_notify(:channel, a.ticket_id)"
)
_APPLY_ENDED_MANY = sa.text(
    "UPDATE ticket_assignees AS a SET version = e.version "
    "FROM unnest(CAST(:ticket_ids AS text[]), CAST(:assignment_ids AS text[]),"
    "  CAST(:versions AS int[])) AS e(ticket_id, assignment_id, version) "
    "WHERE a.ticket_id = e.ticket_id AND a.assignment_id = e.assignment_id"
    "  AND a.version < e.version"
)


async def apply_assignments(session: AsyncSession, batch: Sequence[AssignmentData]) -> None:
    """Many ticket.assigned / assignment.updated events (a consumer batch), as if applied one
    by one in the order given: the n-th event of every ticket goes in the n-th round, each
    round one statement for the active assignments and one for the ended ones; requests
    waiting for a ticket whose assignee may have changed look again after the commit."""
    rounds: list[dict[str, AssignmentData]] = []
    seen: dict[str, int] = {}
    for data in batch:
        n = seen.get(data.ticket_id, 0)
        seen[data.ticket_id] = n + 1
        if n == len(rounds):
            rounds.append({})
        rounds[n][data.ticket_id] = data
    for events in rounds:
        ordered = [events[ticket_id] for ticket_id in sorted(events)]  # row locks in id order
        active = [d for d in ordered if d.is_active]
        ended = [d for d in ordered if not d.is_active]
        if active:
            await session.execute(
                _APPLY_ACTIVE_MANY,
                {
                    "ticket_ids": [d.ticket_id for d in active],
                    "assignment_ids": [d.id for d in active],
                    "agent_ids": [d.agent_id for d in active],
                    "versions": [d.version for d in active],
                    "assigned_at": [d.assigned_at for d in active],
                    "channel": CHANNEL,
                },
            )
        if ended:
            await session.execute(
                _APPLY_ENDED_MANY,
                {
                    "ticket_ids": [d.ticket_id for d in ended],
                    "assignment_ids": [d.id for d in ended],
                    "versions": [d.version for d in ended],
                },
            )


async def assigned_agent(session: AsyncSession, ticket_id: str) -> str | None:
    """The agent of the ticket's current assignment, None when none has arrived."""
    agent: str | None = await session.scalar(_HOLDER, {"ticket_id": ticket_id})
    return agent


def holder(assigned: str | None, ticket_assignee: str | None) -> str | None:
    """Who holds the ticket: the assignment's agent, else the ticket's own field."""
    return assigned if assigned is not None else ticket_assignee


def follow_assignments(events: EventConsumer) -> None:
    """Register the two handlers that keep `ticket_assignees` from agents' events (a
    consumer batch's events of each topic at once)."""

    @events.handle_many(EventType.TICKET_ASSIGNED)
    async def on_ticket_assigned(unit: UnitOfWork, batch: list[Event[AssignmentData]]) -> None:
        """A new assignee decides who sees the ticket."""
        await apply_assignments(unit.session, [event.data for event in batch])

    @events.handle_many(EventType.ASSIGNMENT_UPDATED)
    async def on_assignment_updated(unit: UnitOfWork, batch: list[Event[AssignmentData]]) -> None:
        """Accepted, transferred or completed: the same rule as ticket.assigned."""
        await apply_assignments(unit.session, [event.data for event in batch])
