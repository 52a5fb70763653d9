"""What events do to the report projection. Four topics write one row per ticket in any
order, so each writes only its own columns, as an upsert, guarded by its own rule: the
resolution and the SLA clock by their event's version, the first response by taking the
earliest. Redelivery changes nothing (the consumer skips a seen event id; a repeat under a
new id meets the same guards). Runs in the consumer's unit of work (never commits)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.enums import TicketStatus
from quimbi_common.events import (
    MessageData,
    SlaTrackingData,
    TicketData,
    TicketDeletedData,
    TicketUpdatedData,
)

from ..models import TicketAssignment
from .models import ReportTicket

_DONE = {TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value}
_T = cast(sa.Table, ReportTicket.__table__)
_ROW = _T.c


def is_resolution(data: TicketData) -> bool:
    """The update that made the ticket resolved or closed (from not done): what 'handled' and
    the resolution time count. resolved → closed is not a second resolution."""
    if not isinstance(data, TicketUpdatedData) or "status" not in data.changes:
        return False
    change = data.changes["status"]
    return change.new in _DONE and change.old not in _DONE


async def _upsert(
    session: AsyncSession, ticket_id: str, values: dict[str, Any], **when: Any
) -> None:
    """Insert the row with `values`, or set them where `when` (per column: a SQL condition on
    the stored row) holds."""
    update = {
        name: sa.case((when[name], value), else_=_ROW[name]) if name in when else value
        for name, value in ((n, insert(_T).excluded[n]) for n in values)
    }
    await session.execute(
        insert(_T)
        .values(ticket_id=ticket_id, **values)
        .on_conflict_do_update(index_elements=[_ROW.ticket_id], set_=update)
    )


async def _holder(session: AsyncSession, ticket_id: str, at: datetime) -> str | None:
    """Who held the ticket at `at` by our own assignment records (the latest one started by
    then): the resolver when the ticket event does not name its assignee yet."""
    return await session.scalar(
        sa.select(TicketAssignment.agent_id)
        .where(TicketAssignment.ticket_id == ticket_id, TicketAssignment.assigned_at <= at)
        .order_by(TicketAssignment.assigned_at.desc())
        .limit(1)
    )


async def apply_ticket(session: AsyncSession, data: TicketData) -> None:
    """ticket.created / ticket.updated: when the ticket was made and, for the update that
    resolved it, when and by whom (the assignee it names, else our assignment records); a
    later resolution (after a reopening) replaces an earlier one."""
    values: dict[str, Any] = {"created_at": data.created_at}
    when: dict[str, Any] = {}
    if is_resolution(data):
        resolver = data.assigned_agent_id or await _holder(session, data.id, data.updated_at)
        newer = sa.func.coalesce(_ROW.resolution_version, 0) < data.version
        values |= {
            "resolved_at": data.updated_at,
            "resolved_by": resolver,
            "resolution_version": data.version,
        }
        when = {"resolved_at": newer, "resolved_by": newer, "resolution_version": newer}
    await _upsert(session, data.id, values, **when)


async def apply_ticket_deleted(session: AsyncSession, data: TicketDeletedData) -> None:
    """A deleted ticket leaves every report (its row stays, so late events find it gone)."""
    await _upsert(session, data.id, {"deleted_at": data.deleted_at})


async def apply_message(session: AsyncSession, data: MessageData) -> None:
    """The earliest agent message is the first response, credited to its author."""
    if not data.from_agent:
        return
    earlier = sa.or_(_ROW.first_response_at.is_(None), _ROW.first_response_at > data.created_at)
    await _upsert(
        session,
        data.ticket_id,
        {"first_response_at": data.created_at, "first_response_by": data.author_agent_id},
        first_response_at=earlier,
        first_response_by=earlier,
    )


async def apply_sla(session: AsyncSession, data: SlaTrackingData) -> None:
    """sla.updated / sla.breached: the clock's statuses as of its highest version (a breach
    alert carries the same clock, so either may come first)."""
    values = {
        "sla_version": data.version,
        "first_response_status": data.first_response_status.value,
        "first_response_deadline": data.first_response_deadline,
        "sla_first_response_at": data.first_response_at,
        "resolution_status": data.resolution_status.value,
        "resolution_deadline": data.resolution_deadline,
        "sla_resolved_at": data.resolved_at,
    }
    newer = sa.func.coalesce(_ROW.sla_version, -1) <= data.version
    await _upsert(session, data.ticket_id, values, **dict.fromkeys(values, newer))
