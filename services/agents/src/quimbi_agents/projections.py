"""What ticket and message events do here: keep the ticket facts assignment needs, record a new
ticket's assignee, complete assignments when tickets are done, auto-assign new tickets, and
derive agent metrics. Every function runs in the consumer's unit of work (it never commits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.catchup import CHANNEL, notify_applied
from quimbi_common.enums import AssignmentReason, AssignmentStatus, TicketStatus
from quimbi_common.events import MessageData, TicketData, TicketDeletedData
from quimbi_common.uow import UnitOfWork

from .domain import (
    add_response_sample,
    count_resolution,
    local_date,
    normalize_label,
    seconds_between,
)
from .models import ResponseClock, TicketAssignment, TicketProjection
from .service.assignments import (
    active_assignment,
    assign_waiting_tickets,
    auto_assign,
    current_assignee,
    end_assignment,
    lock_live_agent,
    start_assignment,
    take_auto_assign_lock,
)
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TicketFacts:
    """The projection as it was before an event changed it."""

    status: str
    assigned_agent_id: str | None

    @property
    def is_done(self) -> bool:
        return TicketStatus(self.status).is_done


async def _apply_ticket(
    session: AsyncSession, data: TicketData
) -> tuple[TicketProjection | None, TicketFacts | None]:
    """Store the ticket's facts when this version is newer than ours.
    Returns (the locked row, its facts before) — (row, None) on first sighting, (None, None)
    when the event is stale or the ticket was deleted."""
    values = {
        "status": data.status.value,
        "priority": data.priority.value,
        "category": normalize_label(data.category) if data.category else None,
        "assigned_agent_id": data.assigned_agent_id,
        "created_at": data.created_at,
        "updated_at": data.updated_at,
        "version": data.version,
    }
    inserted = await session.scalar(
        insert(TicketProjection)
        .values(id=data.id, **values)
        .on_conflict_do_nothing()
        .returning(TicketProjection.id)
    )
    ticket = await session.get(
        TicketProjection, data.id, with_for_update=True, populate_existing=True
    )
    assert ticket is not None
    if inserted is not None:
        return ticket, None
    if ticket.deleted_at is not None or data.version <= ticket.version:
        return None, None
    before = TicketFacts(ticket.status, ticket.assigned_agent_id)
    for name, value in values.items():
        setattr(ticket, name, value)
    return ticket, before


async def _record_initial_assignee(
    unit: UnitOfWork, ticket: TicketProjection, agent_id: str
) -> None:
    """A new ticket names its assignee (the agent who created it, or one it chose): record
    the assignment so history and workload know it."""
    agent = await lock_live_agent(unit.session, agent_id)
    if agent is None:
        log.warning("ticket %s names unknown agent %s as assignee", ticket.id, agent_id)
        return
    await start_assignment(unit, ticket, agent, AssignmentReason.MANUAL, previous=None)


async def _first_sighting(unit: UnitOfWork, settings: Settings, ticket: TicketProjection) -> None:
    if TicketStatus(ticket.status).is_done:
        return
    if ticket.assigned_agent_id:
        await _record_initial_assignee(unit, ticket, ticket.assigned_agent_id)
    elif settings.auto_assign:
        await auto_assign(unit, ticket)


async def _count_resolution(
    session: AsyncSession, settings: Settings, agent_id: str, at: datetime
) -> None:
    agent = await lock_live_agent(session, agent_id)
    if agent is None:
        return
    day = local_date(at, settings.timezone)
    agent.tickets_resolved_today, agent.resolved_count_date = count_resolution(
        agent.tickets_resolved_today, agent.resolved_count_date, day
    )


async def _reopen(unit: UnitOfWork, settings: Settings, ticket: TicketProjection) -> None:
    """A reopened ticket goes back to whoever held it last, so it counts in their workload."""
    session = unit.session
    holder = ticket.assigned_agent_id or await session.scalar(
        sa.select(TicketAssignment.agent_id)
        .where(TicketAssignment.ticket_id == ticket.id)
        .order_by(TicketAssignment.assigned_at.desc())
        .limit(1)
    )
    agent = await lock_live_agent(session, holder) if holder else None
    if agent is not None and agent.is_active:
        await start_assignment(unit, ticket, agent, AssignmentReason.MANUAL, previous=None)
    elif settings.auto_assign:
        await auto_assign(unit, ticket)


async def _ticket_changed(
    unit: UnitOfWork,
    settings: Settings,
    ticket: TicketProjection,
    before: TicketFacts,
    at: datetime,
) -> None:
    """A later version of a ticket we know. Its assignee is only projected, never followed:
    the tickets service changes it only from our own ticket.assigned, so following it would
    echo our assignments back — and a late echo of one transfer would undo the next."""
    session = unit.session
    active = await active_assignment(session, ticket.id)
    done_now = TicketStatus(ticket.status).is_done
    if done_now and not before.is_done:
        resolver = current_assignee(ticket, active)
        if active is not None:
            await end_assignment(unit, active, AssignmentStatus.COMPLETED, at)
        if resolver:
            await _count_resolution(session, settings, resolver, at)
        if settings.auto_assign:
            await assign_waiting_tickets(unit, settings)  # capacity was freed
    elif before.is_done and not done_now and active is None:
        await _reopen(unit, settings, ticket)


async def apply_ticket_event(unit: UnitOfWork, settings: Settings, data: TicketData) -> None:
    """ticket.created and ticket.updated: both carry the whole ticket, and either may be the
    first we see (they are different topics), so both take the same path."""
    session = unit.session
    if settings.auto_assign:
        await take_auto_assign_lock(session)
    ticket, before = await _apply_ticket(session, data)
    if ticket is None:
        return
    if before is None:
        await _first_sighting(unit, settings, ticket)
    else:
        await _ticket_changed(unit, settings, ticket, before, data.updated_at)
    await notify_applied(session, data.id)  # requests waiting for this ticket look again


_FIRST_SIGHTINGS = sa.text(
    "INSERT INTO ticket_projection "
    "(id, status, priority, category, assigned_agent_id, created_at, updated_at, version) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[]), "
    "CAST(:priorities AS text[]), CAST(:categories AS text[]), CAST(:assignees AS text[]), "
    "CAST(:created AS timestamptz[]), CAST(:updated AS timestamptz[]), "
    "CAST(:versions AS int[])) "
    "ON CONFLICT (id) DO NOTHING "
    "RETURNING id, pg_notify(:channel, id)::text AS woke"
)


async def apply_tickets_created(
    unit: UnitOfWork, settings: Settings, batch: list[TicketData]
) -> None:
    """A batch of ticket.created: the tickets seen for the first time (nearly all) are
    projected with one statement, which also wakes their waiting requests; only those naming
    an assignee take a step of their own (the assignment record). A ticket already known (its
    ticket.updated came first) takes `apply_ticket_event`'s path, as does every event under
    AUTO_ASSIGN (auto-assignment serialises on its lock, ticket by ticket)."""
    if settings.auto_assign:
        for data in batch:
            await apply_ticket_event(unit, settings, data)
        return
    first: dict[str, TicketData] = {}
    for data in batch:
        first.setdefault(data.id, data)
    tickets = [first[i] for i in sorted(first)]  # the row locks in one order
    session = unit.session
    inserted = await session.execute(
        _FIRST_SIGHTINGS,
        {
            "ids": [d.id for d in tickets],
            "statuses": [d.status.value for d in tickets],
            "priorities": [d.priority.value for d in tickets],
            "categories": [normalize_label(d.category) if d.category else None for d in tickets],
            "assignees": [d.assigned_agent_id for d in tickets],
            "created": [d.created_at for d in tickets],
            "updated": [d.updated_at for d in tickets],
            "versions": [d.version for d in tickets],
            "channel": CHANNEL,
        },
    )
    new = {row.id for row in inserted}
    for data in batch:
        if data.id not in new or first[data.id] is not data:
            await apply_ticket_event(unit, settings, data)
        elif data.assigned_agent_id and not data.status.is_done:
            ticket = await session.get(
                TicketProjection, data.id, with_for_update=True, populate_existing=True
            )
            assert ticket is not None
            await _record_initial_assignee(unit, ticket, data.assigned_agent_id)


async def apply_ticket_deleted(
    unit: UnitOfWork, settings: Settings, data: TicketDeletedData
) -> None:
    """A deleted ticket leaves a tombstone (older events for it are ignored) and frees its
    assignee's capacity; its active assignment ends as completed."""
    session = unit.session
    if settings.auto_assign:
        await take_auto_assign_lock(session)
    await session.execute(
        insert(TicketProjection)
        .values(
            id=data.id,
            status=TicketStatus.CLOSED.value,
            priority="normal",
            created_at=data.deleted_at,
            updated_at=data.deleted_at,
            deleted_at=data.deleted_at,
            version=data.version,
        )
        .on_conflict_do_update(
            index_elements=[TicketProjection.id],
            set_={
                "deleted_at": data.deleted_at,
                "version": sa.func.greatest(TicketProjection.version, data.version),
            },
        )
    )
    active = await active_assignment(session, data.id)
    if active is not None:
        await end_assignment(unit, active, AssignmentStatus.COMPLETED, data.deleted_at)
        if settings.auto_assign:
            await assign_waiting_tickets(unit, settings)


