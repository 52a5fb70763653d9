"""What tracing costs (issue #17): the gateway benchmark's `GET /api/tickets?limit=50` through the
gateway to tickets, against three pairs of processes running side by side:

- `before`: the code before tracing (a commit given by `--baseline`, extracted with
  `git archive` and put first on PYTHONPATH), to show that tracing off costs ~0;
- `off`: this code, no exporter configured (the default);
- `off-again`: the same as `off` in another pair of processes: an A/A control, how far apart
  two identical variants read on this machine (the bench's resolution);
- `on`: this code exporting over OTLP/HTTP to a small sink in this script (it answers 200 and
  counts bytes; its CPU is the load generator's, not the services'), with the default
  sampler (a tenth of new traces, see libs/common `tracing`);
- `on-all`: the same, every request traced (`OTEL_TRACES_SAMPLER=always_on`);
- `on-none`: the same, no request traced (`parentbased_always_off`): the unsampled path;
- `before-on`, `before-on-none`, `before-on-all`: the `--baseline` code with tracing on as in
  `on`, `on-none`, `on-all` (compares two implementations).

Rounds alternate between the variants (each round starting one further along), so
background noise on the shared machine falls on all alike. The figure that matters is CPU
per request of the gateway and tickets processes (from /proc, less what they burn idle:
measured for `--idle-seconds` before each round and subtracted for the round's duration),
with latency beside it, and the median over rounds of each round's ratio to `off` (paired
in time, steadier than the totals on a shared machine). Goal: on ≤ +10 % CPU per request;
off ≈ before.

    uv run python bench/tracing_overhead.py [--requests 3000] [--rounds 5] [--baseline REV]

`--py-spy DIR` then profiles each variant's gateway and tickets under the same load
(`uv run --with py-spy python bench/tracing_overhead.py --variants off,on --py-spy /tmp/prof`):
py-spy's collapsed stacks (`DIR/<variant>-<process>.txt`, one `frames count` a line) and a
summary of the tracing frames' share of each process's samples; not part of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _shared import baseline_tree, cpu_seconds, free_port
from gateway_overhead import Result, load, started_suite

ROOT = Path(__file__).resolve().parents[1]


class _Sink(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        _Sink.received += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts everything."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


TRACING_FRAMES = ("opentelemetry/", "quimbi_common/tracing.py", "quimbi_common/trace_file.py")
# Frames of the work a tracing wrapper wraps (the app, the Redis command): not tracing's cost.
WRAPPED_FRAMES = ("quimbi_", "starlette/", "fastapi/", "uvicorn/", "redis/", "sqlalchemy/")


def tracing_sample(stack: str) -> bool:
    """Whether a sample is tracing's own work: the frame nearest the leaf that is either
    tracing or wrapped work is tracing (helpers it calls, e.g. `re`, protobuf, count too)."""
    for frame in reversed(stack.split(";")):
        if any(f in frame for f in TRACING_FRAMES):
            return True
        if any(f in frame for f in WRAPPED_FRAMES):
            return False
    return False


async def profile(name: str, target: Any, args: argparse.Namespace) -> None:
    """py-spy on the gateway and tickets of one variant while it serves `--requests`
    (`--gil`: only samples of a thread running Python, so waiting does not count)."""
    out = Path(args.py_spy)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    spy = shutil.which("py-spy") or "py-spy"
    options = ["--rate", str(args.py_spy_rate), "--gil", "--format", "raw"]
    spies = {
        process: subprocess.Popen(  # noqa: ASYNC220
            [spy, "record", "--pid", str(pid), *options, "--output", f"{out}/{name}-{process}.txt"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for process, pid in target.pids.items()
    }
    await asyncio.sleep(1.0)  # py-spy attached
    await load(target.gateway_url, target.token, args.requests, args.concurrency, Result(name))
    for spy_process in spies.values():
        spy_process.send_signal(2)  # SIGINT: py-spy writes its file and exits
    for process, spy_process in spies.items():
        await asyncio.to_thread(spy_process.wait)
        busy = tracing = 0
        for line in (out / f"{name}-{process}.txt").read_text().splitlines():
            stack, _, count = line.rpartition(" ")  # --gil: samples of Python running only
            busy += int(count)
            tracing += int(count) if tracing_sample(stack) else 0
        share = tracing / busy if busy else 0.0
        print(f"py-spy {name} {process}: {busy} busy samples, tracing frames {share:.1%}")


async def idle_rates(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per second each process spends with no request (consumer polls, timers,
    the relay): subtracted from a round's CPU, so a round slowed by other load on the
    machine does not count more background work per request."""
    if seconds <= 0:
        return {}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(seconds)
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


def per_request(result: Result) -> dict[str, float]:
    return {name: s / len(result.latencies) * 1000 for name, s in result.cpu.items()}


