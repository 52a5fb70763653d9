"""Tracing off costs nothing (no SDK), on it puts trace ids in log lines and spans in a file.

Each case runs in a fresh interpreter: the OpenTelemetry tracer provider is process-global."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import json, logging, sys
from quimbi_common import tracing
from quimbi_common.observability import JsonFormatter
on = tracing.configure_tracing("probe")
record = logging.LogRecord("probe", logging.INFO, "probe.py", 1, "hello", None, None)
with tracing.tracer.start_as_current_span("work"):
    line = json.loads(JsonFormatter("probe").format(record))
    carrier = tracing.current_carrier()
    incoming = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"
    forwarded = tracing.propagate([(b"traceparent", incoming)])
tracing.shutdown()
print(json.dumps({
    "on": on,
    "sdk_loaded": "opentelemetry.sdk.trace" in sys.modules,
    "log": line,
    "carrier": carrier,
    "forwarded": [[n.decode(), v.decode()] for n, v in forwarded],
}))
"""


def run(tmp_path: Path, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "QUIMBI_TRACE"))}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_off_by_default_no_sdk_no_ids_and_the_callers_traceparent_passes(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result["on"] is False
    assert result["sdk_loaded"] is False
    assert "trace_id" not in result["log"]  # type: ignore[operator]
    assert result["carrier"] == {}
    assert result["forwarded"] == [["traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"]]


def test_on_log_lines_carry_the_span_and_spans_reach_the_file(tmp_path: Path) -> None:
    spans = str(tmp_path / "spans-{service}-{pid}.jsonl")
    result = run(tmp_path, QUIMBI_TRACE_FILE=spans, OTEL_TRACES_SAMPLER="always_on")
    assert result["on"] is True
    log = result["log"]
    assert isinstance(log, dict)
    carrier = result["carrier"]
    assert isinstance(carrier, dict)
    assert carrier["traceparent"].startswith(f"00-{log['trace_id']}-{log['span_id']}-")
    # the gateway forwards its own context, not the caller's
    assert result["forwarded"] == [["traceparent", carrier["traceparent"]]]
    [path] = tmp_path.glob("spans-probe-*.jsonl")
    [span] = [json.loads(line) for line in path.read_text().splitlines()]
    assert (span["name"], span["service"], span["trace_id"], span["span_id"]) == (
        "work",
        "probe",
        log["trace_id"],
        log["span_id"],
    )


MIDDLEWARE = """
import asyncio, json, httpx
from fastapi import FastAPI, Request
from opentelemetry.propagate import inject
from quimbi_common import tracing
tracing.configure_tracing("probe")
app = FastAPI(telemetry=tracing.fastapi_telemetry())
app.add_middleware(tracing.TracingMiddleware)
seen = {}

@app.get("/items/{item}")
async def item(item: str, request: Request) -> dict:
    seen[item] = tracing.current_carrier().get("traceparent")
    injected = {}
    inject(injected)  # what a client instrumentation (httpx) sends on
    seen[item + " injected"] = injected.get("traceparent")
    forwarded = tracing.propagate([(b"accept", b"*/*"), *request.scope["headers"]])
    seen[item + " forwarded"] = [v.decode() for n, v in forwarded if n == b"traceparent"]
    seen[item + " log"] = list(tracing.log_ids() or ())
    return {}

@app.get("/broken")
async def broken() -> dict:
    return 1 / 0

async def main():
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        caller = "00-" + "1" * 32 + "-" + "2" * 16
        await client.get("/items/a1", headers={"traceparent": caller + "-01"})
        await client.get("/items/a2", headers={"traceparent": caller + "-00"})
        await client.get("/items/a3")
        await client.get("/broken", headers={"traceparent": caller + "-01"})
asyncio.run(main())
tracing.shutdown()
print(json.dumps(seen))
"""


def sampled_flag(traceparent: str) -> bool:
    return bool(int(traceparent.rsplit("-", 1)[1], 16) & 1)


def test_the_middleware_records_sampled_requests_and_forwards_the_decision(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "QUIMBI_TRACE"))}
    spans_path = tmp_path / "spans.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", MIDDLEWARE],
        env={
            **clean,
            "QUIMBI_TRACE_FILE": str(spans_path),
            "OTEL_TRACES_SAMPLER": "parentbased_always_off",
        },
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    spans = [json.loads(line) for line in spans_path.read_text().splitlines()]
    # sampled by the caller: one SERVER span named by the route template, child of the caller
    [failed, sampled] = sorted(spans, key=lambda s: s["name"])
    assert (sampled["name"], sampled["kind"]) == ("GET /items/{item}", "SERVER")
    assert (sampled["trace_id"], sampled["parent_span_id"]) == ("1" * 32, "2" * 16)
    assert seen["a1"] == f"00-{'1' * 32}-{sampled['span_id']}-01"
    # not sampled by the caller: nothing recorded, the caller's traceparent goes on as it came
    assert seen["a2"] == f"00-{'1' * 32}-{'2' * 16}-00"
    # no caller, and the sampler says no here: a new trace, not sampled, still forwarded
    assert not sampled_flag(seen["a3"])
    assert "1" * 32 not in seen["a3"]
    for item in ("a1", "a2", "a3"):  # httpx, the gateway's proxy and log lines agree
        assert seen[f"{item} injected"] == seen[item]
        assert seen[f"{item} forwarded"] == [seen[item]]
        assert seen[f"{item} log"] == [seen[item][3:35], seen[item][36:52]]
    # a request that fails is a recorded error, still named by its route
    assert failed["name"] == "GET /broken"
    assert failed["status"] == "ERROR"


