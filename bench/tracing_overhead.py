"""What tracing costs (issue #17): the gateway benchmark's `GET /api/tickets?limit=50` through the
gateway to tickets, against three pairs of processes running side by side:

- `before`: the code before tracing (a commit given by `--baseline`, extracted with
  `git archive` and put first on PYTHONPATH), to show that tracing off costs ~0;
- `off`: this code, no exporter configured (the default);
- `on`: this code exporting over OTLP/HTTP to a small sink in this script (it answers 200 and
  counts bytes; its CPU is the load generator's, not the services'), with the default
  sampler (a tenth of new traces, see libs/common `tracing`);
- `on-all`: the same, every request traced (`OTEL_TRACES_SAMPLER=always_on`);
- `before-on`: the `--baseline` code with tracing on as in `on` (compares two implementations).

Rounds alternate between the three, so background noise on the shared machine falls on all
alike. The figure that matters is CPU per request of the gateway and tickets processes
(from /proc), with latency beside it. Goal: on ≤ +10 % CPU per request; off ≈ before.

    uv run python bench/tracing_overhead.py [--requests 3000] [--rounds 5] [--baseline REV]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _shared import free_port
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


@contextlib.contextmanager
def baseline_tree(revision: str) -> Iterator[str]:
    """PYTHONPATH entries for the gateway and tickets code of `revision` (and libs/common)."""
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


def per_request(result: Result) -> dict[str, float]:
    return {name: s / len(result.latencies) * 1000 for name, s in result.cpu.items()}


async def main(args: argparse.Namespace) -> None:
    with otlp_sink() as endpoint, baseline_tree(args.baseline) as old_code:
        variants = {
            "before": {"PYTHONPATH": old_code},
            "off": {},
            "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},  # default: 10 % of new traces
            "on-all": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": "always_on"},
            # the baseline's code with tracing on: compares two tracing implementations
            "before-on": {"PYTHONPATH": old_code, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
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
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for name, target in targets.items():
                    await load(
                        target.gateway_url,
                        target.token,
                        per_round,
                        args.concurrency,
                        results[name],
                        target.pids,
                    )
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
    if "before-on" in cpu:
        print(
            f"baseline's tracing on vs off: {cpu['before-on'] / cpu['off'] - 1:+.1%} CPU per "
            f"request (gateway {gateway['before-on'] / gateway['off'] - 1:+.1%})"
        )
    if "on-all" in cpu:
        print(
            f"every request traced: {cpu['on-all'] / cpu['off'] - 1:+.1%} CPU per request "
            f"(gateway {gateway['on-all'] / gateway['off'] - 1:+.1%})"
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
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
