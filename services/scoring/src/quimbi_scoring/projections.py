"""What other services' events maintain here: the ticket, message and customer copies the
score needs, and the rescoring of what the events touched (in the consumer's unit of work).

Set-based: the handlers queue a consumer batch's events (`queue_*`); when the unit of work
ends (its before-commit step) the batch is applied with one statement per kind of change,
whatever its size: advisory locks on its tickets, the customers (ticket snapshots, then
intelligence), the messages, the tickets, the tombstones, the conversation facts (one read of
the touched tickets' messages, one write of those that moved), then one rescore of every
ticket whose inputs moved (one read, one score write, one outbox insert). Every statement is
guarded by versions (customers: `fetched_at`, then the snapshot's `updated_at`), so the order
of the batch's topics does not matter, and replays change nothing.

Locks are taken in the order ticket (advisory) → customer → message → ticket row → score, in
id order within each; the periodic recalculation (service.py) never waits for a lock and
skips rows a handler holds or rewrote.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from quimbi_common import tracing
from quimbi_common.catchup import CHANNEL
from quimbi_common.events import (
    CustomerIntelligenceData,
    MessageData,
    TicketData,
    TicketDeletedData,
)
from quimbi_common.uow import UnitOfWork

from . import domain, service
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """A unit of work's queued events, each kept at its newest version."""

    settings: Settings
    now: datetime
    tickets: dict[str, TicketData] = field(default_factory=dict)
    deletions: dict[str, TicketDeletedData] = field(default_factory=dict)
    messages: dict[str, MessageData] = field(default_factory=dict)
    message_deletions: dict[str, MessageData] = field(default_factory=dict)
    intelligence: dict[str, CustomerIntelligenceData] = field(default_factory=dict)
    causes: dict[str, Any] = field(default_factory=dict)  # per ticket, the span of its first cause

    def note_cause(self, ticket_id: str) -> None:
        if ticket_id not in self.causes and (span := tracing.cause(ticket_id)) is not None:
            self.causes[ticket_id] = span


_BATCH = "quimbi_scoring.batch"


def _batch(unit: UnitOfWork, settings: Settings, now: datetime) -> _Batch:
    """This unit's batch, applied once when the unit ends (registered on first use)."""
    session = unit.session
    transaction = session.sync_session.get_transaction()
    owner, batch = session.info.get(_BATCH, (None, None))
    if owner is not transaction or batch is None:
        batch = _Batch(settings, now)
        session.info[_BATCH] = (transaction, batch)
        unit.before_commit(_BATCH, lambda: _apply(unit, batch))
    batch.now = now  # the time of the last event's handling
    return batch


def queue_tickets(
    unit: UnitOfWork, tickets: Iterable[TicketData], settings: Settings, now: datetime
) -> None:
    """ticket.created / ticket.updated: the newest version replaces the projection."""
    batch = _batch(unit, settings, now)
    for ticket in tickets:
        held = batch.tickets.get(ticket.id)
        if held is None or held.version < ticket.version:
            batch.tickets[ticket.id] = ticket
        batch.note_cause(ticket.id)


def queue_ticket_deletions(
    unit: UnitOfWork, deletions: Iterable[TicketDeletedData], settings: Settings, now: datetime
) -> None:
    """ticket.deleted is final whatever its version: a tombstone, the rest dropped."""
    batch = _batch(unit, settings, now)
    for deleted in deletions:
        held = batch.deletions.get(deleted.id)
        if held is None or held.version < deleted.version:
            batch.deletions[deleted.id] = deleted


def queue_messages(
    unit: UnitOfWork,
    messages: Iterable[MessageData],
    settings: Settings,
    now: datetime,
    *,
    deleted: bool = False,
) -> None:
    """message.added / .updated (newer versions win) and .deleted (final)."""
    batch = _batch(unit, settings, now)
    into = batch.message_deletions if deleted else batch.messages
    for message in messages:
        held = into.get(message.id)
        if held is None or held.version < message.version:
            into[message.id] = message
        batch.note_cause(message.ticket_id)


