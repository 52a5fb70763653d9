"""What events do to the report projection, a consumer batch of one topic at a time. Four
topics write one row per ticket in any order, so each writes only its own columns, in one
multi-row upsert per batch (the batch first reduced to one row per ticket), guarded per
column: the resolution and the SLA clock keep their highest version, the first response the
earliest time. Redelivery changes nothing (the consumer skips a seen event id; a repeat under
a new id meets the same guards). Runs in the consumer's unit of work (never commits).

The ticket topics are consumed by the service's own handlers (`handlers.py`), which `stage`
their events here: one consumption of an event per service (issue 15), and still one upsert
per batch, run at the end of the unit (its before-commit step)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.enums import SlaStatus, TicketStatus
from quimbi_common.events import (
    MessageData,
    SlaTrackingData,
    TicketData,
    TicketDeletedData,
    TicketUpdatedData,
)
from quimbi_common.uow import UnitOfWork

from ..models import TicketAssignment
from .models import ReportTicket

_DONE = {TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value}
_T = cast(sa.Table, ReportTicket.__table__)


def is_resolution(data: TicketData) -> bool:
    """The update that made the ticket resolved or closed (from not done): what 'handled' and
    the resolution time count. resolved → closed is not a second resolution."""
    if not isinstance(data, TicketUpdatedData) or "status" not in data.changes:
        return False
    change = data.changes["status"]
    return change.new in _DONE and change.old not in _DONE


@functools.cache
def _upsert_statement(
    columns: tuple[str, ...], guard: str, always: frozenset[str]
) -> sa.TextClause:
    """`INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` of these columns: compiled once
    per shape, not built per batch (it was a third of the projection's CPU, issue 15)."""
    arrays = ", ".join(
        f"CAST(:{c} AS {_T.c[c].type.compile(dialect=postgresql.dialect())}[])" for c in columns
    )
    sets = ", ".join(
        f"{c} = excluded.{c}"
        if c in always
        else f"{c} = CASE WHEN {guard} THEN excluded.{c} ELSE report_tickets.{c} END"
        for c in columns
        if c != "ticket_id"
    )
    return sa.text(
        f"INSERT INTO report_tickets ({', '.join(columns)}) "  # noqa: S608 (column names)
        f"SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (ticket_id) DO UPDATE SET {sets}"
    )


async def _upsert(
    session: AsyncSession,
    rows: Iterable[dict[str, Any]],
    guard: str,
    always: frozenset[str] = frozenset(),
) -> None:
    """Insert the rows (one per ticket, same keys), or, for tickets already there, set their
    columns where `guard` (SQL on `report_tickets`, the stored row, and `excluded`, the
    incoming one) holds (those in `always` whatever it says)."""
    ordered = sorted(rows, key=lambda row: row["ticket_id"])  # the row locks in one order
    if not ordered:
        return
    columns = tuple(ordered[0])
    await session.execute(
        _upsert_statement(columns, guard, always),
        {c: [row[c] for row in ordered] for c in columns},
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


async def apply_tickets(session: AsyncSession, batch: list[TicketData]) -> None:
    """ticket.created / ticket.updated: when each ticket was made and, for the update that
    resolved it, when and by whom (the assignee it names, else our assignment records); a
    later resolution (after a reopening: a higher version) replaces an earlier one."""
    rows: dict[str, dict[str, Any]] = {}
    for data in batch:
        row = rows.setdefault(
            data.id,
            {
                "ticket_id": data.id,
                "created_at": data.created_at,
                "resolved_at": None,
                "resolved_by": None,
                "resolution_version": None,
            },
        )
        if is_resolution(data) and (row["resolution_version"] or 0) < data.version:
            resolver = data.assigned_agent_id or await _holder(session, data.id, data.updated_at)
            row.update(resolved_at=data.updated_at, resolved_by=resolver)
            row["resolution_version"] = data.version
    await _upsert(
        session,
        rows.values(),
        # a row without a resolution (NULL version) compares NULL: the stored one stays
        "coalesce(report_tickets.resolution_version, 0) < excluded.resolution_version",
        always=frozenset({"created_at"}),  # never changes
    )


async def apply_deletions(session: AsyncSession, batch: list[TicketDeletedData]) -> None:
    """A deleted ticket leaves every report (its row stays, so late events find it gone)."""
    rows = {d.id: {"ticket_id": d.id, "deleted_at": d.deleted_at} for d in batch}
    await _upsert(session, rows.values(), "true")


async def apply_messages(session: AsyncSession, batch: list[MessageData]) -> None:
    """The earliest agent message is the first response, credited to its author."""
    rows: dict[str, dict[str, Any]] = {}
    for data in batch:
        if not data.from_agent:
            continue
        known = rows.get(data.ticket_id)
        if known is None or data.created_at < known["first_response_at"]:
            rows[data.ticket_id] = {
                "ticket_id": data.ticket_id,
                "first_response_at": data.created_at,
                "first_response_by": data.author_agent_id,
            }
    await _upsert(
        session,
        rows.values(),
        "report_tickets.first_response_at IS NULL "
        "OR report_tickets.first_response_at > excluded.first_response_at",
    )


def decided_at(status: SlaStatus, done_at: datetime | None, deadline: datetime) -> datetime | None:
    """When an SLA metric's outcome was settled: met → when met (else, unknown, the deadline),
    breached → at its deadline; pending or at risk → not yet."""
    if status == SlaStatus.MET:
        return done_at or deadline
    return deadline if status == SlaStatus.BREACHED else None


async def apply_slas(session: AsyncSession, batch: list[SlaTrackingData]) -> None:
    """sla.decided: the clock's outcomes as of its highest version."""
    newest: dict[str, SlaTrackingData] = {}
    for data in batch:
        if data.ticket_id not in newest or newest[data.ticket_id].version <= data.version:
            newest[data.ticket_id] = data
    rows = (
        {
            "ticket_id": data.ticket_id,
            "sla_version": data.version,
            "first_response_status": data.first_response_status.value,
            "first_response_decided_at": decided_at(
                data.first_response_status, data.first_response_at, data.first_response_deadline
            ),
            "resolution_status": data.resolution_status.value,
            "resolution_decided_at": decided_at(
                data.resolution_status, data.resolved_at, data.resolution_deadline
            ),
        }
        for data in newest.values()
    )
    await _upsert(
        session,
        rows,
        "coalesce(report_tickets.sla_version, -1) <= excluded.sla_version",
    )


_STAGED = "reports.staged"


def stage(
    unit: UnitOfWork,
    apply: Callable[[AsyncSession, list[Any]], Awaitable[None]],
    data: Any,
) -> None:
    """Apply `data` with `apply` (`apply_tickets`, `apply_deletions`) at the end of the unit,
    together with what the unit's other events staged for it: one upsert for the batch."""
    session = unit.session
    transaction = session.sync_session.get_transaction()
    owner, staged = session.info.get(_STAGED, (None, None))
    if owner is not transaction or staged is None:
        staged = {}
        session.info[_STAGED] = (transaction, staged)
    if apply not in staged:
        batch: list[Any] = []
        staged[apply] = batch

        async def run() -> None:
            await apply(session, batch)

        unit.before_commit(f"{_STAGED}.{apply.__name__}", run)
    staged[apply].append(data)
