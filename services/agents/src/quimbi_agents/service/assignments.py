"""Assignment use cases: assign and transfer by hand, accept, history, and auto-assignment (§7).

Locks, always taken in this order so two transactions never wait on each other in a circle:
1. the auto-assignment advisory lock (only paths that may auto-assign take it, and take it first);
2. the ticket's projection row (`FOR UPDATE`), so one ticket's assignment changes one at a time;
3. the agent's row (`FOR UPDATE`), held while its open tickets are counted and one is added.
With (1) auto-assignment sees every committed assignment before choosing, so the fewest-open rule
is exact and no agent passes `max_concurrent_tickets`; the partial unique index on active
assignments backs the one-active-per-ticket rule whatever happens.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.clock import utcnow
from quimbi_common.enums import (
    AgentStatus,
    AssignmentReason,
    AssignmentStatus,
    TicketStatus,
)
from quimbi_common.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ProblemError,
    UnprocessableError,
)
from quimbi_common.events import AssignmentData, EventType
from quimbi_common.uow import UnitOfWork

from ..domain import PRIORITY_RANK, Candidate, assignment_reason, choose_agent, seconds_between
from ..models import Agent, TicketAssignment, TicketProjection
from ..schemas import AssignRequest, BulkAssignRequest, BulkAssignResponse, BulkAssignResult
from ..settings import Settings

log = logging.getLogger(__name__)
AUTO_ASSIGN_LOCK_ID = 0x0A6E_0001
DONE_STATUSES = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)


# --- reading and locking --------------------------------------------------------------------------


async def take_auto_assign_lock(session: AsyncSession) -> None:
    """Serialise auto-assignment across handlers and replicas until this transaction ends."""
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(AUTO_ASSIGN_LOCK_ID)))


async def lock_ticket(
    session: AsyncSession, ticket_id: str, *, lock: bool = True
) -> TicketProjection | None:
    """The live (not deleted) ticket, locked for this transaction unless `lock` is false."""
    ticket = await session.get(
        TicketProjection, ticket_id, with_for_update=lock, populate_existing=True
    )
    return ticket if ticket is not None and ticket.deleted_at is None else None


async def active_assignment(
    session: AsyncSession, ticket_id: str, *, lock: bool = True
) -> TicketAssignment | None:
    query = sa.select(TicketAssignment).where(
        TicketAssignment.ticket_id == ticket_id, TicketAssignment.is_active
    )
    if lock:
        query = query.with_for_update()
    return await session.scalar(query.execution_options(populate_existing=True))


async def open_ticket_count(session: AsyncSession, agent_id: str) -> int:
    """An agent's open tickets are its active assignments (they end when a ticket is done)."""
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(TicketAssignment)
        .where(TicketAssignment.agent_id == agent_id, TicketAssignment.is_active)
    )
    return int(count or 0)


async def lock_live_agent(session: AsyncSession, agent_id: str) -> Agent | None:
    agent = await session.get(Agent, agent_id, with_for_update=True, populate_existing=True)
    return agent if agent is not None and agent.deleted_at is None else None


def current_assignee(ticket: TicketProjection, active: TicketAssignment | None) -> str | None:
    """Our active assignment is the freshest fact; the ticket's own field covers the rest."""
    return active.agent_id if active is not None else ticket.assigned_agent_id


def may_see(actor: Principal, ticket: TicketProjection, active: TicketAssignment | None) -> bool:
    return actor.sees_all_tickets or current_assignee(ticket, active) == actor.agent_id


# --- changing assignments -------------------------------------------------------------------------


def assignment_data(assignment: TicketAssignment) -> AssignmentData:
    return AssignmentData(
        id=assignment.id,
        ticket_id=assignment.ticket_id,
        agent_id=assignment.agent_id,
        previous_agent_id=assignment.previous_agent_id,
        reason=AssignmentReason(assignment.reason),
        transfer_reason=assignment.transfer_reason,
        status=AssignmentStatus(assignment.status),
        assigned_at=assignment.assigned_at,
        accepted_at=assignment.accepted_at,
        completed_at=assignment.completed_at,
        time_to_accept_seconds=assignment.time_to_accept_seconds,
        time_to_complete_seconds=assignment.time_to_complete_seconds,
        is_active=assignment.is_active,
        version=assignment.version,
    )


async def end_assignment(
    unit: UnitOfWork,
    assignment: TicketAssignment,
    status: AssignmentStatus,
    at: datetime,
) -> None:
    """Close an active assignment (transferred or completed) and publish assignment.updated."""
    assignment.is_active = False
    assignment.status = status.value
    assignment.completed_at = at
    if status == AssignmentStatus.COMPLETED:
        assignment.time_to_complete_seconds = seconds_between(assignment.assigned_at, at)
    assignment.version += 1
    await unit.session.flush()
    await unit.emit(EventType.ASSIGNMENT_UPDATED, assignment_data(assignment))


