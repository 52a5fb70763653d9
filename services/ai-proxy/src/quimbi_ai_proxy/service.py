"""Use cases: drafts, recommendations, customer intelligence, and what events make us do.

Each answer is looked up in Redis first, then asked of Quimbi (through QuimbiClient), stored
with its TTL plus a long-lived stale copy, and served from that stale copy (marked) when Quimbi
is unavailable. Answers built from a conversation carry its fingerprint and are never served
for a different conversation (so no event needs to drop them: a new message changes the
fingerprint, and an outdated answer is overwritten or expires with its TTL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from quimbi_common.clock import utcnow
from quimbi_common.events import Contract, CustomerIntelligenceData, EventType
from quimbi_common.uow import UnitsOfWork

from . import domain
from .cache import Cache
from .models import PublishedIntelligence
from .quimbi import QuimbiBadAnswerError, QuimbiClient, QuimbiError, QuimbiUnavailableError
from .schemas import (
    CustomerDna,
    CustomerIntelligenceResponse,
    DraftResponse,
    Predictions,
    QuimbiActions,
    QuimbiAnalysis,
    QuimbiDraft,
    RecommendationResponse,
    TicketContext,
)
from .settings import Settings
from .tickets import TicketReader

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
WARM_ROUND = 100  # customers per warm-up round at most


@dataclass
class AiProxy:
    """What the use cases work with; one per running service."""

    settings: Settings
    quimbi: QuimbiClient
    tickets: TicketReader
    cache: Cache
    units: UnitsOfWork  # where the customer.intelligence_updated events are recorded

    def __post_init__(self) -> None:
        self.warmer = IntelligenceWarmer(self)

    async def aclose(self) -> None:
        await self.warmer.aclose()
        await self.quimbi.aclose()
        await self.tickets.aclose()
        await self.cache.aclose()


def _parse(model: type[ModelT], raw: Any, what: str) -> ModelT:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise QuimbiBadAnswerError(f"Quimbi sent an unreadable {what}") from exc


def _cached(model: type[ModelT], value: dict[str, Any] | None, **flags: bool) -> ModelT | None:
    """A cached answer, or None when there is none (or it no longer fits the model)."""
    if value is None:
        return None
    try:
        return model.model_validate({**value, **flags})
    except ValidationError:
        return None


def _entry(answer: BaseModel, conversation: str) -> dict[str, Any]:
    return {
        "conversation": conversation,
        "answer": answer.model_dump(mode="json", exclude={"cached", "stale"}),
    }


def _for_conversation(entry: dict[str, Any] | None, conversation: str) -> dict[str, Any] | None:
    if entry is None or entry.get("conversation") != conversation:
        return None
    answer = entry.get("answer")
    return answer if isinstance(answer, dict) else None


# --- customer intelligence ------------------------------------------------------------------


async def customer_intelligence(proxy: AiProxy, customer_id: str) -> CustomerIntelligenceResponse:
    """Cached for QUIMBI_CACHE_INTELLIGENCE_TTL; the stale copy while Quimbi is unavailable."""
    key = domain.intelligence_key(customer_id)
    cached = _cached(
        CustomerIntelligenceResponse,
        await proxy.cache.get(key, kind="intelligence"),
        cached=True,
    )
    if cached is not None:
        return cached
    try:
        return await fetch_intelligence(proxy, customer_id)
    except QuimbiUnavailableError:
        stale = _cached(
            CustomerIntelligenceResponse,
            await proxy.cache.get(domain.stale_key(key), kind="intelligence_stale"),
            cached=True,
            stale=True,
        )
        if stale is None:
            raise
        return stale


async def fetch_intelligence(proxy: AiProxy, customer_id: str) -> CustomerIntelligenceResponse:
    """Ask Quimbi, cache every part with its TTL, and tell the suite if churn or LTV moved."""
    intelligence = await analyze(proxy, customer_id)
    await store_intelligence(proxy, [intelligence])
    return intelligence


async def analyze(proxy: AiProxy, customer_id: str) -> CustomerIntelligenceResponse:
    """Quimbi's analysis of one customer, as we answer it (nothing stored)."""
    analysis = _parse(QuimbiAnalysis, await proxy.quimbi.analyze(customer_id), "analysis")
    return CustomerIntelligenceResponse(
        customer_id=customer_id,
        archetype=analysis.archetype,
        segments=analysis.segments,
        predictions=analysis.predictions,
        behavioral_metrics=analysis.behavioral_metrics,
        fetched_at=utcnow(),
    )


