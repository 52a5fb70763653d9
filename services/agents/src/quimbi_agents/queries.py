"""Reads that shape answers: the agent list, one agent, a ticket's assignment history."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.enums import AgentStatus, Role
from quimbi_common.errors import ForbiddenError, NotFoundError

from .domain import sees_department_only
from .models import Agent, TicketAssignment
from .schemas import AgentList, Pagination
from .service.agents import Context, agent_read, current_agent_row, find_agent
from .service.assignments import visible_ticket


async def list_agents(
    session: AsyncSession,
    context: Context,
    actor: Principal,
    *,
    page: int,
    limit: int,
    department: str | None = None,
    role: Role | None = None,
    status: AgentStatus | None = None,
    is_active: bool | None = None,
) -> AgentList:
    """Managers and admins list everyone; a team lead its own department (only itself when it
    has none)."""
    assert actor.role is not None
    query = sa.select(Agent).where(Agent.deleted_at.is_(None))
    if sees_department_only(actor.role):
        me = await current_agent_row(session, actor)
        query = query.where(
            Agent.department == me.department if me.department else Agent.id == me.id
        )
    if department is not None:
        query = query.where(Agent.department == department)
    if role is not None:
        query = query.where(Agent.role == role.value)
    if status is not None:
        query = query.where(Agent.status == status.value)
    if is_active is not None:
        query = query.where(Agent.is_active == is_active)
    total = int(await session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0)
    rows = await session.scalars(
        query.order_by(Agent.name, Agent.id).offset((page - 1) * limit).limit(limit)
    )
    return AgentList(
        agents=[agent_read(agent, context) for agent in rows],
        pagination=Pagination(
            page=page,
            limit=limit,
            total=total,
            has_next=page * limit < total,
            has_prev=page > 1,
        ),
    )


async def get_agent(
    session: AsyncSession, context: Context, actor: Principal, agent_id: str
) -> Agent:
    """Oneself always; team leads their department; managers and admins anyone."""
    assert actor.role is not None
    if agent_id == actor.agent_id:
        return await current_agent_row(session, actor)
    if not actor.role.at_least(Role.TEAM_LEAD):
        raise ForbiddenError("Viewing other agents requires team_lead or above")
    agent = await find_agent(session, agent_id)
    if sees_department_only(actor.role):
        me = await current_agent_row(session, actor)
        if me.department is None or agent.department != me.department:
            raise NotFoundError(f"Agent {agent_id} not found")
    return agent


async def assignment_history(
    session: AsyncSession, actor: Principal, ticket_id: str
) -> list[TicketAssignment]:
    await visible_ticket(session, actor, ticket_id, lock=False)
    rows = await session.scalars(
        sa.select(TicketAssignment)
        .where(TicketAssignment.ticket_id == ticket_id)
        .order_by(TicketAssignment.assigned_at, TicketAssignment.id)
    )
    return list(rows.all())
