"""The scheduler: at_risk and breached as time passes, once per entry, with several replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.enums import TicketPriority
from quimbi_common.events import CustomerSnapshot, TicketData
from quimbi_common.testing import migrated_database, unique
from quimbi_sla import service
from quimbi_sla.settings import Settings

pytestmark = pytest.mark.service
LEAD_SECONDS = 6
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


async def test_a_clock_reaching_its_warning_share_publishes_one_warning_in_time(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    # given an urgent ticket 6 s short of 80 % of its 30 min first-response target (6 s: its
    # ticket.created is applied before then even on a loaded machine)
    warn_at = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
    ticket = new_ticket(priority=TicketPriority.URGENT, created_at=warn_at - timedelta(minutes=24))
    await tickets.created(ticket)
    assert (await sla.updated(ticket.id))["first_response_status"] == "pending"
    # then within 5 s of that moment the scheduler moves it to at_risk and warns once
    budget = (warn_at + timedelta(seconds=5) - datetime.now(UTC)).total_seconds()
    warning = (await sla.wait("sla.warning", ticket.id, timeout=budget))[0]
    assert warning["metric"] == "first_response"
    assert warning["first_response_status"] == "at_risk"
    update = await sla.updated(ticket.id, version=2)
    assert update["first_response_status"] == "at_risk"
    await asyncio.sleep(1.5)
    assert len(sla.all("sla.warning", ticket.id)) == 1


async def test_a_clock_passing_its_deadline_publishes_one_breach_in_time(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    # given an urgent ticket created 6 s short of its first-response deadline (so at risk)
    due = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
    ticket = new_ticket(priority=TicketPriority.URGENT, created_at=due - timedelta(minutes=30))
    await tickets.created(ticket)
    started = await sla.updated(ticket.id)
    assert started["first_response_status"] == "at_risk"
    assert len(await sla.wait("sla.warning", ticket.id)) == 1
    # then within 5 s of the deadline it is breached, once
    budget = (due + timedelta(seconds=5) - datetime.now(UTC)).total_seconds()
    breach = (await sla.wait("sla.breached", ticket.id, timeout=budget))[0]
    assert breach["metric"] == "first_response"
    assert breach["first_response_status"] == "breached"
    assert breach["resolution_status"] == "pending"
    await asyncio.sleep(1.5)
    assert len(sla.all("sla.breached", ticket.id)) == 1
    assert len(sla.all("sla.warning", ticket.id)) == 1


@pytest.fixture
async def sessions(sla_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A database of its own: no other test's clocks, no running app's scheduler."""
    async with migrated_database(MIGRATIONS, "sla_replicas") as url:
        engine = create_engine(sla_settings.model_copy(update={"database_url": url}))
        yield create_sessionmaker(engine)
        await engine.dispose()


def _ticket(ticket_id: str, created_at: datetime) -> TicketData:
    return TicketData(
        id=ticket_id,
        customer_id="cust",
        subject="s",
        status="open",
        priority="urgent",
        channel="chat",
        created_at=created_at,
        updated_at=created_at,
        version=1,
        customer=CustomerSnapshot(id="cust", email="c@example.com"),
    )


async def _alerts(sessions: async_sessionmaker[AsyncSession], ids: list[str]) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            sa.text(
                "SELECT topic, count(*) AS n FROM outbox WHERE key = ANY(:ids) "
                "AND topic IN ('sla.warning', 'sla.breached') GROUP BY topic"
            ),
            {"ids": ids},
        )
        return {row.topic: row.n for row in rows}


async def test_concurrent_scheduler_replicas_publish_each_entry_once(
    sessions: async_sessionmaker[AsyncSession], sla_settings: Settings
) -> None:
    # given 120 urgent clocks
    start = datetime.now(UTC)
    ids = [unique("rep-") for _ in range(120)]
    async with sessions() as session, session.begin():
        for ticket_id in ids:
            await service.apply_ticket(
                session, _ticket(ticket_id, start), sla_settings.business_calendar, now=start
            )
    calendar = sla_settings.business_calendar

    async def replicas(at: datetime) -> list[int]:
        return await asyncio.gather(
            *(
                service.run_scheduler_tick(sessions, calendar, batch_size=20, now=at)
                for _ in range(3)
            )
        )

    # when three replicas tick at once past the warning share, and again past the deadline
    warned = await replicas(start + timedelta(minutes=25))
    breached = await replicas(start + timedelta(minutes=31))
    # then each clock was settled once per moment and alerted exactly once per entry
    assert sum(warned) == 120
    assert sum(breached) == 120
    assert await _alerts(sessions, ids) == {"sla.warning": 120, "sla.breached": 120}
    # and ticking again changes nothing
    assert sum(await replicas(start + timedelta(minutes=32))) == 0
    assert await _alerts(sessions, ids) == {"sla.warning": 120, "sla.breached": 120}