async def start_assignment(
    unit: UnitOfWork,
    ticket: TicketProjection,
    agent: Agent,
    reason: AssignmentReason,
    *,
    previous: TicketAssignment | None,
    transfer_reason: str | None = None,
    now: datetime | None = None,
) -> TicketAssignment:
    """Give the ticket to `agent`, ending `previous` as a transfer. Caller holds the ticket lock."""
    now = now or utcnow()
    if previous is not None:
        await end_assignment(unit, previous, AssignmentStatus.TRANSFERRED, now)
    assignment = TicketAssignment(
        id=str(uuid.uuid4()),
        ticket_id=ticket.id,
        agent_id=agent.id,
        previous_agent_id=previous.agent_id if previous is not None else None,
        reason=reason.value,
        transfer_reason=transfer_reason,
        status=AssignmentStatus.PENDING.value,
        assigned_at=now,
        is_active=True,
        version=1,
    )
    unit.session.add(assignment)
    agent.last_assigned_at = now
    await unit.session.flush()
    await unit.emit(EventType.TICKET_ASSIGNED, assignment_data(assignment))
    return assignment


# --- auto-assignment ------------------------------------------------------------------------------


async def online_candidates(session: AsyncSession) -> list[Candidate]:
    open_tickets = (
        sa.select(sa.func.count())
        .where(TicketAssignment.agent_id == Agent.id, TicketAssignment.is_active)
        .correlate(Agent)
        .scalar_subquery()
    )
    rows = await session.execute(
        sa.select(
            Agent.id,
            Agent.specializations,
            open_tickets,
            Agent.max_concurrent_tickets,
            Agent.customer_satisfaction_score,
            Agent.last_assigned_at,
        ).where(
            Agent.status == AgentStatus.ONLINE.value,
            Agent.is_active,
            Agent.deleted_at.is_(None),
        )
    )
    return [Candidate(*row) for row in rows]


async def auto_assign(unit: UnitOfWork, ticket: TicketProjection) -> TicketAssignment | None:
    """Assign by the §7 policy, or leave the ticket waiting when nobody fits.
    Caller holds the auto-assignment lock and the ticket's lock."""
    session = unit.session
    refused: set[str] = set()
    candidates = await online_candidates(session)
    while True:
        choice = choose_agent((c for c in candidates if c.agent_id not in refused), ticket.category)
        if choice is None:
            return None
        agent = await lock_live_agent(session, choice.agent_id)
        fits = (
            agent is not None
            and agent.is_active
            and agent.status == AgentStatus.ONLINE.value
            and await open_ticket_count(session, agent.id) < agent.max_concurrent_tickets
        )
        if agent is not None and fits:
            return await start_assignment(
                unit, ticket, agent, AssignmentReason.AUTO_ROUTE, previous=None
            )
        refused.add(choice.agent_id)


def _priority_rank() -> sa.ColumnElement[int]:
    return sa.case(
        *((TicketProjection.priority == p.value, rank) for p, rank in PRIORITY_RANK.items()),
        else_=0,
    )


