"""OpenTelemetry tracing, on only when an exporter is configured.

Off (the default: no `OTEL_EXPORTER_OTLP_ENDPOINT`, no `QUIMBI_TRACE_FILE`) no SDK is
installed: the API's no-op tracer answers, and the hooks below return before building
anything, so tracing costs a flag test. On, each process gets a `TracerProvider` named for its
service, exporting in the background over OTLP/HTTP (the standard `OTEL_*` variables) and/or
as JSON lines to `QUIMBI_TRACE_FILE` (`{service}`/`{pid}` substituted; the whole-suite test
reads those), and instruments SQLAlchemy, Redis and httpx (`TracingMiddleware` makes the
server spans).

Context crosses Kafka as W3C `traceparent`: the outbox stores the writing transaction's
context, the relay publishes each row in a PRODUCER span child of it and sends that span's
`traceparent` as a Kafka header (the CloudEvents envelope keeps the writer's), and the
consumer runs each handler in a CONSUMER span child of the header's context, linked to the
envelope's.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, get_global_textmap, inject, set_global_textmap
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DEFAULT_SAMPLE_RATIO = 0.1  # of traces started here, when OTEL_TRACES_SAMPLER is not set
_lock = threading.Lock()
_state: dict[str, Any] = {"enabled": False, "provider": None, "head": None, "w3c": True}
tracer = trace.get_tracer("quimbi")
# While a set-based handler runs: the CONSUMER span of the event behind each Kafka key.
_causes: ContextVar[Mapping[str, Span] | None] = ContextVar("quimbi_trace_causes", default=None)


def enabled() -> bool:
    """Whether this process records spans (an exporter is configured)."""
    return bool(_state["enabled"])


def configure_tracing(service: str) -> bool:
    """Install the SDK once per process if an exporter is configured; returns `enabled()`."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    path = os.environ.get("QUIMBI_TRACE_FILE")
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    if disabled or not (endpoint or path):
        return enabled()
    with _lock:
        if _state["enabled"]:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
        sampler = _sampler()
        provider = TracerProvider(resource=resource, sampler=sampler, id_generator=_decided_ids())
        if endpoint:
            from .otlp import exporter

            provider.add_span_processor(BatchSpanProcessor(exporter()))
        if path:
            from .trace_file import JsonLinesExporter

            # `{service}` and `{pid}` in the path: one file per process, no interleaved lines.
            where = path.replace("{service}", service).replace("{pid}", str(os.getpid()))
            provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(where)))
        trace.set_tracer_provider(provider)
        set_global_textmap(_PassingPropagator(get_global_textmap()))
        _instrument_clients()
        propagators = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage").replace(" ", "")
        _state.update(
            enabled=True,
            provider=provider,
            head=_head_rule(sampler),
            w3c=propagators in ("tracecontext,baggage", "tracecontext"),
        )
    return True


def _sampler() -> Any:
    """`OTEL_TRACES_SAMPLER` when set; else a tenth of new traces (`DEFAULT_SAMPLE_RATIO`), and
    every trace whose caller sampled it (a `traceparent` with the sampled flag: the frontend,
    or an operator's curl, can ask for one). Recording every request costs far more than the
    10 % CPU budget (bench/tracing_overhead.py)."""
    from opentelemetry.sdk.trace.sampling import (
        ParentBased,
        TraceIdRatioBased,
        _get_from_env_or_default,
    )

    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return _get_from_env_or_default()
    return ParentBased(TraceIdRatioBased(DEFAULT_SAMPLE_RATIO))


class _Head(NamedTuple):
    """The sampler's decision, computed without the SDK (see `_head_rule`)."""

    follows_parent: bool  # a caller's sampled flag decides (ParentBased, default delegates)
    bound: int  # else: sampled when the trace id's low 64 bits are below this


_TRACE_ID_LIMIT = (1 << 64) - 1


