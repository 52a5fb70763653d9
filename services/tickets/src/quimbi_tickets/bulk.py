"""Bulk changes: one request changes status, priority or category of up to 500 tickets.

Each ticket goes through the same use case as a single PATCH (`service.change_ticket`), so it
raises the same `ticket.updated` event; all of them in one unit of work (one commit, retried
whole on a deadlock). Partial success: a ticket that is missing, invisible to the caller or
refuses the status move is reported as such and the others still change. Tickets are locked in
id order, so two bulk changes over the same tickets wait for each other instead of deadlocking.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from quimbi_common.auth import Principal
from quimbi_common.errors import ConflictError, UnprocessableError
from quimbi_common.uow import UnitOfWork

from .models import Ticket
from .queries import InboxQuery, matching_ids
from .schemas import BULK_MAX_TICKETS, BulkResponse, BulkResult, BulkUpdate, TicketFilter
from .service import change_ticket, visibility
from .settings import Settings


def _query(selection: TicketFilter) -> InboxQuery:
    values = selection.model_dump()
    return InboxQuery(**values)


async def _selected_ids(unit: UnitOfWork, principal: Principal, body: BulkUpdate) -> list[str]:
    """The ids to change, in request order (repeats dropped), or those matching the filter."""
    if body.ticket_ids is not None:
        return list(dict.fromkeys(body.ticket_ids))
    assert body.filter is not None
    found = list(
        await unit.session.scalars(
            matching_ids(_query(body.filter), principal)
            .order_by(Ticket.id)
            .limit(BULK_MAX_TICKETS + 1)
        )
    )
    if len(found) > BULK_MAX_TICKETS:
        raise UnprocessableError(
            f"The filter matches more than {BULK_MAX_TICKETS} tickets; narrow it or send ids",
            errors=[
                {
                    "loc": ["body", "filter"],
                    "msg": f"matches more than {BULK_MAX_TICKETS} tickets",
                    "type": "value_error",
                }
            ],
        )
    return found


async def bulk_update(
    unit: UnitOfWork, settings: Settings, principal: Principal, body: BulkUpdate
) -> BulkResponse:
    ids = await _selected_ids(unit, principal, body)
    wanted: dict[str, Any] = body.changes.model_dump(exclude_unset=True)
    locked = await unit.session.scalars(
        sa.select(Ticket)
        .where(Ticket.id.in_(ids), *visibility(principal))
        .options(joinedload(Ticket.customer))
        .order_by(Ticket.id)
        .with_for_update(of=Ticket)
    )
    tickets = {ticket.id: ticket for ticket in locked}
    results = []
    for ticket_id in ids:
        ticket = tickets.get(ticket_id)
        if ticket is None:
            results.append(
                BulkResult(id=ticket_id, outcome="not_found", status=404, detail="Ticket not found")
            )
            continue
        try:
            event_id = await change_ticket(unit, settings, ticket, wanted)
        except ConflictError as exc:
            results.append(
                BulkResult(
                    id=ticket_id,
                    outcome="conflict",
                    status=409,
                    detail=exc.detail,
                    allowed=exc.extra.get("allowed"),
                    version=ticket.version,
                )
            )
            continue
        results.append(
            BulkResult(
                id=ticket_id,
                outcome="updated" if event_id else "unchanged",
                status=200,
                version=ticket.version,
                consistency_token=f"ticket.updated/{event_id}" if event_id else None,
            )
        )
    count = {o: sum(r.outcome == o for r in results) for o in ("updated", "unchanged")}
    return BulkResponse(
        results=results,
        requested=len(ids),
        updated=count["updated"],
        unchanged=count["unchanged"],
        failed=len(results) - count["updated"] - count["unchanged"],
    )
