"""Customer intelligence: shape, cache TTLs, `customer.intelligence_updated` when churn or LTV
moved, and warming on `ticket.created` (a real event on Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import create_async_engine

from quimbi_ai_proxy import domain
from quimbi_ai_proxy.service import AiProxy
from quimbi_common.enums import Role
from quimbi_common.events import CustomerSnapshot, TicketData, build_event
from quimbi_common.testing import KAFKA, EventProbe, eventually, unique
from quimbi_standin.generation import analyze_customer

pytestmark = pytest.mark.service
TOPIC = "customer.intelligence_updated"


def _url(customer_id: str) -> str:
    return f"/api/ai/customers/{customer_id}/intelligence"


async def test_intelligence_has_the_seed_shape_and_is_cached(proxy_app, tickets, standin) -> None:
    customer = tickets.add_customer()
    expected = analyze_customer(customer)
    async with proxy_app() as proxy:
        first = await proxy.client.get(_url(customer), headers=proxy.headers(Role.SENIOR_AGENT))
        second = await proxy.client.get(_url(customer), headers=proxy.headers(Role.SENIOR_AGENT))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["customer_id"] == customer
    assert body["archetype"] == expected["archetype"]
    assert body["segments"] == expected["segments"]
    assert body["predictions"] == expected["predictions"]
    assert body["behavioral_metrics"] == expected["behavioral_metrics"]
    assert body["cached"] is False
    assert second.json()["cached"] is True
    assert (await standin.calls())["analyze"] == 1


async def test_cache_entries_carry_the_seed_ttls(
    proxy_app, tickets, standin, redis: aioredis.Redis
) -> None:
    ticket = tickets.add(assigned_agent_id="agent-ttl")
    customer = ticket["customer_id"]
    async with proxy_app() as proxy:
        await proxy.client.get(
            f"/api/ai/tickets/{ticket['id']}/draft-response",
            headers=proxy.headers(agent_id="agent-ttl"),
        )
    assert 890 <= await redis.ttl(domain.intelligence_key(customer)) <= 900
    assert 3590 <= await redis.ttl(domain.churn_key(customer)) <= 3600
    assert 3590 <= await redis.ttl(domain.ltv_key(customer)) <= 3600
    draft = domain.draft_key(ticket["id"], "empathetic", "medium")
    assert 3590 <= await redis.ttl(draft) <= 3600
    assert await redis.ttl(domain.stale_key(draft)) > 3600


async def test_fresh_intelligence_is_published_once_while_unchanged(
    proxy_app, tickets, standin, redis: aioredis.Redis
) -> None:
    customer = tickets.add_customer()
    expected = analyze_customer(customer)["predictions"]
    async with (
        proxy_app() as proxy,
        EventProbe([TOPIC], proxy.settings.kafka_topic_prefix) as probe,
    ):
        # when the intelligence is fetched fresh twice (the cache expired in between)
        await proxy.client.get(_url(customer), headers=proxy.headers(Role.SENIOR_AGENT))
        await redis.delete(domain.intelligence_key(customer))
        await proxy.client.get(_url(customer), headers=proxy.headers(Role.SENIOR_AGENT))
        [event] = await probe.wait_for(TOPIC, lambda e: e["subject"] == customer)
        # and a marker proves later events would have been seen
        marker = tickets.add_customer()
        await proxy.client.get(_url(marker), headers=proxy.headers(Role.SENIOR_AGENT))
        await probe.wait_for(TOPIC, lambda e: e["subject"] == marker)
    # then exactly one event went out, carrying Quimbi's numbers
    assert len(probe.events(TOPIC, lambda e: e["subject"] == customer)) == 1
    assert event["data"]["churn_risk"] == expected["churn_risk"]
    assert event["data"]["lifetime_value"] == expected["lifetime_value"]
    assert event["data"]["churn_risk_level"] == expected["churn_risk_level"]
    assert event["source"] == "/services/ai-proxy"
    assert (await standin.calls())["analyze"] == 3


async def test_changed_churn_or_ltv_is_published_again(
    proxy_app, tickets, standin, database_url: str
) -> None:
    # given an earlier publication with other numbers
    customer = tickets.add_customer()
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO published_intelligence (customer_id, churn_risk, lifetime_value) "
                "VALUES (:c, 0.01, 1.0)"
            ),
            {"c": customer},
        )
    async with (
        proxy_app() as proxy,
        EventProbe([TOPIC], proxy.settings.kafka_topic_prefix) as probe,
    ):
        await proxy.client.get(_url(customer), headers=proxy.headers(Role.SENIOR_AGENT))
        [event] = await probe.wait_for(TOPIC, lambda e: e["subject"] == customer)
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.text("SELECT churn_risk FROM published_intelligence WHERE customer_id = :c"),
                {"c": customer},
            )
        ).scalar_one()
    await engine.dispose()
    assert (
        event["data"]["churn_risk"]
        == stored
        == analyze_customer(customer)["predictions"]["churn_risk"]
    )


def _ticket_created(customer: str) -> tuple[str, bytes, str]:
    now = datetime.now(UTC)
    data = TicketData(
        id=unique("tkt-"),
        customer_id=customer,
        subject="Where is my parcel?",
        status="open",
        priority="normal",
        channel="email",
        created_at=now,
        updated_at=now,
        version=1,
        customer=CustomerSnapshot(id=customer, email=f"{customer}@example.com", name="Ann Lee"),
    )
    key, event = build_event("ticket.created", data, source="tickets")
    return key, event.model_dump_json().encode(), str(event.id)


async def _publish(topic: str, *messages: tuple[str, bytes, str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await producer.start()
    try:
        for key, value, _ in messages:
            await producer.send_and_wait(topic, value=value, key=key.encode())
    finally:
        await producer.stop()


async def test_ticket_created_warms_the_customers_intelligence(
    proxy_app, tickets, standin, redis: aioredis.Redis
) -> None:
    customer = tickets.add_customer()
    async with proxy_app() as proxy:
        # when a ticket of a new customer is created
        await _publish(proxy.settings.topic("ticket.created"), _ticket_created(customer))

        async def warmed() -> None:
            assert await redis.exists(domain.intelligence_key(customer)) == 1

        # then the customer's intelligence is fetched and cached without anyone asking
        await eventually(warmed, timeout=90)  # the consumer joins slowly under load
        response = await proxy.client.get(_url(customer), headers=proxy.headers(Role.SENIOR_AGENT))
    assert response.json()["cached"] is True
    assert (await standin.calls())["analyze"] == 1


async def test_ticket_created_handling_does_not_wait_for_quimbi(
    proxy_app, standin, database_url: str
) -> None:
    # given Quimbi takes 3 s per analysis
    await standin.fault("analyze", mode="ok", latency_ms=3000)
    events = [_ticket_created(unique("cust-")) for _ in range(3)]
    engine = create_async_engine(database_url)
    async with proxy_app(quimbi_timeout=5.0) as proxy:
        # when three tickets are created (same key, so one partition, in order)
        same_key = [(events[0][0], value, event_id) for _, value, event_id in events]
        await _publish(proxy.settings.topic("ticket.created"), *same_key)

        async def handled() -> list[datetime]:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.text(
                        "SELECT processed_at FROM processed_events "
                        "WHERE event_id = ANY(CAST(:ids AS uuid[])) ORDER BY processed_at"
                    ),
                    {"ids": [event_id for *_, event_id in events]},
                )
                times = [row.processed_at for row in rows]
            assert len(times) == 3
            return times

        times = await eventually(handled, timeout=90)  # the consumer joins slowly under load
        # then all three were handled back to back while the analyses were still running
        assert (times[-1] - times[0]).total_seconds() < 1.0

        async def all_asked() -> None:  # the warm-ups run in tasks of their own
            assert (await standin.calls())["analyze"] == 3

        await eventually(all_asked, timeout=30)
    await engine.dispose()


async def test_a_batch_of_new_tickets_warms_each_uncached_customer_once(
    proxy_app, tickets, standin, redis: aioredis.Redis
) -> None:
    # given one customer already cached and two not
    cached, *fresh = (tickets.add_customer() for _ in range(3))
    async with (
        proxy_app() as proxy,
        EventProbe([TOPIC], proxy.settings.kafka_topic_prefix) as probe,
    ):
        await proxy.client.get(_url(cached), headers=proxy.headers(Role.SENIOR_AGENT))
        await probe.wait_for(TOPIC, lambda e: e["subject"] == cached)
        # when tickets of all three (one of them twice) arrive together on one partition
        events = [_ticket_created(c) for c in (cached, fresh[0], fresh[1], fresh[0])]
        same_key = [(events[0][0], value, event_id) for _, value, event_id in events]
        await _publish(proxy.settings.topic("ticket.created"), *same_key)

        # then each uncached customer is analyzed and published once, the cached one not again
        for customer in fresh:
            await probe.wait_for(TOPIC, lambda e, c=customer: e["subject"] == c, timeout=90)
        await proxy.app.state.runtime.provided(AiProxy).warmer.drain()
    for customer in fresh:
        assert await redis.exists(domain.intelligence_key(customer)) == 1
        assert len(probe.events(TOPIC, lambda e, c=customer: e["subject"] == c)) == 1
    assert len(probe.events(TOPIC, lambda e: e["subject"] == cached)) == 1
    assert (await standin.calls())["analyze"] == 3