async def assign_waiting_tickets(unit: UnitOfWork, settings: Settings) -> int:
    """Hand out tickets nobody holds, most urgent then oldest first, while someone fits.
    Takes the auto-assignment lock."""
    session = unit.session
    await take_auto_assign_lock(session)
    has_active = (
        sa.select(TicketAssignment.id)
        .where(TicketAssignment.ticket_id == TicketProjection.id, TicketAssignment.is_active)
        .exists()
    )
    waiting = (
        await session.scalars(
            sa.select(TicketProjection)
            .where(
                TicketProjection.deleted_at.is_(None),
                TicketProjection.assigned_agent_id.is_(None),
                TicketProjection.status.not_in(DONE_STATUSES),
                ~has_active,
            )
            .order_by(_priority_rank().desc(), TicketProjection.created_at, TicketProjection.id)
            .limit(settings.waiting_tickets_batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    assigned = 0
    for ticket in waiting:
        if await auto_assign(unit, ticket) is not None:
            assigned += 1
    if assigned:
        log.info("assigned %d waiting ticket(s)", assigned)
    return assigned


# --- the API's use cases --------------------------------------------------------------------------


async def visible_ticket(
    session: AsyncSession, actor: Principal, ticket_id: str, *, lock: bool = True
) -> tuple[TicketProjection, TicketAssignment | None]:
    ticket = await lock_ticket(session, ticket_id, lock=lock)
    if ticket is None:
        raise NotFoundError(f"Ticket {ticket_id} not found")
    active = await active_assignment(session, ticket_id, lock=lock)
    if not may_see(actor, ticket, active):
        raise NotFoundError(f"Ticket {ticket_id} not found")
    return ticket, active


async def assign_ticket(
    unit: UnitOfWork, actor: Principal, ticket_id: str, request: AssignRequest
) -> TicketAssignment:
    """Assign or transfer by hand (senior_agent and up). A senior's choice may exceed the
    agent's `max_concurrent_tickets`: capacity binds auto-assignment, not people."""
    session = unit.session
    ticket, active = await visible_ticket(session, actor, ticket_id)
    if not actor.sees_all_tickets:
        raise ForbiddenError("Assigning tickets requires senior_agent or above")
    if TicketStatus(ticket.status).is_done:
        raise ConflictError(f"Ticket {ticket_id} is {ticket.status}; reopen it to assign it")
    agent = await lock_live_agent(session, request.agent_id)
    if agent is None or not agent.is_active:
        raise UnprocessableError(
            f"agent_id: no active agent {request.agent_id}",
            errors=[{"loc": ["body", "agent_id"], "msg": "no such active agent", "type": "value"}],
        )
    if active is not None and active.agent_id == agent.id:
        raise ConflictError(f"Ticket {ticket_id} is already assigned to {agent.id}")
    reason = assignment_reason(request.reason, has_previous=active is not None)
    try:
        return await start_assignment(
            unit, ticket, agent, reason, previous=active, transfer_reason=request.transfer_reason
        )
    except IntegrityError as exc:  # the partial unique index: someone else assigned it meanwhile
        raise ConflictError(f"Ticket {ticket_id} was assigned concurrently; retry") from exc


async def bulk_assign(
    unit: UnitOfWork, actor: Principal, request: BulkAssignRequest
) -> BulkAssignResponse:
    """One assignee for many tickets (senior_agent and up): each ticket through
    `assign_ticket`, in a savepoint of its own, so one that cannot be assigned is reported and
    the others still are (partial success, one commit). Tickets are taken in id order, so two
    bulk assignments over the same tickets queue instead of deadlocking."""
    if not actor.sees_all_tickets:
        raise ForbiddenError("Assigning tickets requires senior_agent or above")
    agent = await lock_live_agent(unit.session, request.agent_id)
    if agent is None or not agent.is_active:
        raise UnprocessableError(
            f"agent_id: no active agent {request.agent_id}",
            errors=[{"loc": ["body", "agent_id"], "msg": "no such active agent", "type": "value"}],
        )
    single = AssignRequest(
        agent_id=request.agent_id, reason=request.reason, transfer_reason=request.transfer_reason
    )
    ids = list(dict.fromkeys(request.ticket_ids))
    results: dict[str, BulkAssignResult] = {}
    for ticket_id in sorted(ids):
        try:
            async with unit.session.begin_nested():
                assignment = await assign_ticket(unit, actor, ticket_id, single)
        except ProblemError as exc:
            outcome = "not_found" if exc.status == 404 else "conflict"
            results[ticket_id] = BulkAssignResult(
                id=ticket_id, outcome=outcome, status=exc.status, detail=exc.detail
            )
        else:
            results[ticket_id] = BulkAssignResult(
                id=ticket_id, outcome="assigned", status=201, assignment_id=assignment.id
            )
    ordered = [results[ticket_id] for ticket_id in ids]
    assigned = sum(r.outcome == "assigned" for r in ordered)
    return BulkAssignResponse(
        results=ordered, requested=len(ids), assigned=assigned, failed=len(ids) - assigned
    )


async def accept_assignment(unit: UnitOfWork, actor: Principal, ticket_id: str) -> TicketAssignment:
    """The assignee takes the ticket on; records how long that took."""
    _, active = await visible_ticket(unit.session, actor, ticket_id)
    if active is None:
        raise ConflictError(f"Ticket {ticket_id} has no active assignment")
    if active.agent_id != actor.agent_id:
        raise ForbiddenError("Only the assigned agent can accept the assignment")
    if active.status != AssignmentStatus.PENDING.value:
        raise ConflictError(f"The assignment is already {active.status}")
    now = utcnow()
    active.status = AssignmentStatus.ACCEPTED.value
    active.accepted_at = now
    active.time_to_accept_seconds = seconds_between(active.assigned_at, now)
    active.version += 1
    await unit.session.flush()
    await unit.emit(EventType.ASSIGNMENT_UPDATED, assignment_data(active))
    return active