async def main(args: argparse.Namespace) -> None:
    with otlp_sink() as endpoint, baseline_tree(args.baseline) as old_code:
        variants = {
            "before": {"PYTHONPATH": old_code},
            "off": {},
            "off-again": {},  # the same as off: an A/A control, what the bench cannot resolve
            "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},  # default: 10 % of new traces
            "on-all": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": "always_on"},
            # on, nothing sampled: what every unsampled request pays
            "on-none": {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_TRACES_SAMPLER": "parentbased_always_off",
            },
            # the baseline's code with tracing on: compares two tracing implementations
            "before-on": {"PYTHONPATH": old_code, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
            "before-on-none": {
                "PYTHONPATH": old_code,
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_TRACES_SAMPLER": "parentbased_always_off",
            },
            "before-on-all": {
                "PYTHONPATH": old_code,
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_TRACES_SAMPLER": "always_on",
            },
        }
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
        async with contextlib.AsyncExitStack() as stack:
            targets = {
                name: await stack.enter_async_context(started_suite(args.tickets, env))
                for name, env in variants.items()
            }
            for target in targets.values():
                target.pids.pop("load", None)
                await load(target.gateway_url, target.token, 300, args.concurrency, Result("warm"))
            results = {name: Result(name) for name in targets}
            # per round: each process's CPU ms per request (idle subtracted)
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            per_round = max(1, args.requests // args.rounds)
            order = list(targets.items())
            for round_number in range(args.rounds):
                shift = round_number % len(order)  # each variant takes each place in turn
                for name, target in order[shift:] + order[:shift]:
                    idle = await idle_rates(target.pids, args.idle_seconds)
                    seconds = results[name].seconds
                    cpu_before = dict(results[name].cpu)
                    count = len(results[name].latencies)
                    await load(
                        target.gateway_url,
                        target.token,
                        per_round,
                        args.concurrency,
                        results[name],
                        target.pids,
                    )
                    took = results[name].seconds - seconds
                    for process, rate in idle.items():  # background work is not per request
                        results[name].cpu[process] -= rate * took
                    served = len(results[name].latencies) - count
                    rounds[name].append(
                        {
                            process: (used - cpu_before.get(process, 0.0)) / served * 1000
                            for process, used in results[name].cpu.items()
                        }
                    )
            if args.py_spy:
                for name, target in targets.items():
                    await profile(name, target, args)
    print(
        f"\nGET /api/tickets?limit=50 through the gateway, concurrency {args.concurrency}, "
        f"{per_round * args.rounds} requests per variant ({args.rounds} alternating rounds); "
        f"spans received by the OTLP sink: {_Sink.received} bytes"
    )
    print(f"{'':10}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'errors':>8}   CPU ms per request")
    cpu = {}
    for name, result in results.items():
        ms = per_request(result)
        cpu[name] = sum(ms.values())
        parts = ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
        print(
            f"{name:10}{result.pct(50):9.2f}{result.pct(99):9.2f}{result.rps:9.0f}"
            f"{result.failures:8d}   {parts}, both {cpu[name]:.3f}"
        )
    gateway = {name: per_request(r)["gateway"] for name, r in results.items()}
    if not {"off", "on"} <= cpu.keys():
        return
    if "before" in cpu:
        print(
            f"tracing off vs before: {cpu['off'] / cpu['before'] - 1:+.1%} CPU per request "
            f"(gateway {gateway['off'] / gateway['before'] - 1:+.1%})  [goal: ~0]"
        )
    print(
        f"tracing on vs off:     {cpu['on'] / cpu['off'] - 1:+.1%} CPU per request "
        f"(gateway {gateway['on'] / gateway['off'] - 1:+.1%})  [goal: <= +10 %]"
    )
    for name in ("on-none", "before-on", "before-on-none", "before-on-all"):
        if name in cpu:
            print(
                f"{name} vs off: {cpu[name] / cpu['off'] - 1:+.1%} CPU per request "
                f"(gateway {gateway[name] / gateway['off'] - 1:+.1%})"
            )
    if "on-all" in cpu:
        print(
            f"every request traced: {cpu['on-all'] / cpu['off'] - 1:+.1%} CPU per request "
            f"(gateway {gateway['on-all'] / gateway['off'] - 1:+.1%})"
        )
    if "off" not in rounds:
        return
    print(
        "median over rounds of each round's ratio to off (rounds are paired in time, so a "
        "busier minute of the shared machine weighs on both sides of a ratio):"
    )
    for name in results:
        if name == "off":
            continue
        ratios = {
            process: statistics.median(
                mine[process] / theirs[process] - 1
                for mine, theirs in zip(rounds[name], rounds["off"], strict=True)
            )
            for process in ("gateway", "tickets")
        }
        both = statistics.median(
            sum(mine.values()) / sum(theirs.values()) - 1
            for mine, theirs in zip(rounds[name], rounds["off"], strict=True)
        )
        print(
            f"  {name:15} gateway {ratios['gateway']:+.1%}, tickets {ratios['tickets']:+.1%}, "
            f"both {both:+.1%}"
        )
    if any(r.failures for r in results.values()):
        print("WARNING: some requests did not answer 200")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument(
        "--baseline", default="main", help="the revision measured as `before` and `before-on`"
    )
    parser.add_argument(
        "--variants", default="before,off,on,on-all", help="a subset, to profile one"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=2.0,
        help="idle CPU measured before each round and subtracted (0: not subtracted)",
    )
    parser.add_argument("--py-spy", help="a directory: profile each variant afterwards (py-spy)")
    parser.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per second")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
