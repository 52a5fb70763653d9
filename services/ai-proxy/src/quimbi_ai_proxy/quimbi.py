"""QuimbiClient: the only way out to Quimbi Intelligence.

One pooled httpx client; each attempt passes the circuit breaker first; connection errors,
timeouts and 5xx are retried with exponential backoff and jitter (tenacity), a 4xx never is.
Only the configured URL and `X-API-Key` are used: nothing of the caller's request goes along.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from prometheus_client import Counter, Gauge
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .domain import BreakerState, CircuitBreaker
from .settings import Settings

log = logging.getLogger(__name__)

QUIMBI_CALLS = Counter(
    "quimbi_calls_total", "Attempts to call Quimbi Intelligence", ["endpoint", "outcome"]
)
BREAKER_OPEN = Gauge("quimbi_breaker_open", "1 while the Quimbi circuit breaker is open")

ANALYZE = "/api/intelligence/analyze"
MESSAGE = "/api/generation/message"
ACTIONS = "/api/generation/actions"


class QuimbiError(Exception):
    """Quimbi could not give an answer."""


class QuimbiUnavailableError(QuimbiError):
    """Down, slow, failing with 5xx, or the breaker is open: worth trying again later."""

    def __init__(self, detail: str, *, retry_after: float = 0.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class QuimbiRejectedError(QuimbiError):
    """Quimbi answered 4xx: the request itself is wrong (or the thing is unknown); no retry."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class QuimbiBadAnswerError(QuimbiError):
    """Quimbi answered 2xx with something we cannot read."""


class _TransientError(Exception):
    """One failed attempt that may succeed if tried again."""


class QuimbiClient:
    def __init__(self, settings: Settings, breaker: CircuitBreaker | None = None) -> None:
        self.settings = settings
        self.breaker = breaker or CircuitBreaker(
            settings.quimbi_breaker_failure_threshold, settings.quimbi_breaker_reset_seconds
        )
        self._http = httpx.AsyncClient(
            base_url=settings.quimbi_base_url,
            headers={"X-API-Key": settings.quimbi_api_key.get_secret_value()},
            timeout=httpx.Timeout(settings.quimbi_timeout),
            limits=httpx.Limits(
                max_connections=settings.quimbi_max_connections,
                max_keepalive_connections=settings.quimbi_max_connections,
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def analyze(self, customer_id: str, context: dict[str, Any] | None = None) -> Any:
        body: dict[str, Any] = {"customer_id": customer_id}
        if context:
            body["context"] = context
        return await self._post(ANALYZE, body)

    async def generate_message(
        self,
        *,
        customer_profile: dict[str, Any],
        goal: str,
        conversation: list[dict[str, Any]],
        channel: str,
        tone: str,
        length: str,
        include_details: list[str] | None = None,
    ) -> Any:
        body: dict[str, Any] = {
            "customer_profile": customer_profile,
            "goal": goal,
            "conversation": conversation,
            "channel": channel,
            "tone": tone,
            "length": length,
            "provider": self.settings.draft_llm_provider,
            "model": self.settings.draft_model,
        }
        if include_details:
            body["include_details"] = include_details
        return await self._post(MESSAGE, body)

    async def recommend_actions(
        self,
        *,
        customer_profile: dict[str, Any],
        ticket: dict[str, Any],
        conversation: list[dict[str, Any]],
    ) -> Any:
        body = {
            "customer_profile": customer_profile,
            "ticket": ticket,
            "conversation": conversation,
        }
        return await self._post(ACTIONS, body)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        """POST with breaker and retries; the parsed JSON body, or a QuimbiError."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_TransientError),
            stop=stop_after_attempt(self.settings.quimbi_max_retries + 1),
            wait=wait_exponential_jitter(
                multiplier=self.settings.quimbi_retry_backoff_seconds,
                max=self.settings.quimbi_retry_max_backoff_seconds,
                jitter=self.settings.quimbi_retry_backoff_seconds,
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(path, body)
        except _TransientError as exc:
            raise QuimbiUnavailableError(str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, path: str, body: dict[str, Any]) -> Any:
        if not self.breaker.allow():
            QUIMBI_CALLS.labels(path, "breaker_open").inc()
            raise QuimbiUnavailableError(
                "Quimbi Intelligence is unavailable (circuit open)",
                retry_after=self.breaker.retry_after(),
            )
        verdict = False
        try:
            try:
                response = await self._http.post(path, json=body)
            except httpx.TransportError as exc:
                self._failed(path, type(exc).__name__)
                verdict = True
                raise _TransientError(f"Quimbi {path}: {type(exc).__name__}") from exc
            if response.status_code >= 500:
                self._failed(path, str(response.status_code))
                verdict = True
                raise _TransientError(f"Quimbi {path} answered {response.status_code}")
            self.breaker.record_success()
            verdict = True
            self._publish_state()
            if response.status_code >= 400:
                QUIMBI_CALLS.labels(path, str(response.status_code)).inc()
                raise QuimbiRejectedError(response.status_code, _detail(response))
            QUIMBI_CALLS.labels(path, "ok").inc()
            try:
                return response.json()
            except ValueError as exc:
                raise QuimbiBadAnswerError(f"Quimbi {path} sent invalid JSON") from exc
        finally:
            if not verdict:
                self.breaker.abandon()

    def _failed(self, path: str, outcome: str) -> None:
        QUIMBI_CALLS.labels(path, outcome).inc()
        self.breaker.record_failure()
        self._publish_state()
        log.warning("quimbi %s failed (%s); breaker %s", path, outcome, self.breaker.state)

    def _publish_state(self) -> None:
        BREAKER_OPEN.set(0 if self.breaker.state is BreakerState.CLOSED else 1)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or response.reason_phrase or response.status_code)
