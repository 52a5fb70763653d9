"""Agent use cases: login and logout, the bootstrap admin, and managing agents (§3)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal, RevocationStore, issue_token
from quimbi_common.clock import utcnow
from quimbi_common.enums import AgentStatus, Role
from quimbi_common.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from quimbi_common.events import AgentData, AgentUpdatedData, EventType, FieldChange
from quimbi_common.runtime import Runtime, json_safe
from quimbi_common.uow import UnitOfWork, UnitsOfWork

from ..domain import (
    local_date,
    may_edit_agent,
    may_grant_role,
    resolved_today,
)
from ..keys import KeyRing
from ..models import Agent
from ..passwords import Passwords
from ..ratelimit import LoginThrottle, too_many_attempts
from ..schemas import (
    AgentCreate,
    AgentRead,
    AgentUpdate,
    LoginRequest,
    LoginResponse,
)
from ..settings import Settings
from .assignments import assign_waiting_tickets

log = logging.getLogger(__name__)
AGENT_EDITS_LOCK_ID = 0x0A6E_0002
PUBLISHED_FIELDS = frozenset(AgentData.model_fields) - {"id", "version"}
INVALID_LOGIN = "Invalid email or password"


@dataclass(frozen=True)
class Context:
    """What the use cases need besides a unit of work, built once per app in `main.build_app`
    and provided to the routes (`Runtime.provide`)."""

    settings: Settings
    keyring: KeyRing
    passwords: Passwords
    throttle: LoginThrottle
    revocations: RevocationStore
    runtime: Runtime

    @property
    def units(self) -> UnitsOfWork:
        assert self.runtime.units is not None
        return self.runtime.units

    async def void_tokens(self, agent_id: str) -> None:
        """Every token issued to the agent until now stops working, everywhere."""
        try:
            await self.revocations.void_agent_tokens(
                agent_id, max_token_ttl_seconds=self.settings.access_token_ttl_seconds
            )
        except RedisError as exc:
            raise ServiceUnavailableError("Token revocation store unavailable") from exc


# --- shapes ---------------------------------------------------------------------------------------


def agent_read(agent: Agent, context: Context) -> AgentRead:
    today = local_date(utcnow(), context.settings.timezone)
    return AgentRead(
        id=agent.id,
        email=agent.email,
        name=agent.name,
        role=Role(agent.role),
        status=AgentStatus(agent.status),
        department=agent.department,
        specializations=list(agent.specializations or []),
        max_concurrent_tickets=agent.max_concurrent_tickets,
        is_active=agent.is_active,
        tickets_resolved_today=resolved_today(
            agent.tickets_resolved_today, agent.resolved_count_date, today
        ),
        avg_response_time_seconds=agent.avg_response_time_seconds,
        customer_satisfaction_score=agent.customer_satisfaction_score,
        last_login_at=agent.last_login_at,
        created_at=agent.created_at,
    )


def agent_data(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "email": agent.email,
        "name": agent.name,
        "role": Role(agent.role),
        "status": AgentStatus(agent.status),
        "department": agent.department,
        "specializations": list(agent.specializations or []),
        "max_concurrent_tickets": agent.max_concurrent_tickets,
        "is_active": agent.is_active,
        "version": agent.version,
    }


async def _publish(unit: UnitOfWork, topic: EventType, agent: Agent) -> None:
    await unit.emit(topic, AgentData(**agent_data(agent)))


# --- lookups --------------------------------------------------------------------------------------


async def find_agent(session: AsyncSession, agent_id: str, *, for_update: bool = False) -> Agent:
    """A live (not deleted) agent, or 404."""
    agent = await session.get(Agent, agent_id, with_for_update=for_update, populate_existing=True)
    if agent is None or agent.deleted_at is not None:
        raise NotFoundError(f"Agent {agent_id} not found")
    return agent


async def current_agent_row(
    session: AsyncSession, principal: Principal, *, for_update: bool = False
) -> Agent:
    """The caller's own row; a token whose agent is gone is no longer a credential (401)."""
    try:
        return await find_agent(session, principal.agent_id or "", for_update=for_update)
    except NotFoundError as exc:
        raise UnauthorizedError("The agent of this token no longer exists") from exc


async def _email_taken(session: AsyncSession, email: str, *, other_than: str | None = None) -> bool:
    query = sa.select(Agent.id).where(Agent.email == email, Agent.deleted_at.is_(None))
    if other_than is not None:
        query = query.where(Agent.id != other_than)
    return (await session.scalar(query.limit(1))) is not None


async def _serialize_agent_edits(session: AsyncSession) -> None:
    """Edits and deletions run one at a time (until commit), so two admins demoting each other
    at once cannot both see the other as the remaining admin. Edits are rare; this is cheap."""
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(AGENT_EDITS_LOCK_ID)))


