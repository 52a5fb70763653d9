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
