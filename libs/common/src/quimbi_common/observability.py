"""JSON logs carrying a correlation id, request ids, and Prometheus metrics."""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from . import tracing

REQUEST_ID_HEADER = "x-request-id"
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter("events_published_total", "Events relayed to Kafka", ["topic"])
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Events handled by consumers", ["topic", "consumer", "outcome"]
)
PROJECTION_WAITS = Histogram(
    "projection_wait_seconds",
    "Requests that waited for the projection to learn an id (read-your-writes)",
    ["outcome"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
CONSUMER_BATCH_SECONDS = Histogram(
    "consumer_batch_seconds",
    "Time to apply one fetched batch (its transaction, or one at a time after a failure)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_BATCH_RECORDS = Histogram(
    "consumer_batch_records",
    "Records per fetched batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
CONSUMER_LAG = Gauge(
    "kafka_consumer_lag",
    "Records in a partition not yet applied by this group member (high watermark - position)",
    ["group", "topic", "partition"],
)
CONSUMER_HANDLER_SECONDS = Histogram(
    "consumer_handler_seconds",
    "Time one handler spent on one event (or on its share of a batch, for batch handlers)",
    ["topic", "consumer"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSUMER_RETRIES = Counter(
    "consumer_retries_total",
    "Re-runs of events: `outage` (database away), `conflict` (a deadlock or serialization "
    "failure), `failure` (a handler raised)",
    ["group", "reason"],
)
CONSUMER_DEAD_LETTERS = Counter(
    "consumer_dead_letters_total",
    "Messages sent to <topic>.dlq (`invalid`: not a valid event; `failed`: retries exhausted)",
    ["group", "topic", "reason"],
)
OUTBOX_BACKLOG = Gauge("outbox_backlog_rows", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_unsent_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none)",
    ["service"],
)
OUTBOX_PUBLISH_SECONDS = Histogram(
    "outbox_publish_seconds",
    "Time from handing a relay batch to Kafka until every record of it is acknowledged",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the service name and the current correlation id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
        }
        ids = tracing.log_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RateLimitFilter(logging.Filter):
    """Lets one record per library (the logger's first name) through every `interval` seconds
    from the loggers named by `prefixes`; the next one to pass says how many were dropped.

    A Kafka outage makes aiokafka log "Unable connect to node" per fetch loop, ten times a
    second per subscriber (19,000 lines in 25 s); the runtime's broker watch says once that the
    broker is lost and once that it is back, so these repeats carry nothing new."""

    def __init__(self, prefixes: tuple[str, ...], interval: float = 60.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = record.name.split(".", 1)[0]  # all of aiokafka's lines are one voice
        now = time.monotonic()
        last, dropped = self._seen.get(key, (-self.interval, 0))
        if now - last < self.interval:
            self._seen[key] = (last, dropped + 1)
            return False
        self._seen[key] = (now, 0)
        if dropped and isinstance(record.msg, str):
            record.msg = f"{record.msg} [{dropped} alike suppressed]"
        return True


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands formatted lines to a writer thread and never waits: when stdout is slower than the
    logging (a full pipe to a busy launcher, a stalled collector), lines are dropped and counted
    instead of blocking the event loop, and with it every request (issue #16, item 4)."""

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            DroppingQueueHandler.dropped += 1


_listener: logging.handlers.QueueListener | None = None


@atexit.register
def _stop_listener() -> None:
    """Write what is queued, then stop the writer thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


def configure_logging(service: str, level: str = "INFO", *, as_json: bool = True) -> None:
    global _listener
    handler = DroppingQueueHandler(queue.Queue(maxsize=10_000))
    handler.addFilter(RateLimitFilter(("aiokafka", "faststream", f"{service}.kafka")))
    if as_json:  # formatted in the caller's thread, where the correlation id is set
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    writer = logging.StreamHandler(sys.stdout)
    _stop_listener()
    _listener = logging.handlers.QueueListener(handler.queue, writer)
    _listener.start()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


metrics_router = APIRouter(include_in_schema=False)


@metrics_router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
