"""The smart inbox list (ARCHITECTURE §5): filtered, ordered and paginated in PostgreSQL.

One statement per request. Without topic alerts the page is read straight off an index on
(smart_score DESC, created_at, id), optionally led by status and/or assignee, and the total
is a count over the same filters. With topic alerts, the filtered tickets whose subject or any
message contains a keyword (case-insensitive ILIKE; trigram indexes serve selective keywords)
are collected once; the ordering score adds TOPIC_ALERT_BOOST to them.
"""

from __future__ import annotations

import asyncio
import json
import types
import typing
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from quimbi_common.auth import Principal
from quimbi_common.catchup import NotVisibleYet
from quimbi_common.db import is_database_outage
from quimbi_common.enums import Channel, TicketPriority, TicketStatus
from quimbi_common.errors import NotFoundError

from . import domain
from .models import Attachment, Customer, Message, Ticket
from .schemas import (
    AttachmentRead,
    CustomerSummary,
    MessageRead,
    SlaSummary,
    TicketDetail,
    TicketListItem,
)

TICKETS = Ticket.__table__
MESSAGES = Message.__table__
CUSTOMERS = Customer.__table__
ATTACHMENTS = Attachment.__table__
# The inbox item's fields (Appendix B `TicketListItem`) that are not ticket columns as they are.
COMPUTED = ("smart_score", "score_status", "sla_status", "matches_topic_alert")
ITEM_COLUMNS = tuple(name for name in TicketListItem.model_fields if name not in COMPUTED)
LIST_COLUMNS = (
    *ITEM_COLUMNS,
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


EQUALITY_FILTERS = ("status", "channel", "priority", "category", "assigned_agent_id", "customer_id")


@dataclass(frozen=True)
class Shape:
    """What the SQL text of an inbox request depends on (its values are bound parameters), so
    each shape is built and compiled once."""

    filters: tuple[str, ...]
    unassigned: bool
    own_tickets_only: bool
    keywords: int


def shape_and_params(
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


def filters_of(
    table: sa.FromClause, shape: Shape, params: dict[str, Any] | None = None
) -> list[Any]:
    """The request's filters, plus visibility: an agent sees only tickets assigned to them.
    Parameters are left unbound (bound at execution) unless `params` gives their values."""

    def value(name: str) -> Any:
        return sa.bindparam(name) if params is None else sa.bindparam(name, params[name])

    conditions: list[Any] = [table.c[name] == value(name) for name in shape.filters]
    if shape.own_tickets_only:
        conditions.append(table.c.assigned_agent_id == value("viewer"))
    if shape.unassigned:
        conditions.append(table.c.assigned_agent_id.is_(None))
    return conditions


def _matched(shape: Shape) -> sa.CTE:
    """Ids of the filtered tickets whose subject or any message contains a keyword."""
    patterns = [sa.bindparam(f"keyword_{i}", type_=sa.String) for i in range(shape.keywords)]
    tickets = TICKETS.alias("alerted")
    conditions = filters_of(tickets, shape)
    by_subject = sa.select(tickets.c.id).where(
        *conditions, sa.or_(*(tickets.c.subject.ilike(p, escape="\\") for p in patterns))
    )
    by_message = (
        sa.select(MESSAGES.c.ticket_id)
        .join(tickets, tickets.c.id == MESSAGES.c.ticket_id)
        .where(*conditions, sa.or_(*(MESSAGES.c.content.ilike(p, escape="\\") for p in patterns)))
    )
    return sa.union(by_subject, by_message).cte("topic_matched").prefix_with("MATERIALIZED")


@dataclass(frozen=True)
class Ranked:
    """The filtered tickets with their ordering score, and the counts of the whole list."""

    rows: sa.Subquery
    total: Any
    matches: Any


@lru_cache(maxsize=256)
def _ranked(shape: Shape) -> Ranked:
    """With topic alerts the ranking is the best of two streams, both read in index order: the
    matched tickets with their boosted score, and the first `page * limit + matches` tickets
    by stored score with the matched ones taken out."""
    conditions = filters_of(TICKETS, shape)
    total = sa.select(sa.func.count()).select_from(TICKETS).where(*conditions).scalar_subquery()
    columns = [TICKETS.c[name] for name in LIST_COLUMNS]
    by_score = (TICKETS.c.smart_score.desc(), TICKETS.c.created_at, TICKETS.c.id)
    if not shape.keywords:
        plain = sa.select(
            *columns, TICKETS.c.smart_score, sa.false().label("matches_topic_alert")
        ).where(*conditions)
        return Ranked(plain.subquery("ranked"), total, _constant(0))

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
    return Ranked(ranked, total, matches)


def _order(rows: sa.FromClause) -> tuple[Any, ...]:
    return rows.c.smart_score.desc(), rows.c.created_at, rows.c.id


@lru_cache(maxsize=256)
def _page(shape: Shape) -> sa.Select[Any]:
    """The rows of one page, in inbox order."""
    ranked = _ranked(shape).rows
    return (
        sa.select(ranked)
        .order_by(*_order(ranked))
        .limit(sa.bindparam("page_size", type_=sa.Integer))
        .offset(sa.bindparam("skip", type_=sa.Integer))
    )


def _constant(value: str | int) -> Any:
    """A constant written into the SQL text (not a parameter: the text is run as-is)."""
    text = f"'{value}'" if isinstance(value, str) else str(int(value))
    assert "'" not in str(value)
    return sa.literal_column(text, type_=sa.Text if isinstance(value, str) else sa.Integer)


def _iso_utc(column: Any) -> Any:
    """A timestamp as the API writes datetimes everywhere else (pydantic): UTC with `Z`,
    microseconds only when there are any."""
    utc = sa.func.timezone(_constant("UTC"), column)
    whole = sa.func.to_char(utc, _constant('YYYY-MM-DD"T"HH24:MI:SS'))
    micros = sa.cast(sa.extract("microseconds", column), sa.BigInteger) % _constant(1_000_000)
    fraction = sa.case(
        (micros == _constant(0), _constant("Z")), else_=sa.func.to_char(utc, _constant('.US"Z"'))
    )
    return sa.type_coerce(whole.op("||")(fraction), sa.Text)


def _as_float(column: Any) -> Any:
    return sa.cast(column, sa.Float)


def _as_json(column: Any, annotation: Any) -> Any:
    """A column as pydantic would write the field: datetimes in ISO UTC, numerics as floats
    (an optional field's NULL stays null)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is datetime:
        return _iso_utc(column)
    return _as_float(column) if annotation is float else column


def _object(model: type[BaseModel], column: Any, **computed: Any) -> Any:
    """A response model as a JSON object built by PostgreSQL, its fields in the model's order:
    each field is `computed[name]` or the column `column(name)` written as pydantic would."""
    fields = {
        name: computed[name] if name in computed else _as_json(column(name), info.annotation)
        for name, info in model.model_fields.items()
    }
    return sa.func.json_build_object(
        *(part for name, value in fields.items() for part in (_constant(name), value))
    )


def _status(version: Any, reported: str) -> Any:
    return sa.case((version == _constant(0), _constant("pending")), else_=_constant(reported))


def _reported(c: Any) -> dict[str, Any]:
    """`score_status` / `sla_status`: pending until scoring / the SLA service have reported
    (read-your-writes, README)."""
    return {
        "score_status": _status(c.score_version, "scored"),
        "sla_status": _status(c.sla_version, "tracked"),
    }


def _item(row: sa.FromClause) -> Any:
    """One inbox item (Appendix B `TicketListItem`) as a JSON object, its fields in order."""
    c = row.c
    return _object(
        TicketListItem,
        c.__getitem__,
        smart_score=_as_float(sa.func.round(sa.cast(c.smart_score, sa.Numeric), _constant(2))),
        matches_topic_alert=c.matches_topic_alert,
        **_reported(c),
    )


@dataclass(frozen=True)
class Compiled:
    """SQL text in asyncpg's style: `$n` placeholders, bound from `names` in that order."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)  # constants the statement holds

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params.get(name, self.defaults.get(name)) for name in self.names]


DIALECT = asyncpg_dialect()


@lru_cache(maxsize=256)
def _json_statement(shape: Shape) -> Compiled:
    """One row of (the page's items as JSON array text, total, matches).

    PostgreSQL builds the JSON, so no row becomes a Python object, and the counts come back
    even for a page past the end."""
    ranked = _ranked(shape)
    page = _page(shape).subquery("page")
    items = sa.func.coalesce(
        sa.func.json_agg(aggregate_order_by(_item(page), *_order(page))), sa.text("'[]'::json")
    )
    statement = sa.select(
        sa.select(sa.cast(items, sa.Text)).select_from(page).scalar_subquery().label("items"),
        ranked.total.label("total"),
        ranked.matches.label("matches"),
    )
    compiled = statement.compile(dialect=DIALECT)
    return Compiled(compiled.string, tuple(compiled.positiontup or ()))


def list_filters(table: sa.FromClause, query: InboxQuery, principal: Principal) -> list[Any]:
    """The list filters and visibility as conditions on `table`, values bound: the one reading
    of the list filters, shared by the inbox, bulk changes and search."""
    shape, params = shape_and_params(query, principal, 0.0)
    return filters_of(table, shape, params)


def matching_ids(query: InboxQuery, principal: Principal) -> sa.Select[Any]:
    """Ids of the tickets the caller may see that match the list filters (no order, no page)."""
    return sa.select(TICKETS.c.id).where(*list_filters(TICKETS, query, principal))


def inbox_statement(query: InboxQuery, principal: Principal, boost: float) -> sa.Select[Any]:
    """The page rows of one inbox request, values bound (for EXPLAIN: the index-order test)."""
    shape, params = shape_and_params(query, principal, boost)
    return _page(shape).params(params)


def inbox_sql(query: InboxQuery, principal: Principal, boost: float) -> tuple[str, list[Any]]:
    """The statement the route runs, as SQL text and asyncpg arguments (for benchmarks)."""
    shape, params = shape_and_params(query, principal, boost)
    statement = _json_statement(shape)
    return statement.sql, statement.args(params)


async def inbox_page(
    engine: AsyncEngine, principal: Principal, query: InboxQuery, *, boost: float
) -> bytes:
    """The inbox response body (Appendix B `TicketList`), built in one statement (`_fetchrow`:
    on the driver, the connection held only for it, so concurrent requests do not outgrow the
    pool), the JSON text passed through untouched."""
    shape, params = shape_and_params(query, principal, boost)
    row = await _fetchrow(engine, _json_statement(shape), params)
    items, total, matches = row["items"], row["total"], row["matches"]
    pagination = {
        "page": query.page,
        "limit": query.limit,
        "total": total,
        "has_next": query.page * query.limit < total,
        "has_prev": query.page > 1,
    }
    tail = json.dumps(
        {"pagination": pagination, "topic_alerts_active": query.topic_alerts, "matches": matches},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return f'{{"tickets":{items},{tail[1:]}'.encode()


# --- ticket detail ------------------------------------------------------------------------------


def _json_list(select: sa.Select[Any], item: Any, *order: Any) -> Any:
    """A correlated JSON array of `item` over `select`'s rows, in `order` (`[]` when none)."""
    aggregated = select.with_only_columns(sa.func.json_agg(aggregate_order_by(item, *order)))
    return sa.func.coalesce(aggregated.scalar_subquery(), sa.text("'[]'::json"))


def _message_object() -> Any:
    """One message (`MessageRead`) with its attachments, oldest first."""
    m, a = MESSAGES.c, ATTACHMENTS.c
    attachments = _json_list(
        sa.select().select_from(ATTACHMENTS).where(a.message_id == m.id),
        _object(AttachmentRead, a.__getitem__),
        a.created_at,
        a.id,
    )
    return _object(MessageRead, m.__getitem__, attachments=attachments)


@lru_cache(maxsize=2)
def _detail_statement(own_tickets_only: bool) -> Compiled:
    """One row per existing ticket id: the detail (`TicketDetail`) as JSON text, or NULL when
    the caller may not see it (agents see the tickets assigned to them)."""
    t, c = TICKETS.c, CUSTOMERS.c
    sla = sa.case(
        (sa.or_(t.sla_version == _constant(0), t.sla_first_response_status.is_(None)), sa.null()),
        else_=_object(SlaSummary, lambda name: t[f"sla_{name}"]),
    )
    customer = _object(
        CustomerSummary, lambda name: c["churn_risk_score" if name == "churn_risk" else name]
    )
    messages = _json_list(
        sa.select().select_from(MESSAGES).where(MESSAGES.c.ticket_id == t.id),
        _message_object(),
        MESSAGES.c.created_at,
        MESSAGES.c.id,
    )
    detail = _object(
        TicketDetail,
        t.__getitem__,
        customer=customer,
        sla=sla,
        messages=messages,
        **_reported(t),
    )
    visible = t.assigned_agent_id == sa.bindparam("viewer") if own_tickets_only else sa.true()
    statement = (
        sa.select(sa.case((visible, sa.cast(detail, sa.Text)), else_=sa.null()).label("body"))
        .select_from(TICKETS.join(CUSTOMERS, CUSTOMERS.c.id == t.customer_id))
        .where(t.id == sa.bindparam("ticket_id"))
    )
    compiled = statement.compile(dialect=DIALECT)
    return Compiled(compiled.string, tuple(compiled.positiontup or ()))


_READ_SLOTS: weakref.WeakKeyDictionary[Engine, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _read_slots(engine: AsyncEngine) -> asyncio.Semaphore:
    """As many concurrent reads as the pool keeps connections: past that, a read waits for a
    pooled connection here instead of opening an overflow one that is closed again when
    returned (connect, SSL probe, start-up and close cost this process about as much CPU as
    the statement itself under the inbox benchmark's load: issue #15's profile)."""
    slots = _READ_SLOTS.get(engine.sync_engine)
    if slots is None:
        size = getattr(engine.pool, "size", None)
        slots = asyncio.Semaphore(size() if callable(size) else 10)
        _READ_SLOTS[engine.sync_engine] = slots
    return slots


@asynccontextmanager
async def read_connection(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncConnection, Any]]:
    """A pooled connection and its asyncpg driver for reads run as-is, held only while in
    use and within the read slots; an outage SQLAlchemy did not see keeps it out of the pool."""
    async with _read_slots(engine), engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            yield connection, driver
        except BaseException as exc:
            if is_database_outage(exc):
                await connection.invalidate(exc if isinstance(exc, Exception) else None)
            raise


async def _fetchrow(engine: AsyncEngine, statement: Compiled, params: dict[str, Any]) -> Any:
    """One row of a compiled statement on `read_connection`: outside a transaction (one
    statement reads one snapshot), prepared once per connection by asyncpg's statement cache."""
    async with read_connection(engine) as (_, driver):
        return await driver.fetchrow(statement.sql, *statement.args(params))


async def ticket_detail(engine: AsyncEngine, principal: Principal, ticket_id: str) -> bytes:
    """The ticket detail response body (Appendix B `TicketDetail`), written by PostgreSQL in
    one statement; 404 (`NotVisibleYet` when it exists but the caller may not see it yet)."""
    own_only = not principal.sees_all_tickets
    params = {"ticket_id": ticket_id, "viewer": principal.agent_id}
    row = await _fetchrow(engine, _detail_statement(own_only), params)
    if row is None or row["body"] is None:
        raise (NotFoundError if row is None else NotVisibleYet)(f"Ticket {ticket_id} not found")
    body: str = row["body"]
    return body.encode()