async def _other_active_admins(session: AsyncSession, agent_id: str) -> int:
    count = await session.scalar(
        sa.select(sa.func.count()).where(
            Agent.role == Role.ADMIN.value,
            Agent.is_active,
            Agent.deleted_at.is_(None),
            Agent.id != agent_id,
        )
    )
    return int(count or 0)


# --- login, logout, bootstrap ---------------------------------------------------------------------


async def login(
    unit: UnitOfWork, context: Context, request: LoginRequest, client_ip: str
) -> LoginResponse:
    """Same 401 and the same bcrypt work for an unknown email, a wrong password or an inactive
    account. Throttled callers get 429 (see ratelimit.py): before any bcrypt work, unless only
    a correct password from a known-good address may pass."""
    email = request.email.strip().lower()
    gate = await context.throttle.check(email, client_ip)
    agent = await unit.session.scalar(
        sa.select(Agent).where(Agent.email == email, Agent.deleted_at.is_(None))
    )
    matched = await context.passwords.verify(
        request.password, agent.hashed_password if agent else None
    )
    if agent is None or not matched or not agent.is_active:
        await context.throttle.record_failure(email, client_ip)
        if gate.only_correct_password:
            raise too_many_attempts(gate.waived_wait)
        raise UnauthorizedError(INVALID_LOGIN)
    await context.throttle.record_success(email, client_ip)
    if context.passwords.needs_rehash(agent.hashed_password):
        agent.hashed_password = await context.passwords.hash(request.password)
    agent.last_login_at = utcnow()
    settings = context.settings
    token, _ = issue_token(
        context.keyring.private_pem,
        context.keyring.kid,
        subject=agent.id,
        email=agent.email,
        role=agent.role,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    return LoginResponse(
        access_token=token,
        expires_in=settings.access_token_ttl_seconds,
        agent=agent_read(agent, context),
    )


async def logout(context: Context, principal: Principal) -> None:
    """The token's id stays revoked until the token would have expired anyway."""
    await context.revocations.revoke(principal.jti or "", principal.expires_at)


async def bootstrap_admin(unit: UnitOfWork, context: Context) -> Agent | None:
    """Create the first admin from BOOTSTRAP_ADMIN_* when no active admin exists."""
    settings = context.settings
    session = unit.session
    has_admin = await session.scalar(
        sa.select(Agent.id)
        .where(Agent.role == Role.ADMIN.value, Agent.is_active, Agent.deleted_at.is_(None))
        .limit(1)
    )
    if has_admin is not None:
        return None
    email = settings.bootstrap_admin_email.strip().lower()
    if await _email_taken(session, email):
        log.warning("no active admin, but %s exists and is not one; not bootstrapping", email)
        return None
    admin = _new_agent(
        email=email,
        hashed_password=await context.passwords.hash(
            settings.bootstrap_admin_password.get_secret_value()
        ),
        name=settings.bootstrap_admin_name,
        role=Role.ADMIN,
        max_concurrent_tickets=settings.default_max_concurrent_tickets,
    )
    try:
        async with session.begin_nested():
            session.add(admin)
            await session.flush()
    except IntegrityError:  # another replica bootstrapped at the same moment
        return None
    await _publish(unit, EventType.AGENT_CREATED, admin)
    log.info("created the bootstrap admin %s", email)
    return admin


# --- managing agents ------------------------------------------------------------------------------


def _new_agent(
    *,
    email: str,
    hashed_password: str,
    name: str,
    role: Role,
    max_concurrent_tickets: int,
    status: AgentStatus = AgentStatus.OFFLINE,
    department: str | None = None,
    specializations: list[str] | None = None,
    customer_satisfaction_score: float = 0.0,
) -> Agent:
    now = utcnow()
    return Agent(
        id=str(uuid.uuid4()),
        email=email,
        hashed_password=hashed_password,
        name=name,
        role=role.value,
        status=status.value,
        department=department,
        specializations=specializations or [],
        max_concurrent_tickets=max_concurrent_tickets,
        is_active=True,
        tickets_resolved_today=0,
        avg_response_time_seconds=0,
        response_time_samples=0,
        response_time_total_seconds=0,
        customer_satisfaction_score=customer_satisfaction_score,
        created_at=now,
        updated_at=now,
        version=1,
    )


async def create_agent(
    unit: UnitOfWork, context: Context, actor: Principal, request: AgentCreate
) -> Agent:
    session = unit.session
    assert actor.role is not None
    if not may_grant_role(actor.role, request.role):
        raise ForbiddenError("Only an admin can create admins")
    if await _email_taken(session, request.email):
        raise ConflictError(f"An agent with email {request.email} already exists")
    agent = _new_agent(
        email=request.email,
        hashed_password=await context.passwords.hash(request.password),
        name=request.name,
        role=request.role,
        status=request.status,
        department=request.department,
        specializations=request.specializations,
        max_concurrent_tickets=(
            request.max_concurrent_tickets
            if request.max_concurrent_tickets is not None
            else context.settings.default_max_concurrent_tickets
        ),
        customer_satisfaction_score=request.customer_satisfaction_score,
    )
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"An agent with email {request.email} already exists") from exc
    await _publish(unit, EventType.AGENT_CREATED, agent)
    unit.after_commit(lambda: pick_up_waiting_tickets(context, agent))
    return agent


