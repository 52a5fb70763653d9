"""Idle cost: the CPU the suite burns doing nothing, per process, in ms of CPU per second.

Needs the local infrastructure (`make infra`). Starts the suite as `make run` does (the
launcher in deploy/local, no demo data), on ports offset by `--port-offset` (16000), with
scratch databases, a private topic prefix and consumer groups, Redis database `--redis-db`;
waits until every service is ready, lets it settle (`--settle`, consumers joined, first lag
measurements done), then reads from /proc, over `--seconds`:

- each service process (with any children it started),
- the PostgreSQL backends connected to the suite's databases (the connections the services
  hold: pools, LISTEN connections), summed,
- the Kafka broker's JVM: only meaningful with a broker of its own (`--kafka` naming a
  private one, e.g. `deploy/local/infra.sh start-kafka` with `KAFKA_PORT` and
  `QUIMBI_LOCAL_DIR` set); the shared broker serves every other test run too.

`--profile` then records every service with py-spy (from PyPI, through uv; idle frames left
out, so only what runs on the CPU is sampled) for another `--seconds` and prints each
service's busiest frames; the collapsed stacks stay in the log folder. `--code DIR` runs
the services from another checkout of this repository (its `libs/common/src` and
`services/*/src` put first on PYTHONPATH), e.g. a `git archive` of main, for a before/after
with the same launcher and the same measurement.

    uv run python bench/idle_cost.py [--seconds 30] [--settle 20] [--profile] [--code DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import sys
import time
from pathlib import Path

import asyncpg
from _shared import cpu_seconds, drop_scratch, flushed_redis, py_spy_record, record
from suite_cost import ADMIN_DSN

from quimbi_common.testing import KAFKA, unique

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from launcher import Options, Suite  # noqa: E402


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a service that runs several processes counts as one)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children[int(stat[1])].append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(children.get(current, ()))
    return tree


def broker_pid(bootstrap: str) -> int | None:
    """The JVM of the Kafka broker listening on `bootstrap`'s port (from its server.properties)."""
    port = bootstrap.rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"kafka.Kafka" in args:
                config = Path(args[args.index(b"kafka.Kafka") + 1].decode()).read_text()
                if f"PLAINTEXT://127.0.0.1:{port}," in config:
                    return int(entry.name)
    return None


def tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def tree_wakeups(pids: list[int]) -> int:
    """Voluntary context switches of every thread: each is a sleep that something ended (a
    timer, a socket), the count of times an idle process was woken."""
    total = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
    return total


async def backends(databases: list[str]) -> list[int]:
    """The PostgreSQL backends connected to the suite's databases."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])", databases
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def measure(
    suite: Suite, databases: list[str], seconds: float, kafka: str
) -> dict[str, tuple[float, float]]:
    """CPU ms per second and wake-ups per second of each service, the suite's PostgreSQL
    backends and Kafka."""
    groups = {s.name: process_tree(s.process.pid) for s in suite.services if s.process is not None}
    groups["postgres"] = await backends(databases)
    broker = broker_pid(kafka)
    if broker is not None:
        groups["kafka" if kafka != KAFKA else "kafka (shared)"] = [broker]
    before = {name: (tree_cpu(pids), tree_wakeups(pids)) for name, pids in groups.items()}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    took = time.monotonic() - started
    return {
        name: (
            (tree_cpu(pids) - before[name][0]) / took * 1000,
            (tree_wakeups(pids) - before[name][1]) / took,
        )
        for name, pids in groups.items()
    }


async def profile(suite: Suite, seconds: float, folder: Path) -> None:
    """py-spy every service for `seconds` at once, then print each one's busiest frames."""
    runs = {}
    for service in suite.services:
        if service.process is None:
            continue
        output = folder / f"{service.name}.idle.pyspy.txt"
        runs[service.name] = (
            output,
            await py_spy_record(
                service.process.pid, seconds, output, 100, "--subprocesses", "--nonblocking"
            ),
        )
    for name, (output, process) in runs.items():
        await process.wait()
        print(f"\n{name}: py-spy, {seconds:.0f} s idle ({output})")
        for line in summarise(output):
            print(f"  {line}")


def summarise(path: Path, top: int = 8) -> list[str]:
    """Samples in total, and the frames that appear in the most samples (inclusive), leaving
    out those nearly every sample has (the process, uvicorn, the event loop)."""
    if not path.exists():
        return ["no profile (is ptrace allowed?)"]
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    lines = [f"{total} samples at 100/s ({total / 100:.2f} s seen on the CPU)"]
    common = [(frame, n) for frame, n in inclusive.most_common() if n < 0.9 * total]
    lines += [f"{n:6d}  {frame[:150]}" for frame, n in common[:top]]
    return lines


def source_path(checkout: str) -> str:
    """PYTHONPATH that makes the services import another checkout's code."""
    code = Path(checkout).resolve()
    paths = [code / "libs" / "common" / "src", *sorted(code.glob("services/*/src"))]
    return os.pathsep.join(map(str, paths))


async def main(args: argparse.Namespace) -> None:
    namespace = unique("_idle")
    redis_url = flushed_redis(args.redis_db)
    extra_env = {"AUTO_ASSIGN": "false", "LOG_LEVEL": "WARNING"}
    if args.code:
        extra_env["PYTHONPATH"] = source_path(args.code)
    opts = Options(
        port_offset=args.port_offset,
        namespace=namespace,
        redis_url=redis_url,
        kafka=args.kafka,
        log_dir=ROOT / ".local" / "logs" / namespace.strip("_"),
        seed=False,
        echo_logs=False,
        extra_env=extra_env,
    )
    suite = Suite(opts)
    databases = sorted({s.database for s in suite.services if s.database})
    code_name = args.code or "this checkout"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; code {code_name}")
    await suite.prepare_databases()
    await suite.start()
    try:
        await suite.wait_ready(timeout=180)
        await asyncio.sleep(args.settle)
        load = os.getloadavg()[0]
        used = await measure(suite, databases, args.seconds, args.kafka)
        print(f"\nidle CPU over {args.seconds:.0f} s (load average {load:.1f} at the start):")
        own = woken = 0.0
        for name, (ms, wakeups) in sorted(used.items(), key=lambda item: -item[1][0]):
            print(f"  {name:<16} {ms:7.1f} ms/s  {wakeups:7.0f} wake-ups/s")
            if not name.startswith("kafka"):
                own, woken = own + ms, woken + wakeups
        print(f"  {'suite + backends':<16} {own:7.1f} ms/s  {woken:7.0f} wake-ups/s")
        per_service = ", ".join(
            f"{name} {ms:.1f}"
            for name, (ms, _) in sorted(used.items())
            if not name.startswith("kafka")
        )
        record(
            "idle CPU, suite processes + their PostgreSQL backends (ms/s)",
            "as low as latency allows",
            f"{own:.1f} ms/s ({per_service})",
            ", ".join(f"{k} {v:.1f} ms/s" for k, (v, _) in used.items() if k.startswith("kafka")),
        )
        if args.profile:
            await profile(suite, args.seconds, opts.log_dir)
    finally:
        await suite.stop()
        await drop_scratch(databases, f"{namespace}.", kafka=args.kafka)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--port-offset", type=int, default=16000)
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--kafka", default=KAFKA, help="a broker of its own: its CPU counts")
    parser.add_argument("--profile", action="store_true", help="py-spy every service after")
    parser.add_argument("--code", help="run the services from this checkout (before/after)")
    asyncio.run(main(parser.parse_args()))