def queue_customer_intelligence(
    unit: UnitOfWork,
    intelligence: Iterable[CustomerIntelligenceData],
    settings: Settings,
    now: datetime,
) -> None:
    """customer.intelligence_updated: per customer the newest `fetched_at` wins."""
    batch = _batch(unit, settings, now)
    for item in intelligence:
        held = batch.intelligence.get(item.customer_id)
        if held is None or item.fetched_at >= held.fetched_at:
            batch.intelligence[item.customer_id] = item


# One event at a time (tests, tools): the same queue, applied when the unit ends.


async def apply_ticket(
    unit: UnitOfWork, ticket: TicketData, settings: Settings, now: datetime
) -> None:
    queue_tickets(unit, [ticket], settings, now)


async def apply_message(
    unit: UnitOfWork,
    message: MessageData,
    settings: Settings,
    now: datetime,
    *,
    deleted: bool = False,
) -> None:
    queue_messages(unit, [message], settings, now, deleted=deleted)


async def apply_customer_intelligence(
    unit: UnitOfWork,
    batch: Sequence[CustomerIntelligenceData],
    settings: Settings,
    now: datetime,
) -> None:
    queue_customer_intelligence(unit, batch, settings, now)


# --- the batch, applied ---------------------------------------------------------------------


def _unnest(*columns: tuple[str, str]) -> str:
    """`unnest(CAST(:a AS text[]), ...)`: one row per element of the bound arrays."""
    return "unnest(" + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns) + ")"


