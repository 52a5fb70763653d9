"""The smart inbox list (ARCHITECTURE §5): filtered, ordered and paginated in PostgreSQL.

Without topic alerts the page is read straight off an index on (smart_score DESC, created_at,
id), optionally led by status and/or assignee. With topic alerts, the tickets whose subject or
any message contains a keyword (case-insensitive; trigram indexes serve the ILIKE) are found
once, and the ordering score adds TOPIC_ALERT_BOOST to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from quimbi_common.auth import Principal
from quimbi_common.enums import Channel, TicketPriority, TicketStatus

from . import domain
from .models import Message, Ticket
from .service import visibility

LIST_COLUMNS = (
    Ticket.id,
    Ticket.customer_id,
    Ticket.subject,
    Ticket.status,
    Ticket.priority,
    Ticket.channel,
    Ticket.category,
    Ticket.assigned_agent_id,
    Ticket.created_at,
    Ticket.updated_at,
    Ticket.customer_sentiment,
    Ticket.estimated_difficulty,
)


@dataclass(frozen=True)
class InboxQuery:
    page: int = 1
    limit: int = 50
    status: TicketStatus | None = None
    channel: Channel | None = None
    priority: TicketPriority | None = None
    category: str | None = None
    assigned_agent_id: str | None = None
    unassigned: bool = False
    customer_id: str | None = None
    topic_alerts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InboxPage:
    rows: list[dict[str, Any]]
    total: int
    matches: int


def _filters(query: InboxQuery, principal: Principal) -> list[sa.ColumnElement[bool]]:
    conditions = visibility(principal)
    equal = {
        Ticket.status: query.status,
        Ticket.channel: query.channel,
        Ticket.priority: query.priority,
        Ticket.category: query.category,
        Ticket.assigned_agent_id: query.assigned_agent_id,
        Ticket.customer_id: query.customer_id,
    }
    conditions += [column == str(value) for column, value in equal.items() if value is not None]
    if query.unassigned:
        conditions.append(Ticket.assigned_agent_id.is_(None))
    return conditions


def _topic_match(keywords: list[str]) -> sa.ColumnElement[bool]:
    """True for tickets whose subject or any message contains one of the keywords."""
    patterns = [domain.like_pattern(k) for k in keywords]
    by_subject = sa.select(Ticket.id).where(
        sa.or_(*(Ticket.subject.ilike(p, escape="\\") for p in patterns))
    )
    by_message = sa.select(Message.ticket_id).where(
        sa.or_(*(Message.content.ilike(p, escape="\\") for p in patterns))
    )
    matched = sa.union(by_subject, by_message).cte("topic_matched")
    return Ticket.id.in_(sa.select(matched.c.id))


def inbox_statements(
    query: InboxQuery, principal: Principal, boost: float
) -> tuple[sa.Select[*tuple[Any, ...]], sa.Select[int, int]]:
    """The page query and the counts query (total, matches) for one inbox request."""
    conditions = _filters(query, principal)
    is_match: sa.ColumnElement[bool]
    ordering: sa.ColumnElement[float] | InstrumentedAttribute[float]
    matches: sa.ColumnElement[int]
    if query.topic_alerts:
        is_match = _topic_match(query.topic_alerts)
        ordering = Ticket.smart_score + sa.case((is_match, boost), else_=0.0)
        matches = sa.func.count().filter(is_match)
    else:
        is_match = sa.false()
        ordering = Ticket.smart_score
        matches = sa.literal(0)
    page = (
        sa.select(
            *LIST_COLUMNS,
            ordering.label("smart_score"),
            is_match.label("matches_topic_alert"),
        )
        .where(*conditions)
        .order_by(ordering.desc(), Ticket.created_at, Ticket.id)
        .limit(query.limit)
        .offset((query.page - 1) * query.limit)
    )
    counts = sa.select(sa.func.count().label("total"), matches.label("matches")).where(*conditions)
    return page, counts


async def list_tickets(
    session: AsyncSession, principal: Principal, query: InboxQuery, *, boost: float
) -> InboxPage:
    page, counts = inbox_statements(query, principal, boost)
    rows = [dict(row) for row in (await session.execute(page)).mappings()]
    total, matches = (await session.execute(counts.select_from(Ticket))).one()
    return InboxPage(rows, total, matches)
