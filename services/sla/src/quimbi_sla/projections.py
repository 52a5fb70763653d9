"""What ticket and message events maintain here: each ticket's SLA clock (started, paused,
resumed, answered, resolved, stopped), in the consumer's unit of work."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.catchup import notify_applied
from quimbi_common.clock import utcnow
from quimbi_common.enums import TicketStatus
from quimbi_common.events import MessageData, TicketData, TicketDeletedData
from quimbi_common.uow import UnitOfWork

from .calendar import BusinessCalendar
from .models import SlaTracking, TicketFacts
from .service import (
    apply_policy,
    aware,
    get_policy,
    lock_ticket,
    pause_clock,
    published_state,
    resume_clock,
    settle,
)


def _apply_ticket_state(
    row: SlaTracking, data: TicketData, calendar: BusinessCalendar, now: datetime
) -> None:
    """Move the clock by the ticket's change of status (pending pauses, done resolves)."""
    at = min(aware(data.updated_at), now)
    old, new = TicketStatus(row.ticket_status), data.status
    if old is TicketStatus.PENDING and new is not TicketStatus.PENDING and row.is_paused:
        resume_clock(row, at, calendar)
    if new.is_done and not old.is_done:
        row.resolved_at = at
    elif old.is_done and not new.is_done:
        row.resolved_at = None  # reopened: the resolution clock runs on
    if new is TicketStatus.PENDING and old is not TicketStatus.PENDING and not row.is_paused:
        pause_clock(row, at, calendar)
    row.ticket_status = new.value
    row.assigned_agent_id = data.assigned_agent_id
    row.ticket_version = data.version


async def _start_clock(
    unit: UnitOfWork,
    data: TicketData,
    facts: TicketFacts | None,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    session = unit.session
    policy = await get_policy(session, data.priority)
    created_at = aware(data.created_at)
    row = SlaTracking(
        ticket_id=data.id,
        ticket_version=0,
        ticket_created_at=created_at,
        ticket_status=TicketStatus.OPEN.value,
        priority=data.priority.value,
        first_response_at=facts.first_agent_message_at if facts else None,
        first_response_paused_seconds=0.0,
        resolution_paused_seconds=0.0,
        is_paused=False,
        total_paused_seconds=0,
    )
    apply_policy(row, policy)
    _apply_ticket_state(row, data, calendar, now)
    session.add(row)
    await settle(unit, row, None, calendar, now)
    if facts is not None:
        await session.delete(facts)


async def apply_ticket(
    unit: UnitOfWork,
    data: TicketData,
    calendar: BusinessCalendar,
    now: datetime | None = None,
) -> None:
    """ticket.created / ticket.updated: start the clock, or follow status, priority, assignee.

    Works from the ticket's whole state (not only `changes`), so a clock can start from a
    ticket.updated that overtook its ticket.created; older versions are ignored.
    """
    now = now or utcnow()
    session = unit.session
    row = await lock_ticket(session, data.id)
    if row is None:
        facts = await session.get(TicketFacts, data.id)
        if facts is not None and (facts.deleted_version or 0) >= data.version:
            return
        await _start_clock(unit, data, facts, calendar, now)
        await notify_applied(session, data.id)  # requests waiting for this ticket look again
        return
    if row.deleted_at is not None or data.version <= row.ticket_version:
        return
    before = published_state(row)
    _apply_ticket_state(row, data, calendar, now)
    if data.priority.value != row.priority:
        row.priority = data.priority.value
        apply_policy(row, await get_policy(session, data.priority))
    await settle(unit, row, before, calendar, now)
    await notify_applied(session, data.id)


async def apply_ticket_deleted(unit: UnitOfWork, data: TicketDeletedData) -> None:
    """ticket.deleted: the clock stops for good and the ticket's SLA is no longer shown."""
    session = unit.session
    row = await lock_ticket(session, data.id)
    if row is None:
        await _remember(session, data.id, deleted_version=data.version)
        return
    if row.deleted_at is None:
        row.deleted_at = aware(data.deleted_at)
        row.next_check_at = None
        row.ticket_version = max(row.ticket_version, data.version)


async def apply_message(
    unit: UnitOfWork,
    data: MessageData,
    calendar: BusinessCalendar,
    now: datetime | None = None,
) -> None:
    """message.added: the first agent message answers; a customer message resumes a pause."""
    now = now or utcnow()
    sent_at = min(aware(data.created_at), now)
    session = unit.session
    row = await lock_ticket(session, data.ticket_id)
    if row is None:
        if data.from_agent:
            await _remember(session, data.ticket_id, first_agent_message_at=sent_at)
        return
    if row.deleted_at is not None:
        return
    before = published_state(row)
    if data.from_agent:
        if row.first_response_at is not None and row.first_response_at <= sent_at:
            return
        row.first_response_at = sent_at
    else:
        if not row.is_paused or row.paused_at is None or sent_at < row.paused_at:
            return
        resume_clock(row, sent_at, calendar)
    await settle(unit, row, before, calendar, now)


async def _remember(
    session: AsyncSession,
    ticket_id: str,
    *,
    first_agent_message_at: datetime | None = None,
    deleted_version: int | None = None,
) -> None:
    """Keep a fact about a ticket whose clock does not exist yet (earliest answer, deletion)."""
    statement = insert(TicketFacts).values(
        ticket_id=ticket_id,
        first_agent_message_at=first_agent_message_at,
        deleted_version=deleted_version,
    )
    excluded = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[TicketFacts.ticket_id],
            set_={
                "first_agent_message_at": sa.func.least(
                    TicketFacts.first_agent_message_at, excluded.first_agent_message_at
                ),
                "deleted_version": sa.func.greatest(
                    TicketFacts.deleted_version, excluded.deleted_version
                ),
            },
        )
    )
