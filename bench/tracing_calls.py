"""What tracing's code does per request, counted rather than timed (issue #17): on a machine
shared by five engineers the CPU figures of `tracing_overhead.py` move by ±10 % between
rounds, more than the unsampled path costs; the number of function calls made in tracing's
code (OpenTelemetry, wrapt, `quimbi_common.tracing`/`otlp`, Python and C calls alike) per
request does not depend on the load.

One process per sampler: `TracingMiddleware` around an app doing what a gateway request does
for tracing (one Redis command through the instrumented client, `tracing.propagate` of the
forwarded headers), 100 requests profiled with `sys.setprofile` after 50 of warm-up, and the
CPU time (all threads, export included: spans go to a local OTLP sink) of 5,000 more.

    uv run python bench/tracing_calls.py [--baseline REV]   # Redis must be up (make infra)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from tracing_overhead import baseline_tree, otlp_sink

PROGRAM = r"""
import asyncio, json, os, sys, time
from quimbi_common import tracing
tracing.configure_tracing("calls")
import redis.asyncio as aioredis

headers = [(b"host", b"x"), (b"user-agent", b"bench"), (b"authorization", b"Bearer abc"),
           (b"accept", b"*/*"), (b"x-request-id", b"abc")]
scope = {"type": "http", "path": "/api/tickets", "headers": headers, "method": "GET"}
redis = aioredis.from_url(os.environ["REDIS_URL"])

async def app(scope, receive, send):
    await redis.get("bench-tracing-calls")
    tracing.propagate(headers)
    await send({"type": "http.response.start", "status": 200, "headers": []})

async def send(message):
    return None

served = tracing.TracingMiddleware(app) if tracing.enabled() else app
OURS = ("opentelemetry", "quimbi_common/tracing", "quimbi_common/otlp", "wrapt")
calls = 0

def profile(frame, event, arg):
    global calls
    if event in ("call", "c_call") and any(o in frame.f_code.co_filename for o in OURS):
        calls += 1

async def main():
    for _ in range(50):
        await served(scope, None, send)
    sys.setprofile(profile)
    for _ in range(100):
        await served(scope, None, send)
    sys.setprofile(None)
    started = time.process_time()
    for _ in range(5000):
        await served(scope, None, send)
    tracing.shutdown()
    cpu = (time.process_time() - started) / 5000 * 1e6
    await redis.aclose()
    print(json.dumps({"calls": calls / 100, "cpu_us": cpu}))

asyncio.run(main())
"""

SAMPLERS = {
    "off": None,
    "on-none": "parentbased_always_off",
    "on": "parentbased_traceidratio",  # the default: a tenth of new traces
    "on-all": "always_on",
}


def measure(endpoint: str, sampler: str | None, pythonpath: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "QUIMBI_TRACE"))}
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    if sampler is not None:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_TRACES_SAMPLER=sampler)
        env["OTEL_TRACES_SAMPLER_ARG"] = "0.1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="also measure this revision's libs/common")
    args = parser.parse_args()
    with otlp_sink() as endpoint:
        trees = {"this": None}
        if args.baseline:
            stack = baseline_tree(args.baseline)
            trees[args.baseline] = stack.__enter__()
        print(f"{'':10}{'code':>12}{'calls in tracing code':>24}{'CPU µs per request':>22}")
        for name, sampler in SAMPLERS.items():
            for tree, path in trees.items():
                got = measure(endpoint, sampler, path)
                print(f"{name:10}{tree:>12}{got['calls']:24.1f}{got['cpu_us']:22.1f}")
        if args.baseline:
            stack.__exit__(None, None, None)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
