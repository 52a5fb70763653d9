"""The periodic recomputation: wait grows with time, due tickets are rescored, replicas share.

Time passing is simulated by moving a ticket's clock facts back in the projection and making
its recomputation due now.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from quimbi_common.enums import TicketStatus
from quimbi_scoring.recalculation import recalculate_due_tickets

pytestmark = pytest.mark.service


async def _age(scoring: Any, ticket_ids: list[str], hours: float) -> None:
    """As if `hours` had passed since these tickets were last scored, and they are due."""
    async with scoring.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE tickets SET created_at = created_at - make_interval(secs => :s), "
                "waiting_since = waiting_since - make_interval(secs => :s) "
                "WHERE id = ANY(CAST(:ids AS text[]))"
            ),
            {"s": hours * 3600, "ids": ticket_ids},
        )
        await conn.execute(
            sa.text(
                "UPDATE ticket_scores SET recalc_due_at = now() - interval '1 second' "
                "WHERE ticket_id = ANY(CAST(:ids AS text[]))"
            ),
            {"ids": ticket_ids},
        )


async def _due_at(scoring: Any, ticket_id: str) -> Any:
    async with scoring.engine.connect() as conn:
        return await conn.scalar(
            sa.text("SELECT recalc_due_at FROM ticket_scores WHERE ticket_id = :id"),
            {"id": ticket_id},
        )


async def test_the_background_loop_rescores_due_tickets_as_they_wait(
    scoring: Any, new_ticket: Any
) -> None:
    # given a new normal ticket (score 1.0) scheduled for its next recomputation
    created = new_ticket()
    await scoring.send("ticket.created", created)
    first = await scoring.wait_scored(created.id)
    assert first["smart_score"] == 1.0
    assert await _due_at(scoring, created.id) is not None
    # when nine hours pass and its recomputation is due
    await _age(scoring, [created.id], hours=9)
    # then the loop publishes the longer wait: 1 + 1.5·log10(10)
    later = await scoring.wait_scored(created.id, lambda d: d["version"] == 2, timeout=10)
    assert later["smart_score"] == 2.5
    assert later["inputs"]["hours_waiting"] == pytest.approx(9.0, abs=0.01)


async def test_a_pass_that_changes_nothing_publishes_nothing(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a ticket an agent answered (nobody waits, so time changes nothing)
    created = new_ticket()
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    await scoring.handled(
        await scoring.send("message.added", new_message(created.id, from_agent=True))
    )
    # when its recomputation comes due and runs
    await _age(scoring, [created.id], hours=9)
    await recalculate_due_tickets(scoring.sessions, scoring.settings)
    # then it was recomputed (due again later) but nothing was published
    assert await _due_at(scoring, created.id) > datetime.now(UTC)
    assert [d["version"] for d in await scoring.published(created.id)] == [1]


async def test_resolved_tickets_are_not_scheduled(scoring: Any, new_ticket: Any) -> None:
    created = new_ticket(status=TicketStatus.RESOLVED)
    await scoring.send("ticket.created", created)
    assert (await scoring.wait_scored(created.id))["smart_score"] == 0.0
    assert await _due_at(scoring, created.id) is None


async def test_concurrent_replicas_rescore_each_due_ticket_once(
    scoring: Any, new_ticket: Any
) -> None:
    # given 30 scored tickets that have all waited 5 more hours
    tickets = [new_ticket() for _ in range(30)]
    ids = [await scoring.send("ticket.created", t) for t in tickets]
    await scoring.handled(*ids)
    await _age(scoring, [t.id for t in tickets], hours=5)
    # when three replicas (two here, plus the app's own loop) recompute in small batches
    small = scoring.settings.model_copy(update={"scoring_recalc_batch_size": 4})
    await asyncio.gather(
        recalculate_due_tickets(scoring.sessions, small),
        recalculate_due_tickets(scoring.sessions, small),
    )
    # then every ticket was rescored exactly once, with one new version each
    for created in tickets:
        published = await scoring.published(created.id)
        assert [d["version"] for d in published] == [1, 2]
        assert published[-1]["smart_score"] == 2.17  # 1 + 1.5·log10(6)