def _apply_changes(agent: Agent, fields: dict[str, Any]) -> dict[str, FieldChange]:
    changes: dict[str, FieldChange] = {}
    for name, new in fields.items():
        value = json_safe(new)
        old = getattr(agent, name)
        if old != value:
            changes[name] = FieldChange(old=old, new=value)
            setattr(agent, name, value)
    return changes


async def update_agent(
    unit: UnitOfWork,
    context: Context,
    actor: Principal,
    agent_id: str,
    request: AgentUpdate,
) -> Agent:
    """Managers edit agents up to manager; admins anyone. Changing the role, deactivating or
    changing the password voids every token the agent holds."""
    assert actor.role is not None
    session = unit.session
    await _serialize_agent_edits(session)
    agent = await find_agent(session, agent_id, for_update=True)
    if not may_edit_agent(actor.role, Role(agent.role)):
        raise ForbiddenError("Only an admin can edit an admin")
    fields = request.model_dump(exclude_unset=True)
    password = fields.pop("password", None)
    if "role" in fields and not may_grant_role(actor.role, fields["role"]):
        raise ForbiddenError("Only an admin can grant the admin role")
    if "email" in fields and await _email_taken(session, fields["email"], other_than=agent.id):
        raise ConflictError(f"An agent with email {fields['email']} already exists")
    was_admin = agent.role == Role.ADMIN.value and agent.is_active
    if fields.get("is_active") is False:
        fields["status"] = AgentStatus.OFFLINE
    changes = _apply_changes(agent, fields)
    still_admin = agent.role == Role.ADMIN.value and agent.is_active
    if was_admin and not still_admin and await _other_active_admins(session, agent.id) == 0:
        raise ConflictError("This is the last active admin; promote another admin first")
    if password is not None:
        agent.hashed_password = await context.passwords.hash(password)
    void = "role" in changes or "is_active" in changes or password is not None
    agent.updated_at = utcnow()
    published = {k: v for k, v in changes.items() if k in PUBLISHED_FIELDS}
    if published:
        agent.version += 1
        data = AgentUpdatedData(**agent_data(agent), changes=published)
        await unit.emit(EventType.AGENT_UPDATED, data)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("An agent with this email already exists") from exc
    if void:
        await context.void_tokens(agent.id)  # before commit: if Redis is down, change nothing
        unit.after_commit(lambda: context.void_tokens(agent.id))  # also tokens issued meanwhile
    unit.after_commit(lambda: pick_up_waiting_tickets(context, agent))
    return agent


async def delete_agent(unit: UnitOfWork, context: Context, actor: Principal, agent_id: str) -> None:
    """Admins only. The row stays (assignment history points at it) but the agent is gone:
    it cannot log in, is not listed, its tokens are void and its email is free again."""
    session = unit.session
    await _serialize_agent_edits(session)
    agent = await find_agent(session, agent_id, for_update=True)
    if agent.id == actor.agent_id:
        raise ConflictError("You cannot delete your own account")
    if (
        agent.role == Role.ADMIN.value
        and agent.is_active
        and await _other_active_admins(session, agent.id) == 0
    ):
        raise ConflictError("This is the last active admin")
    now = utcnow()
    agent.deleted_at = now
    agent.updated_at = now
    agent.is_active = False
    agent.status = AgentStatus.OFFLINE.value
    agent.version += 1
    await _publish(unit, EventType.AGENT_DELETED, agent)
    await context.void_tokens(agent.id)  # before commit: if Redis is down, change nothing
    unit.after_commit(lambda: context.void_tokens(agent.id))  # also tokens issued meanwhile


async def set_own_status(
    unit: UnitOfWork, context: Context, principal: Principal, status: AgentStatus
) -> Agent:
    agent = await current_agent_row(unit.session, principal, for_update=True)
    changes = _apply_changes(agent, {"status": status})
    if changes:
        agent.updated_at = utcnow()
        agent.version += 1
        data = AgentUpdatedData(**agent_data(agent), changes=changes)
        await unit.emit(EventType.AGENT_UPDATED, data)
    unit.after_commit(lambda: pick_up_waiting_tickets(context, agent))
    return agent


async def pick_up_waiting_tickets(context: Context, agent: Agent) -> int:
    """When an agent is (or comes) online with room, tickets nobody holds are handed out: in
    a unit of its own after the agent's change commits (it takes the auto-assignment lock)."""
    if not context.settings.auto_assign:
        return 0
    if agent.status != AgentStatus.ONLINE.value or not agent.is_active or agent.deleted_at:
        return 0
    return await context.units.run(lambda unit: assign_waiting_tickets(unit, context.settings))
