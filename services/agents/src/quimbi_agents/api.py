"""Routes: parse, authorize, call a use case, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from quimbi_common.auth import Admin, CurrentAgent, Manager, TeamLead
from quimbi_common.enums import AgentStatus, Role
from quimbi_common.openapi import problems
from quimbi_common.pagination import Page
from quimbi_common.runtime import SessionDep, UnitsDep, provided

from . import queries
from .reports.api import router as reports_router
from .schemas import (
    AgentCreate,
    AgentList,
    AgentRead,
    AgentUpdate,
    AssignmentHistory,
    AssignmentRead,
    AssignRequest,
    BulkAssignRequest,
    BulkAssignResponse,
    LoginRequest,
    LoginResponse,
    StatusUpdate,
)
from .service import agents, assignments
from .service.agents import Context

ContextDep = Annotated[Context, Depends(provided(Context))]
AgentId = Annotated[str, Path(min_length=1, max_length=255)]
TicketId = Annotated[str, Path(min_length=1, max_length=255)]

keys_router = APIRouter(tags=["keys"])
agents_router = APIRouter(prefix="/api/agents", tags=["agents"])
assignments_router = APIRouter(prefix="/api/tickets/{ticket_id}", tags=["assignments"])
# before assignments_router, whose `/api/tickets/{ticket_id}/assign` would take `bulk` for an id
bulk_router = APIRouter(tags=["assignments"])


@keys_router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(context: ContextDep, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=300"
    return context.keyring.jwks


# --- identity -------------------------------------------------------------------------------------


@agents_router.post(
    "/login",
    summary="Exchange email and password for an access token",
    responses=problems(
        **{
            "401": "Unknown email, wrong password or inactive account (one answer for all)",
            "429": "Too many failed logins; see Retry-After",
            "503": "The login throttle's store is unavailable",
        }
    ),
)
async def login(
    body: LoginRequest, request: Request, units: UnitsDep, context: ContextDep
) -> LoginResponse:
    client_ip = request.client.host if request.client else "unknown"
    return await units.run(lambda unit: agents.login(unit, context, body, client_ip))


@agents_router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke the caller's token"
)
async def logout(agent: CurrentAgent, context: ContextDep) -> None:
    await agents.logout(context, agent)


@agents_router.get("/me", summary="The caller's own profile")
async def me(agent: CurrentAgent, session: SessionDep, context: ContextDep) -> AgentRead:
    return agents.agent_read(await agents.current_agent_row(session, agent), context)


@agents_router.patch("/me/status", summary="Set the caller's availability")
async def set_status(
    body: StatusUpdate, agent: CurrentAgent, units: UnitsDep, context: ContextDep
) -> AgentRead:
    updated = await units.run(lambda unit: agents.set_own_status(unit, context, agent, body.status))
    return agents.agent_read(updated, context)


# --- management -----------------------------------------------------------------------------------


@agents_router.get("", summary="List agents (team leads: their department)")
async def list_agents(
    actor: TeamLead,
    session: SessionDep,
    context: ContextDep,
    page: Page = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    department: Annotated[str | None, Query(max_length=100)] = None,
    role: Role | None = None,
    agent_status: Annotated[AgentStatus | None, Query(alias="status")] = None,
    is_active: bool | None = None,
) -> AgentList:
    return await queries.list_agents(
        session,
        context,
        actor,
        page=page,
        limit=limit,
        department=department,
        role=role,
        status=agent_status,
        is_active=is_active,
    )


@agents_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an agent",
    responses=problems(**{"409": "An agent with this email exists"}),
)
async def create_agent(
    body: AgentCreate, actor: Manager, units: UnitsDep, context: ContextDep
) -> AgentRead:
    created = await units.run(lambda unit: agents.create_agent(unit, context, actor, body))
    return agents.agent_read(created, context)


@agents_router.get("/{agent_id}", summary="One agent (self; team leads their department)")
async def get_agent(
    agent_id: AgentId, actor: CurrentAgent, session: SessionDep, context: ContextDep
) -> AgentRead:
    return agents.agent_read(await queries.get_agent(session, context, actor, agent_id), context)


@agents_router.patch(
    "/{agent_id}",
    summary="Update an agent",
    responses=problems(**{"409": "The email is taken, or this is the last active admin"}),
)
async def update_agent(
    agent_id: AgentId, body: AgentUpdate, actor: Manager, units: UnitsDep, context: ContextDep
) -> AgentRead:
    updated = await units.run(
        lambda unit: agents.update_agent(unit, context, actor, agent_id, body)
    )
    return agents.agent_read(updated, context)


@agents_router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an agent",
    responses=problems(**{"409": "One's own account, or the last active admin"}),
)
async def delete_agent(
    agent_id: AgentId, actor: Admin, units: UnitsDep, context: ContextDep
) -> None:
    await units.run(lambda unit: agents.delete_agent(unit, context, actor, agent_id))


# --- assignments ----------------------------------------------------------------------------------


@assignments_router.post(
    "/assign",
    status_code=status.HTTP_201_CREATED,
    summary="Assign or transfer a ticket",
    responses=problems(
        **{"409": "The ticket is closed, already the agent's, or assigned concurrently"}
    ),
)
async def assign(
    ticket_id: TicketId,
    body: AssignRequest,
    actor: CurrentAgent,
    units: UnitsDep,
    context: ContextDep,
) -> AssignmentRead:
    assignment = await context.runtime.projections.until_found(
        ticket_id,
        lambda: units.run(lambda unit: assignments.assign_ticket(unit, actor, ticket_id, body)),
    )
    return AssignmentRead.model_validate(assignment, from_attributes=True)


@assignments_router.post(
    "/assignment/accept",
    summary="Accept the caller's assignment",
    responses=problems(**{"409": "No active assignment, or it is already accepted"}),
)
async def accept(
    ticket_id: TicketId, actor: CurrentAgent, units: UnitsDep, context: ContextDep
) -> AssignmentRead:
    assignment = await context.runtime.projections.until_found(
        ticket_id,
        lambda: units.run(lambda unit: assignments.accept_assignment(unit, actor, ticket_id)),
    )
    return AssignmentRead.model_validate(assignment, from_attributes=True)


@assignments_router.get("/assignments", summary="The ticket's assignment history")
async def history(
    ticket_id: TicketId, actor: CurrentAgent, session: SessionDep, context: ContextDep
) -> AssignmentHistory:
    rows = await context.runtime.projections.until_found(
        ticket_id, lambda: queries.assignment_history(session, actor, ticket_id), session
    )
    return AssignmentHistory(
        ticket_id=ticket_id,
        assignments=[AssignmentRead.model_validate(row, from_attributes=True) for row in rows],
    )


@bulk_router.post(
    "/api/tickets/bulk/assign",
    summary="Assign many tickets to one agent",
    responses=problems(
        **{
            "403": "Below senior_agent",
            "422": "A bad body, or no active agent with that id",
        }
    ),
)
async def bulk_assign(
    body: BulkAssignRequest, actor: CurrentAgent, units: UnitsDep
) -> BulkAssignResponse:
    """Assign or transfer up to 500 tickets to one agent (senior_agent and up), each as the
    single assign route would; every ticket gets its own result (partial success)."""
    return await units.run(lambda unit: assignments.bulk_assign(unit, actor, body))


routers = (keys_router, agents_router, bulk_router, assignments_router, reports_router)
