"""What other services' events maintain here: the ticket, message and customer copies the
score needs, and the rescoring of what an event touched (in the consumer's unit of work).

Locks are always taken in the order customer → ticket → score, so handlers on different
topics never interleave on one score; the periodic recalculation (service.py) never waits for
a lock and skips rows a handler holds or rewrote.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common import tracing
from quimbi_common.catchup import notify_applied
from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.events import (
    CustomerIntelligenceData,
    MessageData,
    TicketData,
    TicketDeletedData,
)
from quimbi_common.uow import UnitOfWork

from . import domain, service
from .models import Customer, Message, Ticket, TicketScore
from .settings import Settings

log = logging.getLogger(__name__)
TICKETS = cast(sa.Table, Ticket.__table__)
MESSAGES = cast(sa.Table, Message.__table__)

# --- projections ----------------------------------------------------------------------------
#
# Handlers keep their round trips few: under load each one costs more than the work it does.

_LOCK_TICKET = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:id, 0))")


@dataclass(frozen=True)
class CustomerValues:
    lifetime_value: float
    churn_risk: float
    changed: bool  # for the customer's other tickets too


async def apply_ticket(
    unit: UnitOfWork, ticket: TicketData, settings: Settings, now: datetime
) -> None:
    """ticket.created / ticket.updated: newer versions replace the projection, then rescore."""
    session = unit.session
    await _lock_ticket(session, ticket.id)
    customer, messages = await _apply_customer_snapshot(session, ticket)
    conversation = domain.summarize_conversation(ticket.created_at, messages)
    inserted = await _upsert_ticket(session, ticket, conversation)
    if customer.changed:
        tickets = await service.load_for_customers(session, [ticket.customer_id])
        rescore_at_the_end(unit, settings, now, [t.id for t in tickets])
    elif inserted is not None:
        rescore_at_the_end(unit, settings, now, [ticket.id], inserted=inserted)
    await notify_applied(session, ticket.id)  # requests waiting for this ticket look again


async def apply_ticket_deleted(unit: UnitOfWork, deleted: TicketDeletedData) -> None:
    """ticket.deleted is final whatever its version: keep a tombstone, drop the rest."""
    session = unit.session
    await _lock_ticket(session, deleted.id)
    insert = pg_insert(TICKETS).values(
        id=deleted.id,
        customer_id="",
        subject="",
        status=TicketStatus.CLOSED.value,
        priority=TicketPriority.NORMAL.value,
        created_at=deleted.deleted_at,
        version=deleted.version,
        deleted=True,
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[TICKETS.c.id],
            set_={
                "deleted": True,
                "version": sa.func.greatest(TICKETS.c.version, insert.excluded.version),
            },
        )
    )
    await session.execute(sa.delete(TicketScore).where(TicketScore.ticket_id == deleted.id))
    await session.execute(sa.delete(Message).where(Message.ticket_id == deleted.id))


async def apply_message(
    unit: UnitOfWork,
    message: MessageData,
    settings: Settings,
    now: datetime,
    *,
    deleted: bool = False,
) -> None:
    """message.added / .updated (newer versions win) and .deleted (final), then rescore."""
    session = unit.session
    await _lock_ticket(session, message.ticket_id)
    applied, others = await _upsert_message(session, message, deleted=deleted)
    if not applied:
        return
    this = [] if deleted else [_conversation_message(message)]
    if await _refresh_conversation(session, message.ticket_id, [*others, *this]):
        rescore_at_the_end(unit, settings, now, [message.ticket_id])


_APPLY_INTELLIGENCE = sa.text(
    "INSERT INTO customers (id, lifetime_value, churn_risk, fetched_at) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:lifetime_values AS float8[]), "
    "CAST(:churn_risks AS float8[]), CAST(:fetched_at AS timestamptz[])) "
    "ON CONFLICT (id) DO UPDATE SET lifetime_value = excluded.lifetime_value, "
    "churn_risk = excluded.churn_risk, fetched_at = excluded.fetched_at "
    "WHERE customers.fetched_at IS NULL OR customers.fetched_at < excluded.fetched_at "
    "RETURNING id"
)


async def apply_customer_intelligence(
    unit: UnitOfWork,
    batch: Sequence[CustomerIntelligenceData],
    settings: Settings,
    now: datetime,
) -> None:
    """customer.intelligence_updated, a batch at once: per customer the newest `fetched_at`
    wins (one statement for all), then the tickets of the customers that changed are rescored
    together (one read, one score write, one outbox insert)."""
    newest: dict[str, CustomerIntelligenceData] = {}
    for item in batch:
        held = newest.get(item.customer_id)
        if held is None or item.fetched_at >= held.fetched_at:
            newest[item.customer_id] = item
    rows = [newest[customer_id] for customer_id in sorted(newest)]  # row locks in id order
    session = unit.session
    changed = await session.scalars(
        _APPLY_INTELLIGENCE,
        {
            "ids": [r.customer_id for r in rows],
            "lifetime_values": [r.lifetime_value for r in rows],
            "churn_risks": [r.churn_risk for r in rows],
            "fetched_at": [r.fetched_at for r in rows],
        },
    )
    customer_ids = list(changed)
    if customer_ids:
        tickets = await service.load_for_customers(session, customer_ids)
        rescore_at_the_end(unit, settings, now, [t.id for t in tickets])


@dataclass
class _Rescore:
    """The tickets a unit of work changed, rescored once when it ends."""

    ticket_ids: set[str] = field(default_factory=set)
    unscored: set[str] = field(default_factory=set)  # inserted in this unit: no stored score
    causes: dict[str, Any] = field(default_factory=dict)  # per ticket, the span of its first cause
    now: datetime | None = None  # the time of the last event's handling


_RESCORE = "quimbi_scoring.rescore"


def rescore_at_the_end(
    unit: UnitOfWork,
    settings: Settings,
    now: datetime,
    ticket_ids: Sequence[str],
    *,
    inserted: bool = False,
) -> None:
    """Rescore these tickets when the unit ends (its before-commit step): a consumer batch
    touching a ticket several times (its ticket.created, first message, customer intelligence)
    rescores it once, and all of the batch's tickets with one read, one score write and one
    outbox insert, from the rows as they stand at the end (a ticket deleted meanwhile is not
    scored). Each ticket.scored keeps the trace of the first event that touched the ticket."""
    session = unit.session
    transaction = session.sync_session.get_transaction()
    owner, pending = session.info.get(_RESCORE, (None, _Rescore()))
    if owner is not transaction:
        pending = _Rescore()
        session.info[_RESCORE] = (transaction, pending)
    pending.now = now
    for ticket_id in ticket_ids:
        if ticket_id not in pending.ticket_ids and inserted:
            pending.unscored.add(ticket_id)
        pending.ticket_ids.add(ticket_id)
        if (cause := tracing.cause(ticket_id)) is not None:
            pending.causes.setdefault(ticket_id, cause)

    async def rescore() -> None:
        tickets = await service.load_tickets(session, sorted(pending.ticket_ids))
        with tracing.causes(pending.causes):
            await service.score_tickets(
                unit, settings, pending.now or now, tickets, unscored=pending.unscored
            )

    unit.before_commit(_RESCORE, rescore)


async def _lock_ticket(session: AsyncSession, ticket_id: str) -> None:
    """Serialize the handlers of one ticket across topics (ticket.created and its first
    message.added arrive together): neither would see the other's uncommitted row."""
    await session.execute(_LOCK_TICKET, {"id": ticket_id})


