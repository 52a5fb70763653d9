"""Gateway overhead: the same `GET /api/tickets?limit=50` direct to tickets and through the
gateway, in one run, at concurrency 32: p50/p99/req/s of both and the ratio.
Goal: the gateway adds ≤ 1 ms at p50 and keeps ≥ 75 % of direct throughput.

By default the script starts what it needs (the infrastructure must be up: `make infra`):
a scratch tickets database, `python -m quimbi_tickets` and `python -m quimbi_gateway` on free
ports, sharing a throwaway RS256 key via JWKS_JSON (so the agents service is not needed), and
200 tickets created through the tickets API. The gateway's per-agent rate limit is raised out
of the way; the limiter still runs (one Redis call per request, with the revocation check).
Or measure running instances: `--gateway-url URL --tickets-url URL --token JWT`.

The load generator is a minimal HTTP/1.1 keep-alive client (one connection per worker,
pre-built request bytes), so that it costs little of the CPU the services share with it.
Direct and gateway runs alternate in rounds, so background noise falls on both alike; a
concurrency-1 pass gives the latency the gateway adds to an unloaded request.

    uv run python bench/gateway_overhead.py [--requests 3000] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from _shared import cpu_seconds, free_port, stop_processes

ROOT = Path(__file__).resolve().parents[1]
PATH = "/api/tickets?limit=50"


# --- load generator -----------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a fixed request and reads the answer."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def fetch(self) -> tuple[int, int]:
        """Status and body size of one request."""
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            size = 0
            while True:
                chunk_size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(chunk_size + 2)
                size += chunk_size
                if chunk_size == 0:
                    return status, size
        body = await self.reader.readexactly(length) if length > 0 else b""
        return status, len(body)


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failures: int = 0
    body_sizes: set[int] = field(default_factory=set)
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> CPU seconds used

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def build_request(base_url: str, token: str, path: str = PATH) -> tuple[str, int, bytes]:
    """A keep-alive `GET path` with the bearer token, as raw bytes, and where to send it."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raw = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    return host, port, raw


