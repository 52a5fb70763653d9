"""The hand-written OTLP encoder says what the official one says, and the exporter sends it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from quimbi_common import otlp

pytestmark = pytest.mark.unit


def spans() -> tuple[ReadableSpan, ...]:
    """Spans of every shape the services make: remote parent with a tracestate, attributes of
    each type, an event, an exception, a link, an error status, two instrumentation scopes."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "probe", "replica": 2}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    ours, other = provider.get_tracer("quimbi", "1.0"), provider.get_tracer("redis")
    remote = SpanContext(5, 6, True, TraceFlags(1), TraceState([("vendor", "x")]))
    caller = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    attributes = {
        "text": "é GET",
        "negative": -5,
        "big": 2**62,
        "ratio": 1.5,
        "flag": False,
        "names": ["a", "b"],
        "numbers": [1, 2],
    }
    with ours.start_as_current_span(
        "GET /items/{item}", context=caller, kind=SpanKind.SERVER, attributes=attributes
    ) as server:
        server.add_event("retry", {"attempt": 1})
        with other.start_as_current_span(
            "EVALSHA", kind=SpanKind.CLIENT, links=[Link(remote, {"why": "cause"})]
        ) as client:
            client.set_status(Status(StatusCode.ERROR, "refused"))
        publish = ours.start_as_current_span("publish", kind=SpanKind.PRODUCER)
        with pytest.raises(ValueError, match="broker gone"), publish:
            raise ValueError("broker gone")
    return memory.get_finished_spans()


def test_the_encoding_decodes_to_what_the_official_encoder_builds() -> None:
    finished = spans()
    assert len(finished) == 3
    decoded = ExportTraceServiceRequest.FromString(otlp.encode_spans(finished))
    assert decoded == official(finished)
    assert otlp.encode_spans(()) == b""


class _Collector(BaseHTTPRequestHandler):
    bodies: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        _Collector.bodies.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_the_exporter_posts_the_encoding_to_the_configured_endpoint(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
    _Collector.bodies.clear()
    finished = spans()
    assert otlp.exporter().export(finished) is SpanExportResult.SUCCESS
    [(path, content_type, body)] = _Collector.bodies
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    assert ExportTraceServiceRequest.FromString(body) == official(finished)


def test_an_unreachable_collector_is_a_failed_export_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    assert otlp.exporter().export(spans()) is SpanExportResult.FAILURE
