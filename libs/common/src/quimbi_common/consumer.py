"""Idempotent, at-least-once consumers: one Kafka group member per service process, in batches.

One aiokafka consumer subscribes to every topic the service handles and fetches batches of
up to `consumer_batch_size` records. A batch is applied in ONE database transaction: the
`(consumer, event id)` pairs are recorded with one set statement, ids already recorded are
skipped, and the handlers run in offset order (so per key, i.e. per partition, in order).
Offsets are committed after that transaction commits (in the background while the next batch
is applied, at most every `consumer_commit_interval_ms` under load, at once when a poll finds
nothing; before a rebalance or a stop the member waits for them): a crash redelivers at
most what was applied since the last commit, which the event ids then skip. (Per message, the
old consumer spent ~3-5 ms of CPU: a transaction, FastStream's per-message pipeline and an
offset commit each; see bench/suite_cost.py and bench/results/latest.md.)

A batch whose transaction fails for another reason than an outage or a conflict (a deadlock)
is retried one message at a time, each in its own transaction, so a poison message is
isolated: retried `consumer_max_retries` times, then sent alone to `<topic>.dlq` with the
error, and the stream moves on. A malformed message goes there at once. Outages (database,
or Kafka for the dead letter) are not the message's fault: they are retried until the
dependency is back.

A handler may declare `when=`: a cheap test of the event; events it rejects change nothing
the service holds and run no handler, but are recorded like the others (one more row in the
batch's statement), so a consistency token naming one is seen as applied (`consistency`).
An event that is news for its producer alone (`events.for_others`; the relay marks it with
the `x-producer-only` header) is dropped before it is even parsed, unrecorded: no token
names it (the outbox leaves it out), so no request waits for it.
Every transaction that records events sends `pg_notify('quimbi_projection', '*')` (collapsed
to one per transaction) to wake the requests waiting for a token.

Idle, the member's fetches wait in the broker for the first record (`_fetch_mode`), so an idle
service is woken about once a second by its consumer, not forty times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import tracing
from .backoff import nth_delay
from .catchup import CHANNEL, CONSUMED_KEY
from .db import is_database_outage
from .events import (
    PRODUCER_ONLY_HEADER,
    TOPICS,
    Event,
    EventType,
    dead_letter_topic,
    for_others,
    parse_event,
)
from .observability import (
    CONSUMER_BATCH_RECORDS,
    CONSUMER_BATCH_SECONDS,
    CONSUMER_DEAD_LETTERS,
    CONSUMER_HANDLER_SECONDS,
    CONSUMER_LAG,
    CONSUMER_RETRIES,
    EVENTS_CONSUMED,
    correlation_id,
)
from .settings import CommonSettings
from .uow import UnitOfWork, is_retryable_conflict

log = logging.getLogger(__name__)

# A handler writes through the batch's unit of work (its session and outbox): the same service
# function a route calls with its own unit of work.
Handler = Callable[[UnitOfWork, Event[Any]], Awaitable[None]]
BatchHandler = Callable[[UnitOfWork, list[Event[Any]]], Awaitable[None]]
Wants = Callable[[Event[Any]], bool]

_RECORD = sa.text(
    "INSERT INTO processed_events (consumer, event_id) "
    "SELECT * FROM unnest(CAST(:consumers AS text[]), CAST(:ids AS uuid[])) "
    "ON CONFLICT DO NOTHING "
    "RETURNING consumer, event_id, pg_notify(:channel, :consumed_key)::text AS woke"
)


def _transient(exc: BaseException) -> str | None:
    """Why `exc` is no fault of the messages, if it is not: a database restarting ("not yet
    accepting connections") is an outage, retried until it is back; a deadlock or
    serialization failure with another transaction is a conflict, retried at once. Neither
    splits a batch into single messages or dead-letters anything."""
    if is_database_outage(exc):
        return "outage"
    if is_retryable_conflict(exc):
        return "conflict"
    return None


@dataclass(frozen=True)
class Subscription:
    """One handler of one topic; `name` is its consumer name in `processed_events`."""

    topic: EventType
    handler: Handler | None
    name: str
    wants: Wants | None
    many: BatchHandler | None = None  # instead of `handler`: the batch's new events at once


@dataclass(frozen=True)
class Work:
    """One event for one handler, as fetched."""

    record: ConsumerRecord[bytes, bytes]
    subscription: Subscription
    event: Event[Any]
    ignored: bool = False  # rejected by the handler's `when`: recorded, not handled

    @property
    def key(self) -> tuple[str, UUID]:
        return (self.subscription.name, self.event.id)

    def trace_headers(self) -> dict[str, str]:
        """The `traceparent`/`tracestate` Kafka headers (the relay's publish span)."""
        return _trace_headers(self.record)


def _trace_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {
        name: value.decode("latin-1")
        for name, value in (record.headers or ())
        if name in (tracing.TRACEPARENT, tracing.TRACESTATE)
    }


def _cancel_swallowed() -> bool:
    """Whether this task was cancelled and a library caught the CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _fetcher_stopped(consumer: AIOKafkaConsumer) -> BaseException | None:
    """Why aiokafka's background fetch task ended, if it did: it ends for good on an error it
    does not expect (under uvloop, writing to a connection the broker reset a moment before
    raises RuntimeError, not OSError), and the consumer then stays in its group, holding its
    partitions, without ever fetching again. Only a new client recovers."""
    task = getattr(getattr(consumer, "_fetcher", None), "error_future", None)
    if not isinstance(task, asyncio.Future) or not task.done():
        return None
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception() or RuntimeError("the fetch task returned")


class _WaitForBatch(ConsumerRebalanceListener):
    """Hold a rebalance until the batch in hand is applied and its offsets committed."""

    def __init__(self, owner: EventConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.owner._batch:
            await self.owner._flush(self.consumer)
            for tp in revoked:  # their next owner reads on from the committed offset
                self.owner._offsets.pop(tp, None)
        self.owner._forget_lag(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class EventConsumer:
    """The handlers of one consumer group, consumed by one group member (`run`)."""

    def __init__(
        self,
        broker: KafkaBroker,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: CommonSettings,
        *,
        group_id: str | None = None,
    ) -> None:
        self.broker = broker  # publishes dead letters
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.group_id = group_id or settings.service_name
        self.subscriptions: dict[str, list[Subscription]] = {}  # by Kafka topic
        self._batch = asyncio.Lock()
        self._offsets: dict[TopicPartition, int] = {}  # applied, not yet committed
        self._position: dict[TopicPartition, int] = {}  # next offset to apply (for the lag)
        self._committing: asyncio.Task[None] | None = None
        self._next_commit = 0.0  # monotonic: a batch commits its offsets from then on

    def handle(
        self, topic: EventType, *, when: Wants | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator registering `async def on_x(unit, event)` for `topic`."""

        def register(handler: Handler) -> Handler:
            self.subscribe(topic, handler, when=when)
            return handler

        return register

    def handle_many(
        self, topic: EventType, *, when: Wants | None = None
    ) -> Callable[[BatchHandler], BatchHandler]:
        """Decorator registering `async def on_x(unit, events)`: a batch's new events of
        `topic` in one call (offset order per key), for a set-based projection that holds its
        row locks for one statement instead of one per event."""

        def register(handler: BatchHandler) -> BatchHandler:
            self._add(Subscription(topic, None, self._name(handler), when, many=handler))
            return handler

        return register

    def subscribe(self, topic: EventType, handler: Handler, *, when: Wants | None = None) -> None:
        self._add(Subscription(topic, handler, self._name(handler), when))

    def _name(self, handler: Callable[..., Any]) -> str:
        return f"{self.group_id}:{handler.__name__}"

    def _add(self, subscription: Subscription) -> None:
        TOPICS[subscription.topic]  # an unknown topic fails at registration
        kafka_topic = self.settings.topic(subscription.topic)
        self.subscriptions.setdefault(kafka_topic, []).append(subscription)

    async def run(self) -> None:
        """Consume until cancelled (a Runtime task, started once Kafka answers)."""
        if not self.subscriptions:
            return
        consumer = await self._connect()
        watch = asyncio.create_task(self._watch_lag(consumer))
        idle = True  # `_connect` leaves the fetches in idle mode
        try:
            while True:
                wait = 1000 if idle else self.settings.consumer_idle_after_ms
                batches = await consumer.getmany(timeout_ms=wait)
                if bool(batches) == idle:  # before the fetcher runs again: its next request
                    idle = not batches
                    self._fetch_mode(consumer, idle=idle)
                if not batches:
                    self._commit_when_idle(consumer)
                    if (stopped := _fetcher_stopped(consumer)) is not None:
                        log.warning(
                            "%s: the Kafka client stopped fetching (%r); joining "
                            "again with a new one",
                            self.group_id,
                            stopped,
                        )
                        watch.cancel()
                        await self._leave(consumer)
                        consumer = await self._connect()
                        watch = asyncio.create_task(self._watch_lag(consumer))
                    continue
                async with self._batch:
                    records = [r for partition in batches.values() for r in partition]
                    CONSUMER_BATCH_RECORDS.observe(len(records))
                    carriers = [_trace_headers(r) for r in records] if tracing.enabled() else []
                    with CONSUMER_BATCH_SECONDS.time(), tracing.batch_span(self.group_id, carriers):
                        await self.handle_batch(records)
                    applied = {tp: rs[-1].offset + 1 for tp, rs in batches.items() if rs}
                    self._offsets.update(applied)
                    self._position.update(applied)
                    self._measure_lag(consumer, applied)
                    self._commit_when_idle(consumer, busy=True)
        finally:
            watch.cancel()
            await self._leave(consumer)
            self._forget_lag(list(self._position))

    async def _leave(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what was applied (bounded: Kafka may be what is down) and leave the group."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.settings.consumer_stop_flush_seconds):
                await self._flush(consumer)
        try:
            await consumer.stop()
        except KafkaError:
            if _fetcher_stopped(consumer) is None:
                raise
            # stop() left the group, then raised the dead fetch task's error again before
            # closing the client's connections: close them here.
            await consumer._client.close()

    def _measure_lag(self, consumer: AIOKafkaConsumer, applied: dict[TopicPartition, int]) -> None:
        """Lag per partition this batch touched, at once: the broker's high watermark (as of
        the fetch) minus the next offset to apply (`_watch_lag` keeps the others current)."""
        for tp, position in applied.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                    max(0, highwater - position)
                )

    async def _watch_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Every `consumer_lag_interval_seconds`, the lag of each assigned partition from the
        broker's end offsets, beside the batch loop: it rises while the handlers are stuck
        (a database outage, a slow batch) and returns to 0 on partitions gone idle, instead of
        keeping the figure of their last batch. Before anything is applied here, a partition
        counts from the group's committed offset."""
        interval = self.settings.consumer_lag_interval_seconds
        while True:
            await asyncio.sleep(interval)
            assigned = list(consumer.assignment())
            if not assigned:
                continue
            try:
                ends = await consumer.end_offsets(assigned)
                for tp in assigned:
                    if tp not in self._position:
                        committed = await consumer.committed(tp)
                        if committed is None:  # nothing committed: from the first record
                            committed = (await consumer.beginning_offsets([tp]))[tp]
                        self._position.setdefault(tp, committed)
            except KafkaError as exc:  # Kafka away: the figures wait for it
                log.debug("consumer lag not measured (%s)", exc)
                continue
            for tp in assigned:
                if tp in ends and tp in self._position:
                    CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                        max(0, ends[tp] - self._position[tp])
                    )

    def _forget_lag(self, partitions: Any) -> None:
        """Partitions this member no longer holds: no stale figure under its name."""
        for tp in partitions:
            self._position.pop(tp, None)
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group_id, tp.topic, str(tp.partition))

    def _retry_delay(self, attempt: int) -> float:
        """The wait before retrying a batch or an event through an outage."""
        return nth_delay(
            self.settings.consumer_retry_backoff_seconds,
            attempt,
            self.settings.retry_backoff_max_seconds,
        )

    async def _connect(self) -> AIOKafkaConsumer:
        """The group member, joined; retried (a new client each time) while Kafka is away."""
        backoff = self.settings.backoff()
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                group_id=self.group_id,
                client_id=f"{self.settings.service_name}-consumer",
                enable_auto_commit=False,
                auto_offset_reset=self.settings.kafka_auto_offset_reset,
                max_poll_records=self.settings.consumer_batch_size,
                fetch_min_bytes=self.settings.consumer_fetch_min_bytes,
                fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            )
            consumer.subscribe(sorted(self.subscriptions), listener=_WaitForBatch(self, consumer))
            try:
                await consumer.start()
                if _cancel_swallowed():  # by the client while joining: stop as asked
                    raise asyncio.CancelledError
            except KafkaError as exc:
                log.warning(
                    "consumer cannot reach kafka (%s); retrying in %.1fs", exc, backoff.delay
                )
                if _cancel_swallowed():
                    await consumer.stop()
                    raise asyncio.CancelledError from exc
            except BaseException:  # cancelled while joining: leave no client open
                await consumer.stop()
                raise
            else:
                self._fetch_mode(consumer, idle=True)
                return consumer
            await consumer.stop()
            await backoff.sleep()

    def _fetch_mode(self, consumer: AIOKafkaConsumer, *, idle: bool) -> None:
        """How the broker holds this member's next fetches. Busy: until
        `consumer_fetch_min_bytes` are there or `consumer_fetch_max_wait_ms` passed (bigger
        batches under load). Idle: until the first record, up to
        `consumer_idle_fetch_wait_ms` (a record arriving answers the fetch at once, so the
        first event after a quiet spell is not delayed; an idle member sends one fetch a
        second instead of forty). aiokafka reads both values each time it builds a fetch."""
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            return  # another aiokafka: its fixed settings (the busy ones) stay
        settings = self.settings
        fetcher._fetch_min_bytes = 1 if idle else settings.consumer_fetch_min_bytes
        fetcher._fetch_max_wait_ms = (
            settings.consumer_idle_fetch_wait_ms if idle else settings.consumer_fetch_max_wait_ms
        )

    def _commit_when_idle(self, consumer: AIOKafkaConsumer, *, busy: bool = False) -> None:
        """Start committing what is pending unless a commit is already in flight; after a
        batch (`busy`), at most every `consumer_commit_interval_ms` (an empty poll, a
        rebalance or a stop commits at once)."""
        if busy and time.monotonic() < self._next_commit:
            return
        if self._offsets and (self._committing is None or self._committing.done()):
            self._next_commit = time.monotonic() + self.settings.consumer_commit_interval_ms / 1000
            self._committing = asyncio.create_task(self._commit_pending(consumer))

    async def _commit_pending(self, consumer: AIOKafkaConsumer) -> None:
        """Commit applied offsets in the background: the next batch does not wait for it.
        Offsets a commit could not store (Kafka away, a rebalance) stay pending for the
        partitions still held and go with the next commit, or the next idle poll: dropping
        them would leave the group's committed offsets, and so its lag, behind for good on a
        partition that receives nothing more."""
        if not self._offsets:
            return
        offsets, self._offsets = self._offsets, {}
        try:
            async with asyncio.timeout(self.settings.consumer_commit_timeout_seconds):
                await consumer.commit(offsets)  # aiokafka retries some errors forever
        except (KafkaError, TimeoutError) as exc:
            held = consumer.assignment()
            for tp, offset in offsets.items():
                if tp in held:
                    self._offsets[tp] = max(offset, self._offsets.get(tp, offset))
            log.info("offsets not committed (%r); trying again", exc)

    async def _flush(self, consumer: AIOKafkaConsumer) -> None:
        """Wait for the commit in flight and commit what is left (before a rebalance, a stop)."""
        if self._committing is not None:
            await asyncio.gather(self._committing, return_exceptions=True)
        await self._commit_pending(consumer)

    async def handle_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply fetched records (in offset order per partition); returns once each one is
        applied, skipped or dead-lettered, so its offset may be committed."""
        work: list[Work] = []
        for record in records:
            subscriptions = self.subscriptions[record.topic]
            if _producer_only(record):
                _count(subscriptions, "producer_only")
                continue
            try:
                event = parse_event(subscriptions[0].topic, record.value or b"")
            except ValidationError as exc:
                await self._dead_letter(record, f"invalid event: {exc}", "invalid")
                _count(subscriptions, "invalid")
                continue
            if not for_others(subscriptions[0].topic, event.data):  # published without the mark
                _count(subscriptions, "producer_only")
                continue
            for subscription in subscriptions:
                wanted = subscription.wants is None or subscription.wants(event)
                work.append(Work(record, subscription, event, ignored=not wanted))
        if work and not await self._apply_batch(work):
            for item in work:  # isolate the message that fails
                await self._apply_one(item)

    async def _apply_batch(self, work: list[Work]) -> bool:
        """All of `work` in one transaction; False if a handler failed (nothing applied)."""
        attempt = 0
        while True:
            try:
                async with self.sessionmaker() as session, session.begin():
                    unit = UnitOfWork(session, self.settings.service_name)
                    outcomes = await self._apply(unit, work)
            except Exception as exc:
                if (reason := _transient(exc)) is None:
                    log.warning("batch of %d failed (%r); one message at a time", len(work), exc)
                    return False
                attempt += 1
                CONSUMER_RETRIES.labels(self.group_id, reason).inc()
                log.warning("%s: %s (%s); retrying a batch", self.group_id, reason, exc)
                await asyncio.sleep(self._retry_delay(attempt))
                continue
            for item, outcome in zip(work, outcomes, strict=True):
                subscription = item.subscription
                EVENTS_CONSUMED.labels(subscription.topic, subscription.name, outcome).inc()
            await self._after_commit(unit)
            return True

    async def _after_commit(self, unit: UnitOfWork) -> None:
        """The applied events are durable whatever a follow-up step does: log, do not re-apply."""
        try:
            await unit.committed()
        except Exception:
            log.exception("%s: a step after the commit failed", self.group_id)

    async def _apply(self, unit: UnitOfWork, work: list[Work]) -> list[str]:
        session = unit.session
        rows = await session.execute(
            _RECORD,
            {
                "consumers": [w.subscription.name for w in work],
                "ids": [w.event.id for w in work],
                "channel": CHANNEL,
                "consumed_key": CONSUMED_KEY,
            },
        )
        fresh = {(row.consumer, row.event_id) for row in rows}
        outcomes = []
        together: dict[str, tuple[BatchHandler, list[Work]]] = {}
        for item in work:
            if item.key not in fresh:
                outcomes.append("duplicate")
                continue
            fresh.discard(item.key)  # twice in one batch: applied once
            if item.ignored:
                outcomes.append("ignored")
                continue
            outcomes.append("handled")
            subscription = item.subscription
            if subscription.many is not None:
                together.setdefault(subscription.name, (subscription.many, []))[1].append(item)
                continue
            assert subscription.handler is not None
            token = correlation_id.set(item.event.correlationid)
            started = time.perf_counter()
            try:
                with _span(item):
                    await subscription.handler(unit, item.event)
            finally:
                correlation_id.reset(token)
                CONSUMER_HANDLER_SECONDS.labels(subscription.topic, subscription.name).observe(
                    time.perf_counter() - started
                )
        for name, (handler, items) in together.items():  # other topics: no order between them
            started = time.perf_counter()
            with contextlib.ExitStack() as spans:  # one span per event, around the one call
                by_key = {}  # what the call writes for a key descends from that key's event
                for item in items:
                    span = spans.enter_context(_span(item, current=False))
                    if span is not None and item.record.key is not None:
                        by_key[item.record.key.decode()] = span
                with tracing.causes(by_key):
                    await handler(unit, [item.event for item in items])
            CONSUMER_HANDLER_SECONDS.labels(items[0].subscription.topic, name).observe(
                (time.perf_counter() - started) / len(items)
            )
        await unit.finish()
        return outcomes

    async def _apply_one(self, item: Work) -> None:
        """One message in its own transaction: retried, then dead-lettered alone."""
        attempt = 0
        name = item.subscription.name
        while True:
            try:
                async with self.sessionmaker() as session, session.begin():
                    unit = UnitOfWork(session, self.settings.service_name)
                    [outcome] = await self._apply(unit, [item])
                await self._after_commit(unit)
                break
            except Exception as exc:
                attempt += 1
                if (reason := _transient(exc)) is not None:
                    CONSUMER_RETRIES.labels(self.group_id, reason).inc()
                    log.warning("%s: %s (%s); retrying %s", name, reason, exc, item.event.id)
                    await asyncio.sleep(self._retry_delay(attempt))
                    continue
                if attempt > self.settings.consumer_max_retries:
                    log.exception("%s: giving up on %s", name, item.event.id)
                    await self._dead_letter(item.record, f"{type(exc).__name__}: {exc}", "failed")
                    outcome = "dead_lettered"
                    break
                CONSUMER_RETRIES.labels(self.group_id, "failure").inc()
                await asyncio.sleep(
                    self.settings.consumer_retry_backoff_seconds * 2 ** (attempt - 1)
                )
        EVENTS_CONSUMED.labels(item.subscription.topic, name, outcome).inc()

    async def _dead_letter(self, record: Any, error: str, reason: str) -> None:
        """Publish to `<topic>.dlq`, retrying while Kafka is unreachable: the message must not be
        skipped before it is stored somewhere."""
        headers = {
            k: (v.decode() if isinstance(v, bytes) else v) for k, v in (record.headers or [])
        }
        headers.update(
            {
                "x-error": error[:2000],
                "x-error-reason": reason,
                "x-consumer-group": self.group_id,
                "x-original-topic": record.topic,
                "x-original-partition": str(record.partition),
                "x-original-offset": str(record.offset),
            }
        )
        backoff = self.settings.backoff()
        while True:
            try:
                await self.broker.publish(
                    record.value, dead_letter_topic(record.topic), key=record.key, headers=headers
                )
                CONSUMER_DEAD_LETTERS.labels(self.group_id, record.topic, reason).inc()
                return
            except Exception as exc:
                log.warning("dead letter not stored (%s); retrying in %.1fs", exc, backoff.delay)
                await backoff.sleep()


def _producer_only(record: ConsumerRecord[bytes, bytes]) -> bool:
    """The relay's mark on news for the producer alone (`events.for_others`): dropped unread."""
    return any(name == PRODUCER_ONLY_HEADER for name, _ in record.headers or ())


def _count(subscriptions: list[Subscription], outcome: str) -> None:
    for subscription in subscriptions:
        EVENTS_CONSUMED.labels(subscription.topic, subscription.name, outcome).inc()


def _span(item: Work, *, current: bool = True) -> contextlib.AbstractContextManager[Any]:
    """The CONSUMER span of one handler applying one event (nothing when tracing is off)."""
    if not tracing.enabled():
        return contextlib.nullcontext()
    return tracing.consumer_span(
        item.subscription.name,
        item.subscription.topic,
        item.trace_headers(),
        item.event.traceparent,
        str(item.event.id),
        current=current,
    )