_LOCK_TICKETS = sa.text(
    "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) "
    "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS i(id, n) ORDER BY n"
)
# Seed customers from ticket snapshots until intelligence arrives (then intelligence owns
# them; among snapshots the newest, by the ticket's `updated_at`, wins). Returns the customers
# that existed and whose values moved: their other tickets are rescored too. The old values
# come from the statement's snapshot: two batches of one customer racing may misjudge
# "moved", which the periodic recalculation (reading the customer afresh) heals.
_APPLY_SNAPSHOTS = sa.text(
    "WITH input AS (SELECT * FROM "  # noqa: S608
    + _unnest(
        ("customer_ids", "text"),
        ("lifetime_values", "float8"),
        ("churn_risks", "float8"),
        ("snapshot_at", "timestamptz"),
    )
    + " AS i(id, lifetime_value, churn_risk, snapshot_at)), "
    "old AS (SELECT c.id, c.lifetime_value, c.churn_risk FROM customers c JOIN input USING (id)), "
    "upserted AS ("
    "  INSERT INTO customers (id, lifetime_value, churn_risk, snapshot_at)"
    "  SELECT * FROM input ORDER BY id"
    "  ON CONFLICT (id) DO UPDATE SET lifetime_value = excluded.lifetime_value,"
    "    churn_risk = excluded.churn_risk, snapshot_at = excluded.snapshot_at"
    "  WHERE customers.fetched_at IS NULL"
    "    AND (customers.snapshot_at IS NULL OR customers.snapshot_at < excluded.snapshot_at)"
    "  RETURNING id, lifetime_value, churn_risk) "
    "SELECT u.id FROM upserted u JOIN old o USING (id)"
    " WHERE (o.lifetime_value, o.churn_risk) IS DISTINCT FROM (u.lifetime_value, u.churn_risk)"
)
_APPLY_INTELLIGENCE = sa.text(
    "INSERT INTO customers (id, lifetime_value, churn_risk, fetched_at) "  # noqa: S608
    "SELECT * FROM "
    + _unnest(
        ("ids", "text"),
        ("lifetime_values", "float8"),
        ("churn_risks", "float8"),
        ("fetched_at", "timestamptz"),
    )
    + " ON CONFLICT (id) DO UPDATE SET lifetime_value = excluded.lifetime_value, "
    "churn_risk = excluded.churn_risk, fetched_at = excluded.fetched_at "
    "WHERE customers.fetched_at IS NULL OR customers.fetched_at < excluded.fetched_at "
    "RETURNING id"
)
_TICKETS_OF_CUSTOMERS = sa.text(
    "SELECT id FROM tickets WHERE customer_id = ANY(CAST(:ids AS text[])) AND NOT deleted"
)
_MESSAGE_COLUMNS = (
    ("ids", "text"),
    ("ticket_ids", "text"),
    ("from_agent", "boolean"),
    ("created_at", "timestamptz"),
    ("sentiment_scores", "float8"),
    ("contents", "text"),
    ("versions", "int"),
)
_MESSAGE_ROWS = (
    "INSERT INTO messages (id, ticket_id, from_agent, created_at, sentiment_score, content,"  # noqa: S608
    "  version, deleted) "
    "SELECT *, CAST(:deleted AS boolean) FROM " + _unnest(*_MESSAGE_COLUMNS) + " AS m ORDER BY 1 "
)
_UPSERT_MESSAGES = sa.text(
    _MESSAGE_ROWS + "ON CONFLICT (id) DO UPDATE SET"
    "  ticket_id = excluded.ticket_id, from_agent = excluded.from_agent,"
    "  created_at = excluded.created_at, sentiment_score = excluded.sentiment_score,"
    "  content = excluded.content, version = excluded.version "
    "WHERE messages.version < excluded.version AND NOT messages.deleted "
    "RETURNING ticket_id"
)
_DELETE_MESSAGES = sa.text(
    _MESSAGE_ROWS + "ON CONFLICT (id) DO UPDATE SET deleted = true,"
    "  content = '', version = greatest(messages.version, excluded.version) "
    "WHERE NOT messages.deleted RETURNING ticket_id"
)
# A new row waits from its creation with neutral sentiment until the conversation step below
# reads its messages (some may have arrived before it).
_UPSERT_TICKETS = sa.text(
    "INSERT INTO tickets (id, customer_id, subject, status, priority, assigned_agent_id,"  # noqa: S608
    "  created_at, version, waiting_since, customer_sentiment) "
    "SELECT id, customer_id, subject, status, priority, assigned_agent_id, created_at,"
    "  version, created_at, 0.5 FROM "
    + _unnest(
        ("ids", "text"),
        ("customer_ids", "text"),
        ("subjects", "text"),
        ("statuses", "text"),
        ("priorities", "text"),
        ("assigned_agent_ids", "text"),
        ("created_at", "timestamptz"),
        ("versions", "int"),
    )
    + " AS t(id, customer_id, subject, status, priority, assigned_agent_id, created_at, version)"
    " ORDER BY id "
    "ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id,"
    "  subject = excluded.subject, status = excluded.status, priority = excluded.priority,"
    "  assigned_agent_id = excluded.assigned_agent_id, created_at = excluded.created_at,"
    "  version = excluded.version "
    "WHERE tickets.version < excluded.version AND NOT tickets.deleted "
    "RETURNING id, (xmax = 0) AS inserted"
)
_TOMBSTONES = sa.text(
    "INSERT INTO tickets (id, customer_id, subject, status, priority, created_at, version,"  # noqa: S608
    "  deleted) "
    "SELECT id, '', '', 'closed', 'normal', deleted_at, version, true FROM "
    + _unnest(("ids", "text"), ("deleted_at", "timestamptz"), ("versions", "int"))
    + " AS d(id, deleted_at, version) ORDER BY id "
    "ON CONFLICT (id) DO UPDATE SET deleted = true,"
    "  version = greatest(tickets.version, excluded.version)"
)
_DROP_SCORES = sa.text("DELETE FROM ticket_scores WHERE ticket_id = ANY(CAST(:ids AS text[]))")
_DROP_MESSAGES = sa.text("DELETE FROM messages WHERE ticket_id = ANY(CAST(:ids AS text[]))")
# The live tickets' conversations, in conversation order (arrays are NULL without messages).
_CONVERSATIONS = sa.text(
    "SELECT t.id, t.created_at, t.waiting_since, t.customer_sentiment,"
    "  array_agg(m.from_agent ORDER BY m.created_at, m.id) FILTER (WHERE m.id IS NOT NULL)"
    "    AS from_agent,"
    "  array_agg(m.created_at ORDER BY m.created_at, m.id) FILTER (WHERE m.id IS NOT NULL)"
    "    AS created_at_list,"
    "  array_agg(m.sentiment_score ORDER BY m.created_at, m.id) FILTER (WHERE m.id IS NOT NULL)"
    "    AS sentiment_scores "
    "FROM tickets t LEFT JOIN messages m ON m.ticket_id = t.id AND NOT m.deleted "
    "WHERE t.id = ANY(CAST(:ids AS text[])) AND NOT t.deleted GROUP BY t.id"
)
_WRITE_CONVERSATIONS = sa.text(
    "UPDATE tickets t SET waiting_since = c.waiting_since,"  # noqa: S608
    "  customer_sentiment = c.customer_sentiment FROM "
    + _unnest(("ids", "text"), ("waiting_since", "timestamptz"), ("sentiments", "float8"))
    + " AS c(id, waiting_since, customer_sentiment) WHERE t.id = c.id"
)
_NOTIFY_APPLIED = sa.text(
    "SELECT count(pg_notify(:channel, key)) FROM unnest(CAST(:keys AS text[])) AS k(key)"
)


