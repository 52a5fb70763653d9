"""Canned responses: reply templates an agent keeps for themselves (personal) or that team leads
keep for everyone (shared), rendered for a ticket (`placeholders`) as a preview or as the
content of a message.

Who may do what: every agent uses shared templates and their own personal ones; another's
personal template does not exist for them (404). Any agent creates and changes their personal
templates; shared ones are created, changed and deleted by `team_lead` and up (others: 403).
Templates are this service's own data: no events (the message they become is announced as any
message is).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common import ids
from quimbi_common.auth import Principal
from quimbi_common.clock import utcnow
from quimbi_common.enums import Role
from quimbi_common.errors import ForbiddenError, NotFoundError, UnprocessableError
from quimbi_common.uow import UnitOfWork

from .models import AgentName, ReplyTemplate, Ticket
from .placeholders import PLACEHOLDERS, render, unknown_placeholders
from .schemas import CONTENT_MAX_BYTES, TemplateCreate, TemplateUpdate

SHARED_EDITOR = Role.TEAM_LEAD


def _usable(principal: Principal) -> sa.ColumnElement[bool]:
    """Templates the caller may see and use: shared ones and their own."""
    return sa.or_(
        ReplyTemplate.shared.is_(True), ReplyTemplate.owner_agent_id == principal.agent_id
    )


def _check_body(body: str, field: str = "body") -> None:
    unknown = unknown_placeholders(body)
    if unknown:
        raise UnprocessableError(
            f"Unknown placeholders: {', '.join('{{' + n + '}}' for n in unknown)}",
            errors=[
                {
                    "loc": ["body", field],
                    "msg": f"unknown placeholders {unknown}; allowed: {sorted(PLACEHOLDERS)}",
                    "type": "value_error",
                }
            ],
        )


def _may_share(principal: Principal) -> None:
    if not principal.has_role(SHARED_EDITOR):
        raise ForbiddenError("Only team leads and above may create or change shared templates")


async def list_templates(
    session: AsyncSession, principal: Principal, shared: bool | None
) -> list[ReplyTemplate]:
    stmt = sa.select(ReplyTemplate).where(_usable(principal))
    if shared is not None:
        stmt = stmt.where(ReplyTemplate.shared.is_(shared))
    return list(await session.scalars(stmt.order_by(ReplyTemplate.name, ReplyTemplate.id)))


async def get_template(
    session: AsyncSession, principal: Principal, template_id: str, *, lock: bool = False
) -> ReplyTemplate:
    stmt = sa.select(ReplyTemplate).where(ReplyTemplate.id == template_id, _usable(principal))
    template = await session.scalar(stmt.with_for_update() if lock else stmt)
    if template is None:
        raise NotFoundError(f"Template {template_id} not found")
    return template


async def create_template(
    unit: UnitOfWork, principal: Principal, body: TemplateCreate
) -> ReplyTemplate:
    _check_body(body.body)
    if body.shared:
        _may_share(principal)
    assert principal.agent_id is not None
    at = utcnow()
    template = ReplyTemplate(
        id=ids.new_id("tmpl"),
        name=body.name,
        body=body.body,
        shared=body.shared,
        owner_agent_id=principal.agent_id,
        created_at=at,
        updated_at=at,
        version=1,
    )
    unit.session.add(template)
    await unit.session.flush()
    return template


async def update_template(
    unit: UnitOfWork, principal: Principal, template_id: str, body: TemplateUpdate
) -> ReplyTemplate:
    template = await get_template(unit.session, principal, template_id, lock=True)
    wanted: dict[str, Any] = body.model_dump(exclude_unset=True)
    if "body" in wanted:
        _check_body(wanted["body"])
    _may_change(principal, template, becomes_shared=wanted.get("shared", False))
    changed = {k: v for k, v in wanted.items() if getattr(template, k) != v}
    if changed:
        for name, value in changed.items():
            setattr(template, name, value)
        template.version += 1
        template.updated_at = utcnow()
    return template


def _may_change(principal: Principal, template: ReplyTemplate, *, becomes_shared: bool) -> None:
    """Shared templates (or one becoming shared): team leads and up; a personal one is only
    ever loaded for its owner (`_usable`)."""
    if template.shared or becomes_shared:
        _may_share(principal)


async def delete_template(unit: UnitOfWork, principal: Principal, template_id: str) -> None:
    template = await get_template(unit.session, principal, template_id, lock=True)
    _may_change(principal, template, becomes_shared=False)
    await unit.session.delete(template)


async def agent_name(session: AsyncSession, principal: Principal) -> str:
    """The caller's name as the agents service announced it, else their email."""
    name = await session.scalar(sa.select(AgentName.name).where(AgentName.id == principal.agent_id))
    return name or principal.email or principal.agent_id or ""


async def render_for(
    session: AsyncSession,
    principal: Principal,
    template: ReplyTemplate,
    ticket: Ticket,
    *,
    field: str = "template_id",
) -> str:
    """The template's body filled in for `ticket` (loaded with its customer) and the caller;
    a result over the message size limit is a 422."""
    customer = ticket.customer
    values = {
        "customer_name": customer.name or customer.email,
        "customer_email": customer.email,
        "ticket_id": ticket.id,
        "ticket_subject": ticket.subject,
        "agent_name": await agent_name(session, principal),
    }
    content = render(template.body, values)
    if len(content.encode()) > CONTENT_MAX_BYTES:
        raise UnprocessableError(
            "The rendered template is over the message size limit",
            errors=[
                {
                    "loc": ["body", field],
                    "msg": f"renders to more than {CONTENT_MAX_BYTES} bytes",
                    "type": "value_error",
                }
            ],
        )
    return content


async def usable_template(
    session: AsyncSession, principal: Principal, template_id: str
) -> ReplyTemplate:
    """A template named in a request body: one the caller may not use is a 422 there."""
    try:
        return await get_template(session, principal, template_id)
    except NotFoundError:
        raise UnprocessableError(
            f"Template {template_id} not found",
            errors=[
                {"loc": ["body", "template_id"], "msg": "unknown template", "type": "value_error"}
            ],
        ) from None
