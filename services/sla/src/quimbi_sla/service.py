"""Use cases of the SLA service: plain async functions taking a session.

Every change to a clock goes through `_settle`, which re-evaluates both metrics at `now`,
stores the deadlines, statuses and the next instant the scheduler must look, and writes
`sla.updated` (and `sla.warning` / `sla.breached` on each entry into those statuses) to the
outbox in the same transaction. Work on one ticket is serialized by a transaction-scoped
advisory lock plus the row lock, so event handlers, API calls and scheduler replicas never
lose each other's updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from quimbi_common.auth import Principal
from quimbi_common.catchup import NotVisibleYet, notify_applied
from quimbi_common.clock import utcnow
from quimbi_common.enums import SlaMetric, SlaStatus, TicketPriority, TicketStatus
from quimbi_common.errors import ConflictError, NotFoundError, UnprocessableError
from quimbi_common.events import (
    Contract,
    MessageData,
    SlaAlertData,
    SlaTrackingData,
    TicketData,
    TicketDeletedData,
)
from quimbi_common.outbox import add_event, add_events

from . import domain
from .calendar import WALL_CLOCK, BusinessCalendar, TimeCounter
from .models import SlaPolicy, SlaTracking, TicketFacts
from .schemas import PolicyUpdate

SOURCE = "sla"
PRIORITY_ORDER = [p.value for p in TicketPriority]


def _aware(value: datetime) -> datetime:
    """Event times without an offset are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- policies -----------------------------------------------------------------------------------


async def list_policies(session: AsyncSession) -> list[SlaPolicy]:
    policies = (await session.scalars(sa.select(SlaPolicy))).all()
    return sorted(policies, key=lambda p: PRIORITY_ORDER.index(p.priority))


async def get_policy(session: AsyncSession, priority: TicketPriority | str) -> SlaPolicy:
    policy = await session.scalar(sa.select(SlaPolicy).where(SlaPolicy.priority == str(priority)))
    if policy is None:
        raise NotFoundError(f"No SLA policy for priority {priority}")
    return policy


async def update_policy(
    session: AsyncSession, priority: TicketPriority, changes: PolicyUpdate, principal: Principal
) -> SlaPolicy:
    """Edit one priority's targets. Clocks already running keep the values they started with."""
    policy = await session.scalar(
        sa.select(SlaPolicy).where(SlaPolicy.priority == priority.value).with_for_update()
    )
    if policy is None:
        raise NotFoundError(f"No SLA policy for priority {priority}")
    for field, value in changes.model_dump(exclude_unset=True).items():
        setattr(policy, field, value)  # PolicyUpdate refuses nulls
    if policy.first_response_target_seconds > policy.resolution_target_seconds:
        raise UnprocessableError(
            "first_response_target_seconds must not exceed resolution_target_seconds",
            errors=[
                {
                    "loc": ["body", "first_response_target_seconds"],
                    "msg": "must not exceed resolution_target_seconds",
                    "type": "value_error",
                }
            ],
        )
    policy.updated_at = utcnow()
    policy.updated_by = principal.agent_id
    await session.commit()
    return policy


def _apply_policy(row: SlaTracking, policy: SlaPolicy) -> None:
    """Snapshot the policy into the clock, so later edits only affect new tickets."""
    row.first_response_target_seconds = policy.first_response_target_seconds
    row.resolution_target_seconds = policy.resolution_target_seconds
    row.warning_threshold_percent = policy.warning_threshold_percent
    row.business_hours_only = policy.business_hours_only


# --- rows and domain clocks ---------------------------------------------------------------------


def _counter(row: SlaTracking, calendar: BusinessCalendar) -> TimeCounter:
    return calendar if row.business_hours_only else WALL_CLOCK


def _first_response_done_at(row: SlaTracking) -> datetime | None:
    """An agent's first message; a ticket resolved without one settles the clock too."""
    done = [t for t in (row.first_response_at, row.resolved_at) if t is not None]
    return min(done) if done else None