async def store_intelligence(
    proxy: AiProxy, answers: Sequence[CustomerIntelligenceResponse]
) -> None:
    """Cache fresh answers (one Redis round trip for all) and publish the moved ones (one
    transaction for all)."""
    settings = proxy.settings
    entries: dict[str, tuple[dict[str, Any], int]] = {}
    for intelligence in answers:
        customer_id = intelligence.customer_id
        document = intelligence.model_dump(mode="json", exclude={"cached", "stale"})
        predictions = intelligence.predictions
        key = domain.intelligence_key(customer_id)
        entries[key] = (document, settings.quimbi_cache_intelligence_ttl)
        entries[domain.stale_key(key)] = (document, settings.quimbi_stale_ttl)
        entries[domain.churn_key(customer_id)] = (
            {
                "churn_risk": predictions.churn_risk,
                "churn_risk_level": predictions.churn_risk_level,
            },
            settings.quimbi_cache_churn_ttl,
        )
        entries[domain.ltv_key(customer_id)] = (
            {"lifetime_value": predictions.lifetime_value},
            settings.quimbi_cache_ltv_ttl,
        )
    await proxy.cache.put(entries)
    await publish_changed(proxy, answers)


async def publish_changed(
    proxy: AiProxy, answers: Sequence[CustomerIntelligenceResponse]
) -> set[str]:
    """Publish `customer.intelligence_updated` for each customer whose churn or LTV differs
    from what we last published (one upsert and one outbox insert for all); returns those
    customers. Best effort: with the database down the answers still go out, and the next
    fresh fetch compares again."""
    latest = {a.customer_id: a for a in answers}  # one row per customer in the upsert
    if not latest:
        return set()
    rows = [
        {
            "customer_id": customer_id,
            "churn_risk": round(a.predictions.churn_risk, 2),
            "lifetime_value": round(a.predictions.lifetime_value, 2),
        }
        for customer_id, a in sorted(latest.items())  # row locks in one order
    ]
    values = insert(PublishedIntelligence).values(rows)
    statement = values.on_conflict_do_update(
        index_elements=[PublishedIntelligence.customer_id],
        set_={
            "churn_risk": values.excluded.churn_risk,
            "lifetime_value": values.excluded.lifetime_value,
            "published_at": utcnow(),
        },
        where=or_(
            PublishedIntelligence.churn_risk.is_distinct_from(values.excluded.churn_risk),
            PublishedIntelligence.lifetime_value.is_distinct_from(values.excluded.lifetime_value),
        ),
    ).returning(PublishedIntelligence.customer_id)
    try:
        async with proxy.units.begin() as unit:
            changed = set((await unit.session.execute(statement)).scalars())
            events: list[tuple[EventType, Contract]] = [
                (EventType.CUSTOMER_INTELLIGENCE_UPDATED, _published(latest[c], row))
                for row in rows
                if (c := row["customer_id"]) in changed
            ]
            if events:
                await unit.emit_many(events)
    except SQLAlchemyError as exc:
        log.warning("could not record intelligence of %s: %s", ", ".join(latest), exc)
        return set()
    return changed


def _published(
    intelligence: CustomerIntelligenceResponse, row: dict[str, Any]
) -> CustomerIntelligenceData:
    return CustomerIntelligenceData(
        customer_id=intelligence.customer_id,
        churn_risk=row["churn_risk"],
        churn_risk_level=intelligence.predictions.churn_risk_level,
        lifetime_value=row["lifetime_value"],
        archetype=intelligence.archetype,
        segments=intelligence.segments,
        fetched_at=intelligence.fetched_at,
    )


async def customer_predictions(proxy: AiProxy, customer_id: str) -> tuple[Predictions, bool]:
    """Churn and LTV (cached for an hour each), and whether they are stale."""
    churn = await proxy.cache.get(domain.churn_key(customer_id), kind="churn")
    ltv = await proxy.cache.get(domain.ltv_key(customer_id), kind="ltv")
    if churn is not None and ltv is not None:
        try:
            return Predictions.model_validate({**churn, **ltv}), False
        except ValidationError:
            pass
    intelligence = await customer_intelligence(proxy, customer_id)
    return intelligence.predictions, intelligence.stale