async def _apply(unit: UnitOfWork, batch: _Batch) -> None:
    """Apply a unit's queued events (see the module's docstring), then rescore."""
    session = unit.session
    touched = sorted(
        {
            *batch.tickets,
            *batch.deletions,
            *(m.ticket_id for m in batch.messages.values()),
            *(m.ticket_id for m in batch.message_deletions.values()),
        }
    )
    if touched:
        await session.execute(_LOCK_TICKETS, {"ids": touched})
    moved_customers = await _apply_customers(unit, batch)
    reconsider = set(await _apply_messages(unit, batch.messages, deleted=False))
    reconsider.update(await _apply_messages(unit, batch.message_deletions, deleted=True))
    rescore: set[str] = set()
    inserted: set[str] = set()
    if batch.tickets:
        rows = await session.execute(_UPSERT_TICKETS, _ticket_columns(batch.tickets.values()))
        for row in rows:
            rescore.add(row.id)
            if row.inserted:
                inserted.add(row.id)
    if batch.deletions:
        await _apply_deletions(unit, batch.deletions.values())
    reconsider.update(rescore)
    reconsider.difference_update(batch.deletions)
    rescore.update(await _refresh_conversations(unit, sorted(reconsider)))
    if moved_customers:
        rows = await session.execute(_TICKETS_OF_CUSTOMERS, {"ids": moved_customers})
        rescore.update(row.id for row in rows)
    rescore.difference_update(batch.deletions)
    if batch.tickets:  # requests waiting for these tickets look again once this commits
        await session.execute(_NOTIFY_APPLIED, {"channel": CHANNEL, "keys": sorted(batch.tickets)})
    if rescore:
        tickets = await service.load_tickets(session, sorted(rescore))
        with tracing.causes(batch.causes):
            await service.score_tickets(unit, batch.settings, batch.now, tickets, unscored=inserted)


async def _apply_customers(unit: UnitOfWork, batch: _Batch) -> list[str]:
    """Ticket snapshots, then intelligence (which wins); returns the customers whose values
    moved for tickets this batch did not bring."""
    session = unit.session
    moved: set[str] = set()
    snapshots: dict[str, TicketData] = {}
    for ticket in batch.tickets.values():
        held = snapshots.get(ticket.customer_id)
        if held is None or held.updated_at < ticket.updated_at:
            snapshots[ticket.customer_id] = ticket
    if snapshots:
        ordered = [snapshots[customer_id] for customer_id in sorted(snapshots)]
        rows = await session.execute(
            _APPLY_SNAPSHOTS,
            {
                "customer_ids": [t.customer_id for t in ordered],
                "lifetime_values": [t.customer.lifetime_value for t in ordered],
                "churn_risks": [t.customer.churn_risk for t in ordered],
                "snapshot_at": [t.updated_at for t in ordered],
            },
        )
        moved.update(row.id for row in rows)
    if batch.intelligence:
        fetched = [batch.intelligence[customer_id] for customer_id in sorted(batch.intelligence)]
        changed = await session.scalars(
            _APPLY_INTELLIGENCE,
            {
                "ids": [r.customer_id for r in fetched],
                "lifetime_values": [r.lifetime_value for r in fetched],
                "churn_risks": [r.churn_risk for r in fetched],
                "fetched_at": [r.fetched_at for r in fetched],
            },
        )
        moved.update(changed)
    return sorted(moved)