async def load(
    base_url: str,
    token: str,
    requests: int,
    concurrency: int,
    into: Result,
    pids: dict[str, int] | None = None,
) -> None:
    """`requests` requests over `concurrency` connections; latencies appended to `into`, and
    the CPU time the processes in `pids` spent meanwhile."""
    host, port, raw = build_request(base_url, token)
    connections = [Connection(host, port, raw) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    remaining = requests

    async def worker(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:  # a request never answered is a failure, not a bench that hangs
                status, size = await asyncio.wait_for(connection.fetch(), 60)
            except TimeoutError:
                into.failures += 1
                await connection.close()
                await connection.open()
                continue
            into.latencies.append(time.perf_counter() - started)
            into.body_sizes.add(size)
            if status != 200:
                into.failures += 1

    pids = pids or {}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        into.seconds += time.perf_counter() - started
        for name, pid in pids.items():
            into.cpu[name] = into.cpu.get(name, 0.0) + cpu_seconds(pid) - cpu_before[name]
        await asyncio.gather(*(c.close() for c in connections))


# --- the services under test ---------------------------------------------------------------------


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/health/live")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not come up")


@dataclass
class Target:
    tickets_url: str
    gateway_url: str
    token: str
    pids: dict[str, int] = field(default_factory=dict)  # processes whose CPU time is reported


@contextlib.asynccontextmanager
async def started_suite(
    tickets_count: int, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Target]:
    """A scratch database, and the tickets and gateway processes in front of it (`extra_env`
    for both: tracing on, say)."""
    from quimbi_common.migrations import upgrade
    from quimbi_common.testing import SigningKeys, create_database, drop_database, unique

    keys = SigningKeys()
    token = keys.token("admin", ttl_seconds=3600)
    database = unique("bench_gateway_")
    database_url = await create_database(database)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        migrations = ROOT / "services" / "tickets" / "migrations"
        await asyncio.to_thread(upgrade, migrations, database_url)
        tickets_port, gateway_port = free_port(), free_port()
        tickets_url = f"http://127.0.0.1:{tickets_port}"
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        common = {
            **os.environ,
            "JWKS_JSON": keys.jwks_json,
            "LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
            "KAFKA_TOPIC_PREFIX": f"{unique('bench')}.",
            **(extra_env or {}),
        }
        tickets_env = {**common, "PORT": str(tickets_port), "DATABASE_URL": database_url}
        gateway_env = {
            **common,
            "PORT": str(gateway_port),
            "TICKETS_URL": tickets_url,
            "RATE_LIMIT_PER_AGENT": str(10**9),
            "RATE_LIMIT_PREFIX": unique("bench-gateway-rl:"),
        }
        for module, env in (("quimbi_tickets", tickets_env), ("quimbi_gateway", gateway_env)):
            processes.append(subprocess.Popen([sys.executable, "-m", module], env=env))  # noqa: ASYNC220
        await asyncio.gather(
            wait_ready(tickets_url, processes[0]), wait_ready(gateway_url, processes[1])
        )
        await create_tickets(tickets_url, token, tickets_count)
        pids = {"tickets": processes[0].pid, "gateway": processes[1].pid, "load": os.getpid()}
        yield Target(tickets_url, gateway_url, token, pids)
    finally:
        stop_processes(processes)
        await drop_database(database)


async def create_tickets(tickets_url: str, token: str, count: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=tickets_url, headers=headers, timeout=30) as client:

        async def create(i: int) -> None:
            response = await client.post(
                "/api/tickets",
                json={
                    "customer": {"email": f"bench{i % 40}@example.com", "name": f"Bench {i % 40}"},
                    "subject": f"Benchmark ticket {i}: where is my order?",
                    "channel": "email",
                    "priority": ["low", "normal", "high", "urgent"][i % 4],
                    "message": {
                        "content": "Hello, my parcel has not arrived yet.",
                        "from_agent": False,
                    },
                },
            )
            if response.status_code == 503:  # the shared database briefly out of connections
                await asyncio.sleep(1.0)
                await create(i)
                return
            response.raise_for_status()

        for start in range(0, count, 10):
            await asyncio.gather(*(create(i) for i in range(start, min(count, start + 10))))


# --- the run -------------------------------------------------------------------------------------


def cpu_line(result: Result) -> str:
    per_request = {
        name: seconds / len(result.latencies) * 1000 for name, seconds in result.cpu.items()
    }
    return ", ".join(f"{name} {ms:.2f}" for name, ms in per_request.items())


async def measure(target: Target, requests: int, rounds: int, concurrency: int) -> None:
    tickets, gateway, token = target.tickets_url, target.gateway_url, target.token
    direct, through = Result("direct to tickets"), Result("through the gateway")
    for url in (tickets, gateway):  # warm-up: connections, pools, caches
        await load(url, token, 200, concurrency, Result("warm-up"))
    per_round = max(1, requests // rounds)
    for _ in range(rounds):
        await load(tickets, token, per_round, concurrency, direct, target.pids)
        await load(gateway, token, per_round, concurrency, through, target.pids)
    unloaded_direct, unloaded_through = Result("direct, c=1"), Result("gateway, c=1")
    for _ in range(4):
        await load(tickets, token, 100, 1, unloaded_direct)
        await load(gateway, token, 100, 1, unloaded_through)

    print(
        f"\nGET {PATH}, concurrency {concurrency}, {per_round * rounds} requests each "
        f"({rounds} alternating rounds); body {sorted(direct.body_sizes)} bytes"
    )
    print(f"{'':24}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'errors':>8}   CPU ms per request")
    for r in (direct, through):
        print(
            f"{r.name:24}{r.pct(50):9.2f}{r.pct(99):9.2f}{r.rps:9.0f}{r.failures:8d}"
            f"   {cpu_line(r)}"
        )
    added = through.pct(50) - direct.pct(50)
    ratio = through.rps / direct.rps if direct.rps else 0.0
    print(
        f"gateway adds {added:+.2f} ms at p50 ({through.pct(99) - direct.pct(99):+.2f} ms at "
        f"p99); throughput {ratio:.0%} of direct  [goal: <= +1 ms, >= 75 %]"
    )
    unloaded = unloaded_through.pct(50) - unloaded_direct.pct(50)
    print(
        f"unloaded (concurrency 1): p50 direct {unloaded_direct.pct(50):.2f} ms, gateway "
        f"{unloaded_through.pct(50):.2f} ms -> the gateway adds {unloaded:+.2f} ms per request"
    )
    if direct.failures or through.failures:
        print("WARNING: some requests did not answer 200")


async def main(args: argparse.Namespace) -> None:
    if args.gateway_url and args.tickets_url and args.token:
        target = Target(args.tickets_url, args.gateway_url, args.token)
        await measure(target, args.requests, args.rounds, args.concurrency)
        return
    async with started_suite(args.tickets) as target:
        await measure(target, args.requests, args.rounds, args.concurrency)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tickets", type=int, default=200, help="tickets to create first")
    parser.add_argument("--gateway-url")
    parser.add_argument("--tickets-url")
    parser.add_argument("--token", help="an access token the tickets service accepts")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parse(sys.argv[1:])))
