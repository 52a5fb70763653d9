"""SLA scheduler: one tick over 100k open clocks of which 1k are due (goal: < 1 s).

Needs only the local PostgreSQL (`make infra`); no running service. It creates a scratch
database with the SLA service's migrations, fills `sla_tracking` with open clocks (normal
priority, wall time) whose `next_check_at` lies in the future, except for `--due` of them,
and times the service's own `run_scheduler_tick` (the function the running service calls every
second) in-process. Each round makes a fresh set of clocks due: rounds alternate between
pending → at_risk (sla.updated + sla.warning each) and at_risk → breached (sla.updated +
sla.breached each). The events land in the scratch database's outbox (no relay runs).
The query plan of the due-clock selection is printed, to show it uses the partial index.

    uv run python bench/sla_scheduler.py [--clocks 100000] [--due 1000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import sqlalchemy as sa

from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.migrations import upgrade
from quimbi_common.testing import create_database, drop_database, unique
from quimbi_common.uow import UnitsOfWork
from quimbi_sla.service import run_scheduler_tick
from quimbi_sla.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "sla" / "migrations"
FIRST_RESPONSE, RESOLUTION = 8 * 3600, 48 * 3600  # the normal policy

# Clocks created in the last hour: nothing due for hours (first-response warning at 6.4 h).
FILL = sa.text(
    """
    INSERT INTO sla_tracking (
        id, ticket_id, ticket_version, ticket_created_at, ticket_status, priority,
        assigned_agent_id, first_response_target_seconds, resolution_target_seconds,
        warning_threshold_percent, business_hours_only,
        first_response_status, first_response_deadline, first_response_paused_seconds,
        first_response_warning_sent, first_response_breach_sent,
        resolution_status, resolution_deadline, resolution_paused_seconds,
        resolution_warning_sent, resolution_breach_sent,
        is_paused, total_paused_seconds, next_check_at, version)
    SELECT gen_random_uuid()::text, 'bench-' || n, 1, c, 'open', 'normal',
        'agent-' || (n % 50), CAST(:fr AS integer), CAST(:res AS integer), 80, false,
        'pending', c + make_interval(secs => CAST(:fr AS integer)), 0, false, false,
        'pending', c + make_interval(secs => CAST(:res AS integer)), 0, false, false,
        false, 0, c + make_interval(secs => CAST(:fr AS integer) * 0.8), 1
    FROM (SELECT n, now() - make_interval(secs => random() * 3600) AS c
          FROM generate_series(1, CAST(:clocks AS integer)) AS n) AS t
    """
)

# A fresh set of clocks that reached their warning share a moment ago (stored as pending).
MAKE_WARNINGS_DUE = sa.text(
    """
    UPDATE sla_tracking SET
        ticket_created_at = now() - make_interval(secs => CAST(:fr AS integer) * 0.8 + 5),
        first_response_deadline = now() - make_interval(secs => CAST(:fr AS integer) * 0.8 + 5)
            + make_interval(secs => CAST(:fr AS integer)),
        resolution_deadline = now() - make_interval(secs => CAST(:fr AS integer) * 0.8 + 5)
            + make_interval(secs => CAST(:res AS integer)),
        next_check_at = now() - interval '5 seconds'
    WHERE ticket_id IN (
        SELECT 'bench-' || n
        FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n)
    """
)

# The same clocks, now past their first-response deadline (stored as at_risk).
MAKE_BREACHES_DUE = sa.text(
    """
    UPDATE sla_tracking SET
        ticket_created_at = now() - make_interval(secs => CAST(:fr AS integer) + 5),
        first_response_deadline = now() - interval '5 seconds',
        resolution_deadline = now() - make_interval(secs => CAST(:fr AS integer) + 5)
            + make_interval(secs => CAST(:res AS integer)),
        next_check_at = now() - interval '5 seconds'
    WHERE ticket_id IN (
        SELECT 'bench-' || n
        FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n)
    """
)

DUE_QUERY = (
    "EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM sla_tracking WHERE next_check_at <= now() "
    "ORDER BY next_check_at LIMIT 500 FOR UPDATE SKIP LOCKED"
)


async def main(clocks: int, due: int, rounds: int) -> None:
    name = unique("bench_sla_")
    url = await create_database(name)
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        settings = Settings(database_url=url, log_json=False)
        engine = create_engine(settings)
        sessions = create_sessionmaker(engine)
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(FILL, {"clocks": clocks, "fr": FIRST_RESPONSE, "res": RESOLUTION})
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE sla_tracking"))
        print(f"filled {clocks} open clocks in {time.perf_counter() - started:.1f} s")

        timings: list[float] = []
        for round_number in range(rounds):
            batch = round_number // 2
            first, last = batch * due + 1, (batch + 1) * due
            breach = round_number % 2 == 1
            async with engine.begin() as conn:
                await conn.execute(
                    MAKE_BREACHES_DUE if breach else MAKE_WARNINGS_DUE,
                    {"first": first, "last": last, "fr": FIRST_RESPONSE, "res": RESOLUTION},
                )
                if round_number == 0:
                    plan = (await conn.execute(sa.text(DUE_QUERY))).scalars().all()
                    print("due-clock query plan:\n  " + "\n  ".join(plan))
            tick_started, cpu_started = time.perf_counter(), time.process_time()
            settled = await run_scheduler_tick(
                UnitsOfWork(sessions, settings.service_name),
                settings.business_calendar,
                batch_size=settings.sla_scheduler_batch_size,
            )
            elapsed = time.perf_counter() - tick_started
            cpu = time.process_time() - cpu_started
            timings.append(elapsed)
            async with engine.connect() as conn:
                events = await conn.scalar(sa.text("SELECT count(*) FROM outbox"))
                await conn.execute(sa.text("DELETE FROM outbox"))
                await conn.commit()
            kind = "at_risk → breached" if breach else "pending → at_risk"
            print(
                f"round {round_number + 1}: {kind}: settled {settled} of {clocks} clocks, "
                f"{events} events, tick {elapsed * 1000:.0f} ms "
                f"({cpu * 1000:.0f} ms of it this process's CPU)"
            )
            assert settled == due, f"expected {due} due clocks, settled {settled}"
        print(
            f"tick over {clocks} clocks with {due} due: "
            f"median {statistics.median(timings) * 1000:.0f} ms, "
            f"max {max(timings) * 1000:.0f} ms (goal < 1000 ms)"
        )
        await engine.dispose()
    finally:
        await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.clocks, args.due, args.rounds))
