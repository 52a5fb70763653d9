"""The idempotent batch consumer against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from quimbi_common.consumer import EventConsumer, Handler
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.events import (
    PRODUCER_ONLY_HEADER,
    Event,
    TicketDeletedData,
    TicketUpdatedData,
    build_event,
)
from quimbi_common.kafka import create_broker, ensure_topics
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import EventProbe, eventually, unique
from quimbi_common.uow import UnitOfWork

pytestmark = pytest.mark.service
TOPIC = "ticket.deleted"


async def _record(unit: UnitOfWork, event: Event[Any]) -> None:
    await unit.session.execute(
        sa.text("INSERT INTO notes (id) VALUES (:id)"), {"id": f"{event.subject}:{uuid.uuid4()}"}
    )


async def _always_fails(unit: UnitOfWork, event: Event[Any]) -> None:
    if event.subject.startswith("poison"):
        raise ValueError("cannot process this ticket")
    await _record(unit, event)


def _envelope(ticket_id: str, version: int = 1) -> tuple[str, bytes]:
    data = TicketDeletedData(id=ticket_id, version=version, deleted_at=datetime.now(UTC))
    key, event = build_event(TOPIC, data, source="test")
    return key, event.model_dump_json().encode()


def _event_id(fetched: tuple[str, bytes]) -> str:
    return str(json.loads(fetched[1])["id"])


async def _topics(settings: CommonSettings) -> None:
    """Only the topic under test and its DLQ: the broker is shared by many test sessions."""
    topic = settings.topic(TOPIC)
    await ensure_topics(settings, [topic, f"{topic}.dlq"])


def _consumer(settings: CommonSettings, handler: Handler, engine: AsyncEngine) -> EventConsumer:
    consumer = EventConsumer(create_broker(settings), create_sessionmaker(engine), settings)
    consumer.subscribe(TOPIC, handler)
    return consumer


@contextlib.asynccontextmanager
async def _running(consumer: EventConsumer) -> AsyncIterator[asyncio.Task[None]]:
    """The consumer's group member (and its dead-letter publisher) until the block ends."""
    await consumer.broker.start()
    task = asyncio.create_task(consumer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.broker.stop()


@contextlib.asynccontextmanager
async def _consuming(settings: CommonSettings, handler: Handler) -> AsyncIterator[AsyncEngine]:
    await _topics(settings)
    engine = create_engine(settings)
    try:
        async with _running(_consumer(settings, handler, engine)):
            yield engine
    finally:
        await engine.dispose()


async def _send(settings: CommonSettings, *messages: tuple[str, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(settings.topic(TOPIC), value=value, key=key.encode())
    finally:
        await producer.stop()


async def _notes(engine: Any, prefix: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT id FROM notes WHERE id LIKE :p"), {"p": f"{prefix}%"}
        )
        return [r.id for r in rows]


async def _committed(settings: CommonSettings, partition: int = 0) -> int | None:
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.service_name
    )
    await reader.start()
    try:
        offset: int | None = await reader.committed(
            TopicPartition(settings.topic(TOPIC), partition)
        )
        return offset
    finally:
        await reader.stop()


def _fetched(settings: CommonSettings, messages: list[tuple[str, bytes]]) -> list[Any]:
    """Records as a fetch returns them (offsets 0..n-1 on partition 0)."""
    return [
        ConsumerRecord(settings.topic(TOPIC), 0, i, 0, 0, key.encode(), body, None, 0, 0, [])
        for i, (key, body) in enumerate(messages)
    ]


async def test_a_redelivered_event_is_applied_once(settings: CommonSettings) -> None:
    ticket = unique("dup-")
    key, body = _envelope(ticket)
    marker_key, marker = _envelope(unique("marker-"))
    async with _consuming(settings, _record) as engine:
        await _send(settings, (key, body), (key, body), (marker_key, marker))

        async def both_seen() -> None:
            assert await _notes(engine, marker_key)

        await eventually(both_seen)
        assert len(await _notes(engine, ticket)) == 1


async def test_a_batch_records_its_ids_at_once_and_skips_those_seen(
    settings: CommonSettings,
) -> None:
    """Duplicates inside one batch and ids applied by an earlier batch are applied once."""
    seen, fresh, twice = (_envelope(unique(p)) for p in ("seen-", "fresh-", "twice-"))
    engine = create_engine(settings)
    consumer = _consumer(settings, _record, engine)
    try:
        await consumer.handle_batch(_fetched(settings, [seen]))
        await consumer.handle_batch(_fetched(settings, [seen, fresh, twice, twice, seen]))
        for key, _ in (seen, fresh, twice):
            assert len(await _notes(engine, key)) == 1, key
        async with engine.connect() as conn:
            recorded = await conn.scalar(sa.text("SELECT count(*) FROM processed_events"))
        assert recorded == 3
    finally:
        await engine.dispose()


async def test_a_poison_message_in_a_batch_is_dead_lettered_alone(
    settings: CommonSettings,
) -> None:
    await _topics(settings)
    before, poison, after = (_envelope(unique(p)) for p in ("before-", "poison-", "after-"))
    engine = create_engine(settings)
    consumer = _consumer(settings, _always_fails, engine)
    await consumer.broker.start()
    try:
        async with EventProbe([f"{TOPIC}.dlq"], settings.kafka_topic_prefix) as probe:
            await consumer.handle_batch(_fetched(settings, [before, poison, after]))
            [dead] = await probe.wait_for(f"{TOPIC}.dlq")
            await asyncio.sleep(0.5)  # nothing else arrives on the DLQ
            assert len(probe.received) == 1
        assert dead["subject"] == poison[0]
        assert len(await _notes(engine, before[0])) == 1
        assert len(await _notes(engine, after[0])) == 1
        assert await _notes(engine, poison[0]) == []
    finally:
        await consumer.broker.stop()
        await engine.dispose()


async def test_a_failing_handler_dead_letters_and_later_messages_flow(
    settings: CommonSettings,
) -> None:
    poison_key, poison = _envelope(unique("poison-"))
    good_key, good = _envelope(unique("good-"))
    async with (
        EventProbe([f"{TOPIC}.dlq"], settings.kafka_topic_prefix) as probe,
        _consuming(settings, _always_fails) as engine,
    ):
        await _send(settings, (poison_key, poison), (good_key, good))
        [dead] = await probe.wait_for(f"{TOPIC}.dlq", lambda e: e.get("subject") == poison_key)

        async def good_applied() -> None:
            assert await _notes(engine, good_key)

        await eventually(good_applied)
    _, key, _, headers = next(r for r in probe.received if r[2].get("subject") == poison_key)
    assert key == poison_key
    assert b"cannot process this ticket" in headers["x-error"]
    assert headers["x-original-topic"] == settings.topic(TOPIC).encode()
    assert dead["data"]["id"] == poison_key


async def test_a_malformed_message_goes_to_the_dlq(settings: CommonSettings) -> None:
    good_key, good = _envelope(unique("after-junk-"))
    async with (
        EventProbe([f"{TOPIC}.dlq"], settings.kafka_topic_prefix) as probe,
        _consuming(settings, _record) as engine,
    ):
        await _send(settings, ("junk", b"{not json"), (good_key, good))
        await probe.wait_for(f"{TOPIC}.dlq")

        async def good_applied() -> None:
            assert await _notes(engine, good_key)

        await eventually(good_applied)
    labels = {"group": settings.service_name, "topic": settings.topic(TOPIC), "reason": "invalid"}
    assert REGISTRY.get_sample_value("consumer_dead_letters_total", labels) == 1.0
    _, key, body, headers = probe.received[0]
    assert key == "junk"
    assert headers["x-error-reason"] == b"invalid"
    assert body == {"_raw": "{not json"}


async def test_events_of_one_key_are_applied_in_order(settings: CommonSettings) -> None:
    """Many keys over three partitions, queued before the consumer starts (big batches)."""
    settings = settings.model_copy(update={"kafka_topic_partitions": 3})
    applied: list[tuple[str, int]] = []

    async def remember(unit: UnitOfWork, event: Event[Any]) -> None:
        await _record(unit, event)
        # counted when the batch commits: an attempt rolled back by a member leaving mid-batch
        # (and applied again by the other) is no second application
        item = (event.subject, event.data.version)

        async def count() -> None:
            applied.append(item)

        unit.after_commit(count)

    keys = [unique("order-") for _ in range(5)]
    await _topics(settings)
    await _send(settings, *[_envelope(k, version) for version in range(1, 41) for k in keys])
    async with _consuming(settings, remember) as engine:

        async def all_applied() -> None:
            assert len(applied) == 200

        await eventually(all_applied, timeout=30)
        for key in keys:
            assert [v for k, v in applied if k == key] == list(range(1, 41))
            assert len(await _notes(engine, key)) == 40


async def test_a_crash_mid_batch_loses_nothing_and_applies_nothing_twice(
    settings: CommonSettings,
) -> None:
    """The group member dies inside a batch: nothing of it is committed (transaction and
    offsets), and the next member applies every event exactly once."""
    messages = [_envelope(unique("crash-")) for _ in range(30)]
    await _topics(settings)
    await _send(settings, *messages)
    stuck = asyncio.Event()

    async def hangs_on_the_tenth(unit: UnitOfWork, event: Event[Any]) -> None:
        await _record(unit, event)
        if event.subject == messages[9][0]:
            stuck.set()
            await asyncio.sleep(3600)

    engine = create_engine(settings)
    try:
        async with _running(_consumer(settings, hangs_on_the_tenth, engine)):
            await asyncio.wait_for(stuck.wait(), timeout=30)
        # cancelled mid-batch, as a crash would leave it
        assert await _notes(engine, "crash-") == []
        assert await _committed(settings) is None
        async with _running(_consumer(settings, _record, engine)):

            async def all_applied() -> None:
                assert len(await _notes(engine, "crash-")) == 30

            await eventually(all_applied, timeout=30)

            async def offsets_committed() -> None:
                assert await _committed(settings) == 30

            await eventually(offsets_committed)
        for key, _ in messages:
            assert len(await _notes(engine, key)) == 1
    finally:
        await engine.dispose()


async def test_handled_offsets_are_committed_for_the_group(settings: CommonSettings) -> None:
    messages = [_envelope(unique("commit-")) for _ in range(3)]
    async with _consuming(settings, _record) as engine:
        await _send(settings, *messages)

        async def all_applied_and_committed() -> None:
            for key, _ in messages:
                assert await _notes(engine, key)
            assert await _committed(settings) == 3

        await eventually(all_applied_and_committed)


async def test_offsets_a_commit_could_not_store_are_committed_later_without_new_events(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that fails (Kafka away, a rebalance) used to drop its offsets: with nothing
    more arriving on the partition the group's committed offset, and its lag, stayed behind
    for good (the fault suite's agents lag of 437 after a settled run)."""
    from aiokafka.errors import KafkaConnectionError

    real_commit = AIOKafkaConsumer.commit
    failing = [True]
    refused: list[object] = []

    async def commit_while_kafka_is_away(self: AIOKafkaConsumer, *a: Any, **kw: Any) -> None:
        if failing[0]:
            refused.append(a)
            raise KafkaConnectionError("injected: Kafka away")
        await real_commit(self, *a, **kw)

    messages = [_envelope(unique("late-commit-")) for _ in range(3)]
    monkeypatch.setattr(AIOKafkaConsumer, "commit", commit_while_kafka_is_away)
    async with _consuming(settings, _record) as engine:
        await _send(settings, *messages)

        async def applied_but_not_committed() -> None:
            for key, _ in messages:
                assert await _notes(engine, key)
            assert refused

        await eventually(applied_but_not_committed, timeout=60)
        failing[0] = False  # Kafka is back; nothing new is sent

        async def committed() -> None:
            assert await _committed(settings) == 3

        await eventually(committed, timeout=30)


async def test_a_batch_postgresql_aborts_for_a_deadlock_runs_again_whole(
    settings: CommonSettings,
) -> None:
    """A deadlock with a route's transaction is no message's fault: the batch runs again as
    it was, counted as a conflict, not split into single messages as a failure."""
    aborted: list[str] = []

    async def deadlocked_once(unit: UnitOfWork, event: Event[Any]) -> None:
        if not aborted:
            aborted.append(event.subject)
            await unit.session.execute(
                sa.text("DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'; END $$")
            )
        await _record(unit, event)

    labels = {"group": settings.service_name, "reason": "conflict"}
    failures = {"group": settings.service_name, "reason": "failure"}
    message = _envelope(unique("deadlock-"))
    async with _consuming(settings, deadlocked_once) as engine:
        await _send(settings, message)

        async def applied_once() -> None:
            assert len(await _notes(engine, message[0])) == 1

        await eventually(applied_once, timeout=60)
    assert aborted
    assert REGISTRY.get_sample_value("consumer_retries_total", labels) == 1.0
    assert not REGISTRY.get_sample_value("consumer_retries_total", failures)


async def test_events_a_handler_does_not_want_are_recorded_but_not_handled(
    settings: CommonSettings,
) -> None:
    """Recorded, so a consistency token naming an ignored event counts it as applied."""
    wanted, unwanted = _envelope(unique("wanted-"), 2), _envelope(unique("unwanted-"), 1)
    engine = create_engine(settings)
    consumer = EventConsumer(create_broker(settings), create_sessionmaker(engine), settings)
    consumer.subscribe(TOPIC, _record, when=lambda event: event.data.version > 1)
    try:
        await consumer.handle_batch(_fetched(settings, [unwanted, wanted]))
        assert len(await _notes(engine, wanted[0])) == 1
        assert await _notes(engine, unwanted[0]) == []
        async with engine.connect() as conn:
            recorded = await conn.scalars(sa.text("SELECT event_id FROM processed_events"))
            assert {str(r) for r in recorded} == {_event_id(wanted), _event_id(unwanted)}
    finally:
        await engine.dispose()


async def test_news_for_the_producer_alone_is_dropped_unrecorded_with_or_without_its_mark(
    settings: CommonSettings,
) -> None:
    """A ticket.updated changing only tickets' own estimates reaches no handler and leaves no
    processed_events row (no token names it), marked by the relay or not; others apply."""
    topic = "ticket.updated"
    applied: list[int] = []

    async def on_updated(unit: UnitOfWork, event: Event[Any]) -> None:
        applied.append(event.data.version)

    def updated(version: int, **changes: Any) -> bytes:
        data = TicketUpdatedData.model_validate(
            {
                **json.loads(_ticket_json(version)),
                "changes": {k: {"old": None, "new": v} for k, v in changes.items()},
            }
        )
        return build_event(topic, data, source="test")[1].model_dump_json().encode()

    mark = [(PRODUCER_ONLY_HEADER, b"1")]
    bodies = [
        (updated(2, customer_sentiment=0.1), mark),
        (updated(3, estimated_difficulty=0.9, customer_sentiment=0.2), []),  # an older relay
        (updated(4, status="pending", customer_sentiment=0.3), []),
    ]
    records = [
        ConsumerRecord(settings.topic(topic), 0, i, 0, 0, b"tk", body, None, 0, 0, headers)
        for i, (body, headers) in enumerate(bodies)
    ]
    engine = create_engine(settings)
    consumer = EventConsumer(create_broker(settings), create_sessionmaker(engine), settings)
    consumer.subscribe(topic, on_updated)
    try:
        await consumer.handle_batch(records)
        assert applied == [4]
        async with engine.connect() as conn:
            recorded = await conn.scalar(sa.text("SELECT count(*) FROM processed_events"))
        assert recorded == 1
    finally:
        await engine.dispose()


def _ticket_json(version: int) -> str:
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "id": "tk",
            "customer_id": "c",
            "subject": "Help",
            "status": "open",
            "priority": "normal",
            "channel": "email",
            "created_at": now,
            "updated_at": now,
            "version": version,
            "customer": {"id": "c", "email": "c@example.com"},
        }
    )


async def test_a_batch_handler_gets_the_new_events_of_a_batch_at_once(
    settings: CommonSettings,
) -> None:
    calls: list[list[str]] = []

    async def on_many(unit: UnitOfWork, events: list[Event[Any]]) -> None:
        calls.append([e.subject for e in events])
        for event in events:
            await _record(unit, event)

    seen, first, second = (_envelope(unique(p)) for p in ("seen-", "first-", "second-"))
    engine = create_engine(settings)
    consumer = EventConsumer(create_broker(settings), create_sessionmaker(engine), settings)
    consumer.handle_many(TOPIC)(on_many)
    try:
        await consumer.handle_batch(_fetched(settings, [seen]))
        await consumer.handle_batch(_fetched(settings, [seen, first, second, first]))
        assert calls == [[seen[0]], [first[0], second[0]]]
    finally:
        await engine.dispose()


async def test_a_second_member_joining_and_the_first_leaving_keep_order_and_apply_once(
    settings: CommonSettings,
) -> None:
    """Two group members of one service, rebalancing while events flow: per key, every
    version is applied once and in order."""
    settings = settings.model_copy(update={"kafka_topic_partitions": 3})
    applied: list[tuple[str, int]] = []

    async def remember(unit: UnitOfWork, event: Event[Any]) -> None:
        await _record(unit, event)
        # counted when the batch commits: an attempt rolled back by a member leaving mid-batch
        # (and applied again by the other) is no second application
        item = (event.subject, event.data.version)

        async def count() -> None:
            applied.append(item)

        unit.after_commit(count)

    keys = [unique("member-") for _ in range(6)]
    await _topics(settings)
    engine = create_engine(settings)
    try:

        async def produce() -> None:
            for version in range(1, 31):
                await _send(settings, *[_envelope(k, version) for k in keys])
                await asyncio.sleep(0.05)

        async with _running(_consumer(settings, remember, engine)) as first:
            producing = asyncio.create_task(produce())

            async def started() -> None:
                assert len(applied) >= 20

            await eventually(started)
            async with _running(_consumer(settings, remember, engine)):
                await asyncio.sleep(3)  # both members share the partitions for a while
                first.cancel()  # the first member leaves
                await producing

                async def all_applied() -> None:
                    assert len(await _notes(engine, "member-")) == 180

                await eventually(all_applied, timeout=60)
        for key in keys:
            assert [v for k, v in applied if k == key] == list(range(1, 31)), key
            assert len(await _notes(engine, key)) == 30
    finally:
        await engine.dispose()


async def _group_members(settings: CommonSettings, group_id: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group_id])
        [group] = response.to_object()["groups"]
        return len(group["members"])
    finally:
        await admin.close()


async def test_a_member_cancelled_while_a_library_swallows_it_still_stops(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client call that catches the CancelledError (so the coroutine goes on) must not leave
    a group member behind: a zombie member takes partitions and applies events for an app that
    has stopped (the CI flake of ai-proxy's warm-up tests)."""
    await _topics(settings)
    real_start = AIOKafkaConsumer.start
    swallowed = asyncio.Event()

    async def start_swallowing_cancel(self: AIOKafkaConsumer) -> None:
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            swallowed.set()
        await real_start(self)

    monkeypatch.setattr(AIOKafkaConsumer, "start", start_swallowing_cancel)
    engine = create_engine(settings)
    try:
        consumer = _consumer(settings, _record, engine)
        task = asyncio.create_task(consumer.run())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)
    finally:
        await engine.dispose()
    assert swallowed.is_set()
    assert await _group_members(settings, consumer.group_id) == 0


async def test_a_runtime_stopped_while_a_library_swallows_the_cancel_starts_no_member(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping while Kafka is being connected (ensure_topics swallows the cancellation here)
    must not start the consumer afterwards, outside the tasks that stop awaits."""
    from quimbi_common import runtime as runtime_module

    swallowed = asyncio.Event()

    async def ensure_topics_swallowing_cancel(*args: Any, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            swallowed.set()

    monkeypatch.setattr(runtime_module, "ensure_topics", ensure_topics_swallowing_cancel)
    runtime = runtime_module.Runtime(settings)
    runtime.events.subscribe(TOPIC, _record)
    started = asyncio.Event()
    real_run = runtime.events.run

    async def run() -> None:
        started.set()
        await real_run()

    monkeypatch.setattr(runtime.events, "run", run)
    await runtime.start()
    await asyncio.sleep(0.1)
    await runtime.stop()
    await asyncio.sleep(0.2)
    assert swallowed.is_set()
    assert not started.is_set()


async def test_a_handler_writes_through_the_batch_unit_of_work_and_its_steps_follow_the_commit(
    settings: CommonSettings,
) -> None:
    # given a handler that records a note, raises an event and asks for a step after the commit
    seen_after_commit: list[list[str]] = []
    prefix = unique("uow-")

    async def handler(unit: UnitOfWork, event: Event[TicketDeletedData]) -> None:
        await _record(unit, event)
        await unit.emit("ticket.deleted", event.data.model_copy(update={"version": 2}))

        async def look() -> None:  # what another connection sees by then
            seen_after_commit.append(await _notes(engine, prefix))

        unit.after_commit(look)

    async with _consuming(settings, handler) as engine:
        # when one event arrives
        await _send(settings, _envelope(f"{prefix}1"))

        # then the step ran once the note was committed, and the event left with the service
        # as its source
        def step_ran() -> None:
            assert len(seen_after_commit) == 1

        await eventually(step_ran, timeout=60)
        assert len(seen_after_commit[0]) == 1
        async with engine.connect() as conn:
            sources = (await conn.scalars(sa.text("SELECT payload->>'source' FROM outbox"))).all()
        assert sources == [f"/services/{settings.service_name}"]


def _lag(settings: CommonSettings) -> dict[str, float]:
    """kafka_consumer_lag of this test's group, by partition."""
    [metric] = [m for m in REGISTRY.collect() if m.name == "kafka_consumer_lag"]
    return {
        s.labels["partition"]: s.value
        for s in metric.samples
        if s.labels["group"] == settings.service_name
    }


async def test_consumer_lag_rises_while_handlers_are_stuck_and_returns_to_zero(
    settings: CommonSettings,
) -> None:
    settings = settings.model_copy(
        update={"consumer_lag_interval_seconds": 0.2, "kafka_topic_partitions": 2}
    )
    gate = asyncio.Event()

    async def stuck(unit: UnitOfWork, event: Event[Any]) -> None:
        await gate.wait()  # a handler that cannot finish (say, its database is away)
        await _record(unit, event)

    async with _consuming(settings, stuck) as engine:
        await _send(settings, *[_envelope(unique("lag-")) for _ in range(6)])

        async def lagging() -> None:
            assert sum(_lag(settings).values()) == 6  # nothing applied, all 6 waiting

        await eventually(lagging, timeout=30)
        gate.set()

        async def caught_up() -> None:
            assert len(await _notes(engine, "lag-")) == 6
            lag = _lag(settings)
            assert sorted(lag) == ["0", "1"]  # both partitions reported, the idle one too
            assert set(lag.values()) == {0.0}

        await eventually(caught_up, timeout=30)
    assert _lag(settings) == {}  # a stopped member reports nothing stale


async def test_a_member_whose_fetch_task_died_joins_again_and_consumes_on(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka's fetch task ends for good on an error it does not expect (uvloop raises
    RuntimeError writing to a connection the broker just reset); the member then held its
    partitions and fetched nothing ever again (the fault suite's stuck SLA and ai-proxy lag)."""
    from aiokafka.conn import AIOKafkaConnection

    real_send = AIOKafkaConnection.send
    broken: list[str] = []

    def send_on_a_reset_transport(
        self: AIOKafkaConnection, request: Any, *a: Any, **kw: Any
    ) -> Any:
        if type(request).__name__ == "FetchRequest" and not broken:
            broken.append(repr(self))
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        return real_send(self, request, *a, **kw)

    first, second = _envelope(unique("before-")), _envelope(unique("after-"))
    async with _consuming(settings, _record) as engine:
        await _send(settings, first)

        async def seen(key: str) -> None:
            assert await _notes(engine, key)

        await eventually(lambda: seen(first[0]), timeout=60)
        monkeypatch.setattr(AIOKafkaConnection, "send", send_on_a_reset_transport)

        def fetcher_died() -> None:
            assert broken

        await eventually(fetcher_died, timeout=30)
        await _send(settings, second)
        await eventually(lambda: seen(second[0]), timeout=60)


async def test_an_idle_member_fetches_rarely_and_still_gets_the_next_event_at_once(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle, a fetch waits in the broker for the first record (30 s here, longer than the
    checks wait): the member sends a few fetches in 3 idle seconds, not the ~120 of a 25 ms
    wait, and an event arriving is handled without waiting out the fetch."""
    settings = settings.model_copy(
        update={"consumer_idle_fetch_wait_ms": 30_000, "consumer_idle_after_ms": 100}
    )
    fetches = 0
    send = AIOKafkaClient.send

    async def counting(self: AIOKafkaClient, node_id: Any, request: Any, **kw: Any) -> Any:
        nonlocal fetches
        fetches += type(request).__name__.startswith("FetchRequest")
        return await send(self, node_id, request, **kw)

    monkeypatch.setattr(AIOKafkaClient, "send", counting)
    first, later = _envelope(unique("idle-")), _envelope(unique("idle-"))
    async with _consuming(settings, _record) as engine:
        await _send(settings, first)

        async def seen(key: str) -> None:
            assert await _notes(engine, key)

        await eventually(lambda: seen(first[0]), timeout=30)
        await asyncio.sleep(1.0)  # idle again
        before = fetches
        await asyncio.sleep(3.0)
        assert fetches - before <= 4
        await _send(settings, later)
        await eventually(lambda: seen(later[0]), timeout=15)


async def test_under_load_offsets_are_committed_once_an_interval_and_at_once_when_idle(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OffsetCommit per batch was 2.5 requests per ticket on the broker: batches arriving
    back to back commit at most once per `consumer_commit_interval_ms`; the first empty poll
    commits the rest, so the lag still returns to 0."""
    real_commit = AIOKafkaConsumer.commit
    commits: list[object] = []

    async def counted(self: AIOKafkaConsumer, *a: Any, **kw: Any) -> None:
        commits.append(a)
        await real_commit(self, *a, **kw)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", counted)
    settings = settings.model_copy(
        update={"consumer_commit_interval_ms": 60_000, "consumer_idle_after_ms": 3000}
    )
    messages = [_envelope(unique("steady-")) for _ in range(12)]
    async with _consuming(settings, _record) as engine:
        for message in messages:  # one batch each, no poll in between finds nothing
            await _send(settings, message)

        # applied by now or soon: wait for the last one
        async def applied() -> None:
            assert await _notes(engine, messages[-1][0])

        await eventually(applied, timeout=30)
        assert len(commits) <= 2, commits  # the first batch's, at most one more

        async def committed() -> None:
            assert await _committed(settings) == len(messages)

        await eventually(committed, timeout=30)