# SELECT-list items: the ticket's live messages (but `:without`) as three arrays, in
# conversation order. (Statements below are built from constant fragments only.)
_CONVERSATION_ARRAYS = (
    "(SELECT array_agg(m.from_agent ORDER BY m.created_at, m.id) FROM messages m"
    "  WHERE m.ticket_id = :ticket_id AND NOT m.deleted AND m.id IS DISTINCT FROM :without)"
    "  AS messages_from_agent, "
    "(SELECT array_agg(m.created_at ORDER BY m.created_at, m.id) FROM messages m"
    "  WHERE m.ticket_id = :ticket_id AND NOT m.deleted AND m.id IS DISTINCT FROM :without)"
    "  AS messages_created_at, "
    "(SELECT array_agg(m.sentiment_score ORDER BY m.created_at, m.id) FROM messages m"
    "  WHERE m.ticket_id = :ticket_id AND NOT m.deleted AND m.id IS DISTINCT FROM :without)"
    "  AS messages_sentiment_score"
)


# The old values come from the statement's snapshot: two ticket events of one customer racing
# may misjudge "changed" for the customer's other tickets, which the periodic recalculation
# (reading the customer afresh) heals within one interval.
_APPLY_CUSTOMER_SNAPSHOT = sa.text(
    "WITH old AS (SELECT lifetime_value, churn_risk FROM customers WHERE id = :customer_id), "  # noqa: S608
    "upserted AS ("
    "  INSERT INTO customers (id, lifetime_value, churn_risk, snapshot_at)"
    "  VALUES (:customer_id, :lifetime_value, :churn_risk, :snapshot_at)"
    "  ON CONFLICT (id) DO UPDATE SET lifetime_value = excluded.lifetime_value,"
    "    churn_risk = excluded.churn_risk, snapshot_at = excluded.snapshot_at"
    "  WHERE customers.fetched_at IS NULL"
    "    AND (customers.snapshot_at IS NULL OR customers.snapshot_at < excluded.snapshot_at)"
    "  RETURNING lifetime_value, churn_risk) "
    "SELECT (SELECT lifetime_value FROM old) AS old_lifetime_value,"
    "  (SELECT churn_risk FROM old) AS old_churn_risk,"
    "  (SELECT lifetime_value FROM upserted) AS new_lifetime_value,"
    "  (SELECT churn_risk FROM upserted) AS new_churn_risk, " + _CONVERSATION_ARRAYS
)
_UPSERT_TICKET = sa.text(
    "INSERT INTO tickets (id, customer_id, subject, status, priority, assigned_agent_id,"
    "  created_at, version, waiting_since, customer_sentiment) "
    "VALUES (:id, :customer_id, :subject, :status, :priority, :assigned_agent_id,"
    "  :created_at, :version, :waiting_since, :customer_sentiment) "
    "ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id,"
    "  subject = excluded.subject, status = excluded.status, priority = excluded.priority,"
    "  assigned_agent_id = excluded.assigned_agent_id, created_at = excluded.created_at,"
    "  version = excluded.version, waiting_since = excluded.waiting_since,"
    "  customer_sentiment = excluded.customer_sentiment "
    "WHERE tickets.version < excluded.version AND NOT tickets.deleted "
    "RETURNING (xmax = 0) AS inserted"
)
_MESSAGE_VALUES = (
    "INSERT INTO messages (id, ticket_id, from_agent, created_at, sentiment_score, content,"
    "  version, deleted) "
    "VALUES (:without, :ticket_id, :from_agent, :created_at, :sentiment_score, :content,"
    "  :version, :deleted) "
)
_UPSERT_MESSAGE = sa.text(
    "WITH upserted AS (" + _MESSAGE_VALUES + "ON CONFLICT (id) DO UPDATE SET"  # noqa: S608
    "  ticket_id = excluded.ticket_id, from_agent = excluded.from_agent,"
    "  created_at = excluded.created_at, sentiment_score = excluded.sentiment_score,"
    "  content = excluded.content, version = excluded.version "
    "WHERE messages.version < excluded.version AND NOT messages.deleted RETURNING id) "
    "SELECT (SELECT count(*) FROM upserted) AS applied, " + _CONVERSATION_ARRAYS
)
_DELETE_MESSAGE = sa.text(
    "WITH upserted AS (" + _MESSAGE_VALUES + "ON CONFLICT (id) DO UPDATE SET deleted = true,"  # noqa: S608
    "  content = '', version = greatest(messages.version, excluded.version) "
    "WHERE NOT messages.deleted RETURNING id) "
    "SELECT (SELECT count(*) FROM upserted) AS applied, " + _CONVERSATION_ARRAYS
)
_REFRESH_CONVERSATION = sa.text(
    "UPDATE tickets SET customer_sentiment = :customer_sentiment,"
    "  waiting_since = CASE WHEN :has_messages THEN CAST(:waiting_since AS timestamptz)"
    "    ELSE created_at END "
    "WHERE id = :id AND NOT deleted "
    "RETURNING id, priority, status, waiting_since, customer_sentiment,"
    "  coalesce((SELECT lifetime_value FROM customers c WHERE c.id = tickets.customer_id), 0.0)"
    "    AS lifetime_value,"
    "  coalesce((SELECT churn_risk FROM customers c WHERE c.id = tickets.customer_id), 0.0)"
    "    AS churn_risk"
)


