"""Full-text search: `GET /api/tickets/search` on 100k tickets / 500k messages: p50/p99 and
tickets CPU per request direct to the service, at each concurrency asked for (default 1, 2
and 8), for searches of different selectivity; and PostgreSQL's CPU per execution of the same
statement (its backend's on-CPU time, /proc/<pid>/schedstat, so a loaded machine does not
inflate it) with EXPLAIN ANALYZE's total (goal of issue #19: p99 < 50 ms).

Needs the local infrastructure (`make infra`). Creates a scratch database migrated with the
service's migrations and fills it in PostgreSQL itself (generate_series; the GIN indexes are
dropped while filling and built once after, as a bulk load would), starts `python -m
quimbi_tickets` and `python -m quimbi_gateway` on spare ports, measures, stops them and drops
the database. Text: 5 words per subject and 30 per message drawn from a skewed vocabulary (22
support words, each in most tickets, and 3,000 synthetic words from common to rare), plus
"chargeback" in 1 % of the messages. CPU per request is from /proc, idle CPU subtracted.

    uv run python bench/tickets_search.py [--tickets 100000] [--messages-per-ticket 5]
                                          [--requests 1000] [--concurrency 1,2,8] [--keep]
                                          [--database NAME] [--tickets-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from urllib.parse import urlencode

import asyncpg
from _shared import free_port, record, stop_processes
from sqlalchemy.dialects import postgresql
from tickets_inbox import (
    MIGRATIONS,
    PER_REQUEST,
    WORDS,
    measure,
    measure_idle,
    start,
    wait_until_live,
)

from quimbi_common.auth import Principal
from quimbi_common.db import asyncpg_dsn
from quimbi_common.enums import Role, TicketStatus
from quimbi_common.migrations import upgrade
from quimbi_common.testing import (
    ADMIN_DSN,
    SigningKeys,
    create_database,
    drop_database,
    unique,
)
from quimbi_tickets.queries import InboxQuery
from quimbi_tickets.search import SearchOrder, search_statements
from quimbi_tickets.settings import Settings

CANDIDATES = Settings().search_candidates  # what the service ranks at most per table
SYNTHETIC_WORDS = 3000

FILL = """
SELECT setseed(0.42);
DROP INDEX ix_tickets_search_document, ix_tickets_subject_trgm, ix_messages_content_trgm;
INSERT INTO customers (id, email, name, created_at, updated_at)
  SELECT 'cust_' || i, 'c' || i || '@example.com', 'Customer ' || i, now(), now()
  FROM generate_series(0, {customers}) i;
"""


def _word() -> str:
    """One word: a support word a third of the time, else a synthetic one, skewed so that
    w0001 is common and w3000 rare (index ~ n * u^3). Volatile, so drawn per row."""
    support = "ARRAY[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    synthetic = f"'w' || lpad((1 + floor({SYNTHETIC_WORDS} * power(random(), 3)))::text, 4, '0')"
    return (
        f"CASE WHEN random() < 0.33 THEN ({support})[1 + floor(random() * {len(WORDS)})::int]"
        f" ELSE {synthetic} END"
    )


def _text(words: int, row: str) -> str:
    return (
        f"array_to_string(ARRAY(SELECT {_word()}"
        f" FROM generate_series(1, {words} + 0 * {row})), ' ')"
    )


def tickets_sql(tickets: int) -> str:
    return f"""