async def _apply_messages(
    unit: UnitOfWork, messages: dict[str, MessageData], *, deleted: bool
) -> list[str]:
    """Upsert (or tombstone) messages newer than held; returns their tickets."""
    if not messages:
        return []
    ordered = [messages[message_id] for message_id in sorted(messages)]
    rows = await unit.session.execute(
        _DELETE_MESSAGES if deleted else _UPSERT_MESSAGES,
        {
            "ids": [m.id for m in ordered],
            "ticket_ids": [m.ticket_id for m in ordered],
            "from_agent": [m.from_agent for m in ordered],
            "created_at": [m.created_at for m in ordered],
            "sentiment_scores": [m.sentiment_score for m in ordered],
            "contents": ["" if deleted else m.content for m in ordered],
            "versions": [m.version for m in ordered],
            "deleted": deleted,
        },
    )
    return [row.ticket_id for row in rows]


def _ticket_columns(tickets: Iterable[TicketData]) -> dict[str, list[Any]]:
    ordered = sorted(tickets, key=lambda t: t.id)
    return {
        "ids": [t.id for t in ordered],
        "customer_ids": [t.customer_id for t in ordered],
        "subjects": [t.subject for t in ordered],
        "statuses": [t.status.value for t in ordered],
        "priorities": [t.priority.value for t in ordered],
        "assigned_agent_ids": [t.assigned_agent_id for t in ordered],
        "created_at": [t.created_at for t in ordered],
        "versions": [t.version for t in ordered],
    }


async def _apply_deletions(unit: UnitOfWork, deletions: Iterable[TicketDeletedData]) -> None:
    ordered = sorted(deletions, key=lambda d: d.id)
    ids = [d.id for d in ordered]
    session = unit.session
    await session.execute(
        _TOMBSTONES,
        {
            "ids": ids,
            "deleted_at": [d.deleted_at for d in ordered],
            "versions": [d.version for d in ordered],
        },
    )
    await session.execute(_DROP_SCORES, {"ids": ids})
    await session.execute(_DROP_MESSAGES, {"ids": ids})


async def _refresh_conversations(unit: UnitOfWork, ticket_ids: Sequence[str]) -> list[str]:
    """Store the wait origin and customer sentiment of these tickets from their messages
    (computed by `domain`); returns the tickets whose values moved."""
    if not ticket_ids:
        return []
    session = unit.session
    moved: list[tuple[str, domain.Conversation]] = []
    for row in await session.execute(_CONVERSATIONS, {"ids": list(ticket_ids)}):
        messages = [
            domain.ConversationMessage(*fields)
            for fields in zip(
                row.from_agent or [],
                row.created_at_list or [],
                row.sentiment_scores or [],
                strict=True,
            )
        ]
        conversation = domain.summarize_conversation(row.created_at, messages)
        held = (row.waiting_since, row.customer_sentiment)
        if held != (conversation.waiting_since, conversation.customer_sentiment):
            moved.append((row.id, conversation))
    if moved:
        await session.execute(
            _WRITE_CONVERSATIONS,
            {
                "ids": [ticket_id for ticket_id, _ in moved],
                "waiting_since": [c.waiting_since for _, c in moved],
                "sentiments": [c.customer_sentiment for _, c in moved],
            },
        )
    return [ticket_id for ticket_id, _ in moved]
