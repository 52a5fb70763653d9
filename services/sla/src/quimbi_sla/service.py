"""Use cases of the SLA service: plain async functions taking a unit of work.

Every change to a clock goes through `_settle`, which re-evaluates both metrics at `now`,
stores the deadlines, statuses and the next instant the scheduler must look, and writes
`sla.updated` (and `sla.warning` / `sla.breached` on each entry into those statuses, and
`sla.decided` when a metric's outcome changes) to the outbox in the same transaction. Work
on one ticket is serialized by a transaction-scoped advisory lock plus the row lock, so event
handlers, API calls and scheduler replicas never lose each other's updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common import assignees
from quimbi_common.auth import Principal
from quimbi_common.catchup import NotVisibleYet
from quimbi_common.clock import utcnow
from quimbi_common.enums import SlaMetric, SlaStatus, TicketPriority
from quimbi_common.errors import ConflictError, NotFoundError, UnprocessableError
from quimbi_common.events import (
    Contract,
    EventType,
    SlaAlertData,
    SlaTrackingData,
)
from quimbi_common.uow import UnitOfWork, UnitsOfWork

from . import domain
from .calendar import WALL_CLOCK, BusinessCalendar, TimeCounter
from .models import Clock, SlaPolicy, SlaTracking
from .schemas import PolicyUpdate

PRIORITY_ORDER = [p.value for p in TicketPriority]


def aware(value: datetime) -> datetime:
    """Event times without an offset are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- policies -----------------------------------------------------------------------------------


async def get_policy(session: AsyncSession, priority: TicketPriority | str) -> SlaPolicy:
    policy = await session.scalar(sa.select(SlaPolicy).where(SlaPolicy.priority == str(priority)))
    if policy is None:
        raise NotFoundError(f"No SLA policy for priority {priority}")
    return policy


