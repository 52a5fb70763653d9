"""Scoring: the cost of one recalculation pass over 100k open tickets.

Needs the local infrastructure (`make infra`), not a running service: it creates a scratch
database at the head of scoring's migrations, fills the projections with N open tickets
(20 % with an agent's last word, the rest waiting from 1 minute to 14 days; 1 customer per 5
tickets), makes every recalculation slot due, and runs the service's own loop body
(`recalculate_due_slots`: one transaction and one SQL statement per slot, slots claimed with
FOR UPDATE SKIP LOCKED) until no slot is due. Passes timed:

- warm: the realistic periodic pass, 5 minutes after the last one (every wait moved back 300 s):
  only tickets whose total moved at 2 decimals are written and get a ticket.scored event;
- idle: again right away: nothing changed, nothing written (the pure compute cost);
- cold: every stored score is stale (e.g. the weights were changed), so all N change.

`--replicas 2` runs that many loops side by side in this process (same event loop).

    uv run python bench/scoring_recalc.py [--tickets 100000] [--replicas 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.migrations import upgrade
from quimbi_common.testing import create_database, drop_database, unique
from quimbi_common.uow import UnitsOfWork
from quimbi_scoring.service import PassResult, recalculate_due_slots
from quimbi_scoring.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "scoring" / "migrations"

SEED = [
    """INSERT INTO customers (id, lifetime_value, churn_risk, fetched_at)
       SELECT 'bc' || g, round((random() * 3000)::numeric, 2), round(random()::numeric, 2), now()
       FROM generate_series(1, GREATEST(1, :n / 5)) AS g""",
    """INSERT INTO tickets (id, customer_id, subject, status, priority, created_at, version,
                            waiting_since, customer_sentiment)
       SELECT 'bt' || g, 'bc' || (1 + g % GREATEST(1, :n / 5)), 'Bench ticket ' || g,
              (ARRAY['open', 'in_progress', 'pending'])[1 + g % 3],
              (ARRAY['low', 'normal', 'high', 'urgent'])[1 + (g / 3) % 4],
              now() - make_interval(secs => 60 + random() * 14 * 86400), 1, NULL,
              round(random()::numeric, 3)
       FROM generate_series(1, :n) AS g""",
    """UPDATE tickets SET waiting_since = created_at + (now() - created_at) * random() * 0.5
       WHERE id LIKE 'bt%' AND random() < 0.8""",
    """INSERT INTO ticket_scores (ticket_id, smart_score, parts, inputs, computed_at, version)
       SELECT id, -1, '{}'::jsonb, '{}'::jsonb, now(), 1 FROM tickets WHERE id LIKE 'bt%'""",
]
MAKE_DUE = "UPDATE recalc_slots SET due_at = now() - interval '1 second'"
MAKE_STALE = "UPDATE ticket_scores SET smart_score = -1"
FIVE_MINUTES_LATER = """UPDATE tickets SET created_at = created_at - interval '300 seconds',
    waiting_since = waiting_since - interval '300 seconds'"""

# For comparison: every open ticket rewritten by one UPDATE (per-row writes, no events).
SQL_PASS = """
WITH computed AS (
  SELECT t.id,
    CASE WHEN t.status IN ('resolved', 'closed') THEN 0 ELSE round((
      CASE t.priority WHEN 'low' THEN 0 WHEN 'normal' THEN 1 WHEN 'high' THEN 2.5 ELSE 4 END
      + CASE WHEN t.waiting_since IS NULL THEN 0 ELSE least(3, :urgency * log(
          1 + greatest(0, extract(epoch FROM now() - t.waiting_since) / 3600))) END
      + 2 * least(1, greatest(0, (0.5 - t.customer_sentiment) / 0.5))
      + :value * least(1, greatest(0, coalesce(c.lifetime_value, 0) / :ltv))
      + :churn * least(1, greatest(0, coalesce(c.churn_risk, 0)))
    )::numeric, 2) END AS score
  FROM ticket_scores s JOIN tickets t ON t.id = s.ticket_id
  LEFT JOIN customers c ON c.id = t.customer_id
  WHERE NOT t.deleted AND t.status NOT IN ('resolved', 'closed')
)
UPDATE ticket_scores s SET smart_score = computed.score, computed_at = now()
FROM computed WHERE computed.id = s.ticket_id
"""


def backend_cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the given PostgreSQL backends have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


async def backend_pids(engine: AsyncEngine, database: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": database}
        )
        return [row.pid for row in rows]


async def timed_pass(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    replicas: int,
    database: str,
) -> tuple[float, tuple[float, float], PassResult]:
    """Wall time, CPU time (this process + the database backends), and what the pass did."""
    units = UnitsOfWork(sessions, settings.service_name)
    pids = await backend_pids(engine, database)
    python_before, database_before = time.process_time(), backend_cpu_seconds(pids)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(recalculate_due_slots(units, settings) for _ in range(replicas))
    )
    elapsed = time.perf_counter() - started
    pids = sorted(set(pids) | set(await backend_pids(engine, database)))
    python_cpu = time.process_time() - python_before
    database_cpu = backend_cpu_seconds(pids) - database_before
    return (
        elapsed,
        (python_cpu, database_cpu),
        PassResult(sum(r.slots for r in results), sum(r.published for r in results)),
    )


async def main(tickets: int, replicas: int, keep: bool) -> None:
    name = unique("bench_scoring_")
    url = await create_database(name)
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        settings = Settings(database_url=url, log_json=False)
        engine = create_engine(settings)
        sessions = create_sessionmaker(engine)
        started = time.perf_counter()
        async with engine.begin() as conn:
            for statement in SEED:
                await conn.execute(sa.text(statement), {"n": tickets})
        async with engine.connect() as conn:
            await conn.execute(sa.text("COMMIT"))
            await conn.execute(sa.text("VACUUM ANALYZE"))
        print(f"seeded {tickets} open tickets in {time.perf_counter() - started:.1f} s")
        print(
            f"one recalculation pass over all slots, {replicas} replica(s); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:"
        )
        async with engine.begin() as conn:
            await conn.execute(sa.text(MAKE_DUE))
        # the first scores (not timed); it also opens the pool's connections
        await timed_pass(settings, engine, sessions, replicas, name)
        for label, prepare in (
            ("warm", FIVE_MINUTES_LATER),
            ("idle", None),
            ("cold", MAKE_STALE),
        ):
            async with engine.begin() as conn:
                if prepare:
                    await conn.execute(sa.text(prepare))
                await conn.execute(sa.text(MAKE_DUE))
            elapsed, cpu, result = await timed_pass(settings, engine, sessions, replicas, name)
            print(
                f"  {label}: {elapsed:.2f} s wall (CPU: {cpu[0]:.2f} s service code, "
                f"{cpu[1]:.2f} s PostgreSQL) for {tickets} tickets in {result.slots} slots; "
                f"{result.published} changed -> written + ticket.scored"
            )
        weights = settings.weights
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(SQL_PASS),
                {
                    "urgency": weights.urgency,
                    "value": weights.value,
                    "churn": weights.churn,
                    "ltv": weights.high_value_ltv,
                },
            )
        print(
            "  for comparison, rewriting every open ticket's score in one UPDATE "
            f"(no events): {time.perf_counter() - started:.2f} s"
        )
        await engine.dispose()
    finally:
        if not keep:
            await drop_database(name)
        else:
            print(f"kept database {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    asyncio.run(main(args.tickets, args.replicas, args.keep))
