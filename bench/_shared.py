"""Helpers every benchmark script uses (scripts import it from their own folder)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def record(figure: str, goal: str, measured: str, note: str = "") -> None:
    """Hand one figure to `make bench`'s summary table (bench/report.py): a JSON line appended
    to the file BENCH_FIGURES names; nothing when a script runs alone."""
    path = os.environ.get("BENCH_FIGURES")
    if not path:
        return
    load = f"load {os.getloadavg()[0]:.1f}"
    line = {"figure": figure, "goal": goal, "measured": measured, "note": note, "load": load}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """Terminate the benchmark's servers, then kill any that has not exited within `timeout`."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def baseline_tree(revision: str) -> Iterator[str]:
    """PYTHONPATH entries for every service's code of `revision` and its libs/common (put
    first, they run that revision's code in this checkout's environment and schema)."""
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as where:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "libs/common/src", "services"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", where], input=archive, check=True)
        paths = [f"{where}/libs/common/src"] + [
            str(p) for p in sorted(Path(where, "services").glob("*/src"))
        ]
        yield ":".join(paths)


async def drop_scratch(
    databases: Iterable[str], prefix: str, groups: Iterable[str] | None = None, kafka: str = ""
) -> None:
    """Drop a run's scratch databases, its prefixed Kafka topics and its consumer groups (those
    named, or every group of the prefix); Kafka errors are ignored (it is tidying up)."""
    import asyncpg
    from aiokafka.admin import AIOKafkaAdminClient

    from quimbi_common.testing import ADMIN_DSN, KAFKA

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        for database in databases:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka or KAFKA)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        with contextlib.suppress(Exception):
            await admin.delete_topics(topics)
        with contextlib.suppress(Exception):
            if groups is None:
                groups = [g for g, *_ in await admin.list_consumer_groups() if g.startswith(prefix)]
            await admin.delete_consumer_groups(list(groups))
    finally:
        await admin.close()


def flushed_redis(db: int) -> str:
    """The URL of local Redis database `db`, emptied for a run that owns it."""
    import redis

    url = f"redis://127.0.0.1:6379/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


async def py_spy_record(
    pid: int, seconds: float, output: Path, rate: int, *options: str
) -> asyncio.subprocess.Process:
    """py-spy (installed, or from PyPI through uv) recording `pid` for `seconds` as raw stacks
    into `output`; wait for the returned process."""
    spy = ["py-spy"] if shutil.which("py-spy") else ["uv", "tool", "run", "py-spy"]
    return await asyncio.create_subprocess_exec(
        *spy,
        "record",
        "--pid",
        str(pid),
        *options,
        "--duration",
        str(round(seconds)),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
