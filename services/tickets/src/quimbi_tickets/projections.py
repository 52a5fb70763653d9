"""What other services' events maintain here: smart scores, SLA summaries, customer
intelligence and the assignee. Each runs in the consumer's unit of work (deduplicated by event
id) and ignores data older than what the ticket already holds."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import joinedload

from quimbi_common.catchup import notify_applied
from quimbi_common.clock import utcnow
from quimbi_common.events import (
    AssignmentData,
    CustomerIntelligenceData,
    SlaTrackingData,
    TicketScoredData,
)
from quimbi_common.uow import UnitOfWork

from . import domain
from .models import AgentName, Ticket
from .service import TRACKED_FIELDS, bump_and_publish, snapshot


def _newest(items: list[Any]) -> list[Any]:
    """The highest version per ticket (a batch may carry several of one ticket)."""
    newest: dict[str, Any] = {}
    for item in items:
        if item.ticket_id not in newest or item.version > newest[item.ticket_id].version:
            newest[item.ticket_id] = item
    return sorted(newest.values(), key=lambda item: item.ticket_id)  # lock order: by id


_APPLY_SCORES = sa.text(
    "UPDATE tickets SET smart_score = s.score, score_version = s.version "
    "FROM unnest(CAST(:ids AS text[]), CAST(:scores AS float8[]), CAST(:versions AS int[])) "
    "AS s(id, score, version) WHERE tickets.id = s.id AND tickets.score_version < s.version"
)


async def apply_scores(unit: UnitOfWork, scores: list[TicketScoredData]) -> None:
    """Store the newest scores, one statement for a batch; derived data, so no version bump
    and no event."""
    newest = _newest(scores)
    await unit.session.execute(
        _APPLY_SCORES,
        {
            "ids": [s.ticket_id for s in newest],
            "scores": [round(s.smart_score, 2) for s in newest],
            "versions": [s.version for s in newest],
        },
    )


# The SLA summary kept on a ticket: the clock's fields but its identity and priority.
_SLA_COLUMNS = tuple(
    name
    for name in SlaTrackingData.model_fields
    if name not in ("ticket_id", "priority", "version")
)
_APPLY_SLAS = sa.text(
    "UPDATE tickets SET sla_version = s.version, "
    "sla_first_response_status = s.first_response_status, "
    "sla_first_response_deadline = s.first_response_deadline, "
    "sla_first_response_at = s.first_response_at, "
    "sla_resolution_status = s.resolution_status, "
    "sla_resolution_deadline = s.resolution_deadline, sla_resolved_at = s.resolved_at, "
    "sla_is_paused = s.is_paused, sla_total_paused_seconds = s.total_paused_seconds "
    "FROM unnest(CAST(:ids AS text[]), CAST(:versions AS int[]), "
    "CAST(:first_response_status AS text[]), CAST(:first_response_deadline AS timestamptz[]), "
    "CAST(:first_response_at AS timestamptz[]), CAST(:resolution_status AS text[]), "
    "CAST(:resolution_deadline AS timestamptz[]), CAST(:resolved_at AS timestamptz[]), "
    "CAST(:is_paused AS boolean[]), CAST(:total_paused_seconds AS int[])) "
    "AS s(id, version, first_response_status, first_response_deadline, first_response_at, "
    "resolution_status, resolution_deadline, resolved_at, is_paused, total_paused_seconds) "
    "WHERE tickets.id = s.id AND tickets.sla_version < s.version"
)


async def apply_slas(unit: UnitOfWork, updates: list[SlaTrackingData]) -> None:
    """Store the newest SLA summaries shown on the tickets, one statement for a batch; no
    version bump, no event."""
    newest = _newest(updates)
    values: dict[str, list[Any]] = {
        "ids": [u.ticket_id for u in newest],
        "versions": [u.version for u in newest],
    }
    for name in _SLA_COLUMNS:
        values[name] = [_sla_value(getattr(u, name)) for u in newest]
    await unit.session.execute(_APPLY_SLAS, values)


def _sla_value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


_APPLY_INTELLIGENCE = sa.text(
    "UPDATE customers SET lifetime_value = i.lifetime_value, churn_risk_score = i.churn_risk, "
    "churn_risk_level = i.churn_risk_level, intelligence_fetched_at = i.fetched_at, "
    "updated_at = :at "
    "FROM unnest(CAST(:ids AS text[]), CAST(:lifetime_values AS numeric[]), "
    "CAST(:churn_risks AS numeric[]), CAST(:churn_risk_levels AS text[]), "
    "CAST(:fetched_at AS timestamptz[])) "
    "AS i(id, lifetime_value, churn_risk, churn_risk_level, fetched_at) "
    "WHERE customers.id = i.id AND (customers.intelligence_fetched_at IS NULL "
    "OR customers.intelligence_fetched_at < i.fetched_at)"
)


async def apply_customer_intelligence(
    unit: UnitOfWork, updates: list[CustomerIntelligenceData]
) -> None:
    """Keep the customers' LTV and churn risk as last fetched, one statement for a batch (the
    newest fetch per customer); older fetches are ignored."""
    newest: dict[str, CustomerIntelligenceData] = {}
    for data in updates:
        held = newest.get(data.customer_id)
        if held is None or data.fetched_at > held.fetched_at:
            newest[data.customer_id] = data
    rows = sorted(newest.values(), key=lambda d: d.customer_id)  # lock order: by id
    await unit.session.execute(
        _APPLY_INTELLIGENCE,
        {
            "ids": [d.customer_id for d in rows],
            "lifetime_values": [round(d.lifetime_value, 2) for d in rows],
            "churn_risks": [round(domain.clamp(d.churn_risk), 2) for d in rows],
            "churn_risk_levels": [d.churn_risk_level for d in rows],
            "fetched_at": [d.fetched_at for d in rows],
            "at": utcnow(),
        },
    )


def _is_newer_assignment(ticket: Ticket, data: AssignmentData) -> bool:
    if ticket.assignment_id == data.id:
        return data.version > ticket.assignment_version
    return (
        ticket.assignment_assigned_at is None or data.assigned_at >= ticket.assignment_assigned_at
    )


async def apply_assignment(unit: UnitOfWork, data: AssignmentData) -> None:
    """The active assignment names the assignee (which decides who sees the ticket).

    An assignment that ended (completed, or transferred before its successor arrived) leaves
    the assignee as it is: the successor's own event moves the ticket on.
    """
    session = unit.session
    ticket = (
        await session.execute(
            sa.select(Ticket)
            .where(Ticket.id == data.ticket_id)
            .options(joinedload(Ticket.customer))
            .with_for_update(of=Ticket)
        )
    ).scalar_one_or_none()
    if ticket is None or not _is_newer_assignment(ticket, data):
        return
    if not data.is_active:
        if ticket.assignment_id == data.id:
            ticket.assignment_version = data.version
        return
    ticket.assignment_id = data.id
    ticket.assignment_version = data.version
    ticket.assignment_assigned_at = data.assigned_at
    before = snapshot(ticket, TRACKED_FIELDS)
    ticket.assigned_agent_id = data.agent_id
    await bump_and_publish(unit, ticket, before, utcnow())
    await notify_applied(session, ticket.id)  # the new assignee may be waiting to see it


async def apply_agent_name(unit: UnitOfWork, agent_id: str, name: str, version: int) -> None:
    """Keep an agent's name for `{{agent_name}}` in canned responses (newer versions only)."""
    statement = pg_insert(AgentName).values(id=agent_id, name=name, version=version)
    await unit.session.execute(
        statement.on_conflict_do_update(
            index_elements=[AgentName.id],
            set_={"name": statement.excluded.name, "version": statement.excluded.version},
            where=AgentName.version < statement.excluded.version,
        )
    )


async def forget_agent_name(unit: UnitOfWork, agent_id: str) -> None:
    await unit.session.execute(sa.delete(AgentName).where(AgentName.id == agent_id))
