"""The smart inbox list (ARCHITECTURE §5): filtered, ordered and paginated in PostgreSQL.

One statement per request. Without topic alerts the page is read straight off an index on
(smart_score DESC, created_at, id), optionally led by status and/or assignee, and the total
is a count over the same filters. With topic alerts, the filtered tickets whose subject or any
message contains a keyword (case-insensitive ILIKE; trigram indexes serve selective keywords)
are collected once; the ordering score adds TOPIC_ALERT_BOOST to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.enums import Channel, TicketPriority, TicketStatus

from . import domain
from .models import Message, Ticket

TICKETS = Ticket.__table__
MESSAGES = Message.__table__
LIST_COLUMNS = (
    "id",
    "customer_id",
    "subject",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_agent_id",
    "created_at",
    "updated_at",
    "customer_sentiment",
    "estimated_difficulty",
    "score_version",  # 0 until scoring has reported: the item's score is pending
    "sla_version",  # 0 until the SLA service has reported: its clocks are pending
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


EQUALITY_FILTERS = ("status", "channel", "priority", "category", "assigned_agent_id", "customer_id")


@dataclass(frozen=True)
class Shape:
    """What the SQL text of an inbox request depends on (its values are bound parameters), so
    each shape is built and compiled once."""

    filters: tuple[str, ...]
    unassigned: bool
    own_tickets_only: bool
    keywords: int


def _shape_and_params(
    query: InboxQuery, principal: Principal, boost: float
) -> tuple[Shape, dict[str, Any]]:
    values = {name: getattr(query, name) for name in EQUALITY_FILTERS}
    params: dict[str, Any] = {name: str(v) for name, v in values.items() if v is not None}
    own_only = not principal.sees_all_tickets
    if own_only:
        params["viewer"] = principal.agent_id
    params.update(
        {f"keyword_{i}": domain.like_pattern(k) for i, k in enumerate(query.topic_alerts)}
    )
    params.update(
        boost=boost,
        page_size=query.limit,
        skip=(query.page - 1) * query.limit,
        window=query.page * query.limit,
    )
    shape = Shape(
        filters=tuple(name for name in EQUALITY_FILTERS if name in params),
        unassigned=query.unassigned,
        own_tickets_only=own_only,
        keywords=len(query.topic_alerts),
    )
    return shape, params


def _filters(table: sa.FromClause, shape: Shape) -> list[Any]:
    """The request's filters, plus visibility: an agent sees only tickets assigned to them."""
    conditions: list[Any] = [table.c[name] == sa.bindparam(name) for name in shape.filters]
    if shape.own_tickets_only:
        conditions.append(table.c.assigned_agent_id == sa.bindparam("viewer"))
    if shape.unassigned:
        conditions.append(table.c.assigned_agent_id.is_(None))
    return conditions


def _matched(shape: Shape) -> sa.CTE:
    """Ids of the filtered tickets whose subject or any message contains a keyword."""
    patterns = [sa.bindparam(f"keyword_{i}", type_=sa.String) for i in range(shape.keywords)]
    tickets = TICKETS.alias("alerted")
    conditions = _filters(tickets, shape)
    by_subject = sa.select(tickets.c.id).where(
        *conditions, sa.or_(*(tickets.c.subject.ilike(p, escape="\\") for p in patterns))
    )
    by_message = (
        sa.select(MESSAGES.c.ticket_id)
        .join(tickets, tickets.c.id == MESSAGES.c.ticket_id)
        .where(*conditions, sa.or_(*(MESSAGES.c.content.ilike(p, escape="\\") for p in patterns)))
    )
    return sa.union(by_subject, by_message).cte("topic_matched").prefix_with("MATERIALIZED")


def _page(ranked: sa.Subquery, total: Any, matches: Any) -> sa.Select[Any]:
    return (
        sa.select(
            *(ranked.c[name] for name in LIST_COLUMNS),
            ranked.c.smart_score,
            ranked.c.matches_topic_alert,
            total.label("total"),
            matches.label("matches"),
        )
        .order_by(ranked.c.smart_score.desc(), ranked.c.created_at, ranked.c.id)
        .limit(sa.bindparam("page_size", type_=sa.Integer))
        .offset(sa.bindparam("skip", type_=sa.Integer))
    )


@lru_cache(maxsize=256)
def _statement(shape: Shape) -> sa.Select[Any]:
    """The page of tickets, each row also carrying the total and the topic-alert matches.

    With topic alerts the page is the best of two streams, both read in index order: the
    matched tickets with their boosted score, and the first `page * limit + matches` tickets
    by stored score with the matched ones taken out.
    """
    conditions = _filters(TICKETS, shape)
    total = sa.select(sa.func.count()).select_from(TICKETS).where(*conditions).scalar_subquery()
    columns = [TICKETS.c[name] for name in LIST_COLUMNS]
    by_score = (TICKETS.c.smart_score.desc(), TICKETS.c.created_at, TICKETS.c.id)
    if not shape.keywords:
        plain = sa.select(
            *columns, TICKETS.c.smart_score, sa.false().label("matches_topic_alert")
        ).where(*conditions)
        return _page(plain.subquery("ranked"), total, sa.literal(0))

    matched = _matched(shape)
    matches = sa.select(sa.func.count()).select_from(matched).scalar_subquery()
    window = sa.bindparam("window", type_=sa.Integer)
    boosted = (
        sa.select(
            *columns,
            (TICKETS.c.smart_score + sa.bindparam("boost", type_=sa.Float)).label("smart_score"),
            sa.true().label("matches_topic_alert"),
        )
        .select_from(TICKETS.join(matched, matched.c.id == TICKETS.c.id))
        .order_by(*by_score)
        .limit(window)
    )
    leaders = (
        sa.select(*columns, TICKETS.c.smart_score)
        .where(*conditions)
        .order_by(*by_score)
        .limit(window + matches)
        .subquery("leaders")
    )
    unmatched = sa.select(
        *(leaders.c[name] for name in LIST_COLUMNS),
        leaders.c.smart_score,
        sa.false().label("matches_topic_alert"),
    ).where(~sa.exists().where(matched.c.id == leaders.c.id))
    ranked = sa.union_all(boosted.subquery().select(), unmatched).subquery("ranked")
    return _page(ranked, total, matches)


def inbox_statement(query: InboxQuery, principal: Principal, boost: float) -> sa.Select[Any]:
    """The statement of one inbox request with its values bound (for EXPLAIN and benchmarks)."""
    shape, params = _shape_and_params(query, principal, boost)
    return _statement(shape).params(params)


async def list_tickets(
    session: AsyncSession, principal: Principal, query: InboxQuery, *, boost: float
) -> InboxPage:
    """One statement, outside a transaction (it reads one snapshot anyway, and BEGIN/ROLLBACK
    would double the round trips); a page past the end has no rows to carry the counts."""
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    shape, params = _shape_and_params(query, principal, boost)
    statement = _statement(shape)
    rows = [dict(row) for row in (await connection.execute(statement, params)).mappings()]
    if not rows and query.page > 1:
        first = {**params, "page_size": 1, "skip": 0, "window": 1}
        head = (await connection.execute(statement, first)).mappings().first()
        return InboxPage([], head["total"] if head else 0, head["matches"] if head else 0)
    total = rows[0]["total"] if rows else 0
    matches = rows[0]["matches"] if rows else 0
    return InboxPage(rows, total, matches)