def _head_rule(sampler: Any) -> _Head | None:
    """The configured sampler as a `_Head` when it is one whose decision is plain arithmetic
    on the trace id and the caller's flag (ParentBased and/or always_on, always_off,
    traceidratio: every `OTEL_TRACES_SAMPLER` but custom ones); None leaves it to the SDK."""
    from opentelemetry.sdk.trace import sampling

    follows = False
    if isinstance(sampler, sampling.ParentBased):
        if (
            sampler._remote_parent_sampled is not sampling.ALWAYS_ON
            or sampler._remote_parent_not_sampled is not sampling.ALWAYS_OFF
        ):
            return None
        follows, sampler = True, sampler._root
    if sampler is sampling.ALWAYS_ON:
        return _Head(follows, _TRACE_ID_LIMIT + 1)
    if sampler is sampling.ALWAYS_OFF:
        return _Head(follows, 0)
    if type(sampler) is sampling.TraceIdRatioBased:
        return _Head(follows, sampler.bound)
    return None


# The trace id the middleware decided to sample, for the SDK to use (`_DecidedIds`).
_decided: ContextVar[int] = ContextVar("quimbi_trace_decided", default=0)


def _new_trace_id() -> int:
    trace_id = random.getrandbits(128)
    while not trace_id:
        trace_id = random.getrandbits(128)
    return trace_id


def _new_span_id() -> int:
    span_id = random.getrandbits(64)
    while not span_id:
        span_id = random.getrandbits(64)
    return span_id


def _decided_ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class DecidedIds(RandomIdGenerator):
        """Random ids, except a new trace's id when `TracingMiddleware` drew it already to
        decide on it: the SDK's sampler then reaches the same decision on the same id."""

        def generate_trace_id(self) -> int:
            return _decided.get() or _new_trace_id()

    return DecidedIds()


def _instrument_clients() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    provider = _SampledOnlyProvider(trace.get_tracer_provider())
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    import redis.asyncio.client
    import redis.client

    for module in (redis.client, redis.asyncio.client):
        _sampled_only(module.Redis, "execute_command")
        _sampled_only(module.Pipeline, "execute")
        _sampled_only(module.Pipeline, "immediate_execute_command")


def _in_sampled_trace() -> bool:
    """Whether the current context is a sampled trace's: never inside an unsampled request
    (`_passing`, one context-variable read), else the current span's flag."""
    if _passing.get() is not None:
        return False
    return bool(trace.get_current_span().get_span_context().trace_flags.sampled)