# --- drafts ---------------------------------------------------------------------------------


async def draft_response(
    proxy: AiProxy,
    ticket: TicketContext,
    *,
    tone: str,
    length: str,
    regenerate: bool = False,
    include_details: list[str] | None = None,
) -> DraftResponse:
    """The cached draft for this ticket, tone and length, or a new one from Quimbi.

    Regenerating skips the cache and replaces the stored draft; it never falls back to a stale
    one, since the agent asked for a new draft.
    """
    conversation = domain.conversation_fingerprint(m.model_dump() for m in ticket.messages)
    key = domain.draft_key(ticket.id, tone, length)
    if not regenerate:
        entry = await proxy.cache.get(key, kind="draft")
        cached = _cached(DraftResponse, _for_conversation(entry, conversation), cached=True)
        if cached is not None:
            return cached
    try:
        draft = await _generate_draft(proxy, ticket, tone, length, include_details)
    except QuimbiUnavailableError:
        if regenerate:
            raise
        entry = await proxy.cache.get(domain.stale_key(key), kind="draft_stale")
        stale = _cached(
            DraftResponse, _for_conversation(entry, conversation), cached=True, stale=True
        )
        if stale is None:
            raise
        return stale
    if not draft.stale:
        settings = proxy.settings
        value = _entry(draft, conversation)
        await proxy.cache.put(
            {
                key: (value, settings.draft_cache_ttl),
                domain.stale_key(key): (value, settings.quimbi_stale_ttl),
            }
        )
    return draft


async def _generate_draft(
    proxy: AiProxy,
    ticket: TicketContext,
    tone: str,
    length: str,
    include_details: list[str] | None,
) -> DraftResponse:
    intelligence = await customer_intelligence(proxy, ticket.customer_id)
    predictions = intelligence.predictions
    raw = await proxy.quimbi.generate_message(
        customer_profile=_customer_profile(ticket, intelligence),
        goal=domain.draft_goal(
            predictions.churn_risk, retention_threshold=proxy.settings.retention_churn_risk
        ),
        conversation=domain.conversation_turns(m.model_dump() for m in ticket.messages),
        channel=ticket.channel,
        tone=tone,
        length=length,
        include_details=include_details,
    )
    generated = _parse(QuimbiDraft, raw, "draft")
    return DraftResponse(
        ticket_id=ticket.id,
        draft_content=generated.draft_content,
        tone=tone,
        length=length,
        channel=generated.channel or ticket.channel,
        personalization_applied=generated.personalization_applied,
        customer_dna=CustomerDna(
            dominant_segments=list(intelligence.segments.get("dominant_segments") or []),
            archetype_level=intelligence.archetype.get("level"),
        ),
        churn_risk=predictions.churn_risk,
        churn_risk_level=predictions.churn_risk_level,
        lifetime_value=predictions.lifetime_value,
        generated_at=utcnow(),
        stale=intelligence.stale,
    )


def _customer_profile(
    ticket: TicketContext, intelligence: CustomerIntelligenceResponse
) -> dict[str, Any]:
    """What Quimbi needs to personalise: the name and the intelligence (no email, no token)."""
    return {
        "customer_id": ticket.customer_id,
        "name": ticket.customer.name if ticket.customer else None,
        "archetype": intelligence.archetype,
        "segments": intelligence.segments,
        **intelligence.predictions.model_dump(),
    }


# --- recommendations ------------------------------------------------------------------------


async def recommendation(proxy: AiProxy, ticket: TicketContext) -> RecommendationResponse:
    """Next best actions from Quimbi (always asked: they follow the ticket's every change);
    the last ones for this conversation, marked stale, while Quimbi is unavailable."""
    conversation = domain.conversation_fingerprint(m.model_dump() for m in ticket.messages)
    key = domain.stale_key(domain.recommendation_key(ticket.id))
    try:
        answer = await _recommend(proxy, ticket)
    except QuimbiUnavailableError:
        entry = await proxy.cache.get(key, kind="recommendation_stale")
        stale = _cached(
            RecommendationResponse,
            _for_conversation(entry, conversation),
            cached=True,
            stale=True,
        )
        if stale is None:
            raise
        return stale
    if not answer.stale:
        await proxy.cache.put(
            {key: (_entry(answer, conversation), proxy.settings.quimbi_stale_ttl)}
        )
    return answer


