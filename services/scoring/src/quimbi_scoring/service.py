"""Scoring's use cases: apply an event to the projections, rescore what it touched, recompute
due tickets, explain a score.

Locks are always taken in the order customer → ticket → score, so handlers on different
topics never interleave on one score; the periodic recalculation (recalculation.py) never
waits for a lock and skips rows a handler holds or rewrote.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.errors import NotFoundError
from quimbi_common.events import (
    CustomerIntelligenceData,
    MessageData,
    ScoreParts,
    TicketData,
    TicketDeletedData,
    TicketScoredData,
)

from . import domain
from .models import Customer, Message, Ticket, TicketScore
from .outbox import add_events
from .schemas import PartBreakdown, ScoreBreakdown
from .settings import Settings

log = logging.getLogger(__name__)
TICKETS = cast(sa.Table, Ticket.__table__)
MESSAGES = cast(sa.Table, Message.__table__)
CUSTOMERS = cast(sa.Table, Customer.__table__)
SOURCE = "scoring"
SCORED = "ticket.scored"

# --- projections ----------------------------------------------------------------------------


async def apply_ticket(
    session: AsyncSession, ticket: TicketData, settings: Settings, now: datetime
) -> None:
    """ticket.created / ticket.updated: newer versions replace the projection, then rescore."""
    customer_changed = await _apply_customer_snapshot(session, ticket)
    table = TICKETS
    insert = pg_insert(table).values(
        id=ticket.id,
        customer_id=ticket.customer_id,
        subject=ticket.subject,
        status=ticket.status.value,
        priority=ticket.priority.value,
        assigned_agent_id=ticket.assigned_agent_id,
        created_at=ticket.created_at,
        version=ticket.version,
    )
    excluded = insert.excluded
    upsert = insert.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={
            name: excluded[name]
            for name in (
                "customer_id",
                "subject",
                "status",
                "priority",
                "assigned_agent_id",
                "created_at",
                "version",
            )
        },
        where=(table.c.version < excluded.version) & ~table.c.deleted,
    ).returning(table.c.id)
    applied = (await session.execute(upsert)).first() is not None
    if applied:
        await _refresh_conversation(session, ticket.id)
    if customer_changed:
        await _rescore(session, settings, now, customer_id=ticket.customer_id)
    elif applied:
        await _rescore(session, settings, now, ticket_ids=[ticket.id])


async def apply_ticket_deleted(session: AsyncSession, deleted: TicketDeletedData) -> None:
    """ticket.deleted is final whatever its version: keep a tombstone, drop the rest."""
    table = TICKETS
    insert = pg_insert(table).values(
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
            index_elements=[table.c.id],
            set_={
                "deleted": True,
                "version": sa.func.greatest(table.c.version, insert.excluded.version),
            },
        )
    )
    await session.execute(sa.delete(TicketScore).where(TicketScore.ticket_id == deleted.id))
    await session.execute(sa.delete(Message).where(Message.ticket_id == deleted.id))


async def apply_message(
    session: AsyncSession,
    message: MessageData,
    settings: Settings,
    now: datetime,
    *,
    deleted: bool = False,
) -> None:
    """message.added / .updated (newer versions win) and .deleted (final), then rescore."""
    table = MESSAGES
    insert = pg_insert(table).values(
        id=message.id,
        ticket_id=message.ticket_id,
        from_agent=message.from_agent,
        created_at=message.created_at,
        sentiment_score=message.sentiment_score,
        content="" if deleted else message.content,
        version=message.version,
        deleted=deleted,
    )
    excluded = insert.excluded
    if deleted:
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={
                "deleted": True,
                "content": "",
                "version": sa.func.greatest(table.c.version, excluded.version),
            },
            where=~table.c.deleted,
        )
    else:
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={
                name: excluded[name]
                for name in (
                    "ticket_id",
                    "from_agent",
                    "created_at",
                    "sentiment_score",
                    "content",
                    "version",
                )
            },
            where=(table.c.version < excluded.version) & ~table.c.deleted,
        )
    applied = (await session.execute(upsert.returning(table.c.id))).first() is not None
    if applied and await _refresh_conversation(session, message.ticket_id):
        await _rescore(session, settings, now, ticket_ids=[message.ticket_id])


async def apply_customer_intelligence(
    session: AsyncSession, intelligence: CustomerIntelligenceData, settings: Settings, now: datetime
) -> None:
    """customer.intelligence_updated: the newest `fetched_at` wins; rescore their tickets."""
    table = CUSTOMERS
    insert = pg_insert(table).values(
        id=intelligence.customer_id,
        lifetime_value=intelligence.lifetime_value,
        churn_risk=intelligence.churn_risk,
        fetched_at=intelligence.fetched_at,
    )
    excluded = insert.excluded
    upsert = insert.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={
            "lifetime_value": excluded.lifetime_value,
            "churn_risk": excluded.churn_risk,
            "fetched_at": excluded.fetched_at,
        },
        where=table.c.fetched_at.is_(None) | (table.c.fetched_at < excluded.fetched_at),
    ).returning(table.c.id)
    if (await session.execute(upsert)).first() is not None:
        await _rescore(session, settings, now, customer_id=intelligence.customer_id)


async def _apply_customer_snapshot(session: AsyncSession, ticket: TicketData) -> bool:
    """Seed the customer from a ticket's snapshot until intelligence arrives; True when its
    value or churn risk changed (so every ticket of the customer needs rescoring)."""
    snapshot = ticket.customer
    current = (
        await session.execute(
            sa.select(
                Customer.lifetime_value,
                Customer.churn_risk,
                Customer.fetched_at,
                Customer.snapshot_at,
            )
            .where(Customer.id == ticket.customer_id)
            .with_for_update()
        )
    ).first()
    if current is None:
        await session.execute(
            pg_insert(CUSTOMERS)
            .values(
                id=ticket.customer_id,
                lifetime_value=snapshot.lifetime_value,
                churn_risk=snapshot.churn_risk,
                snapshot_at=ticket.updated_at,
            )
            .on_conflict_do_nothing()
        )
        return False  # a new customer: only this ticket can be scored against it
    if current.fetched_at is not None:
        return False
    if current.snapshot_at is not None and current.snapshot_at >= ticket.updated_at:
        return False
    await session.execute(
        sa.update(Customer)
        .where(Customer.id == ticket.customer_id)
        .values(
            lifetime_value=snapshot.lifetime_value,
            churn_risk=snapshot.churn_risk,
            snapshot_at=ticket.updated_at,
        )
    )
    return (current.lifetime_value, current.churn_risk) != (
        snapshot.lifetime_value,
        snapshot.churn_risk,
    )


async def _refresh_conversation(session: AsyncSession, ticket_id: str) -> bool:
    """Recompute the ticket's waiting time origin and sentiment from its messages (locking the
    ticket row); False when the ticket is unknown or deleted."""
    created_at = await session.scalar(
        sa.select(Ticket.created_at)
        .where(Ticket.id == ticket_id, ~Ticket.deleted)
        .with_for_update()
    )
    if created_at is None:
        return False
    rows = await session.execute(
        sa.select(Message.from_agent, Message.created_at, Message.sentiment_score)
        .where(Message.ticket_id == ticket_id, ~Message.deleted)
        .order_by(Message.created_at, Message.id)
    )
    conversation = domain.summarize_conversation(
        created_at,
        [domain.ConversationMessage(r.from_agent, r.created_at, r.sentiment_score) for r in rows],
    )
    await session.execute(
        sa.update(Ticket)
        .where(Ticket.id == ticket_id)
        .values(
            waiting_since=conversation.waiting_since,
            customer_sentiment=conversation.customer_sentiment,
        )
    )
    return True


# --- scoring --------------------------------------------------------------------------------


_RESCORE = (
    sa.select(
        Ticket.id,
        Ticket.priority,
        Ticket.status,
        Ticket.waiting_since,
        Ticket.customer_sentiment,
        sa.func.coalesce(Customer.lifetime_value, 0.0).label("lifetime_value"),
        sa.func.coalesce(Customer.churn_risk, 0.0).label("churn_risk"),
    )
    .select_from(sa.outerjoin(Ticket, Customer, Customer.id == Ticket.customer_id))
    .where(~Ticket.deleted)
)
_WRITE_SCORES = sa.text(
    "INSERT INTO ticket_scores "
    "(ticket_id, smart_score, parts, inputs, computed_at, version, revision) "
    "SELECT id, score, parts::jsonb, inputs::jsonb, :computed_at, version, 1 "
    "FROM unnest(CAST(:ids AS text[]), CAST(:scores AS float8[]), CAST(:parts AS text[]), "
    "CAST(:inputs AS text[]), CAST(:versions AS int[])) "
    "AS s(id, score, parts, inputs, version) "
    "ON CONFLICT (ticket_id) DO UPDATE SET smart_score = excluded.smart_score, "
    "parts = excluded.parts, inputs = excluded.inputs, computed_at = excluded.computed_at, "
    "version = excluded.version, revision = ticket_scores.revision + 1"
)


@dataclass(frozen=True)
class ScoredBatch:
    computed: int
    published: int


async def _rescore(
    session: AsyncSession,
    settings: Settings,
    now: datetime,
    *,
    ticket_ids: Sequence[str] | None = None,
    customer_id: str | None = None,
) -> ScoredBatch:
    """Recompute tickets in Python (the domain formula), holding their ticket rows and then
    their score rows, so a concurrent recalculation either finished first or skips them."""
    query = _RESCORE
    if customer_id is not None:
        query = query.where(Ticket.customer_id == customer_id)
    else:
        query = query.where(Ticket.id.in_(list(ticket_ids or [])))
    rows = (await session.execute(query.order_by(Ticket.id).with_for_update(of=Ticket))).all()
    if not rows:
        return ScoredBatch(0, 0)
    stored = {
        row.ticket_id: row
        for row in await session.execute(
            sa.select(TicketScore.ticket_id, TicketScore.smart_score, TicketScore.version)
            .where(TicketScore.ticket_id.in_([row.id for row in rows]))
            .order_by(TicketScore.ticket_id)
            .with_for_update()
        )
    }
    weights = settings.weights
    ids: list[str] = []
    scores: list[float] = []
    parts_json: list[str] = []
    inputs_json: list[str] = []
    versions: list[int] = []
    changed: list[TicketScoredData] = []
    for row in rows:
        inputs = domain.ScoreInputs(
            priority=TicketPriority(row.priority),
            status=TicketStatus(row.status),
            hours_waiting=domain.hours_waiting(row.waiting_since, now),
            customer_sentiment=row.customer_sentiment,
            lifetime_value=row.lifetime_value,
            churn_risk=row.churn_risk,
        )
        score = domain.compute_score(inputs, weights)
        parts = score.parts.as_dict()
        inputs_doc = _inputs_document(inputs, row.waiting_since)
        previous = stored.get(row.id)
        version = previous.version if previous else 0
        if previous is None or previous.smart_score != score.total:
            version += 1
            changed.append(
                TicketScoredData(
                    ticket_id=row.id,
                    smart_score=score.total,
                    parts=ScoreParts(**parts),
                    inputs=inputs_doc,
                    computed_at=now,
                    version=version,
                )
            )
        ids.append(row.id)
        scores.append(score.total)
        parts_json.append(json.dumps(parts))
        inputs_json.append(json.dumps(inputs_doc))
        versions.append(version)
    await session.execute(
        _WRITE_SCORES,
        {
            "computed_at": now,
            "ids": ids,
            "scores": scores,
            "parts": parts_json,
            "inputs": inputs_json,
            "versions": versions,
        },
    )
    await add_events(session, SCORED, changed, source=SOURCE)
    return ScoredBatch(len(rows), len(changed))


def _inputs_document(inputs: domain.ScoreInputs, waiting_since: datetime | None) -> dict[str, Any]:
    return {
        "priority": inputs.priority.value,
        "status": inputs.status.value,
        "waiting_since": waiting_since.isoformat() if waiting_since else None,
        "hours_waiting": domain.round_half_up(inputs.hours_waiting, domain.PART_DECIMALS),
        "customer_sentiment": domain.round_half_up(inputs.customer_sentiment, domain.PART_DECIMALS),
        "lifetime_value": inputs.lifetime_value,
        "churn_risk": inputs.churn_risk,
    }


# --- the breakdown ----------------------------------------------------------------------------

_BREAKDOWN = sa.text(
    "SELECT t.id, t.subject, t.status, t.priority, t.assigned_agent_id, "
    "s.smart_score, s.parts, s.inputs, s.computed_at, s.version "
    "FROM tickets t JOIN ticket_scores s ON s.ticket_id = t.id "
    "WHERE t.id = :id AND NOT t.deleted"
).columns(parts=JSONB, inputs=JSONB)


async def score_breakdown(
    session: AsyncSession,
    ticket_id: str,
    caller: Principal,
    topic_alerts: Sequence[str],
    settings: Settings,
) -> ScoreBreakdown:
    """Every part of the stored score with its inputs, plus the topic-alert boost if asked."""
    row = (await session.execute(_BREAKDOWN, {"id": ticket_id})).first()
    if row is None or not _may_see(caller, row.assigned_agent_id):
        raise NotFoundError(f"Ticket {ticket_id} not found")
    matched: list[str] = []
    if topic_alerts:
        contents = await session.scalars(
            sa.select(Message.content).where(Message.ticket_id == ticket_id, ~Message.deleted)
        )
        matched = domain.matched_topic_alerts(topic_alerts, [row.subject, *contents])
    weights = settings.weights
    boost = weights.topic_alert_boost if matched else 0.0
    parts = _part_breakdowns(row.parts, row.inputs, weights)
    parts["topic_alert"] = PartBreakdown(
        points=boost,
        weight=weights.topic_alert_boost,
        max_points=weights.topic_alert_boost,
        formula="TOPIC_ALERT_BOOST when a keyword appears in the subject or any message",
        inputs={"topic_alerts": list(topic_alerts), "matched": matched},
    )
    return ScoreBreakdown(
        ticket_id=row.id,
        status=TicketStatus(row.status),
        priority=TicketPriority(row.priority),
        smart_score=row.smart_score,
        topic_alert_boost=boost,
        total=domain.round_half_up(row.smart_score + boost, domain.SCORE_DECIMALS),
        matches_topic_alert=bool(matched),
        topic_alerts_active=list(topic_alerts),
        matched_topic_alerts=matched,
        parts=parts,
        computed_at=row.computed_at,
        version=row.version,
    )


def _may_see(caller: Principal, assigned_agent_id: str | None) -> bool:
    return caller.sees_all_tickets or (
        caller.agent_id is not None and caller.agent_id == assigned_agent_id
    )


def _part_breakdowns(
    parts: dict[str, float], inputs: dict[str, Any], weights: domain.Weights
) -> dict[str, PartBreakdown]:
    done = {"status": inputs["status"]}
    return {
        "priority": PartBreakdown(
            points=parts["priority"],
            weight=None,
            max_points=max(domain.PRIORITY_POINTS.values()),
            formula="low 0, normal 1, high 2.5, urgent 4",
            inputs={"priority": inputs["priority"], **done},
        ),
        "wait": PartBreakdown(
            points=parts["wait"],
            weight=weights.urgency,
            max_points=domain.WAIT_CAP,
            formula="min(3, SCORING_URGENCY_WEIGHT * log10(1 + hours_waiting))",
            inputs={
                "hours_waiting": inputs["hours_waiting"],
                "waiting_since": inputs["waiting_since"],
                **done,
            },
        ),
        "sentiment": PartBreakdown(
            points=parts["sentiment"],
            weight=domain.SENTIMENT_POINTS,
            max_points=domain.SENTIMENT_POINTS,
            formula="2 * clamp((0.5 - customer_sentiment) / 0.5, 0, 1)",
            inputs={"customer_sentiment": inputs["customer_sentiment"], **done},
        ),
        "value": PartBreakdown(
            points=parts["value"],
            weight=weights.value,
            max_points=weights.value,
            formula="SCORING_VALUE_WEIGHT * clamp(lifetime_value / SCORING_HIGH_VALUE_LTV, 0, 1)",
            inputs={
                "lifetime_value": inputs["lifetime_value"],
                "high_value_ltv": weights.high_value_ltv,
                **done,
            },
        ),
        "churn": PartBreakdown(
            points=parts["churn"],
            weight=weights.churn,
            max_points=weights.churn,
            formula="SCORING_CHURN_WEIGHT * clamp(churn_risk, 0, 1)",
            inputs={"churn_risk": inputs["churn_risk"], **done},
        ),
    }
