"""CSAT: the customer's 1-5 rating of a resolved or closed ticket, recorded once and announced
as `ticket.rated` (agents' satisfaction score and the managers' reports are built from it).

Only the integration key rates (on the customer's behalf); agents read a rating of a ticket
they may see. Once per ticket: the ticket row is locked while rating, so a concurrent second
request waits and then finds the first; the table's primary key (the ticket id) backs that up.
The identical request sent again (a retry whose answer was lost) is answered with the stored
rating and no new event; a different one is a 409.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.clock import utcnow
from quimbi_common.enums import TicketStatus
from quimbi_common.errors import ConflictError, ForbiddenError, NotFoundError
from quimbi_common.events import EventType, TicketRatedData
from quimbi_common.uow import UnitOfWork

from .models import TicketRating
from .schemas import RatingCreate
from .service import load_ticket

RATEABLE = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)


@dataclass(frozen=True)
class Rated:
    rating: TicketRating
    created: bool  # False: the same rating was already stored (a retry)


async def rate_ticket(
    unit: UnitOfWork, principal: Principal, ticket_id: str, body: RatingCreate
) -> Rated:
    if principal.is_agent:
        raise ForbiddenError("Only the integration key rates tickets, on the customer's behalf")
    session = unit.session
    ticket = await load_ticket(session, principal, ticket_id, lock=True)
    existing = await session.get(TicketRating, ticket_id)
    if existing is not None:
        if (existing.rating, existing.comment) == (body.rating, body.comment):
            return Rated(existing, created=False)
        raise ConflictError(
            f"Ticket {ticket_id} was already rated; a rating is recorded once",
            rating=existing.rating,
        )
    if ticket.status not in RATEABLE:
        raise ConflictError(
            f"Ticket {ticket_id} is {ticket.status}: only a resolved or closed ticket is rated",
            ticket_status=ticket.status,
            allowed_statuses=list(RATEABLE),
        )
    rating = TicketRating(
        ticket_id=ticket.id,
        customer_id=ticket.customer_id,
        rating=body.rating,
        comment=body.comment,
        agent_id=ticket.assigned_agent_id,
        rated_at=utcnow(),
    )
    session.add(rating)
    await session.flush()
    await unit.emit(
        EventType.TICKET_RATED,
        TicketRatedData.model_validate(rating, from_attributes=True),
    )
    return Rated(rating, created=True)


async def get_rating(session: AsyncSession, principal: Principal, ticket_id: str) -> TicketRating:
    """The rating of a ticket the caller may see; 404 when there is none (yet)."""
    await load_ticket(session, principal, ticket_id)
    rating = await session.scalar(
        sa.select(TicketRating).where(TicketRating.ticket_id == ticket_id)
    )
    if rating is None:
        raise NotFoundError(f"Ticket {ticket_id} has not been rated")
    return rating
