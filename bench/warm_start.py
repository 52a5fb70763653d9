"""Warm start: how long `make run` takes when everything is already in place.

Needs the local infrastructure (`make infra`). Runs the launcher in deploy/local as `make run`
does (demo data seeded), on ports offset by `--port-offset` (7000), with its own databases
(`--namespace`), topic prefix and Redis database, and no infrastructure watch (the servers
are shared). The first start is the cold one (databases created and migrated, demo data
written) and is not counted; then `--runs` warm starts, each stopped with SIGINT once the
banner is printed. Prints, per warm start: seconds to the banner, and when each phase began
(migrations, services spawned, each service ready, seeding), the CPU seconds the launcher and
every process it started spent from its start to its stop (from getrusage of reaped children:
load-independent, unlike the seconds), and the load average.

    uv run python bench/warm_start.py [--runs 3] [--port-offset 7000] [--namespace _warm]
                                      [--kafka 127.0.0.1:9092] [--launcher other/launcher.py]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _shared import record

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"\[suite\] (\S+) ready on ")


async def one_start(args: argparse.Namespace, log_dir: Path) -> dict[str, float]:
    """Start the suite, wait for its banner, stop it; the phases' times from its own start."""
    started = time.monotonic()
    cpu_before = _children_cpu()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(args.launcher),
        "--port-offset",
        str(args.port_offset),
        "--namespace",
        args.namespace,
        "--redis-url",
        f"redis://127.0.0.1:6379/{args.redis_db}",
        "--log-dir",
        str(log_dir),
        "--kafka",
        args.kafka,
        "--no-infra-watch",
        "--quiet",
        cwd=args.launcher.parents[2],
        env={**os.environ, "NO_COLOR": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    phases: dict[str, float] = {}
    tail: list[str] = []
    try:
        async with asyncio.timeout(args.timeout):
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                tail = [*tail, line][-20:]
                at = time.monotonic() - started
                if "migrating databases" in line:
                    phases["migrate"] = at
                elif "starting services" in line:
                    phases["spawn"] = at
                elif match := READY.search(line):
                    phases[f"ready:{match.group(1)}"] = at
                elif "all services ready" in line:
                    phases["all ready"] = at
                elif "seeding demo data" in line:
                    phases["seed"] = at
                elif "is up (" in line:
                    phases["banner"] = at
                    break
    except TimeoutError:
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"no banner after {args.timeout:.0f}s") from None
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                await process.communicate()
    if "banner" not in phases:
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"the launcher exited with {process.returncode} before its banner")
    phases["cpu"] = _children_cpu() - cpu_before
    return phases


def _children_cpu() -> float:
    """User + system CPU of every reaped descendant (the launcher reaps the services)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def main(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="warm-start-"))
    print(f"cold start (not counted; logs in {log_dir}) …", flush=True)
    cold = await one_start(args, log_dir)
    print(f"  cold: {cold['banner']:.1f}s", flush=True)
    totals, cpus = [], []
    for run in range(1, args.runs + 1):
        phases = await one_start(args, log_dir)
        totals.append(phases["banner"])
        cpus.append(phases.pop("cpu"))
        shown = ", ".join(f"{name} {at:.1f}" for name, at in phases.items())
        print(f"warm {run}: {phases['banner']:.1f}s, {cpus[-1]:.1f} CPU s  ({shown})", flush=True)
        print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)
    median, cpu = statistics.median(totals), statistics.median(cpus)
    print(f"warm start, median of {len(totals)}: {median:.1f}s, {cpu:.1f} CPU s (goal < 15 s)")
    record(
        "warm `make run` start",
        "< 15 s",
        f"{median:.1f} s, {cpu:.1f} CPU s",
        f"median of {len(totals)}",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port-offset", type=int, default=7000)
    parser.add_argument("--namespace", default="_warm")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--kafka", default="127.0.0.1:9092", help="the broker (a private one?)")
    parser.add_argument(
        "--launcher",
        type=Path,
        default=ROOT / "deploy" / "local" / "launcher.py",
        help="another revision's launcher.py (in a `git archive` of it), to compare",
    )
    asyncio.run(main(parser.parse_args()))