async def _recommend(proxy: AiProxy, ticket: TicketContext) -> RecommendationResponse:
    predictions, stale = await customer_predictions(proxy, ticket.customer_id)
    raw = await proxy.quimbi.recommend_actions(
        customer_profile={
            "customer_id": ticket.customer_id,
            "name": ticket.customer.name if ticket.customer else None,
            **predictions.model_dump(),
        },
        ticket={
            "id": ticket.id,
            "subject": ticket.subject,
            "status": ticket.status,
            "priority": ticket.priority,
            "channel": ticket.channel,
            "category": ticket.category,
        },
        conversation=domain.conversation_turns(m.model_dump() for m in ticket.messages),
    )
    actions = _parse(QuimbiActions, raw, "list of actions").actions
    settings = proxy.settings
    return RecommendationResponse(
        ticket_id=ticket.id,
        next_best_actions=sorted(actions, key=lambda a: a.priority),
        churn_risk=predictions.churn_risk,
        customer_value=domain.customer_value_tier(
            predictions.lifetime_value,
            high=settings.customer_high_value_ltv,
            medium=settings.customer_medium_value_ltv,
        ),
        lifetime_value=predictions.lifetime_value,
        generated_at=utcnow(),
        stale=stale,
    )


# --- events ---------------------------------------------------------------------------------


class IntelligenceWarmer:
    """Fetches customers' intelligence in the background (on `ticket.created`), so the first
    draft is faster; the consumer never waits on Quimbi. Customers are warmed in rounds: one
    cache lookup for the round, their analyses (Quimbi answers one customer per call) at most
    INTELLIGENCE_WARM_CONCURRENCY at a time, then one cache write and one transaction for the
    round's answers. A customer waiting or being warmed is not queued again."""

    def __init__(self, proxy: AiProxy) -> None:
        self.proxy = proxy
        self._limit = asyncio.Semaphore(max(1, proxy.settings.intelligence_warm_concurrency))
        self._pending: dict[str, None] = {}  # in arrival order
        self._warming: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    def schedule_many(self, customer_ids: Iterable[str]) -> None:
        if self._closed:
            return
        for customer_id in customer_ids:
            if customer_id not in self._warming:
                self._pending.setdefault(customer_id, None)
        if self._pending and (self._worker is None or self._worker.done()):
            self._worker = asyncio.create_task(self._work(), name="intelligence-warmer")

    async def _work(self) -> None:
        while self._pending:
            round_ = list(self._pending)[:WARM_ROUND]
            for customer_id in round_:
                del self._pending[customer_id]
            self._warming.update(round_)
            try:
                await self._warm(round_)
            except Exception:
                log.exception("warming intelligence of %d customers failed", len(round_))
            finally:
                self._warming.difference_update(round_)

    async def _warm(self, customer_ids: list[str]) -> None:
        keys = [domain.intelligence_key(c) for c in customer_ids]
        cached = await self.proxy.cache.exist(keys, kind="warm")
        missing = [c for c, key in zip(customer_ids, keys, strict=True) if key not in cached]
        answers = await asyncio.gather(*(self._analyze(c) for c in missing))
        await store_intelligence(self.proxy, [a for a in answers if a is not None])

    async def _analyze(self, customer_id: str) -> CustomerIntelligenceResponse | None:
        async with self._limit:
            try:
                return await analyze(self.proxy, customer_id)
            except QuimbiError as exc:
                log.info("could not warm intelligence of %s: %s", customer_id, exc)
            except Exception:
                log.exception("warming intelligence of %s failed", customer_id)
            return None

    async def drain(self) -> None:
        """Wait for the warm-ups under way and queued (tests and shutdown)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.gather(self._worker, return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        self._pending.clear()
        if self._worker is not None:
            self._worker.cancel()
        await self.drain()