def _messages_from(row: Any) -> list[domain.ConversationMessage]:
    return [
        domain.ConversationMessage(*fields)
        for fields in zip(
            row.messages_from_agent or [],
            row.messages_created_at or [],
            row.messages_sentiment_score or [],
            strict=True,
        )
    ]


def _conversation_message(message: MessageData) -> domain.ConversationMessage:
    return domain.ConversationMessage(
        message.from_agent, message.created_at, message.sentiment_score
    )


async def _apply_customer_snapshot(
    session: AsyncSession, ticket: TicketData
) -> tuple[CustomerValues, list[domain.ConversationMessage]]:
    """Seed the customer from a ticket's snapshot until intelligence arrives (then intelligence
    owns it; among snapshots the newest, by the ticket's `updated_at`, wins). Reads the ticket's
    messages in the same round trip."""
    snapshot = ticket.customer
    params = {
        "customer_id": ticket.customer_id,
        "lifetime_value": snapshot.lifetime_value,
        "churn_risk": snapshot.churn_risk,
        "snapshot_at": ticket.updated_at,
        "ticket_id": ticket.id,
        "without": None,
    }
    row = (await session.execute(_APPLY_CUSTOMER_SNAPSHOT, params)).one()
    messages = _messages_from(row)
    if row.new_lifetime_value is not None:
        changed = row.old_lifetime_value is not None and (
            row.old_lifetime_value,
            row.old_churn_risk,
        ) != (row.new_lifetime_value, row.new_churn_risk)
        return CustomerValues(row.new_lifetime_value, row.new_churn_risk, changed), messages
    if row.old_lifetime_value is not None:
        return CustomerValues(row.old_lifetime_value, row.old_churn_risk, False), messages
    current = (  # created by a concurrent transaction after this statement's snapshot
        await session.execute(
            sa.select(Customer.lifetime_value, Customer.churn_risk).where(
                Customer.id == ticket.customer_id
            )
        )
    ).one()
    return CustomerValues(current.lifetime_value, current.churn_risk, False), messages