def to_clock(row: SlaTracking, calendar: BusinessCalendar) -> domain.SlaClock:
    return domain.SlaClock(
        started_at=row.ticket_created_at,
        warning_percent=row.warning_threshold_percent,
        counter=_counter(row, calendar),
        first_response=domain.MetricClock(
            target=timedelta(seconds=row.first_response_target_seconds),
            paused_credit=timedelta(seconds=row.first_response_paused_seconds),
            done_at=_first_response_done_at(row),
        ),
        resolution=domain.MetricClock(
            target=timedelta(seconds=row.resolution_target_seconds),
            paused_credit=timedelta(seconds=row.resolution_paused_seconds),
            done_at=row.resolved_at,
        ),
        paused_at=row.paused_at if row.is_paused else None,
        total_paused=timedelta(seconds=row.total_paused_seconds),
    )


def _store_pause_state(row: SlaTracking, clock: domain.SlaClock) -> None:
    row.first_response_paused_seconds = clock.first_response.paused_credit.total_seconds()
    row.resolution_paused_seconds = clock.resolution.paused_credit.total_seconds()
    row.is_paused = clock.is_paused
    row.paused_at = clock.paused_at
    row.total_paused_seconds = round(clock.total_paused.total_seconds())


def _pause(row: SlaTracking, at: datetime, calendar: BusinessCalendar) -> None:
    _store_pause_state(row, domain.pause(to_clock(row, calendar), at))


def _resume(row: SlaTracking, at: datetime, calendar: BusinessCalendar) -> None:
    _store_pause_state(row, domain.resume(to_clock(row, calendar), at))


def tracking_data(row: SlaTracking) -> SlaTrackingData:
    return SlaTrackingData(
        ticket_id=row.ticket_id,
        priority=TicketPriority(row.priority),
        first_response_status=SlaStatus(row.first_response_status),
        first_response_deadline=row.first_response_deadline,
        first_response_at=row.first_response_at,
        resolution_status=SlaStatus(row.resolution_status),
        resolution_deadline=row.resolution_deadline,
        resolved_at=row.resolved_at,
        is_paused=row.is_paused,
        total_paused_seconds=row.total_paused_seconds,
        version=row.version,
    )


_PUBLISHED_FIELDS = (
    "priority",
    "first_response_status",
    "first_response_deadline",
    "first_response_at",
    "resolution_status",
    "resolution_deadline",
    "resolved_at",
    "is_paused",
    "total_paused_seconds",
)


def _published_state(row: SlaTracking) -> tuple[Any, ...] | None:
    """What subscribers see of a clock, without its version (None before it exists)."""
    if row.version is None:
        return None
    return tuple(getattr(row, name) for name in _PUBLISHED_FIELDS)


def _set(row: SlaTracking, name: str, value: Any) -> None:
    """Assign only real changes (the scheduler's batches stay small and cheap to flush)."""
    if getattr(row, name) != value:
        setattr(row, name, value)


_METRIC_FIELDS = {
    SlaMetric.FIRST_RESPONSE: "first_response",
    SlaMetric.RESOLUTION: "resolution",
}


@dataclass(frozen=True)
class Alert:
    topic: str
    metric: SlaMetric


def _evaluate(row: SlaTracking, calendar: BusinessCalendar, now: datetime) -> list[Alert]:
    """Store deadlines, statuses and next check at `now`; the alerts due for new entries."""
    evaluation = domain.evaluate(to_clock(row, calendar), now)
    alerts: list[Alert] = []
    for metric, prefix in _METRIC_FIELDS.items():
        state = evaluation.metrics[metric]
        _set(row, f"{prefix}_deadline", state.deadline)
        _set(row, f"{prefix}_status", state.status.value)
        for flag, alert_status, topic in (
            ("warning_sent", SlaStatus.AT_RISK, "sla.warning"),
            ("breach_sent", SlaStatus.BREACHED, "sla.breached"),
        ):
            if state.status is alert_status and not getattr(row, f"{prefix}_{flag}"):
                alerts.append(Alert(topic, metric))
            _set(row, f"{prefix}_{flag}", state.status is alert_status)
    _set(row, "next_check_at", None if row.deleted_at else evaluation.next_check)
    return alerts


