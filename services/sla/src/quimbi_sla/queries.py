"""Reads that shape answers: the policies, and a ticket's live SLA."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.enums import SlaMetric

from . import domain
from .calendar import BusinessCalendar
from .models import SlaPolicy, SlaTracking
from .service import PRIORITY_ORDER, to_clock, visible


async def list_policies(session: AsyncSession) -> list[SlaPolicy]:
    policies = (await session.scalars(sa.select(SlaPolicy))).all()
    return sorted(policies, key=lambda p: PRIORITY_ORDER.index(p.priority))


async def get_ticket_sla(
    session: AsyncSession, ticket_id: str, principal: Principal
) -> SlaTracking:
    row = await session.scalar(sa.select(SlaTracking).where(SlaTracking.ticket_id == ticket_id))
    return await visible(session, row, principal, ticket_id)


def metric_report(
    row: SlaTracking, metric: SlaMetric, calendar: BusinessCalendar, now: datetime
) -> tuple[domain.MetricReport, datetime | None]:
    """The live view of one metric, and when it was fulfilled."""
    clock = to_clock(row, calendar)
    done_at = clock.metric(metric).done_at
    return domain.report(clock, metric, now), done_at
