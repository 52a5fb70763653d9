"""The periodic recomputation: every open ticket at least every SCORING_RECALCULATION_INTERVAL.

Open tickets fall into RECALC_SLOTS slots (by a hash of the id). Each slot has a due time;
the slots' due times are spread over the interval, so the work arrives evenly rather than as
one burst. A
replica claims a due slot with FOR UPDATE SKIP LOCKED (several replicas split the slots; a
crashed one's slot stays due), recomputes its tickets, and moves the slot on by one period,
keeping its phase.

The recomputation is one SQL statement per slot: the §5 formula evaluated by PostgreSQL, and
only the tickets whose total changed at 2 decimals are written and come back to Python for
their ticket.scored event. Unchanged tickets cost no write at all. The formula is the one in
`domain.py` operation for operation, with the same rounding (`round_half_up`), so the handlers
(Python) and this pass (SQL) agree; a test holds them to it. A row an event handler holds or
rewrote since the statement read it is skipped (SKIP LOCKED + the `revision` guard): the
handler's result stands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from quimbi_common.enums import TicketPriority
from quimbi_common.events import ScoreParts, TicketScoredData
from quimbi_common.outbox import add_events
from quimbi_common.runtime import Runtime

from . import domain
from .models import RECALC_BUCKETS, RECALC_SLOTS
from .scores import SCORED, SOURCE
from .settings import Settings

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]

_CLAIM_DUE_SLOT = sa.text(
    "SELECT slot FROM recalc_slots WHERE due_at <= :now ORDER BY due_at LIMIT 1 "
    "FOR UPDATE SKIP LOCKED"
)
# Next due time: the first multiple of the period after now, from the slot's own phase.
_RESCHEDULE_SLOT = sa.text(
    "UPDATE recalc_slots SET due_at = due_at + make_interval(secs => :period) "
    "* (floor(extract(epoch FROM CAST(:now AS timestamptz) - due_at) / :period) + 1) "
    "WHERE slot = :slot"
).bindparams(sa.bindparam("period", type_=sa.Float))
# A slot due later than one period from now (a shorter interval was configured) comes forward.
_PULL_IN_SLOTS = sa.text(
    "UPDATE recalc_slots SET due_at = CAST(:now AS timestamptz) + make_interval(secs => :period) "
    "WHERE due_at > CAST(:now AS timestamptz) + make_interval(secs => :period)"
).bindparams(sa.bindparam("period", type_=sa.Float))
_FLOAT_PARAMS = (
    "p_low",
    "p_normal",
    "p_high",
    "p_urgent",
    "wait_cap",
    "urgency",
    "sentiment_points",
    "neutral",
    "value_weight",
    "high_value_ltv",
    "churn_weight",
)
_SLOT_PASS = (
    sa.text(
        "WITH inputs AS ("
        "  SELECT s.ticket_id, s.smart_score AS old_score, s.revision, t.priority, t.status,"
        "    t.waiting_since, t.customer_sentiment,"
        "    coalesce(c.lifetime_value, 0.0) AS lifetime_value,"
        "    coalesce(c.churn_risk, 0.0) AS churn_risk,"
        "    CASE WHEN t.waiting_since IS NULL THEN 0.0 ELSE greatest(0.0,"
        "      extract(epoch FROM CAST(:now AS timestamptz) - t.waiting_since)::float8 / 3600.0)"
        "    END AS hours_waiting"
        "  FROM tickets t JOIN ticket_scores s ON s.ticket_id = t.id"
        "  LEFT JOIN customers c ON c.id = t.customer_id"
        # the partial index ix_tickets_open_recalc_bucket serves this (models.OPEN_TICKET)
        "  WHERE t.recalc_bucket >= :first_bucket AND t.recalc_bucket < :end_bucket"
        "    AND NOT t.deleted AND t.status NOT IN ('resolved', 'closed')"
        "), parts AS ("
        "  SELECT *,"
        "    CASE priority WHEN 'low' THEN :p_low WHEN 'normal' THEN :p_normal"
        "      WHEN 'high' THEN :p_high ELSE :p_urgent END AS p_priority,"
        "    least(:wait_cap, :urgency * log(1.0 + hours_waiting)) AS p_wait,"
        "    :sentiment_points * least(1.0, greatest(0.0,"
        "      (:neutral - customer_sentiment) / :neutral)) AS p_sentiment,"
        "    :value_weight * least(1.0, greatest(0.0, lifetime_value / :high_value_ltv))"
        "      AS p_value,"
        "    :churn_weight * least(1.0, greatest(0.0, churn_risk)) AS p_churn"
        "  FROM inputs"
        "), scored AS ("
        "  SELECT *, round((p_priority + p_wait + p_sentiment + p_value + p_churn)::numeric, 2)"
        "    ::float8 AS score FROM parts"
        "), locked AS ("
        "  SELECT s.ticket_id FROM ticket_scores s JOIN scored ON scored.ticket_id = s.ticket_id"
        "  WHERE scored.score <> scored.old_score AND s.revision = scored.revision"
        "  FOR UPDATE OF s SKIP LOCKED"
        ") "
        "UPDATE ticket_scores s SET smart_score = sc.score, computed_at = :now,"
        "  version = s.version + 1, revision = s.revision + 1,"
        "  parts = jsonb_build_object("
        "    'priority', round(sc.p_priority::numeric, 4)::float8,"
        "    'wait', round(sc.p_wait::numeric, 4)::float8,"
        "    'sentiment', round(sc.p_sentiment::numeric, 4)::float8,"
        "    'value', round(sc.p_value::numeric, 4)::float8,"
        "    'churn', round(sc.p_churn::numeric, 4)::float8),"
        "  inputs = jsonb_build_object("
        "    'priority', sc.priority, 'status', sc.status,"
        "    'waiting_since', to_char(sc.waiting_since AT TIME ZONE 'UTC',"
        '      \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\'),'
        "    'hours_waiting', round(sc.hours_waiting::numeric, 4)::float8,"
        "    'customer_sentiment', round(sc.customer_sentiment::numeric, 4)::float8,"
        "    'lifetime_value', sc.lifetime_value, 'churn_risk', sc.churn_risk)"
        " FROM scored sc JOIN locked ON locked.ticket_id = sc.ticket_id"
        " WHERE s.ticket_id = sc.ticket_id"
        " RETURNING s.ticket_id, s.smart_score, s.parts, s.inputs, s.version"
    )
    .bindparams(*(sa.bindparam(name, type_=sa.Float) for name in _FLOAT_PARAMS))
    .columns(parts=JSONB, inputs=JSONB)
)


@dataclass(frozen=True)
class PassResult:
    slots: int
    published: int


def _formula_params(settings: Settings) -> dict[str, Any]:
    weights = settings.weights
    points = domain.PRIORITY_POINTS
    return {
        "p_low": points[TicketPriority.LOW],
        "p_normal": points[TicketPriority.NORMAL],
        "p_high": points[TicketPriority.HIGH],
        "p_urgent": points[TicketPriority.URGENT],
        "wait_cap": domain.WAIT_CAP,
        "urgency": weights.urgency,
        "sentiment_points": domain.SENTIMENT_POINTS,
        "neutral": domain.NEUTRAL_SENTIMENT,
        "value_weight": weights.value,
        "high_value_ltv": weights.high_value_ltv,
        "churn_weight": weights.churn,
    }


async def recalculate_slot(
    session: AsyncSession, settings: Settings, slot: int, now: datetime
) -> int:
    """Recompute one slot's open tickets; store and publish the changed ones (caller commits).
    Returns how many changed."""
    width = RECALC_BUCKETS // RECALC_SLOTS
    params = {"first_bucket": slot * width, "end_bucket": (slot + 1) * width, "now": now}
    rows = (await session.execute(_SLOT_PASS, {**params, **_formula_params(settings)})).all()
    events = [
        TicketScoredData(
            ticket_id=row.ticket_id,
            smart_score=row.smart_score,
            parts=ScoreParts(**row.parts),
            inputs=row.inputs,
            computed_at=now,
            version=row.version,
        )
        for row in rows
    ]
    await add_events(session, [(SCORED, event) for event in events], source=SOURCE)
    return len(events)


async def recalculate_next_due_slot(
    session: AsyncSession, settings: Settings, now: datetime
) -> int | None:
    """Claim one due slot, recompute it and schedule its next turn; None when none is due.
    Returns how many scores changed."""
    slot = await session.scalar(_CLAIM_DUE_SLOT, {"now": now})
    if slot is None:
        return None
    changed = await recalculate_slot(session, settings, slot, now)
    await session.execute(
        _RESCHEDULE_SLOT, {"slot": slot, "now": now, "period": settings.recalc_period_seconds}
    )
    return changed


async def recalculate_due_slots(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Clock = lambda: datetime.now(UTC),
) -> PassResult:
    """Work through the due slots, one transaction each, until none is due (or the rest are
    held by other replicas)."""
    slots = published = 0
    while True:
        async with sessions() as session, session.begin():
            changed = await recalculate_next_due_slot(session, settings, clock())
        if changed is None:
            return PassResult(slots, published)
        slots += 1
        published += changed


async def pull_in_slots(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            _PULL_IN_SLOTS,
            {"now": datetime.now(UTC), "period": settings.recalc_period_seconds},
        )


def register(runtime: Runtime) -> None:
    settings = runtime.settings
    sessions = runtime.sessions
    assert isinstance(settings, Settings)
    assert sessions is not None

    async def recalculate_scores() -> None:
        """Background loop: drain the due slots, then look again after a poll period."""
        await pull_in_slots(sessions, settings)
        while True:
            result = await recalculate_due_slots(sessions, settings)
            if result.slots:
                log.debug("recalculated %d slots, %d changed", result.slots, result.published)
            await asyncio.sleep(settings.scoring_recalc_poll_seconds)

    runtime.background.append(recalculate_scores)