def _sampled_only(owner: type, method: str) -> None:
    """Outside a sampled trace, a call to `owner.method` goes straight to the original method,
    past the instrumentation's wrapper: the Redis one formats the command's arguments and its
    span name before it asks the tracer (`_SampledOnlyTracer`) whether to record, ~30 Python
    calls per command, the largest part of what an unsampled gateway request still paid. The
    gate returns the callee's awaitable as is (no coroutine of its own)."""
    import wrapt

    instrumented = owner.__dict__.get(method)
    if not isinstance(instrumented, wrapt.FunctionWrapper):
        return  # not instrumented (or instrumented differently): leave it
    plain = instrumented.__wrapped__

    def gate(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if _in_sampled_trace():
            return wrapped(*args, **kwargs)
        return plain(instance, *args, **kwargs)

    setattr(owner, method, wrapt.FunctionWrapper(instrumented, gate))


class _SampledOnlyTracer(trace.Tracer):
    """A client instrumentation's tracer that opens spans only inside a sampled trace.

    Under an unsampled (or no) parent the SDK would still build a non-recording span, run the
    sampler, draw an id and attach a context for every Redis command and SQL statement: with
    sampling off that was most of tracing's cost (gateway +25 % CPU per request, +9.5 % with
    the Redis spans gone; bench/tracing_overhead.py). Here such a call gets the current span
    back, and does nothing."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> Span:
        if context is None and _passing.get() is not None:  # an unsampled request
            return trace.INVALID_SPAN
        parent = trace.get_current_span(context)
        if not parent.get_span_context().trace_flags.sampled:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[Span]:
        if context is None and _passing.get() is not None:  # an unsampled request
            yield trace.INVALID_SPAN
            return
        parent = trace.get_current_span(context)
        if not parent.get_span_context().trace_flags.sampled:
            yield trace.INVALID_SPAN
            return
        with self._tracer.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span


class _SampledOnlyProvider(trace.TracerProvider):
    """Hands client instrumentations a `_SampledOnlyTracer`."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _SampledOnlyTracer(self._provider.get_tracer(*args, **kwargs))


def instrument_engine(engine: Any) -> None:
    """SQL spans for one async engine (a no-op when tracing is off)."""
    if not enabled():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentation declares SQLAlchemy < 2.1; its engine event hooks work on 2.1.
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return
    engine_tracer = instrumentor.instrument(
        engine=engine.sync_engine,
        enable_commenter=False,
        skip_dep_check=True,
        tracer_provider=_SampledOnlyProvider(trace.get_tracer_provider()),
    )
    # Its statement hook reads the URL, the database name and the statement's first words
    # before it asks the tracer whether to record: outside a sampled trace it is skipped.
    before = getattr(engine_tracer, "_before_cur_exec", None)
    if before is not None:
        from sqlalchemy import event

        def gated(conn: Any, cursor: Any, statement: Any, params: Any, *rest: Any) -> Any:
            if _in_sampled_trace():
                return before(conn, cursor, statement, params, *rest)
            return statement, params

        event.remove(engine.sync_engine, "before_cursor_execute", before)
        event.listen(engine.sync_engine, "before_cursor_execute", gated, retval=True)
    # Its `connect` span wraps `Engine.connect`, i.e. each pool checkout of each session: a
    # span per request that says nothing the statements' spans do not (one less to record
    # and export per sampled request).
    from opentelemetry.instrumentation.utils import unwrap
    from sqlalchemy.engine.base import Engine

    unwrap(Engine, "connect")


_UNTRACED = ("/health/", "/metrics")
_TRACEPARENT_HEADER = TRACEPARENT.encode()
_TRACESTATE_HEADER = TRACESTATE.encode()


def fastapi_telemetry() -> dict[str, Any]:
    """`FastAPI(telemetry=...)`: FastAPI's own OpenTelemetry instrumentation stays off. It
    builds a span, a `Headers` model, an attribute dict and an urlencoded query for every
    request before the sampler says no: +33 % of the gateway's CPU per request at 10 %
    sampling (bench/tracing_overhead.py). `TracingMiddleware` makes the SERVER spans."""
    return {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


class _Caller(NamedTuple):
    """A caller's valid W3C `traceparent` (and `tracestate`, raw)."""

    trace_id: int
    span_id: int
    flags: int
    tracestate: str | None
    canonical: str | None  # the header as received, when it is what we would write (00-...)

    def context(self) -> Any:
        """As the OpenTelemetry context `propagate.extract` would make of it."""
        span = NonRecordingSpan(
            SpanContext(
                self.trace_id,
                self.span_id,
                is_remote=True,
                trace_flags=TraceFlags(self.flags),
                trace_state=self.trace_state(),
            )
        )
        return trace.set_span_in_context(span, otel_context.Context())

    def trace_state(self) -> TraceState | None:
        return TraceState.from_header([self.tracestate]) if self.tracestate else None


# The W3C propagator's rules: version ff and a version-00 header with more fields are invalid.
_TRACEPARENT_FORMAT = re.compile(
    r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)


def _scan(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    """The raw `traceparent` and `tracestate` (several joined) of a request, if any."""
    traceparent = tracestate = None
    for name, value in headers:
        if name == _TRACEPARENT_HEADER:
            traceparent = value
        elif name == _TRACESTATE_HEADER:
            tracestate = value if tracestate is None else tracestate + b"," + value
    return traceparent, tracestate


def _parse(traceparent: bytes | None, tracestate: bytes | None) -> _Caller | None:
    """A caller's context (None when absent or invalid); parsed here rather than by
    `propagate.extract`, which builds contexts an unsampled request does not need."""
    if traceparent is None or len(traceparent) > 512:
        return None
    text = traceparent.decode("latin-1")
    match = _TRACEPARENT_FORMAT.match(text)
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = tracestate.decode("latin-1") if tracestate and len(tracestate) <= 512 else None
    canonical = text if version == "00" and len(text) == 55 else None
    return _Caller(trace_id, span_id, int(flags, 16), state, canonical)


def _caller(headers: Sequence[tuple[bytes, bytes]]) -> _Caller | None:
    """The caller's `traceparent` from the raw headers (None when absent or invalid)."""
    return _parse(*_scan(headers))


class _Passing(NamedTuple):
    """The context of a request the sampler declined, kept as the W3C strings it travels as:
    no OpenTelemetry object is built for it (its context, span and ids cost the gateway
    ~3 µs a request, ~1 % of its CPU; bench/tracing_overhead.py)."""

    traceparent: str  # the caller's trace (or a new one), the sampled flag off
    tracestate: str | None
    # How the request's own headers relate to it, for `propagate`: "as is" (the caller's
    # traceparent is this one: forward the headers unchanged), "none" (no traceparent or
    # tracestate: add ours), "other" (an invalid or changed one: replace it).
    headers: str

    def carrier(self) -> dict[str, str]:
        carrier = {TRACEPARENT: self.traceparent}
        if self.tracestate:
            carrier[TRACESTATE] = self.tracestate
        return carrier


# Set by `TracingMiddleware` for the length of an unsampled request.
_passing: ContextVar[_Passing | None] = ContextVar("quimbi_trace_passing", default=None)


class _PassingPropagator(TextMapPropagator):
    """The configured propagator, except that inside an unsampled request (which has no
    OpenTelemetry context, see `_Passing`) `inject` writes that request's W3C strings: a
    client instrumentation's call (httpx) still forwards the edge's decision."""

    def __init__(self, inner: TextMapPropagator) -> None:
        self._inner = inner

    def extract(
        self, carrier: CarrierT, context: Any = None, getter: Getter[CarrierT] = default_getter
    ) -> Any:
        return self._inner.extract(carrier, context, getter)

    def inject(
        self, carrier: CarrierT, context: Any = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        passing = _passing.get()
        if passing is None or context is not None:
            self._inner.inject(carrier, context, setter)
            return
        for name, value in passing.carrier().items():
            setter.set(carrier, name, value)

    @property
    def fields(self) -> set[str]:
        return self._inner.fields


def _unsampled(trace_id: int, caller: _Caller | None, clean: bool) -> _Passing:
    """What an unsampled request forwards: the caller's `traceparent` as it came when it is
    canonical and says "not sampled" (W3C lets a participant that records nothing pass it on
    unchanged), else the same trace with the sampled flag off and a span id of our own."""
    if caller is None:
        flags, state = TraceFlags.RANDOM_TRACE_ID, None
    else:
        if caller.canonical is not None and not caller.flags & TraceFlags.SAMPLED:
            return _Passing(caller.canonical, caller.tracestate, "as is")
        flags, state = caller.flags & TraceFlags.RANDOM_TRACE_ID, caller.tracestate
    traceparent = f"00-{trace_id:032x}-{_new_span_id():016x}-{flags:02x}"
    return _Passing(traceparent, state, "none" if clean else "other")


class TracingMiddleware:
    """The SERVER span of each request, continuing the caller's `traceparent` (installed by
    `create_app` only when tracing is on).

    Leaner than a generic ASGI instrumentation on purpose: the sampling decision comes first
    and only a sampled request pays for a span and attributes. The decision is the
    configured sampler's (ParentBased: a caller's decision is kept, so the gateway's holds
    for the whole trace), taken here as arithmetic on the trace id for the standard samplers
    (`_head_rule`), by the SDK for others. An unsampled request costs a header scan and a
    context variable (`_Passing`): its `traceparent` (flag 00) still travels downstream as a
    string, so the services behind follow the edge's decision instead of sampling again. A
    recorded span is named `METHOD /route/{template}` once the router has matched (bounded
    names, never raw paths)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_UNTRACED):
            await self.app(scope, receive, send)
            return
        traceparent, tracestate = _scan(scope["headers"])
        caller = None if traceparent is None else _parse(traceparent, tracestate)
        head: _Head | None = _state["head"]
        decided = 0
        if head is not None:
            trace_id = caller.trace_id if caller is not None else _new_trace_id()
            if caller is not None and head.follows_parent:
                sampled = bool(caller.flags & TraceFlags.SAMPLED)
            else:
                sampled = trace_id & _TRACE_ID_LIMIT < head.bound
            if not sampled:
                clean = traceparent is None and tracestate is None
                token = _passing.set(_unsampled(trace_id, caller, clean))
                try:
                    await self.app(scope, receive, send)
                finally:
                    _passing.reset(token)
                return
            decided = trace_id if caller is None else 0
        await self._recorded(scope, receive, send, caller, decided)

    async def _recorded(
        self, scope: Any, receive: Any, send: Any, caller: _Caller | None, decided: int
    ) -> None:
        method = scope["method"]
        parent = caller.context() if caller is not None else None
        token = _decided.set(decided)  # a new trace: the id the decision was taken on
        try:
            span = tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        finally:
            _decided.reset(token)
        if not span.is_recording():  # a sampler `_head_rule` does not know said no
            context_token = otel_context.attach(trace.set_span_in_context(span))
            try:
                await self.app(scope, receive, send)
            finally:
                otel_context.detach(context_token)
            return
        status = 0

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with trace.use_span(span, end_on_exit=True):
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                attributes: dict[str, str | int] = {"http.request.method": method}
                if route is not None:
                    span.update_name(f"{method} {route}")
                    attributes["http.route"] = route
                if status:
                    attributes["http.response.status_code"] = status
                span.set_attributes(attributes)  # one lock, not one per attribute
                if not status or status >= 500:
                    span.set_status(trace.StatusCode.ERROR)


def shutdown() -> None:
    """Flush and stop exporting (at process exit)."""
    provider = _state["provider"]
    if provider is not None:
        provider.force_flush()


def current_carrier() -> dict[str, str]:
    """The current context as `traceparent`/`tracestate` entries (empty when off)."""
    if not enabled():
        return {}
    passing = _passing.get()
    if passing is not None:
        return passing.carrier()
    if not _state["w3c"]:  # OTEL_PROPAGATORS names others: theirs
        carrier: dict[str, str] = {}
        inject(carrier)
        return carrier
    return _w3c(trace.get_current_span().get_span_context())


def _w3c(span: SpanContext) -> dict[str, str]:
    """What the W3C propagator would write for `span`, formatted here: `inject` goes through
    the composite propagator (and baggage, which these services never set) on every call."""
    if not span.is_valid:
        return {}
    carrier = {TRACEPARENT: f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"}
    if span.trace_state:
        carrier[TRACESTATE] = span.trace_state.to_header()
    return carrier


@contextlib.contextmanager
def causes(spans: Mapping[str, Span]) -> Iterator[None]:
    """Around a call handling many events at once (a set-based batch handler): `spans` maps
    each event's Kafka key to its CONSUMER span, so an event the call writes for that key
    carries its own cause's context (`carrier_for`), not whichever span is current."""
    token = _causes.set(spans)
    try:
        yield
    finally:
        _causes.reset(token)


def cause(key: str) -> Span | None:
    """The span an event written now for `key` would descend from (`carrier_for`), kept to
    hand to `causes` when the write is deferred to the end of the unit (None when off)."""
    if not enabled():
        return None
    spans = _causes.get()
    return (spans.get(key) if spans else None) or trace.get_current_span()


def carrier_for(key: str, default: dict[str, str]) -> dict[str, str]:
    """The context to store with an outbox event keyed `key`: the span of the consumed event
    of the same key when a set-based handler writes it (see `causes`), else `default` (the
    current context)."""
    spans = _causes.get()
    span = spans.get(key) if spans else None
    if span is None:
        return default
    carrier: dict[str, str] = {}
    inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def propagate(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Raw HTTP headers to forward with the current context in place of the caller's
    `traceparent` (unchanged when off: the caller's, if any, passes through; unchanged too
    when an unsampled request passes the caller's on as it came)."""
    if not enabled():
        return headers
    passing = _passing.get()
    if passing is not None:
        if passing.headers == "as is":
            return headers
        if passing.headers == "none":
            return [*headers, (_TRACEPARENT_HEADER, passing.traceparent.encode())]
    kept = [(n, v) for n, v in headers if n != _TRACEPARENT_HEADER and n != _TRACESTATE_HEADER]
    kept.extend(
        (name.encode(), value.encode("latin-1")) for name, value in current_carrier().items()
    )
    return kept


def log_ids() -> tuple[str, str] | None:
    """The current trace and span ids as hex, for log lines (None outside a trace; an
    unsampled request's are those it forwards, so its lines still join up across services)."""
    if not enabled():
        return None
    passing = _passing.get()
    if passing is not None:
        return passing.traceparent[3:35], passing.traceparent[36:52]
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _link(carrier: Mapping[str, str] | None) -> Link | None:
    if not carrier:
        return None
    ctx = trace.get_current_span(extract(dict(carrier))).get_span_context()
    return Link(ctx) if ctx.is_valid else None


@contextlib.contextmanager
def producer_span(topic: str, stored: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """A PRODUCER span for publishing one outbox row, child of the context stored with it;
    yields the `traceparent` headers to send (empty when off)."""
    if not enabled():
        yield {}
        return
    parent = extract(dict(stored))
    with tracer.start_as_current_span(
        f"{topic} publish",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    ):
        yield current_carrier()


@contextlib.contextmanager
def consumer_span(
    name: str,
    topic: str,
    headers: Mapping[str, str] | None,
    envelope_traceparent: str | None,
    event_id: str,
    *,
    current: bool = True,
) -> Iterator[Span | None]:
    """A CONSUMER span for one handler of one event: child of the publisher's context (the
    Kafka header), linked to the writer's (the envelope's `traceparent`). `current=False` for
    the events of one batch-handler call: their spans cover the call without nesting."""
    if not enabled():
        yield None
        return
    parent = extract(dict(headers or {}))
    link = _link({TRACEPARENT: envelope_traceparent} if envelope_traceparent else None)
    span = tracer.start_span(
        f"{topic} process {name}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[link] if link is not None else [],
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": name.split(":", 1)[0],
            "messaging.message.id": event_id,
        },
    )
    if not current:
        with span:
            yield span
        return
    with trace.use_span(span, end_on_exit=True):
        yield span


@contextlib.contextmanager
def batch_span(group: str, carriers: Sequence[Mapping[str, str]]) -> Iterator[None]:
    """A root span for one fetched batch, linked to each message's publisher (the handler
    spans are not its children: each continues its own message's trace)."""
    if not enabled():
        yield
        return
    links = [link for link in (_link(c) for c in carriers[:128]) if link is not None]
    token = otel_context.attach(otel_context.Context())  # a new trace, not the caller's
    try:
        with tracer.start_as_current_span(
            f"{group} batch",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.batch.message_count": len(carriers),
            },
        ):
            yield
    finally:
        otel_context.detach(token)
