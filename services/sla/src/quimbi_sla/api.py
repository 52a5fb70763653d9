"""Routes: SLA policies, and a ticket's SLA with its pause switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from quimbi_common.auth import CurrentAgent, Manager, Principal
from quimbi_common.clock import utcnow
from quimbi_common.enums import SlaMetric, TicketPriority
from quimbi_common.openapi import problems
from quimbi_common.runtime import Runtime, RuntimeDep, SessionDep, UnitsDep, provided
from quimbi_common.uow import UnitsOfWork

from . import queries, service
from .calendar import format_weekly_hours
from .models import SlaTracking
from .schemas import (
    BusinessHoursRead,
    MetricRead,
    PolicyList,
    PolicyRead,
    PolicyUpdate,
    TicketSlaRead,
)
from .settings import Settings

router = APIRouter(tags=["sla"])
TicketId = Annotated[str, Path(max_length=255)]


SettingsDep = Annotated[Settings, Depends(provided(Settings))]


@router.get("/api/sla/policies", response_model=PolicyList)
async def list_policies(
    agent: CurrentAgent, session: SessionDep, settings: SettingsDep
) -> PolicyList:
    """Every priority's targets, and the business-hours calendar they may count in."""
    calendar = settings.business_calendar
    return PolicyList(
        policies=[PolicyRead.model_validate(p) for p in await queries.list_policies(session)],
        business_hours=BusinessHoursRead(
            timezone=settings.sla_business_timezone,
            weekly_hours=format_weekly_hours(calendar.weekly_hours),
            holidays=sorted(d.isoformat() for d in calendar.holidays),
        ),
    )


@router.patch("/api/sla/policies/{priority}", response_model=PolicyRead)
async def update_policy(
    priority: TicketPriority, changes: PolicyUpdate, manager: Manager, units: UnitsDep
) -> PolicyRead:
    """Edit a priority's targets (manager and admin); tickets created afterwards use them."""
    policy = await units.run(lambda unit: service.update_policy(unit, priority, changes, manager))
    return PolicyRead.model_validate(policy)


def _read(row: SlaTracking, settings: Settings) -> TicketSlaRead:
    now = utcnow()
    calendar = settings.business_calendar
    metrics = {}
    for metric in (SlaMetric.FIRST_RESPONSE, SlaMetric.RESOLUTION):
        report, done_at = queries.metric_report(row, metric, calendar, now)
        metrics[metric] = MetricRead(
            status=report.status,
            deadline=report.deadline,
            warning_at=report.warning_at,
            completed_at=done_at,
            target_seconds=report.target_seconds,
            elapsed_seconds=report.elapsed_seconds,
            seconds_remaining=report.seconds_remaining,
            percent_used=report.percent_used,
        )
    first_response, resolution = metrics[SlaMetric.FIRST_RESPONSE], metrics[SlaMetric.RESOLUTION]
    return TicketSlaRead(
        ticket_id=row.ticket_id,
        priority=TicketPriority(row.priority),
        first_response_status=first_response.status,
        first_response_deadline=first_response.deadline,
        first_response_at=row.first_response_at,
        resolution_status=resolution.status,
        resolution_deadline=resolution.deadline,
        resolved_at=row.resolved_at,
        is_paused=row.is_paused,
        paused_at=row.paused_at,
        total_paused_seconds=row.total_paused_seconds,
        business_hours_only=row.business_hours_only,
        warning_threshold_percent=row.warning_threshold_percent,
        first_response=first_response,
        resolution=resolution,
        version=row.version,
    )


@router.get("/api/tickets/{ticket_id}/sla", response_model=TicketSlaRead)
async def get_ticket_sla(
    ticket_id: TicketId,
    agent: CurrentAgent,
    session: SessionDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> TicketSlaRead:
    """Deadlines, live statuses, time remaining and share used per metric, and pause state."""
    row = await runtime.projections.until_found(
        ticket_id, lambda: queries.get_ticket_sla(session, ticket_id, agent), session
    )
    return _read(row, settings)


@router.post(
    "/api/tickets/{ticket_id}/sla/pause",
    response_model=TicketSlaRead,
    responses=problems(**{"409": "Already paused"}),
)
async def pause_ticket_sla(
    ticket_id: TicketId,
    agent: CurrentAgent,
    units: UnitsDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> TicketSlaRead:
    """Stop both clocks (409 if already paused); whoever may answer the ticket may do it."""
    return await _set_paused(ticket_id, agent, units, runtime, settings, paused=True)


@router.post(
    "/api/tickets/{ticket_id}/sla/resume",
    response_model=TicketSlaRead,
    responses=problems(**{"409": "Already running"}),
)
async def resume_ticket_sla(
    ticket_id: TicketId,
    agent: CurrentAgent,
    units: UnitsDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> TicketSlaRead:
    """Run both clocks again (409 if running); deadlines move out by the paused time."""
    return await _set_paused(ticket_id, agent, units, runtime, settings, paused=False)


async def _set_paused(
    ticket_id: str,
    agent: Principal,
    units: UnitsOfWork,
    runtime: Runtime,
    settings: Settings,
    *,
    paused: bool,
) -> TicketSlaRead:
    calendar = settings.business_calendar
    row = await runtime.projections.until_found(
        ticket_id,
        lambda: units.run(
            lambda unit: service.set_paused(unit, ticket_id, agent, calendar, paused=paused)
        ),
    )
    return _read(row, settings)