# The probes' shared start: tracing configured, and a remote parent span, sampled or not.
PROBE_PRELUDE = """
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from quimbi_common import tracing
tracing.configure_tracing("probe")

def parent(sampled):
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span_context = SpanContext(int("1" * 32, 16), int("2" * 16, 16), True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(span_context))
"""

CLIENT_SPANS = (
    PROBE_PRELUDE
    + """
import asyncio, json
import redis.asyncio as aioredis

async def main():
    client = aioredis.from_url(REDIS_URL)
    await client.get("tracing-probe-none")  # no parent
    from opentelemetry import context
    for sampled, key in ((False, "unsampled"), (True, "sampled")):
        token = context.attach(parent(sampled))
        try:
            await client.get(f"tracing-probe-{key}")
        finally:
            context.detach(token)
    await client.aclose()
asyncio.run(main())
tracing.shutdown()
"""
)


def test_client_spans_only_inside_a_sampled_trace(tmp_path: Path) -> None:
    """A Redis command opens a span under a sampled parent, and costs no span at all under an
    unsampled one or none (most of tracing's CPU, bench/tracing_overhead.py)."""
    from quimbi_common.testing import REDIS_URL

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "QUIMBI_TRACE"))}
    spans_path = tmp_path / "spans.jsonl"
    subprocess.run(
        [sys.executable, "-c", f"REDIS_URL = {REDIS_URL!r}\n" + CLIENT_SPANS],
        env={**clean, "QUIMBI_TRACE_FILE": str(spans_path), "OTEL_TRACES_SAMPLER": "always_on"},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    spans = [json.loads(line) for line in spans_path.read_text().splitlines()]
    assert [(s["name"], s["trace_id"], s["parent_span_id"]) for s in spans] == [
        ("GET", "1" * 32, "2" * 16)
    ]


RATIO = """
import asyncio, json, httpx
from fastapi import FastAPI
from quimbi_common import tracing
tracing.configure_tracing("probe")
app = FastAPI(telemetry=tracing.fastapi_telemetry())
app.add_middleware(tracing.TracingMiddleware)
seen = []

@app.get("/items")
async def items() -> dict:
    seen.append(tracing.current_carrier())
    return {}

async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        for _ in range(200):
            await client.get("/items")
        caller = "00-" + "1" * 32 + "-" + "2" * 16 + "-00"
        await client.get("/items", headers={"traceparent": caller, "tracestate": "vendor=x"})
asyncio.run(main())
tracing.shutdown()
print(json.dumps(seen))
"""


def test_the_edge_decision_and_the_recorded_spans_agree(tmp_path: Path) -> None:
    """The middleware decides on a new trace's id itself (no SDK for the unsampled); the SDK
    records exactly the requests it said yes to, under the same trace id, at the configured
    ratio (not the ratio squared), and an unsampled caller's tracestate travels on."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "QUIMBI_TRACE"))}
    spans_path = tmp_path / "spans.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", RATIO],
        env={
            **clean,
            "QUIMBI_TRACE_FILE": str(spans_path),
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.5",
        },
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    *fresh, continued = json.loads(done.stdout.strip().splitlines()[-1])
    spans = [json.loads(line) for line in spans_path.read_text().splitlines()]
    sampled = [c["traceparent"] for c in fresh if sampled_flag(c["traceparent"])]
    recorded = [f"00-{s['trace_id']}-{s['span_id']}-03" for s in spans]
    assert sorted(sampled) == sorted(recorded)
    assert 60 <= len(sampled) <= 140  # 0.5 of 200 (0.25 would be the ratio applied twice)
    assert len({c["traceparent"][3:35] for c in fresh}) == 200  # a new trace each
    assert all(c["traceparent"].endswith("-02") for c in fresh if c["traceparent"] not in sampled)
    assert continued["traceparent"].startswith(f"00-{'1' * 32}-")
    assert continued["traceparent"].endswith("-00")
    assert continued["tracestate"] == "vendor=x"


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        ("00-" + "a" * 32 + "-" + "b" * 16 + "-01", True),
        (" 00-" + "a" * 32 + "-" + "b" * 16 + "-00\t", True),
        ("01-" + "a" * 32 + "-" + "b" * 16 + "-01-future", True),  # a later version's extra
        ("00-" + "a" * 32 + "-" + "b" * 16 + "-01-extra", False),
        ("ff-" + "a" * 32 + "-" + "b" * 16 + "-01", False),
        ("00-" + "A" * 32 + "-" + "b" * 16 + "-01", False),
        ("00-" + "0" * 32 + "-" + "b" * 16 + "-01", False),
        ("00-" + "a" * 32 + "-" + "0" * 16 + "-01", False),
        ("00-" + "a" * 31 + "-" + "b" * 16 + "-01", False),
        ("", False),
    ],
)
def test_a_callers_traceparent_is_read_as_the_w3c_propagator_reads_it(
    header: str, valid: bool
) -> None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from quimbi_common.tracing import _caller

    caller = _caller([(b"host", b"x"), (b"traceparent", header.encode())])
    theirs = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": header})
    )
    assert (caller is not None) == valid == theirs.get_span_context().is_valid
    if caller is not None:
        ours = trace.get_current_span(caller.context()).get_span_context()
        assert ours == theirs.get_span_context()


def test_the_standard_samplers_are_decided_without_the_sdk() -> None:
    from opentelemetry.sdk.trace import sampling

    from quimbi_common.tracing import _head_rule

    limit = 1 << 64
    assert _head_rule(sampling.ParentBased(sampling.TraceIdRatioBased(0.1))) == (
        True,
        round(0.1 * limit),
    )
    assert _head_rule(sampling.DEFAULT_OFF) == (True, 0)
    assert _head_rule(sampling.ALWAYS_ON) == (False, limit)
    assert _head_rule(sampling.TraceIdRatioBased(0.5)) == (False, limit // 2)
    # anything else is the SDK's to decide
    assert _head_rule(sampling.ParentBased(sampling.ALWAYS_ON, sampling.ALWAYS_OFF)) is None
    assert _head_rule(sampling.AlwaysRecordSampler(sampling.ALWAYS_OFF)) is None


SQL_SPANS = (
    PROBE_PRELUDE
    + """
import asyncio
from opentelemetry import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

async def main():
    engine = create_async_engine(DATABASE_URL)
    tracing.instrument_engine(engine)
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))  # no parent
    for sampled, value in ((False, 2), (True, 3)):
        token = context.attach(parent(sampled))
        try:
            async with engine.connect() as connection:  # a checkout inside the trace
                await connection.execute(text(f"SELECT {value}"))
        finally:
            context.detach(token)
    await engine.dispose()
asyncio.run(main())
tracing.shutdown()
"""
)


def test_sql_spans_only_inside_a_sampled_trace_and_no_connect_span(tmp_path: Path) -> None:
    """A statement opens a span under a sampled parent only (the instrumentation's hook is
    skipped otherwise), and a session's pool checkout opens none."""
    from quimbi_common.testing import ADMIN_DSN

    url = ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "QUIMBI_TRACE"))}
    spans_path = tmp_path / "spans.jsonl"
    subprocess.run(
        [sys.executable, "-c", f"DATABASE_URL = {url!r}\n" + SQL_SPANS],
        env={**clean, "QUIMBI_TRACE_FILE": str(spans_path), "OTEL_TRACES_SAMPLER": "always_on"},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    spans = [json.loads(line) for line in spans_path.read_text().splitlines()]
    assert [(s["kind"], s["trace_id"], s["parent_span_id"]) for s in spans] == [
        ("CLIENT", "1" * 32, "2" * 16)
    ]
    assert "SELECT" in spans[0]["name"]
