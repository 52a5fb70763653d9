"""OTLP/protobuf encoding of finished spans, written as bytes directly.

The exporter's own encoder (`opentelemetry-exporter-otlp-proto-common`) builds a protobuf
message object per span, attribute and value before serializing them: that cost about twice
what recording the span did, in the service's process (bench/tracing_overhead.py). This writes
the same `ExportTraceServiceRequest` (opentelemetry-proto `trace/v1`, `collector/trace/v1`)
field by field; the test decodes it with the official classes and compares it with theirs.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` = number << 3 | 2, below 128)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _text(tag: int, value: str) -> bytes:
    return _field(tag, value.encode()) if value else b""


def _any(value: Any) -> bytes:
    """An `AnyValue`."""
    kind = type(value)
    if kind is str:
        encoded = value.encode()
        return b"\x0a" + _varint(len(encoded)) + encoded
    if kind is int:
        return b"\x18" + _varint(value)
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(0x0A, value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(0x3A, value)
    if isinstance(value, Sequence):
        return _field(0x2A, b"".join(_field(0x0A, _any(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(0x32, _attributes(0x0A, value))
    if value is None:
        return b""
    raise TypeError(f"cannot encode {type(value).__name__} as an attribute value")


_KEYS: dict[str, bytes] = {}  # a `KeyValue`'s key field, by key (attribute names are few)


def _attributes(tag: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated `KeyValue` fields numbered by `tag`."""
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        name = _KEYS.get(key)
        if name is None:
            name = _field(0x0A, str(key).encode())
            if len(_KEYS) < 4096:
                _KEYS[key] = name
        pair = name + _field(0x12, _any(value))
        parts.append(bytes((tag,)) + _varint(len(pair)) + pair)
    return b"".join(parts)


def _count(tag: int, value: int) -> bytes:
    return bytes((tag,)) + _varint(value) if value else b""


def _flags(context: SpanContext | None) -> bytes:
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if context is not None and context.is_remote else 0)
    return _FIXED32.pack(flags)


def _trace_state(context: SpanContext) -> bytes:
    state = context.trace_state
    return _text(0x1A, ",".join(f"{k}={v}" for k, v in state.items())) if state else b""


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None  # a finished SDK span always has one
    parent = span.parent
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        _trace_state(context),
        b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent is not None else b"",
        _text(0x2A, span.name),
        _count(0x30, span.kind.value + 1),  # SpanKind: INTERNAL is 1 in OTLP, 0 in the SDK
        b"\x39" + _FIXED64.pack(span.start_time or 0) if span.start_time else b"",
        b"\x41" + _FIXED64.pack(span.end_time or 0) if span.end_time else b"",
        _attributes(0x4A, span.attributes),
        _count(0x50, span.dropped_attributes),
    ]
    for event in span.events:
        body = (
            (b"\x09" + _FIXED64.pack(event.timestamp) if event.timestamp else b"")
            + _text(0x12, event.name)
            + _attributes(0x1A, event.attributes)
            + _count(0x20, event.dropped_attributes)
        )
        parts.append(_field(0x5A, body))
    parts.append(_count(0x60, span.dropped_events))
    for link in span.links:
        body = (
            b"\x0a\x10"
            + link.context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + link.context.span_id.to_bytes(8, "big")
            + _attributes(0x22, link.attributes)
            + _count(0x28, link.dropped_attributes)
            + b"\x35"
            + _flags(link.context)
        )
        parts.append(_field(0x6A, body))
    parts.append(_count(0x70, span.dropped_links))
    status = span.status
    parts.append(
        _field(0x7A, _text(0x12, status.description or "") + _count(0x18, status.status_code.value))
    )
    parts.append(b"\x85\x01" + _flags(parent))  # field 16, fixed32
    return b"".join(parts)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized `ExportTraceServiceRequest` for `spans`: grouped by resource, then by
    instrumentation scope, in the order first seen (as the official encoder does)."""
    # By identity: a `Resource` hashes by JSON-dumping its attributes; a provider has one.
    groups: dict[int, tuple[Any, dict[Any, list[bytes]]]] = {}
    for span in spans:
        resource = span.resource
        _, scopes = groups.setdefault(id(resource), (resource, {}))
        scopes.setdefault(span.instrumentation_scope or None, []).append(_span(span))
    out = []
    for resource, scopes in groups.values():
        body = [_field(0x0A, _attributes(0x0A, resource.attributes))]
        for scope, encoded in scopes.items():
            scope_body = b""
            if scope is not None:
                scope_body = (
                    _text(0x0A, scope.name)
                    + _text(0x12, scope.version or "")
                    + _attributes(0x1A, scope.attributes)
                )
            spans_part = b"".join(_field(0x12, s) for s in encoded)
            schema = _text(0x1A, scope.schema_url or "") if scope is not None else b""
            body.append(_field(0x12, _field(0x0A, scope_body) + spans_part + schema))
        body.append(_text(0x1A, resource.schema_url or ""))
        out.append(_field(0x0A, b"".join(body)))
    return b"".join(out)


def exporter() -> Any:
    """The OTLP/HTTP span exporter (the standard `OTEL_EXPORTER_OTLP_*` settings) with
    `encode_spans` in place of the protobuf objects."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    class Exporter(OTLPSpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            if self._shutdown:
                return SpanExportResult.FAILURE
            with self._metrics.export_operation(len(spans)) as result:
                sent = self._client.export(encode_spans(spans))
                if not sent.success:
                    result.error = sent.error
                    return SpanExportResult.FAILURE
            return SpanExportResult.SUCCESS

    return Exporter()
