"""CSAT feeds the agent's `customer_satisfaction_score` (issue 19 item 6): each `ticket.rated`
is stored once per ticket, and the agent who held the ticket when it was rated gets the mean
of every rating of theirs (0-5, two decimals). The ratings take over from a score set by hand
as soon as the first one arrives; a score changed this way is announced as `agent.updated`
in the same transaction, so projections and the live inbox follow."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from quimbi_common.clock import utcnow
from quimbi_common.events import AgentUpdatedData, EventType, FieldChange, TicketRatedData
from quimbi_common.uow import UnitOfWork

from .reports.models import TicketRating
from .service.agents import agent_data
from .service.assignments import lock_live_agent

SCORE = "customer_satisfaction_score"


async def record_rating(unit: UnitOfWork, data: TicketRatedData) -> None:
    """Store the rating (a ticket's second rating, or the same one delivered again, changes
    nothing: the ticket id is the key) and recompute its agent's score."""
    session = unit.session
    stored = await session.scalar(
        insert(TicketRating)
        .values(
            ticket_id=data.ticket_id,
            customer_id=data.customer_id,
            agent_id=data.agent_id,
            rating=data.rating,
            comment=data.comment,
            rated_at=data.rated_at,
        )
        .on_conflict_do_nothing()
        .returning(TicketRating.ticket_id)
    )
    if stored is None or data.agent_id is None:
        return
    agent = await lock_live_agent(session, data.agent_id)
    if agent is None:  # a deleted or unknown agent: the rating still counts in reports
        return
    mean = await session.scalar(
        sa.select(sa.func.avg(TicketRating.rating)).where(TicketRating.agent_id == agent.id)
    )
    score = round(float(mean or 0), 2)
    old = agent.customer_satisfaction_score
    if score == old:
        return
    agent.customer_satisfaction_score = score
    agent.updated_at = utcnow()
    agent.version += 1
    change = {SCORE: FieldChange(old=old, new=score)}
    await unit.emit(EventType.AGENT_UPDATED, AgentUpdatedData(**agent_data(agent), changes=change))