_CUSTOMERS_WAITING = sa.text(
    "INSERT INTO response_clocks (ticket_id, awaiting_since) "
    "SELECT * FROM unnest(CAST(:ticket_ids AS text[]), CAST(:sent_at AS timestamptz[])) "
    "ON CONFLICT (ticket_id) DO UPDATE SET awaiting_since = excluded.awaiting_since "
    "WHERE response_clocks.awaiting_since IS NULL"
)


async def apply_messages_added(unit: UnitOfWork, messages: list[MessageData]) -> None:
    """A batch of message.added in order: customer messages (most of them) start their
    tickets' clocks with one statement; an agent message first applies the customer messages
    before it, then is measured alone (`apply_message_added`)."""
    waiting: dict[str, datetime] = {}  # per ticket, its first customer message in the run

    async def start_clocks() -> None:
        if waiting:
            ticket_ids = sorted(waiting)  # the row locks in one order
            await unit.session.execute(
                _CUSTOMERS_WAITING,
                {"ticket_ids": ticket_ids, "sent_at": [waiting[t] for t in ticket_ids]},
            )
            waiting.clear()

    for data in messages:
        if data.from_agent:
            await start_clocks()
            await apply_message_added(unit, data)
        else:
            waiting.setdefault(data.ticket_id, data.created_at)
    await start_clocks()