def _settled_events(
    row: SlaTracking,
    before: tuple[Any, ...] | None,
    calendar: BusinessCalendar,
    now: datetime,
) -> list[tuple[str, Contract]]:
    """Re-evaluate a changed clock; the events subscribers must get about it (version bumped)."""
    alerts = _evaluate(row, calendar, now)
    if before is not None and _published_state(row) == before and not alerts:
        return []
    row.version = 1 if before is None else row.version + 1
    data = tracking_data(row)
    events: list[tuple[str, Contract]] = [("sla.updated", data)]
    for alert in alerts:
        alert_data = SlaAlertData.model_construct(**dict(data), metric=alert.metric)
        events.append((alert.topic, alert_data))
    return events


async def _settle(
    session: AsyncSession,
    row: SlaTracking,
    before: tuple[Any, ...] | None,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """Re-evaluate a changed clock and publish what subscribers must learn about it."""
    for topic, data in _settled_events(row, before, calendar, now):
        await add_event(session, topic, data, source=SOURCE)


async def _lock_ticket(session: AsyncSession, ticket_id: str) -> SlaTracking | None:
    """Serialize work on one ticket (even before its clock exists) and load its clock."""
    await session.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"sla:{ticket_id}"},
    )
    return await session.scalar(
        sa.select(SlaTracking)
        .where(SlaTracking.ticket_id == ticket_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


# --- consuming ticket and message events ---------------------------------------------------------


def _apply_ticket_state(
    row: SlaTracking, data: TicketData, calendar: BusinessCalendar, now: datetime
) -> None:
    """Move the clock by the ticket's change of status (pending pauses, done resolves)."""
    at = min(_aware(data.updated_at), now)
    old, new = TicketStatus(row.ticket_status), data.status
    if old is TicketStatus.PENDING and new is not TicketStatus.PENDING and row.is_paused:
        _resume(row, at, calendar)
    if new.is_done and not old.is_done:
        row.resolved_at = at
    elif old.is_done and not new.is_done:
        row.resolved_at = None  # reopened: the resolution clock runs on
    if new is TicketStatus.PENDING and old is not TicketStatus.PENDING and not row.is_paused:
        _pause(row, at, calendar)
    row.ticket_status = new.value
    row.assigned_agent_id = data.assigned_agent_id
    row.ticket_version = data.version


async def _start_clock(
    session: AsyncSession,
    data: TicketData,
    facts: TicketFacts | None,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    policy = await get_policy(session, data.priority)
    created_at = _aware(data.created_at)
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
    _apply_policy(row, policy)
    _apply_ticket_state(row, data, calendar, now)
    session.add(row)
    await _settle(session, row, None, calendar, now)
    if facts is not None:
        await session.delete(facts)


async def apply_ticket(
    session: AsyncSession,
    data: TicketData,
    calendar: BusinessCalendar,
    now: datetime | None = None,
) -> None:
    """ticket.created / ticket.updated: start the clock, or follow status, priority, assignee.

    Works from the ticket's whole state (not only `changes`), so a clock can start from a
    ticket.updated that overtook its ticket.created; older versions are ignored.
    """
    now = now or utcnow()
    row = await _lock_ticket(session, data.id)
    if row is None:
        facts = await session.get(TicketFacts, data.id)
        if facts is not None and (facts.deleted_version or 0) >= data.version:
            return
        await _start_clock(session, data, facts, calendar, now)
        await notify_applied(session, data.id)  # requests waiting for this ticket look again
        return
    if row.deleted_at is not None or data.version <= row.ticket_version:
        return
    before = _published_state(row)
    _apply_ticket_state(row, data, calendar, now)
    if data.priority.value != row.priority:
        row.priority = data.priority.value
        _apply_policy(row, await get_policy(session, data.priority))
    await _settle(session, row, before, calendar, now)
    await notify_applied(session, data.id)


async def delete_ticket(session: AsyncSession, data: TicketDeletedData) -> None:
    """ticket.deleted: the clock stops for good and the ticket's SLA is no longer shown."""
    row = await _lock_ticket(session, data.id)
    if row is None:
        await _remember(session, data.id, deleted_version=data.version)
        return
    if row.deleted_at is None:
        row.deleted_at = _aware(data.deleted_at)
        row.next_check_at = None
        row.ticket_version = max(row.ticket_version, data.version)


async def apply_message(
    session: AsyncSession,
    data: MessageData,
    calendar: BusinessCalendar,
    now: datetime | None = None,
) -> None:
    """message.added: the first agent message answers; a customer message resumes a pause."""
    now = now or utcnow()
    sent_at = min(_aware(data.created_at), now)
    row = await _lock_ticket(session, data.ticket_id)
    if row is None:
        if data.from_agent:
            await _remember(session, data.ticket_id, first_agent_message_at=sent_at)
        return
    if row.deleted_at is not None:
        return
    before = _published_state(row)
    if data.from_agent:
        if row.first_response_at is not None and row.first_response_at <= sent_at:
            return
        row.first_response_at = sent_at
    else:
        if not row.is_paused or row.paused_at is None or sent_at < row.paused_at:
            return
        _resume(row, sent_at, calendar)
    await _settle(session, row, before, calendar, now)


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


# --- the API's per-ticket use cases --------------------------------------------------------------


def _visible(row: SlaTracking | None, principal: Principal, ticket_id: str) -> SlaTracking:
    """The clock, or a 404: not (yet) here, deleted, or a ticket the caller may not see (yet:
    `NotVisibleYet`, as an assignment to the caller may be on its way)."""
    if row is None or row.deleted_at is not None:
        raise NotFoundError(f"Ticket {ticket_id} not found")
    if not (principal.sees_all_tickets or row.assigned_agent_id == principal.agent_id):
        raise NotVisibleYet(f"Ticket {ticket_id} not found")
    return row


async def get_ticket_sla(
    session: AsyncSession, ticket_id: str, principal: Principal
) -> SlaTracking:
    row = await session.scalar(sa.select(SlaTracking).where(SlaTracking.ticket_id == ticket_id))
    return _visible(row, principal, ticket_id)


async def set_paused(
    session: AsyncSession,
    ticket_id: str,
    principal: Principal,
    calendar: BusinessCalendar,
    *,
    paused: bool,
    now: datetime | None = None,
) -> SlaTracking:
    """Pause or resume a ticket's clock by hand (409 when it already is so)."""
    now = now or utcnow()
    row = _visible(await _lock_ticket(session, ticket_id), principal, ticket_id)
    if row.is_paused == paused:
        raise ConflictError(f"The SLA clock is already {'paused' if paused else 'running'}")
    before = _published_state(row)
    if paused:
        _pause(row, now, calendar)
    else:
        _resume(row, now, calendar)
    await _settle(session, row, before, calendar, now)
    await session.commit()
    return row


# --- the scheduler ------------------------------------------------------------------------------


async def run_scheduler_tick(
    sessions: async_sessionmaker[AsyncSession],
    calendar: BusinessCalendar,
    *,
    batch_size: int = 500,
    now: datetime | None = None,
) -> int:
    """Settle every clock whose next check is due; returns how many were looked at.

    Due clocks come from the partial index on `next_check_at`, a batch per transaction,
    locked with SKIP LOCKED so scheduler replicas (and busy handlers) never block each other.
    A batch is written with one UPDATE per shape of change and one outbox insert.
    """
    total = 0
    while True:
        async with sessions() as session, session.begin():
            at = now or utcnow()
            rows: Sequence[SlaTracking] = (
                await session.scalars(
                    sa.select(SlaTracking)
                    .where(SlaTracking.next_check_at <= at)
                    .order_by(SlaTracking.next_check_at)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            with session.no_autoflush:
                events = [
                    event
                    for row in rows
                    for event in _settled_events(row, _published_state(row), calendar, at)
                ]
            await session.flush()
            await add_events(session, events, source=SOURCE)
        total += len(rows)
        if len(rows) < batch_size:
            return total


def metric_report(
    row: SlaTracking, metric: SlaMetric, calendar: BusinessCalendar, now: datetime
) -> tuple[domain.MetricReport, datetime | None]:
    """The live view of one metric, and when it was fulfilled."""
    clock = to_clock(row, calendar)
    done_at = clock.metric(metric).done_at
    return domain.report(clock, metric, now), done_at