async def _upsert_ticket(
    session: AsyncSession, ticket: TicketData, conversation: domain.Conversation
) -> bool | None:
    """Apply a ticket version if it is newer; True when inserted, False when updated, None
    when stale (or deleted)."""
    row = (
        await session.execute(
            _UPSERT_TICKET,
            {
                "id": ticket.id,
                "customer_id": ticket.customer_id,
                "subject": ticket.subject,
                "status": ticket.status.value,
                "priority": ticket.priority.value,
                "assigned_agent_id": ticket.assigned_agent_id,
                "created_at": ticket.created_at,
                "version": ticket.version,
                "waiting_since": conversation.waiting_since,
                "customer_sentiment": conversation.customer_sentiment,
            },
        )
    ).first()
    return None if row is None else bool(row.inserted)


async def _upsert_message(
    session: AsyncSession, message: MessageData, *, deleted: bool
) -> tuple[bool, list[domain.ConversationMessage]]:
    """Apply a message version if newer (a deletion always); returns whether it applied and,
    in the same round trip, the ticket's other live messages."""
    row = (
        await session.execute(
            _DELETE_MESSAGE if deleted else _UPSERT_MESSAGE,
            {
                "without": message.id,
                "ticket_id": message.ticket_id,
                "from_agent": message.from_agent,
                "created_at": message.created_at,
                "sentiment_score": message.sentiment_score,
                "content": "" if deleted else message.content,
                "version": message.version,
                "deleted": deleted,
            },
        )
    ).one()
    return bool(row.applied), _messages_from(row)


async def _refresh_conversation(
    session: AsyncSession, ticket_id: str, messages: list[domain.ConversationMessage]
) -> service.Scorable | None:
    """Store the ticket's wait origin and sentiment for these messages; returns what the score
    needs (None when the ticket is unknown or deleted)."""
    # the creation time only matters without messages, and then the row has it
    conversation = domain.summarize_conversation(datetime.min, messages)
    row = (
        await session.execute(
            _REFRESH_CONVERSATION,
            {
                "id": ticket_id,
                "has_messages": bool(messages),
                "waiting_since": conversation.waiting_since if messages else None,
                "customer_sentiment": conversation.customer_sentiment,
            },
        )
    ).first()
    return None if row is None else service.Scorable(**row._mapping)


# --- the breakdown ----------------------------------------------------------------------------