async def apply_message_added(unit: UnitOfWork, data: MessageData) -> None:
    """Response time: from a customer's message (the first not yet answered) to the next agent
    message, credited to that message's author (else the ticket's assignee)."""
    session = unit.session
    await session.execute(
        insert(ResponseClock).values(ticket_id=data.ticket_id).on_conflict_do_nothing()
    )
    clock = await session.get(
        ResponseClock, data.ticket_id, with_for_update=True, populate_existing=True
    )
    assert clock is not None
    if not data.from_agent:
        if clock.awaiting_since is None:
            clock.awaiting_since = data.created_at
        return
    if clock.awaiting_since is None:
        return
    waited = seconds_between(clock.awaiting_since, data.created_at)
    clock.awaiting_since = None
    agent_id = data.author_agent_id or await _assignee_of(session, data.ticket_id)
    agent = await lock_live_agent(session, agent_id) if agent_id else None
    if agent is None:
        return
    (
        agent.response_time_total_seconds,
        agent.response_time_samples,
        agent.avg_response_time_seconds,
    ) = add_response_sample(agent.response_time_total_seconds, agent.response_time_samples, waited)


async def _assignee_of(session: AsyncSession, ticket_id: str) -> str | None:
    active = await active_assignment(session, ticket_id, lock=False)
    if active is not None:
        return active.agent_id
    ticket = await session.get(TicketProjection, ticket_id)
    return ticket.assigned_agent_id if ticket is not None else None