async def update_policy(
    unit: UnitOfWork, priority: TicketPriority, changes: PolicyUpdate, principal: Principal
) -> SlaPolicy:
    """Edit one priority's targets. Clocks already running keep the values they started with."""
    policy = await unit.session.scalar(
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
    return policy


def apply_policy(row: Clock, policy: SlaPolicy) -> None:
    """Snapshot the policy into the clock, so later edits only affect new tickets."""
    row.first_response_target_seconds = policy.first_response_target_seconds
    row.resolution_target_seconds = policy.resolution_target_seconds
    row.warning_threshold_percent = policy.warning_threshold_percent
    row.business_hours_only = policy.business_hours_only


# --- rows and domain clocks ---------------------------------------------------------------------


def _counter(row: Clock, calendar: BusinessCalendar) -> TimeCounter:
    return calendar if row.business_hours_only else WALL_CLOCK


def _first_response_done_at(row: Clock) -> datetime | None:
    """An agent's first message; a ticket resolved without one settles the clock too."""
    done = [t for t in (row.first_response_at, row.resolved_at) if t is not None]
    return min(done) if done else None


def to_clock(row: Clock, calendar: BusinessCalendar) -> domain.SlaClock:
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


def _store_pause_state(row: Clock, clock: domain.SlaClock) -> None:
    row.first_response_paused_seconds = clock.first_response.paused_credit.total_seconds()
    row.resolution_paused_seconds = clock.resolution.paused_credit.total_seconds()
    row.is_paused = clock.is_paused
    row.paused_at = clock.paused_at
    row.total_paused_seconds = round(clock.total_paused.total_seconds())


def pause_clock(row: Clock, at: datetime, calendar: BusinessCalendar) -> None:
    _store_pause_state(row, domain.pause(to_clock(row, calendar), at))


def resume_clock(row: Clock, at: datetime, calendar: BusinessCalendar) -> None:
    _store_pause_state(row, domain.resume(to_clock(row, calendar), at))


def tracking_data(row: Clock) -> SlaTrackingData:
    """The row as the event carries it (the contract's fields are the row's columns)."""
    return SlaTrackingData.model_validate(row, from_attributes=True)


# What a consumer sees of a clock: an event is published when one of these changes.
_PUBLISHED_FIELDS = tuple(
    name for name in SlaTrackingData.model_fields if name not in ("ticket_id", "version")
)


def published_state(row: Clock) -> tuple[Any, ...] | None:
    """What subscribers see of a clock, without its version (None before it exists)."""
    if row.version is None:
        return None
    return tuple(getattr(row, name) for name in _PUBLISHED_FIELDS)


_DECIDED = (SlaStatus.MET.value, SlaStatus.BREACHED.value)
_OUTCOME_FIELDS = {
    "first_response": ("first_response_status", "first_response_at", "first_response_deadline"),
    "resolution": ("resolution_status", "resolved_at", "resolution_deadline"),
}


def _state(published: tuple[Any, ...] | None) -> dict[str, Any]:
    return {} if published is None else dict(zip(_PUBLISHED_FIELDS, published, strict=True))


def outcomes(state: dict[str, Any]) -> tuple[tuple[Any, ...] | None, ...]:
    """Per metric, its outcome (status, decisive time, deadline) once met or breached, else
    None: `sla.decided` is published when this changes (agents' report reads only outcomes,
    not every move of a pending clock)."""
    decided = []
    for status, done_at, deadline in _OUTCOME_FIELDS.values():
        value = state.get(status)
        value = getattr(value, "value", value)  # an enum or its stored string
        decided.append((value, state[done_at], state[deadline]) if value in _DECIDED else None)
    return tuple(decided)


def _set(row: Clock, name: str, value: Any) -> None:
    """Assign only real changes (the scheduler's batches stay small and cheap to flush)."""
    if getattr(row, name) != value:
        setattr(row, name, value)


_METRIC_FIELDS = {
    SlaMetric.FIRST_RESPONSE: "first_response",
    SlaMetric.RESOLUTION: "resolution",
}


@dataclass(frozen=True)
class Alert:
    topic: EventType
    metric: SlaMetric


def _evaluate(row: Clock, calendar: BusinessCalendar, now: datetime) -> list[Alert]:
    """Store deadlines, statuses and next check at `now`; the alerts due for new entries."""
    evaluation = domain.evaluate(to_clock(row, calendar), now)
    alerts: list[Alert] = []
    for metric, prefix in _METRIC_FIELDS.items():
        state = evaluation.metrics[metric]
        _set(row, f"{prefix}_deadline", state.deadline)
        _set(row, f"{prefix}_status", state.status.value)
        for flag, alert_status, topic in (
            ("warning_sent", SlaStatus.AT_RISK, EventType.SLA_WARNING),
            ("breach_sent", SlaStatus.BREACHED, EventType.SLA_BREACHED),
        ):
            if state.status is alert_status and not getattr(row, f"{prefix}_{flag}"):
                alerts.append(Alert(topic, metric))
            _set(row, f"{prefix}_{flag}", state.status is alert_status)
    _set(row, "next_check_at", None if row.deleted_at else evaluation.next_check)
    return alerts


def settled_events(
    row: Clock,
    before: tuple[Any, ...] | None,
    calendar: BusinessCalendar,
    now: datetime,
) -> list[tuple[EventType, Contract]]:
    """Re-evaluate a changed clock; the events subscribers must get about it (version bumped)."""
    alerts = _evaluate(row, calendar, now)
    if before is not None and published_state(row) == before and not alerts:
        return []
    row.version = 1 if before is None else row.version + 1
    data = tracking_data(row)
    events: list[tuple[EventType, Contract]] = [(EventType.SLA_UPDATED, data)]
    if outcomes(_state(before)) != outcomes(_state(published_state(row))):
        events.append((EventType.SLA_DECIDED, data))
    for alert in alerts:
        alert_data = SlaAlertData.model_construct(**dict(data), metric=alert.metric)
        events.append((alert.topic, alert_data))
    return events


async def settle(
    unit: UnitOfWork,
    row: Clock,
    before: tuple[Any, ...] | None,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """Re-evaluate a changed clock and publish what subscribers must learn about it."""
    for topic, data in settled_events(row, before, calendar, now):
        await unit.emit(topic, data)


async def lock_ticket(session: AsyncSession, ticket_id: str) -> SlaTracking | None:
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


# --- the API's per-ticket use cases --------------------------------------------------------------


async def visible(
    session: AsyncSession, row: SlaTracking | None, principal: Principal, ticket_id: str
) -> SlaTracking:
    """The clock, or a 404: not (yet) here, deleted, or a ticket the caller may not see (yet:
    `NotVisibleYet`, as an assignment to the caller may be on its way). The holder is the one
    agents' assignment events name (`assignees`), else the ticket's own field; only an
    `agent` pays the lookup."""
    if row is None or row.deleted_at is not None:
        raise NotFoundError(f"Ticket {ticket_id} not found")
    if principal.sees_all_tickets:
        return row
    assigned = await assignees.assigned_agent(session, ticket_id)
    if assignees.holder(assigned, row.assigned_agent_id) != principal.agent_id:
        raise NotVisibleYet(f"Ticket {ticket_id} not found")
    return row


async def set_paused(
    unit: UnitOfWork,
    ticket_id: str,
    principal: Principal,
    calendar: BusinessCalendar,
    *,
    paused: bool,
    now: datetime | None = None,
) -> SlaTracking:
    """Pause or resume a ticket's clock by hand (409 when it already is so)."""
    now = now or utcnow()
    session = unit.session
    row = await visible(session, await lock_ticket(session, ticket_id), principal, ticket_id)
    if row.is_paused == paused:
        raise ConflictError(f"The SLA clock is already {'paused' if paused else 'running'}")
    before = published_state(row)
    if paused:
        pause_clock(row, now, calendar)
    else:
        resume_clock(row, now, calendar)
    await settle(unit, row, before, calendar, now)
    return row


# --- the scheduler ------------------------------------------------------------------------------


async def run_scheduler_tick(
    units: UnitsOfWork,
    calendar: BusinessCalendar,
    *,
    batch_size: int = 500,
    now: datetime | None = None,
) -> int:
    """Settle every clock whose next check is due; returns how many were looked at.

    Due clocks come from the partial index on `next_check_at`, a batch per unit of work,
    locked with SKIP LOCKED so scheduler replicas (and busy handlers) never block each other.
    A batch is written with one UPDATE per shape of change and one outbox insert.
    """
    total = 0
    while True:
        async with units.begin() as unit:
            session = unit.session
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
                    for event in settled_events(row, published_state(row), calendar, at)
                ]
            await session.flush()
            await unit.emit_many(events)
        total += len(rows)
        if len(rows) < batch_size:
            return total