INSERT INTO tickets (id, customer_id, subject, status, priority, channel, assigned_agent_id,
                     created_at, updated_at, version, smart_score, score_version)
  SELECT 'ticket_' || lpad(i::text, 6, '0'), 'cust_' || floor(random() * {tickets // 5}),
         {_text(5, "i")},
         CASE WHEN i % 10 = 0 THEN 'open' ELSE
           (ARRAY['in_progress','pending','resolved','closed'])[1 + i % 4] END,
         (ARRAY['low','normal','high','urgent'])[1 + floor(random() * 4)::int],
         'email', 'agent_' || (i % 100), now() - (i || ' minutes')::interval,
         now(), 1, round((random() * 14)::numeric, 2), 1
  FROM generate_series(0, {tickets - 1}) i
"""


def messages_sql(tickets: int, per_ticket: int) -> str:
    return f"""
INSERT INTO messages (id, ticket_id, from_agent, content, created_at, updated_at,
                      sentiment_score, detected_intent, version)
  SELECT 'msg_' || i || '_' || j, 'ticket_' || lpad(i::text, 6, '0'), j % 2 = 1,
         {_text(30, "i * j")}
           || CASE WHEN random() < 0.01 THEN ' chargeback' ELSE '' END,
         now() - ((i * 10 - j) || ' minutes')::interval, now(), 0.5, 'other', 1
  FROM generate_series(0, {tickets - 1}) i, generate_series(1, {per_ticket}) j
"""


DOCUMENTS = """
UPDATE tickets t SET search_document = setweight(to_tsvector('english', t.subject), 'A')
  || m.document
FROM (SELECT ticket_id, tsvector_concat_agg(search_vector ORDER BY created_at, id) AS document
      FROM messages GROUP BY ticket_id) m
WHERE m.ticket_id = t.id
"""

INDEXES = """
CREATE INDEX ix_tickets_search_document ON tickets USING gin (search_document);
CREATE INDEX ix_tickets_subject_trgm ON tickets USING gin (subject gin_trgm_ops);
CREATE INDEX ix_messages_content_trgm ON messages USING gin (content gin_trgm_ops);
VACUUM ANALYZE;
"""


async def fill(dsn: str, tickets: int, per_ticket: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        fill_sql = FILL.format(customers=tickets // 5)
        for statement in fill_sql.strip().split(";\n"):
            await conn.execute(statement)
        await conn.execute(tickets_sql(tickets))
        await conn.execute(messages_sql(tickets, per_ticket))
        await conn.execute(DOCUMENTS)  # what the service keeps with every message it stores
        for statement in INDEXES.strip().split(";\n"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def selectivity(dsn: str, word: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        share: float = await conn.fetchval(
            "SELECT avg((search_document @@ websearch_to_tsquery('english', $1))::int)"
            " FROM tickets",
            word,
        )
        return share
    finally:
        await conn.close()


async def explain(
    dsn: str, query: InboxQuery, principal: Principal, text: str, order: SearchOrder
) -> tuple[float, float, int, bool]:
    """PostgreSQL's CPU per execution of the route's page statement (ms, its backend's on-CPU
    time over 20 runs), EXPLAIN ANALYZE's execution time (ms), the answer's total and whether
    it ranked every match."""
    statement, _ = search_statements(query, principal, text, order, CANDIDATES)
    compiled = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    sql = str(compiled)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET jit = off")
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        prepared = await conn.prepare(sql)
        rows = await prepared.fetch()
        runs, began = 20, on_cpu_ns(backend)
        for _ in range(runs):
            await prepared.fetch()
        cpu = (on_cpu_ns(backend) - began) / runs / 1e6
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
    finally:
        await conn.close()
    total, exhaustive = (rows[0]["total"], rows[0]["exhaustive"]) if rows else (0, True)
    return cpu, float(json.loads(plan)[0]["Execution Time"]), total, exhaustive


def on_cpu_ns(pid: int) -> int:
    """A process's time on a CPU so far (ns), from the scheduler's statistics."""
    with open(f"/proc/{pid}/schedstat") as stats:
        return int(stats.read().split()[0])


SEARCHES = [
    # (label, query parameters, as an agent?)
    ("rare word (chargeback, ~5% of tickets)", {"q": "chargeback"}, False),
    ("mid word (w0300)", {"q": "w0300"}, False),
    ("two words (refund chargeback)", {"q": "refund chargeback"}, False),
    ('phrase ("card charged") + status=open', {"q": '"card charged"', "status": "open"}, False),
    (
        "rare word, smart order, status=open",
        {"q": "chargeback", "status": "open", "order": "smart"},
        False,
    ),
    ("agent's own tickets (mid word)", {"q": "w0300"}, True),
    ("common word (refund, most tickets)", {"q": "refund"}, False),
]


def database_url(name: str) -> str:
    """The SQLAlchemy URL of an existing database on the benchmark's server."""
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def main(args: argparse.Namespace) -> None:
    reuse = args.database is not None
    name = args.database or unique("bench_search_")
    url = database_url(name) if reuse else await create_database(name)
    dsn = asyncpg_dsn(url)
    keys = SigningKeys()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        if not reuse:
            await fill(dsn, args.tickets, args.messages_per_ticket)
        messages = args.tickets * args.messages_per_ticket
        print(
            f"setup: {args.tickets} tickets, {messages} messages in "
            f"{time.perf_counter() - started:.1f} s{' (kept database reused)' if reuse else ''}"
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        source = {"PYTHONPATH": args.tickets_src} if args.tickets_src else {}
        processes.append(start("quimbi_tickets", port, keys, DATABASE_URL=url, **source))
        await wait_until_live(base, processes[0])
        pids = {"tickets": processes[0].pid}
        senior = keys.token(Role.SENIOR_AGENT, ttl_seconds=3600)
        agent = keys.token(Role.AGENT, agent_id="agent_7", ttl_seconds=3600)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min)")
        await measure_idle(pids)
        worst: dict[int, float] = {}
        common_p99: dict[int, float] = {}
        for concurrency in args.concurrency:
            print(f"HTTP direct to tickets, concurrency {concurrency}, limit=50:")
            for label, params, as_agent in SEARCHES:
                share = await selectivity(dsn, params["q"].strip('"').split()[0])
                path = "/api/tickets/search?" + urlencode({**params, "limit": 50})
                token = agent if as_agent else senior
                n = args.requests if "common" not in label else max(50, args.requests // 10)
                shown = f"{label} [{share:.0%}]"
                p99 = await measure(shown, pids, base, token, path, n, concurrency)
                if "common" in label:
                    common_p99[concurrency] = p99
                else:
                    worst[concurrency] = max(worst.get(concurrency, 0.0), p99)
                role = Role.AGENT if as_agent else Role.SENIOR_AGENT
                principal = Principal(kind="agent", agent_id="agent_7", role=role)
                status = TicketStatus(params["status"]) if "status" in params else None
                order: SearchOrder = "smart" if params.get("order") == "smart" else "relevance"
                cpu, server, total, exhaustive = await explain(
                    dsn, InboxQuery(limit=50, status=status), principal, params["q"], order
                )
                print(
                    f"{'':<4}PostgreSQL: {cpu:.2f} ms CPU per execution, EXPLAIN ANALYZE "
                    f"{server:.1f} ms; total {total}"
                    f"{'' if exhaustive else ' (not exhaustive: ranked among bounded candidates)'}"
                )
        print(f"load average at the end {os.getloadavg()[0]:.1f} (1 min)")
        first = SEARCHES[0][0]
        shown_first = next(k for k in PER_REQUEST if k.startswith(first))
        for concurrency, p99 in worst.items():
            record(
                f"search (100k tickets / 500k messages), concurrency {concurrency}: worst p99"
                " of the selective searches",
                "< 50 ms",
                f"{p99:.1f} ms",
                f"direct; tickets CPU {PER_REQUEST[shown_first]['tickets']:.2f} ms/request"
                " (rare word)",
            )
        for concurrency, p99 in common_p99.items():
            record(
                f"search, a word in most tickets (refund), concurrency {concurrency}: p99",
                "< 50 ms",
                f"{p99:.1f} ms",
                "ranks a bounded set: see services/tickets README",
            )
    finally:
        stop_processes(processes)
        if args.keep or reuse:
            print(f"kept database {name} (reuse it: --database {name})")
        else:
            await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages-per-ticket", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2, 8],
        help="comma-separated concurrencies to measure at (default 1,2,8)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--database", help="reuse a database an earlier --keep run filled (kept again)"
    )
    parser.add_argument(
        "--tickets-src", help="run the tickets service from this src folder (a before/after run)"
    )
    asyncio.run(main(parser.parse_args()))
